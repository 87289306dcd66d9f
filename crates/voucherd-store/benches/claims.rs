//! Committed claims per second, one claim per `claim_batch` call (one
//! transaction per claim, as a naive engine would) against batches of 256,
//! with 1 and 8 concurrent callers, on PostgreSQL and on SQLite.
//!
//! With `VOUCHERD_BENCH_WRITER=<batches>` it runs only the SQLite writer's
//! cost: that many batches of 64 claims, one after the other, and prints
//! the time per claim. Under `valgrind --tool=callgrind` the difference
//! between two such runs of different sizes, divided by the claims between
//! them, is the instructions a claim costs, whatever the machine is doing.
//!
//! `cargo bench -p voucherd-store --bench claims` needs a PostgreSQL server:
//! `VOUCHERD_BENCH_DATABASE_URL` (or `VOUCHERD_TEST_DATABASE_URL`), a local
//! one with trust authentication by default. It makes a database of its own
//! and drops it at the end.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;
use voucherd_core::campaign::{CampaignDraft, Lifecycle};
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, TenantId, UserId};
use voucherd_core::{TimeZone, Timestamp};
use voucherd_store::model::{
    AddCodesOutcome, CampaignRecord, ClaimOutcome, ClaimRequest, LifecycleOutcome, Tenant,
};
use voucherd_store::postgres::{PostgresConfig, PostgresStore};
use voucherd_store::sqlite::{SqliteConfig, SqliteStore};
use voucherd_store::{OsEntropy, Store};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const BATCH_SIZES: [usize; 2] = [1, 256];
const CALLERS: [usize; 2] = [1, 8];
/// Claims per run: enough for a few seconds at each batch size.
const CLAIMS_ONE_PER_CALL: usize = 2_000;
const CLAIMS_BATCHED: usize = 25_600;
/// Codes per add_codes call while setting up.
const CODES_PER_UPLOAD: usize = 5_000;

struct Run {
    backend: &'static str,
    batch: usize,
    callers: usize,
    claims: usize,
    elapsed: Duration,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Some(batches) = std::env::var("VOUCHERD_BENCH_WRITER")
        .ok()
        .and_then(|batches| batches.parse::<usize>().ok())
    {
        runtime.block_on(writer_cost(batches));
        return;
    }
    let runs = runtime.block_on(run_all());
    println!();
    println!(
        "{:<10} {:>6} {:>8} {:>8} {:>9} {:>12}",
        "backend", "batch", "callers", "claims", "seconds", "claims/s"
    );
    for run in runs {
        let seconds = run.elapsed.as_secs_f64();
        println!(
            "{:<10} {:>6} {:>8} {:>8} {:>9.2} {:>12.0}",
            run.backend,
            run.batch,
            run.callers,
            run.claims,
            seconds,
            run.claims as f64 / seconds
        );
    }
}

/// Batches of 64 claims on SQLite, one at a time: the writer's cost a claim.
async fn writer_cost(batches: usize) {
    const BATCH: usize = 64;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&SqliteConfig::new(directory.path().join("bench.sqlite3")))
            .expect("opening SQLite"),
    );
    let tenant_id = tenant(&store).await;
    // The same supply whatever the batches, so that two runs differ by
    // their claims only.
    const SUPPLY: usize = 400 * BATCH;
    let claims = batches.min(SUPPLY / BATCH) * BATCH;
    let campaign = campaign(&store, tenant_id, SUPPLY).await;
    let elapsed = claim_everything(&store, &campaign, claims, BATCH, 1).await;
    println!(
        "sqlite writer: {claims} claims in batches of {BATCH}, {:.1} µs a claim",
        elapsed.as_secs_f64() * 1e6 / claims.max(1) as f64
    );
}

async fn run_all() -> Vec<Run> {
    let mut runs = Vec::new();
    let database = BenchDatabase::create().await;
    let postgres: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(&PostgresConfig::new(database.url.clone()))
            .await
            .expect("connecting to PostgreSQL"),
    );
    runs.extend(run_backend("postgres", &postgres).await);
    drop(postgres);
    database.drop().await;

    let directory = tempfile::tempdir().expect("a temporary directory");
    let sqlite: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&SqliteConfig::new(directory.path().join("bench.sqlite3")))
            .expect("opening SQLite"),
    );
    runs.extend(run_backend("sqlite", &sqlite).await);
    runs
}

async fn run_backend(backend: &'static str, store: &Arc<dyn Store>) -> Vec<Run> {
    let tenant_id = tenant(store).await;
    let mut runs = Vec::new();
    for batch in BATCH_SIZES {
        for callers in CALLERS {
            let claims = if batch == 1 {
                CLAIMS_ONE_PER_CALL
            } else {
                CLAIMS_BATCHED
            };
            let campaign = campaign(store, tenant_id, claims).await;
            eprintln!("{backend}: {claims} claims, batches of {batch}, {callers} callers");
            let elapsed = claim_everything(store, &campaign, claims, batch, callers).await;
            runs.push(Run {
                backend,
                batch,
                callers,
                claims,
                elapsed,
            });
        }
    }
    runs
}

/// Claims the whole supply with `callers` tasks, each sending its share in
/// batches; answers the time until every claim is committed.
async fn claim_everything(
    store: &Arc<dyn Store>,
    campaign: &CampaignRecord,
    claims: usize,
    batch: usize,
    callers: usize,
) -> Duration {
    let now = Timestamp::now();
    let share = claims / callers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (store, campaign) = (store.clone(), campaign.clone());
            tokio::spawn(async move {
                let users: Vec<usize> = (0..share).collect();
                for chunk in users.chunks(batch) {
                    let requests: Vec<ClaimRequest> = chunk
                        .iter()
                        .map(|index| {
                            let user = UserId::parse(&format!("u{caller}-{index}")).unwrap();
                            ClaimRequest::new(&campaign, user, &TimeZone::UTC, now)
                        })
                        .collect();
                    let outcomes = store.claim_batch(requests, now).await.expect("a batch");
                    for outcome in outcomes {
                        assert!(matches!(outcome, Ok(ClaimOutcome::Claimed(_))));
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a caller");
    }
    started.elapsed()
}

async fn tenant(store: &Arc<dyn Store>) -> TenantId {
    let tenant = Tenant {
        id: TenantId::from_uuid(uuid::Uuid::new_v4()),
        name: "bench".into(),
        signing_key: vec![7; 32],
        time_zone: "UTC".into(),
        rate_limit_per_second: None,
        key_id: "k1".into(),
        retired_keys: Vec::new(),
        public_keys: Vec::new(),
        created_at: Timestamp::now(),
    };
    store.insert_tenant(&tenant).await.expect("a tenant");
    tenant.id
}

/// A live coupon campaign whose supply is `supply` generated codes.
async fn campaign(store: &Arc<dyn Store>, tenant_id: TenantId, supply: usize) -> CampaignRecord {
    let draft = CampaignDraft {
        name: Some("bench".into()),
        kind: Some("coupon".into()),
        supply: Some(Some(supply as i64)),
        code_pattern: Some("B-????-????-????".into()),
        ..CampaignDraft::default()
    };
    let campaign = CampaignRecord {
        id: CampaignId::from_uuid(uuid::Uuid::new_v4()),
        tenant_id,
        spec: draft.validate().expect("a valid campaign"),
        lifecycle: Lifecycle::Draft,
        voucher_count: 0,
        created_at: Timestamp::now(),
        published_at: None,
    };
    store.insert_campaign(&campaign).await.expect("a campaign");
    let pattern = campaign.spec.code_pattern().expect("a pattern").clone();
    let mut count = 0;
    while count < supply {
        let codes: Vec<VoucherCode> = (count..supply.min(count + CODES_PER_UPLOAD))
            .map(|_| pattern.generate(&mut OsEntropy))
            .collect();
        match store
            .add_codes(campaign.id, &codes, Timestamp::now())
            .await
            .expect("codes")
        {
            AddCodesOutcome::Added { voucher_count, .. } => count = voucher_count as usize,
            other => panic!("adding codes: {other:?}"),
        }
    }
    let published = store
        .change_lifecycle(
            campaign.id,
            Lifecycle::Draft,
            Lifecycle::Live,
            Timestamp::now(),
        )
        .await
        .expect("publishing");
    assert_eq!(published, LifecycleOutcome::Changed);
    campaign
}

/// A database of the benchmark's own on the PostgreSQL server.
struct BenchDatabase {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create() -> BenchDatabase {
        let server = std::env::var("VOUCHERD_BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("VOUCHERD_TEST_DATABASE_URL"))
            .unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let (admin, connection) = tokio_postgres::connect(&server, NoTls)
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL is not reachable at {server}: {error}"));
        tokio::spawn(connection);
        let name = format!("voucherd_bench_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating the benchmark database");
        let url = with_database(&server, &name);
        BenchDatabase { admin, name, url }
    }

    async fn drop(self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("dropping the benchmark database");
    }
}

/// The server URL pointed at another database, in URL or key=value form.
fn with_database(url: &str, database: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url} dbname={database}");
    };
    let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = address
        .split_once('/')
        .map_or(address, |(authority, _)| authority);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{scheme}://{authority}/{database}{query}")
}
