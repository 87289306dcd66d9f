//! The gateway simulator's integration tests.

mod config;
