//! Admin work never stalls the crowd: a publish that must make a large
//! supply of codes answers at once and makes them in slices, while claims
//! on other campaigns go on being answered.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::server::TestServer;

/// Large enough that its codes take many slices, small enough for CI.
const SUPPLY: u64 = 300_000;

async fn claim_round(server: &TestServer, id: &str, round: usize) -> Vec<Duration> {
    let claims = (0..20).map(|index| {
        let server = server.handle();
        let path = format!("/v1/campaigns/{id}/claims");
        async move {
            let sent = Instant::now();
            let (status, body) = server
                .post(
                    &path,
                    &server.service,
                    json!({"user_id": format!("r{round}-u{index}")}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            sent.elapsed()
        }
    });
    futures::future::join_all(claims).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_publish_answers_at_once_and_claims_go_on_meanwhile() {
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let other = server
        .live_campaign(json!({"name": "Meanwhile", "kind": "coupon", "supply": 10_000}))
        .await;
    let idle = claim_round(&server, &other, 0).await;

    let (status, created) = server
        .post(
            "/v1/campaigns",
            &server.admin,
            json!({"name": "Big", "kind": "coupon", "supply": SUPPLY}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let big = created["id"].as_str().unwrap().to_owned();
    let publish = format!("/v1/campaigns/{big}/publish");
    let (status, publishing) = server.post(&publish, &server.admin, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{publishing}");
    assert_eq!(publishing["state"], "draft", "{publishing}");
    assert_eq!(publishing["codes"]["publishing"], true, "{publishing}");
    assert!(publishing["codes"]["count"].as_u64().unwrap() < SUPPLY);
    // Publishing again while it runs answers what is made so far.
    let (status, again) = server.post(&publish, &server.admin, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");

    // Claims on the big one wait for its whole supply; claims elsewhere are
    // answered while its codes are being made.
    let (status, early) = server
        .post(
            &format!("/v1/campaigns/{big}/claims"),
            &server.service,
            json!({"user_id": "eager"}),
        )
        .await;
    assert_ne!(
        status,
        StatusCode::CREATED,
        "claimed before its codes exist: {early}"
    );
    let mut during = Vec::new();
    let mut rounds_while_publishing = 0;
    for round in 1..=5 {
        let latencies = claim_round(&server, &other, round).await;
        let (_, now) = server
            .get(&format!("/v1/campaigns/{big}"), &server.admin)
            .await;
        if now["codes"]["publishing"] == true {
            rounds_while_publishing += 1;
            during.extend(latencies);
        }
    }
    assert!(
        rounds_while_publishing > 0,
        "the claims came after the codes were made"
    );

    let started = Instant::now();
    let live: Value = loop {
        let (status, now) = server
            .get(&format!("/v1/campaigns/{big}"), &server.admin)
            .await;
        assert_eq!(status, StatusCode::OK, "{now}");
        if now["state"] == "live" {
            break now;
        }
        assert!(now["codes"]["publish_failure"].is_null(), "{now}");
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "never went live: {now}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(live["codes"]["count"].as_u64(), Some(SUPPLY), "{live}");
    assert_eq!(live["codes"]["publishing"], false, "{live}");
    let (status, claimed) = server
        .post(
            &format!("/v1/campaigns/{big}/claims"),
            &server.service,
            json!({"user_id": "eager"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{claimed}");
    let worst = |latencies: &[Duration]| latencies.iter().max().copied().unwrap_or_default();
    println!(
        "claims elsewhere: worst {:?} idle, {:?} during {} rounds of the publish; {} codes in {:?} after the answer",
        worst(&idle),
        worst(&during),
        rounds_while_publishing,
        SUPPLY,
        started.elapsed()
    );
}

/// The aim's own supply: with codes made on claim, no code exists before a
/// claim, so its size costs the publish nothing.
const MADE_ON_CLAIM: u64 = 5_000_000;

/// A campaign whose codes are made on claim is live as soon as it is
/// published, whatever its supply; concurrent claims over real TCP get each
/// rank and code once, exactly the supply is claimed and the rest are told
/// sold out; and after a SIGKILL the restarted node knows what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codes_made_on_claim_are_live_at_once_and_stop_at_the_supply() {
    const SMALL: usize = 50;
    const CLAIMERS: usize = 80;
    let directory = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(directory.path(), &[]);
    let (status, created) = server
        .post(
            "/v1/campaigns",
            &server.admin,
            json!({"name": "Huge", "kind": "coupon", "supply": MADE_ON_CLAIM,
                   "codes": {"pattern": "HUGE-????-????-####", "on_claim": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let huge = created["id"].as_str().unwrap().to_owned();
    let sent = Instant::now();
    let (status, published) = server
        .post(
            &format!("/v1/campaigns/{huge}/publish"),
            &server.admin,
            json!({}),
        )
        .await;
    let publish_took = sent.elapsed();
    assert_eq!(status, StatusCode::OK, "live in the answer: {published}");
    assert_eq!(published["state"], "live", "{published}");
    assert_eq!(published["codes"]["on_claim"], true, "{published}");
    assert_eq!(
        published["codes"]["count"], 0,
        "no code before a claim: {published}"
    );
    assert_eq!(published["remaining"], MADE_ON_CLAIM, "{published}");

    // Claimers at once on a small campaign of the same kind: exactly its
    // supply is claimed, each rank and code once; the others are sold out.
    let (status, created) = server
        .post(
            "/v1/campaigns",
            &server.admin,
            json!({"name": "Small", "kind": "coupon", "supply": SMALL,
                   "codes": {"on_claim": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let small = created["id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .post(
            &format!("/v1/campaigns/{small}/publish"),
            &server.admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let claims = (0..CLAIMERS).map(|index| {
        let server = server.handle();
        let path = format!("/v1/campaigns/{small}/claims");
        async move {
            server
                .post(
                    &path,
                    &server.service,
                    json!({"user_id": format!("c{index}")}),
                )
                .await
        }
    });
    let answers = futures::future::join_all(claims).await;
    let mut ranks = Vec::new();
    let mut codes = Vec::new();
    for (status, body) in &answers {
        match *status {
            StatusCode::CREATED => {
                ranks.push(body["rank"].as_u64().unwrap());
                codes.push(body["code"].as_str().unwrap().to_owned());
            }
            StatusCode::GONE => assert_eq!(
                body["type"]
                    .as_str()
                    .map(|kind| kind.ends_with("/sold-out")),
                Some(true),
                "{body}"
            ),
            other => panic!("{other}: {body}"),
        }
    }
    ranks.sort_unstable();
    assert_eq!(
        ranks,
        (1..=SMALL as u64).collect::<Vec<_>>(),
        "each rank once, no more"
    );
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), SMALL, "each code once");
    let exported = server.export(&small).await;
    assert_eq!(exported.len(), SMALL, "an export lists the codes made");
    let (_, report) = server
        .get(&format!("/v1/campaigns/{small}/report"), &server.admin)
        .await;
    assert_eq!(report["issued"], SMALL, "{report}");
    assert_eq!(report["available"], 0, "{report}");

    let (status, first) = server
        .post(
            &format!("/v1/campaigns/{huge}/claims"),
            &server.service,
            json!({"user_id": "first"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["rank"], 1, "{first}");
    assert!(
        first["code"].as_str().unwrap().starts_with("HUGE-"),
        "{first}"
    );

    // SIGKILL: the restarted node counts what is left from the store.
    server.kill();
    let server = TestServer::start(directory.path(), &[]);
    let (_, huge_now) = server
        .get(&format!("/v1/campaigns/{huge}"), &server.admin)
        .await;
    assert_eq!(huge_now["state"], "live", "{huge_now}");
    assert_eq!(huge_now["remaining"], MADE_ON_CLAIM - 1, "{huge_now}");
    assert_eq!(huge_now["codes"]["count"], 1, "{huge_now}");
    let (_, small_now) = server
        .get(&format!("/v1/campaigns/{small}"), &server.admin)
        .await;
    assert_eq!(small_now["sold_out"], true, "{small_now}");
    let (status, late) = server
        .post(
            &format!("/v1/campaigns/{small}/claims"),
            &server.service,
            json!({"user_id": "late"}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{late}");
    println!("a {MADE_ON_CLAIM}-code campaign made on claim was live in {publish_took:?}");
}

/// Codes in the large upload: many slices, seconds of staging even in a
/// debug build, and well inside the upload's time bound there.
const UPLOAD: usize = 60_000;
/// Of which repeated: more than an answer lists.
const REPEATED: usize = 6_000;

async fn upload_csv(server: &TestServer, id: &str, csv: String) -> (StatusCode, Value) {
    let response = server
        .client
        .post(server.url(&format!("/v1/campaigns/{id}/codes")))
        .bearer_auth(&server.admin)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn csv_of(prefix: &str, count: usize) -> String {
    let mut csv = String::from("code\n");
    for index in 0..count {
        csv.push_str(&format!("{prefix}-{index:07}\n"));
    }
    csv
}

/// Rows the campaign holds in the file, and how many lie past its
/// `voucher_count` (staged by an upload, counted by nobody).
fn rows_in_file(directory: &std::path::Path, id: &str) -> (i64, i64, i64) {
    let file = rusqlite::Connection::open_with_flags(
        directory.join("voucherd.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    file.query_row(
        "SELECT campaign.voucher_count, count(voucher.id),
                count(voucher.id) FILTER (WHERE voucher.rank > campaign.voucher_count)
         FROM campaigns AS campaign LEFT JOIN vouchers AS voucher ON voucher.campaign_id = campaign.id
         WHERE campaign.id = ?1 GROUP BY campaign.id",
        [id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .unwrap()
}

/// An upload of 60,000 codes is staged in slices: claims on another
/// campaign are answered meanwhile, the answer tells what was added, and a
/// node SIGKILLed half-way through leaves nothing counted, its campaign
/// free once it restarts and the staged rows removed by the next upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_upload_is_all_or_nothing_even_when_its_node_is_killed() {
    let directory = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(directory.path(), &[]);
    // Unlimited: each claim mints its code, however many rounds there are.
    let other = server
        .live_campaign(json!({"name": "Meanwhile", "kind": "coupon", "supply": null}))
        .await;
    let draft = |name: &'static str| {
        let server = server.handle();
        async move {
            let (status, created) = server
                .post(
                    "/v1/campaigns",
                    &server.admin,
                    json!({"name": name, "kind": "coupon", "supply": UPLOAD + 10, "codes": {"upload": true}}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            created["id"].as_str().unwrap().to_owned()
        }
    };

    // One upload while claims go on: a tenth of its rows are duplicates.
    let book = draft("Book").await;
    let mut csv = csv_of("BOOK", UPLOAD - REPEATED);
    csv.push_str(&csv_of("BOOK", REPEATED)["code\n".len()..]);
    let uploading = tokio::spawn({
        let server = server.handle();
        let book = book.clone();
        async move { upload_csv(&server, &book, csv).await }
    });
    let upload_started = Instant::now();
    let mut rounds = 0;
    while !uploading.is_finished() {
        rounds += 1;
        claim_round(&server, &other, rounds).await;
        assert!(rounds < 10_000, "the upload never answered");
    }
    let (status, added) = uploading.await.unwrap();
    let upload_took = upload_started.elapsed();
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["added"], UPLOAD - REPEATED, "{added}");
    assert_eq!(added["duplicates_count"], REPEATED, "{added}");
    assert_eq!(added["duplicates"].as_array().map(Vec::len), Some(1_000));
    assert_eq!(added["duplicates"][0], "BOOK-0000000", "{added}");
    assert_eq!(added["count"], UPLOAD - REPEATED, "{added}");
    assert!(rounds > 1, "claims were answered while the upload ran");
    let (_, now) = server
        .get(&format!("/v1/campaigns/{book}"), &server.admin)
        .await;
    assert_eq!(now["codes"]["count"], UPLOAD - REPEATED, "{now}");

    // The same again, killed half-way through.
    let cut = draft("Cut").await;
    let cut_csv = csv_of("CUT", UPLOAD);
    let killed = tokio::spawn({
        let server = server.handle();
        let cut = cut.clone();
        let cut_csv = cut_csv.clone();
        async move {
            server
                .client
                .post(server.url(&format!("/v1/campaigns/{cut}/codes")))
                .bearer_auth(&server.admin)
                .header("Content-Type", "text/csv")
                .body(cut_csv)
                .send()
                .await
                .map(|response| response.status())
        }
    });
    // Until the file shows staged rows: the upload is under way.
    let started = Instant::now();
    loop {
        let (_, _, staged) = rows_in_file(directory.path(), &cut);
        if staged > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60) && !killed.is_finished(),
            "the upload never staged a slice"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let answer = killed.await.unwrap();
    assert!(answer.is_err(), "answered before the kill: {answer:?}");
    let (counted, rows, staged) = rows_in_file(directory.path(), &cut);
    assert_eq!(counted, 0, "an interrupted upload counts nothing");
    assert!(staged > 0 && staged == rows, "{rows} rows, {staged} staged");

    let server = TestServer::start(directory.path(), &[]);
    let (_, now) = server
        .get(&format!("/v1/campaigns/{cut}"), &server.admin)
        .await;
    assert_eq!(now["codes"]["count"], 0, "{now}");
    let (status, again) = upload_csv(&server, &cut, cut_csv).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        again["added"], UPLOAD,
        "what the killed upload staged was never the tenant's: {again}"
    );
    assert_eq!(again["duplicates_count"], 0, "{again}");
    assert_eq!(
        rows_in_file(directory.path(), &cut),
        (UPLOAD as i64, UPLOAD as i64, 0),
        "ranks 1..voucher_count and nothing else"
    );
    println!(
        "{rounds} rounds of 20 claims answered during a {UPLOAD}-code upload of {upload_took:?}"
    );
}
