//! Responses kept for replay under their idempotency keys.

use rusqlite::{Connection, params};
use voucherd_core::Timestamp;

use super::connection::database;
use super::rows::{self, millis};
use crate::StoreResult;
use crate::model::{IdempotencyScope, StoredResponse};

pub(crate) fn find(
    connection: &Connection,
    scope: &IdempotencyScope,
) -> StoreResult<Option<StoredResponse>> {
    let mut statement = connection
        .prepare_cached(
            "SELECT fingerprint, status, content_type, body, created_at FROM idempotency_keys
             WHERE tenant_id = ?1 AND principal = ?2 AND key = ?3",
        )
        .map_err(database)?;
    let mut found = statement
        .query(params![
            scope.tenant_id.to_string(),
            scope.principal,
            scope.key
        ])
        .map_err(database)?;
    let Some(row) = found.next().map_err(database)? else {
        return Ok(None);
    };
    let status: i64 = row.get(1).map_err(database)?;
    Ok(Some(StoredResponse {
        fingerprint: row.get(0).map_err(database)?,
        status: u16::try_from(status).map_err(rows::corrupt)?,
        content_type: row.get(2).map_err(database)?,
        body: row.get(3).map_err(database)?,
        created_at: rows::timestamp(row.get(4).map_err(database)?)?,
    }))
}

pub(crate) fn keep(
    connection: &Connection,
    scope: &IdempotencyScope,
    response: &StoredResponse,
) -> StoreResult<StoredResponse> {
    connection
        .prepare_cached(
            "INSERT INTO idempotency_keys
                 (tenant_id, principal, key, fingerprint, status, content_type, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                scope.tenant_id.to_string(),
                scope.principal,
                scope.key,
                response.fingerprint,
                response.status,
                response.content_type,
                response.body,
                millis(response.created_at)
            ])
        })
        .map_err(database)?;
    find(connection, scope)?.ok_or_else(|| rows::corrupt("a stored response vanished"))
}

pub(crate) fn forget(connection: &Connection, before: Timestamp, limit: u32) -> StoreResult<u32> {
    let forgotten = connection
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE (tenant_id, principal, key) IN (
                 SELECT tenant_id, principal, key FROM idempotency_keys
                 WHERE created_at < ?1 LIMIT ?2
             )",
        )
        .and_then(|mut statement| statement.execute(params![millis(before), limit]))
        .map_err(database)?;
    u32::try_from(forgotten).map_err(rows::corrupt)
}
