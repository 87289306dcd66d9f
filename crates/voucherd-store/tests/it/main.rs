//! The store's integration tests: one conformance suite, run against every
//! backend.

mod conformance;
mod model;
mod postgres;
mod sqlite;
