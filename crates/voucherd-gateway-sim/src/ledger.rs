//! The gateway's books: every decided charge by idempotency key, the rate
//! window and the counters. [`Ledger::admit`] makes the whole decision for a
//! charge request in one step under one lock, so no two requests with the
//! same key can both find it free and both capture.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use jiff::Timestamp;

use crate::card::CardSummary;
use crate::draws::Draws;
use crate::rate::RateWindow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    Captured,
    Declined,
}

impl ChargeStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChargeStatus::Captured => "captured",
            ChargeStatus::Declined => "declined",
        }
    }
}

/// A charge request whose fields have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    /// Minor units, at least 1.
    pub amount: u64,
    pub currency: String,
    pub card: CardSummary,
}

/// A decided charge. Decisions are final: a key is never decided twice.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub id: String,
    pub idempotency_key: String,
    pub amount: u64,
    pub currency: String,
    pub status: ChargeStatus,
    /// When the gateway accepted and decided it.
    pub at: Timestamp,
    pub card: CardSummary,
    /// Whether the request that decided it was answered. An unanswered
    /// charge is the case a client must resolve by looking it up.
    pub answered: bool,
}

/// What happened to a charge request.
#[derive(Debug)]
pub enum Admission {
    /// A new charge, decided now; answer after `latency`, or hold the
    /// request without an answer when `charge.answered` is false.
    Decided { charge: Charge, latency: Duration },
    /// The key was decided before with the same amount and currency: the
    /// original charge, unchanged.
    Replayed(Charge),
    /// The key was decided before with another amount or currency.
    KeyReused(Charge),
    /// Over the rate: nothing was decided.
    RateLimited { retry_after: Duration },
    /// The request "never reached" the gateway: nothing was decided, and
    /// the request gets no answer.
    Lost,
}

/// Counts of what the simulator did, for tests and load runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub captured: u64,
    pub declined: u64,
    /// Decided charges, captured or declined, whose request got no answer.
    pub unanswered: u64,
    /// Requests that got no answer and decided nothing.
    pub lost: u64,
    pub replayed: u64,
    pub key_reused: u64,
    pub rate_limited: u64,
    pub refused_down: u64,
    pub refused_busy: u64,
    pub rejected_invalid: u64,
    /// The most charges accepted inside any one-second window.
    pub accepted_per_second_max: u64,
    /// Gateway API requests being answered or held right now.
    pub in_flight: u64,
    pub down: bool,
}

/// The decision rules and what they are drawn with.
#[derive(Debug, Clone)]
pub struct Policy {
    pub seed: u64,
    pub decline_rate: f64,
    pub timeout_rate: f64,
    pub latency_ms: RangeInclusive<u64>,
}

#[derive(Debug)]
pub struct Ledger {
    policy: Policy,
    window: RateWindow,
    /// Decided charges in the order they were decided.
    charges: Vec<Charge>,
    /// Position in `charges` by idempotency key.
    by_key: HashMap<String, usize>,
    /// How many attempts of a not yet decided key were lost, so that its
    /// next attempt draws afresh instead of being lost forever.
    lost_attempts: HashMap<String, u32>,
    pub stats: Stats,
}

impl Ledger {
    pub fn new(policy: Policy, rate_per_second: u32) -> Ledger {
        Ledger {
            policy,
            window: RateWindow::new(rate_per_second),
            charges: Vec::new(),
            by_key: HashMap::new(),
            lost_attempts: HashMap::new(),
            stats: Stats::default(),
        }
    }

    pub fn admit(&mut self, request: ChargeRequest, now: Timestamp) -> Admission {
        if let Some(&position) = self.by_key.get(&request.idempotency_key) {
            let charge = self.charges[position].clone();
            if charge.amount != request.amount || charge.currency != request.currency {
                self.stats.key_reused += 1;
                return Admission::KeyReused(charge);
            }
            self.stats.replayed += 1;
            return Admission::Replayed(charge);
        }
        let attempt = self
            .lost_attempts
            .get(&request.idempotency_key)
            .copied()
            .unwrap_or(0);
        let policy = &self.policy;
        let draws = Draws::for_attempt(
            policy.seed,
            &request.idempotency_key,
            attempt,
            policy.decline_rate,
            policy.timeout_rate,
            &policy.latency_ms,
        );
        // A lost request never reached the gateway, so it takes no place in
        // the rate window either.
        if draws.lost {
            self.lost_attempts
                .insert(request.idempotency_key, attempt.saturating_add(1));
            self.stats.lost += 1;
            return Admission::Lost;
        }
        if let Err(retry_after) = self.window.admit(now) {
            self.stats.rate_limited += 1;
            return Admission::RateLimited { retry_after };
        }
        self.stats.accepted_per_second_max = self.window.accepted_per_second_max() as u64;
        let charge = self.decide(request, draws.clone(), now);
        Admission::Decided {
            charge,
            latency: draws.latency,
        }
    }

    fn decide(&mut self, request: ChargeRequest, draws: Draws, now: Timestamp) -> Charge {
        let status = if draws.declined {
            self.stats.declined += 1;
            ChargeStatus::Declined
        } else {
            self.stats.captured += 1;
            ChargeStatus::Captured
        };
        if draws.timed_out {
            self.stats.unanswered += 1;
        }
        self.lost_attempts.remove(&request.idempotency_key);
        let charge = Charge {
            id: format!("ch_{:016x}", draws.charge_number),
            idempotency_key: request.idempotency_key,
            amount: request.amount,
            currency: request.currency,
            status,
            at: now,
            card: request.card,
            answered: !draws.timed_out,
        };
        let previous = self
            .by_key
            .insert(charge.idempotency_key.clone(), self.charges.len());
        assert!(previous.is_none(), "a key was decided twice");
        self.charges.push(charge.clone());
        charge
    }

    pub fn charge(&self, idempotency_key: &str) -> Option<&Charge> {
        self.by_key
            .get(idempotency_key)
            .map(|&position| &self.charges[position])
    }

    pub fn charges(&self) -> &[Charge] {
        &self.charges
    }
}
