//! The OpenAPI document: the handlers' own annotations, collected from the
//! same route lists the router serves, and then [`Answers`], which adds
//! to every operation what the layers in front of its handler may answer
//! (authentication, roles, rate limits, body limits, idempotency,
//! overload), so that the document lists every status an operation can
//! give and every error is `application/problem+json`.

use utoipa::openapi::content::Content;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

use crate::idempotency::{IDEMPOTENCY_KEY, KEY_LENGTH_MAX};

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "voucherd",
        description = "A burst-proof voucher and coupon engine. Errors are RFC 9457 problem documents (`application/problem+json`) whose `type` ends in the case name: sold-out, already-claimed, not-started, ended, paused, daily-limit-reached, limit-reached, reservation-expired, already-redeemed, voucher-expired, rate-limited, overloaded, timeout, validation, malformed, unauthorized, forbidden, not-found, too-large, unsupported-media-type, idempotency-key-reused, idempotency-in-progress. State-changing POSTs and DELETEs accept `Idempotency-Key` (Stripe's semantics: the same key and request replay the first answer; another request under the key is 422; only requests that were carried out are kept). Roles: `admin` manages the tenant's campaigns, `service` is the tenant's backend and names the user, `customer` acts for its own `sub`.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "campaigns", description = "Campaign administration and reads"),
        (name = "claims", description = "Claims and login events"),
        (name = "vouchers", description = "A user's vouchers; lock, unlock, redeem"),
        (name = "payments", description = "Checkout of sale reservations, and orders"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// What the layers in front of the handlers answer, added to each
/// operation once the routes' own parts are merged (a modifier of
/// [`ApiDoc`] would run before there are any): the handlers' annotations
/// say what they decide themselves.
pub(crate) struct Answers;

/// Answers every operation may give.
const EVERY: &[(u16, &str)] = &[(
    503,
    "Overloaded, or the request took too long: retry after Retry-After",
)];
/// Answers of every `/v1` operation (behind a bearer token).
const AUTHENTICATED: &[(u16, &str)] = &[
    (400, "A malformed id, query or header"),
    (401, "No token, or a token that is not valid"),
    (403, "The token's role may not do this"),
    (
        404,
        "No such campaign, voucher, reservation or order for this tenant",
    ),
    (429, "The tenant's rate limit: retry after Retry-After"),
];
/// Answers of every operation that takes a body.
const WITH_BODY: &[(u16, &str)] = &[
    (400, "The body is not JSON (or CSV) at all"),
    (413, "The body is larger than the route takes"),
    (415, "The body's media type is not one the route takes"),
    (422, "The body's fields are invalid"),
];
/// Answers of every state-changing operation, for its `Idempotency-Key`.
const IDEMPOTENT: &[(u16, &str)] = &[
    (
        400,
        "An Idempotency-Key that is not 1 to 255 visible ASCII characters",
    ),
    (
        409,
        "A request under the same Idempotency-Key is still running",
    ),
    (422, "The Idempotency-Key was used for another request"),
];

impl Modify for Answers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let authenticated = path.starts_with("/v1/");
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.delete, true),
            ];
            for (operation, changes_state) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let with_body = operation.request_body.is_some();
                let mut added: Vec<(u16, &str)> = EVERY.to_vec();
                if authenticated {
                    added.extend_from_slice(AUTHENTICATED);
                }
                if authenticated && with_body {
                    added.extend_from_slice(WITH_BODY);
                }
                if authenticated && changes_state {
                    added.extend_from_slice(IDEMPOTENT);
                    add_idempotency_key(operation);
                }
                for (status, description) in added {
                    add_answer(operation, status, description);
                }
                errors_are_problems(operation);
            }
        }
    }
}

fn problem_content() -> Content {
    Content::new(Some(RefOr::Ref(Ref::from_schema_name("ProblemBody"))))
}

fn add_answer(operation: &mut Operation, status: u16, description: &str) {
    let answers = &mut operation.responses.responses;
    let key = status.to_string();
    if let Some(RefOr::T(existing)) = answers.get_mut(&key) {
        if !existing.description.contains(description) {
            existing.description = format!("{}; or: {description}", existing.description);
        }
    } else {
        let mut response = Response::new(description);
        response
            .content
            .insert(PROBLEM_JSON.to_owned(), problem_content());
        answers.insert(key, RefOr::T(response));
    }
    if (status == 429 || status == 503)
        && let Some(RefOr::T(response)) = answers.get_mut(&status.to_string())
    {
        let seconds = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .build();
        let mut header = Header::new(seconds);
        header.description = Some("Seconds to wait before retrying".to_owned());
        response.headers.insert("Retry-After".to_owned(), header);
    }
}

/// Every 4xx and 5xx answer is a problem document.
fn errors_are_problems(operation: &mut Operation) {
    for (status, answer) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = answer else { continue };
        if status.starts_with('4') || status.starts_with('5') {
            response.content.clear();
            response
                .content
                .insert(PROBLEM_JSON.to_owned(), problem_content());
        }
    }
}

fn add_idempotency_key(operation: &mut Operation) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    if parameters
        .iter()
        .any(|parameter| parameter.name.eq_ignore_ascii_case(IDEMPOTENCY_KEY))
    {
        return;
    }
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(KEY_LENGTH_MAX))
        .pattern(Some("^[!-~]+$"))
        .build();
    parameters.push(
        ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Replays the first answer to the same request under the same key",
            ))
            .schema(Some(key))
            .build(),
    );
}
