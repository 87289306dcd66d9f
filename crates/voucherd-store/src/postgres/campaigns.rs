//! Campaign rows: creation, codes, lifecycle and counts.

use std::collections::HashSet;

use deadpool_postgres::{ClientWrapper, Transaction};
use tokio_postgres::types::ToSql;
use voucherd_core::Timestamp;
use voucherd_core::campaign::Lifecycle;
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, OrderedUuids, TenantId};
use voucherd_core::voucher::VoucherState;

use super::connection::database;
use super::rows::{self, CAMPAIGN_COLUMNS, CAMPAIGN_WITH_TIERS, get, stored, stored_optional};
use crate::model::{
    AddCodesOutcome, CampaignCounts, CampaignRecord, CampaignState, CodesLease, CommitOutcome,
    LifecycleOutcome, StageOutcome, StateCounts,
};
use crate::model::{Available, CampaignChanges, ChangeCursor};
use crate::staging::{self, CodesHolder, Upload};
use crate::stored::{CampaignValues, Unminted, corrupt, count};
use crate::{STAGED_ROWS_PER_JOB, StoreResult};

/// How many seconds of claim history a report shows.
const CLAIM_HISTORY_SECONDS_MAX: i64 = 3_600;

/// Staging a slice runs again when another campaign of the tenant took one
/// of the same codes while it ran; the next run reports it as a duplicate.
pub(crate) const STAGE_ATTEMPTS_MAX: usize = 3;

pub(crate) async fn insert(client: &ClientWrapper, campaign: &CampaignRecord) -> StoreResult<()> {
    let values = CampaignValues::of(campaign);
    let narrow = |value: i64| i32::try_from(value).map_err(corrupt);
    let per_user_limit = narrow(values.per_user_limit)?;
    let redemptions_max = narrow(values.redemptions_max)?;
    let (until_ranks, discounts): (Vec<i64>, Vec<i32>) = values
        .tiers
        .iter()
        .map(|&(until_rank, discount)| Ok((until_rank, narrow(discount)?)))
        .collect::<StoreResult<Vec<_>>>()?
        .into_iter()
        .unzip();
    // The campaign and its tiers in one statement, so in one transaction.
    let statement = client
        .prepare_cached(&format!(
            "WITH campaign AS (
                 INSERT INTO campaigns ({CAMPAIGN_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                         $17, $18, $19, $20, $21, $22, $23, $24, $25, $28)
             )
             INSERT INTO campaign_tiers (campaign_id, until_rank, discount_percent)
             SELECT $1, tier.until_rank, tier.discount_percent
             FROM unnest($26::bigint[], $27::integer[]) AS tier (until_rank, discount_percent)"
        ))
        .await
        .map_err(database)?;
    client
        .execute(
            &statement,
            &[
                values.id.as_uuid(),
                values.tenant_id.as_uuid(),
                &values.name,
                &values.message,
                &values.description,
                &values.terms,
                &values.kind,
                &values.supply,
                &stored_optional(values.starts_at),
                &stored_optional(values.ends_at),
                &stored_optional(values.voucher_expires_at),
                &values.voucher_valid_for_ms,
                &values.price_amount,
                &values.price_currency,
                &per_user_limit,
                &values.daily_limit_group,
                &values.trigger,
                &values.reservation_ttl_ms,
                &values.lock_ttl_ms,
                &redemptions_max,
                &values.code_pattern,
                &values.lifecycle,
                &values.voucher_count,
                &stored(values.created_at),
                &stored_optional(values.published_at),
                &until_ranks,
                &discounts,
                &values.codes_on_claim,
            ],
        )
        .await
        .map_err(database)?;
    Ok(())
}

/// One campaign, or every campaign when `id` is `None`.
pub(crate) async fn select(
    client: &ClientWrapper,
    id: Option<CampaignId>,
    tenant_id: Option<TenantId>,
) -> StoreResult<Vec<CampaignRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {CAMPAIGN_WITH_TIERS} FROM campaigns
             WHERE ($1::uuid IS NULL OR id = $1) AND ($2::uuid IS NULL OR tenant_id = $2)
             ORDER BY created_at, id"
        ))
        .await
        .map_err(database)?;
    let id = id.map(|id| *id.as_uuid());
    let tenant_id = tenant_id.map(|tenant_id| *tenant_id.as_uuid());
    client
        .query(&statement, &[&id, &tenant_id])
        .await
        .map_err(database)?
        .iter()
        .map(rows::campaign)
        .collect()
}

/// The campaign's row as staging reads it, locked until the transaction
/// ends (so that two uploads to one campaign take turns), with what a
/// slice's inserts need: tenant and redemptions.
async fn codes_holder(
    transaction: &Transaction<'_>,
    campaign_id: CampaignId,
) -> StoreResult<Option<(CodesHolder, uuid::Uuid, i32)>> {
    let statement = transaction
        .prepare_cached(
            "SELECT tenant_id, lifecycle, supply, voucher_count, redemptions_max,
                    upload_id, upload_staged, upload_until
             FROM campaigns WHERE id = $1
             FOR NO KEY UPDATE",
        )
        .await
        .map_err(database)?;
    let Some(row) = transaction
        .query_opt(&statement, &[campaign_id.as_uuid()])
        .await
        .map_err(database)?
    else {
        return Ok(None);
    };
    let lifecycle: String = get(&row, 1)?;
    let upload = match (
        get::<Option<uuid::Uuid>>(&row, 5)?,
        get::<Option<Timestamp>>(&row, 7)?,
    ) {
        (Some(id), Some(until)) => Some((id, get(&row, 6)?, until)),
        (None, None) => None,
        other => return Err(corrupt(format!("an upload of {other:?}"))),
    };
    let holder = CodesHolder::new(&lifecycle, get(&row, 2)?, get(&row, 3)?, upload)?;
    Ok(Some((holder, get(&row, 0)?, get(&row, 4)?)))
}

/// Sets who holds the campaign's codes (`None`: nobody).
async fn hold(
    transaction: &Transaction<'_>,
    campaign_id: CampaignId,
    upload: Option<Upload>,
) -> StoreResult<()> {
    let statement = transaction
        .prepare_cached(
            "UPDATE campaigns SET upload_id = $1, upload_staged = $2, upload_until = $3
             WHERE id = $4",
        )
        .await
        .map_err(database)?;
    transaction
        .execute(
            &statement,
            &[
                &upload.map(|upload| upload.id),
                &upload.map_or(0, |upload| upload.staged),
                &upload.map(|upload| stored(upload.until)),
                campaign_id.as_uuid(),
            ],
        )
        .await
        .map_err(database)?;
    Ok(())
}

/// Removes up to `limit` vouchers of ranks `first_rank..`, which nobody
/// counted: an upload's staged rows.
async fn remove_staged(
    transaction: &Transaction<'_>,
    campaign_id: CampaignId,
    first_rank: i64,
    limit: u32,
) -> StoreResult<u32> {
    let statement = transaction
        .prepare_cached(
            "DELETE FROM vouchers WHERE id IN (
                 SELECT id FROM vouchers WHERE campaign_id = $1 AND rank >= $2 LIMIT $3
             )",
        )
        .await
        .map_err(database)?;
    let removed = transaction
        .execute(
            &statement,
            &[campaign_id.as_uuid(), &first_rank, &i64::from(limit)],
        )
        .await
        .map_err(database)?;
    u32::try_from(removed).map_err(corrupt)
}

/// Stages one slice. A code another campaign of the tenant takes while
/// this runs fails the insert; the caller runs the slice again, which then
/// finds it a duplicate.
pub(crate) async fn stage_codes(
    transaction: &Transaction<'_>,
    campaign_id: CampaignId,
    lease: &CodesLease,
    codes: &[VoucherCode],
) -> StoreResult<StageOutcome> {
    let Some((holder, tenant_id, redemptions_max)) = codes_holder(transaction, campaign_id).await?
    else {
        return Ok(StageOutcome::NotFound);
    };
    let slot = match holder.slot(lease) {
        Ok(slot) => slot,
        Err(refused) => return Ok(refused),
    };
    let mut upload = Upload {
        id: lease.id,
        staged: slot.staged,
        until: lease.until,
    };
    hold(transaction, campaign_id, Some(upload)).await?;
    // Rows past what this lease staged are an interrupted upload's.
    if slot.may_find_leftovers()
        && remove_staged(
            transaction,
            campaign_id,
            slot.first_rank,
            STAGED_ROWS_PER_JOB,
        )
        .await?
            > 0
    {
        return Ok(StageOutcome::Cleaning);
    }
    let offered: Vec<&str> = codes.iter().map(VoucherCode::as_str).collect();
    let known = transaction
        .prepare_cached("SELECT code FROM vouchers WHERE tenant_id = $1 AND code = ANY($2)")
        .await
        .map_err(database)?;
    let known: HashSet<String> = transaction
        .query(&known, &[&tenant_id, &offered])
        .await
        .map_err(database)?
        .iter()
        .map(|row| get(row, 0))
        .collect::<StoreResult<_>>()?;
    let (fresh, duplicates) =
        staging::split_fresh(codes, |code| Ok(known.contains(code.as_str())))?;
    upload.staged = match holder.fits(slot, fresh.len())? {
        Ok(staged) => staged,
        Err(refused) => return Ok(refused),
    };
    let fresh_codes: Vec<&str> = fresh.iter().map(|code| code.as_str()).collect();
    // Time-ordered ids: the primary key's index grows at its end.
    let mut ids = OrderedUuids::at(lease.now);
    let fresh_ids: Vec<uuid::Uuid> = fresh.iter().map(|_| ids.next_id()).collect();
    let insert = transaction
        .prepare_cached(
            "INSERT INTO vouchers (id, campaign_id, tenant_id, rank, code, state, redemptions_max)
             SELECT fresh.id, $1, $2, $3 + fresh.ordinal - 1, fresh.code, 'available', $4
             FROM unnest($5::text[], $6::uuid[]) WITH ORDINALITY AS fresh (code, id, ordinal)",
        )
        .await
        .map_err(database)?;
    let inserted = transaction
        .execute(
            &insert,
            &[
                campaign_id.as_uuid(),
                &tenant_id,
                &slot.first_rank,
                &redemptions_max,
                &fresh_codes,
                &fresh_ids,
            ],
        )
        .await
        .map_err(database)?;
    if inserted != fresh.len() as u64 {
        return Err(corrupt(format!(
            "{inserted} of {} new codes inserted",
            fresh.len()
        )));
    }
    hold(transaction, campaign_id, Some(upload)).await?;
    staging::staged(fresh.len(), duplicates, upload.staged)
}

/// Stages and commits `codes` in the one transaction this runs in.
pub(crate) async fn add_codes(
    transaction: &Transaction<'_>,
    campaign_id: CampaignId,
    codes: &[VoucherCode],
    now: Timestamp,
) -> StoreResult<AddCodesOutcome> {
    let lease = staging::one_job_lease(now);
    loop {
        match stage_codes(transaction, campaign_id, &lease, codes).await? {
            StageOutcome::Cleaning => {}
            StageOutcome::Staged { duplicates, .. } => {
                let committed = commit_codes(transaction, campaign_id, lease.id).await?;
                return Ok(staging::added(duplicates, committed));
            }
            refused => {
                // The lease may hold the campaign (a slice past the supply).
                discard_codes(transaction, campaign_id, lease.id, u32::MAX).await?;
                return Ok(staging::refused(refused));
            }
        }
    }
}

pub(crate) async fn commit_codes(
    transaction: &Transaction<'_>,
    campaign_id: CampaignId,
    lease: uuid::Uuid,
) -> StoreResult<CommitOutcome> {
    let Some((holder, ..)) = codes_holder(transaction, campaign_id).await? else {
        return Ok(CommitOutcome::NotFound);
    };
    let voucher_count = match holder.commit(lease)? {
        Ok(voucher_count) => voucher_count,
        Err(refused) => return Ok(refused),
    };
    let statement = transaction
        .prepare_cached(
            "UPDATE campaigns SET voucher_count = $1, upload_id = NULL, upload_staged = 0,
                                  upload_until = NULL
             WHERE id = $2",
        )
        .await
        .map_err(database)?;
    transaction
        .execute(&statement, &[&voucher_count, campaign_id.as_uuid()])
        .await
        .map_err(database)?;
    staging::committed(holder.voucher_count, voucher_count)
}

pub(crate) async fn discard_codes(
    transaction: &Transaction<'_>,
    campaign_id: CampaignId,
    lease: uuid::Uuid,
    limit: u32,
) -> StoreResult<bool> {
    let Some((holder, ..)) = codes_holder(transaction, campaign_id).await? else {
        return Ok(true);
    };
    let Some(upload) = holder.upload.filter(|_| holder.held_by(lease)) else {
        return Ok(true);
    };
    let removed = remove_staged(transaction, campaign_id, holder.voucher_count + 1, limit).await?;
    if removed < limit {
        hold(transaction, campaign_id, None).await?;
        return Ok(true);
    }
    // Held while rows remain; none of them counts as staged any more.
    hold(
        transaction,
        campaign_id,
        Some(Upload {
            staged: 0,
            ..upload
        }),
    )
    .await?;
    Ok(false)
}

pub(crate) async fn change_lifecycle(
    client: &ClientWrapper,
    campaign_id: CampaignId,
    from: Lifecycle,
    to: Lifecycle,
    now: Timestamp,
) -> StoreResult<LifecycleOutcome> {
    let statement = client
        .prepare_cached(
            "UPDATE campaigns
             SET lifecycle = $1, published_at = coalesce(published_at, $2)
             WHERE id = $3 AND lifecycle = $4
               AND ($1 <> 'live' OR ((supply IS NULL OR voucher_count = supply OR codes_on_claim)
                                     AND upload_id IS NULL))",
        )
        .await
        .map_err(database)?;
    let changed = client
        .execute(
            &statement,
            &[
                &to.as_str(),
                &stored(now),
                campaign_id.as_uuid(),
                &from.as_str(),
            ],
        )
        .await
        .map_err(database)?;
    if changed == 1 {
        return Ok(LifecycleOutcome::Changed);
    }
    // Why not: the campaign as it is now, read after the refused update.
    let found = client
        .query_opt(
            "SELECT lifecycle, supply, voucher_count, upload_id IS NOT NULL
             FROM campaigns WHERE id = $1",
            &[campaign_id.as_uuid()],
        )
        .await
        .map_err(database)?;
    let Some(row) = found else {
        return Ok(LifecycleOutcome::NotFound);
    };
    let lifecycle: String = get(&row, 0)?;
    let lifecycle = Lifecycle::parse(&lifecycle).ok_or_else(|| corrupt(&lifecycle))?;
    let voucher_count: i64 = get(&row, 2)?;
    Ok(match get::<Option<i64>>(&row, 1)? {
        _ if lifecycle != from => LifecycleOutcome::WrongState(lifecycle),
        Some(supply) if supply != voucher_count => LifecycleOutcome::CodesMissing {
            voucher_count: count(voucher_count)?,
            supply: count(supply)?,
        },
        _ if get::<bool>(&row, 3)? => LifecycleOutcome::UploadUnderWay,
        _ => LifecycleOutcome::WrongState(lifecycle),
    })
}

pub(crate) async fn counts(
    client: &ClientWrapper,
    campaign_id: CampaignId,
    rank_ranges: &[(u32, u32)],
) -> StoreResult<CampaignCounts> {
    // The whole campaign is range 1; the ranges asked for follow.
    let (firsts, lasts): (Vec<i64>, Vec<i64>) = std::iter::once((1, u32::MAX))
        .chain(rank_ranges.iter().copied())
        .map(|(first, last)| (i64::from(first), i64::from(last)))
        .unzip();
    let by_state = client
        .prepare_cached(
            "SELECT range.index, voucher.state, count(*),
                    campaign.codes_on_claim, campaign.supply, campaign.voucher_count
             FROM campaigns AS campaign
             CROSS JOIN unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY
                 AS range (first, last, index)
             LEFT JOIN vouchers AS voucher
                 ON voucher.campaign_id = $1 AND voucher.rank BETWEEN range.first AND range.last
                AND voucher.rank <= campaign.voucher_count
             WHERE campaign.id = $1
             GROUP BY range.index, voucher.state, campaign.id",
        )
        .await
        .map_err(database)?;
    let per_second = client
        .prepare_cached(
            "SELECT second, claims FROM (
                 SELECT floor(extract(epoch FROM claimed_at))::bigint AS second,
                        count(*) AS claims
                 FROM vouchers
                 WHERE campaign_id = $1 AND claimed_at IS NOT NULL
                 GROUP BY second ORDER BY second DESC LIMIT $2
             ) AS recent
             ORDER BY second",
        )
        .await
        .map_err(database)?;
    let by_state_parameters: [&(dyn ToSql + Sync); 3] = [campaign_id.as_uuid(), &firsts, &lasts];
    let per_second_parameters: [&(dyn ToSql + Sync); 2] =
        [campaign_id.as_uuid(), &CLAIM_HISTORY_SECONDS_MAX];
    // Both queries go out together on the one connection.
    let (by_state, per_second) = tokio::try_join!(
        client.query(&by_state, &by_state_parameters),
        client.query(&per_second, &per_second_parameters),
    )
    .map_err(database)?;
    // Every range has a row (a range without vouchers one with no state),
    // each with the campaign row the vouchers were counted up to.
    let mut ranges = vec![StateCounts::default(); firsts.len()];
    let mut unminted = None;
    for row in &by_state {
        let index: i64 = get(row, 0)?;
        let state: Option<String> = get(row, 1)?;
        let claims: i64 = get(row, 2)?;
        unminted = Some(Unminted {
            on_claim: get(row, 3)?,
            supply: get(row, 4)?,
            voucher_count: get(row, 5)?,
        });
        let range = usize::try_from(index - 1)
            .ok()
            .and_then(|index| ranges.get_mut(index))
            .ok_or_else(|| corrupt(format!("rank range {index}")))?;
        if let Some(state) = state {
            let state = VoucherState::parse(&state).ok_or_else(|| corrupt(&state))?;
            range.add(state, u64::try_from(claims).map_err(corrupt)?);
        }
    }
    if let Some(unminted) = unminted {
        let bound = |rank: i64| u32::try_from(rank).unwrap_or(u32::MAX);
        for ((range, &first), &last) in ranges.iter_mut().zip(&firsts).zip(&lasts) {
            range.add(
                VoucherState::Available,
                unminted.within(bound(first), bound(last))?,
            );
        }
    }
    let claims_per_second = per_second
        .iter()
        .map(|row| {
            let claims: i64 = get(row, 1)?;
            Ok((get(row, 0)?, u64::try_from(claims).map_err(corrupt)?))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let states = ranges.remove(0);
    Ok(CampaignCounts {
        states,
        by_rank_range: ranges,
        claims_per_second,
    })
}

/// Campaigns stamped by a transaction at or after `since`, and the oldest
/// transaction still running when they were read: the next cursor. A
/// change still uncommitted now has a transaction id at or past it.
const CHANGES: &str = "
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
           campaign.id, campaign.lifecycle, campaign.voucher_count, campaign.published_at
    FROM (SELECT 1) AS one
    LEFT JOIN campaigns AS campaign ON campaign.change_xid >= $1::bigint::text::xid8";

pub(crate) async fn changes(
    client: &ClientWrapper,
    since: Option<ChangeCursor>,
) -> StoreResult<CampaignChanges> {
    let statement = client.prepare_cached(CHANGES).await.map_err(database)?;
    let since = since.map_or(0, |cursor| cursor.0);
    let found = client
        .query(&statement, &[&since])
        .await
        .map_err(database)?;
    let mut next = since;
    let mut states = Vec::with_capacity(found.len());
    for row in &found {
        next = get(row, 0)?;
        let Some(id) = get::<Option<uuid::Uuid>>(row, 1)? else {
            continue;
        };
        let lifecycle: String = get(row, 2)?;
        states.push(CampaignState {
            id: CampaignId::from_uuid(id),
            lifecycle: Lifecycle::parse(&lifecycle).ok_or_else(|| corrupt(&lifecycle))?,
            voucher_count: count(get(row, 3)?)?,
            published_at: get(row, 4)?,
        });
    }
    assert!(next >= since, "the horizon never moves back");
    Ok(CampaignChanges {
        states,
        next: ChangeCursor(next),
    })
}

pub(crate) async fn first_login(
    client: &ClientWrapper,
    tenant_id: TenantId,
) -> StoreResult<Vec<CampaignId>> {
    let statement = client
        .prepare_cached(
            "SELECT id FROM campaigns
             WHERE tenant_id = $1 AND trigger = 'first_login' AND lifecycle <> 'draft'",
        )
        .await
        .map_err(database)?;
    client
        .query(&statement, &[tenant_id.as_uuid()])
        .await
        .map_err(database)?
        .iter()
        .map(|row| Ok(CampaignId::from_uuid(get(row, 0)?)))
        .collect()
}

pub(crate) async fn available_counts(
    client: &ClientWrapper,
    campaign_ids: &[CampaignId],
    counted_max: u64,
) -> StoreResult<Vec<(CampaignId, Available)>> {
    let ids: Vec<uuid::Uuid> = campaign_ids.iter().map(|id| *id.as_uuid()).collect();
    let limit = i64::try_from(counted_max.saturating_add(1)).unwrap_or(i64::MAX);
    let statement = client
        .prepare_cached(
            "SELECT campaign.id, (SELECT count(*) FROM (
                                      SELECT FROM vouchers
                                      WHERE campaign_id = campaign.id AND state = 'available'
                                        AND rank <= campaign.voucher_count
                                      LIMIT $2) AS counted),
                    campaign.codes_on_claim, campaign.supply, campaign.voucher_count
             FROM campaigns AS campaign
             WHERE campaign.id = ANY($1::uuid[])",
        )
        .await
        .map_err(database)?;
    client
        .query(&statement, &[&ids, &limit])
        .await
        .map_err(database)?
        .iter()
        .map(|row| {
            let counted: i64 = get(row, 1)?;
            let unminted = Unminted {
                on_claim: get(row, 2)?,
                supply: get(row, 3)?,
                voucher_count: get(row, 4)?,
            };
            Ok((
                CampaignId::from_uuid(get(row, 0)?),
                Available::bounded(u64::try_from(counted).map_err(corrupt)?, counted_max)
                    .plus(unminted.within(1, u32::MAX)?),
            ))
        })
        .collect()
}
