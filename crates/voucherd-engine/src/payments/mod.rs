//! The payment router: takes queued payments from the store and charges
//! them through the gateways, the most preferred gateway with room first,
//! the others taking the overflow.
//!
//! - [`gateway`] is the adapter trait and the HTTP adapter.
//! - [`limiter`] keeps each gateway under its rate in every second.
//! - [`breaker`] moves traffic away from a failing gateway and back.
//! - [`seal`] keeps the card sealed while its payment waits.
//!
//! A payment's idempotency key is its order id, the same on every retry
//! and every gateway. A charge pins the payment to its gateway before the
//! call leaves; an answer that does not settle what happened (a timeout, a
//! reset, a 5xx) keeps the pin, and the next step is a lookup at that
//! gateway — only a gateway that says it never saw the charge releases it
//! to the others. So an unknown outcome never becomes a second charge.

pub mod breaker;
pub mod gateway;
pub mod limiter;
pub mod seal;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use voucherd_core::{SignedDuration, Timestamp};
use voucherd_store::Store;
use voucherd_store::model::{
    AttemptKind, AttemptOutcome, AttemptResult, PaymentStep, PaymentTask, Resolution, ShareRequest,
};

use self::breaker::Breaker;
use self::gateway::{ChargeAnswer, ChargeRequest, Gateway, LookupAnswer};
use self::limiter::{SlidingWindow, Slot};
use self::seal::PaymentKey;
use crate::campaigns::CampaignBook;
use crate::clock::Clock;
use crate::metrics::EngineMetrics;

/// One gateway as configured: lower `priority` is preferred.
#[derive(Debug, Clone)]
pub struct GatewayRoute {
    pub gateway: Arc<dyn Gateway>,
    pub priority: u32,
    pub rate_per_second: u32,
}

/// Bounds and periods of the router.
#[derive(Debug, Clone)]
pub struct PaymentLimits {
    /// Payments being worked on by this node at once.
    pub in_flight_max: usize,
    /// How long a payment is this node's before another may take it.
    pub lease: SignedDuration,
    /// How long a payment waits for a gateway with room before it goes
    /// back to the queue.
    pub capacity_wait_max: Duration,
    /// How long after an unknown outcome the gateway is asked about it, so
    /// that the call in question has surely finished there.
    pub lookup_delay: Duration,
    /// The longest pause between two attempts of one payment.
    pub retry_delay_max: Duration,
    /// A payment no gateway could take within this is failed (one with an
    /// unknown outcome is resolved first, however long that takes).
    pub payment_deadline: SignedDuration,
    /// How often the queue is looked at when nothing woke the router.
    pub poll_period: Duration,
}

impl Default for PaymentLimits {
    fn default() -> PaymentLimits {
        PaymentLimits {
            in_flight_max: 512,
            lease: SignedDuration::from_secs(60),
            capacity_wait_max: Duration::from_secs(2),
            lookup_delay: Duration::from_secs(1),
            retry_delay_max: Duration::from_secs(30),
            payment_deadline: SignedDuration::from_mins(5),
            poll_period: Duration::from_millis(250),
        }
    }
}

#[derive(Debug)]
struct Route {
    config: GatewayRoute,
    /// Paces sends at this node's share of the gateway's rate.
    window: Mutex<SlidingWindow>,
    breaker: Mutex<Breaker>,
    /// A 429 asks the router to stay away until then.
    resting_until: Mutex<Option<Instant>>,
    /// Until when the share last granted may be used; past it, nothing is
    /// sent until a new grant (the store unreachable, say).
    share_usable_until: Mutex<Instant>,
    /// When a payment last looked for room here: a node that had no use
    /// for the gateway lately asks for no share.
    last_wanted: Mutex<Option<Instant>>,
    /// The metrics of this gateway: its breaker (1 open) and this node's
    /// share of its rate.
    breaker_open: prometheus_client::metrics::gauge::Gauge,
    share: prometheus_client::metrics::gauge::Gauge,
}

/// How gateways' rates are shared among nodes (`voucherd_core::share`).
mod sharing {
    use std::time::Duration;

    /// How often a node renews its share of each gateway it uses.
    pub const RENEW_EVERY: Duration = Duration::from_millis(250);
    /// How long a grant may be used; renewals come well before.
    pub const USABLE_FOR: Duration = Duration::from_millis(750);
    /// How long after a payment last looked for room the node still asks
    /// for a share.
    pub const WANT_FOR: Duration = Duration::from_secs(2);
}

impl Route {
    fn name(&self) -> &str {
        self.config.gateway.name()
    }

    /// Holds room for one charge now, or says when to look again.
    fn take_room(&self, now: Instant) -> Result<Slot, Instant> {
        *self
            .last_wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(now);
        if now
            >= *self
                .share_usable_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(now + sharing::RENEW_EVERY);
        }
        let mut resting = self
            .resting_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = *resting {
            if now < until {
                return Err(until);
            }
            *resting = None;
        }
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = window.try_take(now)?;
        if self
            .breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allows(now)
        {
            Ok(slot)
        } else {
            window.give_back(slot);
            Err(now + Duration::from_millis(50))
        }
    }

    /// Waits until the held room can be used now, the moment the charge
    /// leaves.
    async fn confirm(&self, slot: Slot) {
        loop {
            let now = Instant::now();
            let confirmed = self
                .window
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .confirm(slot, now);
            match confirmed {
                Ok(()) => return,
                Err(at) => {
                    tokio::time::sleep_until(at.max(now + Duration::from_millis(1)).into()).await
                }
            }
        }
    }

    /// Gives back room taken for a charge that was never sent.
    fn give_back(&self, slot: Slot) {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give_back(slot);
        self.breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel_probe(Instant::now());
    }

    fn refused_for_rate(&self) {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused_at(Instant::now());
    }

    fn rest(&self, until: Instant) {
        *self
            .resting_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(until);
    }

    fn succeeded(&self) {
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        breaker.succeeded();
        self.show_breaker(&breaker);
    }

    fn failed(&self) {
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        breaker.failed(Instant::now());
        self.show_breaker(&breaker);
    }

    /// Only `succeeded` and `failed` move the breaker between closed and
    /// not closed (the other moves are between open and probing).
    fn show_breaker(&self, breaker: &Breaker) {
        let open = breaker.state() != self::breaker::BreakerState::Closed;
        self.breaker_open.set(i64::from(open));
    }
}

#[derive(Debug)]
pub struct PaymentRouter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    campaigns: Arc<CampaignBook>,
    key: PaymentKey,
    routes: Vec<Route>,
    limits: PaymentLimits,
    wake: Notify,
    permits: Arc<Semaphore>,
    /// Taken by the one payment waiting for a gateway's room; the others
    /// queue behind it in order.
    choosing: tokio::sync::Mutex<()>,
    metrics: EngineMetrics,
    /// This run of this node, as gateway shares name it.
    node: String,
}

impl PaymentRouter {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        campaigns: Arc<CampaignBook>,
        key: PaymentKey,
        mut gateways: Vec<GatewayRoute>,
        limits: PaymentLimits,
        metrics: EngineMetrics,
    ) -> PaymentRouter {
        gateways.sort_by_key(|route| route.priority);
        metrics
            .payments_in_flight_max
            .set(i64::try_from(limits.in_flight_max.max(1)).unwrap_or(i64::MAX));
        PaymentRouter {
            store,
            clock,
            campaigns,
            key,
            routes: gateways
                .into_iter()
                .map(|config| {
                    let name = config.gateway.name();
                    EngineMetrics::gateway_gauge(&metrics.gateway_rate, name)
                        .set(i64::from(config.rate_per_second));
                    Route {
                        window: Mutex::new(SlidingWindow::full_until_a_window_after(
                            config.rate_per_second,
                            Instant::now(),
                        )),
                        breaker: Mutex::new(Breaker::new()),
                        resting_until: Mutex::new(None),
                        share_usable_until: Mutex::new(Instant::now()),
                        last_wanted: Mutex::new(None),
                        breaker_open: EngineMetrics::gateway_gauge(
                            &metrics.gateway_breaker_open,
                            name,
                        ),
                        share: EngineMetrics::gateway_gauge(&metrics.gateway_share, name),
                        config,
                    }
                })
                .collect(),
            permits: Arc::new(Semaphore::new(limits.in_flight_max.max(1))),
            limits,
            wake: Notify::new(),
            choosing: tokio::sync::Mutex::new(()),
            metrics,
            node: uuid::Uuid::new_v4().to_string(),
        }
    }

    pub fn key(&self) -> &PaymentKey {
        &self.key
    }

    /// Tells the router a payment was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Takes payments from the queue and works on them until `shutdown`
    /// resolves; then lets the calls under way finish.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let sharing = tokio::spawn({
            let router = self.clone();
            async move { router.keep_shares().await }
        });
        loop {
            let leased = match self.dispatch_once().await {
                Ok(leased) => leased,
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "leasing payments failed"
                    );
                    0
                }
            };
            if leased > 0 {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.limits.poll_period) => {}
            }
        }
        let in_flight = self.limits.in_flight_max.max(1) as u32;
        let _ = self.permits.acquire_many(in_flight).await;
        sharing.abort();
    }

    /// Renews this node's share of every gateway it has use for, a few
    /// times a second, until aborted.
    async fn keep_shares(&self) {
        loop {
            for route in &self.routes {
                self.renew_share(route).await;
            }
            tokio::time::sleep(sharing::RENEW_EVERY).await;
        }
    }

    /// Asks the store for this node's share of the gateway's rate. A node
    /// with no use for the gateway lately asks for nothing and holds
    /// nothing; one whose request fails keeps its grant until it runs out.
    async fn renew_share(&self, route: &Route) {
        let asked = Instant::now();
        let wanted = route
            .last_wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| asked.saturating_duration_since(at) < sharing::WANT_FOR);
        if !wanted {
            route
                .window
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_rate(0);
            route.share.set(0);
            return;
        }
        let now = self.clock.now();
        let counted_for =
            sharing::USABLE_FOR + SlidingWindow::JITTER_MARGIN + Duration::from_secs(1);
        let request = ShareRequest {
            gateway: route.name().to_owned(),
            node: self.node.clone(),
            rate: route.config.rate_per_second,
            want: route.config.rate_per_second,
            now,
            counted_until: now.checked_add(counted_for).unwrap_or(Timestamp::MAX),
        };
        match self.store.share_gateway(&request).await {
            Ok(granted) => {
                assert!(granted <= request.rate, "a share is at most the rate");
                route
                    .window
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .set_rate(granted);
                route.share.set(i64::from(granted));
                *route
                    .share_usable_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = asked + sharing::USABLE_FOR;
            }
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                gateway = route.name(),
                "renewing the gateway share failed; the grant runs out by itself"
            ),
        }
    }

    /// Leases as many due payments as there is room for and starts working
    /// on each; answers how many.
    pub async fn dispatch_once(self: &Arc<Self>) -> Result<usize, voucherd_store::StoreError> {
        let room = self.permits.available_permits().min(256);
        if room == 0 {
            return Ok(0);
        }
        let tasks = self
            .store
            .lease_payments(self.clock.now(), self.limits.lease, room as u32)
            .await?;
        let leased = tasks.len();
        for task in tasks {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            let router = self.clone();
            router.metrics.payments_in_flight.inc();
            tokio::spawn(async move {
                router.work(task).await;
                router.metrics.payments_in_flight.dec();
                drop(permit);
                router.wake.notify_one();
            });
        }
        Ok(leased)
    }

    async fn work(&self, task: PaymentTask) {
        let step = match task.pinned_gateway.clone() {
            Some(pinned) => self.resolve(&task, &pinned).await,
            None => self.charge(&task).await,
        };
        let Some(step) = step else {
            return;
        };
        if let Err(error) = self
            .store
            .finish_payment(&task.lease, &step, self.clock.now())
            .await
        {
            // The lease runs out and the payment is taken again; a pinned
            // charge is then resolved by a lookup, so nothing is lost.
            tracing::error!(order = %task.order.id, error = &error as &dyn std::error::Error,
                "recording a payment's outcome failed");
        }
    }

    fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.name() == name)
    }

    /// The most preferred gateway with room, waiting up to the limit.
    async fn choose(&self) -> Option<(&Route, Slot)> {
        let deadline = Instant::now() + self.limits.capacity_wait_max;
        // Waking every waiting payment each time a place frees would spend,
        // with hundreds waiting, the CPU a burst needs; one waits at a time.
        let _turn = tokio::time::timeout_at(deadline.into(), self.choosing.lock())
            .await
            .ok()?;
        loop {
            let now = Instant::now();
            let mut next = deadline;
            for route in &self.routes {
                match route.take_room(now) {
                    Ok(slot) => return Some((route, slot)),
                    Err(at) => next = next.min(at),
                }
            }
            if now >= deadline {
                return None;
            }
            tokio::time::sleep_until(next.max(now + Duration::from_millis(1)).into()).await;
        }
    }

    fn retry_at(&self, attempts: u32, floor: Duration) -> Timestamp {
        let backoff = Duration::from_millis(100u64.saturating_mul(1 << attempts.min(10)))
            .min(self.limits.retry_delay_max)
            .max(floor);
        let backoff = SignedDuration::try_from(backoff).unwrap_or(SignedDuration::from_secs(30));
        self.clock
            .now()
            .checked_add(backoff)
            .unwrap_or(Timestamp::MAX)
    }

    /// The resolution of a captured charge: the voucher's expiry counts
    /// from now, when it is issued.
    ///
    /// The campaign comes from memory, or from the store when this node
    /// does not hold it (created on another node, or evicted after it
    /// ended): a voucher must never be issued without its expiry because
    /// of what one node's memory happens to hold. `None` when the store
    /// cannot be read now; the payment is then decided on a later lease.
    async fn paid(&self, task: &PaymentTask, gateway: &str) -> Option<Resolution> {
        let now = self.clock.now();
        let expires_at = match self.campaigns.get(task.order.campaign_id) {
            Some(entry) => entry.spec().voucher_expires_at(now),
            None => match self.store.campaign(task.order.campaign_id).await {
                Ok(Some(record)) => record.spec.voucher_expires_at(now),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%error, "reading a paid order's campaign failed");
                    return None;
                }
            },
        };
        Some(Resolution::Paid {
            gateway: gateway.to_owned(),
            expires_at,
        })
    }

    async fn charge(&self, task: &PaymentTask) -> Option<PaymentStep> {
        let now = self.clock.now();
        let overdue = now.duration_since(task.order.created_at) > self.limits.payment_deadline;
        let card = match self.key.open(&task.sealed_card, now) {
            Ok(card) => card,
            Err(error) => {
                tracing::error!(order = %task.order.id, %error, "a queued card cannot be opened");
                return Some(PaymentStep {
                    attempt: None,
                    resolution: Resolution::Failed {
                        reason: "the card could not be read back; check out again".into(),
                    },
                });
            }
        };
        let Some((route, slot)) = self.choose().await else {
            let resolution = if overdue {
                Resolution::Failed {
                    reason: "no payment gateway could take the payment in time".into(),
                }
            } else {
                Resolution::Retry {
                    next_attempt_at: self.retry_at(0, Duration::ZERO),
                    pinned_gateway: None,
                }
            };
            return Some(PaymentStep {
                attempt: None,
                resolution,
            });
        };
        let name = route.name().to_owned();
        let Some(number) = self.start(task, &name, AttemptKind::Charge).await else {
            route.give_back(slot);
            return None;
        };
        route.confirm(slot).await;
        let key = task.order.id.to_string();
        let answer = route
            .config
            .gateway
            .charge(&ChargeRequest {
                idempotency_key: &key,
                amount: task.order.amount,
                card: &card,
            })
            .await;
        let (outcome, detail, charge_id, resolution) = match answer {
            ChargeAnswer::Captured { charge_id } => {
                route.succeeded();
                (
                    AttemptOutcome::Captured,
                    None,
                    Some(charge_id),
                    self.paid(task, &name).await?,
                )
            }
            ChargeAnswer::Declined { charge_id } => {
                route.succeeded();
                let resolution = Resolution::Failed {
                    reason: "the card was declined".into(),
                };
                (AttemptOutcome::Declined, None, Some(charge_id), resolution)
            }
            ChargeAnswer::Refused {
                reason,
                retry_after,
                rate_limited,
            } => {
                // A full gateway is healthy: it counted more than this node
                // did, so its window here takes one more place. One that
                // refuses otherwise counts towards its breaker and is left
                // alone for as long as it asks.
                if rate_limited {
                    route.refused_for_rate();
                } else {
                    route.failed();
                    if let Some(wait) = retry_after {
                        route.rest(Instant::now() + wait);
                    }
                }
                let resolution = Resolution::Retry {
                    next_attempt_at: self.clock.now(),
                    pinned_gateway: None,
                };
                (AttemptOutcome::Refused, Some(reason), None, resolution)
            }
            ChargeAnswer::Unknown { reason } => {
                route.failed();
                let resolution = Resolution::Retry {
                    next_attempt_at: self.retry_at(0, self.limits.lookup_delay),
                    pinned_gateway: Some(name.clone()),
                };
                (AttemptOutcome::Unknown, Some(reason), None, resolution)
            }
        };
        self.count(&name, outcome);
        Some(PaymentStep {
            attempt: Some(AttemptResult {
                number,
                outcome,
                detail,
                charge_id,
            }),
            resolution,
        })
    }

    /// Asks the gateway a charge went to what became of it.
    async fn resolve(&self, task: &PaymentTask, pinned: &str) -> Option<PaymentStep> {
        let Some(route) = self.route(pinned) else {
            tracing::error!(order = %task.order.id, gateway = pinned,
                "a payment's outcome is unknown at a gateway that is no longer configured");
            return Some(PaymentStep {
                attempt: None,
                resolution: Resolution::Retry {
                    next_attempt_at: self.retry_at(task.attempts, self.limits.retry_delay_max),
                    pinned_gateway: Some(pinned.to_owned()),
                },
            });
        };
        let number = self.start(task, pinned, AttemptKind::Lookup).await?;
        let answer = route
            .config
            .gateway
            .lookup(&task.order.id.to_string())
            .await;
        let (outcome, detail, charge_id, resolution) = match answer {
            LookupAnswer::Captured { charge_id } => (
                AttemptOutcome::Captured,
                None,
                Some(charge_id),
                self.paid(task, pinned).await?,
            ),
            LookupAnswer::Declined { charge_id } => {
                let resolution = Resolution::Failed {
                    reason: "the card was declined".into(),
                };
                (AttemptOutcome::Declined, None, Some(charge_id), resolution)
            }
            LookupAnswer::NotFound => {
                let resolution = Resolution::Retry {
                    next_attempt_at: self.clock.now(),
                    pinned_gateway: None,
                };
                (AttemptOutcome::NotFound, None, None, resolution)
            }
            LookupAnswer::Failed { reason } => {
                route.failed();
                let resolution = Resolution::Retry {
                    next_attempt_at: self.retry_at(task.attempts, self.limits.lookup_delay),
                    pinned_gateway: Some(pinned.to_owned()),
                };
                (AttemptOutcome::Failed, Some(reason), None, resolution)
            }
        };
        self.count(pinned, outcome);
        Some(PaymentStep {
            attempt: Some(AttemptResult {
                number,
                outcome,
                detail,
                charge_id,
            }),
            resolution,
        })
    }

    /// Records the call about to leave; `None` when the lease was lost (or
    /// the store failed), and the call must not be made.
    async fn start(&self, task: &PaymentTask, gateway: &str, kind: AttemptKind) -> Option<u32> {
        match self
            .store
            .start_attempt(&task.lease, gateway, kind, self.clock.now())
            .await
        {
            Ok(number) => number,
            Err(error) => {
                tracing::warn!(order = %task.order.id, error = &error as &dyn std::error::Error,
                    "recording a payment attempt failed; the payment waits for its lease to run out");
                None
            }
        }
    }

    fn count(&self, gateway: &str, outcome: AttemptOutcome) {
        self.metrics.count_payment(gateway, outcome.as_str());
    }
}
