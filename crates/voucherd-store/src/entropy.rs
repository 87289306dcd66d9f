//! Randomness for voucher codes, from the operating system.

use voucherd_core::code::Entropy;

/// The operating system's CSPRNG, for codes nobody can predict.
#[derive(Debug)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, bytes: &mut [u8]) {
        // Without the OS random source no code could be trusted; there is
        // no sensible fallback, and Linux's getrandom does not fail.
        getrandom::fill(bytes).expect("the operating system's random source failed");
    }
}
