//! Rows to records and back. Every stored value is parsed into its domain
//! type on the way out; a value that does not parse is corruption, reported
//! as such rather than guessed at.

use rusqlite::Row;
use voucherd_core::campaign::{
    CampaignKind, CampaignSpec, CodeSource, Lifecycle, LimitGroup, Supply, Tier, Tiers, Trigger,
    VoucherExpiry,
};
use voucherd_core::code::{CodePattern, VoucherCode};
use voucherd_core::ids::{CampaignId, ReservationId, TenantId, UserId, VoucherId};
use voucherd_core::money::{Currency, Money};
use voucherd_core::voucher::VoucherState;
use voucherd_core::{SignedDuration, Timestamp};

use crate::StoreError;
use crate::model::{CampaignRecord, Tenant, VoucherRecord};

pub(crate) const VOUCHER_COLUMNS: &str = "id, campaign_id, tenant_id, rank, code, state, user_id, \
     claimed_at, reservation_id, reserved_until, issued_at, expires_at, locked_until, redemptions, \
     redemptions_max";

pub(crate) const CAMPAIGN_COLUMNS: &str = "id, tenant_id, name, message, description, terms, kind, \
     supply, starts_at, ends_at, voucher_expires_at, voucher_valid_for_ms, price_amount, \
     price_currency, per_user_limit, daily_limit_group, trigger, reservation_ttl_ms, lock_ttl_ms, \
     redemptions_max, code_pattern, lifecycle, voucher_count, created_at, published_at";

pub(crate) const TENANT_COLUMNS: &str =
    "id, name, signing_key, time_zone, rate_limit_per_second, created_at";

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

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

fn duration(millis: i64) -> SignedDuration {
    SignedDuration::from_millis(millis)
}

/// Reads column `index`, turning SQLite's error into the store's.
fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, index: usize) -> Result<T, StoreError> {
    row.get(index).map_err(super::connection::database)
}

fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| corrupt(format!("bad id {text:?}")))
}

fn count(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(corrupt)
}

pub(crate) fn voucher(row: &Row<'_>) -> Result<VoucherRecord, StoreError> {
    voucher_at(row, 0)
}

/// A voucher whose [`VOUCHER_COLUMNS`] start at column `first`.
pub(crate) fn voucher_at(row: &Row<'_>, first: usize) -> Result<VoucherRecord, StoreError> {
    let state: String = get(row, first + 5)?;
    let user_id: Option<String> = get(row, first + 6)?;
    Ok(VoucherRecord {
        id: parse_id::<VoucherId>(&get::<String>(row, first)?)?,
        campaign_id: parse_id::<CampaignId>(&get::<String>(row, first + 1)?)?,
        tenant_id: parse_id::<TenantId>(&get::<String>(row, first + 2)?)?,
        rank: count(get(row, first + 3)?)?,
        code: VoucherCode::parse(&get::<String>(row, first + 4)?).map_err(corrupt)?,
        state: VoucherState::parse(&state).ok_or_else(|| corrupt(format!("state {state:?}")))?,
        user_id: user_id
            .as_deref()
            .map(UserId::parse)
            .transpose()
            .map_err(corrupt)?,
        claimed_at: optional_timestamp(get(row, first + 7)?)?,
        reservation_id: get::<Option<String>>(row, first + 8)?
            .as_deref()
            .map(parse_id::<ReservationId>)
            .transpose()?,
        reserved_until: optional_timestamp(get(row, first + 9)?)?,
        issued_at: optional_timestamp(get(row, first + 10)?)?,
        expires_at: optional_timestamp(get(row, first + 11)?)?,
        locked_until: optional_timestamp(get(row, first + 12)?)?,
        redemptions: count(get(row, first + 13)?)?,
        redemptions_max: count(get(row, first + 14)?)?,
    })
}

pub(crate) fn tenant(row: &Row<'_>) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: parse_id(&get::<String>(row, 0)?)?,
        name: get(row, 1)?,
        signing_key: get(row, 2)?,
        time_zone: get(row, 3)?,
        rate_limit_per_second: get::<Option<i64>>(row, 4)?.map(count).transpose()?,
        created_at: timestamp(get(row, 5)?)?,
    })
}

/// A campaign row with its tiers, read separately from `campaign_tiers`.
pub(crate) fn campaign(row: &Row<'_>, tiers: Vec<Tier>) -> Result<CampaignRecord, StoreError> {
    let kind: String = get(row, 6)?;
    let supply = match get::<Option<i64>>(row, 7)? {
        Some(supply) => Supply::Limited(count(supply)?),
        None => Supply::Unlimited,
    };
    let voucher_expiry = match (get::<Option<i64>>(row, 10)?, get::<Option<i64>>(row, 11)?) {
        (Some(at), _) => VoucherExpiry::At(timestamp(at)?),
        (None, Some(valid_for)) => VoucherExpiry::AfterIssue(duration(valid_for)),
        (None, None) => VoucherExpiry::Never,
    };
    let price = match (
        get::<Option<i64>>(row, 12)?,
        get::<Option<String>>(row, 13)?,
    ) {
        (Some(amount), Some(currency)) => Some(
            Currency::parse(&currency)
                .and_then(|currency| Money::new(amount, currency))
                .map_err(corrupt)?,
        ),
        _ => None,
    };
    let trigger: String = get(row, 16)?;
    let lifecycle: String = get(row, 21)?;
    let spec = CampaignSpec {
        name: get(row, 2)?,
        message: get(row, 3)?,
        description: get(row, 4)?,
        terms: get(row, 5)?,
        kind: CampaignKind::parse(&kind).map_err(corrupt)?,
        supply,
        starts_at: optional_timestamp(get(row, 8)?)?,
        ends_at: optional_timestamp(get(row, 9)?)?,
        voucher_expiry,
        price,
        tiers: Tiers::new(tiers, supply).map_err(corrupt)?,
        per_user_limit: count(get(row, 14)?)?,
        daily_limit_group: get::<Option<String>>(row, 15)?
            .as_deref()
            .map(LimitGroup::parse)
            .transpose()
            .map_err(corrupt)?,
        trigger: Trigger::parse(&trigger).map_err(corrupt)?,
        reservation_ttl: duration(get(row, 17)?),
        lock_ttl: duration(get(row, 18)?),
        redemptions_max: count(get(row, 19)?)?,
        codes: match get::<Option<String>>(row, 20)? {
            Some(pattern) => CodeSource::Pattern(CodePattern::parse(&pattern).map_err(corrupt)?),
            None => CodeSource::Upload,
        },
    };
    Ok(CampaignRecord {
        id: parse_id(&get::<String>(row, 0)?)?,
        tenant_id: parse_id(&get::<String>(row, 1)?)?,
        spec,
        lifecycle: Lifecycle::parse(&lifecycle)
            .ok_or_else(|| corrupt(format!("lifecycle {lifecycle:?}")))?,
        voucher_count: count(get(row, 22)?)?,
        created_at: timestamp(get(row, 23)?)?,
        published_at: optional_timestamp(get(row, 24)?)?,
    })
}

/// A campaign's columns in [`CAMPAIGN_COLUMNS`] order, for inserting.
pub(crate) fn campaign_values(campaign: &CampaignRecord) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let spec = &campaign.spec;
    let text = |text: &str| Value::Text(text.to_owned());
    let optional_integer = |value: Option<i64>| value.map_or(Value::Null, Value::Integer);
    let (expires_at, valid_for) = match spec.voucher_expiry {
        VoucherExpiry::Never => (None, None),
        VoucherExpiry::At(at) => (Some(millis(at)), None),
        VoucherExpiry::AfterIssue(valid_for) => (None, Some(valid_for.as_millis() as i64)),
    };
    vec![
        text(&campaign.id.to_string()),
        text(&campaign.tenant_id.to_string()),
        text(&spec.name),
        text(&spec.message),
        text(&spec.description),
        text(&spec.terms),
        text(spec.kind.as_str()),
        optional_integer(spec.supply.limit().map(i64::from)),
        optional_integer(optional_millis(spec.starts_at)),
        optional_integer(optional_millis(spec.ends_at)),
        optional_integer(expires_at),
        optional_integer(valid_for),
        optional_integer(spec.price.map(|price| price.amount)),
        spec.price
            .map_or(Value::Null, |price| text(price.currency.as_str())),
        Value::Integer(i64::from(spec.per_user_limit)),
        spec.daily_limit_group
            .as_ref()
            .map_or(Value::Null, |group| text(group.as_str())),
        text(spec.trigger.as_str()),
        Value::Integer(spec.reservation_ttl.as_millis() as i64),
        Value::Integer(spec.lock_ttl.as_millis() as i64),
        Value::Integer(i64::from(spec.redemptions_max)),
        spec.code_pattern()
            .map_or(Value::Null, |pattern| text(pattern.as_str())),
        text(campaign.lifecycle.as_str()),
        Value::Integer(i64::from(campaign.voucher_count)),
        Value::Integer(millis(campaign.created_at)),
        optional_integer(optional_millis(campaign.published_at)),
    ]
}
