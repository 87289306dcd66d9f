//! How fast one gateway may be sent charges: never more than its rate in
//! any window of a second, as the gateway itself counts.
//!
//! A token bucket would let a full bucket and a second of refill through
//! within one second — nearly twice the rate. This keeps the send times of
//! the last `rate` charges and admits another only when the oldest of them
//! left more than a window ago. The window is a little longer than a second
//! so that network jitter cannot squeeze `rate + 1` arrivals into one of
//! the gateway's seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct SlidingWindow {
    rate: usize,
    window: Duration,
    sent: VecDeque<Instant>,
}

impl SlidingWindow {
    /// The gateway's second plus this much, against jitter.
    pub const JITTER_MARGIN: Duration = Duration::from_millis(50);

    pub fn new(rate_per_second: u32) -> SlidingWindow {
        let rate = rate_per_second.max(1) as usize;
        SlidingWindow {
            rate,
            window: Duration::from_secs(1) + SlidingWindow::JITTER_MARGIN,
            sent: VecDeque::with_capacity(rate),
        }
    }

    /// Takes a place for a charge sent at `now`, or says when the next
    /// place frees up.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        while self
            .sent
            .front()
            .is_some_and(|sent| now.saturating_duration_since(*sent) >= self.window)
        {
            self.sent.pop_front();
        }
        if self.sent.len() < self.rate {
            self.sent.push_back(now);
            Ok(())
        } else {
            Err(self
                .sent
                .front()
                .map_or(now, |oldest| *oldest + self.window))
        }
    }

    /// Gives back a place taken for a charge that was never sent.
    pub fn give_back(&mut self) {
        self.sent.pop_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_rate_in_any_window() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(10);
        let mut sent = Vec::new();
        let mut now = start;
        while now < start + Duration::from_secs(5) {
            if window.try_take(now).is_ok() {
                sent.push(now);
            }
            now += Duration::from_millis(7);
        }
        for (index, first) in sent.iter().enumerate() {
            let within = sent[index..]
                .iter()
                .take_while(|at| at.duration_since(*first) < Duration::from_secs(1))
                .count();
            assert!(within <= 10, "{within} in one second");
        }
        assert!(
            sent.len() >= 45,
            "close to the rate over five seconds: {}",
            sent.len()
        );
    }

    #[test]
    fn a_full_window_says_when_a_place_frees() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(2);
        assert!(window.try_take(start).is_ok());
        assert!(window.try_take(start + Duration::from_millis(10)).is_ok());
        let free_at = window
            .try_take(start + Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(free_at, start + Duration::from_millis(1_050));
        assert!(window.try_take(free_at).is_ok());
        window.give_back();
        assert!(
            window.try_take(free_at).is_ok(),
            "a place given back is free again"
        );
    }
}
