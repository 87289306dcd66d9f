//! Every load scenario at a CI size against the real binary: a check of
//! the load generator and of the invariants its verdict proves, not of
//! speed.

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use voucherd_load::{Config, Outcome, ProgressMode, RateCurve, ScenarioKind};

use crate::server::TestServer;

/// One load scenario runs at a time: together they would only crowd the
/// machine's two cores and each other's servers, and the crash and burst
/// tests beside them.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn turn() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// A scenario against a fresh server: `users` arrivals, spread evenly
/// over `seconds`.
fn config(server: &TestServer, scenario: ScenarioKind, users: u64, seconds: u64) -> Config {
    let mut config = Config::new(scenario, &server.base, &server.admin, &server.service);
    config.users = Some(users);
    config.duration = Duration::from_secs(seconds);
    config.progress = ProgressMode::Off;
    config
}

async fn run(config: Config) -> Outcome {
    let outcome = voucherd_load::run(config).await.expect("the run was made");
    assert!(outcome.verdict.passed, "the verdict failed:\n{outcome}");
    outcome
}

fn users(outcome: &Outcome, what: &str) -> u64 {
    outcome.outcomes.get(what).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_answers_every_arrival() {
    let _turn = turn().await;
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let outcome = run(config(&server, ScenarioKind::Baseline, 600, 2)).await;
    assert_eq!(users(&outcome, "served"), 600, "{outcome}");
    assert_eq!(outcome.latency_ms["healthz"].count, 600);
    assert_eq!(outcome.latency_ms["schedule_lag"].count, 600);
}

/// Each user on a connection of its own (a million browsers): a Hot Deal
/// visit's view, claim, checkout and order polls all go on the one
/// connection the user opened, and every request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_connections_of_their_own_are_each_answered() {
    let _turn = turn().await;
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let mut config = config(&server, ScenarioKind::HotDeal, 400, 2);
    config.supply = Some(50);
    config.checkout = false;
    config.connections = voucherd_load::http1::ConnectionModel::PerUser;
    let outcome = run(config).await;
    assert_eq!(outcome.arrivals.dropped_by_client, 0, "{outcome}");
    assert_eq!(
        users(&outcome, "claimed") + users(&outcome, "sold_out"),
        400,
        "{outcome}"
    );
    assert_eq!(users(&outcome, "claimed"), 50, "{outcome}");
    assert_eq!(outcome.config.connections, "per-user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_in_flight_bound_is_dropped_not_delayed() {
    let _turn = turn().await;
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let mut config = config(&server, ScenarioKind::Baseline, 2_000, 1);
    config.rate_curve = Some(RateCurve::constant(2_000.0));
    config.in_flight_max = 1;
    let outcome = voucherd_load::run(config).await.expect("the run was made");
    let arrivals = outcome.arrivals;
    assert_eq!(arrivals.scheduled, 2_000);
    assert!(arrivals.dropped_by_client > 0, "{outcome}");
    // Every arrival starts; each user's one request is sent or dropped.
    assert_eq!(arrivals.started, 2_000);
    assert_eq!(
        users(&outcome, "dropped_by_client") + users(&outcome, "served"),
        2_000
    );
    assert_eq!(
        users(&outcome, "dropped_by_client"),
        arrivals.dropped_by_client
    );
    // A dropped request is load the run did not apply: the run fails.
    assert!(!outcome.verdict.passed, "{outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_deal_reservations_sell_exactly_the_supply_by_tier() {
    let _turn = turn().await;
    let directory = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let mut config = config(&server, ScenarioKind::HotDeal, 1_200, 2);
    config.supply = Some(200);
    config.checkout = false;
    config.out = Some(out.path().to_owned());
    let outcome = run(config).await;
    assert_eq!(users(&outcome, "claimed"), 200, "{outcome}");
    assert_eq!(users(&outcome, "sold_out"), 1_000, "{outcome}");
    let tiers = outcome
        .verdict
        .checks
        .iter()
        .find(|check| check.name == "tiers")
        .expect("a tiers check");
    assert!(tiers.detail.contains("10 / 90 / 100"), "{}", tiers.detail);

    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("result.json")).unwrap()).unwrap();
    assert_eq!(written["scenario"], "hot-deal");
    assert_eq!(written["verdict"]["passed"], true);
    assert_eq!(written["answers"]["claim"]["201"], 200);
    assert!(!written["series"].as_array().unwrap().is_empty());
    let chart = std::fs::read_to_string(out.path().join("chart.svg")).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("<path d=\"M"),
        "{chart}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_login_grants_exactly_the_supply_once_each() {
    let _turn = turn().await;
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let mut config = config(&server, ScenarioKind::FirstLogin, 600, 2);
    config.supply = Some(100);
    config.repeat_login_percent = 25;
    let outcome = run(config).await;
    assert_eq!(users(&outcome, "claimed"), 100, "{outcome}");
    assert_eq!(users(&outcome, "sold_out"), 500, "{outcome}");
    assert!(
        outcome.answers["login"]["200"] > 600,
        "some users logged in twice: {outcome}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_coupons_give_each_user_at_most_one_a_day() {
    let _turn = turn().await;
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let mut config = config(&server, ScenarioKind::DailyCoupons, 400, 2);
    config.supply = Some(90);
    let outcome = run(config).await;
    assert_eq!(users(&outcome, "claimed"), 90, "{outcome}");
    assert_eq!(users(&outcome, "sold_out"), 310, "{outcome}");
    assert_eq!(outcome.campaigns.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_gives_every_buyer_the_course_while_the_admin_works() {
    let _turn = turn().await;
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let mut config = config(&server, ScenarioKind::Enrollment, 300, 2);
    config.checkout = false;
    config.admin_interval = Duration::from_millis(100);
    let outcome = run(config).await;
    assert_eq!(users(&outcome, "claimed"), 300, "{outcome}");
    for operation in ["admin_create", "admin_publish", "admin_report"] {
        assert!(
            outcome.latency_ms[operation].count > 0,
            "{operation} timed on its own: {outcome}"
        );
    }
}

/// Three simulated gateways at 100 charges a second, the first preferred;
/// the server is started with them.
async fn with_gateways(
    directory: &std::path::Path,
) -> (TestServer, Vec<voucherd_gateway_sim::SimulatorHandle>) {
    let mut gateways = Vec::new();
    let mut flags = Vec::new();
    for (index, name) in ["alpha", "beta", "gamma"].into_iter().enumerate() {
        let gateway =
            voucherd_gateway_sim::Simulator::start(voucherd_gateway_sim::SimulatorConfig {
                rate_per_second: 100,
                latency_ms: 5..=30,
                seed: Some(40 + index as u64),
                timeout_hold: Duration::from_secs(3),
                ..voucherd_gateway_sim::SimulatorConfig::default()
            })
            .await
            .expect("a gateway simulator");
        flags.push("--gateway".to_owned());
        flags.push(format!(
            "name={name},url={},rate=100,priority={}",
            gateway.url(),
            index + 1
        ));
        gateways.push(gateway);
    }
    flags.extend(["--gateway-timeout-ms".to_owned(), "1000".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    (TestServer::start(directory, &flags), gateways)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_deal_checkouts_settle_through_three_gateways_once_each() {
    let _turn = turn().await;
    let directory = tempfile::tempdir().unwrap();
    let (server, gateways) = with_gateways(directory.path()).await;
    let mut config = config(&server, ScenarioKind::HotDeal, 1_000, 2);
    config.supply = Some(300);
    config.checkout = true;
    config.gateways = gateways.iter().map(|gateway| gateway.url()).collect();
    let outcome = run(config).await;
    let (paid, failed) = (users(&outcome, "paid"), users(&outcome, "payment_failed"));
    assert!((250..=300).contains(&paid), "{outcome}");
    assert!(
        paid + failed >= 300,
        "every reservation was checked out and settled; a failed one went to a later buyer: {outcome}"
    );
    for check in [
        "paid_orders_have_vouchers",
        "issued_only_when_paid",
        "gateway_ledgers",
    ] {
        assert!(
            outcome
                .verdict
                .checks
                .iter()
                .any(|found| found.name == check && found.passed),
            "{check}: {outcome}"
        );
    }
}
