//! A campaign's rules, validated once at creation into a [`CampaignSpec`],
//! and the questions the engine asks of them on every claim: is it claimable
//! now, what does rank `k` cost, when does the voucher or the reservation
//! expire, which calendar day does the claim count against.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

use crate::calendar::day_in_zone;
use crate::code::CodePattern;
use crate::money::{Currency, Money};
use crate::validation::{Collector, Invalid};

/// The largest supply a campaign may have. Every unit is a row made when the
/// campaign is published, so the bound keeps a typo from filling the disk.
pub const SUPPLY_MAX: u32 = 5_000_000;
pub const TIERS_MAX: usize = 32;
pub const PER_USER_LIMIT_MAX: u32 = 100;
pub const REDEMPTIONS_MAX_MAX: u32 = 1_000;
pub const TTL_SECONDS_MIN: u32 = 10;
pub const TTL_SECONDS_MAX: u32 = 86_400;
pub const TTL_SECONDS_DEFAULT: u32 = 600;
pub const NAME_LENGTH_MAX: usize = 200;
pub const MESSAGE_LENGTH_MAX: usize = 500;
pub const DESCRIPTION_LENGTH_MAX: usize = 10_000;
pub const TERMS_LENGTH_MAX: usize = 50_000;
pub const LIMIT_GROUP_LENGTH_MAX: usize = 64;
/// Codes generated when a campaign names no pattern: 23^8 · 8^4 codes.
pub const CODE_PATTERN_DEFAULT: &str = "????-####-????";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignKind {
    /// Free: a claim issues a voucher at once.
    Coupon,
    /// Paid: a claim reserves, a payment issues.
    Sale,
}

impl CampaignKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CampaignKind::Coupon => "coupon",
            CampaignKind::Sale => "sale",
        }
    }

    pub fn parse(text: &str) -> Result<CampaignKind, Invalid> {
        match text {
            "coupon" => Ok(CampaignKind::Coupon),
            "sale" => Ok(CampaignKind::Sale),
            _ => Err(Invalid::one("kind", "must be \"coupon\" or \"sale\"")),
        }
    }
}

/// What makes a user's claim happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The user (or the tenant's backend for them) claims explicitly.
    Claim,
    /// A login event grants the voucher while supply lasts (seed 002).
    FirstLogin,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Claim => "claim",
            Trigger::FirstLogin => "first_login",
        }
    }

    pub fn parse(text: &str) -> Result<Trigger, Invalid> {
        match text {
            "claim" => Ok(Trigger::Claim),
            "first_login" => Ok(Trigger::FirstLogin),
            _ => Err(Invalid::one(
                "trigger",
                "must be \"claim\" or \"first_login\"",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supply {
    Limited(u32),
    /// Codes are minted on demand; ranks grow without end.
    Unlimited,
}

impl Supply {
    pub fn limit(&self) -> Option<u32> {
        match self {
            Supply::Limited(supply) => Some(*supply),
            Supply::Unlimited => None,
        }
    }
}

/// The price of ranks up to and including `until_rank`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub until_rank: u32,
    pub discount_percent: u8,
}

/// Tiers in strictly increasing `until_rank` order. Ranks past the last tier
/// pay the full price.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tiers(Vec<Tier>);

impl Tiers {
    pub fn new(tiers: Vec<Tier>, supply: Supply) -> Result<Tiers, Invalid> {
        let mut collector = Collector::default();
        if tiers.len() > TIERS_MAX {
            collector.reject("tiers", format!("at most {TIERS_MAX} tiers"));
        }
        let mut previous_until = 0;
        for (index, tier) in tiers.iter().enumerate() {
            let field = format!("tiers[{index}]");
            if tier.until_rank <= previous_until {
                collector.reject(
                    format!("{field}.until_rank"),
                    "must be at least 1 and greater than the previous tier's",
                );
            }
            if let Supply::Limited(supply) = supply
                && tier.until_rank > supply
            {
                collector.reject(
                    format!("{field}.until_rank"),
                    format!("must not exceed the supply of {supply}"),
                );
            }
            if tier.discount_percent > 100 {
                collector.reject(
                    format!("{field}.discount_percent"),
                    "must be between 0 and 100",
                );
            }
            previous_until = tier.until_rank;
        }
        collector.finish(|| Tiers(tiers))
    }

    pub fn as_slice(&self) -> &[Tier] {
        &self.0
    }

    /// The discount of the tier that `rank` falls in; 0 past the last tier.
    pub fn discount_percent(&self, rank: u32) -> u8 {
        self.0
            .iter()
            .find(|tier| rank <= tier.until_rank)
            .map_or(0, |tier| tier.discount_percent)
    }
}

/// When an issued voucher stops being redeemable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoucherExpiry {
    Never,
    At(Timestamp),
    AfterIssue(SignedDuration),
}

/// Where a campaign's codes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeSource {
    /// Generated from the pattern (before publishing, or on demand when the
    /// supply is unlimited).
    Pattern(CodePattern),
    /// Generated from the pattern by the claim that takes it, up to the
    /// supply: a publish makes none and goes live at once, and a code
    /// exists only once it is claimed (an export lists the claimed ones).
    /// For campaigns whose codes are revealed to their claimers, never
    /// printed or sent ahead.
    OnClaim(CodePattern),
    /// Uploaded by the tenant; the campaign cannot be published until
    /// exactly `supply` codes are there.
    Upload,
}

/// A short name shared by the campaigns whose vouchers count against one
/// "one per user per day" limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitGroup(String);

impl LimitGroup {
    pub fn parse(text: &str) -> Result<LimitGroup, Invalid> {
        let valid_character =
            |character: char| character.is_ascii_alphanumeric() || "-_.:".contains(character);
        if text.is_empty()
            || text.len() > LIMIT_GROUP_LENGTH_MAX
            || !text.chars().all(valid_character)
        {
            return Err(Invalid::one(
                "daily_limit_group",
                format!(
                    "must be 1 to {LIMIT_GROUP_LENGTH_MAX} letters, digits, '-', '_', '.' or ':'"
                ),
            ));
        }
        Ok(LimitGroup(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The daily-limit slot a claim takes: one per user, group and day.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DailyKey {
    pub group: LimitGroup,
    pub day: Date,
}

/// A campaign's lifecycle as the tenant steers it. `ended` is not stored: it
/// follows from `ends_at` and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Draft,
    Live,
    Paused,
}

impl Lifecycle {
    pub fn as_str(&self) -> &'static str {
        match self {
            Lifecycle::Draft => "draft",
            Lifecycle::Live => "live",
            Lifecycle::Paused => "paused",
        }
    }

    pub fn parse(text: &str) -> Option<Lifecycle> {
        match text {
            "draft" => Some(Lifecycle::Draft),
            "live" => Some(Lifecycle::Live),
            "paused" => Some(Lifecycle::Paused),
            _ => None,
        }
    }
}

/// What a client sees: the lifecycle, with `ended` once the window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    Draft,
    Live,
    Paused,
    Ended,
}

impl CampaignStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Live => "live",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Ended => "ended",
        }
    }
}

/// Why a claim is refused before it reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRefusal {
    NotStarted,
    Ended,
    Paused,
    SoldOut,
}

/// What a successful claim does to the voucher it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Coupon: issued at once.
    Issue { expires_at: Option<Timestamp> },
    /// Sale: reserved until paid, released or expired.
    Reserve { until: Timestamp },
}

/// The price offered to the holder of one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub discount_percent: u8,
    pub price: Option<Money>,
}

/// A campaign's validated rules. Immutable once created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSpec {
    pub name: String,
    pub message: String,
    pub description: String,
    pub terms: String,
    pub kind: CampaignKind,
    pub supply: Supply,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub voucher_expiry: VoucherExpiry,
    pub price: Option<Money>,
    pub tiers: Tiers,
    pub per_user_limit: u32,
    pub daily_limit_group: Option<LimitGroup>,
    pub trigger: Trigger,
    pub reservation_ttl: SignedDuration,
    pub lock_ttl: SignedDuration,
    pub redemptions_max: u32,
    pub codes: CodeSource,
}

impl CampaignSpec {
    /// Whether a claim may proceed now. Only the store decides whether a
    /// voucher is left; `sold_out` is the engine's memory of having seen it
    /// run out.
    pub fn claimable(
        &self,
        lifecycle: Lifecycle,
        sold_out: bool,
        now: Timestamp,
    ) -> Result<(), ClaimRefusal> {
        match self.status(lifecycle, now) {
            CampaignStatus::Draft => return Err(ClaimRefusal::NotStarted),
            CampaignStatus::Ended => return Err(ClaimRefusal::Ended),
            CampaignStatus::Paused => return Err(ClaimRefusal::Paused),
            CampaignStatus::Live => {}
        }
        if self.starts_at.is_some_and(|starts_at| now < starts_at) {
            return Err(ClaimRefusal::NotStarted);
        }
        if sold_out {
            return Err(ClaimRefusal::SoldOut);
        }
        Ok(())
    }

    pub fn status(&self, lifecycle: Lifecycle, now: Timestamp) -> CampaignStatus {
        let ended = self.ends_at.is_some_and(|ends_at| now >= ends_at);
        match lifecycle {
            Lifecycle::Draft => CampaignStatus::Draft,
            _ if ended => CampaignStatus::Ended,
            Lifecycle::Live => CampaignStatus::Live,
            Lifecycle::Paused => CampaignStatus::Paused,
        }
    }

    pub fn offer(&self, rank: u32) -> Offer {
        let discount_percent = self.tiers.discount_percent(rank);
        Offer {
            discount_percent,
            price: self.price.map(|price| price.discounted(discount_percent)),
        }
    }

    /// When a voucher issued at `issued_at` expires.
    pub fn voucher_expires_at(&self, issued_at: Timestamp) -> Option<Timestamp> {
        match self.voucher_expiry {
            VoucherExpiry::Never => None,
            VoucherExpiry::At(at) => Some(at),
            VoucherExpiry::AfterIssue(valid_for) => issued_at.checked_add(valid_for).ok(),
        }
    }

    /// What a claim at `now` does to the voucher it takes.
    pub fn hold(&self, now: Timestamp) -> Hold {
        match self.kind {
            CampaignKind::Coupon => Hold::Issue {
                expires_at: self.voucher_expires_at(now),
            },
            CampaignKind::Sale => Hold::Reserve {
                until: now
                    .checked_add(self.reservation_ttl)
                    .unwrap_or(Timestamp::MAX),
            },
        }
    }

    /// The daily-limit slot a claim at `now` takes, in the tenant's zone.
    pub fn daily_key(&self, zone: &TimeZone, now: Timestamp) -> Option<DailyKey> {
        self.daily_limit_group.as_ref().map(|group| DailyKey {
            group: group.clone(),
            day: day_in_zone(now, zone),
        })
    }

    /// The code pattern to mint from, when codes are generated.
    pub fn code_pattern(&self) -> Option<&CodePattern> {
        match &self.codes {
            CodeSource::Pattern(pattern) | CodeSource::OnClaim(pattern) => Some(pattern),
            CodeSource::Upload => None,
        }
    }

    /// Whether a claim that finds no free voucher makes one: the codes of an
    /// unlimited campaign, and of one whose codes are made on claim, do not
    /// exist before their claims.
    pub fn mints_on_claim(&self) -> bool {
        match self.codes {
            CodeSource::OnClaim(_) => true,
            CodeSource::Pattern(_) => self.supply == Supply::Unlimited,
            CodeSource::Upload => false,
        }
    }
}

/// A campaign as a client asked for it, before validation. `None` is a field
/// the client left out.
#[derive(Debug, Clone, Default)]
pub struct CampaignDraft {
    pub name: Option<String>,
    pub message: Option<String>,
    pub description: Option<String>,
    pub terms: Option<String>,
    pub kind: Option<String>,
    /// `Some(None)` is an explicit `null`: unlimited.
    pub supply: Option<Option<i64>>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub voucher_expires_at: Option<String>,
    pub voucher_valid_for: Option<String>,
    pub price: Option<(i64, String)>,
    pub tiers: Vec<(i64, i64)>,
    pub per_user_limit: Option<i64>,
    pub daily_limit_group: Option<String>,
    pub trigger: Option<String>,
    pub reservation_ttl_seconds: Option<i64>,
    pub lock_ttl_seconds: Option<i64>,
    pub redemptions_max: Option<i64>,
    pub code_pattern: Option<String>,
    pub codes_upload: bool,
    pub codes_on_claim: bool,
}

impl CampaignDraft {
    /// Validates every field, reporting all problems at once.
    pub fn validate(&self) -> Result<CampaignSpec, Invalid> {
        let name = required_text("name", self.name.as_deref(), NAME_LENGTH_MAX);
        let message = optional_text("message", &self.message, MESSAGE_LENGTH_MAX);
        let description = optional_text("description", &self.description, DESCRIPTION_LENGTH_MAX);
        let terms = optional_text("terms", &self.terms, TERMS_LENGTH_MAX);
        let kind = match &self.kind {
            None => Err(Invalid::one("kind", "is required")),
            Some(kind) => CampaignKind::parse(kind),
        };
        let supply = parse_supply(self.supply);
        let starts_at = optional_timestamp("starts_at", &self.starts_at);
        let ends_at = optional_timestamp("ends_at", &self.ends_at);
        let voucher_expiry = self.voucher_expiry(starts_at.clone().ok().flatten());
        let price = self
            .price
            .as_ref()
            .map(|(amount, currency)| {
                Currency::parse(currency).and_then(|currency| Money::new(*amount, currency))
            })
            .transpose();
        let tiers = supply
            .clone()
            .and_then(|supply| parse_tiers(&self.tiers, supply));
        let per_user_limit = bounded(
            "per_user_limit",
            self.per_user_limit,
            1,
            1..=PER_USER_LIMIT_MAX,
        );
        let daily_limit_group = self
            .daily_limit_group
            .as_deref()
            .map(LimitGroup::parse)
            .transpose();
        let trigger = self
            .trigger
            .as_deref()
            .map_or(Ok(Trigger::Claim), Trigger::parse);
        let ttl_range = TTL_SECONDS_MIN..=TTL_SECONDS_MAX;
        let reservation_ttl = bounded(
            "reservation_ttl_seconds",
            self.reservation_ttl_seconds,
            TTL_SECONDS_DEFAULT,
            ttl_range.clone(),
        );
        let lock_ttl = bounded(
            "lock_ttl_seconds",
            self.lock_ttl_seconds,
            TTL_SECONDS_DEFAULT,
            ttl_range,
        );
        let redemptions_max = bounded(
            "redemptions_max",
            self.redemptions_max,
            1,
            1..=REDEMPTIONS_MAX_MAX,
        );
        let codes = supply.clone().and_then(|supply| self.code_source(supply));

        let mut collector = Collector::default();
        collector.note(&name);
        collector.note(&message);
        collector.note(&description);
        collector.note(&terms);
        collector.note(&kind);
        collector.note(&supply);
        collector.note(&starts_at);
        collector.note(&ends_at);
        collector.note(&voucher_expiry);
        collector.note(&price);
        collector.note(&tiers);
        collector.note(&per_user_limit);
        collector.note(&daily_limit_group);
        collector.note(&trigger);
        collector.note(&reservation_ttl);
        collector.note(&lock_ttl);
        collector.note(&redemptions_max);
        collector.note(&codes);
        if let (Ok(Some(starts_at)), Ok(Some(ends_at))) = (&starts_at, &ends_at)
            && ends_at <= starts_at
        {
            collector.reject("ends_at", "must be after starts_at");
        }
        if kind == Ok(CampaignKind::Sale) && self.price.is_none() {
            collector.reject("price", "is required for a sale");
        }
        if trigger == Ok(Trigger::FirstLogin) {
            if kind == Ok(CampaignKind::Sale) {
                collector.reject("trigger", "first_login grants free coupons only");
            }
            if per_user_limit.as_ref().is_ok_and(|limit| *limit != 1) {
                collector.reject("per_user_limit", "must be 1 for a first_login campaign");
            }
        }
        collector.finish(|| ())?;
        // Every result was checked above, so none of these `?` can fire.
        Ok(CampaignSpec {
            name: name?,
            message: message?,
            description: description?,
            terms: terms?,
            kind: kind?,
            supply: supply?,
            starts_at: starts_at?,
            ends_at: ends_at?,
            voucher_expiry: voucher_expiry?,
            price: price?,
            tiers: tiers?,
            per_user_limit: per_user_limit?,
            daily_limit_group: daily_limit_group?,
            trigger: trigger?,
            reservation_ttl: SignedDuration::from_secs(i64::from(reservation_ttl?)),
            lock_ttl: SignedDuration::from_secs(i64::from(lock_ttl?)),
            redemptions_max: redemptions_max?,
            codes: codes?,
        })
    }

    fn voucher_expiry(&self, starts_at: Option<Timestamp>) -> Result<VoucherExpiry, Invalid> {
        match (&self.voucher_expires_at, &self.voucher_valid_for) {
            (None, None) => Ok(VoucherExpiry::Never),
            (Some(_), Some(_)) => Err(Invalid::one(
                "voucher_valid_for",
                "give voucher_expires_at or voucher_valid_for, not both",
            )),
            (Some(at), None) => {
                let at = parse_timestamp("voucher_expires_at", at)?;
                if starts_at.is_some_and(|starts_at| at <= starts_at) {
                    return Err(Invalid::one(
                        "voucher_expires_at",
                        "must be after starts_at",
                    ));
                }
                Ok(VoucherExpiry::At(at))
            }
            (None, Some(valid_for)) => parse_validity(valid_for).map(VoucherExpiry::AfterIssue),
        }
    }

    fn code_source(&self, supply: Supply) -> Result<CodeSource, Invalid> {
        match (&self.code_pattern, self.codes_upload) {
            (Some(_), true) => Err(Invalid::one("codes", "give a pattern or upload, not both")),
            (None, true) if self.codes_on_claim => Err(Invalid::one(
                "codes.on_claim",
                "uploaded codes exist before their claims; only generated codes are made on claim",
            )),
            (None, true) if supply == Supply::Unlimited => Err(Invalid::one(
                "codes.upload",
                "an unlimited supply needs generated codes",
            )),
            (None, true) => Ok(CodeSource::Upload),
            (pattern, false) => {
                let pattern =
                    CodePattern::parse(pattern.as_deref().unwrap_or(CODE_PATTERN_DEFAULT))?;
                pattern.check_space(supply.limit())?;
                Ok(if self.codes_on_claim {
                    CodeSource::OnClaim(pattern)
                } else {
                    CodeSource::Pattern(pattern)
                })
            }
        }
    }
}

/// Control characters other than line breaks and tabs (NUL above all)
/// have no place in a text shown to people, and break what stores and
/// prints it.
fn has_control(text: &str) -> bool {
    text.chars()
        .any(|character| character.is_control() && !matches!(character, '\n' | '\r' | '\t'))
}

fn required_text(field: &str, text: Option<&str>, length_max: usize) -> Result<String, Invalid> {
    match text.map(str::trim) {
        None | Some("") => Err(Invalid::one(field, "is required")),
        Some(text) if text.chars().count() > length_max => Err(Invalid::one(
            field,
            format!("must be at most {length_max} characters"),
        )),
        Some(text) if has_control(text) => {
            Err(Invalid::one(field, "must not hold control characters"))
        }
        Some(text) => Ok(text.to_owned()),
    }
}

fn optional_text(field: &str, text: &Option<String>, length_max: usize) -> Result<String, Invalid> {
    match text {
        Some(text) if text.chars().count() > length_max => Err(Invalid::one(
            field,
            format!("must be at most {length_max} characters"),
        )),
        Some(text) if has_control(text) => {
            Err(Invalid::one(field, "must not hold control characters"))
        }
        Some(text) => Ok(text.clone()),
        None => Ok(String::new()),
    }
}

fn parse_supply(supply: Option<Option<i64>>) -> Result<Supply, Invalid> {
    match supply {
        None => Err(Invalid::one(
            "supply",
            "is required (null for an unlimited supply)",
        )),
        Some(None) => Ok(Supply::Unlimited),
        Some(Some(supply)) if (1..=i64::from(SUPPLY_MAX)).contains(&supply) => {
            Ok(Supply::Limited(supply as u32))
        }
        Some(Some(_)) => Err(Invalid::one(
            "supply",
            format!("must be between 1 and {SUPPLY_MAX}, or null for unlimited"),
        )),
    }
}

fn parse_tiers(tiers: &[(i64, i64)], supply: Supply) -> Result<Tiers, Invalid> {
    let mut collector = Collector::default();
    let mut parsed = Vec::with_capacity(tiers.len());
    for (index, &(until_rank, discount_percent)) in tiers.iter().enumerate() {
        let until_rank = u32::try_from(until_rank).ok().filter(|rank| *rank > 0);
        let discount_percent = u8::try_from(discount_percent)
            .ok()
            .filter(|percent| *percent <= 100);
        match (until_rank, discount_percent) {
            (Some(until_rank), Some(discount_percent)) => parsed.push(Tier {
                until_rank,
                discount_percent,
            }),
            (None, _) => collector.reject(
                format!("tiers[{index}].until_rank"),
                "must be a positive rank",
            ),
            (_, None) => collector.reject(
                format!("tiers[{index}].discount_percent"),
                "must be between 0 and 100",
            ),
        }
    }
    if !collector.is_clean() {
        return collector.finish(Tiers::default);
    }
    Tiers::new(parsed, supply)
}

fn bounded(
    field: &str,
    value: Option<i64>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Invalid> {
    match value.map(u32::try_from) {
        None => Ok(default),
        Some(Ok(value)) if range.contains(&value) => Ok(value),
        Some(_) => Err(Invalid::one(
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        )),
    }
}

fn optional_timestamp(field: &str, text: &Option<String>) -> Result<Option<Timestamp>, Invalid> {
    text.as_deref()
        .map(|text| parse_timestamp(field, text))
        .transpose()
}

/// Parses an RFC 3339 timestamp with an explicit offset. A well-formed
/// time past the last instant the engine can hold (9999-12-30T22:00:00Z,
/// where "9999-12-31T23:59:59Z" meaning "never" lands) is refused with
/// that bound named, not as malformed.
///
/// Campaign times are whole milliseconds, as both stores keep them, and a
/// finer time is cut to its millisecond here: otherwise the node that took
/// the campaign would hold one instant in memory and every node reading
/// it back another, and `ends_at` a microsecond after `starts_at` would
/// pass validation and be stored equal to it.
pub fn parse_timestamp(field: &str, text: &str) -> Result<Timestamp, Invalid> {
    let parsed = text.parse::<Timestamp>();
    let to_the_millisecond = |timestamp: Timestamp| {
        Timestamp::from_millisecond(timestamp.as_millisecond()).unwrap_or(timestamp)
    };
    parsed.map(to_the_millisecond).map_err(|_| {
        let well_formed = jiff::fmt::temporal::DateTimeParser::new()
            .parse_pieces(text)
            .is_ok_and(|pieces| pieces.offset().is_some() && pieces.time().is_some());
        if well_formed {
            Invalid::one(
                field,
                format!(
                    "must be between {} and {}",
                    whole_second(Timestamp::MIN.as_second() + 1),
                    whole_second(Timestamp::MAX.as_second()),
                ),
            )
        } else {
            Invalid::one(
                field,
                "must be an RFC 3339 time with an offset, e.g. 2026-12-01T12:00:00Z",
            )
        }
    })
}

fn whole_second(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("a second inside jiff's range")
}

/// Parses how long a voucher stays valid after issue: an ISO 8601 duration
/// (`P30D`, `PT12H`) or jiff's friendly form (`30 days`), days being 24 hours.
/// It must come to whole seconds: the API shows it as `PT{seconds}S`, so
/// `PT0.5S` would be shown as `PT0S` and could not be sent back.
fn parse_validity(text: &str) -> Result<SignedDuration, Invalid> {
    let invalid = || {
        Invalid::one(
            "voucher_valid_for",
            "must be a positive duration in days, hours, minutes or whole seconds, e.g. P30D",
        )
    };
    let span: Span = text.parse().map_err(|_| invalid())?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| invalid())?;
    if duration.is_positive() && duration.subsec_nanos() == 0 {
        Ok(duration)
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_past_the_last_instant_is_refused_with_the_bound_named() {
        let far = parse_timestamp("ends_at", "9999-12-31T23:59:59Z").unwrap_err();
        let message = format!("{far:?}");
        assert!(message.contains("9999-12-30T22:00:00Z"), "{message}");
        let malformed = parse_timestamp("ends_at", "2026-12-01 noon").unwrap_err();
        assert!(format!("{malformed:?}").contains("RFC 3339"));
        let last = parse_timestamp("ends_at", "9999-12-30T22:00:00Z").unwrap();
        assert_eq!(last.as_second(), Timestamp::MAX.as_second());
        assert!(parse_timestamp("ends_at", "2026-12-01T19:00:00+07:00").is_ok());
    }

    /// Caught by the json_bodies fuzz target: a time finer than the
    /// stores' millisecond was held in memory as given and stored cut.
    #[test]
    fn times_are_kept_to_the_millisecond() {
        let cut = parse_timestamp("starts_at", "2026-12-01T12:00:00.2501999Z").unwrap();
        assert_eq!(cut, "2026-12-01T12:00:00.250Z".parse().unwrap());
        check_refused(
            CampaignDraft {
                starts_at: Some("2026-12-01T12:00:00.0001Z".into()),
                ends_at: Some("2026-12-01T12:00:00.0009Z".into()),
                ..hot_deal()
            },
            &["ends_at"],
        );
    }

    fn hot_deal() -> CampaignDraft {
        CampaignDraft {
            name: Some("LINE Hot Deal".into()),
            kind: Some("sale".into()),
            supply: Some(Some(20_000)),
            starts_at: Some("2026-12-01T12:00:00Z".into()),
            ends_at: Some("2026-12-01T18:00:00Z".into()),
            voucher_expires_at: Some("2027-03-01T00:00:00Z".into()),
            price: Some((150_000, "THB".into())),
            tiers: vec![(1_000, 90), (10_000, 70), (20_000, 50)],
            code_pattern: Some("HOT-####-####".into()),
            ..CampaignDraft::default()
        }
    }

    /// Asserts that `draft` is refused and that exactly `fields` are blamed.
    fn check_refused(draft: CampaignDraft, fields: &[&str]) {
        let invalid = draft.validate().expect_err("should be refused");
        let mut blamed: Vec<&str> = invalid
            .errors
            .iter()
            .map(|error| error.field.as_str())
            .collect();
        blamed.sort_unstable();
        let mut expected = fields.to_vec();
        expected.sort_unstable();
        assert_eq!(blamed, expected, "{invalid}");
    }

    #[test]
    fn the_hot_deal_validates_with_its_tiers_and_defaults() {
        let spec = hot_deal().validate().unwrap();
        assert_eq!(spec.supply, Supply::Limited(20_000));
        assert_eq!(spec.per_user_limit, 1);
        assert_eq!(spec.redemptions_max, 1);
        assert_eq!(spec.reservation_ttl, SignedDuration::from_secs(600));
        let prices: Vec<(u8, i64)> = [1, 1_000, 1_001, 10_000, 10_001, 20_000]
            .into_iter()
            .map(|rank| {
                let offer = spec.offer(rank);
                (offer.discount_percent, offer.price.unwrap().amount)
            })
            .collect();
        assert_eq!(
            prices,
            [
                (90, 15_000),
                (90, 15_000),
                (70, 45_000),
                (70, 45_000),
                (50, 75_000),
                (50, 75_000)
            ]
        );
    }

    #[test]
    fn only_name_kind_and_supply_are_required() {
        let minimal = CampaignDraft {
            name: Some("Free coffee".into()),
            kind: Some("coupon".into()),
            supply: Some(Some(25)),
            ..CampaignDraft::default()
        };
        let spec = minimal.validate().unwrap();
        assert_eq!(spec.code_pattern().unwrap().as_str(), CODE_PATTERN_DEFAULT);
        check_refused(CampaignDraft::default(), &["name", "kind", "supply"]);
    }

    #[test]
    fn bad_supplies_are_refused() {
        for supply in [0, -5, i64::from(SUPPLY_MAX) + 1] {
            check_refused(
                CampaignDraft {
                    supply: Some(Some(supply)),
                    tiers: vec![],
                    ..hot_deal()
                },
                &["supply"],
            );
        }
        let unlimited = CampaignDraft {
            supply: Some(None),
            tiers: vec![(100, 50)],
            code_pattern: None,
            ..hot_deal()
        };
        assert_eq!(unlimited.validate().unwrap().supply, Supply::Unlimited);
    }

    #[test]
    fn tiers_must_increase_stay_within_supply_and_be_percentages() {
        let with_tiers = |tiers: Vec<(i64, i64)>| CampaignDraft {
            tiers,
            ..hot_deal()
        };
        check_refused(
            with_tiers(vec![(10_000, 70), (1_000, 90)]),
            &["tiers[1].until_rank"],
        );
        check_refused(
            with_tiers(vec![(1_000, 90), (1_000, 70)]),
            &["tiers[1].until_rank"],
        );
        check_refused(with_tiers(vec![(30_000, 50)]), &["tiers[0].until_rank"]);
        check_refused(with_tiers(vec![(0, 50)]), &["tiers[0].until_rank"]);
        check_refused(with_tiers(vec![(100, 101)]), &["tiers[0].discount_percent"]);
        check_refused(with_tiers(vec![(100, -1)]), &["tiers[0].discount_percent"]);
    }

    #[test]
    fn cross_field_rules_are_enforced() {
        check_refused(
            CampaignDraft {
                ends_at: Some("2026-12-01T11:00:00Z".into()),
                ..hot_deal()
            },
            &["ends_at"],
        );
        check_refused(
            CampaignDraft {
                price: None,
                ..hot_deal()
            },
            &["price"],
        );
        check_refused(
            CampaignDraft {
                voucher_valid_for: Some("P30D".into()),
                ..hot_deal()
            },
            &["voucher_valid_for"],
        );
        check_refused(
            CampaignDraft {
                trigger: Some("first_login".into()),
                per_user_limit: Some(2),
                ..hot_deal()
            },
            &["trigger", "per_user_limit"],
        );
        check_refused(
            CampaignDraft {
                code_pattern: Some("HOT-###".into()),
                ..hot_deal()
            },
            &["codes.pattern"],
        );
        check_refused(
            CampaignDraft {
                starts_at: Some("tomorrow".into()),
                price: Some((-1, "thb".into())),
                ..hot_deal()
            },
            &["starts_at", "price.currency"],
        );
    }

    #[test]
    fn validity_after_issue_accepts_iso_and_friendly_durations() {
        for (text, seconds) in [
            ("P30D", 30 * 86_400),
            ("PT12H", 12 * 3_600),
            ("2 days", 2 * 86_400),
            ("PT1.5H", 5_400),
        ] {
            let draft = CampaignDraft {
                voucher_expires_at: None,
                voucher_valid_for: Some(text.into()),
                ..hot_deal()
            };
            let spec = draft.validate().unwrap();
            let issued_at = Timestamp::from_second(0).unwrap();
            assert_eq!(
                spec.voucher_expires_at(issued_at),
                Some(Timestamp::from_second(seconds).unwrap()),
                "{text}"
            );
        }
        // Caught by the json_bodies fuzz target: "PT0.5S" was taken, shown
        // as "PT0S", and refused when sent back.
        for bad in ["P1M", "-P1D", "PT0S", "soon", "PT0.5S", "PT1.000001S"] {
            let draft = CampaignDraft {
                voucher_expires_at: None,
                voucher_valid_for: Some(bad.into()),
                ..hot_deal()
            };
            assert!(draft.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn claimability_follows_lifecycle_window_and_memory_of_sold_out() {
        let spec = hot_deal().validate().unwrap();
        let before: Timestamp = "2026-12-01T11:59:59Z".parse().unwrap();
        let during: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let after: Timestamp = "2026-12-01T18:00:00Z".parse().unwrap();
        assert_eq!(spec.claimable(Lifecycle::Live, false, during), Ok(()));
        assert_eq!(
            spec.claimable(Lifecycle::Live, false, before),
            Err(ClaimRefusal::NotStarted)
        );
        assert_eq!(
            spec.claimable(Lifecycle::Live, false, after),
            Err(ClaimRefusal::Ended)
        );
        assert_eq!(
            spec.claimable(Lifecycle::Draft, false, during),
            Err(ClaimRefusal::NotStarted)
        );
        assert_eq!(
            spec.claimable(Lifecycle::Paused, false, during),
            Err(ClaimRefusal::Paused)
        );
        assert_eq!(
            spec.claimable(Lifecycle::Paused, false, after),
            Err(ClaimRefusal::Ended)
        );
        assert_eq!(
            spec.claimable(Lifecycle::Live, true, during),
            Err(ClaimRefusal::SoldOut)
        );
    }

    #[test]
    fn a_sale_reserves_and_a_coupon_issues() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let sale = hot_deal().validate().unwrap();
        assert_eq!(
            sale.hold(now),
            Hold::Reserve {
                until: "2026-12-01T12:10:00Z".parse().unwrap()
            }
        );
        let coupon = CampaignDraft {
            kind: Some("coupon".into()),
            ..hot_deal()
        }
        .validate()
        .unwrap();
        assert_eq!(
            coupon.hold(now),
            Hold::Issue {
                expires_at: Some("2027-03-01T00:00:00Z".parse().unwrap())
            }
        );
    }
}
