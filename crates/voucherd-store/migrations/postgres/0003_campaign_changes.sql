-- Nodes follow each other's campaign changes from a cursor instead of
-- reading the whole table: every insert or update of a campaign stamps the
-- row with the id of its transaction. A reader takes the rows stamped at or
-- after its cursor, and moves the cursor to the oldest transaction still
-- running when it read (pg_snapshot_xmin): a change whose transaction
-- commits later has an id at or past that, so the next read finds it.
ALTER TABLE campaigns ADD COLUMN change_xid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE FUNCTION campaigns_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER campaigns_stamp_insert BEFORE INSERT ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_stamp_change();

-- What nodes follow: a draft's codes, publishing, pausing, resuming. A
-- claim that mints a voucher of an unlimited campaign counts it in
-- voucher_count; that is not a change to follow, and the claim path pays
-- no trigger for it.
CREATE TRIGGER campaigns_stamp_update BEFORE UPDATE ON campaigns
    FOR EACH ROW
    WHEN (OLD.lifecycle = 'draft'
          OR NEW.lifecycle IS DISTINCT FROM OLD.lifecycle
          OR NEW.published_at IS DISTINCT FROM OLD.published_at)
    EXECUTE FUNCTION campaigns_stamp_change();

CREATE INDEX campaigns_change_xid ON campaigns (change_xid);

-- A login asks which first_login campaigns of the tenant are published.
CREATE INDEX campaigns_first_login ON campaigns (tenant_id)
    WHERE trigger = 'first_login' AND lifecycle <> 'draft';
