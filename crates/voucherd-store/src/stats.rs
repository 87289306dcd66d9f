//! What a backend tells about its own bounds, for the metrics: read at each
//! scrape from counters the hot path keeps with relaxed atomics, never from
//! the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A backend's bounds as they stand; each part is `None` for the backends
/// that do not have it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    pub sqlite_writer: Option<WriterStats>,
    pub postgres_pool: Option<PoolStats>,
}

/// The SQLite writer thread: how busy it is and what waits for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterStats {
    /// Seconds the thread spent running groups since start; its rate is
    /// the writer's busy share (1.0 is saturated).
    pub busy_seconds: f64,
    /// Write groups (one transaction, one fsync each) committed or failed.
    pub groups: u64,
    /// Jobs run in those groups.
    pub jobs: u64,
    /// Jobs waiting for the thread now, and the most that may wait.
    pub queue_depth: u64,
    pub queue_max: u64,
}

/// The PostgreSQL primary's pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolStats {
    /// Connections open, idle among them, and the most there may be.
    pub size: u64,
    pub idle: u64,
    pub max: u64,
    /// Callers waiting for a connection now.
    pub waiting: u64,
    /// Seconds callers spent waiting for a connection, over how many
    /// waits; the rate of the first over the second is the mean wait.
    pub wait_seconds: f64,
    pub waits: u64,
    /// Waits that ran out (`pool_wait_timeout`): answered Unavailable.
    pub timeouts: u64,
}

/// A sum of durations and a count, kept with atomics.
#[derive(Debug, Default)]
pub(crate) struct TimeCounter {
    nanos: AtomicU64,
    count: AtomicU64,
}

impl TimeCounter {
    pub(crate) fn add(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn seconds(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
