//! Bearer tokens: `auth::verify` on whatever a client sends, on claims a
//! tenant signed with its own key, and on tokens `auth::mint` made.
//!
//! Each input is used three ways:
//! - as a token, verified at a fixed time against one known tenant;
//! - as the payload of a token the tenant signed itself (tenants hold their
//!   key and may mint their own tokens), which may name any claims at all;
//! - as the parameters of a token minted by `auth::mint` (role, subject,
//!   time, lifetime, and one byte to flip).
//!
//! Holds: nothing panics; a minted token verifies with its own tenant, role
//! and subject until it expires and not after; and a minted token with one
//! byte changed never verifies as anyone else.

#![no_main]

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use voucherd_core::ids::{TenantId, UserId};
use voucherd_core::{SignedDuration, Timestamp};
use voucherd_engine::model::Tenant;
use voucherd_engine::tenants::TenantEntry;
use voucherd_http::auth::{self, Principal, Role};

/// The tenant every token is checked against; the seed corpus's token is
/// signed with its key at [`NOW`].
static TENANT: LazyLock<Arc<TenantEntry>> = LazyLock::new(|| {
    Arc::new(TenantEntry::new(Tenant {
        id: "0190f5c4-8d2e-7c3a-9b1e-2f4a5b6c7d8e"
            .parse()
            .expect("a valid uuid"),
        name: "fuzz".into(),
        signing_key: b"voucherd-fuzz-signing-key-32-byt".to_vec(),
        time_zone: "UTC".into(),
        rate_limit_per_second: None,
        key_id: "k1".into(),
        retired_keys: Vec::new(),
        public_keys: Vec::new(),
        created_at: Timestamp::UNIX_EPOCH,
    }))
});

/// 2026-12-01T12:00:00Z.
const NOW: i64 = 1_796_126_400;
/// Tokens are minted to live a second to ten years.
const TTL_SECONDS_MAX: i64 = 10 * 366 * 86_400;
/// How far past `exp` a token is still taken (auth's allowance for skew).
const CLOCK_SKEW_SECONDS: i64 = 30;

fn tenant_of(id: TenantId) -> Option<Arc<TenantEntry>> {
    (id == TENANT.tenant.id).then(|| TENANT.clone())
}

fn now() -> Timestamp {
    Timestamp::from_second(NOW).expect("a valid time")
}

fuzz_target!(|bytes: &[u8]| {
    let _ = auth::verify(&String::from_utf8_lossy(bytes), tenant_of, now());
    signed_by_the_tenant(bytes);
    minted(bytes);
});

fn signed_by_the_tenant(payload: &[u8]) {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&TENANT.tenant.signing_key)
        .expect("HMAC takes any key");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let token = format!("{signing_input}.{signature}");
    if let Ok((principal, expires_at)) = auth::verify(&token, tenant_of, now()) {
        let text = std::str::from_utf8(payload).expect("verified claims are UTF-8");
        assert!(
            text.trim_start().starts_with('{'),
            "claims that are not an object verified"
        );
        // Read as a struct, as `verify` reads them, not as a `Value`: JSON
        // allows numbers past f64 (3e999) in a field that both skip.
        let named: NamedClaims = serde_json::from_str(text).expect("verified claims are JSON");
        assert_eq!(named.tenant.parse().ok(), Some(TENANT.tenant.id));
        assert_eq!(named.iss, "voucherd");
        assert_eq!(
            named.sub,
            principal.subject.map(|user| user.as_str().to_owned())
        );
        assert!(expires_at > NOW, "verified yet expired at {expires_at}");
    }
}

/// The claims that name who a token is for.
#[derive(serde::Deserialize)]
struct NamedClaims {
    iss: String,
    tenant: String,
    #[serde(default)]
    sub: Option<String>,
}

/// Draws the parameters of a minted token from the input, a few bytes each.
struct Draws<'bytes>(&'bytes [u8]);

impl Draws<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }

    fn text(&mut self) -> String {
        let length = usize::from(self.byte() % 160);
        let (text, rest) = self.0.split_at(length.min(self.0.len()));
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }
}

fn minted(bytes: &[u8]) {
    let mut draws = Draws(bytes);
    let role = [Role::Admin, Role::Service, Role::Customer][usize::from(draws.byte() % 3)];
    let subject = UserId::parse(&draws.text()).ok();
    let (first, last) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    let issued_at = Timestamp::from_second(draws.i64().rem_euclid(last - first) + first)
        .expect("inside jiff's range");
    let ttl = SignedDuration::from_secs(draws.i64().rem_euclid(TTL_SECONDS_MAX) + 1);
    let token = auth::mint(&TENANT.tenant, role, subject.as_ref(), issued_at, ttl);
    let verified = auth::verify(&token, tenant_of, issued_at);
    if role == Role::Customer && subject.is_none() {
        assert!(verified.is_err(), "a customer token without a user");
        return;
    }
    let (principal, _) = verified.unwrap_or_else(|problem| panic!("{token}: {problem:?}"));
    assert_eq!(who(&principal), (TENANT.tenant.id, role, subject.clone()));
    if let Ok(late) = issued_at.checked_add(ttl + SignedDuration::from_secs(CLOCK_SKEW_SECONDS)) {
        assert!(
            auth::verify(&token, tenant_of, late).is_err(),
            "{token} verified after it expired"
        );
    }

    let mut flipped = token.into_bytes();
    let index = usize::from(draws.byte()) * 256 + usize::from(draws.byte());
    let index = index % flipped.len();
    flipped[index] ^= draws.byte().max(1);
    if let Ok(flipped) = std::str::from_utf8(&flipped)
        && let Ok((principal, _)) = auth::verify(flipped, tenant_of, issued_at)
    {
        assert_eq!(
            who(&principal),
            (TENANT.tenant.id, role, subject),
            "{flipped} verified as someone else"
        );
    }
}

fn who(principal: &Principal) -> (TenantId, Role, Option<UserId>) {
    (
        principal.tenant_id(),
        principal.role,
        principal.subject.clone(),
    )
}
