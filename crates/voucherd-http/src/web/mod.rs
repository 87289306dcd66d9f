//! The pages the `voucherd` binary serves itself: each tenant's storefront
//! under `/shop/{tenant}` (campaigns, terms, checkout, orders, the
//! customer's vouchers, sign-up and sign-in) and its admin console under
//! `/shop/{tenant}/admin`.
//!
//! - Who is signed in is a customer or admin token of the API, kept in an
//!   HttpOnly cookie: the pages and the API share one notion of the user.
//! - Every form post carries a CSRF token bound to the session (or, before
//!   sign-in, to a random cookie): an HMAC under the tenant's key that a
//!   page of another site can neither read nor make.
//! - Campaign, terms and sold-out pages do not depend on who asks: they are
//!   rendered from memory, cacheable by a CDN for a few seconds, with an
//!   ETag. The buy button is the one dynamic step, and it goes through the
//!   same claim engine and bounds as the API.

// A refused page request is answered with the page that says why: the
// `Err` of the helpers that check a request is that `Response`, made once
// per refused request, never on the claim path.
#![allow(clippy::result_large_err)]

mod accounts;
mod admin;
mod assets;
pub mod html;
mod shop;
pub mod text;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use voucherd_core::ids::{TenantId, UserId};
use voucherd_engine::tenants::TenantEntry;

pub use self::accounts::{PasswordGate, hash_password, password_valid};
use self::html::escape;
use self::text::{Lang, Texts};
use crate::AppState;
use crate::auth::{self, Role};
use crate::problem::Problem;

pub(crate) const SESSION_COOKIE: &str = "vd_session";
/// The CSRF token of the session, readable by the page's script so that a
/// cached page's form can carry it.
pub(crate) const CSRF_COOKIE: &str = "vd_csrf";
/// A random value that anonymous forms (sign-in, sign-up) are bound to.
pub(crate) const PRE_SESSION_COOKIE: &str = "vd_pre";
/// Form bodies larger than this are refused.
pub const FORM_BYTES_MAX: usize = 64 * 1024;

/// The pages, with their own state; merged into the service's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(shop::root))
        .route("/assets/site.css", get(assets::css))
        .route("/assets/site.js", get(assets::js))
        .route("/assets/dashboard.js", get(assets::dashboard_js))
        .route("/shop/{tenant}", get(shop::storefront))
        .route("/shop/{tenant}/campaigns/{campaign}", get(shop::campaign))
        .route(
            "/shop/{tenant}/campaigns/{campaign}/terms",
            get(shop::terms),
        )
        .route(
            "/shop/{tenant}/campaigns/{campaign}/claim",
            post(shop::claim),
        )
        .route(
            "/shop/{tenant}/reservations/{reservation}/checkout",
            get(shop::checkout_form).post(shop::checkout),
        )
        .route("/shop/{tenant}/orders/{order}", get(shop::order))
        .route("/shop/{tenant}/me", get(shop::my_vouchers))
        .route(
            "/shop/{tenant}/signup",
            get(accounts::sign_up_form).post(accounts::sign_up),
        )
        .route(
            "/shop/{tenant}/signin",
            get(accounts::sign_in_form).post(accounts::sign_in),
        )
        .route("/shop/{tenant}/signout", post(accounts::sign_out))
        .merge(admin::routes())
}

/// Who is signed in: the token of the cookie, checked like a bearer token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub token: String,
    pub role: Role,
    pub user: UserId,
}

/// What every page handler starts from: the tenant of the path, the
/// language, and who is signed in.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub tenant: Arc<TenantEntry>,
    pub lang: Lang,
    pub session: Option<Session>,
    /// Behind TLS (as the proxy in front says): cookies are Secure.
    pub secure: bool,
    cookies: Vec<(String, String)>,
}

impl Page {
    pub fn from_request(
        state: &AppState,
        tenant: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Page, Response> {
        let tenant_id: TenantId = tenant.parse().map_err(|_| not_found_page())?;
        let tenant = state.engine.tenant(tenant_id).ok_or_else(not_found_page)?;
        let cookies = cookies(headers);
        let lang = query
            .and_then(|query| query_value(query, "lang"))
            .and_then(|code| Lang::parse(&code))
            .unwrap_or(Lang::En);
        let secure = headers
            .get("x-forwarded-proto")
            .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
        let mut page = Page {
            tenant,
            lang,
            session: None,
            secure,
            cookies,
        };
        page.session = page.cookie(SESSION_COOKIE).and_then(|token| {
            let (principal, _) =
                auth::verify(token, |id| state.engine.tenant(id), state.engine.now()).ok()?;
            if principal.tenant_id() != tenant_id || principal.role == Role::Service {
                return None;
            }
            Some(Session {
                token: token.to_owned(),
                role: principal.role,
                user: principal.subject?,
            })
        });
        Ok(page)
    }

    pub fn texts(&self) -> &'static Texts {
        self.lang.texts()
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant.tenant.id
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A path of this tenant's pages, in this page's language.
    pub fn link(&self, path: &str) -> String {
        let base = format!("/shop/{}{path}", self.tenant_id());
        match self.lang {
            Lang::En => base,
            other => {
                let separator = if base.contains('?') { '&' } else { '?' };
                format!("{base}{separator}lang={}", other.code())
            }
        }
    }

    /// Where this tenant's cookies apply.
    pub fn cookie_path(&self) -> String {
        format!("/shop/{}", self.tenant_id())
    }

    /// The CSRF token a form of this page must send back: bound to the
    /// session, or before sign-in to the pre-session cookie.
    pub fn csrf(&self) -> Option<String> {
        match (&self.session, self.cookie(PRE_SESSION_COOKIE)) {
            (Some(session), _) => Some(csrf_token(&self.tenant.tenant.signing_key, &session.token)),
            (None, Some(nonce)) => Some(csrf_token(
                &self.tenant.tenant.signing_key,
                &format!("pre:{nonce}"),
            )),
            (None, None) => None,
        }
    }

    /// Whether a form's token is this page's; compared in constant time.
    pub fn csrf_matches(&self, sent: Option<&str>) -> bool {
        match (self.csrf(), sent) {
            (Some(expected), Some(sent)) => constant_time_eq(expected.as_bytes(), sent.as_bytes()),
            _ => false,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| session.role == Role::Admin)
    }

    pub fn customer(&self) -> Option<&UserId> {
        self.session
            .as_ref()
            .filter(|session| session.role == Role::Customer)
            .map(|session| &session.user)
    }

    /// A cookie for this tenant's pages.
    pub fn set_cookie(&self, name: &str, value: &str, http_only: bool, max_age: i64) -> String {
        let mut cookie = format!(
            "{name}={value}; Path={}; Max-Age={max_age}; SameSite=Lax",
            self.cookie_path()
        );
        if http_only {
            cookie.push_str("; HttpOnly");
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        cookie
    }
}

pub(crate) fn csrf_token(key: &[u8], binding: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(b"voucherd-csrf:");
    mac.update(binding.as_bytes());
    hex(&mac.finalize().into_bytes()[..16])
}

/// A secret derived from a tenant's key for one purpose, in hex: what the
/// demo's admin password is, so that it is never stored.
pub fn derived_secret(key: &[u8], purpose: &str) -> String {
    csrf_token(key, &format!("derived:{purpose}"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .take(64)
        .collect()
}

/// One value of an `application/x-www-form-urlencoded` query or body.
pub(crate) fn query_value(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// The fields of a form post, in order (a name may repeat).
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Form, Problem> {
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .split(';')
                    .next()
                    .is_some_and(|media| media.trim() == "application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the form as application/x-www-form-urlencoded",
            ));
        }
        serde_urlencoded::from_bytes(body)
            .map(Form)
            .map_err(|_| Problem::malformed("the form could not be read"))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The field trimmed; `None` when missing or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// How long a page may be kept by the browser and a CDN.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cache {
    /// The same for everyone: kept `max_age` seconds, revalidated by ETag.
    Public(u32),
    /// For the one person asking: never kept.
    Private,
}

/// A strong ETag of a page's bytes.
pub(crate) fn etag_of(body: &str) -> String {
    format!("\"{}\"", hex(&Sha256::digest(body.as_bytes())[..12]))
}

/// Whether the client holds the version `etag` names.
pub(crate) fn is_fresh(request_headers: &HeaderMap, etag: &str) -> bool {
    request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag))
}

/// An HTML answer. A public page carries an ETag of its bytes and is
/// answered 304 when the client has it.
pub(crate) fn html_response(
    request_headers: &HeaderMap,
    status: StatusCode,
    cache: Cache,
    body: String,
) -> Response {
    let mut response = match cache {
        Cache::Public(max_age) => {
            let etag = etag_of(&body);
            let mut response = if is_fresh(request_headers, &etag) {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                (status, body).into_response()
            };
            let headers = response.headers_mut();
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_str(&format!(
                    "public, max-age={max_age}, stale-while-revalidate={max_age}"
                ))
                .expect("a number is a header value"),
            );
            headers.insert(
                header::ETAG,
                HeaderValue::from_str(&etag).expect("hex is a header value"),
            );
            response
        }
        Cache::Private => {
            let mut response = (status, body).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page's frame: the header with the tenant's shop, the customer's links
/// and the language switch, then `main`.
pub(crate) fn layout(page: &Page, title: &str, main: &str, personal: bool) -> String {
    let texts = page.texts();
    let other = page.lang.other();
    let mut nav = format!(
        r#"<a href="{shop}">{shop_text}</a> <a href="{me}">{me_text}</a>"#,
        shop = page.link(""),
        shop_text = texts.shop,
        me = page.link("/me"),
        me_text = texts.my_vouchers,
    );
    match (&page.session, personal) {
        (Some(session), true) => {
            if session.role == Role::Admin {
                nav.push_str(&format!(r#" <a href="{}">Admin</a>"#, page.link("/admin")));
            }
            nav.push_str(&format!(
                r#" <form class="inline" method="post" action="{action}">{csrf}<button class="link">{text}</button></form>"#,
                action = page.link("/signout"),
                csrf = csrf_field(page),
                text = texts.sign_out,
            ));
        }
        _ => nav.push_str(&format!(
            r#" <a href="{}">{}</a>"#,
            page.link("/signin"),
            texts.sign_in
        )),
    }
    format!(
        r##"<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{title} · {tenant}</title><link rel="stylesheet" href="/assets/site.css"><script src="/assets/site.js" defer></script></head><body><a class="skip" href="#main">{skip}</a><header><span class="brand">{tenant}</span><nav aria-label="{shop_text}">{nav} <a href="{switch}" lang="{other_code}">{other_name}</a></nav></header><main id="main">{main}</main></body></html>"##,
        lang = page.lang.code(),
        title = escape(title),
        tenant = escape(&page.tenant.tenant.name),
        skip = texts.skip_to_content,
        shop_text = texts.shop,
        switch = switch_link(page, other),
        other_code = other.code(),
        other_name = other.texts().language_name,
    )
}

fn switch_link(page: &Page, other: Lang) -> String {
    let mut switched = page.clone();
    switched.lang = other;
    switched.link("")
}

/// The hidden CSRF field of a form on a personal page.
pub(crate) fn csrf_field(page: &Page) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        page.csrf().unwrap_or_default()
    )
}

/// A page that says what went wrong, with the problem's status (and
/// Retry-After when it has one).
pub(crate) fn problem_page(page: &Page, headers: &HeaderMap, problem: &Problem) -> Response {
    let texts = page.texts();
    let mut main = format!(
        r#"<h1>{}</h1><p role="alert">{}</p>"#,
        escape(problem.title()),
        escape(problem.detail())
    );
    if !problem.errors().is_empty() {
        main.push_str("<ul>");
        for error in problem.errors() {
            main.push_str(&format!(
                "<li>{}: {}</li>",
                escape(&error.field),
                escape(&error.message)
            ));
        }
        main.push_str("</ul>");
    }
    if let Some(seconds) = problem.retry_after_seconds() {
        main.push_str(&format!(
            "<p>{}</p>",
            text::fill(texts.try_again_in, &[("seconds", &seconds.to_string())])
        ));
    }
    main.push_str(&format!(
        r#"<p><a href="{}">{}</a></p>"#,
        page.link(""),
        texts.back_to_shop
    ));
    let mut response = html_response(
        headers,
        problem.status(),
        Cache::Private,
        layout(page, texts.error, &main, true),
    );
    if let Some(seconds) = problem.retry_after_seconds() {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&seconds.to_string()).expect("a number is a header value"),
        );
    }
    response
}

/// A form post refused for its CSRF token: nothing was changed.
pub(crate) fn csrf_refused(page: &Page, headers: &HeaderMap) -> Response {
    problem_page(
        page,
        headers,
        &Problem::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "Form refused",
            page.texts().csrf_refused,
        ),
    )
}

fn not_found_page() -> Response {
    let mut response = (
        StatusCode::NOT_FOUND,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title></head><body><main><h1>Not found</h1><p>There is no such page.</p></main></body></html>",
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A redirect after a form post: the browser asks for `to` with GET.
pub(crate) fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Adds `Set-Cookie` lines to a response.
pub(crate) fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_key_and_session() {
        let token = csrf_token(b"key-one", "session-a");
        assert_eq!(token.len(), 32);
        assert_eq!(token, csrf_token(b"key-one", "session-a"));
        assert_ne!(token, csrf_token(b"key-two", "session-a"));
        assert_ne!(token, csrf_token(b"key-one", "session-b"));
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        let read = cookies(&headers);
        assert_eq!(
            read,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("c".into(), "3".into())
            ]
        );
    }
}
