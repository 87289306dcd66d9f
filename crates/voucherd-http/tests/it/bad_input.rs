//! Bad input gets a clear 4xx problem answer and changes nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use voucherd_core::SignedDuration;
use voucherd_http::auth::{Role, mint};

use crate::app::{TestApp, at, coupon, tenant};

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    token: Option<String>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
    problem: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    token: &str,
    body: &[u8],
    status: StatusCode,
    problem: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        token: Some(token.to_owned()),
        content_type: Some("application/json"),
        body: body.to_vec(),
        status,
        problem,
    }
}

/// Everything a client can see of the tenant's state.
async fn snapshot(app: &TestApp, id: &str) -> Value {
    json!({
        "campaigns": app.get("/v1/campaigns", &app.admin).await.body,
        "report": app.report(id).await,
        "vouchers": app.get(&format!("/v1/campaigns/{id}/vouchers"), &app.admin).await.body,
        "holder": app.user_vouchers("holder").await,
    })
}

#[tokio::test]
async fn bad_requests_get_problems_and_change_nothing() {
    let app = TestApp::new().await;
    let id = app.live_campaign(coupon(5)).await;
    assert_eq!(app.claim(&id, "holder").await.status, StatusCode::CREATED);
    let (_, other_admin) = app.other_tenant().await;
    let stranger = tenant("initech", "UTC");
    let unknown_tenant = mint(
        &stranger,
        Role::Admin,
        None,
        at("2026-11-30T00:00:00Z"),
        SignedDuration::from_hours(100),
    );
    let expired = mint(
        &app.tenant,
        Role::Admin,
        None,
        at("2026-11-01T00:00:00Z"),
        SignedDuration::from_hours(1),
    );
    let customer = app.customer("holder");
    let admin = app.admin.clone();
    let service = app.service.clone();
    let claims = format!("/v1/campaigns/{id}/claims");
    let codes = format!("/v1/campaigns/{id}/codes");
    let huge = format!(
        "{{\"name\": \"{}\", \"kind\": \"coupon\", \"supply\": 1}}",
        "x".repeat(100_000)
    );
    // Campaigns take bodies up to the upload limit (8 MiB), so that long
    // terms are refused by their own limit, not by the body's.
    let oversized = format!(
        "{{\"name\": \"{}\", \"kind\": \"coupon\", \"supply\": 1}}",
        "x".repeat(9 * 1024 * 1024)
    );
    let valid = |extra: Value| {
        let mut body = json!({"name": "Bad", "kind": "coupon", "supply": 10});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body.to_string().into_bytes()
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let mut cases = vec![
        case(
            "a NUL in a name",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({"name": "Bad\u{0}name"})),
            unprocessable,
            "validation",
        ),
        case(
            "a control character in the terms",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({"terms": "ring \u{7} the bell"})),
            unprocessable,
            "validation",
        ),
        case(
            "malformed JSON",
            Method::POST,
            "/v1/campaigns",
            &admin,
            b"{\"name\":",
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        case(
            "non-UTF-8 JSON",
            Method::POST,
            "/v1/campaigns",
            &admin,
            b"{\"name\": \"\xff\xfe\", \"kind\": \"coupon\", \"supply\": 1}",
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        case(
            "wrong types",
            Method::POST,
            "/v1/campaigns",
            &admin,
            br#"{"name": 5, "kind": "coupon", "supply": "ten"}"#,
            unprocessable,
            "validation",
        ),
        case(
            "unknown field",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({"surprise": 1})),
            unprocessable,
            "validation",
        ),
        case(
            "a name far past its length",
            Method::POST,
            "/v1/campaigns",
            &admin,
            huge.as_bytes(),
            unprocessable,
            "validation",
        ),
        case(
            "a body past the route's limit",
            Method::POST,
            "/v1/campaigns",
            &admin,
            oversized.as_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
        ),
        case(
            "zero supply",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({"supply": 0})),
            unprocessable,
            "validation",
        ),
        case(
            "negative supply",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({"supply": -3})),
            unprocessable,
            "validation",
        ),
        case(
            "tiers out of order",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(
                json!({"tiers": [{"until_rank": 8, "discount_percent": 50}, {"until_rank": 4, "discount_percent": 90}]}),
            ),
            unprocessable,
            "validation",
        ),
        case(
            "impossible code pattern",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({"supply": 1000, "codes": {"pattern": "A-##"}})),
            unprocessable,
            "validation",
        ),
        case(
            "bad time",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({"starts_at": "noon"})),
            unprocessable,
            "validation",
        ),
        case(
            "a customer creating",
            Method::POST,
            "/v1/campaigns",
            &customer,
            &valid(json!({})),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        case(
            "a service creating",
            Method::POST,
            "/v1/campaigns",
            &service,
            &valid(json!({})),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        case(
            "unknown campaign",
            Method::POST,
            "/v1/campaigns/0190f5c4-8d2e-7c3a-9b1e-2f4a5b6c7d8e/claims",
            &service,
            br#"{"user_id": "u"}"#,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        case(
            "malformed campaign id",
            Method::POST,
            "/v1/campaigns/not-a-uuid/claims",
            &service,
            br#"{"user_id": "u"}"#,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        case(
            "another tenant's campaign",
            Method::POST,
            &claims,
            &other_admin,
            br#"{"user_id": "u"}"#,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        case(
            "a user id of the wrong type",
            Method::POST,
            &claims,
            &service,
            br#"{"user_id": 5}"#,
            unprocessable,
            "validation",
        ),
        case(
            "an empty user id",
            Method::POST,
            &claims,
            &service,
            br#"{"user_id": ""}"#,
            unprocessable,
            "validation",
        ),
        case(
            "an invalid code",
            Method::POST,
            &codes,
            &admin,
            br#"{"codes": ["has space"]}"#,
            unprocessable,
            "validation",
        ),
        case(
            "an unknown voucher",
            Method::POST,
            "/v1/vouchers/NOPE/redeem",
            &service,
            b"",
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        case(
            "a bad page size",
            Method::GET,
            &format!("/v1/campaigns/{id}/vouchers?limit=0"),
            &admin,
            b"",
            unprocessable,
            "validation",
        ),
        case(
            "expired token",
            Method::POST,
            &claims,
            &expired,
            br#"{"user_id": "u"}"#,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "unknown tenant",
            Method::POST,
            &claims,
            &unknown_tenant,
            br#"{"user_id": "u"}"#,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "garbage token",
            Method::POST,
            &claims,
            "not.a.token",
            br#"{"user_id": "u"}"#,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "unknown route",
            Method::GET,
            "/v1/nothing-here",
            &admin,
            b"",
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        case(
            "wrong method",
            Method::DELETE,
            "/v1/campaigns",
            &admin,
            b"",
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
    ];
    cases.push(Case {
        token: None,
        ..case(
            "missing token",
            Method::POST,
            &claims,
            "",
            br#"{"user_id": "u"}"#,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
    });
    cases.push(Case {
        content_type: Some("text/plain"),
        ..case(
            "wrong media type",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({})),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        )
    });
    cases.push(Case {
        content_type: None,
        ..case(
            "no media type",
            Method::POST,
            "/v1/campaigns",
            &admin,
            &valid(json!({})),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        )
    });

    let before = snapshot(&app, &id).await;
    for case in cases {
        let mut request = Request::builder().method(case.method).uri(&case.path);
        if let Some(token) = &case.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = case.content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let answer = app.send(request.body(Body::from(case.body)).unwrap()).await;
        assert_eq!(
            (answer.status, answer.problem()),
            (case.status, case.problem),
            "{}: {}",
            case.name,
            answer.text
        );
        answer.assert_problem(case.status, case.problem);
        assert!(
            !answer.body["detail"].as_str().unwrap_or("").is_empty(),
            "{}: a detail says why",
            case.name
        );
        assert_eq!(
            snapshot(&app, &id).await,
            before,
            "{} changed the state",
            case.name
        );
    }
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = TestApp::new().await;
    let answer = app
        .post(
            "/v1/campaigns",
            &app.admin,
            json!({"kind": "raffle", "supply": 0, "per_user_limit": 0,
            "price": {"amount": -1, "currency": "baht"}}),
        )
        .await;
    answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let mut fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["kind", "name", "per_user_limit", "price.currency", "supply"]
    );
}

/// JSON has one number type: `100.0` is the integer 100, as every JSON
/// Schema validator reads it, while `100.5` is refused. A well-formed time
/// past the last instant the engine holds is refused with that bound named.
#[tokio::test]
async fn whole_numbers_with_a_zero_fraction_are_integers() {
    let app = TestApp::new().await;
    let created = app
        .post(
            "/v1/campaigns",
            &app.admin,
            json!({"name": "Floats", "kind": "sale", "supply": 100.0, "per_user_limit": 2.0,
            "price": {"amount": 150000.0, "currency": "THB"},
            "tiers": [{"until_rank": 10.0, "discount_percent": 90.0}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["supply"], 100);
    assert_eq!(created.body["per_user_limit"], 2);
    assert_eq!(created.body["price"]["amount"], 150_000);
    for (field, body) in [
        (
            "supply",
            json!({"name": "F", "kind": "coupon", "supply": 100.5}),
        ),
        (
            "supply",
            json!({"name": "F", "kind": "coupon", "supply": 1e300}),
        ),
        (
            "ends_at",
            json!({"name": "F", "kind": "coupon", "supply": 1, "ends_at": "9999-12-31T23:59:59Z"}),
        ),
    ] {
        let refused = app.post("/v1/campaigns", &app.admin, body.clone()).await;
        assert!(
            refused.status == StatusCode::UNPROCESSABLE_ENTITY
                || refused.status == StatusCode::BAD_REQUEST,
            "{body}: {} {}",
            refused.status,
            refused.body
        );
        assert!(
            refused.body.to_string().contains(field),
            "{body}: {}",
            refused.body
        );
    }
    let far = app
        .post(
            "/v1/campaigns",
            &app.admin,
            json!({"name": "F", "kind": "coupon", "supply": 1, "ends_at": "9999-12-31T23:59:59Z"}),
        )
        .await;
    assert!(
        far.body.to_string().contains("9999-12-30T22:00:00Z"),
        "{}",
        far.body
    );
    let campaigns = app.get("/v1/campaigns", &app.admin).await;
    let listed = campaigns.body["campaigns"].as_array().map(Vec::len);
    assert_eq!(listed, Some(1), "{}", campaigns.body);
}

/// A bad query parameter is a problem document like every other error,
/// and a caller without the role hears 403 before anything is parsed.
#[tokio::test]
async fn a_bad_query_is_a_problem_and_the_role_comes_first() {
    let app = TestApp::new().await;
    let id = app.live_campaign(coupon(3)).await;
    let path = format!("/v1/campaigns/{id}/vouchers?limit=-1");
    let refused = app.get(&path, &app.admin).await;
    refused.assert_problem(StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        refused.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    app.get(&path, &app.service)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
}

/// The scheme of `Authorization` is case-insensitive; a token that names
/// another issuer is refused though its signature is right.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_the_issuer_is_checked() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    let app = TestApp::new().await;
    let lower = Request::builder()
        .uri("/v1/campaigns")
        .header(header::AUTHORIZATION, format!("bearer {}", app.admin))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(lower).await.status, StatusCode::OK);
    let header_part = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let now = app.engine.now().as_second();
    let claims = json!({"iss": "someone-else", "tenant": app.tenant.id.to_string(),
        "role": "admin", "iat": now, "exp": now + 3_600});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&app.tenant.signing_key).unwrap();
    mac.update(format!("{header_part}.{payload}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let forged = format!("{header_part}.{payload}.{signature}");
    app.get("/v1/campaigns", &forged)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A body declared larger than the route takes is refused with 413 from
/// its headers, before any of it is read.
#[tokio::test]
async fn a_declared_oversize_body_is_413_at_once() {
    let app = TestApp::new().await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/campaigns")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "100000000")
        .body(Body::from("{}"))
        .unwrap();
    app.send(request)
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "too-large");
    let campaigns = app.get("/v1/campaigns", &app.admin).await;
    assert_eq!(campaigns.body["campaigns"], json!([]));
}
