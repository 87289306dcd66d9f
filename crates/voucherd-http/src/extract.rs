//! JSON request bodies, with every way they can be wrong answered as a
//! problem: not JSON at all (400), JSON of the wrong shape (422), the wrong
//! media type (415), too large (413).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use voucherd_core::validation::Invalid;

use crate::problem::Problem;

/// A JSON body parsed into `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A JSON body that may be left out entirely, giving `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<ApiJson<T>, Problem> {
        require_json(request.headers())?;
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<OptionalJson<T>, Problem> {
        // Refused before the body is read.
        optional_json_type(request.headers())?;
        let typed = request.headers().contains_key(header::CONTENT_TYPE);
        let bytes = read_body(request, state).await?;
        optional_json(typed, &bytes).map(OptionalJson)
    }
}

/// Whether a body that may be left out has a media type [`optional_json`]
/// takes: JSON, or none.
pub(crate) fn optional_json_type(headers: &axum::http::HeaderMap) -> Result<(), Problem> {
    if headers.contains_key(header::CONTENT_TYPE) {
        require_json(headers)
    } else {
        Ok(())
    }
}

/// What [`OptionalJson`] makes of a body once it is read, its media type
/// taken ([`optional_json_type`]): `T::default()` for an empty one, else
/// JSON parsed into `T`, which needs a declared media type (`typed`).
pub(crate) fn optional_json<T: DeserializeOwned + Default>(
    typed: bool,
    bytes: &[u8],
) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !typed {
        return Err(unsupported_media_type());
    }
    parse_json(bytes)
}

/// A query string parsed into `T`, or a `400` problem saying what is
/// wrong (axum's own answer is plain text). Handlers call it after their
/// role check, so a caller without the role hears `403` first.
pub(crate) fn parse_query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, Problem> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|axum::extract::Query(query)| query)
        .map_err(|rejection| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "validation",
                "Invalid query parameters",
                rejection.body_text(),
            )
        })
}

pub(crate) async fn read_body<S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<Bytes, Problem> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                Problem::malformed(rejection.body_text())
            }
        })
}

pub(crate) fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        "The request body is too large",
        "send a smaller body",
    )
}

fn unsupported_media_type() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        "send Content-Type: application/json",
    )
}

pub(crate) fn content_type(request: &Request) -> Option<&str> {
    media_type(request.headers())
}

fn media_type(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or("").trim())
}

fn require_json(headers: &axum::http::HeaderMap) -> Result<(), Problem> {
    match media_type(headers) {
        Some(media) if media.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(unsupported_media_type()),
    }
}

/// Parses JSON: a syntax error (including bytes that are not UTF-8) is
/// malformed, a well-formed body of the wrong shape is invalid, with the
/// field it is wrong at named (`tiers[0].until_rank`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = error.path().to_string();
        json_problem(error.into_inner(), Some(field).filter(|field| field != "."))
    })?;
    deserializer
        .end()
        .map_err(|trailing| json_problem(trailing, None))?;
    Ok(value)
}

fn json_problem(error: serde_json::Error, field: Option<String>) -> Problem {
    match (error.classify(), field) {
        (serde_json::error::Category::Data, Some(field)) => {
            Problem::validation(Invalid::one(field, error.to_string()))
        }
        (serde_json::error::Category::Data, None) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request is invalid",
            error.to_string(),
        ),
        _ => Problem::malformed(error.to_string()),
    }
}
