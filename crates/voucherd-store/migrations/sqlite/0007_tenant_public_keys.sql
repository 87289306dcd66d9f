-- Public keys a tenant registered (JWKs: EdDSA or ES256) so that a
-- partner's own identity provider signs tokens voucherd only verifies.
CREATE TABLE tenant_public_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    key_id TEXT NOT NULL,
    jwk TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
) STRICT;
