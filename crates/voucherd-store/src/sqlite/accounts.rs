//! Accounts on SQLite: added on the writer, read by the readers.

use rusqlite::{Connection, OptionalExtension, Row};
use voucherd_core::ids::TenantId;

use super::connection::database;
use super::rows::{millis, timestamp};
use crate::StoreResult;
use crate::model::Account;
use crate::stored::AccountValues;

const ACCOUNT_COLUMNS: &str = "tenant_id, email, user_id, role, password_hash, created_at";

/// Adds the account unless its email is taken in the tenant; answers
/// whether it was added.
pub(crate) fn insert(connection: &Connection, account: &Account) -> StoreResult<bool> {
    let added = connection
        .prepare_cached(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (tenant_id, email) DO NOTHING"
        ))
        .and_then(|mut statement| {
            statement.execute((
                account.tenant_id.to_string(),
                &account.email,
                account.user_id.as_str(),
                account.role.as_str(),
                &account.password_hash,
                millis(account.created_at),
            ))
        })
        .map_err(database)?;
    assert!(added <= 1, "one account a tenant and email");
    Ok(added == 1)
}

pub(crate) fn by_email(
    connection: &Connection,
    tenant_id: TenantId,
    email: &str,
) -> StoreResult<Option<Account>> {
    connection
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = ?1 AND email = ?2"
        ))
        .and_then(|mut statement| {
            statement
                .query_row((tenant_id.to_string(), email), |row| Ok(values(row)))
                .optional()
        })
        .map_err(database)?
        .transpose()?
        .map(AccountValues::into_account)
        .transpose()
}

fn values(row: &Row<'_>) -> StoreResult<AccountValues> {
    let get = |index| -> StoreResult<String> { row.get(index).map_err(database) };
    Ok(AccountValues {
        tenant_id: get(0)?,
        email: get(1)?,
        user_id: get(2)?,
        role: get(3)?,
        password_hash: get(4)?,
        created_at: timestamp(row.get(5).map_err(database)?)?,
    })
}
