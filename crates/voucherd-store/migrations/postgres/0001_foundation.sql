-- Tenants, campaigns, vouchers, daily grants and idempotency keys: the same
-- rules as the SQLite schema, in PostgreSQL's own types.
--
-- Instants are timestamptz rather than integer milliseconds: an operator
-- reading a report or a lock in psql sees a time, date arithmetic in the
-- tenant's zone works in SQL, and the width is the same 8 bytes. The store
-- truncates every instant to the millisecond before writing it, so both
-- backends keep exactly the same values. Durations stay bigint milliseconds
-- (`*_ms`): an interval's months and days have no fixed length, and these
-- are fixed lengths.
--
-- Closed sets of words are text with a CHECK rather than enum types: adding
-- a word later is one constraint swap in a migration, and the values read
-- the same in both backends.

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    signing_key bytea NOT NULL CHECK (octet_length(signing_key) >= 32),
    time_zone text NOT NULL,
    rate_limit_per_second integer CHECK (rate_limit_per_second IS NULL OR rate_limit_per_second > 0),
    created_at timestamptz NOT NULL
);

CREATE TABLE campaigns (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    name text NOT NULL,
    message text NOT NULL,
    description text NOT NULL,
    terms text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('coupon', 'sale')),
    supply bigint CHECK (supply IS NULL OR supply > 0),
    starts_at timestamptz,
    ends_at timestamptz,
    voucher_expires_at timestamptz,
    voucher_valid_for_ms bigint CHECK (voucher_valid_for_ms IS NULL OR voucher_valid_for_ms > 0),
    price_amount bigint CHECK (price_amount IS NULL OR price_amount >= 0),
    price_currency text,
    per_user_limit integer NOT NULL CHECK (per_user_limit > 0),
    daily_limit_group text,
    trigger text NOT NULL CHECK (trigger IN ('claim', 'first_login')),
    reservation_ttl_ms bigint NOT NULL CHECK (reservation_ttl_ms > 0),
    lock_ttl_ms bigint NOT NULL CHECK (lock_ttl_ms > 0),
    redemptions_max integer NOT NULL CHECK (redemptions_max > 0),
    code_pattern text,
    lifecycle text NOT NULL CHECK (lifecycle IN ('draft', 'live', 'paused')),
    -- Ranks 1..voucher_count exist as voucher rows. Ranks are u32 in the
    -- code, which needs bigint here.
    voucher_count bigint NOT NULL DEFAULT 0 CHECK (voucher_count >= 0),
    created_at timestamptz NOT NULL,
    published_at timestamptz,
    CHECK (supply IS NULL OR voucher_count <= supply),
    CHECK ((price_amount IS NULL) = (price_currency IS NULL)),
    CHECK (lifecycle = 'draft' OR published_at IS NOT NULL),
    CHECK (lifecycle = 'draft' OR supply IS NULL OR voucher_count = supply)
);

CREATE INDEX campaigns_tenant ON campaigns (tenant_id);

CREATE TABLE campaign_tiers (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    until_rank bigint NOT NULL CHECK (until_rank > 0),
    discount_percent integer NOT NULL CHECK (discount_percent BETWEEN 0 AND 100),
    PRIMARY KEY (campaign_id, until_rank)
);

CREATE TABLE vouchers (
    id uuid PRIMARY KEY,
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    rank bigint NOT NULL CHECK (rank > 0),
    code text NOT NULL,
    state text NOT NULL CHECK (state IN ('available', 'reserved', 'issued', 'locked', 'redeemed')),
    user_id text,
    -- Which of the user's per_user_limit slots this voucher fills.
    user_slot integer CHECK (user_slot IS NULL OR user_slot > 0),
    claimed_at timestamptz,
    -- Set by each reservation; kept after payment as the order's reference.
    reservation_id uuid UNIQUE,
    reserved_until timestamptz,
    issued_at timestamptz,
    expires_at timestamptz,
    locked_until timestamptz,
    redemptions integer NOT NULL DEFAULT 0,
    redemptions_max integer NOT NULL CHECK (redemptions_max > 0),
    UNIQUE (campaign_id, rank),
    UNIQUE (tenant_id, code),
    -- Also the index a claim reads a user's holdings through.
    UNIQUE (campaign_id, user_id, user_slot),
    CHECK ((state = 'available') = (user_id IS NULL)),
    CHECK ((user_id IS NULL) = (user_slot IS NULL)),
    CHECK ((user_id IS NULL) = (claimed_at IS NULL)),
    CHECK ((state = 'reserved') = (reserved_until IS NOT NULL)),
    CHECK (state != 'reserved' OR reservation_id IS NOT NULL),
    CHECK ((state IN ('issued', 'locked', 'redeemed')) = (issued_at IS NOT NULL)),
    CHECK ((state = 'locked') = (locked_until IS NOT NULL)),
    CHECK (redemptions BETWEEN 0 AND redemptions_max),
    CHECK ((state = 'redeemed') = (redemptions = redemptions_max))
);

-- The lowest free ranks of a campaign are one index range away.
CREATE INDEX vouchers_available ON vouchers (campaign_id, rank) WHERE state = 'available';
CREATE INDEX vouchers_user ON vouchers (tenant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX vouchers_locked ON vouchers (locked_until) WHERE state = 'locked';
CREATE INDEX vouchers_reserved ON vouchers (reserved_until) WHERE state = 'reserved';

-- The triggers raise check_violation (23514) so that the store reports them
-- as refused constraints, like the CHECKs beside them.

-- A rank past the supply cannot exist, whatever the engine asks for.
CREATE FUNCTION vouchers_rank_within_supply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.rank > (SELECT supply FROM campaigns WHERE id = NEW.campaign_id) THEN
        RAISE EXCEPTION 'voucher rank exceeds the campaign supply'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER vouchers_rank_within_supply
BEFORE INSERT ON vouchers
FOR EACH ROW EXECUTE FUNCTION vouchers_rank_within_supply();

-- A user can fill only per_user_limit slots of a campaign.
CREATE FUNCTION vouchers_slot_within_limit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_slot > (SELECT per_user_limit FROM campaigns WHERE id = NEW.campaign_id) THEN
        RAISE EXCEPTION 'user slot exceeds the per-user limit'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER vouchers_slot_within_limit_on_insert
BEFORE INSERT ON vouchers
FOR EACH ROW WHEN (NEW.user_slot IS NOT NULL)
EXECUTE FUNCTION vouchers_slot_within_limit();

CREATE TRIGGER vouchers_slot_within_limit_on_update
BEFORE UPDATE OF user_slot ON vouchers
FOR EACH ROW WHEN (NEW.user_slot IS DISTINCT FROM OLD.user_slot)
EXECUTE FUNCTION vouchers_slot_within_limit();

-- Ranks and codes are fixed once made.
CREATE FUNCTION vouchers_rank_and_code_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'voucher rank, code and campaign never change'
        USING ERRCODE = 'check_violation';
END;
$$;

CREATE TRIGGER vouchers_rank_and_code_fixed
BEFORE UPDATE OF rank, code, campaign_id, tenant_id ON vouchers
FOR EACH ROW WHEN (
    NEW.rank IS DISTINCT FROM OLD.rank
    OR NEW.code IS DISTINCT FROM OLD.code
    OR NEW.campaign_id IS DISTINCT FROM OLD.campaign_id
    OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
)
EXECUTE FUNCTION vouchers_rank_and_code_fixed();

-- One voucher per user, group and calendar day (in the tenant's zone).
CREATE TABLE daily_grants (
    tenant_id uuid NOT NULL,
    limit_group text NOT NULL,
    user_id text NOT NULL,
    day date NOT NULL,
    voucher_id uuid NOT NULL UNIQUE REFERENCES vouchers (id),
    PRIMARY KEY (tenant_id, limit_group, user_id, day)
);

CREATE TABLE idempotency_keys (
    tenant_id uuid NOT NULL,
    principal text NOT NULL,
    key text NOT NULL,
    fingerprint bytea NOT NULL,
    status integer NOT NULL,
    content_type text NOT NULL,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, principal, key)
);

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
