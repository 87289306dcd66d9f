//! The load generator's own parts through its public API: the arrival
//! schedule, the scenarios' scaling, a verdict that bites, and the Hot
//! Deal's checkout flow against a fake shop. The scenarios against the real
//! server are in `crates/voucherd/tests/it/load.rs`.

mod checkout;
mod curve;
mod scaling;
mod verdict;
