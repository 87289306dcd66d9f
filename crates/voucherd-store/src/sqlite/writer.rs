//! The single writer of an SQLite database, with group commit.
//!
//! SQLite admits one writer at a time, and what costs is the fsync at
//! commit, not the statements. So every write of the process goes to one
//! thread that owns the write connection; it takes whatever work has queued
//! up (up to `group_max` jobs), runs each job in its own savepoint, commits
//! them all with one fsync, and only then answers each job. A job that fails
//! is rolled back to its savepoint and does not take the others down.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::connection::{Kind, command};
use crate::stats::{TimeCounter, WriterStats};
use crate::{StoreError, StoreResult};

/// What a job hands back once the group's commit is known.
type Delivery = Box<dyn FnOnce(Result<(), &GroupFailure>) + Send>;

/// Why a group did not commit: nothing of it is in the database.
#[derive(Debug)]
struct GroupFailure {
    message: String,
    /// The disk is full or failing, or the database is busy: the same
    /// write may succeed later, so callers hear "unavailable, retry".
    unavailable: bool,
}

impl GroupFailure {
    fn new(error: &rusqlite::Error) -> GroupFailure {
        GroupFailure {
            message: error.to_string(),
            unavailable: matches!(super::connection::kind_of(error), Kind::Unavailable),
        }
    }

    fn store_error(&self) -> StoreError {
        let message = format!("the write group did not commit: {}", self.message);
        if self.unavailable {
            StoreError::Unavailable(message.into())
        } else {
            StoreError::Database(message.into())
        }
    }
}
/// A job runs in the group's transaction, or is handed `None` when that
/// transaction could not even begin; it says whether it succeeded.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Delivery) + Send>;

#[derive(Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    counters: Arc<WriterCounters>,
}

/// What the writer thread has done, for the metrics.
#[derive(Debug, Default)]
struct WriterCounters {
    /// Time spent on groups, and how many.
    groups: TimeCounter,
    jobs: AtomicU64,
}

impl Writer {
    /// How many jobs may wait for the writer before callers wait to enqueue.
    const QUEUE_MAX: usize = 4_096;

    pub(crate) fn start(connection: Connection, group_max: usize) -> StoreResult<Writer> {
        let (jobs, receiver) = mpsc::channel(Writer::QUEUE_MAX);
        let counters = Arc::new(WriterCounters::default());
        let counted = counters.clone();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(connection, receiver, group_max.max(1), &counted))
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        Ok(Writer { jobs, counters })
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            busy_seconds: self.counters.groups.seconds(),
            groups: self.counters.groups.count(),
            jobs: self.counters.jobs.load(Ordering::Relaxed),
            queue_depth: (self.jobs.max_capacity() - self.jobs.capacity()) as u64,
            queue_max: self.jobs.max_capacity() as u64,
        }
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
                    Err(failure) => Err(failure.store_error()),
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

fn write_loop(
    connection: Connection,
    mut receiver: mpsc::Receiver<Job>,
    group_max: usize,
    counters: &WriterCounters,
) {
    let mut group = Vec::with_capacity(group_max);
    while let Some(first) = receiver.blocking_recv() {
        let started = Instant::now();
        group.push(first);
        while group.len() < group_max {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        counters
            .jobs
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let (deliveries, committed) = match command(&connection, "BEGIN IMMEDIATE") {
            Ok(()) => {
                let deliveries: Vec<Delivery> = group
                    .drain(..)
                    .map(|job| {
                        // SQLite rolls the whole transaction back by itself
                        // on some errors (a full disk, an I/O error). A job
                        // run after that would run in autocommit and commit
                        // on its own while the group is answered as failed.
                        if connection.is_autocommit() {
                            job(None).1
                        } else {
                            run_in_savepoint(&connection, job)
                        }
                    })
                    .collect();
                (deliveries, commit(&connection))
            }
            Err(error) => {
                tracing::error!(%error, "starting a write group failed");
                let deliveries = group.drain(..).map(|job| job(None).1).collect();
                (deliveries, Err(GroupFailure::new(&error)))
            }
        };
        for delivery in deliveries {
            delivery(committed.as_ref().map(|_| ()));
        }
        counters.groups.add(started.elapsed());
        debug_assert!(connection.is_autocommit(), "a write group left open");
    }
}

fn commit(connection: &Connection) -> Result<(), GroupFailure> {
    if connection.is_autocommit() {
        // A job's error rolled the whole transaction back (see above).
        tracing::error!("a write group was rolled back by the database");
        return Err(GroupFailure {
            message: "the database rolled the transaction back".into(),
            unavailable: true,
        });
    }
    command(connection, "COMMIT").map_err(|error| {
        tracing::error!(%error, "committing a write group failed");
        // Nothing of the group may survive a failed commit.
        let _ = connection.execute_batch("ROLLBACK");
        GroupFailure::new(&error)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE row (id INTEGER PRIMARY KEY)")
            .unwrap();
        Writer::start(connection, 64).unwrap()
    }

    fn insert(connection: &Connection, id: i64) -> StoreResult<()> {
        connection.execute("INSERT INTO row (id) VALUES (?1)", [id])?;
        Ok(())
    }

    /// SQLite may roll a whole transaction back by itself (a full disk, an
    /// I/O error). The jobs after that in the group must not run in
    /// autocommit: they would commit one by one while the group is answered
    /// as failed. Every job answered failed has left nothing behind.
    #[tokio::test(flavor = "current_thread")]
    async fn a_group_the_database_rolled_back_commits_nothing_it_answers_failed() {
        let writer = writer();
        // The writer is held on a first job until the three below are all
        // queued, so that they form one group.
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (running, started) = tokio::sync::watch::channel(false);
        let blocker = writer.run(move |_| {
            running.send_replace(true);
            let _ = held.recv();
            Ok(())
        });
        let queued = || {
            let mut started = started.clone();
            async move {
                started.wait_for(|running| *running).await.unwrap();
            }
        };
        let (blocked, first, rolled_back, after, ()) = tokio::join!(
            blocker,
            async {
                queued().await;
                writer.run(|connection| insert(connection, 1)).await
            },
            async {
                queued().await;
                writer
                    .run(|connection| {
                        command(connection, "ROLLBACK")?;
                        Err::<(), _>(StoreError::Unavailable("the disk is full".into()))
                    })
                    .await
            },
            async {
                queued().await;
                writer.run(|connection| insert(connection, 3)).await
            },
            async {
                queued().await;
                // The writer is held until the three jobs wait in its queue,
                // whatever order join! polls them in.
                let deadline = Instant::now() + std::time::Duration::from_secs(10);
                while writer.stats().queue_depth < 3 {
                    assert!(Instant::now() < deadline, "the three jobs never queued");
                    tokio::task::yield_now().await;
                }
                let _ = hold.send(());
            },
        );
        blocked.unwrap();
        let stored: Vec<i64> = writer
            .run(|connection| {
                let mut statement = connection.prepare("SELECT id FROM row ORDER BY id")?;
                let ids = statement
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                Ok(ids)
            })
            .await
            .unwrap();
        for (id, answer) in [(1, &first), (3, &after)] {
            assert_eq!(
                answer.is_ok(),
                stored.contains(&id),
                "job {id} answered {answer:?} with rows {stored:?}"
            );
        }
        assert!(rolled_back.is_err());
        assert!(
            matches!(first, Err(StoreError::Unavailable(_))),
            "{first:?}"
        );
    }
}
