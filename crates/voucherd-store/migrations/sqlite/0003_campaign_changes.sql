-- A change sequence on campaigns, so that memory follows the store from a
-- cursor instead of reading the whole table. One process writes an SQLite
-- database, through one connection, so sequence numbers commit in order:
-- a reader that has seen n has seen everything up to n.
ALTER TABLE campaigns ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;

UPDATE campaigns SET change_seq = rowid;

CREATE INDEX campaigns_change_seq ON campaigns (change_seq);

CREATE TRIGGER campaigns_stamp_insert AFTER INSERT ON campaigns
BEGIN
    UPDATE campaigns
    SET change_seq = (SELECT coalesce(max(change_seq), 0) + 1 FROM campaigns)
    WHERE id = NEW.id;
END;

-- What nodes follow: a draft's codes, publishing, pausing, resuming; not
-- the count a claim minting from an unlimited campaign keeps. The
-- trigger's own update leaves change_seq changed, so it does not recurse.
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

CREATE INDEX campaigns_first_login ON campaigns (tenant_id)
    WHERE trigger = 'first_login' AND lifecycle <> 'draft';
