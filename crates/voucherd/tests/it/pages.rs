//! The storefront and the admin console of the real binary over real TCP,
//! as a browser without a script would use them: forms, cookies and
//! redirects. (The browser with scripts is `.ci/browser/`.)

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use voucherd_gateway_sim::{Simulator, SimulatorConfig, SimulatorHandle};

use crate::server::TestServer;

/// Bytes a campaign or sold-out page may take (its style sheet and script
/// are separate and cached for an hour).
const PAGE_BYTES_MAX: usize = 8 * 1024;
const PASSWORD: &str = "correct horse battery";

/// A visitor: cookies kept by hand, redirects not followed.
struct Visitor {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Visitor {
    fn new(server: &TestServer) -> Visitor {
        Visitor {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
            base: server.base.clone(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, response: reqwest::Response) -> Answer {
        for cookie in response.headers().get_all(SET_COOKIE) {
            let text = cookie.to_str().expect("a cookie");
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status: response.status(),
            location: response
                .headers()
                .get(LOCATION)
                .map(|value| value.to_str().expect("a location").to_owned()),
            headers: response.headers().clone(),
            body: response.text().await.expect("a body"),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .expect("an answer");
        self.read(response).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(fields)
            .send()
            .await
            .expect("an answer");
        self.read(response).await
    }

    /// Signs up (or in) through the form; answers where it sent us.
    async fn account(&mut self, shop: &str, action: &str, email: &str) -> Answer {
        let form = self.get(&format!("{shop}/{action}")).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = csrf_of(&form.body);
        self.post(
            &format!("{shop}/{action}"),
            &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
        )
        .await
    }
}

/// The CSRF token a page's form carries.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a form with a CSRF field") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("the token")
        .to_owned()
}

async fn tenant_of(server: &TestServer) -> String {
    // `/` sends the one tenant's visitors to its shop.
    let mut visitor = Visitor::new(server);
    let root = visitor.get("/").await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    root.location
        .expect("a redirect")
        .trim_start_matches("/shop/")
        .to_owned()
}

async fn gateways() -> Vec<SimulatorHandle> {
    let mut handles = Vec::new();
    for seed in 0..2 {
        let config = SimulatorConfig {
            rate_per_second: 100,
            latency_ms: 5..=20,
            decline_rate: 0.0,
            timeout_rate: 0.0,
            seed: Some(seed),
            ..SimulatorConfig::default()
        };
        handles.push(Simulator::start(config).await.expect("a simulator"));
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_signs_up_buys_through_the_form_and_sees_the_code() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let gateways = gateways().await;
    let flags = crate::payments::gateway_flags(&gateways, 100);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = TestServer::start(data.path(), &flags);
    let tenant = tenant_of(&server).await;
    let shop = format!("/shop/{tenant}");
    let sale = server
        .live_campaign(json!({
            "name": "Hot Deal", "kind": "sale", "supply": 2,
            "price": {"amount": 150_000, "currency": "THB"},
            "tiers": [{"until_rank": 1, "discount_percent": 90}, {"until_rank": 2, "discount_percent": 50}],
            "terms": "One per person.",
        }))
        .await;

    let mut buyer = Visitor::new(&server);
    let page = buyer.get(&format!("{shop}/campaigns/{sale}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("90 % off"), "{}", page.body);
    assert!(
        page.body
            .contains(r#"<span class="price">฿150.00</span> <s>฿1,500.00</s>"#),
        "the price of rank 1 beside the full price: {}",
        page.body
    );
    assert!(page.body.contains("1 left at this price"), "{}", page.body);

    // Buying before signing in sends the visitor to sign in and back.
    let claim = buyer
        .post(&format!("{shop}/campaigns/{sale}/claim"), &[("csrf", "")])
        .await;
    assert_eq!(claim.status, StatusCode::SEE_OTHER);
    assert!(
        claim
            .location
            .as_deref()
            .unwrap_or_default()
            .contains("/signin?next=")
    );

    let signed_up = buyer.account(&shop, "signup", "Buyer@Example.com").await;
    assert_eq!(
        signed_up.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_up.body
    );
    let token = buyer.cookies["vd_csrf"].clone();
    let claim = buyer
        .post(
            &format!("{shop}/campaigns/{sale}/claim"),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(claim.status, StatusCode::SEE_OTHER, "{}", claim.body);
    let checkout = claim.location.expect("to checkout");
    assert!(checkout.contains("/checkout"), "{checkout}");
    let form = buyer.get(&checkout).await;
    assert!(
        form.body.contains("฿150.00"),
        "rank 1 pays 10 %: {}",
        form.body
    );

    // A card the server refuses: the form comes back with the field named
    // and no order is opened.
    let refused = buyer
        .post(
            &checkout,
            &[
                ("csrf", &token),
                ("email", "buyer@example.com"),
                ("number", "4242 4242 4242 4241"),
                ("expiry", "12/40"),
                ("cvc", "123"),
                ("name", "A Buyer"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("check digit"), "{}", refused.body);
    assert!(refused.body.contains(r#"aria-invalid="true""#));
    let (_, report) = server
        .get(&format!("/v1/campaigns/{sale}/report"), &server.admin)
        .await;
    assert_eq!(report["orders"]["pending"], 0, "{report}");
    assert_eq!(report["orders"]["paid"], 0, "{report}");

    let paid = buyer
        .post(
            &checkout,
            &[
                ("csrf", &token),
                ("email", "buyer@example.com"),
                ("number", "4242 4242 4242 4242"),
                ("expiry", "12/40"),
                ("cvc", "123"),
                ("name", "A Buyer"),
            ],
        )
        .await;
    assert_eq!(paid.status, StatusCode::SEE_OTHER, "{}", paid.body);
    let order = paid.location.expect("to the order");
    let started = std::time::Instant::now();
    let code = loop {
        let page = buyer.get(&order).await;
        assert_eq!(page.status, StatusCode::OK);
        if page.body.contains(r#"data-order-status="paid""#) {
            let marker = "data-code>";
            let start = page.body.find(marker).expect("the code") + marker.len();
            break page.body[start..]
                .split('<')
                .next()
                .expect("a code")
                .to_owned();
        }
        assert!(
            !page.body.contains(r#"data-order-status="failed""#),
            "{}",
            page.body
        );
        assert!(started.elapsed() < Duration::from_secs(30), "never paid");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mine = buyer.get(&format!("{shop}/me")).await;
    assert!(mine.body.contains(&code), "my vouchers show {code}");
    let exported = server.export(&sale).await;
    let held: Vec<&Value> = exported
        .iter()
        .filter(|voucher| voucher["state"] == "issued")
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["code"], code.as_str());
    assert_eq!(held[0]["rank"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_their_csrf_token_are_refused_and_change_nothing() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let server = TestServer::start(data.path(), &[]);
    let tenant = tenant_of(&server).await;
    let shop = format!("/shop/{tenant}");
    let coupon = server
        .live_campaign(json!({"name": "Coffee", "kind": "coupon", "supply": 5}))
        .await;

    let mut visitor = Visitor::new(&server);
    let _ = visitor.get(&format!("{shop}/signup")).await;
    let forged = visitor
        .post(
            &format!("{shop}/signup"),
            &[("email", "forged@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let wrong = visitor
        .post(
            &format!("{shop}/signup"),
            &[
                ("csrf", "0123456789abcdef0123456789abcdef"),
                ("email", "forged@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // No account was made: signing in with it fails.
    let mut other = Visitor::new(&server);
    let signed_in = other.account(&shop, "signin", "forged@example.com").await;
    assert_eq!(
        signed_in.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        signed_in.body
    );

    let mut customer = Visitor::new(&server);
    let signed_up = customer.account(&shop, "signup", "real@example.com").await;
    assert_eq!(signed_up.status, StatusCode::SEE_OTHER);
    // Another tenant's or another session's token does not pass.
    let forged_claim = customer
        .post(
            &format!("{shop}/campaigns/{coupon}/claim"),
            &[("csrf", "0123456789abcdef0123456789abcdef")],
        )
        .await;
    assert_eq!(forged_claim.status, StatusCode::FORBIDDEN);
    // A post whose script could not fill the token is asked to confirm,
    // with the token in the form, and nothing is claimed yet.
    let unconfirmed = customer
        .post(&format!("{shop}/campaigns/{coupon}/claim"), &[("csrf", "")])
        .await;
    assert_eq!(unconfirmed.status, StatusCode::OK);
    assert_eq!(csrf_of(&unconfirmed.body), customer.cookies["vd_csrf"]);
    let claimed: Vec<Value> = server
        .export(&coupon)
        .await
        .into_iter()
        .filter(|voucher| voucher["state"] != "available")
        .collect();
    assert!(claimed.is_empty(), "{claimed:?}");
    // Signing out needs the token too.
    let out = customer.post(&format!("{shop}/signout"), &[]).await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    let mine = customer.get(&format!("{shop}/me")).await;
    assert_eq!(mine.status, StatusCode::OK, "still signed in");

    // Bad input: not a form, an email that is not one, a short password.
    let not_a_form = customer
        .client
        .post(format!("{}{shop}/signin", server.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("an answer");
    assert_eq!(not_a_form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut newcomer = Visitor::new(&server);
    let form = newcomer.get(&format!("{shop}/signup")).await;
    let csrf = csrf_of(&form.body);
    let bad_email = newcomer
        .post(
            &format!("{shop}/signup"),
            &[
                ("csrf", &csrf),
                ("email", "not-an-email"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(bad_email.status, StatusCode::UNPROCESSABLE_ENTITY);
    let short = newcomer
        .post(
            &format!("{shop}/signup"),
            &[
                ("csrf", &csrf),
                ("email", "n@example.com"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.body.contains("10 to 128"), "{}", short.body);
    let taken = newcomer
        .post(
            &format!("{shop}/signup"),
            &[
                ("csrf", &csrf),
                ("email", "REAL@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        taken.status,
        StatusCode::CONFLICT,
        "emails are compared lower-cased"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_pages_are_small_cacheable_and_say_sold_out() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let server = TestServer::start(data.path(), &[]);
    let tenant = tenant_of(&server).await;
    let shop = format!("/shop/{tenant}");
    let coupon = server
        .live_campaign(
            json!({"name": "Noon <coupon>", "kind": "coupon", "supply": 1,
            "terms": "Line one.\n\nLine <two>."}),
        )
        .await;
    let mut visitor = Visitor::new(&server);
    let page = visitor.get(&format!("{shop}/campaigns/{coupon}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.len() <= PAGE_BYTES_MAX,
        "{} bytes",
        page.body.len()
    );
    assert!(page.body.contains("Noon &lt;coupon&gt;"), "escaped");
    assert!(!page.body.contains("<coupon>"));
    assert_eq!(
        page.headers["cache-control"],
        "public, max-age=2, stale-while-revalidate=2"
    );
    assert!(
        page.headers.get(SET_COOKIE).is_none(),
        "a cached page sets no cookie"
    );
    let etag = page.headers["etag"].to_str().expect("an etag").to_owned();
    let revalidated = visitor
        .client
        .get(format!("{}{shop}/campaigns/{coupon}", server.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("an answer");
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    let terms = visitor
        .get(&format!("{shop}/campaigns/{coupon}/terms"))
        .await;
    assert!(
        terms
            .body
            .contains("<p>Line one.</p><p>Line &lt;two&gt;.</p>"),
        "{}",
        terms.body
    );
    let thai = visitor
        .get(&format!("{shop}/campaigns/{coupon}?lang=th"))
        .await;
    assert!(thai.body.contains(r#"<html lang="th">"#));
    assert!(thai.body.contains("รับสิทธิ์เลย"), "{}", thai.body);

    let (status, _) = server
        .post(
            &format!("/v1/campaigns/{coupon}/claims"),
            &server.service,
            json!({"user_id": "first"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let sold_out = visitor.get(&format!("{shop}/campaigns/{coupon}")).await;
    assert!(sold_out.body.contains("Sold out"), "{}", sold_out.body);
    assert!(!sold_out.body.contains("Claim now"));
    assert!(sold_out.body.len() <= PAGE_BYTES_MAX);
    assert_ne!(
        sold_out.headers["etag"].to_str().expect("an etag"),
        etag,
        "a new page, a new tag"
    );
    let storefront = visitor.get(&shop).await;
    assert!(storefront.body.contains("Sold out"));

    let missing = visitor
        .get(&format!("{shop}/campaigns/not-a-campaign"))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let other_tenant = visitor
        .get("/shop/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(other_tenant.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_login_campaign_grants_on_the_first_sign_in_only() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let server = TestServer::start(data.path(), &[]);
    let tenant = tenant_of(&server).await;
    let shop = format!("/shop/{tenant}");
    let welcome = server
        .live_campaign(
            json!({"name": "Welcome 30 % off", "kind": "coupon", "supply": 100,
            "trigger": "first_login"}),
        )
        .await;
    let mut customer = Visitor::new(&server);
    let first = customer.account(&shop, "signup", "new@example.com").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let to = first.location.expect("a redirect");
    assert!(to.ends_with("/me?granted=1"), "{to}");
    let mine = customer.get(&to).await;
    assert!(mine.body.contains("Welcome 30 % off"), "{}", mine.body);
    let csrf = customer.cookies["vd_csrf"].clone();
    let out = customer
        .post(&format!("{shop}/signout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(!customer.cookies.contains_key("vd_session"));
    let again = customer.account(&shop, "signin", "new@example.com").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    assert!(
        again.location.expect("a redirect").ends_with("/me"),
        "nothing granted again"
    );
    let held: Vec<Value> = server
        .export(&welcome)
        .await
        .into_iter()
        .filter(|voucher| voucher["state"] == "issued")
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_uploads_and_publishes_through_the_console() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let server = TestServer::start(data.path(), &[]);
    let tenant = tenant_of(&server).await;
    let shop = format!("/shop/{tenant}");
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_voucherd"))
        .args(["account", "create", "--data-dir"])
        .arg(data.path())
        .args(["--email", "boss@example.com", "--role", "admin"])
        .env("VOUCHERD_ACCOUNT_PASSWORD", PASSWORD)
        .output()
        .expect("voucherd account create");
    assert!(created.status.success(), "{created:?}");

    let mut customer = Visitor::new(&server);
    let _ = customer
        .account(&shop, "signup", "shopper@example.com")
        .await;
    let refused = customer.get(&format!("{shop}/admin")).await;
    assert_eq!(
        refused.status,
        StatusCode::SEE_OTHER,
        "a customer is sent to sign in"
    );

    let mut admin = Visitor::new(&server);
    let signed_in = admin.account(&shop, "signin", "boss@example.com").await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert!(signed_in.location.expect("home").ends_with("/admin"));
    let form = admin.get(&format!("{shop}/admin/campaigns/new")).await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = csrf_of(&form.body);
    let mut fields: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("name", "Hot Deal"),
        ("kind", "sale"),
        ("supply", "6"),
        ("price_amount", "1500"),
        ("price_currency", "THB"),
        ("tier_until_rank", "2"),
        ("tier_discount_percent", "90"),
        ("tier_until_rank", "4"),
        ("tier_discount_percent", "150"),
        ("tier_until_rank", "6"),
        ("tier_discount_percent", "50"),
        ("trigger", "claim"),
        ("codes", "upload"),
    ];
    let invalid = admin
        .post(&format!("{shop}/admin/campaigns"), &fields)
        .await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.body
    );
    assert!(invalid.body.contains("tiers"), "{}", invalid.body);
    let (_, listed) = server.get("/v1/campaigns", &server.admin).await;
    assert_eq!(
        listed["campaigns"].as_array().map(Vec::len),
        Some(0),
        "nothing was created"
    );
    fields[9] = ("tier_discount_percent", "70");
    let made = admin
        .post(&format!("{shop}/admin/campaigns"), &fields)
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let detail = made.location.expect("the campaign page");
    let id = detail.rsplit('/').next().expect("an id").to_owned();
    let (_, campaign) = server
        .get(&format!("/v1/campaigns/{id}"), &server.admin)
        .await;
    assert_eq!(
        campaign["tiers"].as_array().map(Vec::len),
        Some(3),
        "{campaign}"
    );
    assert_eq!(campaign["price"]["amount"], 150_000);

    let page = admin.get(&detail).await;
    let csrf = csrf_of(&page.body);
    let csv = "code\nSPA-1\nSPA-2\nSPA-2\nSPA-3\nSPA-4\nSPA-1\nSPA-5\nSPA-6\n";
    let upload = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec())
                .file_name("codes.csv")
                .mime_str("text/csv")
                .expect("a mime type"),
        );
    let uploaded = admin
        .client
        .post(format!("{}{detail}/codes", server.base))
        .header(COOKIE, admin.cookie_header())
        .multipart(upload)
        .send()
        .await
        .expect("an answer");
    assert_eq!(uploaded.status(), StatusCode::OK);
    let body = uploaded.text().await.expect("a body");
    assert!(body.contains("<strong data-added>6</strong>"), "{body}");
    assert!(
        body.contains("<strong data-duplicates>2</strong>"),
        "{body}"
    );
    assert!(body.contains("<code>SPA-2</code>") && body.contains("<code>SPA-1</code>"));

    let published = admin
        .post(
            &format!("{detail}/lifecycle"),
            &[("csrf", &csrf), ("action", "publish")],
        )
        .await;
    assert_eq!(
        published.status,
        StatusCode::SEE_OTHER,
        "{}",
        published.body
    );
    let (_, campaign) = server
        .get(&format!("/v1/campaigns/{id}"), &server.admin)
        .await;
    assert_eq!(campaign["state"], "live", "{campaign}");
    let export = admin.get(&format!("{detail}/vouchers.csv")).await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(
        export.body.lines().count(),
        7,
        "a header and six codes: {}",
        export.body
    );
    let dashboard = admin.get(&format!("{detail}/dashboard")).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("data-events="));
}
