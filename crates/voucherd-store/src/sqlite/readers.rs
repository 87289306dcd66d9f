//! A small pool of read-only connections. WAL lets readers run beside the
//! writer, each seeing the last committed state; blocking SQLite calls run on
//! tokio's blocking threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::connection::open_reader;
use crate::{StoreError, StoreResult};

#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    pub(crate) fn open(path: PathBuf, count: usize) -> StoreResult<Arc<Readers>> {
        let idle = (0..count.max(1))
            .map(|_| open_reader(&path))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Arc::new(Readers {
            path,
            permits: Semaphore::new(idle.len()),
            idle: Mutex::new(idle),
        }))
    }

    pub(crate) async fn run<T, F>(self: &Arc<Self>, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        // A permit guarantees an idle connection, unless one was lost to a
        // panic; then a fresh one takes its place.
        let connection = match self.take_idle() {
            Some(connection) => connection,
            None => open_reader(&self.path)?,
        };
        let (connection, result) = tokio::task::spawn_blocking(move || {
            let result = work(&connection);
            (connection, result)
        })
        .await
        .map_err(|error| StoreError::Database(Box::new(error)))?;
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(connection);
        result
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }
}
