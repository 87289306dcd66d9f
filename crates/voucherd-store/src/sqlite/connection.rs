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
    (
        10,
        "voucher holder index",
        include_str!("../../migrations/sqlite/0010_voucher_holder_index.sql"),
    ),
    (
        11,
        "codes on claim",
        include_str!("../../migrations/sqlite/0011_codes_on_claim.sql"),
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
///
/// Foreign keys are off while migrations run, as SQLite's way of changing a
/// table's constraints asks (make the table again, copy, drop the old one,
/// rename): a dropped table would otherwise take the rows that refer to it
/// along. They are checked whole before the migrations commit, and a
/// violation fails the migration and leaves the database as it was.
pub(crate) fn migrate(connection: &mut Connection) -> StoreResult<Vec<i64>> {
    // The pragma is a no-op inside a transaction: it is set before one.
    let known_newest = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    migrate_until(connection, known_newest)
}

/// Applies the migrations up to `until` this database has not seen yet.
fn migrate_until(connection: &mut Connection, until: i64) -> StoreResult<Vec<i64>> {
    command(connection, "PRAGMA foreign_keys = OFF").map_err(database)?;
    let migrated = migrate_in_transaction(connection, until);
    command(connection, "PRAGMA foreign_keys = ON").map_err(database)?;
    migrated
}

fn migrate_in_transaction(connection: &mut Connection, until: i64) -> StoreResult<Vec<i64>> {
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
        .filter(|(version, _, _)| *version > newest && *version <= until)
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
    if applied.is_empty() {
        // Nothing changed: no start pays for a check of every row.
        return Ok(applied);
    }
    let violations: i64 = transaction
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
            row.get(0)
        })
        .map_err(database)?;
    if violations > 0 {
        return Err(StoreError::Corrupt(format!(
            "{violations} rows break a foreign key after migrating; nothing was migrated"
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

    type VoucherRow = (
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        i64,
    );

    fn vouchers(connection: &Connection) -> Vec<VoucherRow> {
        let mut statement = connection
            .prepare(
                "SELECT id, state, user_id, user_slot, reservation_id, rank
                 FROM vouchers ORDER BY rank",
            )
            .unwrap();
        statement
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Migration 10 makes the vouchers table again: a database of schema 9
    /// with available, issued and reserved vouchers, an order and a daily
    /// grant that refer to them comes out with the same rows, its foreign
    /// keys whole and back on, and a user's slot still unique.
    #[test]
    fn making_the_vouchers_table_again_keeps_every_row_and_reference() {
        let directory = tempfile::tempdir().unwrap();
        let mut connection = open_writer(&directory.path().join("old.sqlite3")).unwrap();
        assert_eq!(
            migrate_until(&mut connection, 9).unwrap(),
            (1..=9).collect::<Vec<_>>()
        );
        connection
            .execute_batch(
                "INSERT INTO tenants (id, name, signing_key, time_zone, created_at)
                 VALUES ('t', 'tenant', zeroblob(32), 'UTC', 0);
                 INSERT INTO campaigns (id, tenant_id, name, message, description, terms, kind,
                     supply, price_amount, price_currency, per_user_limit, trigger,
                     reservation_ttl_ms, lock_ttl_ms, redemptions_max, lifecycle,
                     voucher_count, created_at, published_at)
                 VALUES ('c', 't', 'sale', '', '', '', 'sale', 3, 100, 'EUR', 2, 'claim',
                     60000, 60000, 1, 'live', 3, 0, 0);
                 INSERT INTO vouchers (id, campaign_id, tenant_id, rank, code, state, user_id,
                     user_slot, claimed_at, reservation_id, reserved_until, issued_at,
                     redemptions_max)
                 VALUES ('v1', 'c', 't', 1, 'A', 'reserved', 'pia', 1, 5, 'r1', 9, NULL, 1),
                        ('v2', 'c', 't', 2, 'B', 'available', NULL, NULL, NULL, NULL, NULL,
                         NULL, 1),
                        ('v3', 'c', 't', 3, 'C', 'available', NULL, NULL, NULL, NULL, NULL,
                         NULL, 1);
                 INSERT INTO orders (id, tenant_id, campaign_id, voucher_id, reservation_id,
                     user_id, email, amount, currency, card_brand, card_last_four, status,
                     created_at)
                 VALUES ('o1', 't', 'c', 'v1', 'r1', 'pia', 'pia@example.com', 100, 'EUR',
                     'visa', '4242', 'pending', 5);
                 INSERT INTO daily_grants (tenant_id, limit_group, user_id, day, voucher_id)
                 VALUES ('t', 'g', 'pia', '2026-12-01', 'v1');",
            )
            .unwrap();
        let before = vouchers(&connection);

        assert_eq!(migrate_until(&mut connection, 10).unwrap(), [10]);

        assert_eq!(vouchers(&connection), before);
        let foreign_keys_on: i64 = connection
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(foreign_keys_on, 1, "foreign keys are on again");
        let broken: i64 = connection
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(broken, 0);
        // The order and the grant still refer to the voucher: it cannot go.
        assert!(
            connection
                .execute("DELETE FROM vouchers WHERE id = 'v1'", [])
                .is_err()
        );
        // A user's slot is still theirs alone, and a second slot is not.
        let taken = connection.execute(
            "UPDATE vouchers SET state = 'issued', user_id = 'pia', user_slot = 1,
                 claimed_at = 6, issued_at = 6
             WHERE id = 'v2'",
            [],
        );
        assert!(
            matches!(kind_of(taken.as_ref().unwrap_err()), Kind::Constraint),
            "{taken:?}"
        );
        connection
            .execute(
                "UPDATE vouchers SET state = 'issued', user_id = 'pia', user_slot = 2,
                     claimed_at = 6, issued_at = 6
                 WHERE id = 'v2'",
                [],
            )
            .unwrap();
        // The guards came back with the table.
        let past_limit = connection.execute(
            "UPDATE vouchers SET state = 'issued', user_id = 'pia', user_slot = 3,
                 claimed_at = 6, issued_at = 6
             WHERE id = 'v3'",
            [],
        );
        assert!(past_limit.is_err(), "{past_limit:?}");
        let triggers: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'vouchers'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(triggers, 5);
    }

    /// Every column of every campaign, as text, in id order.
    fn campaigns(connection: &Connection) -> Vec<String> {
        let mut statement = connection
            .prepare(
                "SELECT quote(id) || quote(tenant_id) || quote(name) || quote(kind)
                     || quote(supply) || quote(price_amount) || quote(per_user_limit)
                     || quote(code_pattern) || quote(lifecycle) || quote(voucher_count)
                     || quote(created_at) || quote(published_at) || quote(change_seq)
                     || quote(upload_id) || quote(upload_staged) || quote(upload_until)
                 FROM campaigns ORDER BY id",
            )
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Migration 11 makes the campaigns table again: a database of schema
    /// 10 with campaigns, tiers, vouchers and an order that refer to them
    /// comes out with the same rows, its foreign keys whole and back on,
    /// every trigger and index back, and a live campaign still needing its
    /// whole supply unless claims make its codes.
    #[test]
    fn making_the_campaigns_table_again_keeps_every_row_and_guard() {
        let directory = tempfile::tempdir().unwrap();
        let mut connection = open_writer(&directory.path().join("old.sqlite3")).unwrap();
        assert_eq!(
            migrate_until(&mut connection, 10).unwrap(),
            (1..=10).collect::<Vec<_>>()
        );
        connection
            .execute_batch(
                "INSERT INTO tenants (id, name, signing_key, time_zone, created_at)
                 VALUES ('t', 'tenant', zeroblob(32), 'UTC', 0);
                 INSERT INTO campaigns (id, tenant_id, name, message, description, terms, kind,
                     supply, price_amount, price_currency, per_user_limit, trigger,
                     reservation_ttl_ms, lock_ttl_ms, redemptions_max, code_pattern, lifecycle,
                     voucher_count, created_at, published_at)
                 VALUES ('c', 't', 'sale', '', '', '', 'sale', 2, 100, 'EUR', 1, 'claim',
                     60000, 60000, 1, '????', 'live', 2, 0, 0),
                        ('d', 't', 'draft', '', '', '', 'coupon', 5, NULL, NULL, 1, 'claim',
                     60000, 60000, 1, NULL, 'draft', 0, 0, NULL);
                 INSERT INTO campaign_tiers (campaign_id, until_rank, discount_percent)
                 VALUES ('c', 2, 50);
                 INSERT INTO vouchers (id, campaign_id, tenant_id, rank, code, state, user_id,
                     user_slot, claimed_at, reservation_id, reserved_until, issued_at,
                     redemptions_max)
                 VALUES ('v1', 'c', 't', 1, 'A', 'reserved', 'pia', 1, 5, 'r1', 9, NULL, 1),
                        ('v2', 'c', 't', 2, 'B', 'available', NULL, NULL, NULL, NULL, NULL,
                         NULL, 1);
                 INSERT INTO orders (id, tenant_id, campaign_id, voucher_id, reservation_id,
                     user_id, email, amount, currency, card_brand, card_last_four, status,
                     created_at)
                 VALUES ('o1', 't', 'c', 'v1', 'r1', 'pia', 'pia@example.com', 100, 'EUR',
                     'visa', '4242', 'pending', 5);",
            )
            .unwrap();
        let before = campaigns(&connection);
        let schema_objects = |connection: &Connection| -> i64 {
            connection
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type IN ('trigger', 'index')",
                    [],
                    |row| row.get(0),
                )
                .unwrap()
        };
        let objects_before = schema_objects(&connection);

        assert_eq!(migrate(&mut connection).unwrap(), [11]);

        assert_eq!(campaigns(&connection), before);
        assert_eq!(
            schema_objects(&connection),
            objects_before,
            "every trigger and index"
        );
        let foreign_keys_on: i64 = connection
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(foreign_keys_on, 1, "foreign keys are on again");
        let broken: i64 = connection
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(broken, 0);
        // The tiers and the order still refer to the campaign: it cannot go.
        assert!(
            connection
                .execute("DELETE FROM campaigns WHERE id = 'c'", [])
                .is_err()
        );
        // A rank past the supply is still refused.
        let past_supply = connection.execute(
            "INSERT INTO vouchers (id, campaign_id, tenant_id, rank, code, state, redemptions_max)
             VALUES ('v3', 'c', 't', 3, 'C', 'available', 1)",
            [],
        );
        assert!(past_supply.is_err(), "{past_supply:?}");
        // A draft without its codes goes live only if claims make them, and
        // only with a pattern to make them from.
        let live = "UPDATE campaigns SET lifecycle = 'live', published_at = 1 WHERE id = 'd'";
        assert!(
            connection.execute(live, []).is_err(),
            "no codes, none made on claim"
        );
        assert!(
            connection
                .execute("UPDATE campaigns SET codes_on_claim = 1 WHERE id = 'd'", [])
                .is_err(),
            "made on claim without a pattern"
        );
        connection
            .execute(
                "UPDATE campaigns SET codes_on_claim = 1, code_pattern = '??##' WHERE id = 'd'",
                [],
            )
            .unwrap();
        connection.execute(live, []).unwrap();
        let stamped: i64 = connection
            .query_row(
                "SELECT change_seq FROM campaigns WHERE id = 'd'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(stamped > 0, "changes are still stamped");
    }
}
