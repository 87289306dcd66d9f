//! The storefront: live campaigns, a campaign with its price and what is
//! left, its terms, the claim or buy button, checkout, the order as it is
//! paid, and the customer's vouchers.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use voucherd_core::campaign::{CampaignKind, CampaignSpec, CampaignStatus};
use voucherd_core::ids::{OrderId, ReservationId};
use voucherd_core::payment::{Card, CardDraft, Email};
use voucherd_core::validation::Collector;
use voucherd_core::voucher::VoucherState;
use voucherd_engine::campaigns::CampaignView;
use voucherd_engine::model::{OrderStatus, VoucherRecord};
use voucherd_engine::{ClaimAnswer, ConflictKind, EngineError, Refusal};

use super::accounts::posted;
use super::html::{count, escape, money, time};
use super::text::fill;
use super::{Cache, Form, Page, csrf_field, html_response, layout, problem_page, see_other};
use crate::AppState;
use crate::problem::Problem;
use crate::routes::campaigns::campaign_id;
use crate::routes::claims::refusal_problem;

/// How long a CDN may keep a campaign page; what is left moves, so briefly.
const CAMPAIGN_MAX_AGE: u32 = 2;
const TERMS_MAX_AGE: u32 = 60;
const STOREFRONT_MAX_AGE: u32 = 5;

macro_rules! page_or_return {
    ($state:expr, $tenant:expr, $headers:expr, $query:expr) => {
        match Page::from_request(&$state, &$tenant, &$headers, $query) {
            Ok(page) => page,
            Err(response) => return response,
        }
    };
}

/// `/`: the one tenant's shop when there is one (the demo), else a note.
pub async fn root(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let tenants = state.engine.tenants();
    if let [only] = tenants.as_slice() {
        return see_other(&format!("/shop/{}", only.tenant.id));
    }
    let mut response = html_response(
        &headers,
        StatusCode::OK,
        super::Cache::Public(60),
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>voucherd</title><link rel=\"stylesheet\" href=\"/assets/site.css\"></head><body><main id=\"main\"><h1>voucherd</h1><p>Each shop lives at /shop/&lt;tenant id&gt;. The API is described at <a href=\"/openapi.json\">/openapi.json</a>.</p></main></body></html>".to_owned(),
    );
    response.headers_mut().remove(axum::http::header::ETAG);
    response
}

/// The next claim's rank, or `None` when nothing is left.
fn next_rank(view: &CampaignView) -> Option<u32> {
    match view.remaining {
        Some(0) => None,
        Some(remaining) => Some(view.voucher_count.saturating_sub(remaining as u32) + 1),
        None => Some(view.voucher_count + 1),
    }
}

/// "90 % off — ฿150.00 — 612 left at this price", as HTML.
fn offer_html(page: &Page, view: &CampaignView) -> String {
    let texts = page.texts();
    let spec = &view.record.spec;
    let Some(rank) = next_rank(view) else {
        return String::new();
    };
    let offer = spec.offer(rank);
    let mut parts = Vec::new();
    if offer.discount_percent > 0 {
        parts.push(format!(
            r#"<strong class="discount">{}</strong>"#,
            fill(
                texts.off,
                &[("percent", &offer.discount_percent.to_string())]
            )
        ));
    }
    match offer.price {
        Some(price) if price.amount == 0 => parts.push(texts.free.to_owned()),
        Some(price) => {
            let full = spec
                .price
                .filter(|full| full.amount != price.amount)
                .map(|full| format!(" <s>{}</s>", money(full)))
                .unwrap_or_default();
            parts.push(format!(
                r#"<span class="price">{}</span>{full}"#,
                money(price)
            ));
        }
        None => {}
    }
    let tier_end = spec
        .tiers
        .as_slice()
        .iter()
        .find(|tier| tier.until_rank >= rank)
        .map(|tier| tier.until_rank);
    match (view.remaining, tier_end) {
        (Some(remaining), Some(end)) => {
            let at_price = u64::from(end - rank + 1).min(remaining);
            parts.push(fill(texts.left_at_price, &[("left", &count(at_price))]));
        }
        (Some(remaining), None) => parts.push(fill(texts.left, &[("left", &count(remaining))])),
        (None, _) => parts.push(texts.unlimited.to_owned()),
    }
    format!(r#"<p class="offer">{}</p>"#, parts.join(" — "))
}

pub async fn storefront(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = page_or_return!(state, tenant, headers, query.as_deref());
    let texts = page.texts();
    let mut campaigns = state.engine.shown_campaigns(page.tenant_id());
    campaigns.sort_by_key(|view| view.record.created_at);
    let mut main = format!("<h1>{}</h1>", texts.live_campaigns);
    if campaigns.is_empty() {
        main.push_str(&format!("<p>{}</p>", texts.no_live_campaigns));
    } else {
        main.push_str(r#"<ul class="cards">"#);
        for view in &campaigns {
            let spec = &view.record.spec;
            let status = if view.sold_out() {
                format!(r#"<p class="soldout">{}</p>"#, texts.sold_out)
            } else {
                offer_html(&page, view)
            };
            main.push_str(&format!(
                r#"<li><h2><a href="{link}">{name}</a></h2><p>{message}</p>{status}</li>"#,
                link = page.link(&format!("/campaigns/{}", view.record.id)),
                name = escape(&spec.name),
                message = escape(&spec.message),
            ));
        }
        main.push_str("</ul>");
    }
    html_response(
        &headers,
        StatusCode::OK,
        Cache::Public(STOREFRONT_MAX_AGE),
        layout(&page, texts.shop, &main, false),
    )
}

/// The campaign page: the same for everyone, from memory, cacheable.
pub async fn campaign(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = page_or_return!(state, tenant, headers, query.as_deref());
    let view = match visible_campaign(&state, &page, &campaign).await {
        Ok(view) => view,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let texts = page.texts();
    let spec = &view.record.spec;
    let now = state.engine.now();
    let status = view.status(now);
    let mut main = format!(
        r#"<h1>{name}</h1><p class="message">{message}</p><p>{description}</p>"#,
        name = escape(&spec.name),
        message = escape(&spec.message),
        description = escape(&spec.description),
    );
    let not_started = spec.starts_at.filter(|starts_at| *starts_at > now);
    if let Some(starts_at) = not_started {
        main.push_str(&format!(
            r#"<p class="countdown">{starts_in} <time datetime="{iso}" data-countdown>{local}</time></p>"#,
            starts_in = texts.starts_in,
            iso = starts_at,
            local = time(starts_at, &page.tenant.zone),
        ));
    }
    if let Some(ends_at) = spec.ends_at {
        main.push_str(&format!(
            "<p>{} {}</p>",
            texts.ends_at,
            time(ends_at, &page.tenant.zone)
        ));
    }
    let action = match status {
        _ if view.sold_out() => format!(
            r#"<p class="soldout" role="status">{}</p><p>{}</p>"#,
            texts.sold_out, texts.sold_out_detail
        ),
        CampaignStatus::Ended => format!(r#"<p class="soldout">{}</p>"#, texts.ended),
        CampaignStatus::Paused => format!(r#"<p class="soldout">{}</p>"#, texts.paused),
        CampaignStatus::Draft => String::new(),
        CampaignStatus::Live => {
            let button = match spec.kind {
                CampaignKind::Coupon => texts.claim,
                CampaignKind::Sale => texts.buy,
            };
            let disabled = if not_started.is_some() {
                " disabled"
            } else {
                ""
            };
            // The token is the session's, filled in by the page's script
            // from its cookie: the page itself is the same for everyone.
            format!(
                r#"{offer}<form method="post" action="{action}"><input type="hidden" name="csrf" value="" data-csrf><input type="hidden" name="lang" value="{lang}"><button type="submit" class="buy"{disabled}>{button}</button></form>"#,
                offer = offer_html(&page, &view),
                action = page.link(&format!("/campaigns/{}/claim", view.record.id)),
                lang = page.lang.code(),
            )
        }
    };
    main.push_str(&action);
    if !spec.terms.is_empty() {
        main.push_str(&format!(
            r#"<p><a href="{}">{}</a></p>"#,
            page.link(&format!("/campaigns/{}/terms", view.record.id)),
            texts.terms
        ));
    }
    let title = if view.sold_out() {
        format!("{} · {}", spec.name, texts.sold_out)
    } else {
        spec.name.clone()
    };
    html_response(
        &headers,
        StatusCode::OK,
        Cache::Public(CAMPAIGN_MAX_AGE),
        layout(&page, &title, &main, false),
    )
}

/// A campaign customers may see: published, of this tenant.
async fn visible_campaign(
    state: &AppState,
    page: &Page,
    campaign: &str,
) -> Result<CampaignView, Problem> {
    let id = campaign_id(campaign)?;
    let view = state.engine.campaign(page.tenant_id(), id).await?;
    if view.status(state.engine.now()) == CampaignStatus::Draft {
        return Err(Problem::not_found("campaign"));
    }
    Ok(view)
}

pub async fn terms(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = page_or_return!(state, tenant, headers, query.as_deref());
    let view = match visible_campaign(&state, &page, &campaign).await {
        Ok(view) => view,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let texts = page.texts();
    let spec = &view.record.spec;
    let title = fill(texts.terms_of, &[("name", &spec.name)]);
    let paragraphs: String = spec
        .terms
        .split("\n\n")
        .map(|paragraph| format!("<p>{}</p>", escape(paragraph).replace('\n', "<br>")))
        .collect();
    let main = format!(
        r#"<h1>{}</h1>{paragraphs}<p><a href="{}">{}</a></p>"#,
        escape(&title),
        page.link(&format!("/campaigns/{}", view.record.id)),
        texts.back_to_campaign
    );
    html_response(
        &headers,
        StatusCode::OK,
        Cache::Public(TERMS_MAX_AGE),
        layout(&page, &title, &main, false),
    )
}

/// The buy button: a claim through the same engine and bounds as the API.
/// A visitor who is not signed in is sent to sign in and back; a post
/// whose token the page's script could not fill is asked to confirm.
pub async fn claim(
    State(state): State<AppState>,
    Path((tenant, campaign)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut page = page_or_return!(state, tenant, headers, None);
    let form = match Form::parse(&headers, &body) {
        Ok(form) => form,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    if let Some(lang) = form.get("lang").and_then(super::text::Lang::parse) {
        page.lang = lang;
    }
    let campaign_path = format!("/shop/{}/campaigns/{campaign}", page.tenant_id());
    let Some(user) = page.customer().cloned() else {
        return see_other(&page.link(&format!(
            "/signin?next={}",
            campaign_path.replace('/', "%2F")
        )));
    };
    if form.get("csrf").is_none_or(str::is_empty) {
        let texts = page.texts();
        let main = format!(
            r#"<h1>{}</h1><form method="post" action="{}">{}<input type="hidden" name="lang" value="{}"><button type="submit" class="buy">{}</button></form>"#,
            texts.confirm_claim,
            page.link(&format!("/campaigns/{campaign}/claim")),
            csrf_field(&page),
            page.lang.code(),
            texts.claim
        );
        return html_response(
            &headers,
            StatusCode::OK,
            Cache::Private,
            layout(&page, texts.claim, &main, true),
        );
    }
    if !page.csrf_matches(form.get("csrf")) {
        return super::csrf_refused(&page, &headers);
    }
    let id = match campaign_id(&campaign) {
        Ok(id) => id,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    match state.engine.claim(page.tenant_id(), id, user).await {
        Ok(ClaimAnswer::Claimed(voucher) | ClaimAnswer::AlreadyHeld(voucher)) => {
            match (voucher.state, voucher.reservation_id) {
                (VoucherState::Reserved, Some(reservation)) => {
                    see_other(&page.link(&format!("/reservations/{reservation}/checkout")))
                }
                _ => see_other(&page.link("/me")),
            }
        }
        Ok(ClaimAnswer::Refused(Refusal::SoldOut)) => sold_out_page(&page, &headers),
        Ok(ClaimAnswer::Refused(refusal)) => {
            problem_page(&page, &headers, &refusal_problem(refusal))
        }
        Err(error) => problem_page(&page, &headers, &Problem::from(error)),
    }
}

fn sold_out_page(page: &Page, headers: &HeaderMap) -> Response {
    let texts = page.texts();
    let main = format!(
        r#"<h1 class="soldout">{}</h1><p>{}</p><p><a href="{}">{}</a></p>"#,
        texts.sold_out,
        texts.sold_out_detail,
        page.link(""),
        texts.back_to_shop
    );
    html_response(
        headers,
        StatusCode::GONE,
        Cache::Public(CAMPAIGN_MAX_AGE),
        layout(page, texts.sold_out, &main, false),
    )
}

/// The signed-in customer's reserved voucher of this reservation.
async fn reserved_voucher(
    state: &AppState,
    page: &Page,
    reservation: &str,
) -> Result<(VoucherRecord, CampaignSpec), Problem> {
    let user = page
        .customer()
        .ok_or_else(|| Problem::unauthorized("sign in first"))?;
    let reservation_id: ReservationId = reservation
        .parse()
        .map_err(|_| Problem::not_found("reservation"))?;
    let voucher = state
        .engine
        .vouchers_of_user(page.tenant_id(), user)
        .await?
        .into_iter()
        .find(|voucher| voucher.reservation_id == Some(reservation_id))
        .ok_or_else(|| Problem::not_found("reservation"))?;
    let view = state
        .engine
        .campaign(page.tenant_id(), voucher.campaign_id)
        .await?;
    Ok((voucher, view.record.spec))
}

/// What a checkout form shows again after it was refused.
#[derive(Debug, Default)]
struct CheckoutTyped {
    email: String,
    number: String,
    expiry: String,
    name: String,
    errors: Vec<(String, String)>,
}

fn checkout_page(
    page: &Page,
    headers: &HeaderMap,
    status: StatusCode,
    reservation: &str,
    voucher: &VoucherRecord,
    spec: &CampaignSpec,
    typed: &CheckoutTyped,
) -> Response {
    let texts = page.texts();
    let price = spec.offer(voucher.rank).price;
    let amount = price.map(money).unwrap_or_else(|| texts.free.to_owned());
    let error_of = |field: &str| {
        typed
            .errors
            .iter()
            .filter(|(name, _)| name == field)
            .map(|(_, message)| message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let field = |id: &str, label: &str, kind: &str, value: &str, extra: &str| {
        let error = error_of(id);
        let (invalid, described) = if error.is_empty() {
            (String::new(), String::new())
        } else {
            (
                r#" aria-invalid="true""#.to_owned(),
                format!(r#" aria-describedby="{id}-error""#),
            )
        };
        let message = if error.is_empty() {
            String::new()
        } else {
            format!(
                r#"<small class="error" id="{id}-error">{}</small>"#,
                escape(&error)
            )
        };
        format!(
            r#"<label for="{id}">{label}</label><input id="{id}" name="{id}" type="{kind}" value="{value}" required{extra}{invalid}{described}>{message}"#,
            value = escape(value),
        )
    };
    let alert = if typed.errors.is_empty() {
        String::new()
    } else {
        format!(r#"<p class="error" role="alert">{}</p>"#, texts.fix_errors)
    };
    let until = voucher
        .reserved_until
        .map(|until| {
            format!(
                "<p>{}</p>",
                fill(
                    texts.reserved_until,
                    &[("time", &time(until, &page.tenant.zone))]
                )
            )
        })
        .unwrap_or_default();
    let main = format!(
        r#"<h1>{checkout}</h1><p>{intro}</p><p><strong>{name}</strong> — {amount}</p>{until}{alert}<form method="post" action="{action}" class="stack" novalidate data-card-form>{csrf}<input type="hidden" name="lang" value="{lang}">{email}{number}{expiry}{cvc}{holder}<button type="submit">{pay}</button></form>"#,
        checkout = texts.checkout,
        intro = texts.checkout_intro,
        name = escape(&spec.name),
        action = page.link(&format!("/reservations/{reservation}/checkout")),
        csrf = csrf_field(page),
        lang = page.lang.code(),
        email = field(
            "email",
            texts.email,
            "email",
            &typed.email,
            r#" autocomplete="email" maxlength="254""#
        ),
        number = field(
            "number",
            texts.card_number,
            "text",
            &typed.number,
            r#" inputmode="numeric" autocomplete="cc-number" maxlength="23" pattern="[0-9 \-]{12,23}""#
        ),
        expiry = field(
            "expiry",
            texts.card_expiry,
            "text",
            &typed.expiry,
            &format!(
                r#" autocomplete="cc-exp" placeholder="{}" maxlength="7" pattern="(0[1-9]|1[0-2])\s*/\s*([0-9]{{2}}|[0-9]{{4}})""#,
                texts.card_expiry_hint
            )
        ),
        cvc = field(
            "cvc",
            texts.card_cvc,
            "text",
            "",
            r#" inputmode="numeric" autocomplete="cc-csc" maxlength="4" pattern="[0-9]{3,4}""#
        ),
        holder = field(
            "name",
            texts.card_name,
            "text",
            &typed.name,
            r#" autocomplete="cc-name" maxlength="100""#
        ),
        pay = fill(texts.pay, &[("amount", &amount)]),
    );
    html_response(
        headers,
        status,
        Cache::Private,
        layout(page, texts.checkout, &main, true),
    )
}

pub async fn checkout_form(
    State(state): State<AppState>,
    Path((tenant, reservation)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = page_or_return!(state, tenant, headers, query.as_deref());
    if page.customer().is_none() {
        return see_other(&page.link("/signin"));
    }
    match reserved_voucher(&state, &page, &reservation).await {
        Ok((voucher, spec)) if voucher.state == VoucherState::Reserved => checkout_page(
            &page,
            &headers,
            StatusCode::OK,
            &reservation,
            &voucher,
            &spec,
            &CheckoutTyped::default(),
        ),
        Ok(_) => see_other(&page.link("/me")),
        Err(problem) => problem_page(&page, &headers, &problem),
    }
}

/// "MM/YY" or "MM/YYYY" as (month, four-digit year); out-of-range values
/// are left for the card's own checks to name.
fn expiry(text: &str) -> Option<(i64, i64)> {
    let (month, year) = text.split_once('/')?;
    let month: i64 = month.trim().parse().ok()?;
    let year = year.trim();
    let year: i64 = match year.len() {
        2 => 2000 + year.parse::<i64>().ok()?,
        4 => year.parse().ok()?,
        _ => return None,
    };
    Some((month, year))
}

pub async fn checkout(
    State(state): State<AppState>,
    Path((tenant, reservation)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (page, form) = match posted(&state, &tenant, &headers, &body) {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let Some(user) = page.customer().cloned() else {
        return see_other(&page.link("/signin"));
    };
    let (voucher, spec) = match reserved_voucher(&state, &page, &reservation).await {
        Ok(found) => found,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let mut typed = CheckoutTyped {
        email: form.text("email").unwrap_or_default(),
        number: form.text("number").unwrap_or_default(),
        expiry: form.text("expiry").unwrap_or_default(),
        name: form.text("name").unwrap_or_default(),
        errors: Vec::new(),
    };
    let now = state.engine.now();
    let email = Email::parse(&typed.email);
    let (exp_month, exp_year) = expiry(&typed.expiry).unwrap_or((0, 0));
    let card = Card::parse(
        &CardDraft {
            number: typed.number.clone(),
            exp_month,
            exp_year,
            cvc: form.text("cvc").unwrap_or_default(),
            name: typed.name.clone(),
        },
        now,
    );
    let mut collector = Collector::default();
    collector.note(&email);
    collector.note(&card);
    if let Err(invalid) = collector.finish(|| ()) {
        typed.errors = invalid
            .errors
            .into_iter()
            .map(|error| {
                let field = match error.field.as_str() {
                    "card.number" => "number",
                    "card.exp_month" | "card.exp_year" => "expiry",
                    "card.cvc" => "cvc",
                    "card.name" => "name",
                    _ => "email",
                };
                (field.to_owned(), error.message)
            })
            .collect();
        return checkout_page(
            &page,
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            &reservation,
            &voucher,
            &spec,
            &typed,
        );
    }
    let (Ok(email), Ok(card)) = (email, card) else {
        unreachable!("the collector refused every invalid field");
    };
    let Some(reservation_id) = voucher.reservation_id else {
        return problem_page(&page, &headers, &Problem::not_found("reservation"));
    };
    match state
        .engine
        .checkout(page.tenant_id(), reservation_id, Some(user), email, &card)
        .await
    {
        Ok(order) => see_other(&page.link(&format!("/orders/{}", order.id))),
        Err(EngineError::Conflict {
            kind: ConflictKind::PaymentInProgress | ConflictKind::AlreadyPaid,
            ..
        }) => see_other(&page.link("/me")),
        Err(error) => problem_page(&page, &headers, &Problem::from(error)),
    }
}

pub async fn order(
    State(state): State<AppState>,
    Path((tenant, order)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = page_or_return!(state, tenant, headers, query.as_deref());
    let Some(user) = page.customer().cloned() else {
        return see_other(&page.link("/signin"));
    };
    let texts = page.texts();
    let Ok(order_id) = order.parse::<OrderId>() else {
        return problem_page(&page, &headers, &Problem::not_found("order"));
    };
    let details = match state
        .engine
        .order(page.tenant_id(), order_id, Some(&user))
        .await
    {
        Ok(details) => details,
        Err(error) => return problem_page(&page, &headers, &Problem::from(error)),
    };
    let order = &details.order;
    let name = match state
        .engine
        .campaign(page.tenant_id(), order.campaign_id)
        .await
    {
        Ok(view) => view.record.spec.name,
        Err(_) => String::new(),
    };
    let (status_text, code, refresh) = match order.status {
        OrderStatus::Pending => (texts.order_pending.to_owned(), String::new(), true),
        OrderStatus::Paid => (
            texts.order_paid.to_owned(),
            format!(
                r#"<p>{}: <code class="code" data-code>{}</code></p>"#,
                texts.your_code,
                escape(details.voucher.code.as_str())
            ),
            false,
        ),
        OrderStatus::Failed => (
            fill(
                texts.order_failed,
                &[("reason", order.failure.as_deref().unwrap_or("-"))],
            ),
            String::new(),
            false,
        ),
    };
    let main = format!(
        r#"<h1>{title}</h1><p><strong>{name}</strong> — {amount} ({brand} ···· {last_four})</p><p role="status" data-order-status="{status}"{refresh}>{status_text}</p>{code}<p><a href="{me}">{me_text}</a></p>"#,
        title = texts.order,
        name = escape(&name),
        amount = money(order.amount),
        brand = escape(&order.card_brand),
        last_four = escape(&order.card_last_four),
        status = order.status.as_str(),
        refresh = if refresh { " data-refresh=\"1\"" } else { "" },
        status_text = escape(&status_text),
        me = page.link("/me"),
        me_text = texts.my_vouchers,
    );
    html_response(
        &headers,
        StatusCode::OK,
        Cache::Private,
        layout(&page, texts.order, &main, true),
    )
}

pub async fn my_vouchers(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = page_or_return!(state, tenant, headers, query.as_deref());
    let Some(user) = page.customer().cloned() else {
        let next = format!("/shop/{}/me", page.tenant_id()).replace('/', "%2F");
        return see_other(&page.link(&format!("/signin?next={next}")));
    };
    let texts = page.texts();
    let vouchers = match state.engine.vouchers_of_user(page.tenant_id(), &user).await {
        Ok(vouchers) => vouchers,
        Err(error) => return problem_page(&page, &headers, &Problem::from(error)),
    };
    let mut main = format!("<h1>{}</h1>", texts.my_vouchers);
    let granted = query
        .as_deref()
        .and_then(|query| super::query_value(query, "granted"))
        .and_then(|granted| granted.parse::<u32>().ok());
    if granted.is_some_and(|granted| granted > 0) {
        let names: Vec<String> = vouchers
            .iter()
            .filter(|voucher| voucher.state == VoucherState::Issued)
            .filter_map(|voucher| {
                state
                    .engine
                    .live_campaigns(page.tenant_id())
                    .into_iter()
                    .find(|view| view.record.id == voucher.campaign_id)
                    .map(|view| view.record.spec.name)
            })
            .collect();
        if !names.is_empty() {
            main.push_str(&format!(
                r#"<p class="notice" role="status">{}</p>"#,
                escape(&fill(
                    texts.welcome_granted,
                    &[("names", &names.join(", "))]
                ))
            ));
        }
    }
    if vouchers.is_empty() {
        main.push_str(&format!("<p>{}</p>", texts.no_vouchers));
    } else {
        main.push_str(&format!(
            r#"<table><caption class="sr-only">{caption}</caption><thead><tr><th scope="col">{campaign}</th><th scope="col">{code}</th><th scope="col">{state}</th><th scope="col">{expires}</th></tr></thead><tbody>"#,
            caption = texts.my_vouchers,
            campaign = texts.campaign,
            code = texts.code,
            state = texts.state,
            expires = texts.expires,
        ));
        for voucher in &vouchers {
            let name = match state
                .engine
                .campaign(page.tenant_id(), voucher.campaign_id)
                .await
            {
                Ok(view) => view.record.spec.name,
                Err(_) => String::new(),
            };
            let states = &texts.voucher_states;
            let (state_text, code) = match voucher.state {
                VoucherState::Reserved => (
                    match voucher.reservation_id {
                        Some(reservation) => format!(
                            r#"{} <a href="{}">{}</a>"#,
                            states.reserved,
                            page.link(&format!("/reservations/{reservation}/checkout")),
                            texts.pay_now
                        ),
                        None => states.reserved.to_owned(),
                    },
                    "—".to_owned(),
                ),
                other => (
                    match other {
                        VoucherState::Locked => states.locked,
                        VoucherState::Redeemed => states.redeemed,
                        _ => states.issued,
                    }
                    .to_owned(),
                    format!(
                        r#"<code class="code">{}</code>"#,
                        escape(voucher.code.as_str())
                    ),
                ),
            };
            let expires = voucher
                .expires_at
                .map(|at| time(at, &page.tenant.zone))
                .unwrap_or_else(|| texts.never.to_owned());
            main.push_str(&format!(
                "<tr><td>{}</td><td>{code}</td><td>{state_text}</td><td>{expires}</td></tr>",
                escape(&name)
            ));
        }
        main.push_str("</tbody></table>");
    }
    html_response(
        &headers,
        StatusCode::OK,
        Cache::Private,
        layout(&page, texts.my_vouchers, &main, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_expiry_takes_two_or_four_digit_years() {
        assert_eq!(expiry("04/29"), Some((4, 2029)));
        assert_eq!(expiry(" 12 / 2031 "), Some((12, 2031)));
        assert_eq!(expiry("13/29"), Some((13, 2029)));
        assert_eq!(expiry("0429"), None);
        assert_eq!(expiry("04/2"), None);
    }
}
