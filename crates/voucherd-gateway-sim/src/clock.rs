//! Where the simulator's time comes from. The rate window and the ledger's
//! `at` read one clock, so what the ledger shows is exactly what the rate
//! limit saw; tests swap in a [`ManualClock`] to put a burst into one instant.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time that never goes backwards: the wall time at start plus
/// the monotonic time elapsed since. A wall clock stepped back by NTP would
/// otherwise let the rate window admit a second burst.
#[derive(Debug)]
pub struct SystemClock {
    wall_start: Timestamp,
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            wall_start: Timestamp::now(),
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.start.elapsed();
        // Saturating: past the year 9999 the simulator has other problems.
        self.wall_start
            .checked_add(elapsed)
            .unwrap_or(Timestamp::MAX)
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.checked_add(by).unwrap_or(Timestamp::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
