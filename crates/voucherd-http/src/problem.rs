//! RFC 9457 problem answers. Every error the API gives is one of these, with
//! a stable `type` per case; internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use voucherd_core::validation::Invalid;
use voucherd_engine::{ConflictKind, EngineError};

/// Problem types are this plus the case name, e.g. `.../sold-out`.
pub const PROBLEM_TYPE_BASE: &str = "https://voucherd.dev/problems/";

#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    retry_after_seconds: Option<u64>,
    errors: Vec<FieldErrorBody>,
    /// Requests a second of the limit that refused this one.
    rate_limit_quota: Option<u32>,
}

/// The JSON of a problem answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    /// A URI whose last segment names the case, e.g. `sold-out`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Each rejected field, for `validation` problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldErrorBody>,
    /// The request's id, as in its `X-Request-Id` answer header and in the
    /// node's log lines of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldErrorBody {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            retry_after_seconds: None,
            errors: Vec::new(),
            rate_limit_quota: None,
        }
    }

    /// 429: a rate limit of `quota` requests a second is used up for
    /// `wait_seconds`.
    pub fn rate_limited(detail: impl Into<String>, quota: u32, wait_seconds: u64) -> Problem {
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Rate limit reached",
            detail,
        )
        .retry_after(wait_seconds);
        problem.rate_limit_quota = Some(quota);
        problem
    }

    pub fn retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn title(&self) -> &'static str {
        self.title
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after_seconds
    }

    /// Each rejected field, for validation problems.
    pub fn errors(&self) -> &[FieldErrorBody] {
        &self.errors
    }

    pub fn validation(invalid: Invalid) -> Problem {
        let mut problem = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request is invalid",
            invalid.to_string(),
        );
        problem.errors = invalid
            .errors
            .into_iter()
            .map(|error| FieldErrorBody {
                field: error.field,
                message: error.message,
            })
            .collect();
        problem
    }

    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "The request body is not valid JSON",
            detail,
        )
    }

    pub fn not_found(what: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no such {what}"),
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    pub fn overloaded() -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many requests in flight",
            "the server is at capacity; retry shortly",
        )
        .retry_after(1)
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "something went wrong on our side; it has been logged",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: format!("{PROBLEM_TYPE_BASE}{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
            request_id: crate::observe::REQUEST_ID.try_with(Clone::clone).ok(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(quota) = self.rate_limit_quota {
            // draft-ietf-httpapi-ratelimit-headers: the policy, and that
            // none of it is left for the seconds Retry-After says.
            let reset = self.retry_after_seconds.unwrap_or(1);
            if let (Ok(policy), Ok(now)) = (
                HeaderValue::from_str(&format!("\"tenant\";q={quota};w=1")),
                HeaderValue::from_str(&format!("\"tenant\";r=0;t={reset}")),
            ) {
                headers.insert("ratelimit-policy", policy);
                headers.insert("ratelimit", now);
            }
        }
        response
    }
}

impl From<EngineError> for Problem {
    fn from(error: EngineError) -> Problem {
        match error {
            EngineError::NotFound(what) => Problem::not_found(what),
            EngineError::Invalid(invalid) => Problem::validation(invalid),
            EngineError::Conflict { kind, detail } => {
                let title = match kind {
                    ConflictKind::WrongState => "The campaign is not in the state this needs",
                    ConflictKind::CodesMissing => "The campaign does not have its codes yet",
                    ConflictKind::CodesRefused => "The codes were not added",
                    ConflictKind::LoginOnly => "This campaign is granted on login",
                    ConflictKind::PaymentInProgress => {
                        "A payment for this reservation is under way"
                    }
                    ConflictKind::AlreadyPaid => "This reservation is paid for",
                };
                Problem::new(StatusCode::CONFLICT, kind.as_str(), title, detail)
            }
            EngineError::Overloaded => Problem::overloaded(),
            EngineError::ReservationExpired => Problem::new(
                StatusCode::GONE,
                "reservation-expired",
                "Reservation expired",
                "the reservation ran out before it was paid for; claim again",
            ),
            EngineError::TooSlow(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-slow",
                "The work took too long and was undone",
                detail,
            )
            .retry_after(5),
            EngineError::PaymentsUnavailable => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payments-unavailable",
                "Payments are not available",
                "no payment gateway is configured on this server",
            )
            .retry_after(30),
            EngineError::Unavailable(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "the store is unavailable"
                );
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The database is unavailable",
                    "the database cannot be reached right now; retry shortly",
                )
                .retry_after(2)
            }
            EngineError::Internal(error) => {
                tracing::error!(error = &error as &dyn std::error::Error, "internal error");
                Problem::internal()
            }
        }
    }
}

impl From<Invalid> for Problem {
    fn from(invalid: Invalid) -> Problem {
        Problem::validation(invalid)
    }
}
