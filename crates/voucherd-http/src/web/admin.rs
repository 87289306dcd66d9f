//! The admin console of a tenant: its campaigns, a form with every field
//! of the API's campaign, code uploads with their duplicate report,
//! publish, pause and resume, the vouchers as CSV, and a live dashboard
//! fed by server-sent events.
//!
//! Every action goes through the same engine calls and validation as the
//! API; the console is another client of them, not a second copy.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use voucherd_core::TimeZone;
use voucherd_core::campaign::CampaignStatus;
use voucherd_engine::campaigns::CampaignView;

use super::accounts::posted;
use super::html::{count, escape, money, time};
use super::{Cache, Form, Page, csrf_field, html_response, layout, problem_page, see_other};
use crate::AppState;
use crate::problem::Problem;
use crate::routes::campaigns::{add_csv_codes, campaign_id, to_csv};
use crate::wire::{
    CampaignBody, CodesSpecBody, CreateCampaignBody, ExportedVoucherBody, MoneyBody, ReportBody,
    TierBody,
};

/// Tier rows the form offers.
const TIER_ROWS: usize = 5;
/// Dashboards streaming at once on this node; one more is told 503.
const DASHBOARDS_MAX: usize = 32;
/// A dashboard stream ends after this; the browser reconnects by itself.
const DASHBOARD_STREAM_FOR: Duration = Duration::from_secs(600);
const DASHBOARD_EVERY: Duration = Duration::from_secs(1);
/// Vouchers read per page of a CSV export.
const EXPORT_PAGE: u32 = 5_000;
/// Duplicates listed on the upload's result page (all are counted).
const DUPLICATES_SHOWN: usize = 100;

static DASHBOARDS: Semaphore = Semaphore::const_new(DASHBOARDS_MAX);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/shop/{tenant}/admin", get(campaigns))
        .route("/shop/{tenant}/admin/campaigns/new", get(new_campaign))
        .route("/shop/{tenant}/admin/campaigns", post(create))
        .route("/shop/{tenant}/admin/campaigns/{campaign}", get(detail))
        .route(
            "/shop/{tenant}/admin/campaigns/{campaign}/lifecycle",
            post(lifecycle),
        )
        .route(
            "/shop/{tenant}/admin/campaigns/{campaign}/codes",
            post(upload).layer(DefaultBodyLimit::max(8 * 1024 * 1024)),
        )
        .route(
            "/shop/{tenant}/admin/campaigns/{campaign}/vouchers.csv",
            get(export),
        )
        .route(
            "/shop/{tenant}/admin/campaigns/{campaign}/dashboard",
            get(dashboard),
        )
        .route(
            "/shop/{tenant}/admin/campaigns/{campaign}/events",
            get(events),
        )
}

/// The page of a signed-in admin, or the way to sign in.
fn admin_page(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    path: &str,
) -> Result<Page, Response> {
    let page = Page::from_request(state, tenant, headers, query)?;
    if !page.is_admin() {
        let next = format!("/shop/{}/admin{path}", page.tenant_id()).replace('/', "%2F");
        return Err(see_other(&page.link(&format!("/signin?next={next}"))));
    }
    Ok(page)
}

fn admin_posted(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Page, Form), Response> {
    let (page, form) = posted(state, tenant, headers, body)?;
    if !page.is_admin() {
        return Err(problem_page(
            &page,
            headers,
            &Problem::forbidden("this needs an admin's sign-in"),
        ));
    }
    Ok((page, form))
}

fn private(
    page: &Page,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    main: &str,
) -> Response {
    html_response(
        headers,
        status,
        Cache::Private,
        layout(page, title, main, true),
    )
}

/// The tenant's campaign the path names, as the store has it now.
async fn admin_campaign(
    state: &AppState,
    page: &Page,
    campaign: &str,
) -> Result<CampaignView, Problem> {
    let id = campaign_id(campaign)?;
    Ok(state.engine.campaign_now(page.tenant_id(), id).await?)
}

pub async fn campaigns(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = match admin_page(&state, &tenant, &headers, query.as_deref(), "") {
        Ok(page) => page,
        Err(response) => return response,
    };
    let views = match state.engine.campaigns_of(page.tenant_id()).await {
        Ok(views) => views,
        Err(error) => return problem_page(&page, &headers, &Problem::from(error)),
    };
    let now = state.engine.now();
    let mut main = format!(
        r#"<h1>Campaigns</h1><p><a class="button" href="{}">New campaign</a></p>"#,
        page.link("/admin/campaigns/new")
    );
    main.push_str(r#"<table><thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">State</th><th scope="col">Codes</th><th scope="col">Left</th></tr></thead><tbody>"#);
    for view in &views {
        main.push_str(&format!(
            r#"<tr><td><a href="{link}">{name}</a></td><td>{kind}</td><td>{state}</td><td>{codes}</td><td>{left}</td></tr>"#,
            link = page.link(&format!("/admin/campaigns/{}", view.record.id)),
            name = escape(&view.record.spec.name),
            kind = view.record.spec.kind.as_str(),
            state = view.status(now).as_str(),
            codes = count(u64::from(view.voucher_count)),
            left = view.remaining.map_or("no limit".to_owned(), count),
        ));
    }
    main.push_str("</tbody></table>");
    private(&page, &headers, StatusCode::OK, "Campaigns", &main)
}

/// One labelled input of the campaign form, with its error.
fn input(
    form: &Form,
    errors: &[(String, String)],
    name: &str,
    label: &str,
    kind: &str,
    hint: &str,
) -> String {
    let value = form.get(name).unwrap_or_default();
    let error: Vec<&str> = errors
        .iter()
        .filter(|(field, _)| field == name || field.starts_with(&format!("{name}.")))
        .map(|(_, message)| message.as_str())
        .collect();
    let id = name.replace('.', "-");
    let mut described = Vec::new();
    let hint_html = if hint.is_empty() {
        String::new()
    } else {
        described.push(format!("{id}-hint"));
        format!(r#"<small id="{id}-hint">{}</small>"#, escape(hint))
    };
    let error_html = if error.is_empty() {
        String::new()
    } else {
        described.push(format!("{id}-error"));
        format!(
            r#"<small class="error" id="{id}-error">{}</small>"#,
            escape(&error.join("; "))
        )
    };
    let aria = if described.is_empty() {
        String::new()
    } else {
        format!(r#" aria-describedby="{}""#, described.join(" "))
    };
    let invalid = if error.is_empty() {
        ""
    } else {
        r#" aria-invalid="true""#
    };
    let control = if kind == "textarea" {
        format!(
            r#"<textarea id="{id}" name="{name}" rows="4"{aria}{invalid}>{}</textarea>"#,
            escape(value)
        )
    } else {
        format!(
            r#"<input id="{id}" name="{name}" type="{kind}" value="{}"{aria}{invalid}>"#,
            escape(value)
        )
    };
    format!(
        r#"<div class="field"><label for="{id}">{label}</label>{control}{hint_html}{error_html}</div>"#
    )
}

fn select(form: &Form, name: &str, label: &str, options: &[(&str, &str)]) -> String {
    let chosen = form.get(name).unwrap_or(options[0].0);
    let options: String = options
        .iter()
        .map(|(value, text)| {
            let selected = if *value == chosen { " selected" } else { "" };
            format!(r#"<option value="{value}"{selected}>{text}</option>"#)
        })
        .collect();
    format!(
        r#"<div class="field"><label for="{name}">{label}</label><select id="{name}" name="{name}">{options}</select></div>"#
    )
}

fn campaign_form(page: &Page, form: &Form, errors: &[(String, String)]) -> String {
    let zone = page.tenant.tenant.time_zone.as_str();
    let mut tiers = String::from(
        r#"<fieldset><legend>Price tiers (optional): ranks up to and including "until rank" get the discount</legend>"#,
    );
    let until: Vec<&str> = form.all("tier_until_rank");
    let discount: Vec<&str> = form.all("tier_discount_percent");
    for row in 0..TIER_ROWS {
        let tier_error: Vec<&str> = errors
            .iter()
            .filter(|(field, _)| field.starts_with(&format!("tiers[{row}]")))
            .map(|(_, message)| message.as_str())
            .collect();
        tiers.push_str(&format!(
            r#"<div class="tier"><label for="tier-{row}-until">Tier {n}: until rank</label><input id="tier-{row}-until" name="tier_until_rank" type="number" min="1" value="{until}"><label for="tier-{row}-discount">Tier {n}: discount %</label><input id="tier-{row}-discount" name="tier_discount_percent" type="number" min="0" max="100" value="{discount}">{error}</div>"#,
            n = row + 1,
            until = escape(until.get(row).copied().unwrap_or_default()),
            discount = escape(discount.get(row).copied().unwrap_or_default()),
            error = if tier_error.is_empty() {
                String::new()
            } else {
                format!(r#"<small class="error">{}</small>"#, escape(&tier_error.join("; ")))
            },
        ));
    }
    let tier_errors: Vec<&str> = errors
        .iter()
        .filter(|(field, _)| field == "tiers")
        .map(|(_, message)| message.as_str())
        .collect();
    if !tier_errors.is_empty() {
        tiers.push_str(&format!(
            r#"<small class="error">{}</small>"#,
            escape(&tier_errors.join("; "))
        ));
    }
    tiers.push_str("</fieldset>");
    let local_hint = format!("Local time in {zone}; leave empty for none");
    [
        input(form, errors, "name", "Name", "text", ""),
        input(
            form,
            errors,
            "message",
            "Message",
            "text",
            "One line shown with the campaign",
        ),
        input(form, errors, "description", "Description", "textarea", ""),
        input(
            form,
            errors,
            "terms",
            "Terms and conditions",
            "textarea",
            "",
        ),
        select(
            form,
            "kind",
            "Kind",
            &[("coupon", "Coupon (free)"), ("sale", "Sale (paid)")],
        ),
        input(
            form,
            errors,
            "supply",
            "Supply",
            "number",
            "Leave empty for no limit",
        ),
        input(
            form,
            errors,
            "starts_at",
            "Starts at",
            "datetime-local",
            &local_hint,
        ),
        input(
            form,
            errors,
            "ends_at",
            "Ends at",
            "datetime-local",
            &local_hint,
        ),
        input(
            form,
            errors,
            "voucher_expires_at",
            "Vouchers expire at",
            "datetime-local",
            &local_hint,
        ),
        input(
            form,
            errors,
            "voucher_valid_for",
            "Or vouchers are valid for",
            "text",
            "An ISO 8601 duration such as P30D or PT12H",
        ),
        input(
            form,
            errors,
            "price_amount",
            "Price",
            "text",
            "In the currency's units, e.g. 1500.00; sales only",
        ),
        input(
            form,
            errors,
            "price_currency",
            "Currency",
            "text",
            "ISO 4217, e.g. THB or IDR",
        ),
        tiers,
        input(
            form,
            errors,
            "per_user_limit",
            "Vouchers per user",
            "number",
            "Default 1",
        ),
        input(
            form,
            errors,
            "daily_limit_group",
            "Daily limit group",
            "text",
            "Campaigns of one group give a user one voucher a day",
        ),
        select(
            form,
            "trigger",
            "Trigger",
            &[
                ("claim", "The user claims"),
                ("first_login", "The user's first login"),
            ],
        ),
        input(
            form,
            errors,
            "reservation_ttl_seconds",
            "Reservation holds for (s)",
            "number",
            "Sales: how long a reserved voucher waits for payment",
        ),
        input(
            form,
            errors,
            "lock_ttl_seconds",
            "Redemption lock holds for (s)",
            "number",
            "",
        ),
        input(
            form,
            errors,
            "redemptions_max",
            "Redemptions per voucher",
            "number",
            "Default 1",
        ),
        select(
            form,
            "codes",
            "Codes",
            &[
                ("pattern", "Generated from a pattern"),
                ("on_claim", "Generated from a pattern by each claim"),
                ("upload", "Uploaded as CSV"),
            ],
        ),
        input(
            form,
            errors,
            "code_pattern",
            "Code pattern",
            "text",
            "? a letter, # a digit, e.g. SALE-####-????",
        ),
    ]
    .concat()
}

pub async fn new_campaign(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = match admin_page(
        &state,
        &tenant,
        &headers,
        query.as_deref(),
        "/campaigns/new",
    ) {
        Ok(page) => page,
        Err(response) => return response,
    };
    new_campaign_page(&page, &headers, StatusCode::OK, &Form::default(), &[])
}

fn new_campaign_page(
    page: &Page,
    headers: &HeaderMap,
    status: StatusCode,
    form: &Form,
    errors: &[(String, String)],
) -> Response {
    let alert = if errors.is_empty() {
        String::new()
    } else {
        let listed: String = errors
            .iter()
            .map(|(field, message)| format!("<li>{}: {}</li>", escape(field), escape(message)))
            .collect();
        format!(
            r#"<div class="error" role="alert"><p>Please correct these fields:</p><ul>{listed}</ul></div>"#
        )
    };
    let main = format!(
        r#"<h1>New campaign</h1>{alert}<form method="post" action="{action}" class="stack">{csrf}{fields}<button type="submit">Create the draft</button></form>"#,
        action = page.link("/admin/campaigns"),
        csrf = csrf_field(page),
        fields = campaign_form(page, form, errors),
    );
    private(page, headers, status, "New campaign", &main)
}

/// A local date and time of the form, in the tenant's zone, as RFC 3339.
fn local_time(
    value: Option<String>,
    zone: &TimeZone,
    field: &str,
    errors: &mut Vec<(String, String)>,
) -> Option<String> {
    let value = value?;
    match value
        .parse::<jiff::civil::DateTime>()
        .and_then(|local| local.to_zoned(zone.clone()))
    {
        Ok(zoned) => Some(zoned.timestamp().to_string()),
        Err(_) => {
            errors.push((field.into(), "must be a date and time".into()));
            None
        }
    }
}

/// "1500.00" in a currency's units as minor units.
fn minor_units(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || fraction.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(fraction)
}

/// The API's campaign body from the console's form; what cannot be read
/// as a number or a time is reported the way validation reports fields.
fn campaign_body(form: &Form, zone: &TimeZone) -> (CreateCampaignBody, Vec<(String, String)>) {
    let mut errors = Vec::new();
    let mut number = |name: &str| -> Option<i64> {
        let text = form.text(name)?;
        match text.parse::<i64>() {
            Ok(value) => Some(value),
            Err(_) => {
                errors.push((name.to_owned(), "must be a whole number".to_owned()));
                None
            }
        }
    };
    let supply = number("supply");
    let per_user_limit = number("per_user_limit");
    let reservation_ttl_seconds = number("reservation_ttl_seconds");
    let lock_ttl_seconds = number("lock_ttl_seconds");
    let redemptions_max = number("redemptions_max");
    let mut tiers = Vec::new();
    let until = form.all("tier_until_rank");
    let discount = form.all("tier_discount_percent");
    for (row, (until, discount)) in until.iter().zip(discount.iter()).enumerate() {
        let (until, discount) = (until.trim(), discount.trim());
        if until.is_empty() && discount.is_empty() {
            continue;
        }
        match (until.parse::<i64>(), discount.parse::<i64>()) {
            (Ok(until_rank), Ok(discount_percent)) => tiers.push(TierBody {
                until_rank,
                discount_percent,
            }),
            _ => errors.push((
                format!("tiers[{row}]"),
                "needs a whole until rank and discount".to_owned(),
            )),
        }
    }
    let price = match (form.text("price_amount"), form.text("price_currency")) {
        (None, None) => None,
        (amount, currency) => match amount.as_deref().map(minor_units) {
            Some(Some(amount)) => Some(MoneyBody {
                amount,
                currency: currency.unwrap_or_default(),
            }),
            _ => {
                errors.push((
                    "price_amount".into(),
                    "must be an amount such as 1500 or 1500.50".into(),
                ));
                None
            }
        },
    };
    let starts_at = local_time(form.text("starts_at"), zone, "starts_at", &mut errors);
    let ends_at = local_time(form.text("ends_at"), zone, "ends_at", &mut errors);
    let voucher_expires_at = local_time(
        form.text("voucher_expires_at"),
        zone,
        "voucher_expires_at",
        &mut errors,
    );
    let upload = form.get("codes") == Some("upload");
    let on_claim = form.get("codes") == Some("on_claim");
    let body = CreateCampaignBody {
        name: form.text("name"),
        message: form.text("message"),
        description: form.text("description"),
        terms: form.text("terms"),
        kind: form.text("kind"),
        supply: Some(supply),
        starts_at,
        ends_at,
        voucher_expires_at,
        voucher_valid_for: form.text("voucher_valid_for"),
        price,
        tiers,
        per_user_limit,
        daily_limit_group: form.text("daily_limit_group"),
        trigger: form.text("trigger"),
        reservation_ttl_seconds,
        lock_ttl_seconds,
        redemptions_max,
        codes: Some(CodesSpecBody {
            pattern: if upload {
                None
            } else {
                form.text("code_pattern")
            },
            upload,
            on_claim,
        }),
    };
    (body, errors)
}

pub async fn create(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (page, form) = match admin_posted(&state, &tenant, &headers, &body) {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let (body, mut errors) = campaign_body(&form, &page.tenant.zone);
    let spec = match body.into_draft().validate() {
        Ok(spec) if errors.is_empty() => spec,
        Ok(_) => {
            return new_campaign_page(
                &page,
                &headers,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &errors,
            );
        }
        Err(invalid) => {
            errors.extend(invalid.errors.into_iter().map(|error| {
                let field = match error.field.as_str() {
                    "price.amount" => "price_amount".to_owned(),
                    "price.currency" => "price_currency".to_owned(),
                    "codes.pattern" => "code_pattern".to_owned(),
                    other => other.to_owned(),
                };
                (field, error.message)
            }));
            return new_campaign_page(
                &page,
                &headers,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &errors,
            );
        }
    };
    match state.engine.create_campaign(page.tenant_id(), spec).await {
        Ok(view) => see_other(&page.link(&format!("/admin/campaigns/{}", view.record.id))),
        Err(error) => problem_page(&page, &headers, &Problem::from(error)),
    }
}

fn lifecycle_button(page: &Page, view: &CampaignView, action: &str, label: &str) -> String {
    format!(
        r#"<form class="inline" method="post" action="{}">{}<input type="hidden" name="action" value="{action}"><button type="submit">{label}</button></form>"#,
        page.link(&format!("/admin/campaigns/{}/lifecycle", view.record.id)),
        csrf_field(page),
    )
}

fn detail_page(
    page: &Page,
    headers: &HeaderMap,
    status: StatusCode,
    view: &CampaignView,
    now: voucherd_core::Timestamp,
    notice: &str,
) -> Response {
    let body = CampaignBody::new(view, now);
    let spec = &view.record.spec;
    let state = view.status(now);
    let mut actions = String::new();
    match state {
        CampaignStatus::Draft => {
            actions.push_str(&lifecycle_button(page, view, "publish", "Publish"))
        }
        CampaignStatus::Live => actions.push_str(&lifecycle_button(page, view, "pause", "Pause")),
        CampaignStatus::Paused => {
            actions.push_str(&lifecycle_button(page, view, "resume", "Resume"))
        }
        CampaignStatus::Ended => {}
    }
    let publishing = if view.publishing {
        format!(
            r#"<p role="status">Codes are being made: {} of {}. Reload to follow.</p>"#,
            count(u64::from(view.voucher_count)),
            body.supply
                .map_or("?".to_owned(), |supply| count(u64::from(supply)))
        )
    } else {
        String::new()
    };
    let failure = view
        .publish_failure
        .as_deref()
        .map(|failure| {
            format!(
                r#"<p class="error" role="alert">The last publish stopped: {}</p>"#,
                escape(failure)
            )
        })
        .unwrap_or_default();
    let upload = if body.codes.upload && state == CampaignStatus::Draft {
        format!(
            r#"<h2>Upload codes</h2><form method="post" action="{}" enctype="multipart/form-data" class="stack">{}<label for="file">CSV file: one code a row, an optional header naming the column "code"</label><input id="file" name="file" type="file" accept=".csv,text/csv" required><button type="submit">Upload</button></form>"#,
            page.link(&format!("/admin/campaigns/{}/codes", view.record.id)),
            csrf_field(page),
        )
    } else {
        String::new()
    };
    let tiers: String = spec
        .tiers
        .as_slice()
        .iter()
        .map(|tier| {
            format!(
                "<li>until rank {}: {} % off</li>",
                count(u64::from(tier.until_rank)),
                tier.discount_percent
            )
        })
        .collect();
    let main = format!(
        r#"<h1>{name}</h1>{notice}{publishing}{failure}<dl class="facts"><dt>State</dt><dd data-state>{state}</dd><dt>Kind</dt><dd>{kind}</dd><dt>Supply</dt><dd>{supply}</dd><dt>Codes</dt><dd data-codes>{codes}</dd><dt>Left</dt><dd>{left}</dd><dt>Price</dt><dd>{price}</dd><dt>Trigger</dt><dd>{trigger}</dd><dt>Starts</dt><dd>{starts}</dd><dt>Ends</dt><dd>{ends}</dd></dl>{tiers}<p>{actions} <a href="{dashboard}">Live dashboard</a> <a href="{export}" download>Export vouchers (CSV)</a> <a href="{shop}">Shop page</a></p>{upload}"#,
        name = escape(&spec.name),
        state = state.as_str(),
        kind = spec.kind.as_str(),
        supply = body
            .supply
            .map_or("no limit".to_owned(), |supply| count(u64::from(supply))),
        codes = match spec.codes {
            voucherd_core::campaign::CodeSource::OnClaim(_) => format!(
                "{} made by claims so far",
                count(u64::from(view.voucher_count))
            ),
            _ => count(u64::from(view.voucher_count)),
        },
        left = view.remaining.map_or("no limit".to_owned(), count),
        price = spec.price.map_or("—".to_owned(), money),
        trigger = spec.trigger.as_str(),
        starts = spec
            .starts_at
            .map_or("at publish".to_owned(), |at| time(at, &page.tenant.zone)),
        ends = spec
            .ends_at
            .map_or("never".to_owned(), |at| time(at, &page.tenant.zone)),
        tiers = if tiers.is_empty() {
            String::new()
        } else {
            format!("<h2>Tiers</h2><ul>{tiers}</ul>")
        },
        dashboard = page.link(&format!("/admin/campaigns/{}/dashboard", view.record.id)),
        export = page.link(&format!("/admin/campaigns/{}/vouchers.csv", view.record.id)),
        shop = page.link(&format!("/campaigns/{}", view.record.id)),
    );
    private(page, headers, status, &spec.name, &main)
}

pub async fn detail(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = match admin_page(
        &state,
        &tenant,
        &headers,
        query.as_deref(),
        &format!("/campaigns/{campaign}"),
    ) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let view = admin_campaign(&state, &page, &campaign).await;
    match view {
        Ok(view) => detail_page(
            &page,
            &headers,
            StatusCode::OK,
            &view,
            state.engine.now(),
            "",
        ),
        Err(problem) => problem_page(&page, &headers, &problem),
    }
}

pub async fn lifecycle(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (page, form) = match admin_posted(&state, &tenant, &headers, &body) {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let id = match campaign_id(&campaign) {
        Ok(id) => id,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let tenant_id = page.tenant_id();
    let result = match form.get("action") {
        Some("publish") => state.engine.publish(tenant_id, id).await,
        Some("pause") => state.engine.pause(tenant_id, id).await,
        Some("resume") => state.engine.resume(tenant_id, id).await,
        _ => {
            return problem_page(
                &page,
                &headers,
                &Problem::malformed("action must be publish, pause or resume"),
            );
        }
    };
    match result {
        Ok(_) => see_other(&page.link(&format!("/admin/campaigns/{id}"))),
        Err(error) => problem_page(&page, &headers, &Problem::from(error)),
    }
}

/// A CSV upload from the console: the API's parser and engine call; the
/// answer page lists what was added and every duplicate reported.
pub async fn upload(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let mut page = match Page::from_request(&state, &tenant, &headers, None) {
        Ok(page) => page,
        Err(response) => return response,
    };
    if !page.is_admin() {
        return problem_page(
            &page,
            &headers,
            &Problem::forbidden("this needs an admin's sign-in"),
        );
    }
    let mut csrf = None;
    let mut file = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().map(str::to_owned);
                let bytes = match field.bytes().await {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        return problem_page(
                            &page,
                            &headers,
                            &Problem::new(
                                error.status(),
                                "malformed",
                                "Upload refused",
                                error.body_text(),
                            ),
                        );
                    }
                };
                match name.as_deref() {
                    Some("csrf") => csrf = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    Some("file") => file = Some(bytes),
                    Some("lang") => {
                        if let Some(lang) = std::str::from_utf8(&bytes)
                            .ok()
                            .and_then(super::text::Lang::parse)
                        {
                            page.lang = lang;
                        }
                    }
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(error) => {
                return problem_page(
                    &page,
                    &headers,
                    &Problem::new(
                        error.status(),
                        "malformed",
                        "Upload refused",
                        error.body_text(),
                    ),
                );
            }
        }
    }
    if !page.csrf_matches(csrf.as_deref()) {
        return super::csrf_refused(&page, &headers);
    }
    let Some(file) = file else {
        return problem_page(
            &page,
            &headers,
            &Problem::malformed("choose a CSV file to upload"),
        );
    };
    let id = match campaign_id(&campaign) {
        Ok(id) => id,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let added = match add_csv_codes(&state, page.tenant_id(), id, &file).await {
        Ok(added) => added,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let view = match state.engine.campaign_now(page.tenant_id(), id).await {
        Ok(view) => view,
        Err(error) => return problem_page(&page, &headers, &Problem::from(error)),
    };
    let mut notice = format!(
        r#"<div role="status" class="notice" data-upload><p>Added <strong data-added>{}</strong> codes; <strong data-duplicates>{}</strong> duplicates were left out.</p>"#,
        count(u64::from(added.added)),
        count(u64::from(added.duplicates_count)),
    );
    if added.duplicates_count > 0 {
        notice.push_str("<details open><summary>Duplicates</summary><ul>");
        for duplicate in added.duplicates.iter().take(DUPLICATES_SHOWN) {
            notice.push_str(&format!("<li><code>{}</code></li>", escape(duplicate)));
        }
        notice.push_str("</ul>");
        let unlisted =
            added.duplicates_count as usize - added.duplicates.len().min(DUPLICATES_SHOWN);
        if unlisted > 0 {
            notice.push_str(&format!("<p>and {} more.</p>", count(unlisted as u64)));
        }
        notice.push_str("</details>");
    }
    notice.push_str("</div>");
    detail_page(
        &page,
        &headers,
        StatusCode::OK,
        &view,
        state.engine.now(),
        &notice,
    )
}

/// Every voucher as CSV, streamed page by page (one store read each), so
/// a campaign of millions never sits in memory or holds a connection long.
pub async fn export(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let page = match admin_page(
        &state,
        &tenant,
        &headers,
        None,
        &format!("/campaigns/{campaign}"),
    ) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let id = match admin_campaign(&state, &page, &campaign).await {
        Ok(view) => view.record.id,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let tenant_id = page.tenant_id();
    let engine = Arc::clone(&state.engine);
    let pages = futures::stream::unfold(Some(0_u32), move |after| {
        let engine = Arc::clone(&engine);
        async move {
            let after = after?;
            match engine
                .vouchers_page(tenant_id, id, after, EXPORT_PAGE)
                .await
            {
                Ok(vouchers) => {
                    let next = (vouchers.len() == EXPORT_PAGE as usize)
                        .then(|| vouchers.last().map(|voucher| voucher.rank))
                        .flatten();
                    let exported: Vec<ExportedVoucherBody> =
                        vouchers.iter().map(ExportedVoucherBody::from).collect();
                    let mut text = to_csv(&exported);
                    if after > 0 {
                        // The header is the first page's only.
                        let body_start = text.find('\n').map_or(text.len(), |end| end + 1);
                        text.drain(..body_start);
                    }
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(text)), next))
                }
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
            }
        }
    });
    let mut response = Body::from_stream(pages).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"vouchers-{id}.csv\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}

pub async fn dashboard(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = match admin_page(
        &state,
        &tenant,
        &headers,
        query.as_deref(),
        &format!("/campaigns/{campaign}/dashboard"),
    ) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let view = admin_campaign(&state, &page, &campaign).await;
    let view = match view {
        Ok(view) => view,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let main = format!(
        r#"<h1>Dashboard: {name}</h1><p><a href="{back}">Back to the campaign</a></p><div id="dashboard" data-events="{events}"><p role="status" aria-live="polite" id="live-status">Connecting…</p><div class="tiles"><div class="tile"><span class="label">Claims a second (now)</span><span class="value" id="rate">–</span></div><div class="tile"><span class="label">Issued</span><span class="value" id="issued">–</span></div><div class="tile"><span class="label">Reserved</span><span class="value" id="reserved">–</span></div><div class="tile"><span class="label">Available</span><span class="value" id="available">–</span></div><div class="tile"><span class="label">Payments queued</span><span class="value" id="pending">–</span></div><div class="tile"><span class="label">Paid / failed</span><span class="value" id="paid">–</span></div><div class="tile"><span class="label">Claim queue (node)</span><span class="value" id="queue">–</span></div><div class="tile"><span class="label">Refused / shed (node)</span><span class="value" id="refused">–</span></div></div><h2>Claims a second, last two minutes</h2><svg id="chart" role="img" aria-label="Claims a second over the last two minutes" viewBox="0 0 600 160" preserveAspectRatio="none"><polyline id="line" fill="none" stroke-width="2" points=""/></svg><p id="chart-max"></p><h2>Left by tier</h2><table><thead><tr><th scope="col">Ranks</th><th scope="col">Discount</th><th scope="col">Available</th><th scope="col">Reserved</th><th scope="col">Issued</th></tr></thead><tbody id="tiers"></tbody></table><h2>Charges by gateway and outcome</h2><table><thead><tr><th scope="col">Gateway</th><th scope="col">Outcome</th><th scope="col">Calls</th></tr></thead><tbody id="gateways"></tbody></table></div><script src="/assets/dashboard.js" defer></script>"#,
        name = escape(&view.record.spec.name),
        back = page.link(&format!("/admin/campaigns/{}", view.record.id)),
        events = page.link(&format!("/admin/campaigns/{}/events", view.record.id)),
    );
    private(&page, &headers, StatusCode::OK, "Dashboard", &main)
}

/// The dashboard's feed: the campaign's report and the node's claim
/// figures, once a second, as server-sent events.
pub async fn events(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let page = match admin_page(
        &state,
        &tenant,
        &headers,
        None,
        &format!("/campaigns/{campaign}/dashboard"),
    ) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let id = match campaign_id(&campaign) {
        Ok(id) => id,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let Ok(permit) = DASHBOARDS.try_acquire() else {
        return problem_page(&page, &headers, &Problem::overloaded());
    };
    let tenant_id = page.tenant_id();
    let engine = Arc::clone(&state.engine);
    let started = tokio::time::Instant::now();
    let snapshots = futures::stream::unfold((permit, true), move |(permit, first)| {
        let engine = Arc::clone(&engine);
        async move {
            if !first {
                tokio::time::sleep(DASHBOARD_EVERY).await;
            }
            if started.elapsed() > DASHBOARD_STREAM_FOR {
                return None;
            }
            let event = match engine.report(tenant_id, id).await {
                Ok(report) => {
                    let metrics = engine.metrics();
                    let outcome = |outcome: &'static str| {
                        metrics
                            .claims
                            .get_or_create(&voucherd_engine::metrics::OutcomeLabels { outcome })
                            .get()
                    };
                    let snapshot = serde_json::json!({
                        "report": ReportBody::from(&report),
                        "node": {
                            "claim_queue_depth": metrics.claim_queue_depth.get(),
                            "claims_shed": metrics.claims_shed.get(),
                            "sold_out": outcome("sold_out"),
                            "refused": outcome("not_started") + outcome("ended") + outcome("paused") + outcome("daily_limit_reached"),
                        },
                    });
                    Event::default()
                        .event("snapshot")
                        .data(snapshot.to_string())
                }
                Err(error) => Event::default().event("problem").data(error.to_string()),
            };
            Some((Ok::<Event, Infallible>(event), (permit, false)))
        }
    });
    let mut response = Sse::new(snapshots)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_in_units_of_the_currency() {
        assert_eq!(minor_units("1500"), Some(150_000));
        assert_eq!(minor_units("1500.5"), Some(150_050));
        assert_eq!(minor_units("0.05"), Some(5));
        assert_eq!(minor_units("1,500"), None);
        assert_eq!(minor_units("1.005"), None);
        assert_eq!(minor_units("-1"), None);
        assert_eq!(minor_units(".5"), None);
    }
}
