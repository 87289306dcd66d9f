-- Orders, the payment queue and its transaction history.

-- Set while a payment for the reservation is under way: a reservation
-- cannot expire or be released under a payment.
ALTER TABLE vouchers ADD COLUMN payment_order_id TEXT;

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    voucher_id TEXT NOT NULL REFERENCES vouchers (id),
    reservation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    currency TEXT NOT NULL,
    -- Never the card: its brand and last four digits only.
    card_brand TEXT NOT NULL,
    card_last_four TEXT NOT NULL CHECK (length(card_last_four) = 4),
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
    failure TEXT,
    gateway TEXT,
    created_at INTEGER NOT NULL,
    settled_at INTEGER,
    CHECK ((status = 'pending') = (settled_at IS NULL)),
    CHECK (status != 'paid' OR gateway IS NOT NULL),
    CHECK ((status = 'failed') = (failure IS NOT NULL))
) STRICT;

-- A voucher is paid for once; a reservation has one payment under way.
CREATE UNIQUE INDEX orders_paid_voucher ON orders (voucher_id) WHERE status = 'paid';
CREATE UNIQUE INDEX orders_pending_reservation ON orders (reservation_id) WHERE status = 'pending';
CREATE INDEX orders_campaign ON orders (campaign_id, status);

-- The payment queue: one row per pending order, deleted with its sealed
-- card when the order settles.
CREATE TABLE payments (
    order_id TEXT PRIMARY KEY REFERENCES orders (id),
    state TEXT NOT NULL CHECK (state IN ('queued', 'working')),
    -- The gateway whose outcome is not known yet: only a lookup there may
    -- come next, so an unknown outcome never becomes a second charge.
    pinned_gateway TEXT,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    lease_id TEXT,
    lease_until INTEGER,
    sealed_card BLOB NOT NULL,
    CHECK ((state = 'working') = (lease_id IS NOT NULL)),
    CHECK ((lease_id IS NULL) = (lease_until IS NULL))
) STRICT;

CREATE INDEX payments_queued ON payments (next_attempt_at) WHERE state = 'queued';
CREATE INDEX payments_working ON payments (lease_until) WHERE state = 'working';

CREATE TABLE payment_attempts (
    order_id TEXT NOT NULL REFERENCES orders (id),
    number INTEGER NOT NULL CHECK (number > 0),
    gateway TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'lookup')),
    outcome TEXT CHECK (outcome IN ('captured', 'declined', 'refused', 'unknown', 'not_found', 'failed', 'interrupted')),
    detail TEXT,
    charge_id TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (order_id, number),
    CHECK ((outcome IS NULL) = (finished_at IS NULL))
) STRICT, WITHOUT ROWID;

CREATE INDEX payment_attempts_gateway ON payment_attempts (gateway, outcome);

-- A sale's voucher is issued only against its paid order.
CREATE TRIGGER vouchers_sale_issued_only_when_paid
BEFORE UPDATE OF state ON vouchers
WHEN NEW.state = 'issued' AND OLD.state = 'reserved'
    AND NOT EXISTS (SELECT 1 FROM orders WHERE voucher_id = NEW.id AND status = 'paid')
BEGIN
    SELECT RAISE(ABORT, 'a reserved voucher is issued only against a paid order');
END;
