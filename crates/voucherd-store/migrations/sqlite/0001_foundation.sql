-- Tenants, campaigns, vouchers, daily grants and idempotency keys.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    signing_key BLOB NOT NULL CHECK (length(signing_key) >= 32),
    time_zone TEXT NOT NULL,
    rate_limit_per_second INTEGER CHECK (rate_limit_per_second IS NULL OR rate_limit_per_second > 0),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    message TEXT NOT NULL,
    description TEXT NOT NULL,
    terms TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('coupon', 'sale')),
    supply INTEGER CHECK (supply IS NULL OR supply > 0),
    starts_at INTEGER,
    ends_at INTEGER,
    voucher_expires_at INTEGER,
    voucher_valid_for_ms INTEGER CHECK (voucher_valid_for_ms IS NULL OR voucher_valid_for_ms > 0),
    price_amount INTEGER CHECK (price_amount IS NULL OR price_amount >= 0),
    price_currency TEXT,
    per_user_limit INTEGER NOT NULL CHECK (per_user_limit > 0),
    daily_limit_group TEXT,
    trigger TEXT NOT NULL CHECK (trigger IN ('claim', 'first_login')),
    reservation_ttl_ms INTEGER NOT NULL CHECK (reservation_ttl_ms > 0),
    lock_ttl_ms INTEGER NOT NULL CHECK (lock_ttl_ms > 0),
    redemptions_max INTEGER NOT NULL CHECK (redemptions_max > 0),
    code_pattern TEXT,
    lifecycle TEXT NOT NULL CHECK (lifecycle IN ('draft', 'live', 'paused')),
    -- Ranks 1..voucher_count exist as voucher rows.
    voucher_count INTEGER NOT NULL DEFAULT 0 CHECK (voucher_count >= 0),
    created_at INTEGER NOT NULL,
    published_at INTEGER,
    CHECK (supply IS NULL OR voucher_count <= supply),
    CHECK ((price_amount IS NULL) = (price_currency IS NULL)),
    CHECK (lifecycle = 'draft' OR published_at IS NOT NULL),
    CHECK (lifecycle = 'draft' OR supply IS NULL OR voucher_count = supply)
) STRICT;

CREATE INDEX campaigns_tenant ON campaigns (tenant_id);

CREATE TABLE campaign_tiers (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    until_rank INTEGER NOT NULL CHECK (until_rank > 0),
    discount_percent INTEGER NOT NULL CHECK (discount_percent BETWEEN 0 AND 100),
    PRIMARY KEY (campaign_id, until_rank)
) STRICT, WITHOUT ROWID;

CREATE TABLE vouchers (
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
    UNIQUE (campaign_id, rank),
    UNIQUE (tenant_id, code),
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
) STRICT;

-- The lowest free rank of a campaign is one index probe away.
CREATE INDEX vouchers_available ON vouchers (campaign_id, rank) WHERE state = 'available';
CREATE INDEX vouchers_user ON vouchers (tenant_id, user_id) WHERE user_id IS NOT NULL;
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

CREATE TRIGGER vouchers_slot_within_limit_on_update
BEFORE UPDATE OF user_slot ON vouchers
WHEN NEW.user_slot > (SELECT per_user_limit FROM campaigns WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(ABORT, 'user slot exceeds the per-user limit');
END;

-- Ranks and codes are fixed once made.
CREATE TRIGGER vouchers_rank_and_code_fixed
BEFORE UPDATE OF rank, code, campaign_id, tenant_id ON vouchers
BEGIN
    SELECT RAISE(ABORT, 'voucher rank, code and campaign never change');
END;

-- One voucher per user, group and calendar day (in the tenant's zone).
CREATE TABLE daily_grants (
    tenant_id TEXT NOT NULL,
    limit_group TEXT NOT NULL,
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    voucher_id TEXT NOT NULL UNIQUE REFERENCES vouchers (id),
    PRIMARY KEY (tenant_id, limit_group, user_id, day)
) STRICT, WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    status INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, principal, key)
) STRICT, WITHOUT ROWID;

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
