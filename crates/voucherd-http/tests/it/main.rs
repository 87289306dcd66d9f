//! The HTTP API in process: the router called directly, with an injected
//! clock and a store that can fail on demand.

mod app;
mod bad_input;
mod campaigns;
mod claims;
mod front;
mod idempotency;
mod operations;
mod payments;
mod vouchers;
