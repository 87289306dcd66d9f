//! Gateway shares on SQLite: one process writes the database, so a node
//! here shares a gateway only with its own earlier runs, whose rows still
//! count until they lapse. The decision is the same as on PostgreSQL.

use rusqlite::Connection;
use voucherd_core::share::{ShareLease, share_of};

use super::connection::database;
use crate::StoreResult;
use crate::model::ShareRequest;

/// Runs on the writer, whose one connection decides requests in turn.
pub(crate) fn share(connection: &Connection, request: &ShareRequest) -> StoreResult<u32> {
    let now_ms = request.now.as_millisecond();
    let counted_until_ms = request.counted_until.as_millisecond();
    assert!(counted_until_ms >= now_ms, "a grant counts from now on");
    connection
        .prepare_cached("DELETE FROM gateway_shares WHERE gateway = ?1 AND counted_until_ms < ?2")
        .and_then(|mut statement| statement.execute((&request.gateway, now_ms)))
        .map_err(database)?;
    let mut statement = connection
        .prepare_cached(
            "SELECT node, share, want, granted_at_ms FROM gateway_shares WHERE gateway = ?1",
        )
        .map_err(database)?;
    let leases = statement
        .query_map([&request.gateway], |row| {
            Ok(ShareLease {
                node: row.get(0)?,
                share: row.get(1)?,
                want: row.get(2)?,
                granted_at_ms: row.get(3)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<ShareLease>>>())
        .map_err(database)?;
    let granted = share_of(request.rate, &request.node, request.want, &leases);
    connection
        .prepare_cached(
            "INSERT INTO gateway_shares (gateway, node, share, want, granted_at_ms, counted_until_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut statement| {
            statement.execute((
                &request.gateway,
                &request.node,
                granted,
                request.want,
                now_ms,
                counted_until_ms,
            ))
        })
        .map_err(database)?;
    Ok(granted)
}
