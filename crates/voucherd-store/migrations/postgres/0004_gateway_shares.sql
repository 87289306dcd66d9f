-- Each node's lease on a share of a gateway's rate (voucherd_core::share):
-- a row counts against the rate until counted_until, a window after the
-- node may last use it. Rows past that are deleted by the next lease.
CREATE TABLE gateway_shares (
    gateway TEXT NOT NULL,
    node TEXT NOT NULL,
    share INTEGER NOT NULL CHECK (share >= 0),
    want INTEGER NOT NULL CHECK (want >= 0),
    granted_at_ms BIGINT NOT NULL,
    counted_until_ms BIGINT NOT NULL CHECK (counted_until_ms >= granted_at_ms)
);

CREATE INDEX gateway_shares_gateway ON gateway_shares (gateway, counted_until_ms);
