//! The conformance suite on PostgreSQL, and what only several nodes on one
//! database can show: claims from two nodes at once, a claim waiting for
//! another node's locks, a connection the server dropped, and payments:
//! nodes leasing from one queue, checking out one reservation, racing the
//! expiry sweep and taking over each other's lapsed leases.
//!
//! The tests need a PostgreSQL server: `VOUCHERD_TEST_DATABASE_URL`, or a
//! local one with trust authentication by default. Each case makes its own
//! database and drops it when done.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Barrier;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use voucherd_core::Timestamp;
use voucherd_core::campaign::CampaignDraft;
use voucherd_core::ids::OrderId;
use voucherd_core::voucher::VoucherState;
use voucherd_store::model::{
    AttemptKind, AttemptOutcome, CheckoutOutcome, ClaimOutcome, ClaimRequest, OrderStatus,
    PaymentTask, Resolution, VoucherRecord,
};
use voucherd_store::postgres::{PostgresConfig, PostgresStore};
use voucherd_store::{Store, StoreError};

use crate::conformance::{
    LEASE, NOON, accepted, at, checkout_of, claim, claim_all, coupon, live_campaign, new_tenant,
    sale, step,
};

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

/// The fixture's store and a second node: its own pool on the same
/// database, as another voucherd process would have.
async fn two_nodes(fixture: &PostgresFixture) -> [Arc<dyn Store>; 2] {
    let other_node: Arc<dyn Store> =
        Arc::new(connect(PostgresConfig::new(fixture.url.clone())).await);
    [fixture.store(), other_node]
}

/// A live sale campaign of `count` vouchers, all reserved by one user each.
async fn reserved_sale(store: &Arc<dyn Store>, count: usize, now: Timestamp) -> Vec<VoucherRecord> {
    let tenant_id = new_tenant(store).await;
    let campaign = live_campaign(store, tenant_id, sale(count as i64)).await;
    let claims = (0..count)
        .map(|index| claim(&campaign, &format!("buyer-{index}"), now))
        .collect();
    claim_all(store, claims, now)
        .await
        .into_iter()
        .map(|outcome| match outcome {
            ClaimOutcome::Claimed(voucher) => voucher,
            other => panic!("expected a reservation, got {other:?}"),
        })
        .collect()
}

/// Reserves and checks out `count` vouchers: that many payments queued.
async fn queued_payments(store: &Arc<dyn Store>, count: usize, now: Timestamp) -> Vec<OrderId> {
    let mut orders = Vec::new();
    for voucher in reserved_sale(store, count, now).await {
        let outcome = store
            .begin_checkout(&checkout_of(&voucher, None), now)
            .await
            .unwrap();
        orders.push(accepted(outcome).id);
    }
    orders
}

/// Callers on both nodes lease from the queue at once, a few payments per
/// call, until it is empty; answers every task each caller got. They all
/// start together at a barrier so that their statements overlap.
async fn lease_from_both_nodes(nodes: &[Arc<dyn Store>; 2], now: Timestamp) -> Vec<PaymentTask> {
    let callers = 8;
    let barrier = Arc::new(Barrier::new(callers));
    let mut leasing = Vec::new();
    for caller in 0..callers {
        let (node, barrier) = (nodes[caller % 2].clone(), barrier.clone());
        leasing.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut tasks = Vec::new();
            loop {
                let leased = node.lease_payments(now, LEASE, 3).await.unwrap();
                if leased.is_empty() {
                    return tasks;
                }
                tasks.extend(leased);
            }
        }));
    }
    let mut tasks = Vec::new();
    for caller in leasing {
        tasks.extend(caller.await.unwrap());
    }
    tasks
}

/// Nodes leasing from one queue at once never hold the same payment, both
/// while payments are queued and once their leases ran out (SKIP LOCKED,
/// and a row leased meanwhile is re-checked as no longer due); each lapsed
/// call is marked interrupted once, and the leases taken over write no
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_leasing_at_once_never_hold_the_same_payment() {
    let fixture = PostgresFixture::new().await;
    let nodes = two_nodes(&fixture).await;
    let now = at(NOON);
    let payments = 60;
    let orders = queued_payments(&nodes[0], payments, now).await;
    let first = lease_from_both_nodes(&nodes, now).await;
    assert_leased_once_each(&first, &orders);
    for task in &first {
        let number = nodes[0]
            .start_attempt(&task.lease, "alpha", AttemptKind::Charge, now)
            .await
            .unwrap();
        assert_eq!(number, Some(1));
    }
    let after_lease = at("2026-12-01T12:00:30Z");
    let second = lease_from_both_nodes(&nodes, after_lease).await;
    assert_leased_once_each(&second, &orders);
    for task in &first {
        assert_eq!(
            nodes[1]
                .start_attempt(&task.lease, "alpha", AttemptKind::Lookup, after_lease)
                .await
                .unwrap(),
            None,
            "a lease taken over writes no more"
        );
    }
    let tenant_id = second[0].order.tenant_id;
    for task in &second {
        assert_eq!(task.pinned_gateway.as_deref(), Some("alpha"));
        let details = nodes[0]
            .order(tenant_id, task.order.id, None)
            .await
            .unwrap()
            .unwrap();
        let outcomes: Vec<_> = details
            .attempts
            .iter()
            .map(|attempt| attempt.outcome)
            .collect();
        assert_eq!(outcomes, [Some(AttemptOutcome::Interrupted)]);
    }
}

fn assert_leased_once_each(tasks: &[PaymentTask], orders: &[OrderId]) {
    let mut leased = HashSet::new();
    for task in tasks {
        assert!(
            leased.insert(task.order.id),
            "order {} leased twice at once",
            task.order.id
        );
    }
    assert_eq!(
        leased,
        orders.iter().copied().collect(),
        "every due payment leased"
    );
}

/// Several checkouts of one reservation at once, from both nodes, open
/// exactly one order: the others answer that payment in flight, never an
/// error, and only one payment is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_of_one_reservation_open_exactly_one_order() {
    let fixture = PostgresFixture::new().await;
    let nodes = two_nodes(&fixture).await;
    let now = at(NOON);
    let reservations = reserved_sale(&nodes[0], 12, now).await;
    let checkouts_each = 6;
    for voucher in &reservations {
        let barrier = Arc::new(Barrier::new(checkouts_each));
        let mut checking_out = Vec::new();
        for index in 0..checkouts_each {
            let (node, barrier) = (nodes[index % 2].clone(), barrier.clone());
            let checkout = checkout_of(voucher, None);
            checking_out.push(tokio::spawn(async move {
                barrier.wait().await;
                node.begin_checkout(&checkout, now).await
            }));
        }
        let mut outcomes = Vec::new();
        for checkout in checking_out {
            outcomes.push(checkout.await.unwrap().expect("an answer, not an error"));
        }
        let opened: Vec<OrderId> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                CheckoutOutcome::Accepted(order) => Some(order.id),
                _ => None,
            })
            .collect();
        assert_eq!(opened.len(), 1, "{outcomes:?}");
        for outcome in &outcomes {
            assert!(
                matches!(outcome, CheckoutOutcome::Accepted(_))
                    || *outcome == CheckoutOutcome::PaymentInFlight(opened[0]),
                "{outcome:?}"
            );
        }
    }
    let counts = nodes[1]
        .payment_counts(reservations[0].campaign_id)
        .await
        .unwrap();
    assert_eq!(counts.orders_pending, reservations.len() as u64);
    let tasks = nodes[1].lease_payments(now, LEASE, 100).await.unwrap();
    assert_eq!(
        tasks.len(),
        reservations.len(),
        "one payment per reservation"
    );
}

/// A checkout on one node races the expiry sweep on another whose clock is
/// ahead: each reservation is either being paid or released, never both
/// and never neither, and a later sweep leaves those being paid alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_racing_the_expiry_sweep_is_paid_or_released_never_both() {
    let fixture = PostgresFixture::new().await;
    let nodes = two_nodes(&fixture).await;
    let now = at(NOON);
    let reservations = reserved_sale(&nodes[0], 30, now).await;
    let campaign_id = reservations[0].campaign_id;
    let expired = at("2026-12-01T12:10:00Z");
    let barrier = Arc::new(Barrier::new(reservations.len() + 1));
    let sweeping = {
        let (node, barrier) = (nodes[1].clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            node.release_expired_reservations(expired, 1_000).await
        })
    };
    let mut checking_out = Vec::new();
    for voucher in &reservations {
        let (node, barrier) = (nodes[0].clone(), barrier.clone());
        let checkout = checkout_of(voucher, None);
        checking_out.push(tokio::spawn(async move {
            barrier.wait().await;
            node.begin_checkout(&checkout, now).await
        }));
    }
    let released = sweeping.await.unwrap().unwrap().len();
    let mut paying = 0;
    for checkout in checking_out {
        match checkout.await.unwrap().unwrap() {
            CheckoutOutcome::Accepted(_) => paying += 1,
            CheckoutOutcome::NotFound => {}
            other => panic!("a checkout before expiry answered {other:?}"),
        }
    }
    assert_eq!(paying + released, reservations.len(), "paid or released");
    let later = nodes[1]
        .release_expired_reservations(at("2026-12-01T13:00:00Z"), 1_000)
        .await
        .unwrap();
    assert!(later.is_empty(), "never released under a payment");
    let counts = nodes[0].campaign_counts(campaign_id, &[]).await.unwrap();
    assert_eq!(
        (counts.states.reserved, counts.states.available),
        (paying as u64, released as u64)
    );
    let payments = nodes[0].payment_counts(campaign_id).await.unwrap();
    assert_eq!(payments.orders_pending, paying as u64);
}

/// A node finishing a payment just as its lease ran out races the node
/// taking the payment over: either the payment settles and is not taken,
/// or it is taken and the late finish writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_finish_and_a_takeover_never_both_win() {
    let fixture = PostgresFixture::new().await;
    let nodes = two_nodes(&fixture).await;
    let now = at(NOON);
    let orders = queued_payments(&nodes[0], 30, now).await;
    let tasks = nodes[0].lease_payments(now, LEASE, 100).await.unwrap();
    assert_eq!(tasks.len(), orders.len());
    for task in &tasks {
        let number = nodes[0]
            .start_attempt(&task.lease, "alpha", AttemptKind::Charge, now)
            .await
            .unwrap();
        assert_eq!(number, Some(1));
    }
    let after_lease = at("2026-12-01T12:00:30Z");
    let barrier = Arc::new(Barrier::new(tasks.len() + 1));
    let taking_over = {
        let (node, barrier) = (nodes[1].clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            node.lease_payments(after_lease, LEASE, 1_000).await
        })
    };
    let mut finishing = Vec::new();
    for task in tasks {
        let (node, barrier) = (nodes[0].clone(), barrier.clone());
        finishing.push(tokio::spawn(async move {
            let paid = step(
                1,
                AttemptOutcome::Captured,
                Resolution::Paid {
                    gateway: "alpha".into(),
                    expires_at: None,
                },
            );
            barrier.wait().await;
            let finished = node.finish_payment(&task.lease, &paid, after_lease).await;
            (task.order, finished.unwrap())
        }));
    }
    let taken: HashSet<OrderId> = taking_over
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|task| task.order.id)
        .collect();
    for finish in finishing {
        let (order, finished) = finish.await.unwrap();
        assert_ne!(finished, taken.contains(&order.id), "order {}", order.id);
        let details = nodes[1]
            .order(order.tenant_id, order.id, None)
            .await
            .unwrap()
            .unwrap();
        let expected = if finished {
            (
                OrderStatus::Paid,
                VoucherState::Issued,
                AttemptOutcome::Captured,
            )
        } else {
            (
                OrderStatus::Pending,
                VoucherState::Reserved,
                AttemptOutcome::Interrupted,
            )
        };
        assert_eq!(
            (
                details.order.status,
                details.voucher.state,
                details.attempts[0].outcome.unwrap()
            ),
            expected
        );
    }
}

/// The schema itself refuses to issue a reserved voucher without a paid
/// order, whatever statement asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_issues_a_reserved_voucher_only_against_a_paid_order() {
    let fixture = PostgresFixture::new().await;
    let store = fixture.store();
    let now = at(NOON);
    let voucher = reserved_sale(&store, 1, now).await.remove(0);
    let (client, connection) = tokio_postgres::connect(&fixture.url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let refused = client
        .execute(
            "UPDATE vouchers SET state = 'issued', issued_at = now(), reserved_until = NULL
             WHERE id = $1",
            &[voucher.id.as_uuid()],
        )
        .await
        .expect_err("issued without an order");
    assert_eq!(
        refused.code(),
        Some(&SqlState::CHECK_VIOLATION),
        "{refused}"
    );
    let kept = store
        .reservation(voucher.tenant_id, voucher.reservation_id.unwrap())
        .await
        .unwrap();
    assert_eq!(
        kept.map(|voucher| voucher.state),
        Some(VoucherState::Reserved)
    );
}
