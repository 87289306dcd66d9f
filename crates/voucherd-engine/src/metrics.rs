//! The engine's Prometheus metrics. The registry belongs to the binary; the
//! engine registers what it measures when it is built.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentLabels {
    pub gateway: String,
    pub outcome: &'static str,
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
    /// Claims refused because the queue was full.
    pub claims_shed: Counter,
    /// Locks returned to issued by the expiry worker.
    pub locks_expired: Counter,
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
            claims_shed: Counter::default(),
            locks_expired: Counter::default(),
        };
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
            "voucherd_claims_shed",
            "Claims refused with 503 because the claim queue was full",
            metrics.claims_shed.clone(),
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
}
