//! The JSON shapes of the API and their conversions from the engine's
//! types. Nothing below the HTTP layer knows about these.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use voucherd_core::Timestamp;
use voucherd_core::campaign::{CampaignDraft, CampaignSpec, CodeSource, Offer, VoucherExpiry};
use voucherd_core::money::Money;
use voucherd_core::payment::CardDraft;
use voucherd_engine::campaigns::CampaignView;
use voucherd_engine::model::{OrderDetails, OrderStatus, StateCounts, VoucherRecord};
use voucherd_engine::{CodesAdded, Report};

fn time(timestamp: Timestamp) -> String {
    timestamp.to_string()
}

fn optional_time(timestamp: Option<Timestamp>) -> Option<String> {
    timestamp.map(time)
}

/// Integers in request bodies: JSON has one number type, and `100.0` is
/// the integer 100 to every JSON Schema validator, so a number with no
/// fractional part is taken as its integer; `100.5` is refused.
mod whole {
    use serde::de::{Error, Unexpected, Visitor};
    use serde::{Deserialize, Deserializer};

    /// An integer that may be written with a zero fraction.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Whole(pub i64);

    impl<'de> Deserialize<'de> for Whole {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Whole, D::Error> {
            deserializer.deserialize_any(WholeVisitor)
        }
    }

    struct WholeVisitor;

    impl Visitor<'_> for WholeVisitor {
        type Value = Whole;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a whole number")
        }

        fn visit_i64<E: Error>(self, value: i64) -> Result<Whole, E> {
            Ok(Whole(value))
        }

        fn visit_u64<E: Error>(self, value: u64) -> Result<Whole, E> {
            i64::try_from(value)
                .map(Whole)
                .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
        }

        fn visit_f64<E: Error>(self, value: f64) -> Result<Whole, E> {
            // 2^63 is exactly representable; anything at or past it is not an i64.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value) {
                Ok(Whole(value as i64))
            } else {
                Err(E::invalid_value(Unexpected::Float(value), &self))
            }
        }
    }

    pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        Whole::deserialize(deserializer).map(|whole| whole.0)
    }

    pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
        Option::<Whole>::deserialize(deserializer).map(|whole| whole.map(|whole| whole.0))
    }

    /// Tells a field given as `null` (`Some(None)`) from one left out
    /// (`None`, with `#[serde(default)]`).
    pub fn nullable<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<i64>>, D::Error> {
        optional(deserializer).map(Some)
    }

    pub fn unsigned<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        let value = required(deserializer)?;
        u32::try_from(value).map_err(|_| {
            D::Error::invalid_value(
                Unexpected::Signed(value),
                &"a whole number from 0 to 4294967295",
            )
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoneyBody {
    /// Integer minor units (satang, cents).
    #[serde(deserialize_with = "whole::required")]
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
}

impl From<Money> for MoneyBody {
    fn from(money: Money) -> MoneyBody {
        MoneyBody {
            amount: money.amount,
            currency: money.currency.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TierBody {
    /// The last rank (inclusive) this tier's discount applies to.
    #[serde(deserialize_with = "whole::required")]
    pub until_rank: i64,
    #[serde(deserialize_with = "whole::required")]
    pub discount_percent: i64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodesSpecBody {
    /// `#` a digit, `?` a letter (no look-alikes), anything else literal.
    pub pattern: Option<String>,
    /// Codes will be uploaded; publishing needs exactly `supply` of them.
    #[serde(default)]
    pub upload: bool,
    /// Generated codes are made by the claims that take them, up to
    /// `supply`, rather than before publishing: the publish is live at
    /// once however large the supply, and an export lists only the codes
    /// claimed so far. For codes revealed to their claimers, never
    /// printed or sent ahead.
    #[serde(default)]
    pub on_claim: bool,
}

/// A campaign to create. Only `name`, `kind` and `supply` are required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignBody {
    #[schema(required = true, min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 500)]
    pub message: Option<String>,
    #[schema(max_length = 10_000)]
    pub description: Option<String>,
    #[schema(max_length = 50_000)]
    pub terms: Option<String>,
    /// `coupon` (a claim issues at once) or `sale` (a claim reserves).
    #[schema(required = true)]
    pub kind: Option<String>,
    /// How many vouchers; `null` for unlimited.
    #[serde(default, deserialize_with = "whole::nullable")]
    #[schema(value_type = Option<i64>, nullable, required = true, minimum = 1, maximum = 5_000_000)]
    pub supply: Option<Option<i64>>,
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    #[schema(format = DateTime)]
    pub voucher_expires_at: Option<String>,
    /// ISO 8601 duration after issue, e.g. `P30D`.
    pub voucher_valid_for: Option<String>,
    pub price: Option<MoneyBody>,
    #[serde(default)]
    #[schema(max_items = 32)]
    pub tiers: Vec<TierBody>,
    #[schema(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "whole::optional")]
    pub per_user_limit: Option<i64>,
    #[schema(min_length = 1, max_length = 64)]
    pub daily_limit_group: Option<String>,
    /// `claim` or `first_login`.
    pub trigger: Option<String>,
    #[schema(minimum = 10, maximum = 86_400)]
    #[serde(default, deserialize_with = "whole::optional")]
    pub reservation_ttl_seconds: Option<i64>,
    #[schema(minimum = 10, maximum = 86_400)]
    #[serde(default, deserialize_with = "whole::optional")]
    pub lock_ttl_seconds: Option<i64>,
    #[schema(minimum = 1, maximum = 1_000)]
    #[serde(default, deserialize_with = "whole::optional")]
    pub redemptions_max: Option<i64>,
    pub codes: Option<CodesSpecBody>,
}

impl CreateCampaignBody {
    pub fn into_draft(self) -> CampaignDraft {
        let codes = self.codes.unwrap_or_default();
        CampaignDraft {
            name: self.name,
            message: self.message,
            description: self.description,
            terms: self.terms,
            kind: self.kind,
            supply: self.supply,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            voucher_expires_at: self.voucher_expires_at,
            voucher_valid_for: self.voucher_valid_for,
            price: self.price.map(|price| (price.amount, price.currency)),
            tiers: self
                .tiers
                .into_iter()
                .map(|tier| (tier.until_rank, tier.discount_percent))
                .collect(),
            per_user_limit: self.per_user_limit,
            daily_limit_group: self.daily_limit_group,
            trigger: self.trigger,
            reservation_ttl_seconds: self.reservation_ttl_seconds,
            lock_ttl_seconds: self.lock_ttl_seconds,
            redemptions_max: self.redemptions_max,
            code_pattern: codes.pattern,
            codes_upload: codes.upload,
            codes_on_claim: codes.on_claim,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodesBody {
    pub pattern: Option<String>,
    pub upload: bool,
    /// Codes are made by the claims that take them, up to `supply`.
    pub on_claim: bool,
    /// Codes (vouchers) made so far.
    pub count: u32,
    /// A publish is making the rest of the codes; the campaign goes live
    /// when `count` reaches `supply`. Said by the node doing it.
    pub publishing: bool,
    /// Why the last publish that went on after its answer stopped short.
    pub publish_failure: Option<String>,
}

/// The price the next claim would get.
#[derive(Debug, Serialize, ToSchema)]
pub struct OfferBody {
    pub rank: u32,
    pub discount_percent: u8,
    pub price: Option<MoneyBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignBody {
    pub id: String,
    pub name: String,
    pub message: String,
    pub description: String,
    pub terms: String,
    pub kind: String,
    pub supply: Option<u32>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub voucher_expires_at: Option<String>,
    pub voucher_valid_for: Option<String>,
    pub price: Option<MoneyBody>,
    pub tiers: Vec<TierBody>,
    pub per_user_limit: u32,
    pub daily_limit_group: Option<String>,
    pub trigger: String,
    pub reservation_ttl_seconds: i64,
    pub lock_ttl_seconds: i64,
    pub redemptions_max: u32,
    pub codes: CodesBody,
    /// `draft`, `live`, `paused` or `ended`.
    pub state: String,
    pub sold_out: bool,
    /// Vouchers left; `null` for an unlimited supply.
    pub remaining: Option<u64>,
    pub current_offer: Option<OfferBody>,
    pub created_at: String,
    pub published_at: Option<String>,
}

impl CampaignBody {
    pub fn new(view: &CampaignView, now: Timestamp) -> CampaignBody {
        let spec = &view.record.spec;
        let (voucher_expires_at, voucher_valid_for) = match spec.voucher_expiry {
            VoucherExpiry::Never => (None, None),
            VoucherExpiry::At(at) => (Some(time(at)), None),
            VoucherExpiry::AfterIssue(valid_for) => {
                (None, Some(format!("PT{}S", valid_for.as_secs())))
            }
        };
        // The next claim takes the lowest free rank; with nothing released
        // that is one past the vouchers taken so far.
        let current_offer = match view.remaining {
            Some(0) => None,
            Some(remaining) => Some(view.voucher_count.saturating_sub(remaining as u32) + 1),
            None => Some(view.voucher_count + 1),
        }
        .map(|rank| offer_body(spec, rank));
        CampaignBody {
            id: view.record.id.to_string(),
            name: spec.name.clone(),
            message: spec.message.clone(),
            description: spec.description.clone(),
            terms: spec.terms.clone(),
            kind: spec.kind.as_str().into(),
            supply: spec.supply.limit(),
            starts_at: optional_time(spec.starts_at),
            ends_at: optional_time(spec.ends_at),
            voucher_expires_at,
            voucher_valid_for,
            price: spec.price.map(MoneyBody::from),
            tiers: spec
                .tiers
                .as_slice()
                .iter()
                .map(|tier| TierBody {
                    until_rank: i64::from(tier.until_rank),
                    discount_percent: i64::from(tier.discount_percent),
                })
                .collect(),
            per_user_limit: spec.per_user_limit,
            daily_limit_group: spec
                .daily_limit_group
                .as_ref()
                .map(|group| group.as_str().into()),
            trigger: spec.trigger.as_str().into(),
            reservation_ttl_seconds: spec.reservation_ttl.as_secs(),
            lock_ttl_seconds: spec.lock_ttl.as_secs(),
            redemptions_max: spec.redemptions_max,
            codes: CodesBody {
                pattern: spec.code_pattern().map(|pattern| pattern.as_str().into()),
                upload: spec.codes == CodeSource::Upload,
                on_claim: matches!(spec.codes, CodeSource::OnClaim(_)),
                count: view.voucher_count,
                publishing: view.publishing,
                publish_failure: view.publish_failure.clone(),
            },
            state: view.status(now).as_str().into(),
            sold_out: view.sold_out(),
            remaining: view.remaining,
            current_offer,
            created_at: time(view.record.created_at),
            published_at: optional_time(view.published_at),
        }
    }
}

fn offer_body(spec: &CampaignSpec, rank: u32) -> OfferBody {
    let offer = spec.offer(rank);
    OfferBody {
        rank,
        discount_percent: offer.discount_percent,
        price: offer.price.map(MoneyBody::from),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignListBody {
    pub campaigns: Vec<CampaignBody>,
}

/// A voucher as its holder sees it: the answer to a claim.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoucherBody {
    pub voucher_id: String,
    pub campaign_id: String,
    pub user_id: Option<String>,
    /// `reserved`, `issued`, `locked` or `redeemed`.
    pub state: String,
    pub rank: u32,
    pub discount_percent: u8,
    pub price: Option<MoneyBody>,
    /// Null while the voucher is only reserved.
    pub code: Option<String>,
    pub expires_at: Option<String>,
    pub reservation_id: Option<String>,
    pub reserved_until: Option<String>,
    pub locked_until: Option<String>,
    pub redemptions: u32,
    pub redemptions_max: u32,
    pub claimed_at: Option<String>,
}

impl VoucherBody {
    /// `offer` is the voucher's campaign's at its rank
    /// ([`CampaignSpec::offer`]).
    pub fn new(voucher: &VoucherRecord, offer: Offer, now: Timestamp) -> VoucherBody {
        let redemption = voucher.redemption();
        let state = redemption.state_at(now);
        let reserved = state == voucherd_core::voucher::VoucherState::Reserved;
        let locked = state == voucherd_core::voucher::VoucherState::Locked;
        VoucherBody {
            voucher_id: voucher.id.to_string(),
            campaign_id: voucher.campaign_id.to_string(),
            user_id: voucher.user_id.as_ref().map(ToString::to_string),
            state: state.as_str().into(),
            rank: voucher.rank,
            discount_percent: offer.discount_percent,
            price: offer.price.map(MoneyBody::from),
            code: (!reserved && voucher.user_id.is_some()).then(|| voucher.code.to_string()),
            expires_at: optional_time(voucher.expires_at),
            reservation_id: voucher
                .reservation_id
                .filter(|_| reserved)
                .map(|id| id.to_string()),
            reserved_until: optional_time(voucher.reserved_until),
            locked_until: optional_time(voucher.locked_until.filter(|_| locked)),
            redemptions: voucher.redemptions,
            redemptions_max: voucher.redemptions_max,
            claimed_at: optional_time(voucher.claimed_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VoucherListBody {
    pub vouchers: Vec<VoucherBody>,
}

/// One page of a campaign's vouchers, for the admin's export.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoucherPageBody {
    pub vouchers: Vec<ExportedVoucherBody>,
    /// Pass as `after_rank` for the next page; null on the last.
    pub next_after_rank: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedVoucherBody {
    pub rank: u32,
    pub code: String,
    pub state: String,
    pub user_id: Option<String>,
    pub claimed_at: Option<String>,
    pub issued_at: Option<String>,
    pub expires_at: Option<String>,
    pub redemptions: u32,
}

impl From<&VoucherRecord> for ExportedVoucherBody {
    fn from(voucher: &VoucherRecord) -> ExportedVoucherBody {
        ExportedVoucherBody {
            rank: voucher.rank,
            code: voucher.code.to_string(),
            state: voucher.state.as_str().into(),
            user_id: voucher.user_id.as_ref().map(ToString::to_string),
            claimed_at: optional_time(voucher.claimed_at),
            issued_at: optional_time(voucher.issued_at),
            expires_at: optional_time(voucher.expires_at),
            redemptions: voucher.redemptions,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VoucherPageQuery {
    /// Vouchers with a rank above this; 0 for the first page.
    #[param(minimum = 0, maximum = 2_147_483_647)]
    pub after_rank: Option<u32>,
    /// Page size, at most 10,000.
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<u32>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// Who a claim or a login is for. A customer token may leave it out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// At most 128 bytes, no control characters.
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCodesBody {
    /// Codes to upload, 1 to 64 printable characters each.
    #[serde(default)]
    pub codes: Vec<String>,
    /// How many codes to generate from the campaign's pattern.
    #[serde(default, deserialize_with = "whole::unsigned")]
    pub generate: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodesAddedBody {
    pub added: u32,
    /// Codes refused because the tenant already has them (or the upload
    /// repeats them); never merged. The first 1,000 of them, in the order
    /// offered: `duplicates_count` says how many there were.
    #[schema(max_items = 1_000)]
    pub duplicates: Vec<String>,
    pub duplicates_count: u32,
    pub count: u32,
    pub supply: Option<u32>,
}

impl CodesAddedBody {
    /// Duplicates an answer lists. Bounded, so that the answer to an upload
    /// of any size stays small enough to be kept for an idempotent replay.
    pub const DUPLICATES_SHOWN: usize = 1_000;

    pub fn new(added: CodesAdded, supply: Option<u32>) -> CodesAddedBody {
        CodesAddedBody {
            added: added.added,
            duplicates: added
                .duplicates
                .iter()
                .take(CodesAddedBody::DUPLICATES_SHOWN)
                .map(ToString::to_string)
                .collect(),
            duplicates_count: u32::try_from(added.duplicates.len()).unwrap_or(u32::MAX),
            count: added.voucher_count,
            supply,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginBody {
    pub user_id: String,
    /// Vouchers this login granted.
    pub granted: Vec<VoucherBody>,
    /// Vouchers of first_login campaigns the user already had.
    pub held: Vec<VoucherBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TierReportBody {
    pub first_rank: u32,
    pub last_rank: Option<u32>,
    pub discount_percent: u8,
    /// Every voucher of the tier issued to someone: issued, locked or
    /// redeemed since.
    pub issued: u64,
    pub reserved: u64,
    pub available: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecondBody {
    pub at: String,
    pub claims: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportBody {
    pub campaign_id: String,
    pub supply: Option<u32>,
    pub available: u64,
    pub reserved: u64,
    /// Vouchers in state issued (neither locked nor redeemed).
    pub issued: u64,
    pub locked: u64,
    pub redeemed: u64,
    /// Issued, locked and redeemed together.
    pub issued_total: u64,
    pub by_tier: Vec<TierReportBody>,
    /// Claims per second, oldest first, at most the last hour that saw any.
    pub claims_per_second: Vec<SecondBody>,
    /// Paid orders' amounts by currency (sales).
    pub revenue: Vec<MoneyBody>,
    pub orders: OrderCountsBody,
    /// Gateway calls by gateway and outcome.
    pub payments: Vec<GatewayOutcomeBody>,
}

impl From<&Report> for ReportBody {
    fn from(report: &Report) -> ReportBody {
        let StateCounts {
            available,
            reserved,
            issued,
            locked,
            redeemed,
        } = report.counts;
        ReportBody {
            campaign_id: report.campaign.record.id.to_string(),
            supply: report.campaign.record.spec.supply.limit(),
            available,
            reserved,
            issued,
            locked,
            redeemed,
            issued_total: report.counts.held(),
            by_tier: report
                .tiers
                .iter()
                .map(|tier| TierReportBody {
                    first_rank: tier.first_rank,
                    last_rank: tier.last_rank,
                    discount_percent: tier.discount_percent,
                    issued: tier.counts.held(),
                    reserved: tier.counts.reserved,
                    available: tier.counts.available,
                })
                .collect(),
            claims_per_second: report
                .claims_per_second
                .iter()
                .map(|&(second, claims)| SecondBody {
                    at: Timestamp::from_second(second).map(time).unwrap_or_default(),
                    claims,
                })
                .collect(),
            revenue: report
                .payments
                .revenue
                .iter()
                .copied()
                .map(MoneyBody::from)
                .collect(),
            orders: OrderCountsBody {
                paid: report.payments.orders_paid,
                failed: report.payments.orders_failed,
                pending: report.payments.orders_pending,
            },
            payments: report
                .payments
                .attempts
                .iter()
                .map(|(gateway, outcome, count)| GatewayOutcomeBody {
                    gateway: gateway.clone(),
                    outcome: outcome.as_str().into(),
                    count: *count,
                })
                .collect(),
        }
    }
}

/// A card as the buyer typed it. It is checked (Luhn, expiry, CVC) and
/// never stored: orders keep its brand and last four digits only.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardBody {
    pub number: String,
    #[serde(deserialize_with = "whole::required")]
    pub exp_month: i64,
    #[serde(deserialize_with = "whole::required")]
    pub exp_year: i64,
    pub cvc: String,
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    pub email: String,
    pub card: CardBody,
}

impl CardBody {
    pub fn draft(&self) -> CardDraft {
        CardDraft {
            number: self.number.clone(),
            exp_month: self.exp_month,
            exp_year: self.exp_year,
            cvc: self.cvc.clone(),
            name: self.name.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutAcceptedBody {
    pub order_id: String,
    /// `pending` until the payment settles.
    pub status: String,
    pub reservation_id: String,
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptBody {
    pub number: u32,
    pub gateway: String,
    /// `charge` or `lookup` (asking a gateway what became of a charge).
    pub kind: String,
    /// `captured`, `declined`, `refused`, `unknown`, `not_found`, `failed`,
    /// `interrupted`; null while under way.
    pub outcome: Option<String>,
    pub detail: Option<String>,
    pub charge_id: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaidCardBody {
    pub brand: String,
    pub last4: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBody {
    pub order_id: String,
    /// `pending`, `paid` or `failed`.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    /// The gateway that settled it.
    pub gateway: Option<String>,
    pub failure: Option<String>,
    pub reservation_id: String,
    pub email: String,
    pub card: PaidCardBody,
    pub created_at: String,
    pub settled_at: Option<String>,
    /// Every gateway call, the transaction history.
    pub attempts: Vec<AttemptBody>,
    /// The voucher with its code, once paid.
    pub voucher: Option<VoucherBody>,
}

impl OrderBody {
    /// `offer` is the order's voucher's ([`CampaignSpec::offer`] at its rank).
    pub fn new(details: &OrderDetails, offer: Offer, now: Timestamp) -> OrderBody {
        let order = &details.order;
        assert_eq!(order.campaign_id, details.voucher.campaign_id);
        OrderBody {
            order_id: order.id.to_string(),
            status: order.status.as_str().into(),
            amount: order.amount.amount,
            currency: order.amount.currency.to_string(),
            gateway: order.gateway.clone(),
            failure: order.failure.clone(),
            reservation_id: order.reservation_id.to_string(),
            email: order.email.clone(),
            card: PaidCardBody {
                brand: order.card_brand.clone(),
                last4: order.card_last_four.clone(),
            },
            created_at: time(order.created_at),
            settled_at: optional_time(order.settled_at),
            attempts: details
                .attempts
                .iter()
                .map(|attempt| AttemptBody {
                    number: attempt.number,
                    gateway: attempt.gateway.clone(),
                    kind: attempt.kind.as_str().into(),
                    outcome: attempt.outcome.map(|outcome| outcome.as_str().into()),
                    detail: attempt.detail.clone(),
                    charge_id: attempt.charge_id.clone(),
                    started_at: time(attempt.started_at),
                    finished_at: optional_time(attempt.finished_at),
                })
                .collect(),
            voucher: (order.status == OrderStatus::Paid)
                .then(|| VoucherBody::new(&details.voucher, offer, now)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayOutcomeBody {
    pub gateway: String,
    pub outcome: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderCountsBody {
    pub paid: u64,
    pub failed: u64,
    pub pending: u64,
}

/// A tenant as its admins see it; never its keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBody {
    pub id: String,
    pub name: String,
    pub time_zone: String,
    /// `null`: no limit.
    pub rate_limit_per_second: Option<u32>,
    /// The `kid` of the key new tokens are signed with.
    pub key_id: String,
    /// Keys that verify only what they signed before they were retired.
    pub retired_key_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRotatedBody {
    pub tenant: TenantBody,
    /// An admin token of the new key, valid for 12 hours.
    pub admin_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantLimitsBody {
    /// Requests a second across the tenant's tokens; `null` for no limit.
    /// Required: leaving it out is not the same as lifting the limit.
    #[serde(deserialize_with = "whole::optional")]
    #[schema(required = true)]
    pub rate_limit_per_second: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    pub status: String,
}
