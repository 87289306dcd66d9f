//! The load generator's own parts through its public API.

mod curve;
