//! The single writer of an SQLite database, with group commit.
//!
//! SQLite admits one writer at a time, and what costs is the fsync at
//! commit, not the statements. So every write of the process goes to one
//! thread that owns the write connection; it takes whatever work has queued
//! up (up to `group_max` jobs), runs each job in its own savepoint, commits
//! them all with one fsync, and only then answers each job. A job that fails
//! is rolled back to its savepoint and does not take the others down.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::connection::command;
use crate::{StoreError, StoreResult};

/// What a job hands back once the group's commit is known.
type Delivery = Box<dyn FnOnce(Result<(), &str>) + Send>;
/// A job runs in the group's transaction, or is handed `None` when that
/// transaction could not even begin; it says whether it succeeded.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Delivery) + Send>;

#[derive(Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// How many jobs may wait for the writer before callers wait to enqueue.
    const QUEUE_MAX: usize = 4_096;

    pub(crate) fn start(connection: Connection, group_max: usize) -> StoreResult<Writer> {
        let (jobs, receiver) = mpsc::channel(Writer::QUEUE_MAX);
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(connection, receiver, group_max.max(1)))
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the next group's transaction and answers once that
    /// transaction committed. An error from `work` rolls back its own changes
    /// only.
    pub(crate) async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = match connection {
                Some(connection) => catch_unwind(AssertUnwindSafe(|| work(connection)))
                    .unwrap_or_else(|_| Err(StoreError::Database("a write job panicked".into()))),
                None => Err(StoreError::Database(
                    "the write transaction did not begin".into(),
                )),
            };
            let succeeded = result.is_ok();
            let delivery: Delivery = Box::new(move |committed| {
                let answer_result = match committed {
                    Ok(()) => result,
                    Err(message) => Err(StoreError::Database(message.to_owned().into())),
                };
                // The caller may have given up waiting; nothing to do then.
                let _ = answer.send(answer_result);
            });
            (succeeded, delivery)
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

fn write_loop(connection: Connection, mut receiver: mpsc::Receiver<Job>, group_max: usize) {
    let mut group = Vec::with_capacity(group_max);
    while let Some(first) = receiver.blocking_recv() {
        group.push(first);
        while group.len() < group_max {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (deliveries, committed) = match command(&connection, "BEGIN IMMEDIATE") {
            Ok(()) => {
                let deliveries: Vec<Delivery> = group
                    .drain(..)
                    .map(|job| run_in_savepoint(&connection, job))
                    .collect();
                (deliveries, commit(&connection))
            }
            Err(error) => {
                tracing::error!(%error, "starting a write group failed");
                let deliveries = group.drain(..).map(|job| job(None).1).collect();
                (deliveries, Err(error.to_string()))
            }
        };
        for delivery in deliveries {
            delivery(committed.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

fn commit(connection: &Connection) -> Result<(), String> {
    command(connection, "COMMIT").map_err(|error| {
        tracing::error!(%error, "committing a write group failed");
        // Nothing of the group may survive a failed commit.
        let _ = connection.execute_batch("ROLLBACK");
        error.to_string()
    })
}

fn run_in_savepoint(connection: &Connection, job: Job) -> Delivery {
    if let Err(error) = command(connection, "SAVEPOINT job") {
        tracing::error!(%error, "opening a job's savepoint failed");
        return job(None).1;
    }
    let (succeeded, delivery) = job(Some(connection));
    let rolled_back = if succeeded {
        Ok(())
    } else {
        command(connection, "ROLLBACK TO job")
    };
    if let Err(error) = rolled_back.and_then(|()| command(connection, "RELEASE job")) {
        tracing::error!(%error, "closing a job's savepoint failed");
    }
    delivery
}
