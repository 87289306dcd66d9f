//! The engine's Prometheus metrics. The registry belongs to the binary; the
//! engine registers what it measures when it is built.
//!
//! Everything here is an atomic the hot path bumps, or a value read at
//! scrape time from counters in memory ([`StateCollector`]): a scrape never
//! queries the database. Labels are bounded: outcomes, bounds and
//! gateways are fixed sets; campaigns are not a label (their number grows
//! without bound; a campaign's figures are in its report).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use voucherd_store::Store;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentLabels {
    pub gateway: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub gateway: String,
}

/// Which bound refused a request: `connections`, `requests_in_flight`,
/// `request_timeout`, `tenant_rate`, `claim_queue`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabels {
    pub bound: &'static str,
}

#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Gateway calls by gateway and outcome.
    pub payments: Family<PaymentLabels, Counter>,
    /// Reservations returned to the pool by the expiry worker.
    pub reservations_expired: Counter,
    /// Claims by how they ended: claimed, already_held, sold_out, ...
    pub claims: Family<OutcomeLabels, Counter>,
    /// Claims that reached the store per batch.
    pub claim_batch_size: Histogram,
    /// Time from a batch's start to its commit.
    pub claim_batch_seconds: Histogram,
    /// Claims waiting for a batch.
    pub claim_queue_depth: Gauge,
    /// The claim queue's bound.
    pub claim_queue_max: Gauge,
    /// Claims refused because the queue was full.
    pub claims_shed: Counter,
    /// Locks returned to issued by the expiry worker.
    pub locks_expired: Counter,
    /// Requests refused by a bound, by the bound; the HTTP layer counts
    /// its own bounds here too.
    pub refusals: Family<BoundLabels, Counter>,
    /// Payments this node is working on, and the most it may.
    pub payments_in_flight: Gauge,
    pub payments_in_flight_max: Gauge,
    /// The store's payment queue, as the last refresh read it.
    pub payments_due: Gauge,
    pub payments_oldest_due_seconds: Gauge<f64, AtomicU64>,
    pub payments_working: Gauge,
    /// 1 while a gateway's breaker keeps traffic away (open or probing).
    pub gateway_breaker_open: Family<GatewayLabels, Gauge>,
    /// A gateway's configured rate, and this node's granted share of it.
    pub gateway_rate: Family<GatewayLabels, Gauge>,
    pub gateway_share: Family<GatewayLabels, Gauge>,
    /// Refreshes from the store by outcome (`ok`, `failed`).
    pub refreshes: Family<OutcomeLabels, Counter>,
    /// 1 when the last refresh reached the store, 0 when it failed.
    pub store_up: Gauge,
    /// When the last refresh succeeded, for the refresh age.
    refreshed: Arc<RefreshClock>,
}

/// Nanoseconds from `started` to the last successful refresh (0: none yet).
#[derive(Debug)]
struct RefreshClock {
    started: Instant,
    last_ok_nanos: AtomicU64,
}

impl RefreshClock {
    fn age_seconds(&self) -> f64 {
        let since_start = self.started.elapsed();
        let last = std::time::Duration::from_nanos(self.last_ok_nanos.load(Ordering::Relaxed));
        since_start.saturating_sub(last).as_secs_f64()
    }
}

impl EngineMetrics {
    pub fn register(registry: &mut Registry) -> EngineMetrics {
        let metrics = EngineMetrics {
            payments: Family::default(),
            reservations_expired: Counter::default(),
            claims: Family::default(),
            claim_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            claim_batch_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 14)),
            claim_queue_depth: Gauge::default(),
            claim_queue_max: Gauge::default(),
            claims_shed: Counter::default(),
            locks_expired: Counter::default(),
            refusals: Family::default(),
            payments_in_flight: Gauge::default(),
            payments_in_flight_max: Gauge::default(),
            payments_due: Gauge::default(),
            payments_oldest_due_seconds: Gauge::default(),
            payments_working: Gauge::default(),
            gateway_breaker_open: Family::default(),
            gateway_rate: Family::default(),
            gateway_share: Family::default(),
            refreshes: Family::default(),
            store_up: Gauge::default(),
            refreshed: Arc::new(RefreshClock {
                started: Instant::now(),
                last_ok_nanos: AtomicU64::new(0),
            }),
        };
        // Every bound's series exists from the start, so that a rate over
        // it is 0 rather than absent before the first refusal.
        for bound in [
            "connections",
            "requests_in_flight",
            "request_timeout",
            "tenant_rate",
            "claim_queue",
        ] {
            drop(metrics.refusals.get_or_create(&BoundLabels { bound }));
        }
        for outcome in ["ok", "failed"] {
            drop(metrics.refreshes.get_or_create(&OutcomeLabels { outcome }));
        }
        registry.register(
            "voucherd_claims",
            "Claims by outcome",
            metrics.claims.clone(),
        );
        registry.register(
            "voucherd_claim_batch_size",
            "Claims committed per batch",
            metrics.claim_batch_size.clone(),
        );
        registry.register(
            "voucherd_claim_batch_seconds",
            "Time to decide and commit one batch of claims",
            metrics.claim_batch_seconds.clone(),
        );
        registry.register(
            "voucherd_claim_queue_depth",
            "Claims waiting for a batch",
            metrics.claim_queue_depth.clone(),
        );
        registry.register(
            "voucherd_claim_queue_max",
            "Claims that may wait for a batch (--claim-queue-max)",
            metrics.claim_queue_max.clone(),
        );
        registry.register(
            "voucherd_claims_shed",
            "Claims refused with 503 because the claim queue was full",
            metrics.claims_shed.clone(),
        );
        registry.register(
            "voucherd_refusals",
            "Requests refused by a bound (429/503 with Retry-After), by the bound",
            metrics.refusals.clone(),
        );
        registry.register(
            "voucherd_locks_expired",
            "Redemption locks returned to issued by the expiry worker",
            metrics.locks_expired.clone(),
        );
        registry.register(
            "voucherd_payment_attempts",
            "Payment gateway calls by gateway and outcome",
            metrics.payments.clone(),
        );
        registry.register(
            "voucherd_reservations_expired",
            "Unpaid reservations returned to the pool by the expiry worker",
            metrics.reservations_expired.clone(),
        );
        registry.register(
            "voucherd_payments_in_flight",
            "Payments this node holds a lease on and is working on",
            metrics.payments_in_flight.clone(),
        );
        registry.register(
            "voucherd_payments_in_flight_max",
            "Payments this node may work on at once",
            metrics.payments_in_flight_max.clone(),
        );
        registry.register(
            "voucherd_payments_due",
            "Queued payments due for an attempt, across every node (read at each refresh)",
            metrics.payments_due.clone(),
        );
        registry.register(
            "voucherd_payments_oldest_due_seconds",
            "How long the oldest due payment has waited for an attempt (read at each refresh)",
            metrics.payments_oldest_due_seconds.clone(),
        );
        registry.register(
            "voucherd_payments_working",
            "Payments leased by some node, across every node (read at each refresh)",
            metrics.payments_working.clone(),
        );
        registry.register(
            "voucherd_gateway_breaker_open",
            "1 while the gateway's breaker keeps charges away (open or probing), else 0",
            metrics.gateway_breaker_open.clone(),
        );
        registry.register(
            "voucherd_gateway_rate_per_second",
            "The gateway's configured rate (charges per second, for the whole deployment)",
            metrics.gateway_rate.clone(),
        );
        registry.register(
            "voucherd_gateway_share_per_second",
            "This node's granted share of the gateway's rate (charges per second)",
            metrics.gateway_share.clone(),
        );
        registry.register(
            "voucherd_refreshes",
            "Refreshes of memory from the store, by outcome",
            metrics.refreshes.clone(),
        );
        registry.register(
            "voucherd_store_up",
            "1 when the last refresh reached the store, 0 when it failed",
            metrics.store_up.clone(),
        );
        metrics
    }

    pub fn count_payment(&self, gateway: &str, outcome: &'static str) {
        self.payments
            .get_or_create(&PaymentLabels {
                gateway: gateway.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn count_claim(&self, outcome: &'static str) {
        self.claims.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// A request refused by `bound`.
    pub fn count_refusal(&self, bound: &'static str) {
        self.refusals.get_or_create(&BoundLabels { bound }).inc();
    }

    /// The gauge of one gateway in `family`, made when first asked for;
    /// the clone shares its value.
    pub fn gateway_gauge(family: &Family<GatewayLabels, Gauge>, gateway: &str) -> Gauge {
        family
            .get_or_create(&GatewayLabels {
                gateway: gateway.to_owned(),
            })
            .clone()
    }

    pub(crate) fn refreshed(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.refreshes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.store_up.set(i64::from(ok));
        if ok {
            let nanos = u64::try_from(self.refreshed.started.elapsed().as_nanos()).unwrap_or(0);
            self.refreshed.last_ok_nanos.store(nanos, Ordering::Relaxed);
        }
    }

    /// Registers what is read at scrape time: the refresh age and the
    /// store's own bounds.
    pub(crate) fn register_state(&self, registry: &mut Registry, store: Arc<dyn Store>) {
        registry.register_collector(Box::new(StateCollector {
            store,
            refreshed: self.refreshed.clone(),
        }));
    }
}

/// Values computed at each scrape from counters in memory.
#[derive(Debug)]
struct StateCollector {
    store: Arc<dyn Store>,
    refreshed: Arc<RefreshClock>,
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        gauge(
            &mut encoder,
            "voucherd_refresh_age_seconds",
            "Seconds since memory last caught up with the store (other nodes' changes); since start when never",
            self.refreshed.age_seconds(),
        )?;
        let stats = self.store.stats();
        if let Some(writer) = stats.sqlite_writer {
            counter(
                &mut encoder,
                "voucherd_sqlite_writer_busy_seconds",
                "Seconds the SQLite writer thread spent on write groups; its rate is the writer's busy share",
                writer.busy_seconds,
            )?;
            counter(
                &mut encoder,
                "voucherd_sqlite_write_groups",
                "SQLite write groups (one transaction and one fsync each)",
                writer.groups as f64,
            )?;
            counter(
                &mut encoder,
                "voucherd_sqlite_write_jobs",
                "Jobs run in SQLite write groups",
                writer.jobs as f64,
            )?;
            gauge(
                &mut encoder,
                "voucherd_sqlite_writer_queue_depth",
                "Jobs waiting for the SQLite writer",
                writer.queue_depth as f64,
            )?;
            gauge(
                &mut encoder,
                "voucherd_sqlite_writer_queue_max",
                "Jobs that may wait for the SQLite writer before callers wait to enqueue",
                writer.queue_max as f64,
            )?;
        }
        if let Some(pool) = stats.postgres_pool {
            gauge(
                &mut encoder,
                "voucherd_postgres_pool_connections",
                "Connections open in the PostgreSQL primary pool",
                pool.size as f64,
            )?;
            gauge(
                &mut encoder,
                "voucherd_postgres_pool_idle",
                "Idle connections in the PostgreSQL primary pool",
                pool.idle as f64,
            )?;
            gauge(
                &mut encoder,
                "voucherd_postgres_pool_max",
                "Connections the PostgreSQL primary pool may open (--database-pool-max)",
                pool.max as f64,
            )?;
            gauge(
                &mut encoder,
                "voucherd_postgres_pool_waiting",
                "Callers waiting for a PostgreSQL connection now",
                pool.waiting as f64,
            )?;
            counter(
                &mut encoder,
                "voucherd_postgres_pool_wait_seconds",
                "Seconds callers spent waiting for a PostgreSQL connection",
                pool.wait_seconds,
            )?;
            counter(
                &mut encoder,
                "voucherd_postgres_pool_waits",
                "Waits for a PostgreSQL connection (every operation has one)",
                pool.waits as f64,
            )?;
            counter(
                &mut encoder,
                "voucherd_postgres_pool_timeouts",
                "Waits for a PostgreSQL connection that ran out (answered 503)",
                pool.timeouts as f64,
            )?;
        }
        Ok(())
    }
}
