//! Campaign rows: creation, codes, lifecycle and counts.

use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::ToSql;
use voucherd_core::Timestamp;
use voucherd_core::campaign::Lifecycle;
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, TenantId};
use voucherd_core::voucher::VoucherState;

use super::connection::{database, is_race};
use super::rows::{self, CAMPAIGN_COLUMNS, CAMPAIGN_WITH_TIERS, get, stored, stored_optional};
use crate::StoreResult;
use crate::model::{
    AddCodesOutcome, CampaignCounts, CampaignRecord, CampaignState, LifecycleOutcome, StateCounts,
};
use crate::model::{CampaignChanges, ChangeCursor};
use crate::stored::{CampaignValues, corrupt, count};

/// How many seconds of claim history a report shows.
const CLAIM_HISTORY_SECONDS_MAX: i64 = 3_600;

/// Adding codes runs again when another campaign of the tenant took one of
/// the same codes while it ran; the next run reports it as a duplicate.
const ADD_CODES_ATTEMPTS_MAX: usize = 3;

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
                         $17, $18, $19, $20, $21, $22, $23, $24, $25)
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

/// Numbers the codes that are new to the tenant after the campaign's last
/// rank, in the order offered, and inserts them all or none. The campaign
/// row is locked first, so two uploads to one campaign take turns.
const ADD_CODES: &str = "
    WITH campaign AS MATERIALIZED (
        SELECT id, tenant_id, lifecycle, supply, voucher_count, redemptions_max
        FROM campaigns WHERE id = $1
        FOR NO KEY UPDATE
    ),
    offered AS (
        SELECT offered.code, offered.ordinal,
               row_number() OVER (PARTITION BY offered.code ORDER BY offered.ordinal) = 1
                   AND NOT EXISTS (
                       SELECT FROM vouchers AS voucher, campaign
                       WHERE voucher.tenant_id = campaign.tenant_id AND voucher.code = offered.code
                   ) AS fresh
        FROM unnest($2::text[]) WITH ORDINALITY AS offered (code, ordinal)
    ),
    fresh AS (
        SELECT code, row_number() OVER (ORDER BY ordinal) AS position
        FROM offered WHERE fresh
    ),
    fits AS (
        SELECT campaign.lifecycle = 'draft'
               AND (campaign.supply IS NULL
                    OR campaign.voucher_count + (SELECT count(*) FROM fresh) <= campaign.supply)
               AS fits
        FROM campaign
    ),
    inserted AS (
        INSERT INTO vouchers (id, campaign_id, tenant_id, rank, code, state, redemptions_max)
        SELECT gen_random_uuid(), campaign.id, campaign.tenant_id,
               campaign.voucher_count + fresh.position, fresh.code, 'available',
               campaign.redemptions_max
        FROM fresh, campaign
        WHERE (SELECT fits FROM fits)
        RETURNING id
    ),
    counted AS (
        UPDATE campaigns
        SET voucher_count = campaign.voucher_count + (SELECT count(*) FROM inserted)
        FROM campaign
        WHERE campaigns.id = campaign.id AND (SELECT fits FROM fits)
    )
    SELECT campaign.lifecycle, campaign.supply, campaign.voucher_count,
           (SELECT count(*) FROM fresh), (SELECT count(*) FROM inserted),
           ARRAY(SELECT code FROM offered WHERE NOT fresh ORDER BY ordinal)
    FROM campaign";

pub(crate) async fn add_codes(
    client: &ClientWrapper,
    campaign_id: CampaignId,
    codes: &[VoucherCode],
) -> StoreResult<AddCodesOutcome> {
    let statement = client.prepare_cached(ADD_CODES).await.map_err(database)?;
    let codes: Vec<&str> = codes.iter().map(VoucherCode::as_str).collect();
    let mut attempts = 0;
    let row = loop {
        attempts += 1;
        match client
            .query_opt(&statement, &[campaign_id.as_uuid(), &codes])
            .await
        {
            Err(error) if is_race(&error) && attempts < ADD_CODES_ATTEMPTS_MAX => continue,
            found => break found.map_err(database)?,
        }
    };
    let Some(row) = row else {
        return Ok(AddCodesOutcome::NotFound);
    };
    let lifecycle: String = get(&row, 0)?;
    let supply: Option<i64> = get(&row, 1)?;
    let voucher_count: i64 = get(&row, 2)?;
    let fresh: i64 = get(&row, 3)?;
    let added: i64 = get(&row, 4)?;
    if lifecycle != Lifecycle::Draft.as_str() {
        return Ok(AddCodesOutcome::NotDraft);
    }
    if let Some(supply) = supply
        && voucher_count + fresh > supply
    {
        return Ok(AddCodesOutcome::OverSupply {
            room: count(supply - voucher_count)?,
            offered: count(fresh)?,
        });
    }
    if added != fresh {
        return Err(corrupt(format!("{added} of {fresh} new codes inserted")));
    }
    let duplicates = get::<Vec<String>>(&row, 5)?
        .iter()
        .map(|code| VoucherCode::parse(code).map_err(corrupt))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(AddCodesOutcome::Added {
        added: count(added)?,
        duplicates,
        voucher_count: count(voucher_count + added)?,
    })
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
               AND ($1 <> 'live' OR supply IS NULL OR voucher_count = supply)",
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
            "SELECT lifecycle, supply, voucher_count FROM campaigns WHERE id = $1",
            &[campaign_id.as_uuid()],
        )
        .await
        .map_err(database)?;
    let Some(row) = found else {
        return Ok(LifecycleOutcome::NotFound);
    };
    let lifecycle: String = get(&row, 0)?;
    let lifecycle = Lifecycle::parse(&lifecycle).ok_or_else(|| corrupt(&lifecycle))?;
    Ok(match get::<Option<i64>>(&row, 1)? {
        Some(supply) if lifecycle == from => LifecycleOutcome::CodesMissing {
            voucher_count: count(get(&row, 2)?)?,
            supply: count(supply)?,
        },
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
            "SELECT range.index, voucher.state, count(*)
             FROM unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY AS range (first, last, index)
             JOIN vouchers AS voucher
                 ON voucher.campaign_id = $1 AND voucher.rank BETWEEN range.first AND range.last
             GROUP BY range.index, voucher.state",
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
    let mut ranges = vec![StateCounts::default(); firsts.len()];
    for row in &by_state {
        let index: i64 = get(row, 0)?;
        let state: String = get(row, 1)?;
        let claims: i64 = get(row, 2)?;
        let state = VoucherState::parse(&state).ok_or_else(|| corrupt(&state))?;
        let range = usize::try_from(index - 1)
            .ok()
            .and_then(|index| ranges.get_mut(index))
            .ok_or_else(|| corrupt(format!("rank range {index}")))?;
        range.add(state, u64::try_from(claims).map_err(corrupt)?);
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
) -> StoreResult<Vec<(CampaignId, u64)>> {
    let ids: Vec<uuid::Uuid> = campaign_ids.iter().map(|id| *id.as_uuid()).collect();
    let statement = client
        .prepare_cached(
            "SELECT campaign.id, (SELECT count(*) FROM vouchers
                                  WHERE campaign_id = campaign.id AND state = 'available')
             FROM unnest($1::uuid[]) AS campaign (id)",
        )
        .await
        .map_err(database)?;
    client
        .query(&statement, &[&ids])
        .await
        .map_err(database)?
        .iter()
        .map(|row| {
            let available: i64 = get(row, 1)?;
            Ok((
                CampaignId::from_uuid(get(row, 0)?),
                u64::try_from(available).map_err(corrupt)?,
            ))
        })
        .collect()
}
