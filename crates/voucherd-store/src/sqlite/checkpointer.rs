//! Checkpoints of the write-ahead log, mostly off the writer's thread.
//!
//! SQLite checkpoints in the connection that commits once the log passes
//! 1,000 pages: the writer then copies every page of the log into the
//! database file and fsyncs it before it answers anyone. Under a large
//! upload that was a fifth of the writer's time, in stalls that every
//! claim queued behind. This thread runs a passive checkpoint every
//! 100 ms on its own connection (one never waits for, nor blocks, the
//! writer or a reader), so when the writer's own checkpoint comes, the
//! pages are already copied and it has only the few written since. The
//! writer keeps its checkpoint because only a checkpoint that copied the
//! whole log lets the log start again from its beginning, which a thread
//! racing a busy writer never quite manages: the log takes no more room
//! on the disk than it did.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use super::connection;
use crate::{StoreError, StoreResult};

/// How often the log is checkpointed.
const INTERVAL: Duration = Duration::from_millis(100);

/// Stops its thread when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> StoreResult<Checkpointer> {
        let checkpoints = connection::open_writer(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Until the store is dropped (its sender with it).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(error) = checkpoint(&checkpoints) {
                        tracing::warn!(%error, "a passive WAL checkpoint failed");
                    }
                }
            })
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn checkpoint(connection: &Connection) -> rusqlite::Result<()> {
    // (busy, frames in the log, frames checkpointed): busy when another
    // connection checkpoints at the same moment (the writer, one closing,
    // another process); the next round goes on where it stopped.
    let (busy, log, done): (i64, i64, i64) =
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    tracing::trace!(busy, log, done, "WAL checkpoint");
    Ok(())
}
