//! Customer and admin accounts: sign-up, sign-in and sign-out.
//!
//! Passwords are hashed with argon2id (19 MiB, two passes: OWASP's
//! minimum), on the blocking pool and at most [`PasswordGate::PERMITS`] at
//! a time: a crowd signing in waits for a permit (and is told 503 after
//! [`PasswordGate::WAIT`]) instead of taking every core from the claims.
//! Signing in fires the login event, so a `first_login` campaign grants on
//! the account's first sign-in (and only then: the engine grants once per
//! user).

use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tokio::sync::Semaphore;
use voucherd_core::SignedDuration;
use voucherd_core::ids::UserId;
use voucherd_core::payment::Email;
use voucherd_engine::ClaimAnswer;
use voucherd_engine::model::{Account, AccountRole};

use super::html::escape;
use super::{
    CSRF_COOKIE, Cache, Form, PRE_SESSION_COOKIE, Page, SESSION_COOKIE, csrf_field, csrf_refused,
    csrf_token, hex, html_response, layout, problem_page, see_other, with_cookies,
};
use crate::AppState;
use crate::auth::{Role, mint};
use crate::problem::Problem;

pub const PASSWORD_LENGTH_MIN: usize = 10;
pub const PASSWORD_LENGTH_MAX: usize = 128;
const CUSTOMER_SESSION_HOURS: i64 = 24 * 7;
const ADMIN_SESSION_HOURS: i64 = 12;

/// How many passwords are hashed at once, across every request.
#[derive(Debug)]
pub struct PasswordGate(Semaphore);

impl Default for PasswordGate {
    fn default() -> PasswordGate {
        PasswordGate(Semaphore::new(PasswordGate::PERMITS))
    }
}

impl PasswordGate {
    pub const PERMITS: usize = 2;
    pub const WAIT: Duration = Duration::from_secs(3);

    /// Runs `work` (a hash or a check) once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Problem> {
        let permit = tokio::time::timeout(PasswordGate::WAIT, self.0.acquire())
            .await
            .map_err(|_| Problem::overloaded())?
            .map_err(|_| Problem::internal())?;
        let result = tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Problem::internal());
        drop(permit);
        result
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password`'s argon2id hash with a fresh salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashes any password of bounded length")
        .to_string()
}

fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of no one's password: checked when the email is unknown, so
/// that an unknown email takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("not anyone's password at all"))
}

pub fn password_valid(password: &str) -> bool {
    (PASSWORD_LENGTH_MIN..=PASSWORD_LENGTH_MAX).contains(&password.chars().count())
}

/// The sign-in or sign-up form; an anonymous visitor gets the pre-session
/// cookie its CSRF token is bound to.
fn account_form(
    page: &mut Page,
    headers: &HeaderMap,
    status: StatusCode,
    signing_up: bool,
    message: Option<&str>,
    email: &str,
    next: Option<&str>,
) -> Response {
    let mut cookies = Vec::new();
    if page.session.is_none() && page.cookie(PRE_SESSION_COOKIE).is_none() {
        let mut nonce = [0_u8; 16];
        let _ = getrandom::fill(&mut nonce);
        let nonce = hex(&nonce);
        cookies.push(page.set_cookie(PRE_SESSION_COOKIE, &nonce, true, 3_600));
        page.cookies.push((PRE_SESSION_COOKIE.into(), nonce));
    }
    let texts = page.texts();
    let (title, action, button, other_prompt, other_path, other_text, autocomplete) = if signing_up
    {
        (
            texts.sign_up,
            "/signup",
            texts.sign_up,
            texts.have_account,
            "/signin",
            texts.sign_in,
            "new-password",
        )
    } else {
        (
            texts.sign_in,
            "/signin",
            texts.sign_in,
            texts.no_account,
            "/signup",
            texts.sign_up,
            "current-password",
        )
    };
    let alert = message
        .map(|message| format!(r#"<p class="error" role="alert">{}</p>"#, escape(message)))
        .unwrap_or_default();
    let next_field = next
        .map(|next| {
            format!(
                r#"<input type="hidden" name="next" value="{}">"#,
                escape(next)
            )
        })
        .unwrap_or_default();
    let main = format!(
        r#"<h1>{title}</h1>{alert}<form method="post" action="{action}" class="stack">{csrf}{next_field}<input type="hidden" name="lang" value="{lang}"><label for="email">{email_label}</label><input id="email" name="email" type="email" autocomplete="email" required maxlength="254" value="{email}"><label for="password">{password_label}</label><input id="password" name="password" type="password" autocomplete="{autocomplete}" required minlength="{min}" maxlength="{max}" aria-describedby="password-hint"><small id="password-hint">{hint}</small><button type="submit">{button}</button></form><p>{other_prompt} <a href="{other_link}">{other_text}</a></p>"#,
        action = page.link(action),
        csrf = csrf_field(page),
        lang = page.lang.code(),
        email_label = texts.email,
        email = escape(email),
        password_label = texts.password,
        min = PASSWORD_LENGTH_MIN,
        max = PASSWORD_LENGTH_MAX,
        hint = texts.password_hint,
        other_link = page.link(other_path),
    );
    with_cookies(
        html_response(
            headers,
            status,
            Cache::Private,
            layout(page, title, &main, true),
        ),
        &cookies,
    )
}

pub async fn sign_up_form(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    empty_form(&state, &tenant, query, &headers, true)
}

pub async fn sign_in_form(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    empty_form(&state, &tenant, query, &headers, false)
}

fn empty_form(
    state: &AppState,
    tenant: &str,
    query: Option<String>,
    headers: &HeaderMap,
    signing_up: bool,
) -> Response {
    let mut page = match Page::from_request(state, tenant, headers, query.as_deref()) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let next = query
        .as_deref()
        .and_then(|query| super::query_value(query, "next"));
    account_form(
        &mut page,
        headers,
        StatusCode::OK,
        signing_up,
        None,
        "",
        next.as_deref(),
    )
}

/// The page and form of a post, or the answer that refuses it: a bad
/// tenant, an unreadable form, a missing or wrong CSRF token.
pub(crate) fn posted(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Page, Form), Response> {
    let mut page = Page::from_request(state, tenant, headers, None)?;
    let form =
        Form::parse(headers, body).map_err(|problem| problem_page(&page, headers, &problem))?;
    if let Some(lang) = form.get("lang").and_then(super::text::Lang::parse) {
        page.lang = lang;
    }
    if !page.csrf_matches(form.get("csrf")) {
        return Err(csrf_refused(&page, headers));
    }
    Ok((page, form))
}

/// Where to go after signing in: a page of this tenant the form named, or
/// the role's home.
fn next_page(page: &Page, form: &Form, role: Role) -> String {
    let own = format!("/shop/{}/", page.tenant_id());
    match form.get("next") {
        Some(next)
            if next.starts_with(&own)
                && !next.contains("//")
                && !next.contains('\\')
                && next.is_ascii() =>
        {
            next.to_owned()
        }
        _ => page.link(if role == Role::Admin { "/admin" } else { "/me" }),
    }
}

pub async fn sign_up(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (mut page, form) = match posted(&state, &tenant, &headers, &body) {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let texts = page.texts();
    let typed_email = form.text("email").unwrap_or_default();
    let password = form.get("password").unwrap_or_default().to_owned();
    let next = form.get("next").map(str::to_owned);
    let email = match Email::parse(&typed_email) {
        Ok(email) => email.as_str().to_lowercase(),
        Err(invalid) => {
            let message = invalid
                .errors
                .first()
                .map(|error| format!("{}: {}", texts.email, error.message))
                .unwrap_or_default();
            return account_form(
                &mut page,
                &headers,
                StatusCode::UNPROCESSABLE_ENTITY,
                true,
                Some(&message),
                &typed_email,
                next.as_deref(),
            );
        }
    };
    if !password_valid(&password) {
        return account_form(
            &mut page,
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            true,
            Some(texts.password_rule),
            &typed_email,
            next.as_deref(),
        );
    }
    let hash = match state.passwords.run(move || hash_password(&password)).await {
        Ok(hash) => hash,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    let account = Account {
        tenant_id: page.tenant_id(),
        email: email.clone(),
        user_id: new_user_id(),
        role: AccountRole::Customer,
        password_hash: hash,
        created_at: state.engine.now(),
    };
    match state.engine.create_account(&account).await {
        Ok(true) => {}
        Ok(false) => {
            return account_form(
                &mut page,
                &headers,
                StatusCode::CONFLICT,
                true,
                Some(texts.email_taken),
                &typed_email,
                next.as_deref(),
            );
        }
        Err(error) => return problem_page(&page, &headers, &Problem::from(error)),
    }
    signed_in(&state, page, &form, &account).await
}

/// A customer's user id: made once, when the account is.
fn new_user_id() -> UserId {
    let mut bytes = [0_u8; 16];
    let _ = getrandom::fill(&mut bytes);
    UserId::parse(&format!("acct-{}", hex(&bytes))).expect("a hex id is a valid user id")
}

pub async fn sign_in(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (mut page, form) = match posted(&state, &tenant, &headers, &body) {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let texts = page.texts();
    let typed_email = form.text("email").unwrap_or_default();
    let password = form.get("password").unwrap_or_default().to_owned();
    let next = form.get("next").map(str::to_owned);
    let account = match state
        .engine
        .account(page.tenant_id(), &typed_email.to_lowercase())
        .await
    {
        Ok(account) => account,
        Err(error) => return problem_page(&page, &headers, &Problem::from(error)),
    };
    let hash = account.as_ref().map_or_else(
        || decoy_hash().to_owned(),
        |account| account.password_hash.clone(),
    );
    let checked = password.chars().count() <= PASSWORD_LENGTH_MAX;
    let matches = match state
        .passwords
        .run(move || checked && password_matches(&password, &hash))
        .await
    {
        Ok(matches) => matches,
        Err(problem) => return problem_page(&page, &headers, &problem),
    };
    match account {
        Some(account) if matches => signed_in(&state, page, &form, &account).await,
        _ => account_form(
            &mut page,
            &headers,
            StatusCode::UNAUTHORIZED,
            false,
            Some(texts.wrong_password),
            &typed_email,
            next.as_deref(),
        ),
    }
}

/// Starts the session: the token in an HttpOnly cookie, its CSRF token in
/// one the page's script reads; a customer's sign-in is their login event.
async fn signed_in(state: &AppState, page: Page, form: &Form, account: &Account) -> Response {
    let (role, hours) = match account.role {
        AccountRole::Customer => (Role::Customer, CUSTOMER_SESSION_HOURS),
        AccountRole::Admin => (Role::Admin, ADMIN_SESSION_HOURS),
    };
    let token = mint(
        &page.tenant.tenant,
        role,
        Some(&account.user_id),
        state.engine.now(),
        SignedDuration::from_hours(hours),
    );
    let max_age = hours * 3_600;
    let cookies = [
        page.set_cookie(SESSION_COOKIE, &token, true, max_age),
        page.set_cookie(
            CSRF_COOKIE,
            &csrf_token(&page.tenant.tenant.signing_key, &token),
            false,
            max_age,
        ),
        page.set_cookie(PRE_SESSION_COOKIE, "", true, 0),
    ];
    let mut to = next_page(&page, form, role);
    if role == Role::Customer {
        match state
            .engine
            .login(page.tenant_id(), account.user_id.clone())
            .await
        {
            Ok(answers) => {
                let granted = answers
                    .iter()
                    .filter(|answer| matches!(answer, ClaimAnswer::Claimed(_)))
                    .count();
                if granted > 0 {
                    to = page.link(&format!("/me?granted={granted}"));
                }
            }
            Err(error) => {
                // The sign-in stands; the grant is the engine's to retry on
                // the next sign-in (it grants at most once per user).
                tracing::warn!(%error, "the login event of a sign-in failed");
            }
        }
    }
    with_cookies(see_other(&to), &cookies)
}

pub async fn sign_out(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (page, _) = match posted(&state, &tenant, &headers, &body) {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let cookies = [
        page.set_cookie(SESSION_COOKIE, "", true, 0),
        page.set_cookie(CSRF_COOKIE, "", false, 0),
    ];
    with_cookies(see_other(&page.link("")), &cookies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_own_password_only() {
        let hash = hash_password("correct horse battery");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("correct horse batterY", &hash));
        assert!(!password_matches("correct horse battery", "not a hash"));
        assert_ne!(hash, hash_password("correct horse battery"), "salted");
    }

    #[test]
    fn passwords_are_bounded() {
        assert!(!password_valid("short"));
        assert!(password_valid("ten chars!"));
        assert!(!password_valid(&"x".repeat(PASSWORD_LENGTH_MAX + 1)));
    }
}
