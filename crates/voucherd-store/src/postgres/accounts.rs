//! Accounts on PostgreSQL.

use tokio_postgres::{Client, Row};
use voucherd_core::ids::TenantId;

use super::connection::database;
use super::rows::get;
use crate::StoreResult;
use crate::model::Account;
use crate::stored::AccountValues;

const ACCOUNT_COLUMNS: &str = "tenant_id, email, user_id, role, password_hash, created_at";

/// Adds the account unless its email is taken in the tenant; answers
/// whether it was added.
pub(crate) async fn insert(client: &Client, account: &Account) -> StoreResult<bool> {
    let added = client
        .execute(
            &format!(
                "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant_id, email) DO NOTHING"
            ),
            &[
                account.tenant_id.as_uuid(),
                &account.email,
                &account.user_id.as_str(),
                &account.role.as_str(),
                &account.password_hash,
                &super::rows::stored(account.created_at),
            ],
        )
        .await
        .map_err(database)?;
    assert!(added <= 1, "one account a tenant and email");
    Ok(added == 1)
}

pub(crate) async fn by_email(
    client: &Client,
    tenant_id: TenantId,
    email: &str,
) -> StoreResult<Option<Account>> {
    client
        .query_opt(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = $1 AND email = $2"),
            &[tenant_id.as_uuid(), &email],
        )
        .await
        .map_err(database)?
        .map(|row| values(&row)?.into_account())
        .transpose()
}

fn values(row: &Row) -> StoreResult<AccountValues> {
    Ok(AccountValues {
        tenant_id: get::<uuid::Uuid>(row, 0)?.to_string(),
        email: get(row, 1)?,
        user_id: get(row, 2)?,
        role: get(row, 3)?,
        password_hash: get(row, 4)?,
        created_at: get(row, 5)?,
    })
}
