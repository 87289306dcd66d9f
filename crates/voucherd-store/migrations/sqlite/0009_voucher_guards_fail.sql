-- The guards a claim's update passes raise FAIL instead of ABORT. A
-- statement that may ABORT makes SQLite copy every page it touches into a
-- statement journal before it writes, so that it can undo the statement
-- alone: about a fifth of a claim's writer instructions. These guards run
-- BEFORE the row is written, so FAIL leaves nothing of the refused row
-- behind; and every writer job runs in a savepoint that is rolled back
-- when the job fails, so a statement refused half-way through a multi-row
-- update never commits either.

DROP TRIGGER vouchers_slot_within_limit_on_update;
CREATE TRIGGER vouchers_slot_within_limit_on_update
BEFORE UPDATE OF user_slot ON vouchers
WHEN NEW.user_slot > (SELECT per_user_limit FROM campaigns WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(FAIL, 'user slot exceeds the per-user limit');
END;

DROP TRIGGER vouchers_sale_issued_only_when_paid;
CREATE TRIGGER vouchers_sale_issued_only_when_paid
BEFORE UPDATE OF state ON vouchers
WHEN NEW.state = 'issued' AND OLD.state = 'reserved'
    AND NOT EXISTS (SELECT 1 FROM orders WHERE voucher_id = NEW.id AND status = 'paid')
BEGIN
    SELECT RAISE(FAIL, 'a reserved voucher is issued only against a paid order');
END;
