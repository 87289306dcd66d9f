//! The load generator's own parts through its public API: the arrival
//! schedule, the scenarios' scaling, and a verdict that bites. The
//! scenarios against the real server are in `crates/voucherd/tests/it/load.rs`.

mod curve;
mod scaling;
mod verdict;
