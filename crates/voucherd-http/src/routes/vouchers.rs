//! Vouchers after the claim: a user's list, and seed 001's lock, unlock
//! and redeem.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::UserId;
use voucherd_core::voucher::VoucherRefusal;
use voucherd_engine::model::{VoucherAction, VoucherOutcome, VoucherTarget};

use crate::AppState;
use crate::auth::Principal;
use crate::problem::{Problem, ProblemBody};
use crate::wire::{VoucherBody, VoucherListBody};

#[utoipa::path(get, path = "/v1/users/{user_id}/vouchers", tag = "vouchers",
    params(("user_id" = String, Path, description = "The tenant's user id")),
    responses(
        (status = 200, description = "The user's vouchers, oldest first", body = VoucherListBody),
        (status = 403, description = "A customer asking for someone else's", body = ProblemBody),
        (status = 422, description = "A user id longer than 128 bytes or with control characters", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn of_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(user_id): Path<String>,
) -> Result<Json<VoucherListBody>, Problem> {
    let user_id = UserId::parse(&user_id)?;
    principal.may_see(&user_id)?;
    let vouchers = state
        .engine
        .vouchers_of_user(principal.tenant_id(), &user_id)
        .await?;
    let now = state.engine.now();
    let mut bodies = Vec::with_capacity(vouchers.len());
    for voucher in &vouchers {
        // A campaign another node created since this node's last refresh
        // is read from the store: the user's voucher is theirs at once.
        let offer = state.engine.offer(principal.tenant_id(), voucher).await?;
        bodies.push(VoucherBody::new(voucher, offer, now));
    }
    Ok(Json(VoucherListBody { vouchers: bodies }))
}

fn refusal_problem(refusal: VoucherRefusal) -> Problem {
    let (status, kind, title, detail) = match refusal {
        VoucherRefusal::NotIssued => (
            StatusCode::CONFLICT,
            "not-issued",
            "Not issued",
            "the voucher is not issued yet",
        ),
        VoucherRefusal::Locked => (
            StatusCode::CONFLICT,
            "locked",
            "Locked",
            "another checkout holds this voucher's lock",
        ),
        VoucherRefusal::NotLocked => (
            StatusCode::CONFLICT,
            "not-locked",
            "Not locked",
            "the voucher holds no live lock",
        ),
        VoucherRefusal::AlreadyRedeemed => (
            StatusCode::CONFLICT,
            "already-redeemed",
            "Already redeemed",
            "the voucher has no redemptions left",
        ),
        VoucherRefusal::Expired => (
            StatusCode::GONE,
            "voucher-expired",
            "Voucher expired",
            "the voucher has expired",
        ),
        VoucherRefusal::LockRequired => (
            StatusCode::CONFLICT,
            "lock-required",
            "Lock required",
            "a voucher with several redemptions is redeemed under a lock",
        ),
    };
    Problem::new(status, kind, title, detail)
}

async fn act(
    state: &AppState,
    principal: &Principal,
    code: &str,
    action: VoucherAction,
) -> Result<Json<VoucherBody>, Problem> {
    let target = VoucherTarget {
        tenant_id: principal.tenant_id(),
        code: VoucherCode::parse(code).map_err(|_| Problem::not_found("voucher"))?,
        holder: principal.holder(),
    };
    match state.engine.act_on_voucher(&target, action).await? {
        VoucherOutcome::Done(voucher) => {
            // The action is committed: its answer must not say otherwise
            // because this node has not seen the campaign yet.
            let offer = state.engine.offer(principal.tenant_id(), &voucher).await?;
            Ok(Json(VoucherBody::new(&voucher, offer, state.engine.now())))
        }
        VoucherOutcome::Refused(refusal, _) => Err(refusal_problem(refusal)),
        VoucherOutcome::NotFound => Err(Problem::not_found("voucher")),
    }
}

macro_rules! voucher_route {
    ($name:ident, $path:literal, $action:expr, $what:literal) => {
        #[utoipa::path(post, path = $path, tag = "vouchers", description = $what,
            params(("code" = String, Path, description = "The voucher code")),
            responses(
                (status = 200, body = VoucherBody),
                (status = 404, body = ProblemBody),
                (status = 409, description = "locked, not-locked, already-redeemed or lock-required", body = ProblemBody),
                (status = 410, description = "voucher-expired", body = ProblemBody),
            ),
            security(("bearer" = [])))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(principal): Extension<Principal>,
            Path(code): Path<String>,
        ) -> Result<Json<VoucherBody>, Problem> {
            act(&state, &principal, &code, $action).await
        }
    };
}

voucher_route!(
    lock,
    "/v1/vouchers/{code}/lock",
    VoucherAction::Lock,
    "Holds the voucher for a checkout for the campaign's lock_ttl_seconds; a lock past its time is free to take."
);
voucher_route!(
    unlock,
    "/v1/vouchers/{code}/unlock",
    VoucherAction::Unlock,
    "Releases a live lock."
);
voucher_route!(
    redeem,
    "/v1/vouchers/{code}/redeem",
    VoucherAction::Redeem,
    "Uses the voucher once: under a lock, or without one for a single-use voucher."
);
