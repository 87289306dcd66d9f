-- One index says who holds a voucher, and only held vouchers are in it.
--
-- Before, two indexes covered the holder: the table's UNIQUE (campaign_id,
-- user_id, user_slot), which also held an entry for every available
-- voucher (with NULLs), and vouchers_user (tenant_id, user_id). A claim is
-- an update no index can skip, so it added an entry to both, and every
-- generated code one to the first. vouchers_holder is the same uniqueness
-- (the same three columns) over held vouchers only: a claim adds one
-- entry, and a generated code none. "My vouchers" finds a user's vouchers
-- by user_id and keeps the tenant's.

CREATE UNIQUE INDEX vouchers_holder ON vouchers (user_id, campaign_id, user_slot)
    WHERE user_id IS NOT NULL;
ALTER TABLE vouchers DROP CONSTRAINT vouchers_campaign_id_user_id_user_slot_key;
DROP INDEX vouchers_user;
