//! Responses kept for replay under their idempotency keys.

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Row;
use voucherd_core::Timestamp;

use super::connection::database;
use super::rows::{get, stored};
use crate::StoreResult;
use crate::model::{IdempotencyScope, StoredResponse};
use crate::stored::corrupt;

const RESPONSE_COLUMNS: &str = "fingerprint, status, content_type, body, created_at";

pub(crate) async fn find(
    client: &ClientWrapper,
    scope: &IdempotencyScope,
) -> StoreResult<Option<StoredResponse>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {RESPONSE_COLUMNS} FROM idempotency_keys
             WHERE tenant_id = $1 AND principal = $2 AND key = $3"
        ))
        .await
        .map_err(database)?;
    client
        .query_opt(
            &statement,
            &[scope.tenant_id.as_uuid(), &scope.principal, &scope.key],
        )
        .await
        .map_err(database)?
        .as_ref()
        .map(response)
        .transpose()
}

fn response(row: &Row) -> StoreResult<StoredResponse> {
    let status: i32 = get(row, 1)?;
    Ok(StoredResponse {
        fingerprint: get(row, 0)?,
        status: u16::try_from(status).map_err(corrupt)?,
        content_type: get(row, 2)?,
        body: get(row, 3)?,
        created_at: get(row, 4)?,
    })
}

pub(crate) async fn keep(
    client: &ClientWrapper,
    scope: &IdempotencyScope,
    kept: &StoredResponse,
) -> StoreResult<StoredResponse> {
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO idempotency_keys (tenant_id, principal, key, {RESPONSE_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING
             RETURNING {RESPONSE_COLUMNS}"
        ))
        .await
        .map_err(database)?;
    let inserted = client
        .query_opt(
            &statement,
            &[
                scope.tenant_id.as_uuid(),
                &scope.principal,
                &scope.key,
                &kept.fingerprint,
                &i32::from(kept.status),
                &kept.content_type,
                &kept.body,
                &stored(kept.created_at),
            ],
        )
        .await
        .map_err(database)?;
    if let Some(row) = inserted {
        return response(&row);
    }
    // Another request keeps its response under this key; the conflict
    // waited for it to commit, so a new statement sees it.
    find(client, scope)
        .await?
        .ok_or_else(|| corrupt("a stored response vanished"))
}

pub(crate) async fn forget(
    client: &ClientWrapper,
    before: Timestamp,
    limit: u32,
) -> StoreResult<u32> {
    let statement = client
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE (tenant_id, principal, key) IN (
                 SELECT tenant_id, principal, key FROM idempotency_keys
                 WHERE created_at < $1 LIMIT $2
             )",
        )
        .await
        .map_err(database)?;
    let forgotten = client
        .execute(&statement, &[&stored(before), &i64::from(limit)])
        .await
        .map_err(database)?;
    u32::try_from(forgotten).map_err(corrupt)
}
