//! Voucher codes: the pattern language, the alphabets without look-alikes,
//! and how large a pattern's code space must be for a given supply.
//!
//! A pattern is literal characters plus placeholders: `#` is a digit from
//! [`DIGITS`], `?` a letter from [`LETTERS`]. Both alphabets leave out the
//! characters people misread (0/O, 1/I/L), so a code read aloud or typed
//! from a screenshot still matches.

use std::fmt;

use crate::validation::Invalid;

/// Digits without 0 and 1, which read as O and I/L.
pub const DIGITS: &[u8] = b"23456789";
/// Letters without I, L and O.
pub const LETTERS: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ";

/// A random guess must hit a live code at most once in this many tries.
pub const CODE_SPACE_PER_VOUCHER_MIN: u128 = 100;
/// Unlimited campaigns mint codes forever, so their space must be vast.
pub const CODE_SPACE_UNLIMITED_MIN: u128 = 1_000_000_000;

/// Where randomness comes from. The stores pass the operating system's
/// CSPRNG; tests may pass something deterministic.
pub trait Entropy {
    fn fill(&mut self, bytes: &mut [u8]);
}

/// A voucher code: 1 to 64 printable ASCII characters, upper-cased so that
/// codes typed in either case match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VoucherCode(String);

impl VoucherCode {
    pub const LENGTH_MAX: usize = 64;

    pub fn parse(text: &str) -> Result<VoucherCode, Invalid> {
        let text = text.trim();
        if text.is_empty() || text.len() > VoucherCode::LENGTH_MAX {
            return Err(Invalid::one(
                "code",
                format!("must be 1 to {} characters", VoucherCode::LENGTH_MAX),
            ));
        }
        if !text.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(Invalid::one(
                "code",
                "must be printable ASCII without spaces",
            ));
        }
        Ok(VoucherCode(text.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VoucherCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A validated code pattern such as `HOT-####-????`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodePattern(String);

impl CodePattern {
    pub const LENGTH_MAX: usize = 32;

    pub fn parse(text: &str) -> Result<CodePattern, Invalid> {
        const FIELD: &str = "codes.pattern";
        if text.is_empty() || text.len() > CodePattern::LENGTH_MAX {
            return Err(Invalid::one(
                FIELD,
                format!("must be 1 to {} characters", CodePattern::LENGTH_MAX),
            ));
        }
        let allowed = |byte: u8| {
            matches!(byte, b'#' | b'?' | b'-' | b'_')
                || byte.is_ascii_uppercase()
                || byte.is_ascii_digit()
        };
        if !text.bytes().all(allowed) {
            return Err(Invalid::one(
                FIELD,
                "may hold only '#', '?', upper-case letters, digits, '-' and '_'",
            ));
        }
        if !text.bytes().any(|byte| byte == b'#' || byte == b'?') {
            return Err(Invalid::one(FIELD, "needs at least one '#' or '?'"));
        }
        Ok(CodePattern(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How many distinct codes the pattern can make, or `None` when the
    /// count does not fit in 128 bits (which is more than any supply needs).
    pub fn space(&self) -> Option<u128> {
        self.0.bytes().try_fold(1_u128, |space, byte| match byte {
            b'#' => space.checked_mul(DIGITS.len() as u128),
            b'?' => space.checked_mul(LETTERS.len() as u128),
            _ => Some(space),
        })
    }

    /// Refuses a pattern whose space is too small for `supply` codes
    /// (`None` is an unlimited supply).
    pub fn check_space(&self, supply: Option<u32>) -> Result<(), Invalid> {
        let needed = match supply {
            Some(supply) => u128::from(supply).saturating_mul(CODE_SPACE_PER_VOUCHER_MIN),
            None => CODE_SPACE_UNLIMITED_MIN,
        };
        match self.space() {
            Some(space) if space < needed => Err(Invalid::one(
                "codes.pattern",
                format!(
                    "makes only {space} distinct codes; this supply needs at least {needed} \
                     (add '#' or '?' placeholders)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Draws one code uniformly from the pattern's space.
    pub fn generate(&self, entropy: &mut impl Entropy) -> VoucherCode {
        let mut bytes = EntropyBytes::new(entropy);
        let code = self
            .0
            .bytes()
            .map(|byte| match byte {
                b'#' => bytes.uniform(DIGITS),
                b'?' => bytes.uniform(LETTERS),
                literal => literal,
            })
            .map(char::from)
            .collect();
        VoucherCode(code)
    }
}

/// Bytes drawn from an [`Entropy`] a block at a time, so that a code costs
/// one fill rather than one per character.
struct EntropyBytes<'entropy, E: Entropy> {
    entropy: &'entropy mut E,
    pool: [u8; 32],
    used: usize,
}

impl<'entropy, E: Entropy> EntropyBytes<'entropy, E> {
    fn new(entropy: &'entropy mut E) -> Self {
        EntropyBytes {
            entropy,
            pool: [0; 32],
            used: 32,
        }
    }

    fn next(&mut self) -> u8 {
        if self.used == self.pool.len() {
            self.entropy.fill(&mut self.pool);
            self.used = 0;
        }
        self.used += 1;
        self.pool[self.used - 1]
    }

    /// One character of `alphabet`, uniformly: bytes at or above the largest
    /// multiple of the alphabet's length are rejected rather than folded.
    fn uniform(&mut self, alphabet: &[u8]) -> u8 {
        let limit = 256 / alphabet.len() * alphabet.len();
        loop {
            let drawn = usize::from(self.next());
            if drawn < limit {
                return alphabet[drawn % alphabet.len()];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u8);

    impl Entropy for Counter {
        fn fill(&mut self, bytes: &mut [u8]) {
            for byte in bytes {
                self.0 = self.0.wrapping_add(37);
                *byte = self.0;
            }
        }
    }

    #[test]
    fn the_code_space_is_the_product_of_the_alphabets() {
        let pattern = CodePattern::parse("HOT-####-????").unwrap();
        assert_eq!(pattern.space(), Some(8_u128.pow(4) * 23_u128.pow(4)));
        let huge = CodePattern::parse(&"?".repeat(32)).unwrap();
        assert_eq!(huge.space(), None, "23^32 overflows u128 and reads as vast");
        assert!(huge.check_space(None).is_ok());
    }

    #[test]
    fn a_pattern_too_small_for_its_supply_is_refused() {
        let pattern = CodePattern::parse("HOT-####-####").unwrap();
        assert!(pattern.check_space(Some(20_000)).is_ok());
        assert!(pattern.check_space(Some(200_000)).is_err());
        assert!(
            CodePattern::parse("###")
                .unwrap()
                .check_space(Some(1))
                .is_ok()
        );
        assert!(
            CodePattern::parse("##")
                .unwrap()
                .check_space(Some(1))
                .is_err()
        );
        assert!(
            CodePattern::parse("#")
                .unwrap()
                .check_space(Some(1))
                .is_err()
        );
        assert!(
            CodePattern::parse("####")
                .unwrap()
                .check_space(None)
                .is_err()
        );
    }

    #[test]
    fn patterns_are_validated() {
        for bad in [
            "",
            "abc-###",
            "NO PLACEHOLDER",
            "HOT",
            "###!",
            &"#".repeat(33),
        ] {
            assert!(CodePattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_codes_follow_the_pattern_and_avoid_look_alikes() {
        let pattern = CodePattern::parse("HOT-####-????").unwrap();
        let mut entropy = Counter(0);
        for _ in 0..1_000 {
            let code = pattern.generate(&mut entropy);
            let bytes = code.as_str().as_bytes();
            assert_eq!(&bytes[..4], b"HOT-");
            assert!(bytes[4..8].iter().all(|byte| DIGITS.contains(byte)));
            assert_eq!(bytes[8], b'-');
            assert!(bytes[9..].iter().all(|byte| LETTERS.contains(byte)));
            assert!(!code.as_str()[4..].contains(['0', '1', 'O', 'I', 'L']));
        }
    }

    #[test]
    fn codes_are_trimmed_upper_cased_and_bounded() {
        assert_eq!(VoucherCode::parse(" ab-12 ").unwrap().as_str(), "AB-12");
        assert!(VoucherCode::parse("").is_err());
        assert!(VoucherCode::parse("A B").is_err());
        assert!(VoucherCode::parse(&"A".repeat(65)).is_err());
        assert!(VoucherCode::parse("CAFÉ").is_err());
    }
}
