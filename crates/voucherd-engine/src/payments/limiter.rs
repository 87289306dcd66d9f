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
//! (counted, so the gateway is not over-chosen), and `confirm` turns it into
//! a send at the moment the charge really leaves, waiting if that moment
//! would put the window over the rate. What the gateway sees is then the
//! confirmed send times, and those never exceed the rate in any window.
//!
//! A place is held for the room the window will have a moment later
//! (`HOLD_AHEAD`, about as long as the store's write takes under a burst),
//! not for the room it has now. Were it held against the room of now, each
//! charge would keep its place for the store's write as well as for the
//! second after it leaves, and a store slowed down by a burst would cut the
//! gateway's throughput with it (at 200 ms a write, by a sixth). A place
//! whose room has not come yet when its charge is ready waits in `confirm`.
//!
//! Confirmed sends are also paced, on average a window's length divided by
//! the rate apart (a generic cell rate: a send that was held up may catch
//! up by one step). Without that, a window's worth of waiting charges
//! would leave in one burst the moment room opens, and the burst's tail
//! would reach the gateway late enough to crowd its next second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A place held for a charge, until it is confirmed or given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u64);

#[derive(Debug)]
pub struct SlidingWindow {
    rate: usize,
    window: Duration,
    /// Sends within the last window, oldest first.
    sends: VecDeque<Instant>,
    /// Places held for charges not sent yet.
    held: Vec<Slot>,
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
    /// How far ahead of now a held place counts the window's room.
    pub const HOLD_AHEAD: Duration = Duration::from_millis(250);

    /// How soon a window with no rate at all says to ask again.
    const NO_RATE_RETRY: Duration = Duration::from_millis(50);

    pub fn new(rate_per_second: u32) -> SlidingWindow {
        let rate = rate_per_second as usize;
        let window = Duration::from_secs(1) + SlidingWindow::JITTER_MARGIN;
        SlidingWindow {
            rate,
            window,
            sends: VecDeque::with_capacity(rate * 2),
            held: Vec::new(),
            next_slot: 0,
            spacing: window / rate_per_second.max(1),
            next_due: None,
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .sends
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.window)
        {
            self.sends.pop_front();
        }
    }

    /// When the window next has room for a send, if it has none at `now`.
    /// This node's rate now: its share of the gateway's, which changes as
    /// nodes come and go. Sends already in the window stay counted, so a
    /// smaller rate takes effect as they leave it.
    pub fn set_rate(&mut self, rate_per_second: u32) {
        self.rate = rate_per_second as usize;
        self.spacing = self.window / rate_per_second.max(1);
    }

    pub fn rate(&self) -> u32 {
        u32::try_from(self.rate).unwrap_or(u32::MAX)
    }

    fn send_room_at(&mut self, now: Instant) -> Result<(), Instant> {
        self.forget_before(now);
        if self.rate == 0 {
            return Err(now + SlidingWindow::NO_RATE_RETRY);
        }
        if self.sends.len() < self.rate {
            return Ok(());
        }
        // The window has room once all but rate - 1 of its sends left.
        let leaving = self.sends.len() - (self.rate - 1);
        Err(self.sends[leaving - 1] + self.window)
    }

    fn record_send(&mut self, at: Instant) {
        let position = self.sends.partition_point(|sent| *sent <= at);
        self.sends.insert(position, at);
    }

    /// A window that counts itself full until a window after `now`: a node
    /// that just started cannot know what an earlier run of it sent in the
    /// last second, and the gateway still counts those.
    pub fn full_until_a_window_after(rate_per_second: u32, now: Instant) -> SlidingWindow {
        let mut window = SlidingWindow::new(rate_per_second);
        window.sends.extend(std::iter::repeat_n(now, window.rate));
        window
    }

    /// Holds a place for a charge about to be sent, or says when to ask
    /// again.
    pub fn try_take(&mut self, now: Instant) -> Result<Slot, Instant> {
        self.forget_before(now);
        if self.rate == 0 {
            return Err(now + SlidingWindow::NO_RATE_RETRY);
        }
        let ahead = now + SlidingWindow::HOLD_AHEAD;
        let gone_by_then = self
            .sends
            .partition_point(|sent| ahead.saturating_duration_since(*sent) >= self.window);
        let counted = self.sends.len() - gone_by_then + self.held.len();
        if counted >= self.rate {
            // Room comes when enough more sends leave the window; held
            // places free theirs when they are confirmed or given back.
            let leaving = gone_by_then + (counted - self.rate);
            return Err(self.sends.get(leaving).map_or(now + self.spacing, |sent| {
                *sent + self.window - SlidingWindow::HOLD_AHEAD
            }));
        }
        let slot = Slot(self.next_slot);
        self.next_slot += 1;
        self.held.push(slot);
        Ok(slot)
    }

    /// Sends the charge of a held place at `now`; when that would put the
    /// window over the rate or run ahead of the pace, the place stays held
    /// and the answer says when to try again.
    pub fn confirm(&mut self, slot: Slot, now: Instant) -> Result<(), Instant> {
        if let Some(due) = self.next_due
            && now + self.spacing < due
        {
            return Err(due - self.spacing);
        }
        self.send_room_at(now)?;
        self.held.retain(|held| *held != slot);
        self.record_send(now);
        self.next_due = Some(self.next_due.map_or(now, |due| due.max(now)) + self.spacing);
        Ok(())
    }

    /// The gateway refused a charge for its rate: it counted more in its
    /// window than this one did (jitter, or another sender). One more
    /// send is counted at `now`, so the next second sends one fewer.
    pub fn refused_at(&mut self, now: Instant) {
        self.record_send(now);
    }

    /// Gives back a place whose charge was never sent.
    pub fn give_back(&mut self, slot: Slot) {
        self.held.retain(|held| *held != slot);
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
    fn a_place_held_while_its_charge_is_recorded_costs_no_room() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(10);
        let mut sent = Vec::new();
        let mut pending = Vec::new();
        let mut now = start;
        // Recording each charge takes 200 ms: were held places counted as
        // sends, each would take room for 1.25 s and ten seconds would
        // carry about 80 charges, not the 95 the window allows.
        while now < start + Duration::from_secs(10) {
            while let Ok(slot) = window.try_take(now) {
                pending.push((slot, now + Duration::from_millis(200)));
            }
            pending.retain(|(slot, due)| {
                if *due > now || window.confirm(*slot, now).is_err() {
                    return true;
                }
                sent.push(now);
                false
            });
            now += Duration::from_millis(1);
        }
        assert!(within_rate(&sent, 10));
        assert!(
            sent.len() >= 90,
            "close to the rate despite slow records: {}",
            sent.len()
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
        let held_from = free_at - SlidingWindow::HOLD_AHEAD;
        assert_eq!(window.try_take(start), Err(held_from));
        let slot = window.try_take(held_from).unwrap();
        assert_eq!(window.confirm(slot, held_from), Err(free_at));
        assert_eq!(window.confirm(slot, free_at), Ok(()));
    }

    #[test]
    fn a_full_window_says_when_a_place_frees_and_given_back_places_are_free() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(2);
        let first = window.try_take(start).unwrap();
        window.confirm(first, start).unwrap();
        let held = window.try_take(start).unwrap();
        // The window is full for now and a place's worth ahead of now.
        let at = start + Duration::from_millis(20);
        let free_at = start + Duration::from_secs(1) + SlidingWindow::JITTER_MARGIN;
        assert_eq!(
            window.try_take(at),
            Err(free_at - SlidingWindow::HOLD_AHEAD)
        );
        window.give_back(held);
        assert!(window.try_take(at).is_ok());
    }
}
