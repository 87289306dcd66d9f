//! PostgreSQL rows to records and back.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use voucherd_core::Timestamp;
use voucherd_core::ids::{CampaignId, ReservationId, TenantId, VoucherId};

use crate::StoreError;
use crate::model::{CampaignRecord, Tenant, VoucherRecord};
use crate::stored::{CampaignValues, VoucherValues, corrupt, count};

pub(crate) const VOUCHER_COLUMNS: &str = "id, campaign_id, tenant_id, rank, code, state, user_id, \
     claimed_at, reservation_id, reserved_until, issued_at, expires_at, locked_until, redemptions, \
     redemptions_max";

pub(crate) const CAMPAIGN_COLUMNS: &str = "id, tenant_id, name, message, description, terms, kind, \
     supply, starts_at, ends_at, voucher_expires_at, voucher_valid_for_ms, price_amount, \
     price_currency, per_user_limit, daily_limit_group, trigger, reservation_ttl_ms, lock_ttl_ms, \
     redemptions_max, code_pattern, lifecycle, voucher_count, created_at, published_at, \
     codes_on_claim";

/// [`CAMPAIGN_COLUMNS`] followed by the campaign's tiers as two arrays in
/// rank order, for a query over `campaigns`.
pub(crate) const CAMPAIGN_WITH_TIERS: &str = "id, tenant_id, name, message, description, terms, \
     kind, supply, starts_at, ends_at, voucher_expires_at, voucher_valid_for_ms, price_amount, \
     price_currency, per_user_limit, daily_limit_group, trigger, reservation_ttl_ms, lock_ttl_ms, \
     redemptions_max, code_pattern, lifecycle, voucher_count, created_at, published_at, \
     codes_on_claim, \
     ARRAY(SELECT until_rank FROM campaign_tiers AS tier \
           WHERE tier.campaign_id = campaigns.id ORDER BY until_rank), \
     ARRAY(SELECT discount_percent FROM campaign_tiers AS tier \
           WHERE tier.campaign_id = campaigns.id ORDER BY until_rank)";

pub(crate) const TENANT_COLUMNS: &str =
    "id, name, signing_key, time_zone, rate_limit_per_second, created_at, key_id";

/// The instant as stored: timestamptz holds microseconds, the SQLite backend
/// milliseconds, and both backends keep the same values.
pub(crate) fn stored(timestamp: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(timestamp.as_millisecond()).unwrap_or(timestamp)
}

pub(crate) fn stored_optional(timestamp: Option<Timestamp>) -> Option<Timestamp> {
    timestamp.map(stored)
}

/// Reads column `index`; a value of the wrong type is corruption.
pub(crate) fn get<'row, T: FromSql<'row>>(row: &'row Row, index: usize) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|error| corrupt(format!("column {index}: {error}")))
}

/// A bounded count or limit that the schema keeps as `integer`.
pub(crate) fn integer(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub(crate) fn voucher(row: &Row) -> Result<VoucherRecord, StoreError> {
    voucher_at(row, 0)
}

/// A voucher whose [`VOUCHER_COLUMNS`] start at column `first`.
pub(crate) fn voucher_at(row: &Row, first: usize) -> Result<VoucherRecord, StoreError> {
    VoucherValues {
        id: VoucherId::from_uuid(get(row, first)?),
        campaign_id: CampaignId::from_uuid(get(row, first + 1)?),
        tenant_id: TenantId::from_uuid(get(row, first + 2)?),
        rank: get(row, first + 3)?,
        code: get(row, first + 4)?,
        state: get(row, first + 5)?,
        user_id: get(row, first + 6)?,
        claimed_at: get(row, first + 7)?,
        reservation_id: get::<Option<uuid::Uuid>>(row, first + 8)?.map(ReservationId::from_uuid),
        reserved_until: get(row, first + 9)?,
        issued_at: get(row, first + 10)?,
        expires_at: get(row, first + 11)?,
        locked_until: get(row, first + 12)?,
        redemptions: i64::from(get::<i32>(row, first + 13)?),
        redemptions_max: i64::from(get::<i32>(row, first + 14)?),
    }
    .into_record()
}

pub(crate) fn tenant(row: &Row) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId::from_uuid(get(row, 0)?),
        name: get(row, 1)?,
        signing_key: get(row, 2)?,
        time_zone: get(row, 3)?,
        rate_limit_per_second: get::<Option<i32>>(row, 4)?
            .map(|limit| count(i64::from(limit)))
            .transpose()?,
        created_at: get(row, 5)?,
        key_id: get(row, 6)?,
        retired_keys: Vec::new(),
        public_keys: Vec::new(),
    })
}

/// A campaign read with [`CAMPAIGN_WITH_TIERS`].
pub(crate) fn campaign(row: &Row) -> Result<CampaignRecord, StoreError> {
    let until_ranks: Vec<i64> = get(row, 26)?;
    let discounts: Vec<i32> = get(row, 27)?;
    if until_ranks.len() != discounts.len() {
        return Err(corrupt("tier arrays of different lengths"));
    }
    CampaignValues {
        id: CampaignId::from_uuid(get(row, 0)?),
        tenant_id: TenantId::from_uuid(get(row, 1)?),
        name: get(row, 2)?,
        message: get(row, 3)?,
        description: get(row, 4)?,
        terms: get(row, 5)?,
        kind: get(row, 6)?,
        supply: get(row, 7)?,
        starts_at: get(row, 8)?,
        ends_at: get(row, 9)?,
        voucher_expires_at: get(row, 10)?,
        voucher_valid_for_ms: get(row, 11)?,
        price_amount: get(row, 12)?,
        price_currency: get(row, 13)?,
        per_user_limit: i64::from(get::<i32>(row, 14)?),
        daily_limit_group: get(row, 15)?,
        trigger: get(row, 16)?,
        reservation_ttl_ms: get(row, 17)?,
        lock_ttl_ms: get(row, 18)?,
        redemptions_max: i64::from(get::<i32>(row, 19)?),
        code_pattern: get(row, 20)?,
        lifecycle: get(row, 21)?,
        voucher_count: get(row, 22)?,
        created_at: get(row, 23)?,
        published_at: get(row, 24)?,
        codes_on_claim: get(row, 25)?,
        tiers: until_ranks
            .into_iter()
            .zip(discounts.into_iter().map(i64::from))
            .collect(),
    }
    .into_record()
}
