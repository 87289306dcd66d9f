//! Stored values to records and back, the same for every backend. A backend
//! reads its columns into these plain values in its own types; turning them
//! into domain types, where corruption shows, happens once, here.

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
use crate::model::{CampaignRecord, VoucherRecord};

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// What a campaign row says about the ranks that have no voucher row yet:
/// those of a campaign whose codes are made on claim, up to its supply, are
/// available all the same. Read in the same statement (one snapshot) as
/// the rows it is added to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unminted {
    pub on_claim: bool,
    pub supply: Option<i64>,
    pub voucher_count: i64,
}

impl Unminted {
    /// How many ranks of `first..=last` are available without a row.
    pub(crate) fn within(self, first: u32, last: u32) -> Result<u64, StoreError> {
        let (true, Some(supply)) = (self.on_claim, self.supply) else {
            return Ok(0);
        };
        let (supply, made) = (count(supply)?, count(self.voucher_count)?);
        assert!(made <= supply, "no rank past the supply is made");
        let first = first.max(made.saturating_add(1));
        let last = last.min(supply);
        Ok(if first > last {
            0
        } else {
            u64::from(last - first) + 1
        })
    }
}

/// A stored count or rank, which the records hold as `u32`.
pub(crate) fn count(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(corrupt)
}

fn duration(millis: i64) -> SignedDuration {
    SignedDuration::from_millis(millis)
}

fn millis(duration: SignedDuration) -> i64 {
    // Durations are validated to at most a day, far inside i64.
    duration.as_millis() as i64
}

/// A campaign row with its tiers, as plain values.
#[derive(Debug, Clone)]
pub(crate) struct CampaignValues {
    pub id: CampaignId,
    pub tenant_id: TenantId,
    pub name: String,
    pub message: String,
    pub description: String,
    pub terms: String,
    pub kind: String,
    pub supply: Option<i64>,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub voucher_expires_at: Option<Timestamp>,
    pub voucher_valid_for_ms: Option<i64>,
    pub price_amount: Option<i64>,
    pub price_currency: Option<String>,
    pub per_user_limit: i64,
    pub daily_limit_group: Option<String>,
    pub trigger: String,
    pub reservation_ttl_ms: i64,
    pub lock_ttl_ms: i64,
    pub redemptions_max: i64,
    pub code_pattern: Option<String>,
    /// The pattern's codes are made by the claims that take them.
    pub codes_on_claim: bool,
    pub lifecycle: String,
    pub voucher_count: i64,
    pub created_at: Timestamp,
    pub published_at: Option<Timestamp>,
    /// (until_rank, discount_percent) in rank order.
    pub tiers: Vec<(i64, i64)>,
}

impl CampaignValues {
    pub(crate) fn of(campaign: &CampaignRecord) -> CampaignValues {
        let spec = &campaign.spec;
        let (voucher_expires_at, voucher_valid_for_ms) = match spec.voucher_expiry {
            VoucherExpiry::Never => (None, None),
            VoucherExpiry::At(at) => (Some(at), None),
            VoucherExpiry::AfterIssue(valid_for) => (None, Some(millis(valid_for))),
        };
        CampaignValues {
            id: campaign.id,
            tenant_id: campaign.tenant_id,
            name: spec.name.clone(),
            message: spec.message.clone(),
            description: spec.description.clone(),
            terms: spec.terms.clone(),
            kind: spec.kind.as_str().to_owned(),
            supply: spec.supply.limit().map(i64::from),
            starts_at: spec.starts_at,
            ends_at: spec.ends_at,
            voucher_expires_at,
            voucher_valid_for_ms,
            price_amount: spec.price.map(|price| price.amount),
            price_currency: spec.price.map(|price| price.currency.as_str().to_owned()),
            per_user_limit: i64::from(spec.per_user_limit),
            daily_limit_group: spec
                .daily_limit_group
                .as_ref()
                .map(|group| group.as_str().to_owned()),
            trigger: spec.trigger.as_str().to_owned(),
            reservation_ttl_ms: millis(spec.reservation_ttl),
            lock_ttl_ms: millis(spec.lock_ttl),
            redemptions_max: i64::from(spec.redemptions_max),
            code_pattern: spec
                .code_pattern()
                .map(|pattern| pattern.as_str().to_owned()),
            codes_on_claim: matches!(spec.codes, CodeSource::OnClaim(_)),
            lifecycle: campaign.lifecycle.as_str().to_owned(),
            voucher_count: i64::from(campaign.voucher_count),
            created_at: campaign.created_at,
            published_at: campaign.published_at,
            tiers: spec
                .tiers
                .as_slice()
                .iter()
                .map(|tier| (i64::from(tier.until_rank), i64::from(tier.discount_percent)))
                .collect(),
        }
    }

    pub(crate) fn into_record(self) -> Result<CampaignRecord, StoreError> {
        let supply = match self.supply {
            Some(supply) => Supply::Limited(count(supply)?),
            None => Supply::Unlimited,
        };
        let voucher_expiry = match (self.voucher_expires_at, self.voucher_valid_for_ms) {
            (Some(at), _) => VoucherExpiry::At(at),
            (None, Some(valid_for)) => VoucherExpiry::AfterIssue(duration(valid_for)),
            (None, None) => VoucherExpiry::Never,
        };
        let price = match (self.price_amount, self.price_currency) {
            (Some(amount), Some(currency)) => Some(
                Currency::parse(&currency)
                    .and_then(|currency| Money::new(amount, currency))
                    .map_err(corrupt)?,
            ),
            _ => None,
        };
        let tiers = self
            .tiers
            .into_iter()
            .map(|(until_rank, discount_percent)| {
                Ok(Tier {
                    until_rank: count(until_rank)?,
                    discount_percent: u8::try_from(discount_percent).map_err(corrupt)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let spec = CampaignSpec {
            name: self.name,
            message: self.message,
            description: self.description,
            terms: self.terms,
            kind: CampaignKind::parse(&self.kind).map_err(corrupt)?,
            supply,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            voucher_expiry,
            price,
            tiers: Tiers::new(tiers, supply).map_err(corrupt)?,
            per_user_limit: count(self.per_user_limit)?,
            daily_limit_group: self
                .daily_limit_group
                .as_deref()
                .map(LimitGroup::parse)
                .transpose()
                .map_err(corrupt)?,
            trigger: Trigger::parse(&self.trigger).map_err(corrupt)?,
            reservation_ttl: duration(self.reservation_ttl_ms),
            lock_ttl: duration(self.lock_ttl_ms),
            redemptions_max: count(self.redemptions_max)?,
            codes: match (self.code_pattern, self.codes_on_claim) {
                (Some(pattern), on_claim) => {
                    let pattern = CodePattern::parse(&pattern).map_err(corrupt)?;
                    if on_claim {
                        CodeSource::OnClaim(pattern)
                    } else {
                        CodeSource::Pattern(pattern)
                    }
                }
                (None, false) => CodeSource::Upload,
                (None, true) => return Err(corrupt("codes made on claim without a pattern")),
            },
        };
        Ok(CampaignRecord {
            id: self.id,
            tenant_id: self.tenant_id,
            spec,
            lifecycle: Lifecycle::parse(&self.lifecycle)
                .ok_or_else(|| corrupt(format!("lifecycle {:?}", self.lifecycle)))?,
            voucher_count: count(self.voucher_count)?,
            created_at: self.created_at,
            published_at: self.published_at,
        })
    }
}

/// A voucher row, as plain values.
#[derive(Debug, Clone)]
pub(crate) struct VoucherValues {
    pub id: VoucherId,
    pub campaign_id: CampaignId,
    pub tenant_id: TenantId,
    pub rank: i64,
    pub code: String,
    pub state: String,
    pub user_id: Option<String>,
    pub claimed_at: Option<Timestamp>,
    pub reservation_id: Option<ReservationId>,
    pub reserved_until: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub locked_until: Option<Timestamp>,
    pub redemptions: i64,
    pub redemptions_max: i64,
}

impl VoucherValues {
    pub(crate) fn into_record(self) -> Result<VoucherRecord, StoreError> {
        Ok(VoucherRecord {
            id: self.id,
            campaign_id: self.campaign_id,
            tenant_id: self.tenant_id,
            rank: count(self.rank)?,
            code: VoucherCode::parse(&self.code).map_err(corrupt)?,
            state: VoucherState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("state {:?}", self.state)))?,
            user_id: self
                .user_id
                .as_deref()
                .map(UserId::parse)
                .transpose()
                .map_err(corrupt)?,
            claimed_at: self.claimed_at,
            reservation_id: self.reservation_id,
            reserved_until: self.reserved_until,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            locked_until: self.locked_until,
            redemptions: count(self.redemptions)?,
            redemptions_max: count(self.redemptions_max)?,
        })
    }
}

/// An account's columns as both stores read them, before parsing.
pub(crate) struct AccountValues {
    pub tenant_id: String,
    pub email: String,
    pub user_id: String,
    pub role: String,
    pub password_hash: String,
    pub created_at: Timestamp,
}

impl AccountValues {
    pub(crate) fn into_account(self) -> Result<crate::model::Account, StoreError> {
        Ok(crate::model::Account {
            tenant_id: self
                .tenant_id
                .parse::<TenantId>()
                .map_err(|_| corrupt(format!("bad tenant id {:?}", self.tenant_id)))?,
            user_id: UserId::parse(&self.user_id).map_err(corrupt)?,
            role: crate::model::AccountRole::parse(&self.role)
                .ok_or_else(|| corrupt(format!("bad account role {:?}", self.role)))?,
            email: self.email,
            password_hash: self.password_hash,
            created_at: self.created_at,
        })
    }
}
