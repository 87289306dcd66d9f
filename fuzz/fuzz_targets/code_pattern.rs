//! Code patterns and the code space, and voucher codes as clients type them.
//!
//! The input is a pattern on its first line, a supply on the second (a
//! number; anything else is an unlimited supply), and entropy after that.
//!
//! Holds: nothing panics; a pattern's space is 8 to the number of `#` times
//! 23 to the number of `?` (`None` past 128 bits), and `check_space` refuses
//! exactly the supplies that space is too small for; every generated code
//! keeps the pattern's length and literals, draws `#` from the digits and
//! `?` from the letters, and parses as the same `VoucherCode`; and a parsed
//! code is 1 to 64 printable upper-case characters that parse to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use voucherd_core::code::{
    CODE_SPACE_PER_VOUCHER_MIN, CODE_SPACE_UNLIMITED_MIN, CodePattern, DIGITS, Entropy, LETTERS,
    VoucherCode,
};

/// Codes drawn from one pattern per input.
const CODES_PER_INPUT: usize = 8;

fuzz_target!(|bytes: &[u8]| {
    let mut parts = bytes.splitn(3, |byte| *byte == b'\n');
    let pattern_text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let supply = std::str::from_utf8(parts.next().unwrap_or_default())
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    let entropy = parts.next().unwrap_or_default();

    check_code(&pattern_text);
    let Ok(pattern) = CodePattern::parse(&pattern_text) else {
        return;
    };
    assert_eq!(pattern.as_str(), pattern_text);
    assert!((1..=CodePattern::LENGTH_MAX).contains(&pattern.as_str().len()));
    check_space(&pattern, supply);
    let mut entropy = FuzzEntropy::new(entropy);
    for _ in 0..CODES_PER_INPUT {
        check_generated(&pattern, &pattern.generate(&mut entropy));
    }
});

fn check_code(text: &str) {
    let Ok(code) = VoucherCode::parse(text) else {
        return;
    };
    let code_text = code.as_str();
    assert!((1..=VoucherCode::LENGTH_MAX).contains(&code_text.len()));
    assert!(code_text.bytes().all(|byte| byte.is_ascii_graphic()));
    assert!(!code_text.bytes().any(|byte| byte.is_ascii_lowercase()));
    assert_eq!(code_text, text.trim().to_ascii_uppercase());
    assert_eq!(VoucherCode::parse(code_text), Ok(code.clone()));
}

fn check_space(pattern: &CodePattern, supply: Option<u32>) {
    let digits = pattern
        .as_str()
        .bytes()
        .filter(|byte| *byte == b'#')
        .count();
    let letters = pattern
        .as_str()
        .bytes()
        .filter(|byte| *byte == b'?')
        .count();
    assert!(digits + letters > 0, "a pattern needs a placeholder");
    let expected = (DIGITS.len() as u128)
        .checked_pow(digits as u32)
        .zip((LETTERS.len() as u128).checked_pow(letters as u32))
        .and_then(|(digit_space, letter_space)| digit_space.checked_mul(letter_space));
    assert_eq!(pattern.space(), expected, "{pattern:?}");
    for supply in [supply, None, Some(1), Some(u32::MAX)] {
        let needed = match supply {
            Some(supply) => u128::from(supply) * CODE_SPACE_PER_VOUCHER_MIN,
            None => CODE_SPACE_UNLIMITED_MIN,
        };
        let large_enough = expected.is_none_or(|space| space >= needed);
        assert_eq!(
            pattern.check_space(supply).is_ok(),
            large_enough,
            "{pattern:?} for {supply:?}"
        );
    }
}

fn check_generated(pattern: &CodePattern, code: &VoucherCode) {
    let pattern_bytes = pattern.as_str().as_bytes();
    let code_bytes = code.as_str().as_bytes();
    assert_eq!(
        code_bytes.len(),
        pattern_bytes.len(),
        "{code} from {pattern:?}"
    );
    for (made, wanted) in code_bytes.iter().zip(pattern_bytes) {
        match wanted {
            b'#' => assert!(DIGITS.contains(made), "{code} from {pattern:?}"),
            b'?' => assert!(LETTERS.contains(made), "{code} from {pattern:?}"),
            literal => assert_eq!(made, literal, "{code} from {pattern:?}"),
        }
    }
    assert_eq!(VoucherCode::parse(code.as_str()).as_ref(), Ok(code));
}

/// The fuzzer's bytes first, then a fixed stream (splitmix64): a code is
/// drawn by rejecting bytes past the alphabet's last multiple, so bytes
/// that run out or are all rejected must not leave a draw waiting forever,
/// as the operating system's generator never would.
struct FuzzEntropy<'bytes> {
    bytes: &'bytes [u8],
    state: u64,
}

impl<'bytes> FuzzEntropy<'bytes> {
    fn new(bytes: &'bytes [u8]) -> FuzzEntropy<'bytes> {
        FuzzEntropy { bytes, state: 0 }
    }

    fn next_fixed(&mut self) -> u8 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (mixed ^ (mixed >> 31)) as u8
    }
}

impl Entropy for FuzzEntropy<'_> {
    fn fill(&mut self, bytes: &mut [u8]) {
        for byte in bytes {
            *byte = match self.bytes.split_first() {
                Some((first, rest)) => {
                    self.bytes = rest;
                    *first
                }
                None => self.next_fixed(),
            };
        }
    }
}
