//! Gateway shares on PostgreSQL: one transaction per request, serialised
//! per gateway by an advisory lock, so that the rows read are the rows the
//! grant is decided against.

use tokio_postgres::Transaction;
use voucherd_core::share::{ShareLease, share_of};

use super::connection::database;
use super::rows::get;
use crate::StoreResult;
use crate::model::ShareRequest;

pub(crate) async fn share(
    transaction: &Transaction<'_>,
    request: &ShareRequest,
) -> StoreResult<u32> {
    let now_ms = request.now.as_millisecond();
    let counted_until_ms = request.counted_until.as_millisecond();
    assert!(counted_until_ms >= now_ms, "a grant counts from now on");
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('voucherd gateway ' || $1, 0))",
            &[&request.gateway],
        )
        .await
        .map_err(database)?;
    transaction
        .execute(
            "DELETE FROM gateway_shares WHERE gateway = $1 AND counted_until_ms < $2",
            &[&request.gateway, &now_ms],
        )
        .await
        .map_err(database)?;
    let rows = transaction
        .query(
            "SELECT node, share, want, granted_at_ms FROM gateway_shares WHERE gateway = $1",
            &[&request.gateway],
        )
        .await
        .map_err(database)?;
    let mut leases = Vec::with_capacity(rows.len());
    for row in &rows {
        let share: i32 = get(row, 1)?;
        let want: i32 = get(row, 2)?;
        leases.push(ShareLease {
            node: get(row, 0)?,
            share: u32::try_from(share).unwrap_or(0),
            want: u32::try_from(want).unwrap_or(0),
            granted_at_ms: get(row, 3)?,
        });
    }
    let granted = share_of(request.rate, &request.node, request.want, &leases);
    let (share, want) = (granted as i32, request.want.min(i32::MAX as u32) as i32);
    transaction
        .execute(
            "INSERT INTO gateway_shares (gateway, node, share, want, granted_at_ms, counted_until_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&request.gateway, &request.node, &share, &want, &now_ms, &counted_until_ms],
        )
        .await
        .map_err(database)?;
    Ok(granted)
}
