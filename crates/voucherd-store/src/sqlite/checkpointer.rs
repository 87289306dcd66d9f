//! Checkpoints of the write-ahead log, mostly off the writer's thread.
//!
//! SQLite checkpoints in the connection that commits once the log passes
//! `wal_autocheckpoint` pages: the writer then copies every page of the
//! log not yet copied into the database file and fsyncs both files before
//! it answers anyone. Every claim queued meanwhile waits for that. This
//! thread runs passive checkpoints on its own connection (one never waits
//! for, nor blocks, the writer or a reader), so when the writer's own
//! checkpoint comes, the pages are already copied and it has only the few
//! written since the last round. The writer keeps its checkpoint because
//! only a checkpoint that copied the whole log lets the log start again
//! from its beginning, which a thread racing a busy writer never quite
//! manages: the log takes no more room on the disk than it did.
//!
//! While the log grows, a round follows the last after `BUSY_INTERVAL`:
//! what the writer copies itself is at most that long's writes. Every
//! 100 ms was too seldom under a publish: a slice of codes writes a few
//! hundred pages, so the writer copied most of a thousand pages itself at
//! every fourth slice, and each of those slices took four times as long,
//! with the claims behind it (BENCHMARKS.md, sixth pass). Once the log
//! stops growing, rounds come every `IDLE_INTERVAL`.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use super::connection;
use crate::{StoreError, StoreResult};

/// How soon a round follows one that found the log grown.
const BUSY_INTERVAL: Duration = Duration::from_millis(5);
/// How soon a round follows one that found the log as it was.
const IDLE_INTERVAL: Duration = Duration::from_millis(100);

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
                let mut seen = None;
                let mut interval = IDLE_INTERVAL;
                // Until the store is dropped (its sender with it).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    match checkpoint(&checkpoints) {
                        Ok(log) => {
                            interval = next_interval(seen, log);
                            seen = Some(log);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "a passive WAL checkpoint failed");
                            interval = IDLE_INTERVAL;
                        }
                    }
                }
            })
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        Ok(Checkpointer { _stop: stop })
    }
}

/// The wait before the next round, from the log's length (in frames) at
/// the round before and at this one: a log that changed (grew, or started
/// again from its beginning) is being written.
fn next_interval(seen: Option<i64>, log: i64) -> Duration {
    if seen == Some(log) {
        IDLE_INTERVAL
    } else {
        BUSY_INTERVAL
    }
}

/// One passive round; the log's length in frames.
fn checkpoint(connection: &Connection) -> rusqlite::Result<i64> {
    // (busy, frames in the log, frames checkpointed): busy when another
    // connection checkpoints at the same moment (the writer, one closing,
    // another process); the next round goes on where it stopped.
    let (busy, log, done): (i64, i64, i64) =
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    tracing::trace!(busy, log, done, "WAL checkpoint");
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_come_often_while_the_log_changes_and_seldom_once_it_rests() {
        assert_eq!(next_interval(None, 0), BUSY_INTERVAL);
        assert_eq!(next_interval(Some(0), 120), BUSY_INTERVAL);
        // Started again from its beginning: shorter, still written.
        assert_eq!(next_interval(Some(3_000), 40), BUSY_INTERVAL);
        assert_eq!(next_interval(Some(40), 40), IDLE_INTERVAL);
        assert!(BUSY_INTERVAL < IDLE_INTERVAL);
    }
}
