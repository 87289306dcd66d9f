//! voucherd's load generator: replays the product's scenarios against
//! running voucherd nodes over HTTP, as users would.
//!
//! - [`curve`] is the target arrival rate over time (`"0:0,5:20000,60:20000"`)
//!   and the schedule of arrivals it implies.
//!
//! The load generator never links voucherd's core, store, engine or HTTP
//! crates: it knows the service only by its API contract.

pub mod curve;
