//! Voucher rows after the claim: lock, unlock, redeem, lock expiry, and the
//! listings.

use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::ToSql;
use voucherd_core::Timestamp;
use voucherd_core::ids::{CampaignId, TenantId, UserId};

use super::connection::database;
use super::rows::{self, VOUCHER_COLUMNS, stored};
use crate::model::{VoucherAction, VoucherOutcome, VoucherRecord, VoucherTarget};
use crate::stored::corrupt;
use crate::{StoreError, StoreResult};

/// A user's vouchers beyond this many are not listed.
pub(crate) const USER_VOUCHERS_MAX: i64 = 1_000;

/// An action runs again when its update matched nothing but the voucher,
/// read right after, allows it: another transaction changed the voucher in
/// between.
const ACT_ATTEMPTS_MAX: usize = 3;

/// The conditional update of each action: it changes the row only when the
/// transition is allowed, mirroring `voucherd_core::voucher::Redemption`.
/// `$1` is now; a lock lasts the campaign's `lock_ttl`.
fn transition(action: VoucherAction) -> &'static str {
    match action {
        VoucherAction::Lock => {
            "SET state = 'locked',
                 locked_until = $1 + (SELECT lock_ttl_ms FROM campaigns WHERE id = campaign_id)
                                     * interval '1 millisecond'
             WHERE (state = 'issued' OR (state = 'locked' AND locked_until <= $1))
               AND (expires_at IS NULL OR expires_at > $1)"
        }
        VoucherAction::Unlock => {
            "SET state = 'issued', locked_until = NULL
             WHERE state = 'locked' AND locked_until > $1"
        }
        VoucherAction::Redeem => {
            "SET redemptions = redemptions + 1, locked_until = NULL,
                 state = CASE WHEN redemptions + 1 >= redemptions_max
                              THEN 'redeemed' ELSE 'issued' END
             WHERE (expires_at IS NULL OR expires_at > $1)
               AND ((state = 'locked' AND locked_until > $1)
                    OR (redemptions_max = 1
                        AND (state = 'issued' OR (state = 'locked' AND locked_until <= $1))))"
        }
    }
}

pub(crate) async fn act(
    client: &ClientWrapper,
    target: &VoucherTarget,
    action: VoucherAction,
    now: Timestamp,
) -> StoreResult<VoucherOutcome> {
    let now = stored(now);
    let holder = target.holder.as_ref().map(UserId::as_str);
    let code = target.code.as_str();
    let statement = client
        .prepare_cached(&format!(
            "UPDATE vouchers {} AND tenant_id = $2 AND code = $3
               AND ($4::text IS NULL OR user_id = $4)
             RETURNING {VOUCHER_COLUMNS}",
            transition(action)
        ))
        .await
        .map_err(database)?;
    let parameters: [&(dyn ToSql + Sync); 4] = [&now, target.tenant_id.as_uuid(), &code, &holder];
    for _ in 0..ACT_ATTEMPTS_MAX {
        let changed = client
            .query_opt(&statement, &parameters)
            .await
            .map_err(database)?;
        if let Some(row) = changed {
            return Ok(VoucherOutcome::Done(rows::voucher(&row)?));
        }
        let Some(voucher) = by_code(client, target).await? else {
            return Ok(VoucherOutcome::NotFound);
        };
        let redemption = voucher.redemption();
        let decided = match action {
            // A refusal does not depend on the lock's length.
            VoucherAction::Lock => redemption.lock(now, voucherd_core::SignedDuration::ZERO),
            VoucherAction::Unlock => redemption.unlock(now),
            VoucherAction::Redeem => redemption.redeem(now),
        };
        if let Err(refusal) = decided {
            return Ok(VoucherOutcome::Refused(refusal, voucher));
        }
    }
    Err(StoreError::Corrupt(format!(
        "{action:?} of {} was allowed by the rules but not by the statement",
        target.code
    )))
}

async fn by_code(
    client: &ClientWrapper,
    target: &VoucherTarget,
) -> StoreResult<Option<VoucherRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers
             WHERE tenant_id = $1 AND code = $2 AND state IN ('issued', 'locked', 'redeemed')
               AND ($3::text IS NULL OR user_id = $3)"
        ))
        .await
        .map_err(database)?;
    client
        .query_opt(
            &statement,
            &[
                target.tenant_id.as_uuid(),
                &target.code.as_str(),
                &target.holder.as_ref().map(UserId::as_str),
            ],
        )
        .await
        .map_err(database)?
        .as_ref()
        .map(rows::voucher)
        .transpose()
}

/// Skips locks that another transaction is changing right now (a lock taken
/// again, a redemption): the next sweep sees what it made of them.
pub(crate) async fn expire_locks(
    client: &ClientWrapper,
    now: Timestamp,
    limit: u32,
) -> StoreResult<u32> {
    let statement = client
        .prepare_cached(
            "UPDATE vouchers SET state = 'issued', locked_until = NULL
             WHERE id IN (
                 SELECT id FROM vouchers
                 WHERE state = 'locked' AND locked_until <= $1
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )",
        )
        .await
        .map_err(database)?;
    let expired = client
        .execute(&statement, &[&stored(now), &i64::from(limit)])
        .await
        .map_err(database)?;
    u32::try_from(expired).map_err(corrupt)
}

pub(crate) async fn of_user(
    client: &ClientWrapper,
    tenant_id: TenantId,
    user_id: &UserId,
) -> StoreResult<Vec<VoucherRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers
             WHERE tenant_id = $1 AND user_id = $2
             ORDER BY claimed_at, rank LIMIT $3"
        ))
        .await
        .map_err(database)?;
    client
        .query(
            &statement,
            &[tenant_id.as_uuid(), &user_id.as_str(), &USER_VOUCHERS_MAX],
        )
        .await
        .map_err(database)?
        .iter()
        .map(rows::voucher)
        .collect()
}

pub(crate) async fn page(
    client: &ClientWrapper,
    campaign_id: CampaignId,
    after_rank: u32,
    limit: u32,
) -> StoreResult<Vec<VoucherRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers
             WHERE campaign_id = $1 AND rank > $2
               AND rank <= (SELECT voucher_count FROM campaigns WHERE id = $1)
             ORDER BY rank LIMIT $3"
        ))
        .await
        .map_err(database)?;
    client
        .query(
            &statement,
            &[
                campaign_id.as_uuid(),
                &i64::from(after_rank),
                &i64::from(limit),
            ],
        )
        .await
        .map_err(database)?
        .iter()
        .map(rows::voucher)
        .collect()
}
