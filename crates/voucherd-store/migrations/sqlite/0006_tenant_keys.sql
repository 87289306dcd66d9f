-- Tenant keys carry an id (a token's `kid`); a rotated key is kept, with
-- when it was retired, so that the tokens it signed before verify until
-- they expire. Keys made before ids existed are `k1`.
ALTER TABLE tenants ADD COLUMN key_id TEXT NOT NULL DEFAULT 'k1';

CREATE TABLE tenant_retired_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    key_id TEXT NOT NULL,
    signing_key BLOB NOT NULL,
    retired_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
) STRICT;
