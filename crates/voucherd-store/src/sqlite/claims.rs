//! Deciding claims inside the writer's transaction.
//!
//! Each claim runs in its own savepoint so that a claim the schema refuses
//! (an engine bug) fails alone. The writer is the only one writing, so the
//! reads here see exactly the state the writes will change.

use rusqlite::{Connection, OptionalExtension, params};
use voucherd_core::Timestamp;
use voucherd_core::campaign::Hold;
use voucherd_core::ids::{ReservationId, VoucherId, uuid_at};
use voucherd_core::voucher::VoucherState;

use super::connection::{command, database};
use super::rows::{self, millis, optional_millis, voucher_columns};
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
        None => match mint(connection, claim, slot, now)? {
            Some(minted) => minted,
            None => return Ok(ClaimOutcome::SoldOut),
        },
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
        .prepare_cached(concat!(
            "SELECT user_slot, ",
            voucher_columns!(),
            " FROM vouchers
             WHERE user_id = ?2 AND campaign_id = ?1
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

/// Takes the campaign's lowest available voucher for the claim: read with
/// its rowid through the partial index, then updated by that rowid. The
/// answer is the row as read with the columns the update wrote, so the
/// row is not read a second time.
///
/// The update sets only the columns its hold changes: SQLite maintains
/// every index on a column named in `SET`, so an issued coupon that named
/// `reservation_id` (to set it to NULL again) rewrote that unique index's
/// entry for nothing. It is `OR FAIL`, and the schema's guards on a
/// voucher's update raise `FAIL` (migration 0009): a statement that may
/// abort makes SQLite copy every page it touches into a statement journal
/// first, a fifth of a claim's writer instructions. Nothing is lost by it:
/// a single-row update checks its constraints before it writes, and a claim
/// that fails fails its whole job, which the writer rolls back to the job's
/// savepoint.
fn take_lowest_available(
    connection: &Connection,
    claim: &ClaimRequest,
    slot: u32,
    now: Timestamp,
) -> StoreResult<Option<VoucherRecord>> {
    let lowest = connection
        .prepare_cached(concat!(
            "SELECT rowid, ",
            voucher_columns!(),
            " FROM vouchers
             WHERE campaign_id = ?1 AND state = 'available'
             ORDER BY rank LIMIT 1"
        ))
        .and_then(|mut statement| {
            statement
                .query_row([claim.campaign_id.to_string()], |row| {
                    Ok((row.get::<_, i64>(0)?, rows::voucher_at(row, 1)))
                })
                .optional()
        })
        .map_err(database)?;
    let Some((rowid, available)) = lowest else {
        return Ok(None);
    };
    let available = available?;
    assert_eq!(available.state, VoucherState::Available);
    let claimed = claimed(available, claim, now)?;
    // The columns past the holder's differ by hold: one statement each, so
    // that neither names a column it does not set.
    let reservation_id = claimed.reservation_id.map(|id| id.to_string());
    let (update, fourth, fifth): (&str, &dyn rusqlite::ToSql, Option<i64>) = match claim.hold {
        Hold::Issue { .. } => (
            "UPDATE OR FAIL vouchers
             SET state = 'issued', user_id = ?1, user_slot = ?2, claimed_at = ?3,
                 issued_at = ?4, expires_at = ?5
             WHERE rowid = ?6 AND state = 'available'",
            &optional_millis(claimed.issued_at),
            optional_millis(claimed.expires_at),
        ),
        Hold::Reserve { .. } => (
            "UPDATE OR FAIL vouchers
             SET state = 'reserved', user_id = ?1, user_slot = ?2, claimed_at = ?3,
                 reservation_id = ?4, reserved_until = ?5
             WHERE rowid = ?6 AND state = 'available'",
            &reservation_id,
            optional_millis(claimed.reserved_until),
        ),
    };
    let updated = connection
        .prepare_cached(update)
        .and_then(|mut statement| {
            statement.execute(params![
                claim.user_id.as_str(),
                slot,
                optional_millis(claimed.claimed_at),
                fourth,
                fifth,
                rowid,
            ])
        })
        .map_err(database)?;
    // The writer is the only writer: what it just read as available is.
    assert_eq!(updated, 1, "the lowest available voucher was taken");
    Ok(Some(claimed))
}

/// The available voucher as the claim leaves it: held by the claim's user,
/// issued or reserved by its hold. Times are kept to the millisecond the
/// row stores, so the answer is the row.
fn claimed(
    available: VoucherRecord,
    claim: &ClaimRequest,
    now: Timestamp,
) -> StoreResult<VoucherRecord> {
    let at = |time: Timestamp| rows::timestamp(millis(time));
    let now = at(now)?;
    let held = VoucherRecord {
        user_id: Some(claim.user_id.clone()),
        claimed_at: Some(now),
        ..available
    };
    Ok(match claim.hold {
        Hold::Issue { expires_at } => VoucherRecord {
            state: VoucherState::Issued,
            issued_at: Some(now),
            expires_at: expires_at.map(at).transpose()?,
            ..held
        },
        Hold::Reserve { until } => VoucherRecord {
            state: VoucherState::Reserved,
            reservation_id: Some(ReservationId::from_uuid(uuid_at(now))),
            reserved_until: Some(at(until)?),
            ..held
        },
    })
}

/// Makes the campaign's next rank, already held by the user, when the
/// campaign mints and the rank is within its supply; `None` is sold out.
fn mint(
    connection: &Connection,
    claim: &ClaimRequest,
    slot: u32,
    now: Timestamp,
) -> StoreResult<Option<VoucherRecord>> {
    let Some(pattern) = &claim.mint else {
        return Ok(None);
    };
    // The row's supply bounds the ranks, as on PostgreSQL. Both writes are
    // OR FAIL, and so are the guards they pass, so that neither keeps a
    // statement journal (see `take_lowest_available`).
    let rank: Option<(i64, Option<i64>)> = connection
        .prepare_cached(
            "UPDATE OR FAIL campaigns SET voucher_count = voucher_count + 1
             WHERE id = ?1 AND (supply IS NULL OR voucher_count < supply)
             RETURNING voucher_count, supply",
        )
        .and_then(|mut statement| {
            statement
                .query_row([claim.campaign_id.to_string()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
        })
        .map_err(database)?;
    let Some((rank, supply)) = rank else {
        return Ok(None);
    };
    assert!(
        supply.is_none_or(|supply| rank <= supply),
        "a minted rank is within the supply"
    );
    // A code the tenant has is looked up rather than left to the insert's
    // conflict clause: an upsert may abort, and so would keep a statement
    // journal. The writer is the only writer, so a code not found stays free.
    let mut taken = connection
        .prepare_cached("SELECT 1 FROM vouchers WHERE tenant_id = ?1 AND code = ?2")
        .map_err(database)?;
    let mut statement = connection
        .prepare_cached(
            "INSERT OR FAIL INTO vouchers (id, campaign_id, tenant_id, rank, code, state, user_id,
                 user_slot, claimed_at, reservation_id, reserved_until, issued_at, expires_at,
                 redemptions_max)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .map_err(database)?;
    let tenant_id = claim.tenant_id.to_string();
    for _ in 0..MINT_ATTEMPTS_MAX {
        let code = pattern.generate(&mut OsEntropy);
        if taken
            .exists(params![tenant_id, code.as_str()])
            .map_err(database)?
        {
            continue;
        }
        let made = VoucherRecord {
            id: VoucherId::from_uuid(uuid_at(now)),
            campaign_id: claim.campaign_id,
            tenant_id: claim.tenant_id,
            rank: u32::try_from(rank).map_err(rows::corrupt)?,
            code,
            state: VoucherState::Available,
            user_id: None,
            claimed_at: None,
            reservation_id: None,
            reserved_until: None,
            issued_at: None,
            expires_at: None,
            locked_until: None,
            redemptions: 0,
            redemptions_max: claim.redemptions_max,
        };
        let minted = claimed(made, claim, now)?;
        let inserted = statement
            .execute(params![
                minted.id.to_string(),
                minted.campaign_id.to_string(),
                tenant_id,
                minted.rank,
                minted.code.as_str(),
                minted.state.as_str(),
                claim.user_id.as_str(),
                slot,
                optional_millis(minted.claimed_at),
                minted.reservation_id.map(|id| id.to_string()),
                optional_millis(minted.reserved_until),
                optional_millis(minted.issued_at),
                optional_millis(minted.expires_at),
                minted.redemptions_max,
            ])
            .map_err(database)?;
        assert_eq!(inserted, 1, "a code found free is inserted");
        return Ok(Some(minted));
    }
    Err(rows::corrupt(format!(
        "{MINT_ATTEMPTS_MAX} minted codes in a row collided; the code space is exhausted"
    )))
}
