//! JSON request bodies, parsed by `extract::parse_json` as every handler
//! does, into each body type the API takes, then validated by the core as
//! its handler would: a campaign into a `CampaignSpec`, codes into
//! `VoucherCode`s, a user id into a `UserId`, a checkout into an `Email` and
//! a `Card`.
//!
//! Holds: nothing panics, and a body that fails is a 400 or a 422; checking
//! the same body twice gives the same answer; an accepted campaign keeps
//! every documented bound; and an accepted campaign, shown as the API shows
//! it (`CampaignBody`) and sent back as a new campaign, is accepted as the
//! same campaign.

#![no_main]

use axum::http::StatusCode;
use libfuzzer_sys::fuzz_target;
use voucherd_core::Timestamp;
use voucherd_core::campaign::{
    self, CampaignKind, CampaignSpec, CodeSource, Lifecycle, Supply, Trigger, VoucherExpiry,
};
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::UserId;
use voucherd_core::money::Money;
use voucherd_core::payment::{Card, Email};
use voucherd_engine::campaigns::CampaignView;
use voucherd_engine::model::CampaignRecord;
use voucherd_http::extract::parse_json;
use voucherd_http::problem::Problem;
use voucherd_http::wire::{AddCodesBody, CampaignBody, CheckoutBody, CreateCampaignBody, UserBody};

/// 2026-12-01T12:00:00Z, when cards are checked for expiry.
const NOW: i64 = 1_796_126_400;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).expect("a valid time")
}

fuzz_target!(|bytes: &[u8]| {
    campaign(bytes);
    codes(bytes);
    user(bytes);
    checkout(bytes);
});

/// Parses `bytes` as `T`; a refusal must be the client's fault.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match parse_json::<T>(bytes) {
        Ok(body) => Some(body),
        Err(problem) => {
            check_refusal(&problem);
            None
        }
    }
}

fn check_refusal(problem: &Problem) {
    assert!(
        matches!(
            problem.status(),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
        ),
        "{problem:?}"
    );
}

fn campaign(bytes: &[u8]) {
    let Some(body) = parse::<CreateCampaignBody>(bytes) else {
        return;
    };
    let draft = body.into_draft();
    let validated = draft.validate();
    assert_eq!(validated, draft.validate(), "validation is deterministic");
    let Ok(spec) = validated else {
        return;
    };
    check_bounds(&spec);
    for at in [Timestamp::MIN, now(), Timestamp::MAX] {
        let _ = spec.hold(at);
        let _ = spec.claimable(Lifecycle::Live, false, at);
    }
    let shown = shown(&spec);
    let sent_back = parse_json::<CreateCampaignBody>(&shown)
        .unwrap_or_else(|problem| panic!("{}: {problem:?}", String::from_utf8_lossy(&shown)));
    assert_eq!(
        sent_back.into_draft().validate(),
        Ok(spec),
        "shown as {}",
        String::from_utf8_lossy(&shown)
    );
}

/// Every bound `campaign.rs` documents, checked on what it accepted.
fn check_bounds(spec: &CampaignSpec) {
    if let Supply::Limited(supply) = spec.supply {
        assert!((1..=campaign::SUPPLY_MAX).contains(&supply), "{spec:?}");
    }
    let name_length = spec.name.chars().count();
    assert!((1..=campaign::NAME_LENGTH_MAX).contains(&name_length));
    assert_eq!(spec.name, spec.name.trim());
    assert!(spec.message.chars().count() <= campaign::MESSAGE_LENGTH_MAX);
    assert!(spec.description.chars().count() <= campaign::DESCRIPTION_LENGTH_MAX);
    assert!(spec.terms.chars().count() <= campaign::TERMS_LENGTH_MAX);
    for text in [&spec.name, &spec.message, &spec.description, &spec.terms] {
        assert!(
            !text
                .chars()
                .any(|character| character.is_control() && !"\n\r\t".contains(character)),
            "{text:?}"
        );
    }
    let tiers = spec.tiers.as_slice();
    assert!(tiers.len() <= campaign::TIERS_MAX);
    let mut previous_until = 0;
    for tier in tiers {
        assert!(tier.until_rank > previous_until, "{tiers:?}");
        assert!(
            spec.supply
                .limit()
                .is_none_or(|supply| tier.until_rank <= supply)
        );
        assert!(tier.discount_percent <= 100);
        previous_until = tier.until_rank;
    }
    assert!((1..=campaign::PER_USER_LIMIT_MAX).contains(&spec.per_user_limit));
    assert!((1..=campaign::REDEMPTIONS_MAX_MAX).contains(&spec.redemptions_max));
    let ttl_seconds = i64::from(campaign::TTL_SECONDS_MIN)..=i64::from(campaign::TTL_SECONDS_MAX);
    for ttl in [spec.reservation_ttl, spec.lock_ttl] {
        assert!(ttl_seconds.contains(&ttl.as_secs()) && ttl.subsec_nanos() == 0);
    }
    if let (Some(starts_at), Some(ends_at)) = (spec.starts_at, spec.ends_at) {
        assert!(starts_at < ends_at);
    }
    let mut times = vec![spec.starts_at, spec.ends_at];
    match spec.voucher_expiry {
        VoucherExpiry::Never => {}
        VoucherExpiry::At(at) => {
            assert!(spec.starts_at.is_none_or(|starts_at| starts_at < at));
            times.push(Some(at));
        }
        VoucherExpiry::AfterIssue(valid_for) => {
            assert!(valid_for.is_positive() && valid_for.subsec_nanos() == 0);
        }
    }
    // Both stores keep times to the millisecond: a finer time would be one
    // thing in the memory of the node that took it and another once read
    // back.
    for at in times.into_iter().flatten() {
        assert_eq!(at.subsec_nanosecond() % 1_000_000, 0, "{at:?} in {spec:?}");
    }
    if spec.kind == CampaignKind::Sale {
        assert!(spec.price.is_some(), "a sale without a price");
    }
    if let Some(price) = spec.price {
        assert!((0..=Money::AMOUNT_MAX).contains(&price.amount));
        for rank in [
            1,
            previous_until,
            previous_until.saturating_add(1),
            u32::MAX,
        ] {
            let offered = spec.offer(rank).price.expect("a priced campaign");
            assert!((0..=price.amount).contains(&offered.amount));
        }
    }
    if spec.trigger == Trigger::FirstLogin {
        assert_eq!(spec.kind, CampaignKind::Coupon);
        assert_eq!(spec.per_user_limit, 1);
    }
    match &spec.codes {
        CodeSource::Pattern(pattern) | CodeSource::OnClaim(pattern) => {
            assert!(pattern.check_space(spec.supply.limit()).is_ok())
        }
        CodeSource::Upload => assert!(spec.supply.limit().is_some(), "an unlimited upload"),
    }
}

/// The campaign as `GET /v1/campaigns/{id}` shows a new draft, less the
/// fields that only the server sets, as JSON a client could send back.
fn shown(spec: &CampaignSpec) -> Vec<u8> {
    let created_at = now();
    let view = CampaignView {
        record: CampaignRecord {
            id: "0190f5c4-8d2e-7c3a-9b1e-2f4a5b6c7d8f"
                .parse()
                .expect("a valid uuid"),
            tenant_id: "0190f5c4-8d2e-7c3a-9b1e-2f4a5b6c7d8e"
                .parse()
                .expect("a valid uuid"),
            spec: spec.clone(),
            lifecycle: Lifecycle::Draft,
            voucher_count: 0,
            created_at,
            published_at: None,
        },
        lifecycle: Lifecycle::Draft,
        published_at: None,
        voucher_count: 0,
        remaining: spec.supply.limit().map(u64::from),
        publishing: false,
        publish_failure: None,
    };
    let mut shown =
        serde_json::to_value(CampaignBody::new(&view, created_at)).expect("a body serialises");
    let fields = shown.as_object_mut().expect("a campaign is an object");
    for only_shown in [
        "id",
        "state",
        "sold_out",
        "remaining",
        "current_offer",
        "created_at",
        "published_at",
    ] {
        fields.remove(only_shown);
    }
    if let Some(codes) = fields
        .get_mut("codes")
        .and_then(|codes| codes.as_object_mut())
    {
        for only_shown in ["count", "publishing", "publish_failure"] {
            codes.remove(only_shown);
        }
    }
    serde_json::to_vec(&shown).expect("JSON serialises")
}

fn codes(bytes: &[u8]) {
    let Some(body) = parse::<AddCodesBody>(bytes) else {
        return;
    };
    for text in &body.codes {
        let Ok(code) = VoucherCode::parse(text) else {
            continue;
        };
        assert!((1..=VoucherCode::LENGTH_MAX).contains(&code.as_str().len()));
        assert!(code.as_str().bytes().all(|byte| byte.is_ascii_graphic()));
        assert_eq!(VoucherCode::parse(code.as_str()).as_ref(), Ok(&code));
    }
}

fn user(bytes: &[u8]) {
    let Some(body) = parse::<UserBody>(bytes) else {
        return;
    };
    if let Some(Ok(user_id)) = body.user_id.as_deref().map(UserId::parse) {
        assert!((1..=UserId::LENGTH_MAX).contains(&user_id.as_str().len()));
        assert!(!user_id.as_str().chars().any(char::is_control));
    }
}

fn checkout(bytes: &[u8]) {
    let Some(body) = parse::<CheckoutBody>(bytes) else {
        return;
    };
    if let Ok(email) = Email::parse(&body.email) {
        assert_eq!(email.as_str(), body.email.trim());
        assert_eq!(email.as_str().matches('@').count(), 1);
    }
    let draft = body.card.draft();
    let card = Card::parse(&draft, now());
    assert_eq!(
        card,
        Card::parse(&draft, now()),
        "card checks are deterministic"
    );
    let Ok(card) = card else {
        return;
    };
    let number = card.number();
    assert!((12..=19).contains(&number.len()));
    assert!(number.bytes().all(|byte| byte.is_ascii_digit()));
    assert!(number.ends_with(card.last_four()) && card.last_four().len() == 4);
    assert!((1..=12).contains(&card.exp_month));
    assert!((2000..=2100).contains(&card.exp_year));
    assert!(
        !format!("{card:?}").contains(number),
        "a card's Debug shows its number"
    );
}
