-- Public keys a tenant registered (JWKs: EdDSA or ES256) so that a
-- partner's own identity provider signs tokens voucherd only verifies.
CREATE TABLE tenant_public_keys (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    key_id text NOT NULL,
    jwk text NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);
