//! The kill loop: claims arrive, the node is SIGKILLed at a moment drawn
//! at random, restarted on the same store, and everything it ever
//! acknowledged is checked; again and again, on each store. The paid loop
//! does the same to buyers who reserve and check out while three simulated
//! gateways charge them, on one SQLite node and on two PostgreSQL nodes.
//!
//! `VOUCHERD_KILL_LOOP_KILLS` sets the kills per store (5 here; the
//! benchmark runs 100: `VOUCHERD_KILL_LOOP_KILLS=100 cargo test --release
//! -p voucherd --test it kill_loop -- --nocapture`), and
//! `VOUCHERD_KILL_LOOP_SEED` replays a run; the seed is printed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use voucherd_gateway_sim::{ChargeStatus, SimulatorHandle};

use crate::crash::{assert_acknowledged_are_stored, start_burst_of};
use crate::database::{TestDatabase, server_url};
use crate::payments::{RATE, gateway_flags, gateways, orders, sale, wait_settled};
use crate::server::TestServer;

const KILLS_DEFAULT: usize = 5;
/// Claims each round may send; the kill lands after a number of 201s
/// drawn from `KILL_AFTER_MIN..KILL_AFTER_MIN + KILL_AFTER_SPREAD`.
const ROUND_CLAIMS: usize = 4_000;
const KILL_AFTER_MIN: usize = 50;
const KILL_AFTER_SPREAD: u64 = 1_500;

fn setting(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

fn seed() -> u64 {
    setting("VOUCHERD_KILL_LOOP_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
            | 1
    })
}

/// xorshift64*: enough to spread the kills, and replayable from its seed.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What the loop proved: kills made, claims acknowledged before them.
struct Tally {
    kills: usize,
    acknowledged: usize,
}

async fn kill_loop(store: &str, directory: &Path, extra: &[&str]) -> Tally {
    let kills = setting("VOUCHERD_KILL_LOOP_KILLS").map_or(KILLS_DEFAULT, |kills| kills as usize);
    let seed = seed();
    println!("kill loop on {store}: {kills} kills, VOUCHERD_KILL_LOOP_SEED={seed}");
    let mut draws = Draws(seed);
    let mut server = TestServer::start(directory, extra);
    // Enough for every round's claims, no more: publishing makes every
    // voucher's row first.
    let supply = kills * (KILL_AFTER_MIN + KILL_AFTER_SPREAD as usize + 500) + 1_000;
    let id = server
        .live_campaign(json!({"name": "Kill loop", "kind": "coupon", "supply": supply}))
        .await;
    let mut acknowledged: Vec<Value> = Vec::new();
    for round in 0..kills {
        let kill_after = KILL_AFTER_MIN + (draws.next() % KILL_AFTER_SPREAD) as usize;
        let mut burst = start_burst_of(&server, &id, &format!("kill-{round}"), ROUND_CLAIMS, 200);
        let _ = burst.count.wait_for(|count| *count >= kill_after).await;
        server.kill();
        for task in burst.tasks {
            task.await.unwrap();
        }
        acknowledged.extend(burst.acknowledged.lock().unwrap().iter().cloned());
        server = TestServer::start(directory, extra);
        // Every claim acknowledged in every round so far, with its code and
        // rank; ranks 1..=n each once; nobody twice.
        let stored = assert_acknowledged_are_stored(&server, &id, &acknowledged).await;
        assert!(stored >= acknowledged.len(), "{store}, round {round}");
    }
    Tally {
        kills,
        acknowledged: acknowledged.len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_loop_on_the_embedded_store_loses_nothing_acknowledged() {
    let directory = tempfile::tempdir().unwrap();
    let tally = kill_loop("sqlite", directory.path(), &[]).await;
    println!(
        "sqlite: {} kills, {} acknowledged claims checked after each, 0 lost",
        tally.kills, tally.acknowledged
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_loop_on_postgresql_loses_nothing_acknowledged() {
    let database = TestDatabase::create(&server_url()).await;
    let directory = tempfile::tempdir().unwrap();
    let tally = kill_loop(
        "postgres",
        directory.path(),
        &["--database-url", &database.url],
    )
    .await;
    println!(
        "postgres: {} kills, {} acknowledged claims checked after each, 0 lost",
        tally.kills, tally.acknowledged
    );
}

/// Buyers each round may send; the kill lands after a number of accepted
/// checkouts drawn from `PAID_KILL_AFTER_MIN..+PAID_KILL_AFTER_SPREAD`.
const ROUND_BUYERS: usize = 600;
const PAID_KILL_AFTER_MIN: usize = 20;
const PAID_KILL_AFTER_SPREAD: u64 = 300;

/// What buyers were told: reservations (201) and accepted checkouts (202).
#[derive(Default)]
pub struct Told {
    pub reserved: Vec<Value>,
    pub orders: Vec<String>,
}

/// Buyers `{prefix}-{index}` reserve on one node and check out on the next,
/// 100 at a time; whatever a killed node left unanswered is not an answer.
pub fn start_buyers(
    nodes: &[TestServer],
    id: &str,
    prefix: &str,
) -> (
    Arc<Mutex<Told>>,
    watch::Receiver<usize>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let told = Arc::new(Mutex::new(Told::default()));
    let (counter, count) = watch::channel(0);
    let counter = Arc::new(counter);
    let gate = Arc::new(Semaphore::new(100));
    let tasks = (0..ROUND_BUYERS)
        .map(|index| {
            let claiming = nodes[index % nodes.len()].handle();
            let paying = nodes[(index + 1) % nodes.len()].handle();
            let (told, counter, gate) = (told.clone(), counter.clone(), gate.clone());
            let (user, claims) = (
                format!("{prefix}-{index}"),
                format!("/v1/campaigns/{id}/claims"),
            );
            tokio::spawn(async move {
                let _slot = gate.acquire().await.unwrap();
                let Ok(response) = claiming
                    .client
                    .post(claiming.url(&claims))
                    .bearer_auth(&claiming.service)
                    .json(&json!({"user_id": user}))
                    .send()
                    .await
                else {
                    return;
                };
                if response.status() != StatusCode::CREATED {
                    return;
                }
                let Ok(reserved) = response.json::<Value>().await else {
                    return;
                };
                let reservation = reserved["reservation_id"].as_str().unwrap().to_owned();
                told.lock().unwrap().reserved.push(reserved);
                let checkout = format!("/v1/reservations/{reservation}/checkout");
                let Ok(response) = paying
                    .client
                    .post(paying.url(&checkout))
                    .bearer_auth(&paying.service)
                    .header("idempotency-key", format!("checkout-{user}"))
                    .json(&json!({"email": format!("{user}@example.com"),
                        "card": {"number": "4242424242424242", "exp_month": 12,
                                 "exp_year": 2030, "cvc": "123", "name": "Buyer"}}))
                    .send()
                    .await
                else {
                    return;
                };
                if response.status() != StatusCode::ACCEPTED {
                    return;
                }
                let Ok(accepted) = response.json::<Value>().await else {
                    return;
                };
                let total = {
                    let mut told = told.lock().unwrap();
                    told.orders
                        .push(accepted["order_id"].as_str().unwrap().to_owned());
                    told.orders.len()
                };
                counter.send_replace(total);
            })
        })
        .collect();
    (told, count, tasks)
}

/// What the paid loop proved.
struct PaidTally {
    kills: usize,
    reserved: usize,
    orders: usize,
    paid: usize,
    captures: usize,
}

/// The paid kill loop on `nodes.len()` nodes of one store: each round,
/// buyers reserve and check out, one node is SIGKILLed, and restarted.
/// Then, with every payment settled: every acknowledged reservation is held
/// by its buyer at its rank, no rank twice; every accepted order paid with
/// its voucher issued and its code shown, or failed with none; no voucher
/// issued unpaid; no charge captured twice at any gateway.
async fn paid_kill_loop(
    store: &str,
    directory: &Path,
    extra: &[&str],
    node_count: usize,
) -> PaidTally {
    let kills = setting("VOUCHERD_KILL_LOOP_KILLS").map_or(KILLS_DEFAULT, |kills| kills as usize);
    let seed = seed();
    println!("paid kill loop on {store}: {kills} kills, VOUCHERD_KILL_LOOP_SEED={seed}");
    let mut draws = Draws(seed);
    let gateways = gateways(seed % 1_000).await;
    // Nodes share each gateway's rate through the database.
    let mut flags = gateway_flags(&gateways, RATE);
    flags.extend(extra.iter().map(|flag| (*flag).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut nodes: Vec<TestServer> = (0..node_count)
        .map(|_| TestServer::start(directory, &flags))
        .collect();
    let id = sale(&nodes[0], kills * ROUND_BUYERS + 100).await;
    let mut told = Told::default();
    for round in 0..kills {
        let kill_after = PAID_KILL_AFTER_MIN + (draws.next() % PAID_KILL_AFTER_SPREAD) as usize;
        let victim = round % node_count;
        let (round_told, mut count, tasks) = start_buyers(&nodes, &id, &format!("paid-{round}"));
        let _ = tokio::time::timeout(
            Duration::from_secs(60),
            count.wait_for(|count| *count >= kill_after),
        )
        .await;
        nodes[victim].kill();
        for task in tasks {
            task.await.unwrap();
        }
        let mut round_told = std::mem::take(&mut *round_told.lock().unwrap());
        told.reserved.append(&mut round_told.reserved);
        told.orders.append(&mut round_told.orders);
        nodes[victim] = TestServer::start(directory, &flags);
    }
    let node = Arc::new(nodes[0].handle());
    wait_settled(&node, &id, Duration::from_secs(300)).await;
    assert_reservations_held(&node, &id, &told.reserved).await;
    let (paid, captures) = assert_paid_exactly_once(&node, &id, &told.orders, &gateways).await;
    PaidTally {
        kills,
        reserved: told.reserved.len(),
        orders: told.orders.len(),
        paid,
        captures,
    }
}

/// Every acknowledged reservation is its buyer's voucher at its rank (paid
/// or not); no rank is held twice.
pub async fn assert_reservations_held(node: &TestServer, id: &str, reserved: &[Value]) {
    let stored = node.export(id).await;
    let held: Vec<&Value> = stored
        .iter()
        .filter(|voucher| voucher["user_id"].is_string())
        .collect();
    let ranks: HashSet<u64> = held
        .iter()
        .map(|voucher| voucher["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks.len(), held.len(), "no rank held twice");
    let by_user: HashMap<&str, &Value> = held
        .iter()
        .map(|voucher| (voucher["user_id"].as_str().unwrap(), *voucher))
        .collect();
    assert_eq!(by_user.len(), held.len(), "nobody holds two");
    for voucher in reserved {
        let user = voucher["user_id"].as_str().unwrap();
        // A reservation nobody paid for expires and frees its rank; one
        // that was paid for, or is still held, keeps it.
        if let Some(stored) = by_user.get(user) {
            assert_eq!(stored["rank"], voucher["rank"], "{user}'s rank");
        }
    }
    let issued = held
        .iter()
        .filter(|voucher| voucher["state"] == "issued")
        .count();
    assert!(issued > 0 || reserved.is_empty(), "something was bought");
}

/// Accepted orders settled once each; paid ones show their voucher; the
/// captures at the gateways are the paid orders, each once, and the report's
/// paid and issued counts agree with them. Answers (paid, captures).
pub async fn assert_paid_exactly_once(
    node: &Arc<TestServer>,
    id: &str,
    order_ids: &[String],
    gateways: &[SimulatorHandle],
) -> (usize, usize) {
    let orders = orders(node, order_ids).await;
    let mut paid = HashSet::new();
    for order in &orders {
        match order["status"].as_str() {
            Some("paid") => {
                assert_eq!(order["voucher"]["state"], "issued", "{order}");
                assert!(
                    order["voucher"]["code"].is_string(),
                    "a paid order shows its code"
                );
                paid.insert(order["order_id"].as_str().unwrap().to_owned());
            }
            Some("failed") => assert_eq!(order["voucher"], json!(null), "{order}"),
            other => panic!("an accepted order is {other:?}: {order}"),
        }
    }
    let mut captured: HashMap<String, usize> = HashMap::new();
    for gateway in gateways {
        for charge in gateway.ledger() {
            if charge.status == ChargeStatus::Captured {
                *captured.entry(charge.idempotency_key).or_default() += 1;
            }
        }
    }
    let twice: Vec<&String> = captured
        .iter()
        .filter(|(_, times)| **times > 1)
        .map(|(key, _)| key)
        .collect();
    assert!(twice.is_empty(), "captured twice: {twice:?}");
    for order in &paid {
        assert!(
            captured.contains_key(order),
            "paid order {order} has no capture"
        );
    }
    // Orders whose 202 the kill swallowed are paid too, unseen by the
    // buyers here; the store's own counts must still match the captures.
    let (_, report) = node
        .get(&format!("/v1/campaigns/{id}/report"), &node.admin)
        .await;
    assert_eq!(
        report["orders"]["paid"].as_u64(),
        Some(captured.len() as u64),
        "{report}"
    );
    assert_eq!(
        report["issued_total"].as_u64(),
        Some(captured.len() as u64),
        "no voucher issued unpaid: {report}"
    );
    (paid.len(), captured.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_kill_loop_on_the_embedded_store_charges_each_order_once() {
    let directory = tempfile::tempdir().unwrap();
    let tally = paid_kill_loop("sqlite", directory.path(), &[], 1).await;
    println!(
        "sqlite paid: {} kills, {} reservations and {} accepted orders checked, {} paid, {} captures, 0 lost, 0 captured twice",
        tally.kills, tally.reserved, tally.orders, tally.paid, tally.captures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_kill_loop_on_two_postgresql_nodes_charges_each_order_once() {
    let database = TestDatabase::create(&server_url()).await;
    let directory = tempfile::tempdir().unwrap();
    let tally = paid_kill_loop(
        "postgres, two nodes",
        directory.path(),
        &["--database-url", &database.url],
        2,
    )
    .await;
    println!(
        "postgres paid (two nodes): {} kills, {} reservations and {} accepted orders checked, {} paid, {} captures, 0 lost, 0 captured twice",
        tally.kills, tally.reserved, tally.orders, tally.paid, tally.captures
    );
}
