//! Connections: the pools, the sorting of PostgreSQL's errors into the
//! store's causes, and the versioned migrations.
//!
//! A connection that failed in a way that leaves its state unknown (the
//! server went away, a query ran past its time, the server turned out to be
//! a read-only standby after a failover) is dropped instead of going back to
//! the pool, so the next caller connects afresh and a multi-host URL with
//! `target_session_attrs=read-write` finds the new primary. The pool itself
//! never needs a restart.

use std::error::Error as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
    Transaction,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls};

use super::PostgresConfig;
use crate::stats::{PoolStats, TimeCounter};
use crate::{StoreError, StoreResult};

/// The schema, one step per version, applied in order and recorded in
/// `schema_migrations`. A step is never edited once released; changes are
/// new steps.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "payments",
        include_str!("../../migrations/postgres/0002_payments.sql"),
    ),
    (
        3,
        "campaign changes",
        include_str!("../../migrations/postgres/0003_campaign_changes.sql"),
    ),
    (
        4,
        "gateway shares",
        include_str!("../../migrations/postgres/0004_gateway_shares.sql"),
    ),
    (
        5,
        "accounts",
        include_str!("../../migrations/postgres/0005_accounts.sql"),
    ),
    (
        6,
        "tenant keys",
        include_str!("../../migrations/postgres/0006_tenant_keys.sql"),
    ),
    (
        7,
        "tenant public keys",
        include_str!("../../migrations/postgres/0007_tenant_public_keys.sql"),
    ),
    (
        8,
        "code uploads",
        include_str!("../../migrations/postgres/0008_code_uploads.sql"),
    ),
    (
        9,
        "voucher holder index",
        include_str!("../../migrations/postgres/0009_voucher_holder_index.sql"),
    ),
    (
        10,
        "codes on claim",
        include_str!("../../migrations/postgres/0010_codes_on_claim.sql"),
    ),
];

/// The advisory lock migrations run under: "voucherd" in ASCII.
const MIGRATION_LOCK: i64 = 0x766f_7563_6865_7264;

/// The primary's pool and, when a replica is configured, the pool reports
/// and exports read from.
#[derive(Debug)]
pub(crate) struct Pools {
    primary: Pool,
    replica: Option<Pool>,
    /// How long one operation may take, waiting for a connection included,
    /// before the store answers Unavailable and drops the connection.
    operation_timeout: Duration,
    /// Time callers spent waiting for a connection (either pool), and the
    /// waits that ran out.
    waits: TimeCounter,
    wait_timeouts: AtomicU64,
}

/// Which pool an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Primary,
    /// A replica when there is one: for reads that tolerate its lag.
    Replica,
}

impl Pools {
    pub(crate) fn open(config: &PostgresConfig) -> StoreResult<Pools> {
        let replica = config
            .read_url
            .as_deref()
            .map(|url| pool(url, config))
            .transpose()?;
        Ok(Pools {
            primary: pool(&config.url, config)?,
            replica,
            // The server gives up on a statement at query_timeout; the
            // client waits a little longer so that the server's own answer
            // usually arrives first.
            operation_timeout: config.pool_wait_timeout + config.query_timeout * 2,
            waits: TimeCounter::default(),
            wait_timeouts: AtomicU64::new(0),
        })
    }

    /// The primary pool's state and the waits for a connection so far.
    pub(crate) fn stats(&self) -> PoolStats {
        let status = self.primary.status();
        PoolStats {
            size: status.size as u64,
            idle: status.available as u64,
            max: status.max_size as u64,
            waiting: status.waiting as u64,
            wait_seconds: self.waits.seconds(),
            waits: self.waits.count(),
            timeouts: self.wait_timeouts.load(Ordering::Relaxed),
        }
    }

    /// A connection from `pool`, the wait counted.
    async fn borrow(&self, pool: &Pool) -> StoreResult<Borrowed> {
        let asked = Instant::now();
        let got = pool.get().await;
        self.waits.add(asked.elapsed());
        if matches!(got, Err(PoolError::Timeout(_))) {
            self.wait_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Borrowed(Some(got.map_err(pool_error)?)))
    }

    /// Runs `work` on a pooled connection. The connection goes back to the
    /// pool only when `work` finished without finding the database
    /// unavailable; on a timeout the future is dropped and so is the
    /// connection.
    pub(crate) async fn run<T>(
        &self,
        side: Side,
        work: impl AsyncFnOnce(&ClientWrapper) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.connected(side, async |client| work(client).await)
            .await
    }

    /// Runs `work` in one transaction on the primary: committed when `work`
    /// answers, rolled back when it fails. Read committed, so each statement
    /// sees what other nodes committed before it; `work` decides with
    /// conditional statements and the row locks they take, never with what
    /// an earlier statement read.
    pub(crate) async fn transaction<T>(
        &self,
        work: impl AsyncFnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.connected(Side::Primary, async |client| {
            let transaction = client.transaction().await.map_err(database)?;
            // On an error the transaction is dropped, which sends its
            // ROLLBACK ahead of whatever the connection runs next.
            let answer = work(&transaction).await?;
            transaction.commit().await.map_err(database)?;
            Ok(answer)
        })
        .await
    }

    /// Runs the reads of `work` on one snapshot, so that records read by
    /// different statements agree with each other.
    pub(crate) async fn snapshot<T>(
        &self,
        side: Side,
        work: impl AsyncFnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.connected(side, async |client| {
            let transaction = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(database)?;
            let answer = work(&transaction).await?;
            transaction.commit().await.map_err(database)?;
            Ok(answer)
        })
        .await
    }

    async fn connected<T>(
        &self,
        side: Side,
        work: impl AsyncFnOnce(&mut ClientWrapper) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let pool = match (side, &self.replica) {
            (Side::Replica, Some(replica)) => replica,
            _ => &self.primary,
        };
        let operation = async {
            let mut connection = self.borrow(pool).await?;
            let result = work(connection.client()?).await;
            if !matches!(result, Err(StoreError::Unavailable(_))) {
                connection.give_back();
            }
            result
        };
        tokio::time::timeout(self.operation_timeout, operation)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the database did not answer in time".into(),
                ))
            })
    }

    pub(crate) fn close(&self) {
        self.primary.close();
        if let Some(replica) = &self.replica {
            replica.close();
        }
    }
}

/// A pooled connection that is dropped with its socket unless given back.
struct Borrowed(Option<Object>);

impl Borrowed {
    fn client(&mut self) -> StoreResult<&mut ClientWrapper> {
        self.0.as_deref_mut().ok_or(StoreError::Closed)
    }

    fn give_back(&mut self) {
        // Dropping the object returns it to its pool.
        self.0.take();
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            // Detached from the pool, the client and its socket close.
            drop(Object::take(object));
        }
    }
}

fn pool(url: &str, config: &PostgresConfig) -> StoreResult<Pool> {
    let mut pg_config = connection_config(url, config)?;
    // The server cancels a statement running past the limit itself, so a
    // claim stuck behind a hung transaction releases its locks even when
    // the client is gone.
    let options = format!(
        "{} -c statement_timeout={}",
        pg_config.get_options().unwrap_or_default(),
        config.query_timeout.as_millis()
    );
    pg_config.options(options.trim());
    let hosts = pg_config.get_hosts().len().max(1);
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            // A closed client is noticed for free; a dead socket that still
            // looks open fails its first query, and that connection is then
            // dropped rather than recycled.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_max.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.pool_wait_timeout))
        // tokio-postgres tries the hosts of a multi-host URL in turn, each
        // within connect_timeout.
        .create_timeout(Some(config.connect_timeout * hosts as u32))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|error| StoreError::Database(Box::new(error)))
}

/// The URL's settings, with voucherd's defaults where the URL has none.
fn connection_config(url: &str, config: &PostgresConfig) -> StoreResult<tokio_postgres::Config> {
    let mut pg_config = tokio_postgres::Config::from_str(url)
        .map_err(|error| StoreError::Database(Box::new(error)))?;
    if pg_config.get_connect_timeout().is_none() {
        pg_config.connect_timeout(config.connect_timeout);
    }
    if pg_config.get_application_name().is_none() {
        pg_config.application_name("voucherd");
    }
    Ok(pg_config)
}

fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => database(error),
        PoolError::Timeout(_) => StoreError::Unavailable(Box::new(error)),
        PoolError::Closed => StoreError::Closed,
        other => StoreError::Database(Box::new(other)),
    }
}

/// Whether the error is another transaction getting there first: a unique
/// key it took, a deadlock the server broke. The same work, tried again,
/// sees what that transaction did.
pub(crate) fn is_race(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
        ]
        .contains(code)
    })
}

/// Sorts a PostgreSQL error into the store's causes: the server unreachable
/// or unable to serve now is Unavailable (the caller answers 503 and
/// retries), a refused constraint is the schema catching a bug, and
/// anything else is the database failing.
pub(crate) fn database(error: tokio_postgres::Error) -> StoreError {
    let Some(code) = error.code() else {
        // No SQLSTATE: the connection broke or could not be made.
        return if error.is_closed() || io_failure(&error) {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Database(Box::new(error))
        };
    };
    let class = &code.code()[..2];
    let unavailable = matches!(class, "08" | "53")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::IDLE_SESSION_TIMEOUT,
            // A standby after a failover: the primary is elsewhere now.
            SqlState::READ_ONLY_SQL_TRANSACTION,
            // statement_timeout: the database is too slow to answer now.
            SqlState::QUERY_CANCELED,
        ]
        .contains(code);
    if unavailable {
        StoreError::Unavailable(Box::new(error))
    } else if class == "23" {
        let message = error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned());
        StoreError::Constraint(message)
    } else {
        StoreError::Database(Box::new(error))
    }
}

fn io_failure(error: &tokio_postgres::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Applies the migrations the database has not seen yet, under an advisory
/// lock so that nodes starting together apply each step once; answers the
/// versions applied.
pub(crate) async fn migrate(config: &PostgresConfig) -> StoreResult<Vec<i64>> {
    let pg_config = connection_config(&config.url, config)?;
    let (mut client, connection) = pg_config.connect(NoTls).await.map_err(database)?;
    let connection = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "the migration connection failed");
        }
    });
    let applied = apply_migrations(&mut client).await;
    drop(client);
    // The connection ends once the client is gone; a failure to end it
    // changes nothing about what was applied.
    let _ = connection.await;
    applied
}

async fn apply_migrations(client: &mut tokio_postgres::Client) -> StoreResult<Vec<i64>> {
    let transaction = client.transaction().await.map_err(database)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(database)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version bigint PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(database)?;
    let newest: i64 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(database)?
        .try_get(0)
        .map_err(database)?;
    let known_newest = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if newest > known_newest {
        return Err(StoreError::Corrupt(format!(
            "the database is at schema version {newest}, newer than this binary's {known_newest}"
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS
        .iter()
        .filter(|(version, _, _)| *version > newest)
    {
        transaction.batch_execute(sql).await.map_err(database)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(database)?;
        applied.push(*version);
    }
    transaction.commit().await.map_err(database)?;
    Ok(applied)
}
