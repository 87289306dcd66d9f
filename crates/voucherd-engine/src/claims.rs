//! The claim queue and its batcher: claims that arrive together are decided
//! together, in one store transaction and one commit.
//!
//! A claim waits in a bounded queue; a full queue is answered at once with
//! `Overloaded` instead of growing memory. The batcher takes everything that
//! queued up while the previous batch was committing (at most
//! `claim_batch_max`, waiting at most `claim_batch_linger` for more), answers
//! from memory the claims that no longer need the store (the campaign sold
//! out, ended or was paused meanwhile), and sends the rest to the store in
//! arrival order. Every answer leaves only after its batch committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use voucherd_core::TimeZone;
use voucherd_core::campaign::ClaimRefusal;
use voucherd_core::ids::UserId;
use voucherd_store::model::{ClaimOutcome, ClaimRequest, VoucherRecord};
use voucherd_store::{Store, StoreError};

use crate::campaigns::CampaignEntry;
use crate::clock::Clock;
use crate::error::EngineError;
use crate::metrics::EngineMetrics;

/// How a claim ended, when it ended as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// A new voucher (issued, or reserved for a sale).
    Claimed(VoucherRecord),
    /// The user already holds their limit; this is their latest voucher.
    AlreadyHeld(VoucherRecord),
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotStarted,
    Ended,
    Paused,
    SoldOut,
    DailyLimitReached,
}

impl From<ClaimRefusal> for Refusal {
    fn from(refusal: ClaimRefusal) -> Refusal {
        match refusal {
            ClaimRefusal::NotStarted => Refusal::NotStarted,
            ClaimRefusal::Ended => Refusal::Ended,
            ClaimRefusal::Paused => Refusal::Paused,
            ClaimRefusal::SoldOut => Refusal::SoldOut,
        }
    }
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::NotStarted => "not_started",
            Refusal::Ended => "ended",
            Refusal::Paused => "paused",
            Refusal::SoldOut => "sold_out",
            Refusal::DailyLimitReached => "daily_limit_reached",
        }
    }
}

/// Bounds of the claim path.
#[derive(Debug, Clone)]
pub struct ClaimLimits {
    /// Claims waiting for a batch; one more is answered `Overloaded`.
    pub claim_queue_max: usize,
    /// Claims decided in one transaction at most.
    pub claim_batch_max: usize,
    /// How long a batch that is not full waits for more claims.
    pub claim_batch_linger: Duration,
    /// Batches being committed at once. One keeps first come, first served
    /// exact across batches; more overlap commits on a remote database.
    pub claim_batches_in_flight: usize,
}

impl Default for ClaimLimits {
    fn default() -> ClaimLimits {
        ClaimLimits {
            claim_queue_max: 8_192,
            claim_batch_max: 512,
            claim_batch_linger: Duration::from_micros(200),
            claim_batches_in_flight: 1,
        }
    }
}

struct PendingClaim {
    entry: Arc<CampaignEntry>,
    user_id: UserId,
    zone: TimeZone,
    answer: oneshot::Sender<Result<ClaimAnswer, EngineError>>,
}

#[derive(Debug)]
pub(crate) struct ClaimQueue {
    sender: mpsc::Sender<PendingClaim>,
    metrics: EngineMetrics,
}

impl std::fmt::Debug for PendingClaim {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PendingClaim")
            .field("campaign", &self.entry.id())
            .field("user_id", &self.user_id)
            .finish()
    }
}

impl ClaimQueue {
    pub(crate) fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: ClaimLimits,
        metrics: EngineMetrics,
    ) -> ClaimQueue {
        let (sender, receiver) = mpsc::channel(limits.claim_queue_max.max(1));
        let batcher = Batcher {
            store,
            clock,
            metrics: metrics.clone(),
            limits,
        };
        tokio::spawn(batcher.run(receiver));
        ClaimQueue { sender, metrics }
    }

    pub(crate) async fn claim(
        &self,
        entry: Arc<CampaignEntry>,
        user_id: UserId,
        zone: TimeZone,
    ) -> Result<ClaimAnswer, EngineError> {
        let (answer, answered) = oneshot::channel();
        let pending = PendingClaim {
            entry,
            user_id,
            zone,
            answer,
        };
        self.sender.try_send(pending).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                self.metrics.claims_shed.inc();
                self.metrics.count_refusal("claim_queue");
                EngineError::Overloaded
            }
            mpsc::error::TrySendError::Closed(_) => EngineError::Unavailable(StoreError::Closed),
        })?;
        answered
            .await
            .map_err(|_| EngineError::Internal(StoreError::Closed))?
    }
}

struct Batcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: EngineMetrics,
    limits: ClaimLimits,
}

impl Batcher {
    async fn run(self, mut receiver: mpsc::Receiver<PendingClaim>) {
        let in_flight = self.limits.claim_batches_in_flight.max(1);
        let permits = Arc::new(Semaphore::new(in_flight));
        let this = Arc::new(self);
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let Some(batch) = this.collect(&mut receiver).await else {
                break;
            };
            let batcher = this.clone();
            tokio::spawn(async move {
                batcher.decide(batch).await;
                drop(permit);
            });
        }
        // Every claim taken from the queue is answered before the batcher
        // stops: wait for the batches still committing.
        let _ = permits.acquire_many(in_flight as u32).await;
    }

    /// The next batch: what has queued up, and what arrives within the
    /// linger while there is room.
    async fn collect(
        &self,
        receiver: &mut mpsc::Receiver<PendingClaim>,
    ) -> Option<Vec<PendingClaim>> {
        let batch_max = self.limits.claim_batch_max.max(1);
        let first = receiver.recv().await?;
        let mut batch = Vec::with_capacity(batch_max.min(receiver.len() + 1));
        batch.push(first);
        let deadline = tokio::time::Instant::now() + self.limits.claim_batch_linger;
        while batch.len() < batch_max {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) if self.limits.claim_batch_linger.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(pending)) => batch.push(pending),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        self.metrics.claim_queue_depth.set(receiver.len() as i64);
        Some(batch)
    }

    async fn decide(&self, batch: Vec<PendingClaim>) {
        let started = Instant::now();
        let now = self.clock.now();
        let mut waiting = Vec::with_capacity(batch.len());
        let mut requests = Vec::with_capacity(batch.len());
        for pending in batch {
            match pending.entry.claimable(now) {
                Err(refusal) => self.answer(pending, Ok(ClaimAnswer::Refused(refusal.into()))),
                Ok(()) => {
                    requests.push(ClaimRequest::new(
                        &pending.entry.record,
                        pending.user_id.clone(),
                        &pending.zone,
                        now,
                    ));
                    waiting.push(pending);
                }
            }
        }
        if requests.is_empty() {
            return;
        }
        self.metrics.claim_batch_size.observe(requests.len() as f64);
        for pending in &waiting {
            pending.entry.sending_claim();
        }
        match self.store.claim_batch(requests, now).await {
            Ok(outcomes) => {
                for (pending, outcome) in waiting.into_iter().zip(outcomes) {
                    let answer = outcome
                        .map(|outcome| remember(&pending.entry, outcome))
                        .map_err(|error| {
                            tracing::error!(campaign = %pending.entry.id(), user = %pending.user_id,
                                error = &error as &dyn std::error::Error, "a claim failed in the store");
                            EngineError::from(error)
                        });
                    pending.entry.claim_decided();
                    self.answer(pending, answer);
                }
            }
            Err(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    claims = waiting.len(),
                    "a claim batch failed"
                );
                for pending in waiting {
                    pending.entry.claim_decided();
                    self.answer(pending, Err(batch_failure(&error)));
                }
            }
        }
        self.metrics
            .claim_batch_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    fn answer(&self, pending: PendingClaim, answer: Result<ClaimAnswer, EngineError>) {
        let outcome = match &answer {
            Ok(ClaimAnswer::Claimed(_)) => "claimed",
            Ok(ClaimAnswer::AlreadyHeld(_)) => "already_held",
            Ok(ClaimAnswer::Refused(refusal)) => refusal.as_str(),
            Err(EngineError::Unavailable(_)) => "unavailable",
            Err(_) => "failed",
        };
        self.metrics.count_claim(outcome);
        // The client may have gone; its claim stands either way.
        let _ = pending.answer.send(answer);
    }
}

/// Memory learns from what the store decided.
fn remember(entry: &CampaignEntry, outcome: ClaimOutcome) -> ClaimAnswer {
    match outcome {
        ClaimOutcome::Claimed(voucher) => {
            entry.took_one();
            ClaimAnswer::Claimed(voucher)
        }
        ClaimOutcome::AlreadyHeld(voucher) => ClaimAnswer::AlreadyHeld(voucher),
        ClaimOutcome::SoldOut => {
            entry.ran_out();
            ClaimAnswer::Refused(Refusal::SoldOut)
        }
        ClaimOutcome::DailyLimitReached => ClaimAnswer::Refused(Refusal::DailyLimitReached),
    }
}

/// One failed batch answers each of its claims with the same cause.
fn batch_failure(error: &StoreError) -> EngineError {
    let copy = StoreError::Database(error.to_string().into());
    if error.is_unavailable() {
        EngineError::Unavailable(StoreError::Unavailable(error.to_string().into()))
    } else {
        EngineError::Internal(copy)
    }
}
