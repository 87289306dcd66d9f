//! A circuit breaker per gateway: after a run of failures, traffic moves
//! elsewhere for a cool-down; then one probe is let through, and its
//! outcome closes the breaker or opens it again for longer.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open {
        until: Instant,
    },
    /// One probe is out; nothing else is sent until it returns.
    Probing,
}

#[derive(Debug)]
pub struct Breaker {
    state: BreakerState,
    failures_in_a_row: u32,
    cooldown: Duration,
}

impl Breaker {
    /// Failures in a row that open the breaker.
    pub const FAILURES_TO_OPEN: u32 = 5;
    pub const COOLDOWN_MIN: Duration = Duration::from_millis(500);
    pub const COOLDOWN_MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Breaker {
        Breaker {
            state: BreakerState::Closed,
            failures_in_a_row: 0,
            cooldown: Breaker::COOLDOWN_MIN,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a charge may be sent at `now`; the first call after the
    /// cool-down becomes the probe.
    pub fn allows(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::Probing;
                true
            }
            BreakerState::Open { .. } | BreakerState::Probing => false,
        }
    }

    /// A probe that was let through but never sent: the next call probes.
    pub fn cancel_probe(&mut self, now: Instant) {
        if self.state == BreakerState::Probing {
            self.state = BreakerState::Open { until: now };
        }
    }

    pub fn succeeded(&mut self) {
        self.state = BreakerState::Closed;
        self.failures_in_a_row = 0;
        self.cooldown = Breaker::COOLDOWN_MIN;
    }

    pub fn failed(&mut self, now: Instant) {
        self.failures_in_a_row += 1;
        match self.state {
            BreakerState::Probing => {
                self.cooldown = (self.cooldown * 2).min(Breaker::COOLDOWN_MAX);
                self.state = BreakerState::Open {
                    until: now + self.cooldown,
                };
            }
            BreakerState::Closed if self.failures_in_a_row >= Breaker::FAILURES_TO_OPEN => {
                self.state = BreakerState::Open {
                    until: now + self.cooldown,
                };
            }
            _ => {}
        }
    }
}

impl Default for Breaker {
    fn default() -> Breaker {
        Breaker::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_opens_and_a_probe_decides() {
        let start = Instant::now();
        let mut breaker = Breaker::new();
        for _ in 0..Breaker::FAILURES_TO_OPEN - 1 {
            breaker.failed(start);
            assert!(breaker.allows(start));
        }
        breaker.failed(start);
        assert!(!breaker.allows(start), "open after five failures in a row");
        let after = start + Breaker::COOLDOWN_MIN;
        assert!(breaker.allows(after), "the probe");
        assert!(!breaker.allows(after), "only one probe at a time");
        breaker.failed(after);
        assert!(
            !breaker.allows(after + Breaker::COOLDOWN_MIN),
            "the cool-down doubled"
        );
        let later = after + Breaker::COOLDOWN_MIN * 2;
        assert!(breaker.allows(later));
        breaker.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_success_resets_the_count() {
        let start = Instant::now();
        let mut breaker = Breaker::new();
        for _ in 0..10 {
            breaker.failed(start);
            breaker.failed(start);
            breaker.succeeded();
        }
        assert!(breaker.allows(start));
    }
}
