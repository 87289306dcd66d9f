//! The gateway simulator's integration tests, over real TCP through a
//! `TestApp` with one method per endpoint.

mod app;
mod charges;
mod config;
mod outage;
mod outcomes;
mod rate;
