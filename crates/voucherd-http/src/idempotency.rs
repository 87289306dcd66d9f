//! `Idempotency-Key` on state-changing requests, with Stripe's semantics:
//! the same key and the same request replay the first answer; the same key
//! with another request is refused with 422; a request still running under
//! the key is answered 409 so it is not run twice at once.
//!
//! Keys are scoped to the tenant and the caller, and kept for the engine's
//! `idempotency_ttl`. As Stripe does, only the answer of a request that
//! was carried out is kept ([`kept_for_replay`]): a refused request (bad
//! input, no such thing, not allowed, not now, try again) leaves its key
//! unused, so the corrected request may use it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use voucherd_engine::model::{IdempotencyScope, StoredResponse};

use crate::AppState;
use crate::auth::Principal;
use crate::extract::too_large;
use crate::problem::Problem;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
pub const KEY_LENGTH_MAX: usize = 255;
/// Responses larger than this are not kept for replay (they are answered,
/// and a retry under the key runs again).
const RESPONSE_BYTES_MAX: usize = 1 << 20;
/// The most a handler's answer is read into memory to keep it: well above
/// any answer a route gives, a guard rather than a limit.
const RESPONSE_READ_BYTES_MAX: usize = 64 << 20;

/// Whether an answer is the outcome of the request having been carried
/// out: a success, or a refusal the request itself decided (`409` at the
/// user's limit, `410` sold out). Every other answer is a refusal before
/// or instead of the work (`400`, `401`, `403`, `404`, `413`, `415`,
/// `422`, `429`, `5xx`) and keeps no replay.
pub fn kept_for_replay(status: StatusCode) -> bool {
    status.is_success() || status == StatusCode::CONFLICT || status == StatusCode::GONE
}

/// The keys whose requests are running on this node.
#[derive(Debug, Default, Clone)]
pub struct InFlightKeys(Arc<Mutex<HashSet<IdempotencyScope>>>);

struct InFlightGuard {
    keys: InFlightKeys,
    scope: IdempotencyScope,
}

impl InFlightKeys {
    fn enter(&self, scope: &IdempotencyScope) -> Option<InFlightGuard> {
        let inserted = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(scope.clone());
        inserted.then(|| InFlightGuard {
            keys: self.clone(),
            scope: scope.clone(),
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.keys
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.scope);
    }
}

/// Runs the request under its `Idempotency-Key`, if it is a state-changing
/// request that has one. `body_bytes_max` is the body limit of its route:
/// the body is read here to fingerprint it.
pub async fn idempotency(
    app: &AppState,
    body_bytes_max: usize,
    request: Request,
    next: Next,
) -> Response {
    if !matches!(*request.method(), Method::POST | Method::DELETE) {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY) else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= KEY_LENGTH_MAX
                && key.bytes().all(|byte| byte.is_ascii_graphic()) =>
        {
            key.to_owned()
        }
        _ => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
                format!("the key must be 1 to {KEY_LENGTH_MAX} visible ASCII characters"),
            )
            .into_response();
        }
    };
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, body_bytes_max).await else {
        return too_large().into_response();
    };
    let fingerprint = fingerprint(&parts.method, &parts.uri, &body);
    let scope = IdempotencyScope {
        tenant_id: principal.tenant_id(),
        principal: principal.idempotency_principal(),
        key,
    };
    let engine = &app.engine;
    match engine.stored_response(&scope).await {
        Ok(Some(stored)) => return replay(stored, &fingerprint),
        Ok(None) => {}
        Err(error) => return Problem::from(error).into_response(),
    }
    let Some(_guard) = app.in_flight.enter(&scope) else {
        return Problem::new(
            StatusCode::CONFLICT,
            "idempotency-in-progress",
            "A request with this key is still running",
            "wait for it to finish, then retry to get its answer",
        )
        .retry_after(1)
        .into_response();
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let status = response.status();
    if !kept_for_replay(status) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = to_bytes(body, RESPONSE_READ_BYTES_MAX).await else {
        // The work is done; only its answer could not be read back.
        tracing::error!("a response too large to read for its idempotency key");
        return Problem::internal().into_response();
    };
    if body.len() > RESPONSE_BYTES_MAX {
        // The work is done: its answer goes out, only without a replay.
        tracing::warn!(
            bytes = body.len(),
            "a response too large to keep for its idempotency key"
        );
        return Response::from_parts(parts, Body::from(body));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let answered = StoredResponse {
        fingerprint,
        status: status.as_u16(),
        content_type,
        body: body.to_vec(),
        created_at: engine.now(),
    };
    match engine.store_response(&scope, &answered).await {
        Ok(kept) if kept != answered => replay(kept, &answered.fingerprint),
        Ok(_) => Response::from_parts(parts, Body::from(body)),
        Err(error) => {
            // The request did its work; only its replay is lost.
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "keeping an idempotent response failed"
            );
            Response::from_parts(parts, Body::from(body))
        }
    }
}

fn fingerprint(method: &Method, uri: &axum::http::Uri, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str());
    hasher.update([0]);
    hasher.update(uri.path_and_query().map_or("", |path| path.as_str()));
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().to_vec()
}

fn replay(stored: StoredResponse, fingerprint: &[u8]) -> Response {
    if stored.fingerprint != fingerprint {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "This Idempotency-Key was used for another request",
            "use a new key for a different request",
        )
        .into_response();
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    if let Ok(content_type) = HeaderValue::from_str(&stored.content_type) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}
