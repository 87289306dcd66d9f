//! Campaign administration: codes, lifecycle, live list, report, export.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use crate::app::{TestApp, coupon};

async fn upload_csv(app: &TestApp, id: &str, csv: &str) -> crate::app::TestResponse {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/campaigns/{id}/codes"))
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
        .header(header::CONTENT_TYPE, "text/csv")
        .body(Body::from(csv.to_owned()))
        .unwrap();
    app.send(request).await
}

#[tokio::test]
async fn uploaded_codes_report_duplicates_and_gate_publishing() {
    let app = TestApp::new().await;
    let id = app
        .create_campaign(json!({"name": "Partner book", "kind": "coupon", "supply": 4, "codes": {"upload": true}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.publish(&id)
        .await
        .assert_problem(StatusCode::CONFLICT, "codes-missing");
    let codes = format!("/v1/campaigns/{id}/codes");
    let added = app
        .post(
            &codes,
            &app.admin,
            json!({"codes": ["BOOK-1", "BOOK-2", "book-1"]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    assert_eq!(
        added.body,
        json!({"added": 2, "duplicates": ["BOOK-1"], "duplicates_count": 1, "count": 2, "supply": 4})
    );
    let csv = upload_csv(&app, &id, "code\nBOOK-2\nBOOK-3,extra column\n\"BOOK-4\"\n").await;
    assert_eq!(
        csv.body,
        json!({"added": 2, "duplicates": ["BOOK-2"], "duplicates_count": 1, "count": 4, "supply": 4}),
        "{}",
        csv.text
    );
    let over = app
        .post(&codes, &app.admin, json!({"codes": ["BOOK-5"]}))
        .await;
    over.assert_problem(StatusCode::CONFLICT, "codes-refused");
    app.post(&codes, &app.admin, json!({"generate": 1}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(app.publish(&id).await.status, StatusCode::OK);
    app.post(&codes, &app.admin, json!({"codes": ["LATE"]}))
        .await
        .assert_problem(StatusCode::CONFLICT, "codes-refused");
    let claimed = app.claim(&id, "reader").await;
    assert_eq!(
        claimed.body["code"], "BOOK-1",
        "rank 1 is the first uploaded code"
    );
}

#[tokio::test]
async fn publishing_generates_the_missing_codes_from_the_pattern() {
    let app = TestApp::new().await;
    let created = app
        .create_campaign(json!({"name": "Generated", "kind": "coupon", "supply": 300, "codes": {"pattern": "GEN-####-??"}}))
        .await;
    assert_eq!(created["state"], "draft");
    let id = created["id"].as_str().unwrap();
    let some = app
        .post(
            &format!("/v1/campaigns/{id}/codes"),
            &app.admin,
            json!({"generate": 100}),
        )
        .await;
    assert_eq!(some.body["count"], 100);
    let published = app.publish(id).await;
    assert_eq!(
        (
            published.body["state"].clone(),
            published.body["codes"]["count"].clone()
        ),
        (json!("live"), json!(300))
    );
    app.publish(id)
        .await
        .assert_problem(StatusCode::CONFLICT, "wrong-state");
    let page = app
        .get(
            &format!("/v1/campaigns/{id}/vouchers?limit=300"),
            &app.admin,
        )
        .await;
    let vouchers = page.body["vouchers"].as_array().unwrap();
    let mut codes: Vec<&str> = vouchers
        .iter()
        .map(|voucher| voucher["code"].as_str().unwrap())
        .collect();
    assert!(
        codes
            .iter()
            .all(|code| code.len() == 11 && code.starts_with("GEN-"))
    );
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), 300, "every code distinct");
}

#[tokio::test]
async fn the_live_list_shows_claimable_campaigns_with_what_is_left_and_the_current_price() {
    let app = TestApp::new().await;
    let deal = app
        .live_campaign(json!({"name": "Deal", "kind": "sale", "supply": 3, "price": {"amount": 1000, "currency": "EUR"},
            "tiers": [{"until_rank": 1, "discount_percent": 50}]}))
        .await;
    let later = app
        .live_campaign(json!({"name": "Later", "kind": "coupon", "supply": 3, "starts_at": "2026-12-02T00:00:00Z"}))
        .await;
    app.create_campaign(coupon(3)).await;
    let live = app.get("/v1/campaigns/live", &app.service).await;
    let campaigns = live.body["campaigns"].as_array().unwrap();
    assert_eq!(campaigns.len(), 1);
    assert_eq!(campaigns[0]["id"], deal);
    assert_eq!(
        campaigns[0]["current_offer"],
        json!({"rank": 1, "discount_percent": 50, "price": {"amount": 500, "currency": "EUR"}})
    );
    app.claim(&deal, "first").await;
    let live = app.get("/v1/campaigns/live", &app.service).await;
    assert_eq!(live.body["campaigns"][0]["remaining"], 2);
    assert_eq!(
        live.body["campaigns"][0]["current_offer"]["price"]["amount"],
        1000
    );
    assert_ne!(live.body["campaigns"][0]["id"], later);
}

#[tokio::test]
async fn the_report_counts_by_state_and_tier_and_the_export_pages_by_rank() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(json!({"name": "Tiers", "kind": "coupon", "supply": 10,
            "tiers": [{"until_rank": 2, "discount_percent": 90}, {"until_rank": 5, "discount_percent": 70}]}))
        .await;
    for user in 0..6 {
        app.claim(&id, &format!("u{user}")).await;
    }
    let report = app.report(&id).await;
    assert_eq!(
        (report["issued"].clone(), report["available"].clone()),
        (json!(6), json!(4))
    );
    let tiers: Vec<(u64, u64)> = report["by_tier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tier| {
            (
                tier["discount_percent"].as_u64().unwrap(),
                tier["issued"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tiers, [(90, 2), (70, 3), (0, 1)]);
    assert_eq!(report["claims_per_second"][0]["claims"], 6);
    let first = app
        .get(&format!("/v1/campaigns/{id}/vouchers?limit=4"), &app.admin)
        .await;
    assert_eq!(first.body["next_after_rank"], 4);
    let rest = app
        .get(
            &format!("/v1/campaigns/{id}/vouchers?after_rank=4&limit=10"),
            &app.admin,
        )
        .await;
    assert_eq!(rest.body["vouchers"].as_array().unwrap().len(), 6);
    assert_eq!(rest.body["next_after_rank"], json!(null));
    let csv = app
        .get(
            &format!("/v1/campaigns/{id}/vouchers?format=csv&limit=2"),
            &app.admin,
        )
        .await;
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(
        lines[0],
        "rank,code,state,user_id,claimed_at,issued_at,expires_at,redemptions"
    );
    assert!(
        lines[1].starts_with("1,") && lines[1].contains(",issued,u0,"),
        "{}",
        lines[1]
    );
    app.get(&format!("/v1/campaigns/{id}/vouchers"), &app.service)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
}

/// Each uploaded CSV, and what the campaign must hold after it: the codes
/// exactly as written, or nothing and the line that was refused.
#[tokio::test]
async fn csv_uploads_store_each_row_exactly_or_refuse_it_by_line() {
    let app = TestApp::new().await;
    let check = async |csv: &str, stored: &[&str], refused_at: Option<&str>| {
        let id = app
            .create_campaign(
                json!({"name": "CSV", "kind": "coupon", "supply": 20, "codes": {"upload": true}}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let answer = upload_csv(&app, &id, csv).await;
        match refused_at {
            Some(line) => {
                answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
                assert!(answer.text.contains(line), "{csv:?}: {}", answer.text);
            }
            None => assert_eq!(answer.status, StatusCode::OK, "{csv:?}: {}", answer.text),
        }
        let export = app
            .get(
                &format!("/v1/campaigns/{id}/vouchers?limit=100"),
                &app.admin,
            )
            .await;
        let mut held: Vec<String> = export.body["vouchers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|voucher| voucher["code"].as_str().unwrap().to_owned())
            .collect();
        held.sort();
        assert_eq!(held, stored, "{csv:?}");
    };
    // A quoted comma is part of the code; `""` is one quote.
    let quoted: String = (0..10).map(|digit| format!("\"KQ,{digit}\"\n")).collect();
    let all_quoted: Vec<String> = (0..10).map(|digit| format!("KQ,{digit}")).collect();
    let all_quoted: Vec<&str> = all_quoted.iter().map(String::as_str).collect();
    check(&quoted, &all_quoted, None).await;
    // A UTF-8 byte order mark, CRLF, bare CR, a header naming the column.
    check(
        "\u{feff}code\r\nBOM-1\r\nBOM-2\r\n",
        &["BOM-1", "BOM-2"],
        None,
    )
    .await;
    check("CR-1\rCR-2\r", &["CR-1", "CR-2"], None).await;
    check(
        "note,code\nfirst,COL-1\nsecond,COL-2\n",
        &["COL-1", "COL-2"],
        None,
    )
    .await;
    // `""` inside quotes is one quote of the code.
    check("OK-2\n\"AB\"\"4\"\n", &["AB\"4", "OK-2"], None).await;
    // Refused by line, nothing stored: an unclosed quote, a code with a
    // space.
    check("OK-1\n\"QX1\n", &[], Some("line 2")).await;
    check("OK-3\nOK-4\n\"HAS SPACE\"\n", &[], Some("line 3")).await;
    // The line is the one the row starts on whatever ends the lines, and
    // blank lines count: the csv crate alone counts only `\n`, naming
    // every row of a bare-CR file line 1 and each row after a CRLF by the
    // line before it.
    check("OK-5\r\nOK-6\r\nBAD 7\r\n", &[], Some("line 3")).await;
    check("OK-8\rOK-9\rBAD 10\r", &[], Some("line 3")).await;
    check("\n\nBAD 11\n", &[], Some("line 3")).await;
    check(
        "note,code\n\"two\nlines\",OK-12\r\n\r\n,BAD 13\n",
        &[],
        Some("line 5"),
    )
    .await;
    // One byte order mark is taken off, not two: after the first, U+FEFF
    // is part of the row (and no code holds it).
    check("\u{feff}\u{feff}code\nOK-14\n", &[], Some("line 1")).await;
    check("\u{feff}\r\nBAD 15\n", &[], Some("line 2")).await;
}
