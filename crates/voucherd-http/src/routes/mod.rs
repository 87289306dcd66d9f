//! The handlers, one module per part of the API.

pub mod campaigns;
pub mod claims;
pub mod operations;
pub mod payments;
pub mod tenant;
pub mod vouchers;
