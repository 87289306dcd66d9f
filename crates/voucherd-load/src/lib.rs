//! voucherd's load generator: replays the product's scenarios against
//! running voucherd nodes over HTTP, as users would.
//!
//! - [`Config`] says what a run does: the scenario, the target nodes and
//!   tokens, the arrival curve, and the bound on everything it keeps or
//!   waits for.
//! - [`curve`] is the target arrival rate over time (`"0:0,5:20000,60:20000"`)
//!   and the schedule of arrivals it implies.
//! - [`api`] is one keep-alive client for every target node; [`wire`] the
//!   parts of the API's JSON the load generator reads, written from the
//!   contract.
//! - [`verdict`] checks the invariants (supply never exceeded, sold equals
//!   supply, per-tier counts, nobody twice, every acknowledged voucher
//!   stored, every paid order with its voucher, gateway ledgers) as a pure
//!   function of an [`verdict::Evidence`], so it can be shown to bite;
//!   [`book`] keeps the per-user records it reads, two bytes a user.
//!
//! The load generator never links voucherd's core, store, engine or HTTP
//! crates: it knows the service only by its API contract.

pub mod api;
pub mod book;
pub mod config;
pub mod curve;
pub mod verdict;
pub mod wire;

use std::path::PathBuf;

pub use crate::config::{Config, ProgressMode, ScenarioKind};
pub use crate::curve::RateCurve;
pub use crate::verdict::{Check, Verdict};

use crate::api::Failure;

/// Why a run could not be made (as opposed to a verdict that failed).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what}: no answer: {failure}")]
    Unreachable { what: String, failure: Failure },
    #[error("{what}: answered {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{what}: the answer is not the JSON expected: {source}")]
    Decode {
        what: String,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a verification task failed: {0}")]
    Task(String),
}
