//! Claims and login events: the burst path.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use voucherd_engine::{ClaimAnswer, Refusal};

use crate::AppState;
use crate::auth::Principal;
use crate::extract::OptionalJson;
use crate::problem::{Problem, ProblemBody};
use crate::routes::campaigns::campaign_id;
use crate::wire::{LoginBody, UserBody, VoucherBody};

pub(crate) fn refusal_problem(refusal: Refusal) -> Problem {
    match refusal {
        Refusal::SoldOut => Problem::new(
            StatusCode::GONE,
            "sold-out",
            "Sold out",
            "every voucher has been claimed",
        ),
        Refusal::NotStarted => Problem::new(
            StatusCode::FORBIDDEN,
            "not-started",
            "Not started",
            "the campaign is not claimable yet",
        ),
        Refusal::Ended => Problem::new(
            StatusCode::FORBIDDEN,
            "ended",
            "Ended",
            "the campaign has ended",
        ),
        Refusal::Paused => Problem::new(
            StatusCode::FORBIDDEN,
            "paused",
            "Paused",
            "the campaign is paused",
        ),
        Refusal::DailyLimitReached => Problem::new(
            StatusCode::CONFLICT,
            "daily-limit-reached",
            "Daily limit reached",
            "one voucher of this group per day; try again tomorrow",
        ),
    }
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/claims", tag = "claims",
    params(("id" = String, Path, description = "Campaign id")),
    request_body(content = Option<UserBody>, description = "`user_id` for a service token; empty for a customer token"),
    responses(
        (status = 201, description = "A new voucher (reserved, for a sale)", body = VoucherBody),
        (status = 200, description = "The user already holds their limit: their voucher", body = VoucherBody),
        (status = 410, description = "Sold out", body = ProblemBody),
        (status = 403, description = "Not started, ended or paused", body = ProblemBody),
        (status = 409, description = "Daily limit reached, or a login-only campaign", body = ProblemBody),
        (status = 503, description = "Overloaded: retry after Retry-After", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn claim(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<UserBody>,
) -> Result<Response, Problem> {
    let user_id = principal.acting_user(body.user_id.as_deref())?;
    let campaign_id = campaign_id(&id)?;
    let answer = state
        .engine
        .claim(principal.tenant_id(), campaign_id, user_id)
        .await?;
    // A refusal (sold out, the crowd's usual answer) needs no campaign.
    let (status, voucher) = match answer {
        ClaimAnswer::Claimed(voucher) => (StatusCode::CREATED, voucher),
        ClaimAnswer::AlreadyHeld(voucher) => (StatusCode::OK, voucher),
        ClaimAnswer::Refused(refusal) => return Err(refusal_problem(refusal)),
    };
    let offer = state.engine.offer(principal.tenant_id(), &voucher).await?;
    let body = VoucherBody::new(&voucher, offer, state.engine.now());
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(post, path = "/v1/events/login", tag = "claims",
    description = "A user logged in: grants every first_login campaign of the tenant that is live, while supply lasts, at most once per user.",
    request_body(content = Option<UserBody>, description = "`user_id` for a service token; empty for a customer token"),
    responses(
        (status = 200, body = LoginBody),
        (status = 503, description = "Overloaded: retry after Retry-After", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn login(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    OptionalJson(body): OptionalJson<UserBody>,
) -> Result<Json<LoginBody>, Problem> {
    let user_id = principal.acting_user(body.user_id.as_deref())?;
    let answers = state
        .engine
        .login(principal.tenant_id(), user_id.clone())
        .await?;
    let now = state.engine.now();
    let mut login = LoginBody {
        user_id: user_id.to_string(),
        granted: Vec::new(),
        held: Vec::new(),
    };
    for answer in answers {
        let (list, voucher) = match answer {
            ClaimAnswer::Claimed(voucher) => (&mut login.granted, voucher),
            ClaimAnswer::AlreadyHeld(voucher) => (&mut login.held, voucher),
            ClaimAnswer::Refused(_) => continue,
        };
        let offer = state.engine.offer(principal.tenant_id(), &voucher).await?;
        list.push(VoucherBody::new(&voucher, offer, now));
    }
    Ok(Json(login))
}
