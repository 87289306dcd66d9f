//! The random draws that decide a charge.
//!
//! Each attempt gets its own generator, seeded from the simulator's seed,
//! the idempotency key and the attempt number, instead of all charges taking
//! turns on one stream. So with a fixed seed a key's outcome does not depend
//! on which concurrent request happened to take the lock first, and a test
//! can know a key's fate before sending it. SplitMix64 is small, fast and
//! statistically good enough to decide coin flips; nothing here is secret.

use std::ops::RangeInclusive;
use std::time::Duration;

/// Everything random about one attempt at a charge, drawn up front.
#[derive(Debug, Clone, PartialEq)]
pub struct Draws {
    /// The attempt gets no answer.
    pub timed_out: bool,
    /// Of a timed-out attempt: it never reached the gateway and decided
    /// nothing, rather than being decided and left unanswered.
    pub lost: bool,
    pub declined: bool,
    pub latency: Duration,
    /// The charge's identifier, if the attempt becomes a charge.
    pub charge_number: u64,
}

impl Draws {
    pub fn for_attempt(
        seed: u64,
        idempotency_key: &str,
        attempt: u32,
        decline_rate: f64,
        timeout_rate: f64,
        latency_ms: &RangeInclusive<u64>,
    ) -> Draws {
        let mut random = SplitMix64::new(
            SplitMix64::new(seed).next()
                ^ fnv1a(idempotency_key.as_bytes())
                ^ SplitMix64::new(u64::from(attempt)).next(),
        );
        // Every draw is taken whether or not it matters, so that each field
        // always comes from the same position of the stream.
        let timed_out = random.unit() < timeout_rate;
        let lost = random.unit() < 0.5;
        let declined = random.unit() < decline_rate;
        let (min, max) = (*latency_ms.start(), *latency_ms.end());
        // The config caps `max`, so the span cannot overflow; the modulo
        // bias over a span of at most 600,001 is about 3e-14.
        let latency_ms = min + random.next() % (max - min + 1);
        Draws {
            timed_out,
            lost: timed_out && lost,
            declined,
            latency: Duration::from_millis(latency_ms),
            charge_number: random.next(),
        }
    }
}

/// A seed from the operating system, for a simulator started without one.
pub fn seed_from_entropy() -> u64 {
    // Should the OS have no entropy to give, the clock is random enough to
    // make two unseeded runs differ, which is all that is asked here.
    getrandom::u64().unwrap_or_else(|_| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64
    })
}

#[derive(Debug)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, so `unit() < p` holds with probability `p`, never
    /// for 0 and always for 1.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

/// A stable hash of the key: std's hasher is allowed to change between
/// releases, which would change a seeded run's outcomes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}
