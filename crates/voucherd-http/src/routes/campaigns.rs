//! Campaign administration: create, codes, lifecycle, report, export; and
//! the campaign reads every role may make.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, TenantId};
use voucherd_core::validation::{Collector, Invalid};

use crate::AppState;
use crate::auth::Principal;
use crate::codes_csv;
use crate::extract::{ApiJson, content_type, parse_json, parse_query, read_body};
use crate::problem::{Problem, ProblemBody};
use crate::wire::{
    AddCodesBody, CampaignBody, CampaignListBody, CodesAddedBody, CreateCampaignBody,
    ExportedVoucherBody, ReportBody, VoucherPageBody, VoucherPageQuery,
};

/// Voucher pages are at most this long.
pub const VOUCHER_PAGE_MAX: u32 = 10_000;
/// Invalid uploaded codes reported at most, so the answer stays small.
const CODE_ERRORS_MAX: usize = 20;

/// A campaign id from the path; a malformed one is just not found.
pub(crate) fn campaign_id(text: &str) -> Result<CampaignId, Problem> {
    text.parse().map_err(|_| Problem::not_found("campaign"))
}

#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns",
    request_body = CreateCampaignBody,
    responses(
        (status = 201, description = "Created as a draft", body = CampaignBody),
        (status = 422, description = "Invalid fields", body = ProblemBody),
        (status = 403, description = "Not an admin token", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateCampaignBody>,
) -> Result<(StatusCode, Json<CampaignBody>), Problem> {
    principal.require_admin()?;
    let spec = body.into_draft().validate()?;
    let view = state
        .engine
        .create_campaign(principal.tenant_id(), spec)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CampaignBody::new(&view, state.engine.now())),
    ))
}

#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns",
    responses((status = 200, description = "Every campaign of the tenant", body = CampaignListBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<CampaignListBody>, Problem> {
    principal.require_admin()?;
    let now = state.engine.now();
    let campaigns = state
        .engine
        .campaigns_of(principal.tenant_id())
        .await?
        .iter()
        .map(|view| CampaignBody::new(view, now))
        .collect();
    Ok(Json(CampaignListBody { campaigns }))
}

#[utoipa::path(get, path = "/v1/campaigns/live", tag = "campaigns",
    responses((status = 200, description = "Campaigns claimable now, with what is left and the current price",
        body = CampaignListBody)),
    security(("bearer" = [])))]
pub async fn live(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<CampaignListBody> {
    let now = state.engine.now();
    let campaigns = state
        .engine
        .live_campaigns(principal.tenant_id())
        .iter()
        .map(|view| CampaignBody::new(view, now))
        .collect();
    Json(CampaignListBody { campaigns })
}

#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, body = CampaignBody),
        (status = 404, body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<CampaignBody>, Problem> {
    let view = state
        .engine
        .campaign_now(principal.tenant_id(), campaign_id(&id)?)
        .await?;
    Ok(Json(CampaignBody::new(&view, state.engine.now())))
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/codes", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    request_body(description = "JSON `{codes, generate}`, or CSV (RFC 4180; CRLF, LF or CR; a UTF-8 BOM allowed): one code per row, the column named `code` in an optional header row or else the first; every row stored exactly as written or the upload refused with the row's line", content(
        (AddCodesBody = "application/json"),
        (serde_json::Value = "text/csv"),
    )),
    responses(
        (status = 200, description = "Codes added; duplicates reported, never merged", body = CodesAddedBody),
        (status = 409, description = "Not a draft, past the supply, or another upload to the campaign under way; nothing added", body = ProblemBody),
        (status = 422, description = "Invalid codes; nothing added", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn add_codes(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<CodesAddedBody>, Problem> {
    principal.require_admin()?;
    let id = campaign_id(&id)?;
    let is_csv = content_type(&request).is_some_and(|media| media.eq_ignore_ascii_case("text/csv"));
    let is_json =
        content_type(&request).is_some_and(|media| media.eq_ignore_ascii_case("application/json"));
    if !is_csv && !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send application/json or text/csv",
        ));
    }
    let bytes = read_body(request, &state).await?;
    if is_csv {
        return Ok(Json(
            add_csv_codes(&state, principal.tenant_id(), id, &bytes).await?,
        ));
    }
    let body = parse_json::<AddCodesBody>(&bytes)?;
    let codes = parse_codes(body.codes.iter().map(String::as_str), |index| {
        format!("codes[{index}]")
    })?;
    added_codes(&state, principal.tenant_id(), id, codes, body.generate)
        .await
        .map(Json)
}

/// Adds the codes of a CSV upload (the API's and the admin console's);
/// an invalid row refuses them all, naming its line.
pub(crate) async fn add_csv_codes(
    state: &AppState,
    tenant_id: TenantId,
    id: CampaignId,
    bytes: &[u8],
) -> Result<CodesAddedBody, Problem> {
    let rows = codes_csv::parse(bytes)?;
    let codes = parse_codes(rows.iter().map(|row| row.code.as_str()), |index| {
        format!("line {}", rows[index].line)
    })?;
    added_codes(state, tenant_id, id, codes, 0).await
}

async fn added_codes(
    state: &AppState,
    tenant_id: TenantId,
    id: CampaignId,
    codes: Vec<VoucherCode>,
    generate: u32,
) -> Result<CodesAddedBody, Problem> {
    let added = state
        .engine
        .add_codes(tenant_id, id, codes, generate)
        .await?;
    let supply = state
        .engine
        .campaign(tenant_id, id)
        .await?
        .record
        .spec
        .supply
        .limit();
    Ok(CodesAddedBody::new(added, supply))
}

/// Parses every code; an invalid one is reported by `name` (`codes[3]`,
/// `line 4`), and any invalid one refuses them all.
fn parse_codes<'t>(
    texts: impl ExactSizeIterator<Item = &'t str>,
    name: impl Fn(usize) -> String,
) -> Result<Vec<VoucherCode>, Problem> {
    let mut collector = Collector::default();
    let mut codes = Vec::with_capacity(texts.len());
    let mut rejected = 0_usize;
    for (index, text) in texts.enumerate() {
        match VoucherCode::parse(text) {
            Ok(code) => codes.push(code),
            Err(invalid) if rejected < CODE_ERRORS_MAX => {
                rejected += 1;
                for error in invalid.errors {
                    collector.reject(name(index), error.message);
                }
            }
            Err(_) => rejected += 1,
        }
    }
    if rejected > CODE_ERRORS_MAX {
        collector.reject(
            "codes",
            format!(
                "{} more invalid codes are not listed",
                rejected - CODE_ERRORS_MAX
            ),
        );
    }
    collector.finish(|| codes).map_err(Problem::validation)
}

macro_rules! lifecycle_route {
    ($name:ident, $path:literal, $method:ident, $what:literal) => {
        #[utoipa::path(post, path = $path, tag = "campaigns", description = $what,
            params(("id" = String, Path, description = "Campaign id")),
            responses(
                (status = 200, body = CampaignBody),
                (status = 404, body = ProblemBody),
                (status = 409, description = "Wrong state, or codes missing", body = ProblemBody),
            ),
            security(("bearer" = [])))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(principal): Extension<Principal>,
            Path(id): Path<String>,
        ) -> Result<Json<CampaignBody>, Problem> {
            principal.require_admin()?;
            let view = state.engine.$method(principal.tenant_id(), campaign_id(&id)?).await?;
            Ok(Json(CampaignBody::new(&view, state.engine.now())))
        }
    };
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/publish", tag = "campaigns",
    description = "Makes a draft live, generating the codes still missing when the campaign has a pattern. \
        When more than 100,000 codes are missing the answer is 202 at once, the campaign still a draft \
        with `codes.publishing`; it goes live when the last code exists (`codes.count` reaches `supply`). \
        Publishing again meanwhile answers 202 with what is made so far.",
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Live", body = CampaignBody),
        (status = 202, description = "Codes are being made; live when done", body = CampaignBody),
        (status = 404, body = ProblemBody),
        (status = 409, description = "Wrong state, or codes missing", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn publish(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CampaignBody>), Problem> {
    principal.require_admin()?;
    let view = state
        .engine
        .publish(principal.tenant_id(), campaign_id(&id)?)
        .await?;
    let status = if view.publishing {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(CampaignBody::new(&view, state.engine.now()))))
}
lifecycle_route!(
    pause,
    "/v1/campaigns/{id}/pause",
    pause,
    "Stops claims until resumed."
);
lifecycle_route!(
    resume,
    "/v1/campaigns/{id}/resume",
    resume,
    "Lets a paused campaign be claimed again."
);

#[utoipa::path(get, path = "/v1/campaigns/{id}/report", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = ReportBody), (status = 404, body = ProblemBody)),
    security(("bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ReportBody>, Problem> {
    principal.require_admin()?;
    let report = state
        .engine
        .report(principal.tenant_id(), campaign_id(&id)?)
        .await?;
    Ok(Json(ReportBody::from(&report)))
}

#[utoipa::path(get, path = "/v1/campaigns/{id}/vouchers", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"), VoucherPageQuery),
    responses(
        (status = 200, description = "A page of vouchers in rank order (JSON, or CSV with format=csv)",
            content((VoucherPageBody = "application/json"), (String = "text/csv"))),
        (status = 404, body = ProblemBody),
        (status = 422, description = "limit out of 1 to 10,000, or a format other than json or csv", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn vouchers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    principal.require_admin()?;
    let query: VoucherPageQuery = parse_query(&uri)?;
    let after_rank = query.after_rank.unwrap_or(0);
    if after_rank > i32::MAX as u32 {
        return Err(Invalid::one("after_rank", "must be at most 2147483647").into());
    }
    let limit = query.limit.unwrap_or(1_000);
    if !(1..=VOUCHER_PAGE_MAX).contains(&limit) {
        return Err(
            Invalid::one("limit", format!("must be between 1 and {VOUCHER_PAGE_MAX}")).into(),
        );
    }
    let vouchers = state
        .engine
        .vouchers_page(principal.tenant_id(), campaign_id(&id)?, after_rank, limit)
        .await?;
    let next_after_rank = (vouchers.len() == limit as usize)
        .then(|| vouchers.last().map(|voucher| voucher.rank))
        .flatten();
    let exported: Vec<ExportedVoucherBody> =
        vouchers.iter().map(ExportedVoucherBody::from).collect();
    match query.format.as_deref() {
        None | Some("json") => Ok(Json(VoucherPageBody {
            vouchers: exported,
            next_after_rank,
        })
        .into_response()),
        Some("csv") => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&exported),
        )
            .into_response()),
        Some(_) => Err(Invalid::one("format", "must be json or csv").into()),
    }
}

pub(crate) fn to_csv(vouchers: &[ExportedVoucherBody]) -> String {
    let mut csv =
        String::from("rank,code,state,user_id,claimed_at,issued_at,expires_at,redemptions\n");
    for voucher in vouchers {
        let cell = |value: &Option<String>| value.as_deref().map(csv_cell).unwrap_or_default();
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            voucher.rank,
            csv_cell(&voucher.code),
            voucher.state,
            cell(&voucher.user_id),
            cell(&voucher.claimed_at),
            cell(&voucher.issued_at),
            cell(&voucher.expires_at),
            voucher.redemptions
        ));
    }
    csv
}

/// Quotes a cell that holds a separator, a quote or a line break.
fn csv_cell(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}
