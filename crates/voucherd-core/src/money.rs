//! Money is an integer count of minor units with its ISO 4217 currency; there
//! are no floats anywhere a price is computed.

use std::fmt;

use crate::validation::Invalid;

/// An ISO 4217 alphabetic code such as `THB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(text: &str) -> Result<Currency, Invalid> {
        match text.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(Invalid::one(
                "price.currency",
                "must be three upper-case letters (ISO 4217)",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // The constructor admits ASCII upper-case letters only.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An amount in minor units (satang, cents) of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    /// A price larger than this is a typo, not a voucher.
    pub const AMOUNT_MAX: i64 = 1_000_000_000_000;

    pub fn new(amount: i64, currency: Currency) -> Result<Money, Invalid> {
        if !(0..=Money::AMOUNT_MAX).contains(&amount) {
            return Err(Invalid::one(
                "price.amount",
                format!("must be between 0 and {} minor units", Money::AMOUNT_MAX),
            ));
        }
        Ok(Money { amount, currency })
    }

    /// The price after `discount_percent` off, rounded half up to a whole
    /// minor unit.
    pub fn discounted(&self, discount_percent: u8) -> Money {
        let kept_percent = 100 - i128::from(discount_percent.min(100));
        let amount = (i128::from(self.amount) * kept_percent + 50) / 100;
        Money {
            // Never larger than the original amount, which fits in i64.
            amount: i64::try_from(amount).unwrap_or(self.amount),
            currency: self.currency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thb(amount: i64) -> Money {
        Money::new(amount, Currency::parse("THB").unwrap()).unwrap()
    }

    #[test]
    fn discounts_round_half_up() {
        assert_eq!(thb(150_000).discounted(90).amount, 15_000);
        assert_eq!(thb(150_000).discounted(70).amount, 45_000);
        assert_eq!(thb(150_000).discounted(0).amount, 150_000);
        assert_eq!(thb(150_000).discounted(100).amount, 0);
        assert_eq!(thb(5).discounted(50).amount, 3);
        assert_eq!(thb(Money::AMOUNT_MAX).discounted(1).amount, 990_000_000_000);
    }

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert!(Currency::parse("THB").is_ok());
        for bad in ["thb", "TH", "THBB", "T1B", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_are_bounded() {
        let currency = Currency::parse("EUR").unwrap();
        assert!(Money::new(-1, currency).is_err());
        assert!(Money::new(Money::AMOUNT_MAX + 1, currency).is_err());
    }
}
