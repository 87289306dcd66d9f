//! The kill loop: claims arrive, the node is SIGKILLed at a moment drawn
//! at random, restarted on the same store, and everything it ever
//! acknowledged is checked; again and again, on each store.
//!
//! `VOUCHERD_KILL_LOOP_KILLS` sets the kills per store (5 here; the
//! benchmark runs 100: `VOUCHERD_KILL_LOOP_KILLS=100 cargo test --release
//! -p voucherd --test it kill_loop -- --nocapture`), and
//! `VOUCHERD_KILL_LOOP_SEED` replays a run; the seed is printed.

use std::path::Path;

use serde_json::{Value, json};

use crate::crash::{assert_acknowledged_are_stored, start_burst_of};
use crate::database::{TestDatabase, server_url};
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
    let seed = setting("VOUCHERD_KILL_LOOP_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
            | 1
    });
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
