-- People who sign in to a tenant's pages: customers, and the tenant's
-- admins. The email is kept lower-cased; password_hash is an argon2id PHC
-- string, never the password.
CREATE TABLE accounts (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    email TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    user_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, email)
) STRICT;
