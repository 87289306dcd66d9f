//! Deciding claims inside the writer's transaction.
//!
//! Each claim runs in its own savepoint so that a claim the schema refuses
//! (an engine bug) fails alone. The writer is the only one writing, so the
//! reads here see exactly the state the writes will change.

use rusqlite::{Connection, OptionalExtension, params};
use voucherd_core::Timestamp;
use voucherd_core::campaign::Hold;

use super::connection::{command, database};
use super::rows::{self, VOUCHER_COLUMNS, millis, optional_millis};
use crate::model::{ClaimOutcome, ClaimRequest, VoucherRecord};
use crate::{OsEntropy, StoreResult};

/// Minting retries a code that collides with one the tenant already has;
/// with the code space at least a hundred times the supply, five collisions
/// in a row mean something is wrong.
const MINT_ATTEMPTS_MAX: usize = 5;

/// Decides every claim in the writer's transaction, or fails on the first
/// claim that fails; the writer then rolls the whole job back, and the
/// batch is decided again with [`claim_each`].
pub(crate) fn claim_all(
    connection: &Connection,
    claims: &[ClaimRequest],
    now: Timestamp,
) -> StoreResult<Vec<ClaimOutcome>> {
    claims
        .iter()
        .map(|claim| claim_one(connection, claim, now))
        .collect()
}

/// Decides each claim in a savepoint of its own, so that a claim the
/// schema refuses (an engine bug) fails alone. Two more statements a claim:
/// only for a batch [`claim_all`] could not decide.
pub(crate) fn claim_each(
    connection: &Connection,
    claims: &[ClaimRequest],
    now: Timestamp,
) -> Vec<StoreResult<ClaimOutcome>> {
    claims
        .iter()
        .map(|claim| within_savepoint(connection, || claim_one(connection, claim, now)))
        .collect()
}

fn within_savepoint<T>(
    connection: &Connection,
    work: impl FnOnce() -> StoreResult<T>,
) -> StoreResult<T> {
    command(connection, "SAVEPOINT claim").map_err(database)?;
    let result = work();
    if result.is_err() {
        command(connection, "ROLLBACK TO claim").map_err(database)?;
    }
    command(connection, "RELEASE claim").map_err(database)?;
    result
}

fn claim_one(
    connection: &Connection,
    claim: &ClaimRequest,
    now: Timestamp,
) -> StoreResult<ClaimOutcome> {
    let campaign_id = claim.campaign_id.to_string();
    let held = held_slots(connection, &campaign_id, claim.user_id.as_str())?;
    if held.len() >= claim.per_user_limit as usize {
        let (_, latest) = held
            .into_iter()
            .next()
            .ok_or_else(|| rows::corrupt("a per-user limit of zero"))?;
        return Ok(ClaimOutcome::AlreadyHeld(latest));
    }
    if let Some(daily) = &claim.daily {
        let taken: Option<i64> = connection
            .prepare_cached(
                "SELECT 1 FROM daily_grants
                 WHERE tenant_id = ?1 AND limit_group = ?2 AND user_id = ?3 AND day = ?4",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(
                        params![
                            claim.tenant_id.to_string(),
                            daily.group.as_str(),
                            claim.user_id.as_str(),
                            daily.day.to_string()
                        ],
                        |row| row.get(0),
                    )
                    .optional()
            })
            .map_err(database)?;
        if taken.is_some() {
            return Ok(ClaimOutcome::DailyLimitReached);
        }
    }
    // The lowest free slot of the user's 1..=per_user_limit.
    let slot = (1..=claim.per_user_limit)
        .find(|slot| !held.iter().any(|(held_slot, _)| held_slot == slot))
        .ok_or_else(|| rows::corrupt("no free user slot below the limit"))?;
    let voucher = match take_lowest_available(connection, claim, slot, now)? {
        Some(voucher) => voucher,
        None if claim.mint.is_some() => mint(connection, claim, slot, now)?,
        None => return Ok(ClaimOutcome::SoldOut),
    };
    if let Some(daily) = &claim.daily {
        connection
            .prepare_cached(
                "INSERT INTO daily_grants (tenant_id, limit_group, user_id, day, voucher_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    claim.tenant_id.to_string(),
                    daily.group.as_str(),
                    claim.user_id.as_str(),
                    daily.day.to_string(),
                    voucher.id.to_string()
                ])
            })
            .map_err(database)?;
    }
    Ok(ClaimOutcome::Claimed(voucher))
}

/// The user's vouchers of this campaign with their slots, latest first.
fn held_slots(
    connection: &Connection,
    campaign_id: &str,
    user_id: &str,
) -> StoreResult<Vec<(u32, VoucherRecord)>> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT user_slot, {VOUCHER_COLUMNS} FROM vouchers
             WHERE campaign_id = ?1 AND user_id = ?2
             ORDER BY claimed_at DESC, rank DESC"
        ))
        .map_err(database)?;
    let mut found = statement
        .query(params![campaign_id, user_id])
        .map_err(database)?;
    let mut held = Vec::new();
    while let Some(row) = found.next().map_err(database)? {
        let slot: i64 = row.get(0).map_err(database)?;
        let voucher = rows::voucher_at(row, 1)?;
        held.push((u32::try_from(slot).map_err(rows::corrupt)?, voucher));
    }
    Ok(held)
}

/// The state columns a claim sets.
struct HoldColumns {
    state: &'static str,
    reservation_id: Option<String>,
    reserved_until: Option<i64>,
    issued_at: Option<i64>,
    expires_at: Option<i64>,
}

impl HoldColumns {
    fn new(hold: Hold, now: Timestamp) -> HoldColumns {
        match hold {
            Hold::Issue { expires_at } => HoldColumns {
                state: "issued",
                reservation_id: None,
                reserved_until: None,
                issued_at: Some(millis(now)),
                expires_at: optional_millis(expires_at),
            },
            Hold::Reserve { until } => HoldColumns {
                state: "reserved",
                reservation_id: Some(uuid::Uuid::new_v4().to_string()),
                reserved_until: Some(millis(until)),
                issued_at: None,
                expires_at: None,
            },
        }
    }
}

/// Takes the campaign's lowest available voucher for the claim: found by
/// the partial index, updated by its rowid, read back by its rowid. Three
/// point statements, where one `UPDATE ... WHERE id = (SELECT ...)
/// RETURNING` made SQLite build two temporary tables for every claim (the
/// rows to update and the rows to return): 7 % of a claim's writer instructions.
fn take_lowest_available(
    connection: &Connection,
    claim: &ClaimRequest,
    slot: u32,
    now: Timestamp,
) -> StoreResult<Option<VoucherRecord>> {
    let lowest: Option<i64> = connection
        .prepare_cached(
            "SELECT rowid FROM vouchers
             WHERE campaign_id = ?1 AND state = 'available'
             ORDER BY rank LIMIT 1",
        )
        .and_then(|mut statement| {
            statement
                .query_row([claim.campaign_id.to_string()], |row| row.get(0))
                .optional()
        })
        .map_err(database)?;
    let Some(rowid) = lowest else {
        return Ok(None);
    };
    let hold = HoldColumns::new(claim.hold, now);
    let updated = connection
        .prepare_cached(
            "UPDATE vouchers
             SET state = ?1, user_id = ?2, user_slot = ?3, claimed_at = ?4,
                 reservation_id = ?5, reserved_until = ?6, issued_at = ?7, expires_at = ?8
             WHERE rowid = ?9 AND state = 'available'",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                hold.state,
                claim.user_id.as_str(),
                slot,
                millis(now),
                hold.reservation_id,
                hold.reserved_until,
                hold.issued_at,
                hold.expires_at,
                rowid,
            ])
        })
        .map_err(database)?;
    // The writer is the only writer: what it just read as available is.
    assert_eq!(updated, 1, "the lowest available voucher was taken");
    connection
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE rowid = ?1"
        ))
        .and_then(|mut statement| statement.query_row([rowid], |row| Ok(rows::voucher(row))))
        .map_err(database)?
        .map(Some)
}

/// Makes the next rank of an unlimited campaign, already held by the user.
fn mint(
    connection: &Connection,
    claim: &ClaimRequest,
    slot: u32,
    now: Timestamp,
) -> StoreResult<VoucherRecord> {
    let Some(pattern) = &claim.mint else {
        return Err(rows::corrupt("minting without a pattern"));
    };
    let rank: i64 = connection
        .prepare_cached(
            "UPDATE campaigns SET voucher_count = voucher_count + 1 WHERE id = ?1
             RETURNING voucher_count",
        )
        .and_then(|mut statement| {
            statement.query_row([claim.campaign_id.to_string()], |row| row.get(0))
        })
        .map_err(database)?;
    let hold = HoldColumns::new(claim.hold, now);
    let mut statement = connection
        .prepare_cached(&format!(
            "INSERT INTO vouchers (id, campaign_id, tenant_id, rank, code, state, user_id,
                 user_slot, claimed_at, reservation_id, reserved_until, issued_at, expires_at,
                 redemptions_max)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (tenant_id, code) DO NOTHING
             RETURNING {VOUCHER_COLUMNS}"
        ))
        .map_err(database)?;
    for _ in 0..MINT_ATTEMPTS_MAX {
        let code = pattern.generate(&mut OsEntropy);
        let mut inserted = statement
            .query(params![
                uuid::Uuid::new_v4().to_string(),
                claim.campaign_id.to_string(),
                claim.tenant_id.to_string(),
                rank,
                code.as_str(),
                hold.state,
                claim.user_id.as_str(),
                slot,
                millis(now),
                hold.reservation_id,
                hold.reserved_until,
                hold.issued_at,
                hold.expires_at,
                claim.redemptions_max,
            ])
            .map_err(database)?;
        if let Some(row) = inserted.next().map_err(database)? {
            return rows::voucher(row);
        }
    }
    Err(rows::corrupt(format!(
        "{MINT_ATTEMPTS_MAX} minted codes in a row collided; the code space is exhausted"
    )))
}
