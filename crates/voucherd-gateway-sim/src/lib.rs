//! A payment gateway simulator: the stand-in for voucherd's real gateways
//! in tests and load runs, speaking the HTTP adapter's protocol.
//!
//! - [`config`] says how the gateway behaves ([`SimulatorConfig`]: rate,
//!   latency, decline and timeout rates, seed) and parses the command line's
//!   strings into it.

pub mod config;

pub use crate::config::{ConfigError, SimulatorConfig};
