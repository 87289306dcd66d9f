-- A campaign whose generated codes are made by the claims that take them,
-- up to its supply (as an unlimited campaign's always are): its publish
-- makes none, so it is live with fewer voucher rows than its supply.
-- vouchers_rank_within_supply still bounds what the claims make.
--
-- A table constraint cannot be changed in SQLite, so the table is made
-- again (the migration runs with foreign keys off and checks them before
-- it commits). The triggers on vouchers that read campaigns are dropped
-- first and made again, so that no trigger names a missing table while
-- the new one is renamed; every index and trigger of campaigns is made
-- again as it stood after migration 0010.
--
-- The two guards of an inserted voucher now raise FAIL rather than ABORT,
-- as the update guards do since migration 0009: a claim that mints inserts
-- its voucher, and a statement that may ABORT makes SQLite copy every page
-- it touches into a statement journal first. They run BEFORE the row is
-- written, and every writer job runs in a savepoint that is rolled back
-- when the job fails, so nothing of a refused insert ever commits.

DROP TRIGGER vouchers_rank_within_supply;
DROP TRIGGER vouchers_slot_within_limit_on_insert;
DROP TRIGGER vouchers_slot_within_limit_on_update;

CREATE TABLE campaigns_on_claim (
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
    change_seq INTEGER NOT NULL DEFAULT 0,
    upload_id TEXT,
    upload_staged INTEGER NOT NULL DEFAULT 0 CHECK (upload_staged >= 0),
    upload_until INTEGER,
    -- Claims make the codes, up to the supply; only with a pattern.
    codes_on_claim INTEGER NOT NULL DEFAULT 0 CHECK (codes_on_claim IN (0, 1)),
    CHECK (supply IS NULL OR voucher_count <= supply),
    CHECK ((price_amount IS NULL) = (price_currency IS NULL)),
    CHECK (lifecycle = 'draft' OR published_at IS NOT NULL),
    CHECK (lifecycle = 'draft' OR supply IS NULL OR voucher_count = supply OR codes_on_claim = 1),
    CHECK (codes_on_claim = 0 OR code_pattern IS NOT NULL)
) STRICT;

INSERT INTO campaigns_on_claim (id, tenant_id, name, message, description, terms, kind, supply,
    starts_at, ends_at, voucher_expires_at, voucher_valid_for_ms, price_amount, price_currency,
    per_user_limit, daily_limit_group, trigger, reservation_ttl_ms, lock_ttl_ms, redemptions_max,
    code_pattern, lifecycle, voucher_count, created_at, published_at, change_seq, upload_id,
    upload_staged, upload_until, codes_on_claim)
SELECT id, tenant_id, name, message, description, terms, kind, supply,
    starts_at, ends_at, voucher_expires_at, voucher_valid_for_ms, price_amount, price_currency,
    per_user_limit, daily_limit_group, trigger, reservation_ttl_ms, lock_ttl_ms, redemptions_max,
    code_pattern, lifecycle, voucher_count, created_at, published_at, change_seq, upload_id,
    upload_staged, upload_until, 0
FROM campaigns;

DROP TABLE campaigns;
ALTER TABLE campaigns_on_claim RENAME TO campaigns;

CREATE INDEX campaigns_tenant ON campaigns (tenant_id);
CREATE INDEX campaigns_change_seq ON campaigns (change_seq);
CREATE INDEX campaigns_first_login ON campaigns (tenant_id)
    WHERE trigger = 'first_login' AND lifecycle <> 'draft';

CREATE TRIGGER campaigns_stamp_insert AFTER INSERT ON campaigns
BEGIN
    UPDATE campaigns
    SET change_seq = (SELECT coalesce(max(change_seq), 0) + 1 FROM campaigns)
    WHERE id = NEW.id;
END;

CREATE TRIGGER campaigns_stamp_update AFTER UPDATE ON campaigns
    WHEN NEW.change_seq = OLD.change_seq
     AND (OLD.lifecycle = 'draft'
          OR NEW.lifecycle IS NOT OLD.lifecycle
          OR NEW.published_at IS NOT OLD.published_at)
BEGIN
    UPDATE campaigns
    SET change_seq = (SELECT coalesce(max(change_seq), 0) + 1 FROM campaigns)
    WHERE id = NEW.id;
END;

CREATE TRIGGER vouchers_rank_within_supply
BEFORE INSERT ON vouchers
WHEN NEW.rank > (SELECT supply FROM campaigns WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(FAIL, 'voucher rank exceeds the campaign supply');
END;

CREATE TRIGGER vouchers_slot_within_limit_on_insert
BEFORE INSERT ON vouchers
WHEN NEW.user_slot > (SELECT per_user_limit FROM campaigns WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(FAIL, 'user slot exceeds the per-user limit');
END;

CREATE TRIGGER vouchers_slot_within_limit_on_update
BEFORE UPDATE OF user_slot ON vouchers
WHEN NEW.user_slot > (SELECT per_user_limit FROM campaigns WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(FAIL, 'user slot exceeds the per-user limit');
END;
