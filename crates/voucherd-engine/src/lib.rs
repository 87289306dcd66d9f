//! voucherd's engine, between the HTTP layer and the store.
//!
//! - [`Engine`] is the one entry point, a method per intent (create, publish,
//!   claim, login, lock, report).
//! - [`claims`] batches claims: a bounded queue, one store transaction per
//!   batch, answers only after the commit.
//! - [`campaigns`] is the memory that answers sold out, not started, ended
//!   and paused without touching the store.
//! - [`tenants`] holds each tenant's key, time zone and rate limiter.
//! - [`payments`] routes queued payments through the gateways.
//! - [`workers`] runs the expiry and refresh steps on timers; [`clock`] is where the
//!   time comes from, so tests can move it.

pub mod campaigns;
pub mod claims;
pub mod clock;
mod engine;
mod error;
pub mod metrics;
pub mod payments;
pub mod tenants;
pub mod workers;

pub use crate::claims::{ClaimAnswer, ClaimLimits, Refusal};
pub use crate::engine::{
    CodesAdded, Engine, EngineConfig, PaymentSetup, Report, SweepReport, TierCounts, next_key_id,
};
pub use crate::error::{ConflictKind, EngineError};
pub use voucherd_store::{Store, StoreError, model};
