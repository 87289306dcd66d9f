-- An upload stages its codes as voucher rows past voucher_count, which
-- nobody reads, and counts them only when it commits; while it stages, the
-- campaign is the upload's until upload_until. Rows past voucher_count
-- exist only while upload_id is set, and a campaign goes live only without
-- one.
ALTER TABLE campaigns ADD COLUMN upload_id uuid;
ALTER TABLE campaigns ADD COLUMN upload_staged bigint NOT NULL DEFAULT 0 CHECK (upload_staged >= 0);
ALTER TABLE campaigns ADD COLUMN upload_until timestamptz;
