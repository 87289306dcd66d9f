//! Rows to records and back. Every stored value is parsed into its domain
//! type on the way out; a value that does not parse is corruption, reported
//! as such rather than guessed at.

use rusqlite::Row;
use voucherd_core::Timestamp;

use crate::StoreError;
use crate::model::{CampaignRecord, Tenant, VoucherRecord};
use crate::stored::{CampaignValues, VoucherValues, count};

pub(crate) use crate::stored::corrupt;

/// A voucher's columns, as a literal: a statement on the claim path is
/// made with `concat!` once, not with `format!` for every claim.
macro_rules! voucher_columns {
    () => {
        "id, campaign_id, tenant_id, rank, code, state, user_id, \
         claimed_at, reservation_id, reserved_until, issued_at, expires_at, locked_until, \
         redemptions, redemptions_max"
    };
}
pub(crate) use voucher_columns;

pub(crate) const VOUCHER_COLUMNS: &str = voucher_columns!();

pub(crate) const CAMPAIGN_COLUMNS: &str = "id, tenant_id, name, message, description, terms, kind, \
     supply, starts_at, ends_at, voucher_expires_at, voucher_valid_for_ms, price_amount, \
     price_currency, per_user_limit, daily_limit_group, trigger, reservation_ttl_ms, lock_ttl_ms, \
     redemptions_max, code_pattern, lifecycle, voucher_count, created_at, published_at, \
     codes_on_claim";

pub(crate) const TENANT_COLUMNS: &str =
    "id, name, signing_key, time_zone, rate_limit_per_second, created_at, key_id";

pub(crate) fn millis(timestamp: Timestamp) -> i64 {
    timestamp.as_millisecond()
}

pub(crate) fn optional_millis(timestamp: Option<Timestamp>) -> Option<i64> {
    timestamp.map(millis)
}

pub(crate) fn timestamp(millis: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(millis).map_err(corrupt)
}

fn optional_timestamp(millis: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    millis.map(timestamp).transpose()
}

/// Reads column `index`, turning SQLite's error into the store's.
fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, index: usize) -> Result<T, StoreError> {
    row.get(index).map_err(super::connection::database)
}

fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| corrupt(format!("bad id {text:?}")))
}

pub(crate) fn voucher(row: &Row<'_>) -> Result<VoucherRecord, StoreError> {
    voucher_at(row, 0)
}

/// A voucher whose [`VOUCHER_COLUMNS`] start at column `first`.
pub(crate) fn voucher_at(row: &Row<'_>, first: usize) -> Result<VoucherRecord, StoreError> {
    VoucherValues {
        id: parse_id(&get::<String>(row, first)?)?,
        campaign_id: parse_id(&get::<String>(row, first + 1)?)?,
        tenant_id: parse_id(&get::<String>(row, first + 2)?)?,
        rank: get(row, first + 3)?,
        code: get(row, first + 4)?,
        state: get(row, first + 5)?,
        user_id: get(row, first + 6)?,
        claimed_at: optional_timestamp(get(row, first + 7)?)?,
        reservation_id: get::<Option<String>>(row, first + 8)?
            .as_deref()
            .map(parse_id)
            .transpose()?,
        reserved_until: optional_timestamp(get(row, first + 9)?)?,
        issued_at: optional_timestamp(get(row, first + 10)?)?,
        expires_at: optional_timestamp(get(row, first + 11)?)?,
        locked_until: optional_timestamp(get(row, first + 12)?)?,
        redemptions: get(row, first + 13)?,
        redemptions_max: get(row, first + 14)?,
    }
    .into_record()
}

pub(crate) fn tenant(row: &Row<'_>) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: parse_id(&get::<String>(row, 0)?)?,
        name: get(row, 1)?,
        signing_key: get(row, 2)?,
        time_zone: get(row, 3)?,
        rate_limit_per_second: get::<Option<i64>>(row, 4)?.map(count).transpose()?,
        created_at: timestamp(get(row, 5)?)?,
        key_id: get(row, 6)?,
        retired_keys: Vec::new(),
        public_keys: Vec::new(),
    })
}

/// A campaign row with its tiers, read separately from `campaign_tiers` as
/// (until_rank, discount_percent) in rank order.
pub(crate) fn campaign(
    row: &Row<'_>,
    tiers: Vec<(i64, i64)>,
) -> Result<CampaignRecord, StoreError> {
    CampaignValues {
        id: parse_id(&get::<String>(row, 0)?)?,
        tenant_id: parse_id(&get::<String>(row, 1)?)?,
        name: get(row, 2)?,
        message: get(row, 3)?,
        description: get(row, 4)?,
        terms: get(row, 5)?,
        kind: get(row, 6)?,
        supply: get(row, 7)?,
        starts_at: optional_timestamp(get(row, 8)?)?,
        ends_at: optional_timestamp(get(row, 9)?)?,
        voucher_expires_at: optional_timestamp(get(row, 10)?)?,
        voucher_valid_for_ms: get(row, 11)?,
        price_amount: get(row, 12)?,
        price_currency: get(row, 13)?,
        per_user_limit: get(row, 14)?,
        daily_limit_group: get(row, 15)?,
        trigger: get(row, 16)?,
        reservation_ttl_ms: get(row, 17)?,
        lock_ttl_ms: get(row, 18)?,
        redemptions_max: get(row, 19)?,
        code_pattern: get(row, 20)?,
        lifecycle: get(row, 21)?,
        voucher_count: get(row, 22)?,
        created_at: timestamp(get(row, 23)?)?,
        published_at: optional_timestamp(get(row, 24)?)?,
        codes_on_claim: get(row, 25)?,
        tiers,
    }
    .into_record()
}

/// A campaign's columns in [`CAMPAIGN_COLUMNS`] order, for inserting.
pub(crate) fn campaign_values(campaign: &CampaignRecord) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let values = CampaignValues::of(campaign);
    let text = |text: String| Value::Text(text);
    let optional_text = |text: Option<String>| text.map_or(Value::Null, Value::Text);
    let optional_integer = |value: Option<i64>| value.map_or(Value::Null, Value::Integer);
    let optional_millis = |at: Option<Timestamp>| optional_integer(optional_millis(at));
    vec![
        text(values.id.to_string()),
        text(values.tenant_id.to_string()),
        text(values.name),
        text(values.message),
        text(values.description),
        text(values.terms),
        text(values.kind),
        optional_integer(values.supply),
        optional_millis(values.starts_at),
        optional_millis(values.ends_at),
        optional_millis(values.voucher_expires_at),
        optional_integer(values.voucher_valid_for_ms),
        optional_integer(values.price_amount),
        optional_text(values.price_currency),
        Value::Integer(values.per_user_limit),
        optional_text(values.daily_limit_group),
        text(values.trigger),
        Value::Integer(values.reservation_ttl_ms),
        Value::Integer(values.lock_ttl_ms),
        Value::Integer(values.redemptions_max),
        optional_text(values.code_pattern),
        text(values.lifecycle),
        Value::Integer(values.voucher_count),
        Value::Integer(millis(values.created_at)),
        optional_millis(values.published_at),
        Value::Integer(i64::from(values.codes_on_claim)),
    ]
}
