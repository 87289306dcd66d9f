//! How fast one gateway may be sent charges: never more than its rate in
//! any window of a second, as the gateway itself counts.
//!
//! A token bucket would let a full bucket and a second of refill through
//! within one second — nearly twice the rate. This keeps the send time of
//! every recent charge and admits another only while fewer than `rate` lie
//! within the last window. The window is a little longer than a second so
//! that network jitter cannot squeeze `rate + 1` arrivals into one of the
//! gateway's seconds.
//!
//! Room is taken in two steps because a charge is recorded in the store
//! between choosing its gateway and sending it: `try_take` holds a place
//! (counted, so the gateway is not over-chosen), and `confirm` moves it to
//! the moment the charge really leaves, waiting if that moment would put
//! the window over the rate. What the gateway sees is then the confirmed
//! send times, and those never exceed the rate in any window.
//!
//! Confirmed sends are also paced, on average a window's length divided by
//! the rate apart (a generic cell rate: a send that was held up may catch
//! up by one step). Without that, a window's worth of waiting charges
//! would leave in one burst the moment room opens, and the burst's tail
//! would reach the gateway late enough to crowd its next second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A place held in the window, until it is confirmed or given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u64);

#[derive(Debug)]
pub struct SlidingWindow {
    rate: usize,
    window: Duration,
    /// Recent places, oldest first.
    places: VecDeque<(Instant, Slot)>,
    next_slot: u64,
    /// The average time between two sends.
    spacing: Duration,
    /// When the next send is due on the pace; a send may come one step
    /// early to catch up.
    next_due: Option<Instant>,
}

impl SlidingWindow {
    /// The gateway's second plus this much, against jitter.
    pub const JITTER_MARGIN: Duration = Duration::from_millis(50);

    pub fn new(rate_per_second: u32) -> SlidingWindow {
        let rate = rate_per_second.max(1) as usize;
        let window = Duration::from_secs(1) + SlidingWindow::JITTER_MARGIN;
        SlidingWindow {
            rate,
            window,
            places: VecDeque::with_capacity(rate * 2),
            next_slot: 0,
            spacing: window / rate_per_second.max(1),
            next_due: None,
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .places
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.window)
        {
            self.places.pop_front();
        }
    }

    /// When the window next has room, if it has none at `now`.
    fn room_at(&mut self, now: Instant) -> Result<(), Instant> {
        self.forget_before(now);
        if self.places.len() < self.rate {
            return Ok(());
        }
        // The window has room once all but rate - 1 of its places left.
        let leaving = self.places.len() - (self.rate - 1);
        Err(self.places[leaving - 1].0 + self.window)
    }

    fn insert(&mut self, at: Instant, slot: Slot) {
        let position = self.places.partition_point(|(placed, _)| *placed <= at);
        self.places.insert(position, (at, slot));
    }

    /// A window that counts itself full until a window after `now`: a node
    /// that just started cannot know what an earlier run of it sent in the
    /// last second, and the gateway still counts those.
    pub fn full_until_a_window_after(rate_per_second: u32, now: Instant) -> SlidingWindow {
        let mut window = SlidingWindow::new(rate_per_second);
        for _ in 0..window.rate {
            let slot = Slot(window.next_slot);
            window.next_slot += 1;
            window.places.push_back((now, slot));
        }
        window
    }

    /// Holds a place for a charge about to be sent, or says when to ask
    /// again.
    pub fn try_take(&mut self, now: Instant) -> Result<Slot, Instant> {
        self.room_at(now)?;
        let slot = Slot(self.next_slot);
        self.next_slot += 1;
        self.insert(now, slot);
        Ok(slot)
    }

    /// Moves a held place to `now`, the moment its charge leaves; when that
    /// would put the window over the rate the place stays where it was and
    /// the answer says when to try again.
    pub fn confirm(&mut self, slot: Slot, now: Instant) -> Result<(), Instant> {
        if let Some(due) = self.next_due
            && now + self.spacing < due
        {
            return Err(due - self.spacing);
        }
        let confirmed = self.move_to(slot, now);
        if confirmed.is_ok() {
            self.next_due = Some(self.next_due.map_or(now, |due| due.max(now)) + self.spacing);
        }
        confirmed
    }

    fn move_to(&mut self, slot: Slot, now: Instant) -> Result<(), Instant> {
        let Some(position) = self.places.iter().position(|(_, held)| *held == slot) else {
            // Forgotten already: it is older than a window and counts for
            // nothing; take a fresh place at now.
            return self.room_at(now).map(|()| self.insert(now, slot));
        };
        let (held_at, _) = self.places.remove(position).unwrap_or((now, slot));
        match self.room_at(now) {
            Ok(()) => {
                self.insert(now, slot);
                Ok(())
            }
            Err(at) => {
                self.insert(held_at, slot);
                Err(at)
            }
        }
    }

    /// The gateway refused a charge for its rate: it counted more in its
    /// window than this one did (jitter, or another sender). One more
    /// place is counted at `now`, so the next second sends one fewer.
    pub fn refused_at(&mut self, now: Instant) {
        let slot = Slot(self.next_slot);
        self.next_slot += 1;
        self.insert(now, slot);
    }

    /// Gives back a place whose charge was never sent.
    pub fn give_back(&mut self, slot: Slot) {
        self.places.retain(|(_, held)| *held != slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether no window of a second holds more than `rate` of `sent`.
    fn within_rate(sent: &[Instant], rate: usize) -> bool {
        let mut sent = sent.to_vec();
        sent.sort();
        sent.iter().enumerate().all(|(index, first)| {
            sent[index..]
                .iter()
                .take_while(|at| at.duration_since(*first) < Duration::from_secs(1))
                .count()
                <= rate
        })
    }

    #[test]
    fn never_more_than_the_rate_in_any_window() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(10);
        let mut sent = Vec::new();
        let mut now = start;
        while now < start + Duration::from_secs(5) {
            if let Ok(slot) = window.try_take(now) {
                match window.confirm(slot, now) {
                    Ok(()) => sent.push(now),
                    Err(_) => window.give_back(slot),
                }
            }
            now += Duration::from_millis(7);
        }
        assert!(within_rate(&sent, 10));
        assert!(
            sent.len() >= 45,
            "close to the rate over five seconds: {}",
            sent.len()
        );
    }

    #[test]
    fn late_sends_are_held_back_so_arrivals_stay_within_the_rate() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(10);
        let mut sent = Vec::new();
        let mut pending = Vec::new();
        let mut now = start;
        // Every place is confirmed 80 ms after it was taken, longer than the
        // jitter margin: without confirm, early places sent late and new
        // places sent at once would crowd one second.
        while now < start + Duration::from_secs(4) {
            if let Ok(slot) = window.try_take(now) {
                pending.push((slot, now + Duration::from_millis(80)));
            }
            pending.retain(|(slot, due)| {
                if *due > now {
                    return true;
                }
                match window.confirm(*slot, now) {
                    Ok(()) => {
                        sent.push(now);
                        false
                    }
                    Err(_) => true,
                }
            });
            now += Duration::from_millis(3);
        }
        assert!(within_rate(&sent, 10));
        assert!(sent.len() >= 30, "{}", sent.len());
        // Paced: never more than two sends within one step of each other.
        assert!(
            sent.windows(3)
                .all(|three| three[2].duration_since(three[0]) >= window.spacing),
            "sends are paced, not bursts"
        );
    }

    #[test]
    fn a_starting_window_waits_out_what_an_earlier_run_may_have_sent() {
        let start = Instant::now();
        let mut window = SlidingWindow::full_until_a_window_after(5, start);
        assert_eq!(
            window.spacing,
            (Duration::from_secs(1) + SlidingWindow::JITTER_MARGIN) / 5
        );
        let free_at = start + Duration::from_secs(1) + SlidingWindow::JITTER_MARGIN;
        assert_eq!(window.try_take(start), Err(free_at));
        assert!(window.try_take(free_at).is_ok());
    }

    #[test]
    fn a_full_window_says_when_a_place_frees_and_given_back_places_are_free() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(2);
        let first = window.try_take(start).unwrap();
        window.try_take(start + Duration::from_millis(10)).unwrap();
        let free_at = window
            .try_take(start + Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(
            free_at,
            start + Duration::from_secs(1) + SlidingWindow::JITTER_MARGIN
        );
        window.give_back(first);
        assert!(window.try_take(start + Duration::from_millis(20)).is_ok());
    }
}
