//! What a buyer hands over at checkout: an email and a card. The card is
//! checked here (Luhn, expiry, CVC shape) and never kept beyond the payment
//! it is for; only its brand and last four digits are ever stored.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::validation::{Collector, Invalid};

pub const EMAIL_LENGTH_MAX: usize = 254;
pub const CARD_NAME_LENGTH_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// A plausible address: one `@`, something on each side, a dot in the
    /// domain, no spaces. Deliverability is not this service's to judge.
    pub fn parse(text: &str) -> Result<Email, Invalid> {
        let text = text.trim();
        let plausible = text.len() <= EMAIL_LENGTH_MAX
            && !text
                .chars()
                .any(|character| character.is_whitespace() || character.is_control())
            && text.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if plausible {
            Ok(Email(text.to_owned()))
        } else {
            Err(Invalid::one("email", "must be an email address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBrand {
    Visa,
    Mastercard,
    Amex,
    Jcb,
    Other,
}

impl CardBrand {
    pub fn as_str(&self) -> &'static str {
        match self {
            CardBrand::Visa => "visa",
            CardBrand::Mastercard => "mastercard",
            CardBrand::Amex => "amex",
            CardBrand::Jcb => "jcb",
            CardBrand::Other => "other",
        }
    }

    pub fn parse(text: &str) -> CardBrand {
        match text {
            "visa" => CardBrand::Visa,
            "mastercard" => CardBrand::Mastercard,
            "amex" => CardBrand::Amex,
            "jcb" => CardBrand::Jcb,
            _ => CardBrand::Other,
        }
    }

    fn of(digits: &str) -> CardBrand {
        let prefix = |length: usize| {
            digits
                .get(..length)
                .and_then(|prefix| prefix.parse::<u32>().ok())
                .unwrap_or(0)
        };
        match (prefix(1), prefix(2), prefix(4)) {
            (4, _, _) => CardBrand::Visa,
            (_, 51..=55, _) | (_, _, 2221..=2720) => CardBrand::Mastercard,
            (_, 34 | 37, _) => CardBrand::Amex,
            (_, _, 3528..=3589) => CardBrand::Jcb,
            _ => CardBrand::Other,
        }
    }
}

/// A card as entered, checked. Its `Debug` shows brand and last four only,
/// so it cannot leak into a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    number: String,
    pub exp_month: u8,
    pub exp_year: u16,
    cvc: String,
    pub name: String,
    pub brand: CardBrand,
}

impl fmt::Debug for Card {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Card")
            .field("brand", &self.brand)
            .field("last_four", &self.last_four())
            .finish_non_exhaustive()
    }
}

/// A card's fields as the buyer typed them.
#[derive(Debug, Clone, Default)]
pub struct CardDraft {
    pub number: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub cvc: String,
    pub name: String,
}

impl Card {
    /// Checks every field, reporting all problems at once; the card must
    /// not have expired by `now` (the end of its expiry month, in UTC).
    pub fn parse(draft: &CardDraft, now: Timestamp) -> Result<Card, Invalid> {
        let mut collector = Collector::default();
        let number: String = draft
            .number
            .chars()
            .filter(|character| !matches!(character, ' ' | '-'))
            .collect();
        if !(12..=19).contains(&number.len()) || !number.bytes().all(|byte| byte.is_ascii_digit()) {
            collector.reject("card.number", "must be 12 to 19 digits");
        } else if !luhn_valid(&number) {
            collector.reject("card.number", "is not a valid card number (check digit)");
        }
        let month = u8::try_from(draft.exp_month)
            .ok()
            .filter(|month| (1..=12).contains(month));
        if month.is_none() {
            collector.reject("card.exp_month", "must be 1 to 12");
        }
        let year = u16::try_from(draft.exp_year)
            .ok()
            .filter(|year| (2000..=2100).contains(year));
        if year.is_none() {
            collector.reject("card.exp_year", "must be a four-digit year");
        }
        if let (Some(month), Some(year)) = (month, year) {
            let today = TimeZone::UTC.to_datetime(now).date();
            if (i32::from(year), i32::from(month))
                < (i32::from(today.year()), i32::from(today.month()))
            {
                collector.reject("card.exp_month", "the card has expired");
            }
        }
        let cvc_valid = (3..=4).contains(&draft.cvc.len())
            && draft.cvc.bytes().all(|byte| byte.is_ascii_digit());
        if !cvc_valid {
            collector.reject("card.cvc", "must be 3 or 4 digits");
        }
        let name = draft.name.trim();
        if name.is_empty()
            || name.chars().count() > CARD_NAME_LENGTH_MAX
            || name.chars().any(char::is_control)
        {
            collector.reject(
                "card.name",
                format!("must be 1 to {CARD_NAME_LENGTH_MAX} printable characters"),
            );
        }
        collector.finish(|| Card {
            brand: CardBrand::of(&number),
            number,
            exp_month: month.unwrap_or(1),
            exp_year: year.unwrap_or(2000),
            cvc: draft.cvc.clone(),
            name: name.to_owned(),
        })
    }

    pub fn number(&self) -> &str {
        &self.number
    }

    pub fn cvc(&self) -> &str {
        &self.cvc
    }

    pub fn last_four(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            match index % 2 {
                1 if digit * 2 > 9 => digit * 2 - 9,
                1 => digit * 2,
                _ => digit,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(number: &str) -> CardDraft {
        CardDraft {
            number: number.into(),
            exp_month: 12,
            exp_year: 2030,
            cvc: "123".into(),
            name: "Somchai Jaidee".into(),
        }
    }

    fn now() -> Timestamp {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn valid_cards_keep_brand_and_last_four_and_debug_shows_nothing_else() {
        for (number, brand) in [
            ("4242 4242 4242 4242", CardBrand::Visa),
            ("5555-5555-5555-4444", CardBrand::Mastercard),
            ("378282246310005", CardBrand::Amex),
            ("3530111333300000", CardBrand::Jcb),
        ] {
            let card = Card::parse(&draft(number), now()).unwrap();
            assert_eq!(card.brand, brand, "{number}");
            let debug = format!("{card:?}");
            assert!(
                !debug.contains(card.number()) && !debug.contains("123"),
                "{debug}"
            );
            assert!(debug.contains(card.last_four()));
        }
    }

    #[test]
    fn bad_cards_are_refused_with_every_reason() {
        let bad = CardDraft {
            number: "4242424242424241".into(),
            exp_month: 13,
            exp_year: 2030,
            cvc: "12a".into(),
            name: "".into(),
        };
        let invalid = Card::parse(&bad, now()).unwrap_err();
        let fields: Vec<&str> = invalid
            .errors
            .iter()
            .map(|error| error.field.as_str())
            .collect();
        assert_eq!(
            fields,
            ["card.number", "card.exp_month", "card.cvc", "card.name"]
        );
        let expired = CardDraft {
            exp_month: 11,
            exp_year: 2026,
            ..draft("4242424242424242")
        };
        assert!(Card::parse(&expired, now()).is_err());
        let this_month = CardDraft {
            exp_month: 12,
            exp_year: 2026,
            ..draft("4242424242424242")
        };
        assert!(
            Card::parse(&this_month, now()).is_ok(),
            "valid through the end of its month"
        );
        assert!(Card::parse(&draft("42424242"), now()).is_err());
    }

    #[test]
    fn emails_are_plausible() {
        assert!(Email::parse("buyer@example.co.th").is_ok());
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@example.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
