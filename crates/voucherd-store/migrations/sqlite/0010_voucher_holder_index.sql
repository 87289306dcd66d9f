-- One index says who holds a voucher, and only held vouchers are in it.
--
-- Before, two indexes covered the holder: the table's UNIQUE (campaign_id,
-- user_id, user_slot), which also held an entry for every available
-- voucher (with NULLs), and vouchers_user (tenant_id, user_id). A claim
-- moved the first entry and added the second: three index writes for one
-- holder. vouchers_holder is the same uniqueness (the same three columns)
-- over held vouchers only: a claim adds one entry, and a generated code
-- adds none. "My vouchers" finds a user's vouchers by user_id and keeps the
-- tenant's. A table constraint cannot be dropped in SQLite, so the table is
-- made again (the migration runs with foreign keys off and checks them
-- before it commits); every index and trigger on it is made again as it
-- stood after migration 0009.

CREATE TABLE vouchers_holder_indexed (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    rank INTEGER NOT NULL CHECK (rank > 0),
    code TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('available', 'reserved', 'issued', 'locked', 'redeemed')),
    user_id TEXT,
    -- Which of the user's per_user_limit slots this voucher fills.
    user_slot INTEGER CHECK (user_slot IS NULL OR user_slot > 0),
    claimed_at INTEGER,
    -- Set by each reservation; kept after payment as the order's reference.
    reservation_id TEXT UNIQUE,
    reserved_until INTEGER,
    issued_at INTEGER,
    expires_at INTEGER,
    locked_until INTEGER,
    redemptions INTEGER NOT NULL DEFAULT 0,
    redemptions_max INTEGER NOT NULL CHECK (redemptions_max > 0),
    -- Set while a payment for the reservation is under way: a reservation
    -- cannot expire or be released under a payment.
    payment_order_id TEXT,
    UNIQUE (campaign_id, rank),
    UNIQUE (tenant_id, code),
    CHECK ((state = 'available') = (user_id IS NULL)),
    CHECK ((user_id IS NULL) = (user_slot IS NULL)),
    CHECK ((user_id IS NULL) = (claimed_at IS NULL)),
    CHECK ((state = 'reserved') = (reserved_until IS NOT NULL)),
    CHECK (state != 'reserved' OR reservation_id IS NOT NULL),
    CHECK ((state IN ('issued', 'locked', 'redeemed')) = (issued_at IS NOT NULL)),
    CHECK ((state = 'locked') = (locked_until IS NOT NULL)),
    CHECK (redemptions BETWEEN 0 AND redemptions_max),
    CHECK ((state = 'redeemed') = (redemptions = redemptions_max))
) STRICT;

INSERT INTO vouchers_holder_indexed (
    id, campaign_id, tenant_id, rank, code, state, user_id, user_slot, claimed_at,
    reservation_id, reserved_until, issued_at, expires_at, locked_until, redemptions,
    redemptions_max, payment_order_id)
SELECT
    id, campaign_id, tenant_id, rank, code, state, user_id, user_slot, claimed_at,
    reservation_id, reserved_until, issued_at, expires_at, locked_until, redemptions,
    redemptions_max, payment_order_id
FROM vouchers ORDER BY rowid;

DROP TABLE vouchers;
ALTER TABLE vouchers_holder_indexed RENAME TO vouchers;

-- A user fills each of a campaign's slots once: what UNIQUE (campaign_id,
-- user_id, user_slot) said, without the available vouchers.
CREATE UNIQUE INDEX vouchers_holder ON vouchers (user_id, campaign_id, user_slot)
    WHERE user_id IS NOT NULL;
-- The lowest free rank of a campaign is one index probe away.
CREATE INDEX vouchers_available ON vouchers (campaign_id, rank) WHERE state = 'available';
CREATE INDEX vouchers_locked ON vouchers (locked_until) WHERE state = 'locked';
CREATE INDEX vouchers_reserved ON vouchers (reserved_until) WHERE state = 'reserved';

-- A rank past the supply cannot exist, whatever the engine asks for.
CREATE TRIGGER vouchers_rank_within_supply
BEFORE INSERT ON vouchers
WHEN NEW.rank > (SELECT supply FROM campaigns WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(ABORT, 'voucher rank exceeds the campaign supply');
END;

-- A user can fill only per_user_limit slots of a campaign.
CREATE TRIGGER vouchers_slot_within_limit_on_insert
BEFORE INSERT ON vouchers
WHEN NEW.user_slot > (SELECT per_user_limit FROM campaigns WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(ABORT, 'user slot exceeds the per-user limit');
END;

-- FAIL, not ABORT: see migration 0009.
CREATE TRIGGER vouchers_slot_within_limit_on_update
BEFORE UPDATE OF user_slot ON vouchers
WHEN NEW.user_slot > (SELECT per_user_limit FROM campaigns WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(FAIL, 'user slot exceeds the per-user limit');
END;

-- Ranks and codes are fixed once made.
CREATE TRIGGER vouchers_rank_and_code_fixed
BEFORE UPDATE OF rank, code, campaign_id, tenant_id ON vouchers
BEGIN
    SELECT RAISE(ABORT, 'voucher rank, code and campaign never change');
END;

CREATE TRIGGER vouchers_sale_issued_only_when_paid
BEFORE UPDATE OF state ON vouchers
WHEN NEW.state = 'issued' AND OLD.state = 'reserved'
    AND NOT EXISTS (SELECT 1 FROM orders WHERE voucher_id = NEW.id AND status = 'paid')
BEGIN
    SELECT RAISE(FAIL, 'a reserved voucher is issued only against a paid order');
END;
