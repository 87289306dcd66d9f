//! The caller's own tenant, for its admins: what it is, its key rotated,
//! its rate limit changed. (Listing every tenant is an operator's, on the
//! command line: `voucherd tenant list`.)

use axum::Extension;
use axum::Json;
use axum::extract::State;
use voucherd_core::SignedDuration;
use voucherd_engine::model::Tenant;

use crate::AppState;
use crate::auth::{Principal, Role, mint};
use crate::extract::ApiJson;
use crate::problem::{Problem, ProblemBody};
use crate::wire::{KeyRotatedBody, TenantBody, TenantLimitsBody};

/// How long the admin token a rotation answers with is valid.
const ROTATED_ADMIN_TOKEN_HOURS: i64 = 12;

fn body(tenant: &Tenant) -> TenantBody {
    TenantBody {
        id: tenant.id.to_string(),
        name: tenant.name.clone(),
        time_zone: tenant.time_zone.clone(),
        rate_limit_per_second: tenant.rate_limit_per_second,
        key_id: tenant.key_id.clone(),
        retired_key_ids: tenant
            .retired_keys
            .iter()
            .map(|retired| retired.key_id.clone())
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/tenant", tag = "tenant",
    responses((status = 200, description = "The caller's tenant", body = TenantBody)),
    security(("bearer" = [])))]
pub async fn get(Extension(principal): Extension<Principal>) -> Result<Json<TenantBody>, Problem> {
    principal.require_admin()?;
    Ok(Json(body(&principal.tenant.tenant)))
}

#[utoipa::path(post, path = "/v1/tenant/rotate-key", tag = "tenant",
    description = "Gives the tenant a new signing key. Tokens the old key signed verify until they expire; tokens signed with it from now on do not. Answers an admin token of the new key. Other nodes take the new key within a refresh.",
    responses(
        (status = 200, body = KeyRotatedBody),
        (status = 409, description = "Rotated by someone else meanwhile", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<KeyRotatedBody>, Problem> {
    principal.require_admin()?;
    let mut signing_key = vec![0; 32];
    getrandom::fill(&mut signing_key).map_err(|_| Problem::internal())?;
    let tenant = state
        .engine
        .rotate_tenant_key(principal.tenant_id(), signing_key)
        .await?;
    let admin_token = mint(
        &tenant,
        Role::Admin,
        principal.subject.as_ref(),
        state.engine.now(),
        SignedDuration::from_hours(ROTATED_ADMIN_TOKEN_HOURS),
    );
    Ok(Json(KeyRotatedBody {
        tenant: body(&tenant),
        admin_token,
    }))
}

#[utoipa::path(post, path = "/v1/tenant/limits", tag = "tenant",
    request_body = TenantLimitsBody,
    responses(
        (status = 200, body = TenantBody),
        (status = 422, body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn set_limits(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(limits): ApiJson<TenantLimitsBody>,
) -> Result<Json<TenantBody>, Problem> {
    principal.require_admin()?;
    let rate = match limits.rate_limit_per_second {
        None => None,
        Some(rate) if (1..=1_000_000).contains(&rate) => Some(rate as u32),
        Some(_) => {
            return Err(voucherd_core::validation::Invalid::one(
                "rate_limit_per_second",
                "must be 1 to 1,000,000, or null for no limit",
            )
            .into());
        }
    };
    let tenant = state
        .engine
        .set_tenant_rate_limit(principal.tenant_id(), rate)
        .await?;
    Ok(Json(body(&tenant)))
}
