-- Orders, the payment queue and its transaction history: the same rules as
-- the SQLite schema's 0002, in PostgreSQL's own types.

CREATE TABLE orders (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    voucher_id uuid NOT NULL REFERENCES vouchers (id),
    reservation_id uuid NOT NULL,
    user_id text NOT NULL,
    email text NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0),
    currency text NOT NULL,
    -- Never the card: its brand and last four digits only.
    card_brand text NOT NULL,
    card_last_four text NOT NULL CHECK (char_length(card_last_four) = 4),
    status text NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
    failure text,
    gateway text,
    created_at timestamptz NOT NULL,
    settled_at timestamptz,
    -- What a voucher's payment_order_id refers to: an order of that voucher.
    UNIQUE (id, voucher_id),
    CHECK ((status = 'pending') = (settled_at IS NULL)),
    CHECK (status <> 'paid' OR gateway IS NOT NULL),
    CHECK ((status = 'failed') = (failure IS NOT NULL))
);

-- A voucher is paid for once; a reservation has one payment under way. The
-- second index is also what two nodes checking out one reservation at once
-- would meet, should the conditional update on the voucher ever let both by.
CREATE UNIQUE INDEX orders_paid_voucher ON orders (voucher_id) WHERE status = 'paid';
CREATE UNIQUE INDEX orders_pending_reservation ON orders (reservation_id) WHERE status = 'pending';
CREATE INDEX orders_campaign ON orders (campaign_id, status);

-- Set while a payment for the reservation is under way: a reservation
-- cannot expire or be released under a payment. The key makes it name an
-- order of this very voucher.
ALTER TABLE vouchers
    ADD COLUMN payment_order_id uuid,
    ADD CONSTRAINT vouchers_payment_order FOREIGN KEY (payment_order_id, id)
        REFERENCES orders (id, voucher_id),
    ADD CONSTRAINT vouchers_paid_only_while_reserved
        CHECK (payment_order_id IS NULL OR state = 'reserved');

-- The payment queue: one row per pending order, deleted with its sealed
-- card when the order settles. A row is `working` while one node holds it
-- under `lease_id` until `lease_until`; nodes take rows with SKIP LOCKED.
CREATE TABLE payments (
    order_id uuid PRIMARY KEY REFERENCES orders (id),
    state text NOT NULL CHECK (state IN ('queued', 'working')),
    -- The gateway whose outcome is not known yet: only a lookup there may
    -- come next, so an unknown outcome never becomes a second charge.
    pinned_gateway text,
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    lease_id uuid,
    lease_until timestamptz,
    sealed_card bytea NOT NULL,
    CHECK ((state = 'working') = (lease_id IS NOT NULL)),
    CHECK ((lease_id IS NULL) = (lease_until IS NULL))
);

-- What is due is one index range away in each state.
CREATE INDEX payments_queued ON payments (next_attempt_at) WHERE state = 'queued';
CREATE INDEX payments_working ON payments (lease_until) WHERE state = 'working';

CREATE TABLE payment_attempts (
    order_id uuid NOT NULL REFERENCES orders (id),
    number integer NOT NULL CHECK (number > 0),
    gateway text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('charge', 'lookup')),
    outcome text CHECK (outcome IN (
        'captured', 'declined', 'refused', 'unknown', 'not_found', 'failed', 'interrupted'
    )),
    detail text,
    charge_id text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    PRIMARY KEY (order_id, number),
    CHECK ((outcome IS NULL) = (finished_at IS NULL))
);

-- A sale's voucher is issued only against its paid order. Like the
-- triggers of 0001, it raises check_violation so that the store reports a
-- refused constraint.
CREATE FUNCTION vouchers_sale_issued_only_when_paid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM orders WHERE voucher_id = NEW.id AND status = 'paid') THEN
        RAISE EXCEPTION 'a reserved voucher is issued only against a paid order'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER vouchers_sale_issued_only_when_paid
BEFORE UPDATE OF state ON vouchers
FOR EACH ROW WHEN (NEW.state = 'issued' AND OLD.state = 'reserved')
EXECUTE FUNCTION vouchers_sale_issued_only_when_paid();
