//! The gateway's rate limit: a sliding one-second window over the times of
//! the charges it accepted.
//!
//! A token bucket holding a second's worth of tokens would let a full bucket
//! be spent at once and refilled during the same second, nearly twice the
//! rate in one window. The window log never admits more than the rate in
//! any one-second window, wherever the window is put, and its memory is
//! bounded by the rate itself.

use std::collections::VecDeque;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

const WINDOW: SignedDuration = SignedDuration::from_secs(1);

#[derive(Debug)]
pub struct RateWindow {
    rate_per_second: usize,
    /// The accepted charges of the last second, oldest first.
    accepted: VecDeque<Timestamp>,
    /// The most charges ever inside one window, for tests and load runs to
    /// check the limit against.
    accepted_per_second_max: usize,
}

impl RateWindow {
    pub fn new(rate_per_second: u32) -> RateWindow {
        let rate_per_second = usize::try_from(rate_per_second).unwrap_or(usize::MAX);
        RateWindow {
            rate_per_second,
            accepted: VecDeque::with_capacity(rate_per_second.min(65_536)),
            accepted_per_second_max: 0,
        }
    }

    /// Takes a place in the window for a charge at `now`, or tells how long
    /// until one frees up.
    pub fn admit(&mut self, now: Timestamp) -> Result<(), Duration> {
        // The window is (now - 1 s, now]: a charge exactly one second old
        // has left it.
        while let Some(oldest) = self.accepted.front() {
            if now.duration_since(*oldest) >= WINDOW {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
        if self.accepted.len() >= self.rate_per_second {
            let oldest = self.accepted.front().copied().unwrap_or(now);
            let wait = WINDOW - now.duration_since(oldest);
            return Err(Duration::try_from(wait).unwrap_or(Duration::ZERO));
        }
        self.accepted.push_back(now);
        self.accepted_per_second_max = self.accepted_per_second_max.max(self.accepted.len());
        assert!(self.accepted.len() <= self.rate_per_second);
        Ok(())
    }

    pub fn accepted_per_second_max(&self) -> usize {
        self.accepted_per_second_max
    }
}
