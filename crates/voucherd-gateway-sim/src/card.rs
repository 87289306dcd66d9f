//! What the simulator keeps of a card: its brand and last four digits.
//!
//! The full number, the expiry and the CVC are checked for shape and then
//! dropped with the request; nothing here can log or store them, since
//! voucherd's rule that card numbers are never kept holds for its stand-in
//! gateway too (a load run's logs are shared more freely than a database).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBrand {
    Visa,
    Mastercard,
    Amex,
    Jcb,
    Unknown,
}

impl CardBrand {
    pub fn as_str(&self) -> &'static str {
        match self {
            CardBrand::Visa => "visa",
            CardBrand::Mastercard => "mastercard",
            CardBrand::Amex => "amex",
            CardBrand::Jcb => "jcb",
            CardBrand::Unknown => "unknown",
        }
    }

    /// The brand by the number's leading digits (its IIN range).
    fn of(digits: &str) -> CardBrand {
        let prefix = |length: usize| digits.get(..length).and_then(|p| p.parse::<u32>().ok());
        match (prefix(1), prefix(2), prefix(4)) {
            (Some(4), _, _) => CardBrand::Visa,
            (_, Some(51..=55), _) | (_, _, Some(2221..=2720)) => CardBrand::Mastercard,
            (_, Some(34 | 37), _) => CardBrand::Amex,
            (_, _, Some(3528..=3589)) => CardBrand::Jcb,
            _ => CardBrand::Unknown,
        }
    }
}

impl fmt::Display for CardBrand {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The part of a card that may be kept and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSummary {
    pub brand: CardBrand,
    pub last_four: String,
}

/// The card fields of a charge request, as sent. Only [`CardFields::summarise`]
/// reads the number, and `Debug` shows none of it.
pub struct CardFields<'a> {
    pub number: &'a str,
    pub exp_month: u32,
    pub exp_year: u32,
    pub cvc: &'a str,
    pub name: &'a str,
}

impl fmt::Debug for CardFields<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("CardFields { .. }")
    }
}

/// Card numbers are 12 to 19 digits (ISO/IEC 7812).
const NUMBER_DIGITS: std::ops::RangeInclusive<usize> = 12..=19;
const NAME_CHARS_MAX: usize = 200;

impl CardFields<'_> {
    /// Checks the card's shape and keeps the summary, or names every field
    /// that is wrong. A number that fails the Luhn check is a typo that a
    /// real gateway refuses before deciding anything, so it is a `422` here
    /// rather than a decline.
    pub fn summarise(&self, errors: &mut Vec<(String, String)>) -> Option<CardSummary> {
        let before = errors.len();
        let mut reject = |field: &str, message: &str| {
            errors.push((format!("card.{field}"), message.to_owned()));
        };
        let number = self.number;
        if !NUMBER_DIGITS.contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
            reject("number", "must be 12 to 19 digits");
        } else if !luhn_valid(number) {
            reject("number", "fails the check digit");
        }
        if !(1..=12).contains(&self.exp_month) {
            reject("exp_month", "must be 1 to 12");
        }
        if !(2000..=9999).contains(&self.exp_year) {
            reject("exp_year", "must be a four-digit year");
        }
        if !(3..=4).contains(&self.cvc.len()) || !self.cvc.bytes().all(|b| b.is_ascii_digit()) {
            reject("cvc", "must be 3 or 4 digits");
        }
        if self.name.trim().is_empty() || self.name.chars().count() > NAME_CHARS_MAX {
            reject("name", "must be 1 to 200 characters");
        }
        if errors.len() > before {
            return None;
        }
        Some(CardSummary {
            brand: CardBrand::of(number),
            last_four: number[number.len() - 4..].to_owned(),
        })
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}
