//! The domain core of voucherd: what a campaign is, who may claim it and at
//! what price, how voucher codes are made, and which transitions a voucher
//! may take.
//!
//! - [`campaign`] validates a campaign's rules into a [`campaign::CampaignSpec`]
//!   and answers "may this be claimed now, at which tier, until when".
//! - [`code`] owns code patterns, the look-alike-free alphabet and the code
//!   space arithmetic.
//! - [`voucher`] holds the voucher lifecycle (reserve, issue, lock, unlock,
//!   redeem, expire) as pure transitions that the stores mirror in SQL.
//! - [`payment`] checks what a buyer hands over at checkout: email and card.
//! - [`share`] decides how nodes share one gateway's rate.
//! - [`money`], [`ids`] and [`calendar`] are the value types the rest is built
//!   from.
//!
//! The core never reads the clock, never touches a file or a socket and never
//! draws randomness itself: `now` and entropy are arguments, so every rule is
//! deterministic under test.

pub mod calendar;
pub mod campaign;
pub mod code;
pub mod ids;
pub mod money;
pub mod payment;
pub mod share;
pub mod validation;
pub mod voucher;

pub use jiff::{SignedDuration, Timestamp, civil::Date, tz::TimeZone};
