//! The conformance suite on PostgreSQL, and what only several nodes on one
//! database can show: claims from two nodes at once, a claim waiting for
//! another node's locks, and a connection the server dropped.
//!
//! The tests need a PostgreSQL server: `VOUCHERD_TEST_DATABASE_URL`, or a
//! local one with trust authentication by default. Each case makes its own
//! database and drops it when done.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;
use voucherd_core::campaign::CampaignDraft;
use voucherd_store::model::{ClaimOutcome, ClaimRequest};
use voucherd_store::postgres::{PostgresConfig, PostgresStore};
use voucherd_store::{Store, StoreError};

use crate::conformance::{at, claim, coupon, live_campaign, new_tenant};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DATABASE_PREFIX: &str = "voucherd_test_";
/// Test databases older than this are left over from runs that died before
/// dropping them; they are dropped when nobody is connected to them.
const STALE_AFTER_SECONDS: u64 = 3_600;

/// A database of its own for each case: lock expiry sweeps every campaign
/// of a database, so cases sharing one would see each other's locks.
pub struct PostgresFixture {
    database: String,
    url: String,
    store: Arc<dyn Store>,
}

impl PostgresFixture {
    pub async fn new() -> PostgresFixture {
        let admin = admin_connection().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        drop_stale_databases(&admin, now).await;
        let database = format!("{DATABASE_PREFIX}{now}_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .expect("creating a test database");
        let url = with_database(&server_url(), &database);
        let store = connect(PostgresConfig::new(url.clone())).await;
        PostgresFixture {
            database,
            url,
            store: Arc::new(store),
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

impl Drop for PostgresFixture {
    fn drop(&mut self) {
        // The test's runtime is ending, so the drop runs on a runtime of its
        // own; FORCE ends the pool's connections that are still open.
        let database = self.database.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                admin_connection()
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "could not drop test database {}: {dropped:?}",
                self.database
            );
        }
    }
}

crate::conformance_suite!(PostgresFixture::new());

async fn connect(config: PostgresConfig) -> PostgresStore {
    PostgresStore::connect(&config)
        .await
        .expect("connecting to the test database")
}

fn server_url() -> String {
    std::env::var("VOUCHERD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

async fn admin_connection() -> tokio_postgres::Client {
    let url = server_url();
    let (client, connection) = match tokio_postgres::connect(&url, NoTls).await {
        Ok(connected) => connected,
        Err(error) => panic!(
            "PostgreSQL is not reachable at {url}: {error}. The PostgreSQL tests need a server: \
             start one (e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main start`) or point \
             VOUCHERD_TEST_DATABASE_URL at one"
        ),
    };
    tokio::spawn(connection);
    client
}

async fn drop_stale_databases(admin: &tokio_postgres::Client, now: u64) {
    let names = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            &[&format!("{DATABASE_PREFIX}%")],
        )
        .await
        .expect("listing test databases");
    for row in names {
        let name: String = row.get(0);
        let created = name[DATABASE_PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|seconds| seconds.parse::<u64>().ok());
        if created.is_some_and(|created| created + STALE_AFTER_SECONDS < now) {
            // Refused while another run still uses it, which is as wanted.
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .await;
        }
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

/// Two nodes, each with its own pool, claim from one campaign and one daily
/// group at once, some users on both nodes and twice in one batch: every
/// rank goes out once, nobody passes their limits, and sold out is only
/// answered once the supply is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_at_once_hand_out_exactly_the_supply() {
    let fixture = PostgresFixture::new().await;
    let store = fixture.store();
    let other_node: Arc<dyn Store> =
        Arc::new(connect(PostgresConfig::new(fixture.url.clone())).await);
    let nodes = [store.clone(), other_node];
    let tenant_id = new_tenant(&store).await;
    let supply = 120;
    let campaign = live_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            per_user_limit: Some(2),
            ..coupon(Some(supply))
        },
    )
    .await;
    let daily = || CampaignDraft {
        daily_limit_group: Some("burst".into()),
        ..coupon(Some(60))
    };
    let grouped = [
        live_campaign(&store, tenant_id, daily()).await,
        live_campaign(&store, tenant_id, daily()).await,
    ];
    let now = at("2026-12-01T12:00:00Z");
    let callers = 8;
    let batches_per_caller = 6;
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let node = nodes[caller % nodes.len()].clone();
        let (campaign, grouped) = (campaign.clone(), grouped.clone());
        tasks.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for batch in 0..batches_per_caller {
                let claims: Vec<ClaimRequest> = (0..12)
                    .map(|index| {
                        // 90 users: the same user turns up on both nodes and,
                        // now and then, twice in one batch.
                        let name = format!("u{}", (caller * 7 + batch * 13 + index * 5) % 90);
                        match index % 3 {
                            0 => claim(&grouped[index % 2], &name, now),
                            _ => claim(&campaign, &name, now),
                        }
                    })
                    .collect();
                let outcomes = node
                    .claim_batch(claims.clone(), now)
                    .await
                    .expect("a batch");
                for (request, outcome) in claims.into_iter().zip(outcomes) {
                    answered.push((request, outcome.expect("a claim")));
                }
            }
            answered
        }));
    }
    let mut answered = Vec::new();
    for task in tasks {
        answered.extend(task.await.expect("a caller"));
    }
    let main: Vec<_> = answered
        .iter()
        .filter(|(request, _)| request.campaign_id == campaign.id)
        .collect();
    let claimed = main
        .iter()
        .filter(|(_, outcome)| matches!(outcome, ClaimOutcome::Claimed(_)))
        .count();
    let sold_out = main
        .iter()
        .filter(|(_, outcome)| matches!(outcome, ClaimOutcome::SoldOut))
        .count();
    let vouchers = store.vouchers_page(campaign.id, 0, 1_000).await.unwrap();
    let held: Vec<_> = vouchers
        .iter()
        .filter(|voucher| voucher.user_id.is_some())
        .collect();
    assert_eq!(
        claimed,
        held.len(),
        "every claimed answer is one stored voucher"
    );
    if sold_out > 0 {
        assert_eq!(held.len() as i64, supply, "sold out only once all are gone");
    }
    let mut per_user = std::collections::HashMap::new();
    for voucher in &held {
        *per_user.entry(voucher.user_id.clone()).or_insert(0) += 1;
    }
    assert!(per_user.values().all(|&count| count <= 2), "{per_user:?}");
    let mut daily_holders = std::collections::HashSet::new();
    for campaign in &grouped {
        for voucher in store.vouchers_page(campaign.id, 0, 1_000).await.unwrap() {
            if let Some(user_id) = voucher.user_id {
                assert!(
                    daily_holders.insert(user_id),
                    "two vouchers of one daily group"
                );
            }
        }
    }
    let daily_claimed = answered
        .iter()
        .filter(|(request, outcome)| {
            request.campaign_id != campaign.id && matches!(outcome, ClaimOutcome::Claimed(_))
        })
        .count();
    assert_eq!(daily_claimed, daily_holders.len());
}

/// A claim that finds the last free voucher locked by another transaction
/// waits for it instead of answering sold out, and takes it when that
/// transaction rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_for_a_voucher_locked_elsewhere_rather_than_answer_sold_out() {
    let fixture = PostgresFixture::new().await;
    let store = fixture.store();
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, coupon(Some(1))).await;
    let (mut other_node, connection) = tokio_postgres::connect(&fixture.url, NoTls)
        .await
        .expect("a second connection");
    tokio::spawn(connection);
    let transaction = other_node.transaction().await.unwrap();
    transaction
        .execute(
            "SELECT FROM vouchers WHERE campaign_id = $1 FOR UPDATE",
            &[campaign.id.as_uuid()],
        )
        .await
        .unwrap();
    let now = at("2026-12-01T12:00:00Z");
    let claiming = {
        let store = store.clone();
        let request = claim(&campaign, "patient", now);
        tokio::spawn(async move { store.claim_batch(vec![request], now).await })
    };
    wait_until_blocked_on_a_lock(&fixture.url).await;
    transaction.rollback().await.unwrap();
    let outcomes = claiming.await.unwrap().unwrap();
    match &outcomes[0] {
        Ok(ClaimOutcome::Claimed(voucher)) => assert_eq!(voucher.rank, 1),
        other => panic!("expected the voucher, got {other:?}"),
    }
}

/// Polls the server until some backend waits on a lock: the claim has
/// reached the wait. Bounded, and a state the server reports, not a guess
/// at how long the claim takes.
async fn wait_until_blocked_on_a_lock(url: &str) {
    let (observer, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    for _ in 0..1_000 {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the claim never waited for the locked voucher");
}

/// The server ending the store's connections (a restart, a failover) makes
/// calls answer Unavailable at worst, and the store reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_ended_are_replaced_without_a_restart() {
    let fixture = PostgresFixture::new().await;
    let url = fixture.url.clone();
    let application = format!("voucherd-test-{}", uuid::Uuid::new_v4().simple());
    let separator = if url.contains('?') { '&' } else { '?' };
    let config = PostgresConfig::new(format!("{url}{separator}application_name={application}"));
    let store: Arc<dyn Store> = Arc::new(connect(config).await);
    let tenant_id = new_tenant(&store).await;
    let (admin, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let ended: i64 = admin
        .query_one(
            "SELECT count(*) FROM (
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = $1
             ) AS terminated",
            &[&application],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended >= 1, "the store had a connection to end");
    let mut answered = false;
    for _ in 0..3 {
        match store.tenants().await {
            Ok(tenants) => {
                assert!(tenants.iter().any(|tenant| tenant.id == tenant_id));
                answered = true;
                break;
            }
            Err(error) => assert!(
                matches!(error, StoreError::Unavailable(_)),
                "a dropped connection is Unavailable, not {error:?}"
            ),
        }
    }
    assert!(answered, "the store reconnected");
}

/// Points at a port nobody listens on: Unavailable, not a database error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = PostgresConfig {
        connect_timeout: Duration::from_secs(1),
        ..PostgresConfig::new(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
    };
    match PostgresStore::connect(&config).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn test_database_urls_keep_their_settings() {
    assert_eq!(
        with_database(
            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            "x"
        ),
        "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgresql://a@h1,h2", "x"),
        "postgresql://a@h1,h2/x"
    );
    assert_eq!(
        with_database("host=h user=u", "x"),
        "host=h user=u dbname=x"
    );
}
