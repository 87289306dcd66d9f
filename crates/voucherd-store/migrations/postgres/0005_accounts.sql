-- People who sign in to a tenant's pages: customers, and the tenant's
-- admins. The email is kept lower-cased; password_hash is an argon2id PHC
-- string, never the password.
CREATE TABLE accounts (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    user_id text NOT NULL,
    role text NOT NULL CHECK (role IN ('customer', 'admin')),
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, email)
);
