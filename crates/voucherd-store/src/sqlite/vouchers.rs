//! Voucher rows after the claim: lock, unlock, redeem, lock expiry, and the
//! listings.

use rusqlite::{Connection, params};
use voucherd_core::Timestamp;
use voucherd_core::ids::{CampaignId, TenantId, UserId};

use super::connection::database;
use super::rows::{self, VOUCHER_COLUMNS, millis};
use crate::model::{VoucherAction, VoucherOutcome, VoucherRecord, VoucherTarget};
use crate::{StoreError, StoreResult};

/// A user's vouchers beyond this many are not listed.
pub(crate) const USER_VOUCHERS_MAX: u32 = 1_000;

/// The conditional update of each action: it changes the row only when the
/// transition is allowed, mirroring `voucherd_core::voucher::Redemption`.
/// `?1` is now in milliseconds; a lock lasts the campaign's `lock_ttl`.
fn transition(action: VoucherAction) -> &'static str {
    match action {
        VoucherAction::Lock => {
            "SET state = 'locked',
                 locked_until = ?1 + (SELECT lock_ttl_ms FROM campaigns WHERE id = campaign_id)
             WHERE (state = 'issued' OR (state = 'locked' AND locked_until <= ?1))
               AND (expires_at IS NULL OR expires_at > ?1)"
        }
        VoucherAction::Unlock => {
            "SET state = 'issued', locked_until = NULL
             WHERE state = 'locked' AND locked_until > ?1"
        }
        VoucherAction::Redeem => {
            "SET redemptions = redemptions + 1, locked_until = NULL,
                 state = CASE WHEN redemptions + 1 >= redemptions_max
                              THEN 'redeemed' ELSE 'issued' END
             WHERE (expires_at IS NULL OR expires_at > ?1)
               AND ((state = 'locked' AND locked_until > ?1)
                    OR (redemptions_max = 1
                        AND (state = 'issued' OR (state = 'locked' AND locked_until <= ?1))))"
        }
    }
}

pub(crate) fn act(
    connection: &Connection,
    target: &VoucherTarget,
    action: VoucherAction,
    now: Timestamp,
) -> StoreResult<VoucherOutcome> {
    let holder = target.holder.as_ref().map(UserId::as_str);
    let mut statement = connection
        .prepare_cached(&format!(
            "UPDATE vouchers {} AND tenant_id = ?2 AND code = ?3
               AND (?4 IS NULL OR user_id = ?4)
             RETURNING {VOUCHER_COLUMNS}",
            transition(action)
        ))
        .map_err(database)?;
    let mut changed = statement
        .query(params![
            millis(now),
            target.tenant_id.to_string(),
            target.code.as_str(),
            holder
        ])
        .map_err(database)?;
    if let Some(row) = changed.next().map_err(database)? {
        return Ok(VoucherOutcome::Done(rows::voucher(row)?));
    }
    let Some(voucher) = by_code(connection, target)? else {
        return Ok(VoucherOutcome::NotFound);
    };
    let redemption = voucher.redemption();
    let decided = match action {
        // A refusal does not depend on the lock's length.
        VoucherAction::Lock => redemption.lock(now, voucherd_core::SignedDuration::ZERO),
        VoucherAction::Unlock => redemption.unlock(now),
        VoucherAction::Redeem => redemption.redeem(now),
    };
    match decided {
        Err(refusal) => Ok(VoucherOutcome::Refused(refusal, voucher)),
        Ok(_) => Err(StoreError::Corrupt(format!(
            "{action:?} of {} was allowed by the rules but not by the statement",
            voucher.code
        ))),
    }
}

fn by_code(connection: &Connection, target: &VoucherTarget) -> StoreResult<Option<VoucherRecord>> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers
             WHERE tenant_id = ?1 AND code = ?2 AND state IN ('issued', 'locked', 'redeemed')
               AND (?3 IS NULL OR user_id = ?3)"
        ))
        .map_err(database)?;
    let mut found = statement
        .query(params![
            target.tenant_id.to_string(),
            target.code.as_str(),
            target.holder.as_ref().map(UserId::as_str)
        ])
        .map_err(database)?;
    found
        .next()
        .map_err(database)?
        .map(rows::voucher)
        .transpose()
}

pub(crate) fn expire_locks(
    connection: &Connection,
    now: Timestamp,
    limit: u32,
) -> StoreResult<u32> {
    let expired = connection
        .prepare_cached(
            "UPDATE vouchers SET state = 'issued', locked_until = NULL
             WHERE id IN (
                 SELECT id FROM vouchers WHERE state = 'locked' AND locked_until <= ?1 LIMIT ?2
             )",
        )
        .and_then(|mut statement| statement.execute(params![millis(now), limit]))
        .map_err(database)?;
    u32::try_from(expired).map_err(rows::corrupt)
}

pub(crate) fn of_user(
    connection: &Connection,
    tenant_id: TenantId,
    user_id: &UserId,
) -> StoreResult<Vec<VoucherRecord>> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers
             WHERE user_id = ?2 AND tenant_id = ?1
             ORDER BY claimed_at, rank LIMIT ?3"
        ))
        .map_err(database)?;
    collect(
        &mut statement,
        params![tenant_id.to_string(), user_id.as_str(), USER_VOUCHERS_MAX],
    )
}

pub(crate) fn page(
    connection: &Connection,
    campaign_id: CampaignId,
    after_rank: u32,
    limit: u32,
) -> StoreResult<Vec<VoucherRecord>> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers
             WHERE campaign_id = ?1 AND rank > ?2
               AND rank <= (SELECT voucher_count FROM campaigns WHERE id = ?1)
             ORDER BY rank LIMIT ?3"
        ))
        .map_err(database)?;
    collect(
        &mut statement,
        params![campaign_id.to_string(), after_rank, limit],
    )
}

fn collect(
    statement: &mut rusqlite::Statement<'_>,
    arguments: impl rusqlite::Params,
) -> StoreResult<Vec<VoucherRecord>> {
    let mut found = statement.query(arguments).map_err(database)?;
    let mut vouchers = Vec::new();
    while let Some(row) = found.next().map_err(database)? {
        vouchers.push(rows::voucher(row)?);
    }
    Ok(vouchers)
}
