//! Campaign rows: creation, codes, lifecycle and counts.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use voucherd_core::Timestamp;
use voucherd_core::campaign::Lifecycle;
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, OrderedUuids, TenantId};
use voucherd_core::voucher::VoucherState;

use super::connection::{command, database};
use super::rows::{self, CAMPAIGN_COLUMNS};
use crate::model::{
    AddCodesOutcome, Available, CampaignChanges, CampaignCounts, CampaignRecord, CampaignState,
    ChangeCursor, CodesLease, CommitOutcome, LifecycleOutcome, StageOutcome, StateCounts,
};
use crate::staging::{self, CodesHolder, Upload};
use crate::stored::Unminted;
use crate::{STAGED_ROWS_PER_JOB, StoreResult};

/// How many seconds of claim history a report shows.
const CLAIM_HISTORY_SECONDS_MAX: u32 = 3_600;

pub(crate) fn insert(connection: &Connection, campaign: &CampaignRecord) -> StoreResult<()> {
    let placeholders = vec!["?"; CAMPAIGN_COLUMNS.split(',').count()].join(", ");
    connection
        .prepare_cached(&format!(
            "INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES ({placeholders})"
        ))
        .and_then(|mut statement| {
            statement.execute(params_from_iter(rows::campaign_values(campaign)))
        })
        .map_err(database)?;
    let mut statement = connection
        .prepare_cached(
            "INSERT INTO campaign_tiers (campaign_id, until_rank, discount_percent)
             VALUES (?1, ?2, ?3)",
        )
        .map_err(database)?;
    for tier in campaign.spec.tiers.as_slice() {
        statement
            .execute(params![
                campaign.id.to_string(),
                tier.until_rank,
                tier.discount_percent
            ])
            .map_err(database)?;
    }
    Ok(())
}

/// Campaigns matching `filter` (an SQL condition on `campaigns`), with tiers.
pub(crate) fn select(
    connection: &Connection,
    filter: &str,
    arguments: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<CampaignRecord>> {
    let mut tiers_of: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    let mut statement = connection
        .prepare(&format!(
            "SELECT campaign_id, until_rank, discount_percent FROM campaign_tiers
             WHERE campaign_id IN (SELECT id FROM campaigns WHERE {filter})
             ORDER BY campaign_id, until_rank"
        ))
        .map_err(database)?;
    let mut found = statement.query(arguments).map_err(database)?;
    while let Some(row) = found.next().map_err(database)? {
        let campaign_id: String = row.get(0).map_err(database)?;
        let until_rank: i64 = row.get(1).map_err(database)?;
        let discount_percent: i64 = row.get(2).map_err(database)?;
        tiers_of
            .entry(campaign_id)
            .or_default()
            .push((until_rank, discount_percent));
    }
    let mut statement = connection
        .prepare(&format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE {filter} ORDER BY created_at, id"
        ))
        .map_err(database)?;
    let mut found = statement.query(arguments).map_err(database)?;
    let mut campaigns = Vec::new();
    while let Some(row) = found.next().map_err(database)? {
        let id: String = row.get(0).map_err(database)?;
        let tiers = tiers_of.remove(&id).unwrap_or_default();
        campaigns.push(rows::campaign(row, tiers)?);
    }
    Ok(campaigns)
}

/// The campaign's row as staging reads it, with the columns a slice's
/// inserts need: tenant and redemptions.
fn codes_holder(
    connection: &Connection,
    campaign_id: &str,
) -> StoreResult<Option<(CodesHolder, String, i64)>> {
    type Row = (
        String,
        String,
        Option<i64>,
        i64,
        i64,
        Option<String>,
        i64,
        Option<i64>,
    );
    let found: Option<Row> = connection
        .prepare_cached(
            "SELECT tenant_id, lifecycle, supply, voucher_count, redemptions_max,
                    upload_id, upload_staged, upload_until
             FROM campaigns WHERE id = ?1",
        )
        .and_then(|mut statement| {
            statement
                .query_row([campaign_id], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                        row.get(7)?,
                    ))
                })
                .optional()
        })
        .map_err(database)?;
    let Some((tenant_id, lifecycle, supply, voucher_count, redemptions_max, upload, staged, until)) =
        found
    else {
        return Ok(None);
    };
    let upload = match (upload, until) {
        (Some(id), Some(until)) => Some((
            uuid::Uuid::parse_str(&id).map_err(rows::corrupt)?,
            staged,
            rows::timestamp(until)?,
        )),
        (None, None) => None,
        other => return Err(rows::corrupt(format!("an upload of {other:?}"))),
    };
    let holder = CodesHolder::new(&lifecycle, supply, voucher_count, upload)?;
    Ok(Some((holder, tenant_id, redemptions_max)))
}

/// Sets who holds the campaign's codes (`None`: nobody).
fn hold(connection: &Connection, campaign_id: &str, upload: Option<Upload>) -> StoreResult<()> {
    connection
        .prepare_cached(
            "UPDATE campaigns SET upload_id = ?1, upload_staged = ?2, upload_until = ?3
             WHERE id = ?4",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                upload.map(|upload| upload.id.to_string()),
                upload.map_or(0, |upload| upload.staged),
                upload.map(|upload| rows::millis(upload.until)),
                campaign_id
            ])
        })
        .map_err(database)?;
    Ok(())
}

/// Removes up to `limit` vouchers of ranks `first_rank..`, which nobody
/// counted: an upload's staged rows.
fn remove_staged(
    connection: &Connection,
    campaign_id: &str,
    first_rank: i64,
    limit: u32,
) -> StoreResult<u32> {
    let removed = connection
        .prepare_cached(
            "DELETE FROM vouchers WHERE rowid IN (
                 SELECT rowid FROM vouchers WHERE campaign_id = ?1 AND rank >= ?2 LIMIT ?3
             )",
        )
        .and_then(|mut statement| statement.execute(params![campaign_id, first_rank, limit]))
        .map_err(database)?;
    u32::try_from(removed).map_err(rows::corrupt)
}

pub(crate) fn stage_codes(
    connection: &Connection,
    campaign_id: CampaignId,
    lease: &CodesLease,
    codes: &[VoucherCode],
) -> StoreResult<StageOutcome> {
    let id = campaign_id.to_string();
    let Some((holder, tenant_id, redemptions_max)) = codes_holder(connection, &id)? else {
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
    hold(connection, &id, Some(upload))?;
    // Rows past what this lease staged are an interrupted upload's.
    if slot.may_find_leftovers()
        && remove_staged(connection, &id, slot.first_rank, STAGED_ROWS_PER_JOB)? > 0
    {
        return Ok(StageOutcome::Cleaning);
    }
    let (fresh, duplicates) =
        staging::split_fresh(codes, |code| tenant_has(connection, &tenant_id, code))?;
    upload.staged = match holder.fits(slot, fresh.len())? {
        Ok(staged) => staged,
        Err(refused) => return Ok(refused),
    };
    // Many rows per statement: in SQLite each statement that may abort
    // half-way (these have triggers) keeps a statement journal whose cost
    // grows with the transaction, so a statement per code would be
    // quadratic in the size of the upload.
    let mut ids = OrderedUuids::at(lease.now);
    for (chunk_index, chunk) in fresh.chunks(CODES_PER_STATEMENT).enumerate() {
        insert_codes(
            connection,
            &id,
            &tenant_id,
            redemptions_max,
            slot.first_rank + (chunk_index * CODES_PER_STATEMENT) as i64,
            chunk,
            &mut ids,
        )?;
    }
    hold(connection, &id, Some(upload))?;
    staging::staged(fresh.len(), duplicates, upload.staged)
}

/// Stages and commits `codes` in the one job this runs in.
pub(crate) fn add_codes(
    connection: &Connection,
    campaign_id: CampaignId,
    codes: &[VoucherCode],
    now: Timestamp,
) -> StoreResult<AddCodesOutcome> {
    let lease = staging::one_job_lease(now);
    loop {
        match stage_codes(connection, campaign_id, &lease, codes)? {
            StageOutcome::Cleaning => {}
            StageOutcome::Staged { duplicates, .. } => {
                let committed = commit_codes(connection, campaign_id, lease.id)?;
                return Ok(staging::added(duplicates, committed));
            }
            refused => {
                // The lease may hold the campaign (a slice past the supply).
                discard_codes(connection, campaign_id, lease.id, u32::MAX)?;
                return Ok(staging::refused(refused));
            }
        }
    }
}

pub(crate) fn commit_codes(
    connection: &Connection,
    campaign_id: CampaignId,
    lease: uuid::Uuid,
) -> StoreResult<CommitOutcome> {
    let id = campaign_id.to_string();
    let Some((holder, ..)) = codes_holder(connection, &id)? else {
        return Ok(CommitOutcome::NotFound);
    };
    let voucher_count = match holder.commit(lease)? {
        Ok(voucher_count) => voucher_count,
        Err(refused) => return Ok(refused),
    };
    connection
        .prepare_cached(
            "UPDATE campaigns SET voucher_count = ?1, upload_id = NULL, upload_staged = 0,
                                  upload_until = NULL
             WHERE id = ?2",
        )
        .and_then(|mut statement| statement.execute(params![voucher_count, id]))
        .map_err(database)?;
    staging::committed(holder.voucher_count, voucher_count)
}

pub(crate) fn discard_codes(
    connection: &Connection,
    campaign_id: CampaignId,
    lease: uuid::Uuid,
    limit: u32,
) -> StoreResult<bool> {
    let id = campaign_id.to_string();
    let Some((holder, ..)) = codes_holder(connection, &id)? else {
        return Ok(true);
    };
    let Some(upload) = holder.upload.filter(|_| holder.held_by(lease)) else {
        return Ok(true);
    };
    let removed = remove_staged(connection, &id, holder.voucher_count + 1, limit)?;
    if removed < limit {
        hold(connection, &id, None)?;
        return Ok(true);
    }
    // Held while rows remain; none of them counts as staged any more.
    hold(
        connection,
        &id,
        Some(Upload {
            staged: 0,
            ..upload
        }),
    )?;
    Ok(false)
}

/// Codes inserted by one statement at most (three variables each, well
/// under SQLite's limit of 32,766).
const CODES_PER_STATEMENT: usize = 2_000;

/// Inserts `codes` as available vouchers of ranks `first_rank..`, their
/// ids from `ids`.
fn insert_codes(
    connection: &Connection,
    campaign_id: &str,
    tenant_id: &str,
    redemptions_max: i64,
    first_rank: i64,
    codes: &[&VoucherCode],
    ids: &mut OrderedUuids,
) -> StoreResult<()> {
    let rows: Vec<String> = (0..codes.len())
        .map(|index| {
            let first = 4 + index * 3;
            format!(
                "(?{}, ?1, ?2, ?{}, ?{}, 'available', ?3)",
                first,
                first + 1,
                first + 2
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO vouchers (id, campaign_id, tenant_id, rank, code, state, redemptions_max) VALUES {}",
        rows.join(", ")
    );
    let mut statement = connection.prepare_cached(&sql).map_err(database)?;
    let mut values: Vec<rusqlite::types::Value> = vec![
        campaign_id.to_owned().into(),
        tenant_id.to_owned().into(),
        redemptions_max.into(),
    ];
    for (offset, code) in codes.iter().enumerate() {
        values.push(ids.next_id().to_string().into());
        values.push((first_rank + offset as i64).into());
        values.push(code.as_str().to_owned().into());
    }
    let inserted = statement
        .execute(params_from_iter(values))
        .map_err(database)?;
    if inserted == codes.len() {
        Ok(())
    } else {
        Err(rows::corrupt(format!(
            "{inserted} of {} codes inserted",
            codes.len()
        )))
    }
}

fn tenant_has(connection: &Connection, tenant_id: &str, code: &VoucherCode) -> StoreResult<bool> {
    connection
        .prepare_cached("SELECT 1 FROM vouchers WHERE tenant_id = ?1 AND code = ?2")
        .and_then(|mut statement| statement.exists(params![tenant_id, code.as_str()]))
        .map_err(database)
}

pub(crate) fn change_lifecycle(
    connection: &Connection,
    campaign_id: CampaignId,
    from: Lifecycle,
    to: Lifecycle,
    now: Timestamp,
) -> StoreResult<LifecycleOutcome> {
    let changed = connection
        .execute(
            "UPDATE campaigns
             SET lifecycle = ?1, published_at = coalesce(published_at, ?2)
             WHERE id = ?3 AND lifecycle = ?4
               AND (?1 != 'live' OR ((supply IS NULL OR voucher_count = supply OR codes_on_claim)
                                     AND upload_id IS NULL))",
            params![
                to.as_str(),
                rows::millis(now),
                campaign_id.to_string(),
                from.as_str()
            ],
        )
        .map_err(database)?;
    if changed == 1 {
        return Ok(LifecycleOutcome::Changed);
    }
    let found: Option<(String, Option<i64>, i64, bool)> = connection
        .query_row(
            "SELECT lifecycle, supply, voucher_count, upload_id IS NOT NULL
             FROM campaigns WHERE id = ?1",
            [campaign_id.to_string()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()
        .map_err(database)?;
    let Some((lifecycle, supply, voucher_count, uploading)) = found else {
        return Ok(LifecycleOutcome::NotFound);
    };
    let lifecycle = Lifecycle::parse(&lifecycle).ok_or_else(|| rows::corrupt(&lifecycle))?;
    Ok(match supply {
        _ if lifecycle != from => LifecycleOutcome::WrongState(lifecycle),
        Some(supply) if supply != voucher_count => LifecycleOutcome::CodesMissing {
            voucher_count: u32::try_from(voucher_count).map_err(rows::corrupt)?,
            supply: u32::try_from(supply).map_err(rows::corrupt)?,
        },
        _ if uploading => LifecycleOutcome::UploadUnderWay,
        _ => LifecycleOutcome::WrongState(lifecycle),
    })
}

/// The whole campaign's counts by state, then each range's.
fn count_ranges(
    connection: &Connection,
    campaign_id: &str,
    rank_ranges: &[(u32, u32)],
) -> StoreResult<(StateCounts, Vec<StateCounts>)> {
    let unminted = connection
        .prepare_cached("SELECT codes_on_claim, supply, voucher_count FROM campaigns WHERE id = ?1")
        .and_then(|mut statement| {
            statement.query_row([campaign_id], |row| {
                Ok(Unminted {
                    on_claim: row.get(0)?,
                    supply: row.get(1)?,
                    voucher_count: row.get(2)?,
                })
            })
        })
        .map_err(database)?;
    let mut by_state = connection
        .prepare_cached(
            "SELECT state, count(*) FROM vouchers
             WHERE campaign_id = ?1 AND rank BETWEEN ?2 AND ?3 AND rank <= ?4
             GROUP BY state",
        )
        .map_err(database)?;
    let mut count_range = |first: u32, last: u32| -> StoreResult<StateCounts> {
        let mut counts = StateCounts::default();
        let mut found = by_state
            .query(params![campaign_id, first, last, unminted.voucher_count])
            .map_err(database)?;
        while let Some(row) = found.next().map_err(database)? {
            let state: String = row.get(0).map_err(database)?;
            let count: i64 = row.get(1).map_err(database)?;
            let state = VoucherState::parse(&state).ok_or_else(|| rows::corrupt(&state))?;
            counts.add(state, u64::try_from(count).map_err(rows::corrupt)?);
        }
        counts.add(VoucherState::Available, unminted.within(first, last)?);
        Ok(counts)
    };
    let states = count_range(1, u32::MAX)?;
    let by_rank_range = rank_ranges
        .iter()
        .map(|&(first, last)| count_range(first, last))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((states, by_rank_range))
}

pub(crate) fn counts(
    connection: &Connection,
    campaign_id: CampaignId,
    rank_ranges: &[(u32, u32)],
) -> StoreResult<CampaignCounts> {
    let campaign_id = campaign_id.to_string();
    // Every range in one read transaction: the ranks not yet made are those
    // past the voucher_count the rows were counted to.
    command(connection, "BEGIN").map_err(database)?;
    let counted = count_ranges(connection, &campaign_id, rank_ranges);
    command(connection, "COMMIT").map_err(database)?;
    let (states, by_rank_range) = counted?;
    let mut per_second = connection
        .prepare_cached(
            "SELECT second, claims FROM (
                 SELECT claimed_at / 1000 AS second, count(*) AS claims FROM vouchers
                 WHERE campaign_id = ?1 AND claimed_at IS NOT NULL
                 GROUP BY second ORDER BY second DESC LIMIT ?2
             ) ORDER BY second",
        )
        .map_err(database)?;
    let claims_per_second = per_second
        .query_map(params![campaign_id, CLAIM_HISTORY_SECONDS_MAX], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(database)?
        .map(|row| {
            let (second, claims) = row.map_err(database)?;
            Ok((second, u64::try_from(claims).map_err(rows::corrupt)?))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(CampaignCounts {
        states,
        by_rank_range,
        claims_per_second,
    })
}

/// Campaigns whose change number is past `since`, in change order.
pub(crate) fn changes(
    connection: &Connection,
    since: Option<ChangeCursor>,
) -> StoreResult<CampaignChanges> {
    let since = since.map_or(-1, |cursor| cursor.0);
    let mut statement = connection
        .prepare_cached(
            "SELECT id, lifecycle, voucher_count, published_at, change_seq FROM campaigns
             WHERE change_seq > ?1 ORDER BY change_seq",
        )
        .map_err(database)?;
    let mut found = statement.query([since]).map_err(database)?;
    let mut states = Vec::new();
    let mut next = since;
    while let Some(row) = found.next().map_err(database)? {
        let id: String = row.get(0).map_err(database)?;
        let lifecycle: String = row.get(1).map_err(database)?;
        let voucher_count: i64 = row.get(2).map_err(database)?;
        let published_at: Option<i64> = row.get(3).map_err(database)?;
        let change_seq: i64 = row.get(4).map_err(database)?;
        assert!(change_seq > next, "changes come in order");
        next = change_seq;
        states.push(CampaignState {
            id: id
                .parse()
                .map_err(|_| rows::corrupt(format!("bad id {id:?}")))?,
            lifecycle: Lifecycle::parse(&lifecycle).ok_or_else(|| rows::corrupt(&lifecycle))?,
            voucher_count: u32::try_from(voucher_count).map_err(rows::corrupt)?,
            published_at: published_at.map(rows::timestamp).transpose()?,
        });
    }
    Ok(CampaignChanges {
        states,
        next: ChangeCursor(next),
    })
}

/// The tenant's published `first_login` campaigns.
pub(crate) fn first_login(
    connection: &Connection,
    tenant_id: TenantId,
) -> StoreResult<Vec<CampaignId>> {
    let mut statement = connection
        .prepare_cached(
            "SELECT id FROM campaigns
             WHERE tenant_id = ?1 AND trigger = 'first_login' AND lifecycle <> 'draft'",
        )
        .map_err(database)?;
    let mut found = statement.query([tenant_id.to_string()]).map_err(database)?;
    let mut ids = Vec::new();
    while let Some(row) = found.next().map_err(database)? {
        let id: String = row.get(0).map_err(database)?;
        ids.push(
            id.parse()
                .map_err(|_| rows::corrupt(format!("bad id {id:?}")))?,
        );
    }
    Ok(ids)
}

pub(crate) fn available_counts(
    connection: &Connection,
    campaign_ids: &[CampaignId],
    counted_max: u64,
) -> StoreResult<Vec<(CampaignId, Available)>> {
    let mut statement = connection
        .prepare_cached(
            "SELECT (SELECT count(*) FROM (
                         SELECT 1 FROM vouchers
                         WHERE campaign_id = ?1 AND state = 'available'
                           AND rank <= campaign.voucher_count
                         LIMIT ?2)),
                    codes_on_claim, supply, voucher_count
             FROM campaigns AS campaign WHERE id = ?1",
        )
        .map_err(database)?;
    let limit = i64::try_from(counted_max.saturating_add(1)).unwrap_or(i64::MAX);
    // A campaign that is gone has no count, as on PostgreSQL.
    let mut counts = Vec::with_capacity(campaign_ids.len());
    for id in campaign_ids {
        let found = statement
            .query_row(params![id.to_string(), limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    Unminted {
                        on_claim: row.get(1)?,
                        supply: row.get(2)?,
                        voucher_count: row.get(3)?,
                    },
                ))
            })
            .optional()
            .map_err(database)?;
        let Some((counted, unminted)) = found else {
            continue;
        };
        let counted = u64::try_from(counted).map_err(rows::corrupt)?;
        let unminted = unminted.within(1, u32::MAX)?;
        counts.push((*id, Available::bounded(counted, counted_max).plus(unminted)));
    }
    Ok(counts)
}
