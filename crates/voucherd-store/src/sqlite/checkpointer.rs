//! Checkpoints of the write-ahead log, off the writer's thread.
//!
//! By default SQLite checkpoints in the connection that commits once the
//! log passes 1,000 pages: the writer then copies pages into the database
//! file and fsyncs it before it answers anyone. Under a large upload that
//! was a fifth of the writer's time, in stalls that every claim queued
//! behind. The writer turns that off, and this thread runs passive
//! checkpoints on its own connection instead; a passive checkpoint never
//! waits for, nor blocks, the writer or a reader.
//!
//! A log is started again from its beginning only after a checkpoint that
//! copied all of it, which a thread racing a busy writer never quite
//! manages. So once the log passes `LOG_FRAMES_MAX`, this thread asks the
//! writer to finish: between two groups the writer copies the few frames
//! written since this thread's pass, and its next group reuses the log.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use super::connection::{self, database};
use crate::{StoreError, StoreResult};

/// How often the log is checkpointed: short enough that it stays a few
/// megabytes under the heaviest writes.
const INTERVAL: Duration = Duration::from_millis(100);

/// Frames (pages) of log past which the writer is asked to finish a
/// checkpoint: about 16 MiB of 4 KiB pages.
const LOG_FRAMES_MAX: i64 = 4_000;

/// Stops its thread when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Makes `writer` leave checkpoints to a thread of its own.
    pub(crate) fn start(
        path: &Path,
        writer: &Connection,
        checkpoint_due: Arc<AtomicBool>,
    ) -> StoreResult<Checkpointer> {
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(database)?;
        let checkpoints = connection::open_writer(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Until the store is dropped (its sender with it).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    match checkpoint(&checkpoints) {
                        Ok(log) if log > LOG_FRAMES_MAX => {
                            checkpoint_due.store(true, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "a passive WAL checkpoint failed"),
                    }
                }
            })
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        Ok(Checkpointer { _stop: stop })
    }
}

/// A passive checkpoint; answers how many frames the log holds.
pub(crate) fn checkpoint(connection: &Connection) -> rusqlite::Result<i64> {
    // (busy, frames in the log, frames checkpointed): busy when another
    // connection checkpoints at the same moment (one closing, another
    // process); the next round goes on where it stopped.
    let (busy, log, done): (i64, i64, i64) =
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    tracing::trace!(busy, log, done, "WAL checkpoint");
    Ok(log)
}
