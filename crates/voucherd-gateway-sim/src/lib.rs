//! A payment gateway simulator: the stand-in for voucherd's real gateways
//! in tests and load runs, speaking the HTTP adapter's protocol.
//!
//! - [`config`] says how the gateway behaves ([`SimulatorConfig`]: rate,
//!   latency, decline and timeout rates, seed) and parses the command line's
//!   strings into it.
//! - [`Simulator`] is one gateway's state; [`serve`] serves it on a listener
//!   until a shutdown future resolves, and [`Simulator::start`] runs one in
//!   the background for a test, returning a [`SimulatorHandle`].
//! - The ledger keeps every decided charge by idempotency key and decides
//!   each request in one step under one lock, so a key never captures
//!   twice; the rate window behind it never admits more than the rate in
//!   any one-second window.
//! - [`clock`] lets a test hold time still; the draws that decide declines,
//!   timeouts and latency derive from the seed and the idempotency key, so a
//!   seeded run is reproducible whatever order concurrent requests arrive in.
//! - The card module checks card fields and keeps only brand and last four.
//!
//! # Protocol
//!
//! - `POST /charges` `{"idempotency_key", "amount", "currency", "card":
//!   {"number", "exp_month", "exp_year", "cvc", "name"}}` → `201 {"id",
//!   "status": "captured" | "declined"}` for a new charge; `200` with the
//!   same body for a repeat of a decided key; `422` for a decided key with
//!   another amount or currency; `400` for a body that is not JSON, `422`
//!   for invalid fields, `413` for one over 16 KiB; `429` with `Retry-After`
//!   past the rate; `503` with `Retry-After` while down or past
//!   `in_flight_max`. With probability `timeout_rate` no answer comes
//!   within `timeout_hold` (then a `504`): half of those charges were
//!   decided and are in the ledger, half never reached the gateway.
//! - `GET /charges/{idempotency_key}` → `200 {"id", "idempotency_key",
//!   "amount", "currency", "status", "at", "card": {"brand", "last4"}}` or
//!   `404`; `503` while down.
//! - `GET /ledger` → `{"charges": [{"id", "idempotency_key", "amount",
//!   "currency", "status", "at", "answered"}], "rate_per_second",
//!   "accepted_per_second_max"}` and `GET /stats` → the counters; both
//!   answer while down.
//! - `POST /admin/down` and `POST /admin/up` start and end an outage.
//!
//! Every refusal is `{"error": code, "message", "fields"?}`. Times are
//! RFC 3339 UTC.

pub mod clock;
pub mod config;

mod card;
mod draws;
mod ledger;
mod rate;
mod routes;
mod simulator;
mod wire;

use std::future::Future;

use tokio::net::TcpListener;

pub use crate::card::{CardBrand, CardSummary};
pub use crate::config::{ConfigError, SimulatorConfig};
pub use crate::ledger::{Charge, ChargeStatus, Stats};
pub use crate::simulator::{Simulator, SimulatorError, SimulatorHandle};

/// Serves a gateway simulator with `config` on `listener` until `shutdown`
/// resolves. This is all `voucherd gateway-sim` has to call.
pub async fn serve(
    listener: TcpListener,
    config: SimulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimulatorError> {
    let simulator = Simulator::new(config)?;
    simulator.serve(listener, shutdown).await?;
    Ok(())
}
