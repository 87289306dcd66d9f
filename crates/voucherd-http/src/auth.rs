//! Bearer tokens: HS256 JWTs signed with the tenant's key, naming the tenant,
//! a role and, for customers, the user.
//!
//! `admin` manages the tenant's campaigns; `service` is the tenant's backend
//! and names the user it acts for; `customer` acts only for its own `sub`.
//! Only HS256 is accepted; the tenant is read from the payload before the
//! signature is checked with that tenant's key, and nothing in the payload
//! is trusted until it is.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use voucherd_core::ids::{TenantId, UserId};
use voucherd_core::{SignedDuration, Timestamp};
use voucherd_engine::model::Tenant;
use voucherd_engine::tenants::TenantEntry;

use crate::AppState;
use crate::problem::Problem;

/// Clocks of the token's minter and ours may disagree by this much.
const CLOCK_SKEW_SECONDS: i64 = 30;
/// The issuer every token voucherd mints names, and every token it accepts must.
const ISSUER: &str = "voucherd";
/// The longest a token lives (`voucherd token` mints up to a year).
pub const TOKEN_TTL_SECONDS_MAX: i64 = 366 * 24 * 3_600;
/// Longer tokens are refused outright rather than parsed.
const TOKEN_LENGTH_MAX: usize = 4_096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Service,
    Customer,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            "customer" => Some(Role::Customer),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    tenant: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    /// Which of the tenant's keys signed the token; tokens made before
    /// keys had ids name none, and were signed by the first key.
    #[serde(default)]
    kid: Option<String>,
}

/// The id of the keys tokens without a `kid` were signed with.
const KEY_ID_BEFORE_IDS: &str = "k1";

/// Who is calling, after their token checked out.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: Arc<TenantEntry>,
    pub role: Role,
    /// The customer's own user id.
    pub subject: Option<UserId>,
}

impl Principal {
    pub fn tenant_id(&self) -> TenantId {
        self.tenant.tenant.id
    }

    pub fn require_admin(&self) -> Result<(), Problem> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(Problem::forbidden("this needs an admin token")),
        }
    }

    /// The user a claim or login is for: named in the body by the tenant's
    /// backend, the token's own subject for a customer.
    pub fn acting_user(&self, named: Option<&str>) -> Result<UserId, Problem> {
        match (self.role, &self.subject, named) {
            (Role::Customer, Some(subject), None) => Ok(subject.clone()),
            (Role::Customer, Some(subject), Some(named)) if named == subject.as_str() => {
                Ok(subject.clone())
            }
            (Role::Customer, _, _) => {
                Err(Problem::forbidden("a customer acts only for themselves"))
            }
            (_, _, Some(named)) => Ok(UserId::parse(named)?),
            (_, _, None) => Err(Problem::validation(
                voucherd_core::validation::Invalid::one(
                    "user_id",
                    "is required for a service or admin token",
                ),
            )),
        }
    }

    /// A customer sees only their own vouchers; the tenant's backend sees all.
    pub fn may_see(&self, user_id: &UserId) -> Result<(), Problem> {
        match (&self.role, &self.subject) {
            (Role::Customer, Some(subject)) if subject == user_id => Ok(()),
            (Role::Customer, _) => Err(Problem::forbidden(
                "a customer sees only their own vouchers",
            )),
            _ => Ok(()),
        }
    }

    /// Whose vouchers a lock, unlock or redeem may touch: a customer's own.
    pub fn holder(&self) -> Option<UserId> {
        match self.role {
            Role::Customer => self.subject.clone(),
            _ => None,
        }
    }

    /// The name idempotency keys are scoped to.
    pub fn idempotency_principal(&self) -> String {
        match (&self.role, &self.subject) {
            (Role::Customer, Some(subject)) => format!("customer:{subject}"),
            (Role::Admin, _) => "admin".into(),
            _ => "service".into(),
        }
    }
}

/// Mints a token for `tenant`, valid for `ttl` from `now`.
pub fn mint(
    tenant: &Tenant,
    role: Role,
    subject: Option<&UserId>,
    now: Timestamp,
    ttl: SignedDuration,
) -> String {
    let header = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": tenant.key_id}).to_string(),
    );
    let claims = Claims {
        iss: ISSUER.into(),
        tenant: tenant.id.to_string(),
        role,
        sub: subject.map(ToString::to_string),
        iat: now.as_second(),
        exp: now.checked_add(ttl).unwrap_or(Timestamp::MAX).as_second(),
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(sign(&tenant.signing_key, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

fn sign(key: &[u8], input: &[u8]) -> Vec<u8> {
    hmac_for(key)
        .chain_update(input)
        .finalize()
        .into_bytes()
        .to_vec()
}

fn hmac_for(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; the error case cannot happen.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// Checks a token against the tenant it names, at `now`; answers who it is
/// and until when (in seconds since the epoch) it is valid.
pub fn verify(
    token: &str,
    tenant_of: impl Fn(TenantId) -> Option<Arc<TenantEntry>>,
    now: Timestamp,
) -> Result<(Principal, i64), Problem> {
    let invalid =
        || Problem::unauthorized("the token is malformed or its signature does not match");
    if token.len() > TOKEN_LENGTH_MAX {
        return Err(invalid());
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let header: Header = decode_json(header).ok_or_else(invalid)?;
    if !matches!(header.alg.as_str(), "HS256" | "EdDSA" | "ES256" | "RS256") {
        return Err(Problem::unauthorized(
            "only HS256, EdDSA, ES256 and RS256 tokens are accepted",
        ));
    }
    let claims: Claims = decode_json(payload).ok_or_else(invalid)?;
    let tenant_id: TenantId = claims.tenant.parse().map_err(|_| invalid())?;
    let tenant = tenant_of(tenant_id).ok_or_else(invalid)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
    let signing_input_length = token.len() - signature_text_length(token);
    if header.alg != "HS256" {
        // Signed by the tenant's own identity provider, with a key it
        // registered: the kid must name one of the header's algorithm.
        let kid = header.kid.as_deref().ok_or_else(|| {
            Problem::unauthorized("a token signed with a public key must name it in kid")
        })?;
        let key = tenant
            .tenant
            .public_keys
            .iter()
            .find(|key| key.key_id == kid)
            .and_then(|key| PublicJwk::parse(&key.jwk).ok())
            .filter(|key| key.alg() == header.alg)
            .ok_or_else(|| {
                Problem::unauthorized("the token names a key this tenant does not have")
            })?;
        if !key.verifies(&token.as_bytes()[..signing_input_length], &signature) {
            return Err(invalid());
        }
        return checked_claims(claims, tenant, now, None);
    }
    // The key the header names: the current one, or a retired one, which
    // verifies only what it signed before it was retired.
    let kid = header.kid.as_deref().unwrap_or(KEY_ID_BEFORE_IDS);
    let (key, retired_at) = if kid == tenant.tenant.key_id {
        (&tenant.tenant.signing_key, None)
    } else {
        let retired = tenant
            .tenant
            .retired_keys
            .iter()
            .find(|retired| retired.key_id == kid)
            .ok_or_else(|| {
                Problem::unauthorized("the token names a key this tenant does not have")
            })?;
        (&retired.signing_key, Some(retired.retired_at))
    };
    hmac_for(key)
        .chain_update(&token.as_bytes()[..signing_input_length])
        .verify_slice(&signature)
        .map_err(|_| invalid())?;
    checked_claims(claims, tenant, now, retired_at)
}

/// The claims of a token whose signature checked out, checked at `now`;
/// `retired_at` when a retired key signed it.
fn checked_claims(
    claims: Claims,
    tenant: Arc<TenantEntry>,
    now: Timestamp,
    retired_at: Option<Timestamp>,
) -> Result<(Principal, i64), Problem> {
    let invalid =
        || Problem::unauthorized("the token is malformed or its signature does not match");
    let now_seconds = now.as_second();
    if claims.iss != ISSUER {
        return Err(invalid());
    }
    // Saturating: a tenant minting its own tokens may write any i64, and
    // `exp` at i64::MAX means "never", not an overflow.
    let valid_until = claims.exp.saturating_add(CLOCK_SKEW_SECONDS);
    if valid_until <= now_seconds {
        return Err(Problem::unauthorized("the token has expired"));
    }
    if claims.iat.saturating_sub(CLOCK_SKEW_SECONDS) > now_seconds {
        return Err(Problem::unauthorized("the token is not valid yet"));
    }
    if let Some(retired_at) = retired_at {
        // A retired key's tokens were all issued before it was retired and
        // live at most as long as a token may.
        let issued_before = claims.iat <= retired_at.as_second().saturating_add(CLOCK_SKEW_SECONDS);
        let within_ttl = claims.exp.saturating_sub(claims.iat) <= TOKEN_TTL_SECONDS_MAX;
        if !issued_before || !within_ttl {
            return Err(Problem::unauthorized(
                "the token's key was rotated out before the token was issued",
            ));
        }
    }
    let subject = claims
        .sub
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|_| invalid())?;
    if claims.role == Role::Customer && subject.is_none() {
        return Err(Problem::unauthorized(
            "a customer token must name its user in sub",
        ));
    }
    Ok((
        Principal {
            tenant,
            role: claims.role,
            subject,
        },
        valid_until,
    ))
}

/// A public key a tenant registered, as a JWK (RFC 7517): an Ed25519 key
/// (`kty` OKP, `crv` Ed25519, for EdDSA), a P-256 key (`kty` EC, `crv`
/// P-256, for ES256), or an RSA key of 2,048 to 8,192 bits (`kty` RSA,
/// for RS256).
#[derive(Debug, Clone)]
pub enum PublicJwk {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>),
}

impl PublicJwk {
    /// Reads a JWK; a private key (`d`) is refused, it must stay with its
    /// owner.
    pub fn parse(text: &str) -> Result<PublicJwk, String> {
        let jwk: serde_json::Value =
            serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
        if jwk.get("d").is_some() {
            return Err("this is a private key; register only the public half".into());
        }
        let field = |name: &str| -> Result<Vec<u8>, String> {
            let text = jwk[name]
                .as_str()
                .ok_or_else(|| format!("{name} is missing"))?;
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| format!("{name} is not base64url"))
        };
        match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
            (Some("OKP"), Some("Ed25519")) => {
                let x: [u8; 32] = field("x")?
                    .try_into()
                    .map_err(|_| "x of an Ed25519 key is 32 bytes".to_owned())?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map(PublicJwk::Ed25519)
                    .map_err(|_| "x is not an Ed25519 point".into())
            }
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("x and y of a P-256 key are 32 bytes each".into());
                }
                let mut point = vec![0x04];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map(PublicJwk::P256)
                    .map_err(|_| "x, y is not a P-256 point".into())
            }
            (Some("RSA"), _) => {
                let (n, e) = (field("n")?, field("e")?);
                if !(256..=1_024).contains(&n.len()) {
                    return Err("an RSA modulus must have 2,048 to 8,192 bits".into());
                }
                rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(&n),
                    rsa::BigUint::from_bytes_be(&e),
                )
                .map(|key| PublicJwk::Rsa(rsa::pkcs1v15::VerifyingKey::new(key)))
                .map_err(|error| format!("not an RSA public key: {error}"))
            }
            _ => Err("only Ed25519 (kty OKP), P-256 (kty EC) and RSA keys are taken".into()),
        }
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self {
            PublicJwk::Ed25519(_) => "EdDSA",
            PublicJwk::P256(_) => "ES256",
            PublicJwk::Rsa(_) => "RS256",
        }
    }

    fn verifies(&self, input: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        match self {
            PublicJwk::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify_strict(input, &signature).is_ok()),
            PublicJwk::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify(input, &signature).is_ok()),
            PublicJwk::Rsa(key) => {
                rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|signature| {
                    rsa::signature::Verifier::verify(key, input, &signature).is_ok()
                })
            }
        }
    }
}

/// Tokens verified lately, so that a caller's every request does not pay
/// for base64, JSON and HMAC again. A token is remembered with the tenant
/// entry it was verified against and its expiry; when the tenant changed
/// (a new key) or the token expired, it is verified afresh. The memory is
/// bounded: when full, it starts over.
#[derive(Debug, Default, Clone)]
pub struct TokenCache {
    verified: Arc<std::sync::Mutex<std::collections::HashMap<String, (Principal, i64)>>>,
}

impl TokenCache {
    /// Tokens remembered at most.
    pub const TOKENS_MAX: usize = 8_192;

    pub fn recall(
        &self,
        token: &str,
        now: Timestamp,
        tenant_of: impl Fn(TenantId) -> Option<Arc<TenantEntry>>,
    ) -> Option<Principal> {
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (principal, expires_at) = verified.get(token)?;
        let current = tenant_of(principal.tenant_id())?;
        (now.as_second() < *expires_at && Arc::ptr_eq(&current, &principal.tenant))
            .then(|| principal.clone())
    }

    pub fn remember(&self, token: &str, principal: &Principal, expires_at: i64) {
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= TokenCache::TOKENS_MAX {
            verified.clear();
        }
        verified.insert(token.to_owned(), (principal.clone(), expires_at));
    }
}

/// The length of `.signature` at the end of a token.
fn signature_text_length(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

/// The token of an `Authorization` value: the scheme is case-insensitive
/// (RFC 9110 §11.1), so `bearer` and `BEARER` are `Bearer`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// A token part: base64url of a JSON object in UTF-8 (RFC 7515 §4, RFC 7519
/// §7.2). serde reads a struct from an array just as well, and skips the
/// fields it ignores without checking that their bytes are UTF-8, so both
/// are checked here.
fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Authenticates the bearer token, applies the tenant's rate limit, and
/// leaves the [`Principal`] for the handlers; or the problem that refuses
/// the request.
pub fn authenticate(state: &AppState, request: &mut Request) -> Result<(), Problem> {
    let principal = admitted(state, request.headers())?;
    request.extensions_mut().insert(principal);
    Ok(())
}

/// The caller the bearer token names, admitted by its tenant's rate limit;
/// or the problem that refuses the request.
pub(crate) fn admitted(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, Problem> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
    else {
        return Err(Problem::unauthorized("send Authorization: Bearer <token>"));
    };
    let engine = &state.engine;
    let now = engine.now();
    let token = token.trim();
    let principal = match state.tokens.recall(token, now, |id| engine.tenant(id)) {
        Some(principal) => principal,
        None => match verify(token, |id| engine.tenant(id), now) {
            Ok((principal, expires_at)) => {
                state.tokens.remember(token, &principal, expires_at);
                principal
            }
            Err(problem) => return Err(problem),
        },
    };
    if let Err(wait) = principal.tenant.admit() {
        return Err(Problem::rate_limited(
            "this tenant's request rate is used up for now",
            principal.tenant.tenant.rate_limit_per_second.unwrap_or(0),
            wait.as_secs_f64().ceil() as u64,
        ));
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(key: u8) -> Arc<TenantEntry> {
        Arc::new(TenantEntry::new(Tenant {
            id: format!("00000000-0000-4000-8000-0000000000{key:02x}")
                .parse()
                .unwrap(),
            name: "test".into(),
            signing_key: vec![key; 32],
            time_zone: "UTC".into(),
            rate_limit_per_second: None,
            key_id: "k1".into(),
            retired_keys: Vec::new(),
            public_keys: Vec::new(),
            created_at: Timestamp::UNIX_EPOCH,
        }))
    }

    const HOUR: SignedDuration = SignedDuration::from_hours(1);

    #[test]
    fn a_minted_token_verifies_and_tampering_does_not() {
        let one = tenant(1);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let lookup = |id: TenantId| (id == one.tenant.id).then(|| one.clone());
        let user = UserId::parse("u-1").unwrap();
        let token = mint(&one.tenant, Role::Customer, Some(&user), now, HOUR);
        let (principal, _) = verify(&token, lookup, now).unwrap();
        assert_eq!(
            (principal.role, principal.subject),
            (Role::Customer, Some(user))
        );

        let mut tampered = token.clone().into_bytes();
        let middle = token.find('.').unwrap() + 5;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        assert!(verify(std::str::from_utf8(&tampered).unwrap(), lookup, now).is_err());
        assert!(
            verify(&token, lookup, now.checked_add(HOUR * 2).unwrap()).is_err(),
            "expired"
        );
        assert!(verify("a.b", lookup, now).is_err());

        let other = tenant(2);
        let foreign = mint(&other.tenant, Role::Admin, None, now, HOUR);
        assert!(verify(&foreign, lookup, now).is_err(), "an unknown tenant");
        let forged = mint(
            &Tenant {
                signing_key: vec![9; 32],
                ..one.tenant.clone()
            },
            Role::Admin,
            None,
            now,
            HOUR,
        );
        assert!(
            verify(&forged, lookup, now).is_err(),
            "signed with another key"
        );
    }

    /// A token over `claims` as written, signed with `tenant`'s key, as a
    /// tenant minting its own tokens would make it.
    fn signed_by(tenant: &Tenant, claims: impl AsRef<[u8]>) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
        let signature = URL_SAFE_NO_PAD.encode(sign(&tenant.signing_key, signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }

    /// Found fuzzing `verify` with claims the tenant signed itself:
    /// `exp + 30` overflowed at i64::MAX (a panic in debug builds,
    /// "expired" after wrapping in release ones), and `iat - 30` at
    /// i64::MIN.
    #[test]
    fn times_at_the_ends_of_i64_are_answered_not_overflowed() {
        let one = tenant(1);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let lookup = |_| Some(one.clone());
        let id = one.tenant.id;
        let never_expires = signed_by(
            &one.tenant,
            format!(
                r#"{{"iss":"voucherd","tenant":"{id}","role":"admin","iat":0,"exp":{}}}"#,
                i64::MAX
            ),
        );
        let (_, valid_until) = verify(&never_expires, lookup, now).unwrap();
        assert_eq!(valid_until, i64::MAX);
        let issued_at_the_start = signed_by(
            &one.tenant,
            format!(
                r#"{{"iss":"voucherd","tenant":"{id}","role":"admin","iat":{},"exp":1800000060}}"#,
                i64::MIN
            ),
        );
        assert!(verify(&issued_at_the_start, lookup, now).is_ok());
    }

    /// JWS headers and JWT claims sets are JSON objects (RFC 7515 §4,
    /// RFC 7519 §7.2); serde would read a struct from an array too.
    #[test]
    fn a_header_or_claims_that_are_not_objects_are_refused() {
        let one = tenant(1);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let lookup = |_| Some(one.clone());
        let id = one.tenant.id;
        let array = signed_by(
            &one.tenant,
            format!(r#"["voucherd","{id}","admin",null,1800000000,1800003600]"#),
        );
        assert!(verify(&array, lookup, now).is_err());
        let object = signed_by(
            &one.tenant,
            format!(
                r#" {{"iss":"voucherd","tenant":"{id}","role":"admin","iat":1800000000,"exp":1800003600}}"#
            ),
        );
        assert!(
            verify(&object, lookup, now).is_ok(),
            "whitespace before the object"
        );
        let payload = object.split('.').nth(1).unwrap();
        let array_header = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(br#"["HS256"]"#));
        let signature =
            URL_SAFE_NO_PAD.encode(sign(&one.tenant.signing_key, array_header.as_bytes()));
        assert!(verify(&format!("{array_header}.{signature}"), lookup, now).is_err());
    }

    /// Found by the `token` fuzz target: a field serde ignores was skipped
    /// without its bytes being checked, so claims that are not UTF-8, and
    /// so not JSON, verified.
    #[test]
    fn claims_that_are_not_utf8_are_refused() {
        let one = tenant(1);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let lookup = |_| Some(one.clone());
        let id = one.tenant.id;
        let claims = format!(
            r#"{{"iss":"voucherd","tenant":"{id}","role":"admin","iat":1800000000,"exp":1800003600,"note":"?"}}"#
        );
        let mut bytes = claims.into_bytes();
        let question = bytes.iter().rposition(|byte| *byte == b'?').unwrap();
        assert!(verify(&signed_by(&one.tenant, &bytes), lookup, now).is_ok());
        bytes[question] = 0xFF;
        assert!(verify(&signed_by(&one.tenant, &bytes), lookup, now).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let one = tenant(1);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let token = mint(&one.tenant, Role::Admin, None, now, HOUR);
        let payload = token.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#)
        );
        assert!(verify(&none, |_| Some(one.clone()), now).is_err());
    }

    #[test]
    fn a_rotated_key_verifies_what_it_signed_before_and_nothing_after() {
        let old = tenant(3);
        let now = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(24 * 400);
        let before = mint(&old.tenant, Role::Admin, None, now, HOUR * 2);
        let rotated_at = now + HOUR;
        let mut rotated = old.tenant.clone();
        rotated
            .retired_keys
            .push(voucherd_engine::model::RetiredKey {
                key_id: "k1".into(),
                signing_key: old.tenant.signing_key.clone(),
                retired_at: rotated_at,
            });
        rotated.signing_key = vec![4; 32];
        rotated.key_id = "k2".into();
        let current = Arc::new(TenantEntry::new(rotated.clone()));
        let lookup = |_| Some(current.clone());
        let later = rotated_at + HOUR / 2;
        assert!(
            verify(&before, lookup, later).is_ok(),
            "signed before the rotation"
        );
        assert!(
            verify(&before, lookup, now + HOUR * 3).is_err(),
            "until it expires"
        );
        let after = mint(&old.tenant, Role::Admin, None, rotated_at + HOUR / 4, HOUR);
        assert!(
            verify(&after, lookup, later).is_err(),
            "the old key signs nothing new"
        );
        let fresh = mint(&rotated, Role::Admin, None, later, HOUR);
        assert!(fresh.starts_with(&URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k2""#)[..20]));
        assert!(verify(&fresh, lookup, later).is_ok(), "the new key");
        let mut unknown = rotated.clone();
        unknown.key_id = "k9".into();
        let unknown_kid = mint(&unknown, Role::Admin, None, later, HOUR);
        let refused = verify(&unknown_kid, lookup, later).unwrap_err();
        assert_eq!(refused.status(), axum::http::StatusCode::UNAUTHORIZED);
        // A token without a kid was signed by the first key.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = Claims {
            iss: ISSUER.into(),
            tenant: old.tenant.id.to_string(),
            role: Role::Admin,
            sub: None,
            iat: now.as_second(),
            exp: (now + HOUR * 2).as_second(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(sign(&old.tenant.signing_key, input.as_bytes()));
        assert!(verify(&format!("{input}.{signature}"), lookup, later).is_ok());
    }

    /// A token signed by a key pair, as a partner's identity provider would.
    fn signed_by_key(
        alg: &str,
        kid: &str,
        tenant: &TenantEntry,
        now: Timestamp,
        sign: impl Fn(&[u8]) -> Vec<u8>,
    ) -> String {
        let header = URL_SAFE_NO_PAD
            .encode(serde_json::json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string());
        let claims = Claims {
            iss: ISSUER.into(),
            tenant: tenant.tenant.id.to_string(),
            role: Role::Customer,
            sub: Some("partner-user-7".into()),
            iat: now.as_second(),
            exp: (now + HOUR).as_second(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let input = format!("{header}.{payload}");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sign(input.as_bytes())))
    }

    #[test]
    fn tokens_signed_by_registered_public_keys_verify_and_others_do_not() {
        use ed25519_dalek::Signer as _;
        let ed = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let ec = p256::ecdsa::SigningKey::from_slice(&[6; 32]).unwrap();
        let point = ec.verifying_key().to_encoded_point(false);
        let ed_jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "idp-ed",
            "x": URL_SAFE_NO_PAD.encode(ed.verifying_key().to_bytes())});
        let ec_jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "idp-ec",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())});
        let mut registered = tenant(8).tenant.clone();
        registered.public_keys = vec![
            voucherd_engine::model::PublicKey {
                key_id: "idp-ed".into(),
                jwk: ed_jwk.to_string(),
            },
            voucherd_engine::model::PublicKey {
                key_id: "idp-ec".into(),
                jwk: ec_jwk.to_string(),
            },
        ];
        let entry = Arc::new(TenantEntry::new(registered));
        let lookup = |_| Some(entry.clone());
        let now = Timestamp::UNIX_EPOCH + HOUR * 1_000;
        let sign_ed = |input: &[u8]| ed.sign(input).to_bytes().to_vec();
        let sign_ec = |input: &[u8]| {
            let signature: p256::ecdsa::Signature = ec.sign(input);
            signature.to_bytes().to_vec()
        };
        let (principal, _) = verify(
            &signed_by_key("EdDSA", "idp-ed", &entry, now, sign_ed),
            lookup,
            now,
        )
        .expect("an EdDSA token of a registered key");
        assert_eq!(principal.subject.unwrap().as_str(), "partner-user-7");
        assert!(
            verify(
                &signed_by_key("ES256", "idp-ec", &entry, now, sign_ec),
                lookup,
                now
            )
            .is_ok()
        );
        // The wrong algorithm for the kid, an unknown kid, another key.
        assert!(
            verify(
                &signed_by_key("ES256", "idp-ed", &entry, now, sign_ed),
                lookup,
                now
            )
            .is_err()
        );
        assert!(
            verify(
                &signed_by_key("EdDSA", "idp-xx", &entry, now, sign_ed),
                lookup,
                now
            )
            .is_err()
        );
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let forged = signed_by_key("EdDSA", "idp-ed", &entry, now, |input| {
            stranger.sign(input).to_bytes().to_vec()
        });
        assert!(verify(&forged, lookup, now).is_err());
        assert!(
            verify(
                &signed_by_key("none", "idp-ed", &entry, now, |_| Vec::new()),
                lookup,
                now
            )
            .is_err()
        );
        assert!(
            verify(
                &signed_by_key("RS256", "idp-ed", &entry, now, sign_ed),
                lookup,
                now
            )
            .is_err()
        );
        // RS256 with a registered RSA key.
        use rsa::signature::SignatureEncoding as _;
        use rsa::traits::PublicKeyParts as _;
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        let rsa_jwk = serde_json::json!({"kty": "RSA", "kid": "idp-rsa",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())});
        let mut with_rsa = entry.tenant.clone();
        with_rsa
            .public_keys
            .push(voucherd_engine::model::PublicKey {
                key_id: "idp-rsa".into(),
                jwk: rsa_jwk.to_string(),
            });
        let rsa_entry = Arc::new(TenantEntry::new(with_rsa));
        let rsa_lookup = |_| Some(rsa_entry.clone());
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private);
        let rs256 = signed_by_key("RS256", "idp-rsa", &rsa_entry, now, |input| {
            signer.sign(input).to_vec()
        });
        assert!(
            verify(&rs256, rsa_lookup, now).is_ok(),
            "RS256 of a registered key"
        );
        // Another signature: its first character changed (never the same).
        let (input, signature) = rs256.rsplit_once('.').unwrap();
        let first = if signature.starts_with('A') { 'B' } else { 'A' };
        let tampered = format!("{input}.{first}{}", &signature[1..]);
        assert!(verify(&tampered, rsa_lookup, now).is_err());
        let small = serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert!(
            PublicJwk::parse(&small.to_string()).is_err(),
            "a modulus too small"
        );
        // Private keys are refused at registration.
        let mut private = ed_jwk.clone();
        private["d"] = "AAAA".into();
        assert!(PublicJwk::parse(&private.to_string()).is_err());
    }
}
