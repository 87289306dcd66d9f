//! Card details sealed for the payment queue.
//!
//! A queued payment must survive a restart, so what the gateway needs to
//! charge the card is kept with it — sealed with ChaCha20-Poly1305 under a
//! key that is not in the database, and deleted together with the queue
//! entry the moment the payment reaches its outcome. Orders and their
//! history keep only the brand and the last four digits.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use voucherd_core::payment::{Card, CardDraft};

pub const PAYMENT_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

#[derive(Clone)]
pub struct PaymentKey(Key);

impl std::fmt::Debug for PaymentKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PaymentKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed card could not be opened: wrong payment key, or damaged")]
pub struct SealError;

impl PaymentKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<PaymentKey> {
        (bytes.len() == PAYMENT_KEY_BYTES).then(|| PaymentKey(*Key::from_slice(bytes)))
    }

    pub fn seal(&self, card: &Card) -> Vec<u8> {
        let plain = format!(
            "{}\n{}\n{}\n{}\n{}",
            card.number(),
            card.exp_month,
            card.exp_year,
            card.cvc(),
            card.name
        );
        let mut nonce = [0_u8; NONCE_BYTES];
        // Without the OS random source no nonce can be trusted.
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let sealed = ChaCha20Poly1305::new(&self.0)
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .expect("sealing a short plaintext cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn open(&self, sealed: &[u8], now: voucherd_core::Timestamp) -> Result<Card, SealError> {
        if sealed.len() < NONCE_BYTES {
            return Err(SealError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SealError)?;
        let plain = String::from_utf8(plain).map_err(|_| SealError)?;
        let mut fields = plain.splitn(5, '\n');
        let mut next = || fields.next().ok_or(SealError);
        let draft = CardDraft {
            number: next()?.to_owned(),
            exp_month: next()?.parse().map_err(|_| SealError)?,
            exp_year: next()?.parse().map_err(|_| SealError)?,
            cvc: next()?.to_owned(),
            name: next()?.to_owned(),
        };
        Card::parse(&draft, now).map_err(|_| SealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_card_opens_with_its_key_only() {
        let now = "2026-12-01T12:00:00Z".parse().unwrap();
        let card = Card::parse(
            &CardDraft {
                number: "4242424242424242".into(),
                exp_month: 12,
                exp_year: 2030,
                cvc: "123".into(),
                name: "Somchai Jaidee".into(),
            },
            now,
        )
        .unwrap();
        let key = PaymentKey::from_bytes(&[7; 32]).unwrap();
        let sealed = key.seal(&card);
        assert!(
            !sealed.windows(4).any(|window| window == b"4242"),
            "nothing readable"
        );
        assert_eq!(key.open(&sealed, now).unwrap(), card);
        let other = PaymentKey::from_bytes(&[8; 32]).unwrap();
        assert!(other.open(&sealed, now).is_err());
        let mut damaged = sealed.clone();
        damaged[20] ^= 1;
        assert!(key.open(&damaged, now).is_err());
    }
}
