//! The load generator's own parts through its public API: the arrival
//! schedule and a verdict that bites.

mod curve;
mod verdict;
