-- A campaign whose generated codes are made by the claims that take them,
-- up to its supply (as an unlimited campaign's always are): its publish
-- makes none, so it is live with fewer voucher rows than its supply.
-- vouchers_rank_within_supply still bounds what the claims make.
ALTER TABLE campaigns ADD COLUMN codes_on_claim boolean NOT NULL DEFAULT false;

-- The foundation left two checks unnamed; they are found by what they say.
-- That a live campaign has its whole supply gives way for codes made on
-- claim. That no more ranks are counted than the supply gets a name: a
-- claim batch that minted on a room its snapshot overstated (another batch
-- minted meanwhile) is refused by it, and runs again (postgres/claims.rs).
DO $$
DECLARE
    found text;
BEGIN
    SELECT conname INTO STRICT found
    FROM pg_constraint
    WHERE conrelid = 'campaigns'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) LIKE '%(voucher_count = supply)%';
    EXECUTE format('ALTER TABLE campaigns DROP CONSTRAINT %I', found);
    SELECT conname INTO STRICT found
    FROM pg_constraint
    WHERE conrelid = 'campaigns'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) LIKE '%(voucher_count <= supply)%';
    EXECUTE format('ALTER TABLE campaigns DROP CONSTRAINT %I', found);
END
$$;

ALTER TABLE campaigns ADD CONSTRAINT campaigns_count_within_supply
    CHECK (supply IS NULL OR voucher_count <= supply);
ALTER TABLE campaigns ADD CONSTRAINT campaigns_live_with_codes
    CHECK (lifecycle = 'draft' OR supply IS NULL OR voucher_count = supply OR codes_on_claim);
ALTER TABLE campaigns ADD CONSTRAINT campaigns_on_claim_with_pattern
    CHECK (NOT codes_on_claim OR code_pattern IS NOT NULL);
