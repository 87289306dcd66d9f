//! Opening connections with the settings durability depends on, and applying
//! the versioned migrations.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{StoreError, StoreResult};

/// The schema, one step per version, applied in order and recorded in
/// `schema_migrations`. A step is never edited once released; changes are
/// new steps.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "payments",
        include_str!("../../migrations/sqlite/0002_payments.sql"),
    ),
    (
        3,
        "campaign changes",
        include_str!("../../migrations/sqlite/0003_campaign_changes.sql"),
    ),
    (
        4,
        "gateway shares",
        include_str!("../../migrations/sqlite/0004_gateway_shares.sql"),
    ),
    (
        5,
        "accounts",
        include_str!("../../migrations/sqlite/0005_accounts.sql"),
    ),
    (
        6,
        "tenant keys",
        include_str!("../../migrations/sqlite/0006_tenant_keys.sql"),
    ),
    (
        7,
        "tenant public keys",
        include_str!("../../migrations/sqlite/0007_tenant_public_keys.sql"),
    ),
    (
        8,
        "code uploads",
        include_str!("../../migrations/sqlite/0008_code_uploads.sql"),
    ),
    (
        9,
        "voucher guards fail",
        include_str!("../../migrations/sqlite/0009_voucher_guards_fail.sql"),
    ),
];

/// How long a connection waits for a lock (a checkpoint, another process)
/// before it reports the database busy.
const BUSY_TIMEOUT_MS: u32 = 5_000;
/// Page cache of the writer: inserts land at random places of the code and
/// id indexes, and SQLite's default 2 MiB makes each one a page read; a much
/// larger cache costs at every commit, which walks it.
const WRITER_CACHE_KIB: u32 = 16 * 1024;
/// Page cache of each reader.
const READER_CACHE_KIB: u32 = 16 * 1024;

/// Prepared statements each connection keeps. rusqlite's default of 16 is
/// fewer than the statements of one claim batch and its neighbours, and a
/// statement evicted is a statement parsed again.
const STATEMENT_CACHE_CAPACITY: usize = 256;

/// Runs a statement without parameters, such as `SAVEPOINT claim`,
/// prepared once per connection rather than parsed every time.
pub(crate) fn command(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Settings every connection shares.
fn prepare_for_reuse(connection: &Connection) -> StoreResult<()> {
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // Without the query planner stability guarantee, SQLite plans some
    // statements (an ORDER BY or min() under `campaign_id = ?`) for the
    // values bound last time and prepares them again whenever a value
    // changes: every claim's statements, every time. With it a cached
    // statement is planned once.
    connection
        .set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(database)?;
    Ok(())
}

pub(crate) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let connection = Connection::open(path).map_err(database)?;
    prepare_for_reuse(&connection)?;
    // WAL lets readers proceed during writes; FULL makes every commit
    // durable against power loss, which is what an acknowledged claim needs.
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -{WRITER_CACHE_KIB};"
        ))
        .map_err(database)?;
    Ok(connection)
}

pub(crate) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(database)?;
    prepare_for_reuse(&connection)?;
    connection
        .execute_batch(&format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};
             PRAGMA cache_size = -{READER_CACHE_KIB};"
        ))
        .map_err(database)?;
    Ok(connection)
}

/// Applies the migrations this database has not seen yet; answers the
/// versions it applied.
pub(crate) fn migrate(connection: &mut Connection) -> StoreResult<Vec<i64>> {
    let transaction = connection.transaction().map_err(database)?;
    transaction
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 name TEXT NOT NULL
             ) STRICT;",
        )
        .map_err(database)?;
    let newest: i64 = transaction
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )
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
        transaction.execute_batch(sql).map_err(database)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
                (version, name),
            )
            .map_err(database)?;
        applied.push(*version);
    }
    transaction.commit().map_err(database)?;
    Ok(applied)
}

/// What an SQLite error means to the store's callers.
pub(crate) enum Kind {
    /// The schema refused a write: a bug caught by the last line of defence.
    Constraint,
    /// The disk is full or failing, or the file is locked: the same work
    /// may succeed later, without a restart.
    Unavailable,
    Database,
}

pub(crate) fn kind_of(error: &rusqlite::Error) -> Kind {
    use rusqlite::ErrorCode;
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::ConstraintViolation => Kind::Constraint,
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::OutOfMemory
            | ErrorCode::CannotOpen => Kind::Unavailable,
            _ => Kind::Database,
        },
        _ => Kind::Database,
    }
}

/// Sorts an SQLite error into the store's causes: a refused constraint is
/// the schema catching a bug; a full disk or an I/O failure is the database
/// unavailable for now; anything else is the database failing.
pub(crate) fn database(error: rusqlite::Error) -> StoreError {
    match kind_of(&error) {
        Kind::Constraint => {
            let message = match &error {
                rusqlite::Error::SqliteFailure(failure, message) => {
                    message.clone().unwrap_or_else(|| failure.to_string())
                }
                other => other.to_string(),
            };
            StoreError::Constraint(message)
        }
        Kind::Unavailable => StoreError::Unavailable(Box::new(error)),
        Kind::Database => StoreError::Database(Box::new(error)),
    }
}
