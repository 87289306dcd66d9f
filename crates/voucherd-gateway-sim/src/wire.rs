//! The JSON the simulator reads and writes, converted explicitly from and to
//! the ledger's types so that the protocol is spelled out in one place.

use serde::{Deserialize, Serialize};

use crate::card::CardFields;
use crate::ledger::{Charge, ChargeRequest, Stats};

/// Longer keys are refused: a key is a handle, not a payload, and every
/// decided one is kept for the simulator's lifetime.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 255;
/// A charge body is a few hundred bytes; anything much larger is refused
/// before it is buffered.
pub const CHARGE_BODY_BYTES_MAX: usize = 16 * 1024;

#[derive(Deserialize)]
struct ChargeBody {
    idempotency_key: String,
    amount: i64,
    currency: String,
    card: CardBody,
}

#[derive(Deserialize)]
struct CardBody {
    number: String,
    exp_month: Number,
    exp_year: Number,
    cvc: String,
    name: String,
}

/// Card forms send expiry fields as text as often as numbers; either is
/// read, so that the engine can pass a card on without reshaping it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Integer(u32),
    Text(String),
}

impl Number {
    fn value(&self) -> Option<u32> {
        match self {
            Number::Integer(value) => Some(*value),
            Number::Text(text) => text.trim().parse().ok(),
        }
    }
}

/// Why a charge body was refused: not JSON at all (`400`), or JSON whose
/// fields are missing, of the wrong type or out of range (`422`).
#[derive(Debug)]
pub enum BodyError {
    Malformed(String),
    Invalid(Vec<(String, String)>),
}

pub fn parse_charge(bytes: &[u8]) -> Result<ChargeRequest, BodyError> {
    let body: ChargeBody =
        serde_json::from_slice(bytes).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => {
                BodyError::Invalid(vec![("body".to_owned(), error.to_string())])
            }
            _ => BodyError::Malformed(error.to_string()),
        })?;
    let mut errors = Vec::new();
    let key = &body.idempotency_key;
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX || key.chars().any(char::is_control)
    {
        errors.push((
            "idempotency_key".to_owned(),
            format!("must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes without control characters"),
        ));
    }
    let amount = u64::try_from(body.amount).ok().filter(|amount| *amount > 0);
    if amount.is_none() {
        errors.push((
            "amount".to_owned(),
            "must be a positive whole number of minor units".to_owned(),
        ));
    }
    let currency = &body.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push((
            "currency".to_owned(),
            "must be three upper-case letters (ISO 4217)".to_owned(),
        ));
    }
    let card = CardFields {
        number: &body.card.number,
        // Zero is out of range for both, so an unreadable value is refused
        // with the range's message.
        exp_month: body.card.exp_month.value().unwrap_or(0),
        exp_year: body.card.exp_year.value().unwrap_or(0),
        cvc: &body.card.cvc,
        name: &body.card.name,
    }
    .summarise(&mut errors);
    match (amount, card) {
        (Some(amount), Some(card)) if errors.is_empty() => Ok(ChargeRequest {
            idempotency_key: body.idempotency_key,
            amount,
            currency: body.currency,
            card,
        }),
        _ => Err(BodyError::Invalid(errors)),
    }
}

/// The answer to `POST /charges`.
#[derive(Debug, Serialize)]
pub struct ChargeAnswer<'a> {
    pub id: &'a str,
    pub status: &'static str,
}

impl<'a> From<&'a Charge> for ChargeAnswer<'a> {
    fn from(charge: &'a Charge) -> ChargeAnswer<'a> {
        ChargeAnswer {
            id: &charge.id,
            status: charge.status.as_str(),
        }
    }
}

/// `GET /charges/{idempotency_key}`.
#[derive(Debug, Serialize)]
pub struct ChargeView<'a> {
    pub id: &'a str,
    pub idempotency_key: &'a str,
    pub amount: u64,
    pub currency: &'a str,
    pub status: &'static str,
    pub at: String,
    pub card: CardView<'a>,
}

#[derive(Debug, Serialize)]
pub struct CardView<'a> {
    pub brand: &'static str,
    pub last4: &'a str,
}

impl<'a> From<&'a Charge> for ChargeView<'a> {
    fn from(charge: &'a Charge) -> ChargeView<'a> {
        ChargeView {
            id: &charge.id,
            idempotency_key: &charge.idempotency_key,
            amount: charge.amount,
            currency: &charge.currency,
            status: charge.status.as_str(),
            at: charge.at.to_string(),
            card: CardView {
                brand: charge.card.brand.as_str(),
                last4: &charge.card.last_four,
            },
        }
    }
}

/// `GET /ledger`.
#[derive(Debug, Serialize)]
pub struct LedgerView<'a> {
    pub charges: Vec<LedgerEntry<'a>>,
    pub rate_per_second: u32,
    pub accepted_per_second_max: u64,
}

#[derive(Debug, Serialize)]
pub struct LedgerEntry<'a> {
    pub id: &'a str,
    pub idempotency_key: &'a str,
    pub amount: u64,
    pub currency: &'a str,
    pub status: &'static str,
    pub at: String,
    /// Not part of a real gateway's ledger: tells a test which charges its
    /// client had to resolve by lookup.
    pub answered: bool,
}

impl<'a> From<&'a Charge> for LedgerEntry<'a> {
    fn from(charge: &'a Charge) -> LedgerEntry<'a> {
        LedgerEntry {
            id: &charge.id,
            idempotency_key: &charge.idempotency_key,
            amount: charge.amount,
            currency: &charge.currency,
            status: charge.status.as_str(),
            at: charge.at.to_string(),
            answered: charge.answered,
        }
    }
}

/// `GET /stats`: the counters of [`Stats`], one field each.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub captured: u64,
    pub declined: u64,
    pub unanswered: u64,
    pub lost: u64,
    pub replayed: u64,
    pub key_reused: u64,
    pub rate_limited: u64,
    pub refused_down: u64,
    pub refused_busy: u64,
    pub rejected_invalid: u64,
    pub accepted_per_second_max: u64,
    pub in_flight: u64,
    pub down: bool,
}

impl From<&Stats> for StatsView {
    fn from(stats: &Stats) -> StatsView {
        StatsView {
            captured: stats.captured,
            declined: stats.declined,
            unanswered: stats.unanswered,
            lost: stats.lost,
            replayed: stats.replayed,
            key_reused: stats.key_reused,
            rate_limited: stats.rate_limited,
            refused_down: stats.refused_down,
            refused_busy: stats.refused_busy,
            rejected_invalid: stats.rejected_invalid,
            accepted_per_second_max: stats.accepted_per_second_max,
            in_flight: stats.in_flight,
            down: stats.down,
        }
    }
}

/// Every refusal's body: a stable `error` code to branch on, a sentence for
/// people, and for a `422` the fields at fault.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldView>,
}

#[derive(Debug, Serialize)]
pub struct FieldView {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct DownView {
    pub down: bool,
}
