//! Every behaviour of the `Store` trait, written once. A backend runs the
//! whole suite with `conformance_suite!(MakeFixture)`, where the fixture has
//! `store()`; cases make their own tenants, so they may share a database.

use std::sync::Arc;

use voucherd_core::campaign::{CampaignDraft, Hold, Lifecycle};
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, OrderId, ReservationId, TenantId, UserId};
use voucherd_core::money::{Currency, Money};
use voucherd_core::voucher::{VoucherRefusal, VoucherState};
use voucherd_core::{SignedDuration, TimeZone, Timestamp};
use voucherd_store::model::{
    AddCodesOutcome, AttemptKind, AttemptOutcome, AttemptResult, Available, CampaignRecord,
    CampaignState, Checkout, CheckoutOutcome, ClaimOutcome, ClaimRequest, CodesLease,
    CommitOutcome, IdempotencyScope, LifecycleOutcome, OrderRecord, OrderStatus, PaymentCounts,
    PaymentStep, PaymentTask, ReleaseOutcome, Resolution, StageOutcome, StoredResponse, Tenant,
    VoucherAction, VoucherOutcome, VoucherRecord, VoucherTarget,
};
use voucherd_store::{OsEntropy, Store, StoreError};

/// Generates one `#[tokio::test]` per conformance case for a backend.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::conformance_suite!(@cases $fixture;
            tenants_and_campaigns_round_trip,
            accounts_are_unique_by_tenant_and_email,
            tenant_keys_rotate_once_and_public_keys_replace,
            claims_take_the_lowest_free_rank_first_come_first_served,
            a_user_at_their_limit_gets_their_latest_voucher_back,
            the_daily_limit_spans_the_group_and_resets_the_next_day,
            a_sale_claim_reserves,
            unlimited_campaigns_mint_unique_codes,
            codes_made_on_claim_stop_at_the_supply_between_concurrent_batches,
            codes_are_added_all_or_nothing_and_duplicates_are_reported,
            staged_codes_count_only_when_committed_and_a_lapsed_upload_is_cleared,
            publishing_needs_the_whole_supply_and_lifecycles_change_conditionally,
            lock_unlock_and_redeem_follow_the_voucher_rules,
            locks_expire_and_can_be_taken_again,
            a_customer_acts_only_on_their_own_vouchers,
            the_schema_refuses_what_a_buggy_engine_might_ask,
            responses_are_kept_first_writer_wins_and_forgotten,
            counts_by_state_rank_range_and_second,
            listings_page_by_rank_and_user,
            nodes_can_follow_campaign_states_and_availability,
            checkout_opens_an_order_and_queues_its_payment,
            a_paid_order_issues_its_voucher_once,
            a_declined_order_fails_and_the_reservation_can_be_paid_again,
            an_unknown_outcome_pins_the_payment_to_its_gateway,
            a_lease_that_runs_out_is_taken_again_and_its_call_marked_interrupted,
            a_lapsed_lease_nobody_took_again_still_finishes_its_call,
            reservations_expire_and_release_but_never_under_a_payment,
            checkout_refuses_what_it_cannot_pay_for,
            the_reference_model_agrees_on_random_histories
        );
    };
    (@cases $fixture:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture.await;
                $crate::conformance::$case(fixture.store()).await;
            }
        )+
    };
}

pub fn at(text: &str) -> Timestamp {
    text.parse().expect("a test timestamp")
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).expect("a test user id")
}

pub async fn new_tenant(store: &Arc<dyn Store>) -> TenantId {
    let id = TenantId::from_uuid(uuid::Uuid::new_v4());
    let tenant = Tenant {
        id,
        name: format!("conformance-{id}"),
        signing_key: vec![7; 32],
        time_zone: "UTC".into(),
        rate_limit_per_second: None,
        key_id: "k1".into(),
        retired_keys: Vec::new(),
        public_keys: Vec::new(),
        created_at: at("2026-11-01T00:00:00Z"),
    };
    store
        .insert_tenant(&tenant)
        .await
        .expect("inserting a tenant");
    tenant.id
}

pub fn coupon(supply: Option<i64>) -> CampaignDraft {
    CampaignDraft {
        name: Some("Conformance coupon".into()),
        kind: Some("coupon".into()),
        supply: Some(supply),
        ..CampaignDraft::default()
    }
}

/// Inserts a draft campaign without codes.
pub async fn draft_campaign(
    store: &Arc<dyn Store>,
    tenant_id: TenantId,
    draft: CampaignDraft,
) -> CampaignRecord {
    let campaign = CampaignRecord {
        id: CampaignId::from_uuid(uuid::Uuid::new_v4()),
        tenant_id,
        spec: draft.validate().expect("a valid test campaign"),
        lifecycle: Lifecycle::Draft,
        voucher_count: 0,
        created_at: at("2026-11-01T00:00:00Z"),
        published_at: None,
    };
    store
        .insert_campaign(&campaign)
        .await
        .expect("inserting a campaign");
    campaign
}

/// Inserts a campaign, generates its whole supply of codes (unless claims
/// make them) and publishes it.
pub async fn live_campaign(
    store: &Arc<dyn Store>,
    tenant_id: TenantId,
    draft: CampaignDraft,
) -> CampaignRecord {
    let campaign = draft_campaign(store, tenant_id, draft).await;
    if let Some(supply) = campaign.spec.supply.limit()
        && !campaign.spec.mints_on_claim()
    {
        let pattern = campaign
            .spec
            .code_pattern()
            .expect("a generated test campaign");
        let mut count = 0;
        while count < supply {
            let codes: Vec<VoucherCode> = (count..supply)
                .map(|_| pattern.generate(&mut OsEntropy))
                .collect();
            match store
                .add_codes(campaign.id, &codes, at(NOON))
                .await
                .expect("adding codes")
            {
                AddCodesOutcome::Added { voucher_count, .. } => count = voucher_count,
                other => panic!("adding codes: {other:?}"),
            }
        }
    }
    let published = store
        .change_lifecycle(
            campaign.id,
            Lifecycle::Draft,
            Lifecycle::Live,
            at("2026-11-01T00:00:00Z"),
        )
        .await
        .expect("publishing");
    assert_eq!(published, LifecycleOutcome::Changed);
    store
        .campaign(campaign.id)
        .await
        .expect("reading the campaign")
        .expect("the campaign exists")
}

pub fn claim(campaign: &CampaignRecord, name: &str, now: Timestamp) -> ClaimRequest {
    ClaimRequest::new(campaign, user(name), &TimeZone::UTC, now)
}

pub async fn claim_all(
    store: &Arc<dyn Store>,
    claims: Vec<ClaimRequest>,
    now: Timestamp,
) -> Vec<ClaimOutcome> {
    store
        .claim_batch(claims, now)
        .await
        .expect("a claim batch")
        .into_iter()
        .map(|outcome| outcome.expect("a claim"))
        .collect()
}

fn claimed(outcome: &ClaimOutcome) -> &VoucherRecord {
    match outcome {
        ClaimOutcome::Claimed(voucher) => voucher,
        other => panic!("expected a new voucher, got {other:?}"),
    }
}

fn target(voucher: &VoucherRecord) -> VoucherTarget {
    VoucherTarget {
        tenant_id: voucher.tenant_id,
        code: voucher.code.clone(),
        holder: None,
    }
}

pub const NOON: &str = "2026-12-01T12:00:00Z";

pub async fn tenant_keys_rotate_once_and_public_keys_replace(store: Arc<dyn Store>) {
    use voucherd_store::model::{KeyRotation, PublicKey};
    let tenant_id = new_tenant(&store).await;
    let find = async |store: &Arc<dyn Store>| {
        store
            .tenants()
            .await
            .unwrap()
            .into_iter()
            .find(|tenant| tenant.id == tenant_id)
            .unwrap()
    };
    let rotation = KeyRotation {
        tenant_id,
        replacing: "k1".into(),
        key_id: "k2".into(),
        signing_key: vec![8; 32],
        now: at("2026-11-02T00:00:00Z"),
    };
    assert!(store.rotate_tenant_key(&rotation).await.unwrap());
    assert!(
        !store.rotate_tenant_key(&rotation).await.unwrap(),
        "k1 is no longer current: a second rotation from it changes nothing"
    );
    let tenant = find(&store).await;
    assert_eq!(
        (tenant.key_id.as_str(), tenant.signing_key.clone()),
        ("k2", vec![8; 32])
    );
    assert_eq!(tenant.retired_keys.len(), 1);
    assert_eq!(tenant.retired_keys[0].key_id, "k1");
    assert_eq!(tenant.retired_keys[0].signing_key, vec![7; 32]);
    assert_eq!(
        tenant.retired_keys[0].retired_at,
        at("2026-11-02T00:00:00Z")
    );
    let keys = vec![
        PublicKey {
            key_id: "idp-a".into(),
            jwk: r#"{"kty":"OKP"}"#.into(),
        },
        PublicKey {
            key_id: "idp-b".into(),
            jwk: r#"{"kty":"EC"}"#.into(),
        },
    ];
    assert!(
        store
            .set_tenant_public_keys(tenant_id, &keys)
            .await
            .unwrap()
    );
    assert_eq!(find(&store).await.public_keys, keys);
    assert!(
        store
            .set_tenant_public_keys(tenant_id, &keys[1..])
            .await
            .unwrap()
    );
    assert_eq!(
        find(&store).await.public_keys,
        keys[1..].to_vec(),
        "replaced, not added"
    );
    assert!(
        store
            .set_tenant_rate_limit(tenant_id, Some(5))
            .await
            .unwrap()
    );
    assert_eq!(find(&store).await.rate_limit_per_second, Some(5));
    let unknown = TenantId::from_uuid(uuid::Uuid::new_v4());
    assert!(!store.set_tenant_public_keys(unknown, &keys).await.unwrap());
    assert!(!store.set_tenant_rate_limit(unknown, None).await.unwrap());
}

pub async fn accounts_are_unique_by_tenant_and_email(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let other_tenant = new_tenant(&store).await;
    let account = voucherd_store::model::Account {
        tenant_id,
        email: "buyer@example.com".into(),
        user_id: user("acct-1"),
        role: voucherd_store::model::AccountRole::Customer,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: at("2026-11-01T00:00:00Z"),
    };
    assert!(store.insert_account(&account).await.unwrap());
    let again = voucherd_store::model::Account {
        user_id: user("acct-2"),
        role: voucherd_store::model::AccountRole::Admin,
        ..account.clone()
    };
    assert!(
        !store.insert_account(&again).await.unwrap(),
        "an email is taken once in a tenant"
    );
    assert_eq!(
        store.account(tenant_id, "buyer@example.com").await.unwrap(),
        Some(account.clone()),
        "the first account stands unchanged"
    );
    assert_eq!(
        store
            .account(other_tenant, "buyer@example.com")
            .await
            .unwrap(),
        None
    );
    let elsewhere = voucherd_store::model::Account {
        tenant_id: other_tenant,
        ..account
    };
    assert!(
        store.insert_account(&elsewhere).await.unwrap(),
        "another tenant may have the same email"
    );
    assert_eq!(
        store
            .account(tenant_id, "nobody@example.com")
            .await
            .unwrap(),
        None
    );
}

pub async fn tenants_and_campaigns_round_trip(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let tenants = store.tenants().await.unwrap();
    let tenant = tenants
        .iter()
        .find(|tenant| tenant.id == tenant_id)
        .unwrap();
    assert_eq!(tenant.signing_key, vec![7; 32]);
    let draft = CampaignDraft {
        name: Some("LINE Hot Deal".into()),
        kind: Some("sale".into()),
        supply: Some(Some(20)),
        starts_at: Some("2026-12-01T12:00:00Z".into()),
        ends_at: Some("2026-12-01T18:00:00Z".into()),
        voucher_valid_for: Some("P30D".into()),
        price: Some((150_000, "THB".into())),
        tiers: vec![(2, 90), (10, 70), (20, 50)],
        daily_limit_group: Some("daily".into()),
        per_user_limit: Some(3),
        reservation_ttl_seconds: Some(120),
        lock_ttl_seconds: Some(60),
        redemptions_max: Some(4),
        code_pattern: Some("HOT-####-????".into()),
        message: Some("90% off".into()),
        description: Some("a description".into()),
        terms: Some("terms".into()),
        ..CampaignDraft::default()
    };
    let inserted = draft_campaign(&store, tenant_id, draft).await;
    let read = store.campaign(inserted.id).await.unwrap().unwrap();
    assert_eq!(read, inserted);
    let uploaded = draft_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            codes_upload: true,
            ..coupon(Some(3))
        },
    )
    .await;
    let all = store.campaigns().await.unwrap();
    assert!(all.contains(&inserted) && all.contains(&uploaded));
    assert!(
        store
            .campaign(CampaignId::from_uuid(uuid::Uuid::new_v4()))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn claims_take_the_lowest_free_rank_first_come_first_served(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, coupon(Some(5))).await;
    let now = at(NOON);
    let claims = (0..7)
        .map(|index| claim(&campaign, &format!("u{index}"), now))
        .collect();
    let outcomes = claim_all(&store, claims, now).await;
    for (index, outcome) in outcomes.iter().take(5).enumerate() {
        let voucher = claimed(outcome);
        assert_eq!(voucher.rank, index as u32 + 1, "first come, lowest rank");
        assert_eq!(voucher.user_id, Some(user(&format!("u{index}"))));
        assert_eq!(voucher.state, VoucherState::Issued);
        assert_eq!(voucher.issued_at, Some(now));
    }
    assert_eq!(
        outcomes[5..],
        [ClaimOutcome::SoldOut, ClaimOutcome::SoldOut]
    );
    let counts = store.campaign_counts(campaign.id, &[]).await.unwrap();
    assert_eq!((counts.states.issued, counts.states.available), (5, 0));
}

pub async fn a_user_at_their_limit_gets_their_latest_voucher_back(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            per_user_limit: Some(2),
            ..coupon(Some(10))
        },
    )
    .await;
    let now = at(NOON);
    let outcomes = claim_all(
        &store,
        vec![
            claim(&campaign, "alice", now),
            claim(&campaign, "alice", now),
            claim(&campaign, "bob", now),
            claim(&campaign, "alice", now),
        ],
        now,
    )
    .await;
    let (first, second) = (claimed(&outcomes[0]), claimed(&outcomes[1]));
    assert_eq!(
        (first.rank, second.rank, claimed(&outcomes[2]).rank),
        (1, 2, 3)
    );
    assert_eq!(outcomes[3], ClaimOutcome::AlreadyHeld(second.clone()));
    let later = claim_all(
        &store,
        vec![claim(&campaign, "alice", at("2026-12-01T13:00:00Z"))],
        now,
    )
    .await;
    assert_eq!(later, [ClaimOutcome::AlreadyHeld(second.clone())]);
    let held = store
        .vouchers_of_user(tenant_id, &user("alice"))
        .await
        .unwrap();
    assert_eq!(held.len(), 2);
}

pub async fn the_daily_limit_spans_the_group_and_resets_the_next_day(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let grouped = || CampaignDraft {
        daily_limit_group: Some("lunch".into()),
        ..coupon(Some(10))
    };
    let morning = live_campaign(&store, tenant_id, grouped()).await;
    let noon = live_campaign(&store, tenant_id, grouped()).await;
    let elsewhere = live_campaign(&store, tenant_id, coupon(Some(10))).await;
    let today = at(NOON);
    let outcomes = claim_all(
        &store,
        vec![
            claim(&morning, "carol", today),
            claim(&noon, "carol", today),
            claim(&elsewhere, "carol", today),
            claim(&morning, "carol", today),
        ],
        today,
    )
    .await;
    claimed(&outcomes[0]);
    assert_eq!(outcomes[1], ClaimOutcome::DailyLimitReached);
    claimed(&outcomes[2]);
    assert_eq!(
        outcomes[3],
        ClaimOutcome::AlreadyHeld(claimed(&outcomes[0]).clone())
    );
    let tomorrow = at("2026-12-02T00:00:00Z");
    let next_day = claim_all(&store, vec![claim(&noon, "carol", tomorrow)], tomorrow).await;
    assert_eq!(claimed(&next_day[0]).rank, 1);
    let counts = store.campaign_counts(noon.id, &[]).await.unwrap();
    assert_eq!(counts.states.issued, 1, "the refused claim changed nothing");
}

pub async fn a_sale_claim_reserves(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            kind: Some("sale".into()),
            price: Some((10_000, "EUR".into())),
            ..coupon(Some(3))
        },
    )
    .await;
    let now = at(NOON);
    let request = claim(&campaign, "dave", now);
    assert_eq!(
        request.hold,
        Hold::Reserve {
            until: at("2026-12-01T12:10:00Z")
        }
    );
    let outcomes = claim_all(&store, vec![request], now).await;
    let voucher = claimed(&outcomes[0]);
    assert_eq!(voucher.state, VoucherState::Reserved);
    assert_eq!(voucher.reserved_until, Some(at("2026-12-01T12:10:00Z")));
    assert!(
        voucher.reservation_id.is_some(),
        "each reservation has its own id"
    );
    assert_eq!(voucher.issued_at, None);
    // Reservation ids are time-ordered by the store's clock, not the
    // machine's, so that each lands at the end of its unique index.
    let first_id = *voucher.reservation_id.unwrap().as_uuid();
    let (seconds, _) = first_id.get_timestamp().expect("a v7 id").to_unix();
    assert_eq!(seconds, now.as_second() as u64, "{first_id}");
    let later = now + SignedDuration::from_secs(1);
    let next = claim_all(&store, vec![claim(&campaign, "erin", later)], later).await;
    let next_id = *claimed(&next[0]).reservation_id.unwrap().as_uuid();
    assert_eq!(next_id.get_version_num(), 7);
    assert!(first_id < next_id, "{first_id} then {next_id}");
    let redeemed = store
        .act_on_voucher(&target(voucher), VoucherAction::Redeem, now)
        .await
        .unwrap();
    assert_eq!(
        redeemed,
        VoucherOutcome::NotFound,
        "a reservation has no usable code yet"
    );
}

pub async fn unlimited_campaigns_mint_unique_codes(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            code_pattern: Some("FREE-????-????".into()),
            ..coupon(None)
        },
    )
    .await;
    let now = at(NOON);
    let claims = (0..50)
        .map(|index| claim(&campaign, &format!("u{index}"), now))
        .collect();
    let outcomes = claim_all(&store, claims, now).await;
    let mut ranks: Vec<u32> = outcomes
        .iter()
        .map(|outcome| claimed(outcome).rank)
        .collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=50).collect::<Vec<_>>());
    let mut codes: Vec<&str> = outcomes
        .iter()
        .map(|outcome| claimed(outcome).code.as_str())
        .collect();
    assert!(
        codes
            .iter()
            .all(|code| code.starts_with("FREE-") && code.len() == 14)
    );
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), 50);
    let record = store.campaign(campaign.id).await.unwrap().unwrap();
    assert_eq!(record.voucher_count, 50);
}

pub async fn codes_made_on_claim_stop_at_the_supply_between_concurrent_batches(
    store: Arc<dyn Store>,
) {
    const SUPPLY: u32 = 30;
    const BATCHES: usize = 4;
    const CLAIMS_PER_BATCH: usize = 12;
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            code_pattern: Some("ON-????-????".into()),
            codes_on_claim: true,
            ..coupon(Some(i64::from(SUPPLY)))
        },
    )
    .await;
    assert_eq!(campaign.voucher_count, 0, "a publish made no code");
    assert_eq!(campaign.lifecycle, Lifecycle::Live);
    let counts = store
        .campaign_counts(campaign.id, &[(1, 10), (25, 40)])
        .await
        .unwrap();
    assert_eq!(
        counts.states.available,
        u64::from(SUPPLY),
        "ranks not made are available"
    );
    assert_eq!(counts.by_rank_range[0].available, 10);
    assert_eq!(
        counts.by_rank_range[1].available, 6,
        "ranks 25..=30 of 25..=40"
    );
    assert_eq!(
        store.available_counts(&[campaign.id], 1_000).await.unwrap(),
        vec![(campaign.id, Available::Exactly(u64::from(SUPPLY)))]
    );

    // Batches at once, more claims than the supply: each batch mints what
    // room it finds, and no rank past the supply is made between them.
    let now = at(NOON);
    let batches = (0..BATCHES).map(|batch| {
        let store = store.clone();
        let claims: Vec<ClaimRequest> = (0..CLAIMS_PER_BATCH)
            .map(|index| claim(&campaign, &format!("b{batch}-u{index}"), now))
            .collect();
        tokio::spawn(async move { claim_all(&store, claims, now).await })
    });
    let mut outcomes = Vec::new();
    for batch in batches {
        outcomes.extend(batch.await.expect("a batch task"));
    }
    let made: Vec<&VoucherRecord> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            ClaimOutcome::Claimed(voucher) => Some(voucher),
            ClaimOutcome::SoldOut => None,
            other => panic!("a claim of a new user: {other:?}"),
        })
        .collect();
    assert_eq!(
        made.len(),
        SUPPLY as usize,
        "exactly the supply was claimed"
    );
    let mut ranks: Vec<u32> = made.iter().map(|voucher| voucher.rank).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=SUPPLY).collect::<Vec<_>>(), "each rank once");
    let mut codes: Vec<&str> = made.iter().map(|voucher| voucher.code.as_str()).collect();
    assert!(
        codes
            .iter()
            .all(|code| code.starts_with("ON-") && code.len() == 12)
    );
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), SUPPLY as usize, "each code once");

    let record = store.campaign(campaign.id).await.unwrap().unwrap();
    assert_eq!(record.voucher_count, SUPPLY);
    let counts = store.campaign_counts(campaign.id, &[]).await.unwrap();
    assert_eq!(counts.states.available, 0);
    assert_eq!(counts.states.issued, u64::from(SUPPLY));
    assert_eq!(
        store.available_counts(&[campaign.id], 1_000).await.unwrap(),
        vec![(campaign.id, Available::Exactly(0))]
    );
    // Sold out stays sold out, and a holder still gets their voucher.
    let late = claim_all(&store, vec![claim(&campaign, "late", now)], now).await;
    assert_eq!(late, vec![ClaimOutcome::SoldOut]);
    let again = claim_all(&store, vec![claim(&campaign, "b0-u0", now)], now).await;
    assert!(
        matches!(&again[0], ClaimOutcome::AlreadyHeld(voucher) if voucher.user_id == Some(user("b0-u0"))),
        "{again:?}"
    );
}

pub async fn codes_are_added_all_or_nothing_and_duplicates_are_reported(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let upload = || CampaignDraft {
        codes_upload: true,
        ..coupon(Some(4))
    };
    let first = draft_campaign(&store, tenant_id, upload()).await;
    let second = draft_campaign(&store, tenant_id, upload()).await;
    let codes = |texts: &[&str]| -> Vec<VoucherCode> {
        texts
            .iter()
            .map(|text| VoucherCode::parse(text).unwrap())
            .collect()
    };
    let added = store
        .add_codes(first.id, &codes(&["A1", "A2", "a1"]), at(NOON))
        .await
        .unwrap();
    assert_eq!(
        added,
        AddCodesOutcome::Added {
            added: 2,
            duplicates: codes(&["A1"]),
            voucher_count: 2
        }
    );
    let across = store
        .add_codes(second.id, &codes(&["A2", "B1"]), at(NOON))
        .await
        .unwrap();
    assert_eq!(
        across,
        AddCodesOutcome::Added {
            added: 1,
            duplicates: codes(&["A2"]),
            voucher_count: 1
        },
        "a code the tenant has in another campaign is a duplicate too"
    );
    let over = store
        .add_codes(first.id, &codes(&["A3", "A4", "A5"]), at(NOON))
        .await
        .unwrap();
    assert_eq!(
        over,
        AddCodesOutcome::OverSupply {
            room: 2,
            offered: 3
        }
    );
    assert_eq!(
        store
            .campaign(first.id)
            .await
            .unwrap()
            .unwrap()
            .voucher_count,
        2,
        "nothing added"
    );
    let filled = store
        .add_codes(second.id, &codes(&["B2", "B3", "B4", "A1"]), at(NOON))
        .await
        .unwrap();
    assert_eq!(
        filled,
        AddCodesOutcome::Added {
            added: 3,
            duplicates: codes(&["A1"]),
            voucher_count: 4
        },
        "a duplicate past the last free rank is a duplicate, not over the supply"
    );
    let unknown = CampaignId::from_uuid(uuid::Uuid::new_v4());
    assert_eq!(
        store
            .add_codes(unknown, &codes(&["Z"]), at(NOON))
            .await
            .unwrap(),
        AddCodesOutcome::NotFound
    );
    store
        .add_codes(first.id, &codes(&["A3", "A4"]), at(NOON))
        .await
        .unwrap();
    let now = at(NOON);
    store
        .change_lifecycle(first.id, Lifecycle::Draft, Lifecycle::Live, now)
        .await
        .unwrap();
    assert_eq!(
        store
            .add_codes(first.id, &codes(&["A9"]), at(NOON))
            .await
            .unwrap(),
        AddCodesOutcome::NotDraft
    );
    let page = store.vouchers_page(first.id, 0, 10).await.unwrap();
    let in_order: Vec<(u32, &str)> = page
        .iter()
        .map(|voucher| (voucher.rank, voucher.code.as_str()))
        .collect();
    assert_eq!(
        in_order,
        [(1, "A1"), (2, "A2"), (3, "A3"), (4, "A4")],
        "ranks follow upload order"
    );
}

pub async fn staged_codes_count_only_when_committed_and_a_lapsed_upload_is_cleared(
    store: Arc<dyn Store>,
) {
    let tenant_id = new_tenant(&store).await;
    let campaign = draft_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            codes_upload: true,
            ..coupon(Some(6))
        },
    )
    .await;
    let codes = |texts: &[&str]| -> Vec<VoucherCode> {
        texts
            .iter()
            .map(|text| VoucherCode::parse(text).unwrap())
            .collect()
    };
    let noon = at(NOON);
    let later = |seconds: i64| {
        noon.checked_add(SignedDuration::from_secs(seconds))
            .unwrap()
    };
    let lease = |id: u128, now: Timestamp| CodesLease {
        id: uuid::Uuid::from_u128(id),
        now,
        until: now.checked_add(SignedDuration::from_secs(30)).unwrap(),
        staged: 0,
    };
    let after = |lease: CodesLease, staged: u32| CodesLease { staged, ..lease };
    let first = lease(1, noon);
    assert_eq!(
        store
            .stage_codes(campaign.id, first, &codes(&["S1", "S2", "S1"]))
            .await
            .unwrap()
            .0,
        StageOutcome::Staged {
            added: 2,
            duplicates: codes(&["S1"]),
            staged: 2
        }
    );
    assert_eq!(
        store
            .stage_codes(campaign.id, after(first, 2), &codes(&["S2", "S3"]))
            .await
            .unwrap()
            .0,
        StageOutcome::Staged {
            added: 1,
            duplicates: codes(&["S2"]),
            staged: 3
        },
        "a code staged by an earlier slice is a duplicate"
    );
    // Staged is seen by nobody: not counted, not listed, not publishable.
    let unseen = |store: Arc<dyn Store>| async move {
        let record = store.campaign(campaign.id).await.unwrap().unwrap();
        let page = store.vouchers_page(campaign.id, 0, 10).await.unwrap();
        let counts = store.campaign_counts(campaign.id, &[]).await.unwrap();
        (record.voucher_count, page.len(), counts.states.total())
    };
    assert_eq!(unseen(store.clone()).await, (0, 0, 0));
    assert_eq!(
        store
            .stage_codes(campaign.id, lease(2, later(1)), &codes(&["T1"]))
            .await
            .unwrap()
            .0,
        StageOutcome::Busy,
        "another upload waits while the lease lasts"
    );
    assert_eq!(
        store
            .change_lifecycle(campaign.id, Lifecycle::Draft, Lifecycle::Live, later(1))
            .await
            .unwrap(),
        LifecycleOutcome::CodesMissing {
            voucher_count: 0,
            supply: 6
        }
    );
    assert_eq!(
        store
            .stage_codes(
                campaign.id,
                after(first, 3),
                &codes(&["S4", "S5", "S6", "S7"])
            )
            .await
            .unwrap()
            .0,
        StageOutcome::OverSupply {
            room: 6,
            offered: 7
        },
        "the supply bounds what one upload stages in all"
    );
    assert_eq!(
        store.commit_codes(campaign.id, first.id).await.unwrap(),
        CommitOutcome::Committed {
            added: 3,
            voucher_count: 3
        },
        "a refused slice staged nothing; the earlier ones commit"
    );
    assert_eq!(unseen(store.clone()).await, (3, 3, 3));
    assert_eq!(
        store.commit_codes(campaign.id, first.id).await.unwrap(),
        CommitOutcome::Lost,
        "a commit counts once"
    );

    // An upload that stops half-way (its node died) holds the campaign
    // until its lease runs out; the next one clears what it staged.
    let stopped = lease(3, later(2));
    let begun = store
        .stage_codes(campaign.id, stopped, &codes(&["U1", "U2"]))
        .await
        .unwrap()
        .0;
    assert!(matches!(begun, StageOutcome::Staged { staged: 2, .. }));
    let full = store
        .stage_codes(campaign.id, after(stopped, 2), &codes(&["U3"]))
        .await
        .unwrap()
        .0;
    assert!(matches!(full, StageOutcome::Staged { staged: 3, .. }));
    let next = lease(4, later(60));
    let mut cleaning = 0;
    let taken = loop {
        match store
            .stage_codes(campaign.id, next, &codes(&["U2", "V1"]))
            .await
            .unwrap()
            .0
        {
            StageOutcome::Cleaning => cleaning += 1,
            other => break other,
        }
    };
    assert_eq!(cleaning, 1, "the stopped upload's rows are removed first");
    assert_eq!(
        taken,
        StageOutcome::Staged {
            added: 2,
            duplicates: Vec::new(),
            staged: 2
        },
        "what the stopped upload staged was never the tenant's"
    );
    assert_eq!(
        store.commit_codes(campaign.id, stopped.id).await.unwrap(),
        CommitOutcome::Lost,
        "the stopped upload cannot commit after it was taken over"
    );
    assert_eq!(
        store
            .stage_codes(campaign.id, after(stopped, 3), &codes(&["U4"]))
            .await
            .unwrap()
            .0,
        StageOutcome::Busy,
        "nor stage while the new holder's lease lasts"
    );
    assert_eq!(
        store
            .stage_codes(
                campaign.id,
                CodesLease {
                    now: later(200),
                    ..after(stopped, 3)
                },
                &codes(&["U4"])
            )
            .await
            .unwrap()
            .0,
        StageOutcome::Lost,
        "nor take the campaign back half-way once that lease ran out too"
    );
    assert!(
        store
            .discard_codes(campaign.id, stopped.id, 10)
            .await
            .unwrap(),
        "nor remove the new holder's rows"
    );
    // Discarding removes what was staged, slice by slice, and frees it.
    let mut discards = 1;
    while !store.discard_codes(campaign.id, next.id, 1).await.unwrap() {
        discards += 1;
        assert!(discards <= 3, "two rows go one by one");
    }
    assert!(discards >= 2, "one row per discard");
    assert_eq!(unseen(store.clone()).await, (3, 3, 3));
    assert_eq!(
        store
            .add_codes(campaign.id, &codes(&["U1", "U2", "V1"]), later(61))
            .await
            .unwrap(),
        AddCodesOutcome::Added {
            added: 3,
            duplicates: Vec::new(),
            voucher_count: 6
        },
        "the campaign is free again, and the discarded codes are new"
    );
    let ranks: Vec<(u32, String)> = store
        .vouchers_page(campaign.id, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|voucher| (voucher.rank, voucher.code.as_str().to_owned()))
        .collect();
    let expected: Vec<(u32, String)> = ["S1", "S2", "S3", "U1", "U2", "V1"]
        .iter()
        .enumerate()
        .map(|(index, code)| (index as u32 + 1, (*code).to_owned()))
        .collect();
    assert_eq!(ranks, expected, "ranks 1..voucher_count, in order, no gaps");
    let empty = lease(5, later(62));
    assert!(matches!(
        store.stage_codes(campaign.id, empty, &[]).await.unwrap().0,
        StageOutcome::Staged { staged: 0, .. }
    ));
    assert_eq!(
        store
            .change_lifecycle(campaign.id, Lifecycle::Draft, Lifecycle::Live, later(62))
            .await
            .unwrap(),
        LifecycleOutcome::UploadUnderWay,
        "a campaign goes live only when no upload holds it, whatever its count"
    );
    assert_eq!(
        store.commit_codes(campaign.id, empty.id).await.unwrap(),
        CommitOutcome::Committed {
            added: 0,
            voucher_count: 6
        }
    );
    assert_eq!(
        store
            .change_lifecycle(campaign.id, Lifecycle::Draft, Lifecycle::Live, later(63))
            .await
            .unwrap(),
        LifecycleOutcome::Changed
    );
}

pub async fn publishing_needs_the_whole_supply_and_lifecycles_change_conditionally(
    store: Arc<dyn Store>,
) {
    let tenant_id = new_tenant(&store).await;
    let campaign = draft_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            codes_upload: true,
            ..coupon(Some(2))
        },
    )
    .await;
    let now = at(NOON);
    let publish = || store.change_lifecycle(campaign.id, Lifecycle::Draft, Lifecycle::Live, now);
    assert_eq!(
        publish().await.unwrap(),
        LifecycleOutcome::CodesMissing {
            voucher_count: 0,
            supply: 2
        }
    );
    store
        .add_codes(
            campaign.id,
            &[
                VoucherCode::parse("P1").unwrap(),
                VoucherCode::parse("P2").unwrap(),
            ],
            at(NOON),
        )
        .await
        .unwrap();
    assert_eq!(publish().await.unwrap(), LifecycleOutcome::Changed);
    assert_eq!(
        publish().await.unwrap(),
        LifecycleOutcome::WrongState(Lifecycle::Live)
    );
    let record = store.campaign(campaign.id).await.unwrap().unwrap();
    assert_eq!(
        (record.lifecycle, record.published_at),
        (Lifecycle::Live, Some(now))
    );
    let pause = store
        .change_lifecycle(campaign.id, Lifecycle::Live, Lifecycle::Paused, now)
        .await;
    assert_eq!(pause.unwrap(), LifecycleOutcome::Changed);
    let resume_twice = store
        .change_lifecycle(campaign.id, Lifecycle::Live, Lifecycle::Paused, now)
        .await;
    assert_eq!(
        resume_twice.unwrap(),
        LifecycleOutcome::WrongState(Lifecycle::Paused)
    );
    let unknown = CampaignId::from_uuid(uuid::Uuid::new_v4());
    let missing = store
        .change_lifecycle(unknown, Lifecycle::Live, Lifecycle::Paused, now)
        .await;
    assert_eq!(missing.unwrap(), LifecycleOutcome::NotFound);
}

pub async fn lock_unlock_and_redeem_follow_the_voucher_rules(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            redemptions_max: Some(2),
            voucher_expires_at: Some("2026-12-31T00:00:00Z".into()),
            lock_ttl_seconds: Some(60),
            ..coupon(Some(2))
        },
    )
    .await;
    let now = at(NOON);
    let voucher =
        claimed(&claim_all(&store, vec![claim(&campaign, "erin", now)], now).await[0]).clone();
    let act = |action, now| {
        let store = store.clone();
        let target = target(&voucher);
        async move { store.act_on_voucher(&target, action, now).await.unwrap() }
    };
    let lock = VoucherAction::Lock;
    let refused = |outcome: VoucherOutcome| match outcome {
        VoucherOutcome::Refused(refusal, _) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let done = |outcome: VoucherOutcome| match outcome {
        VoucherOutcome::Done(voucher) => voucher,
        other => panic!("expected a change, got {other:?}"),
    };
    assert_eq!(
        refused(act(VoucherAction::Redeem, now).await),
        VoucherRefusal::LockRequired
    );
    assert_eq!(
        refused(act(VoucherAction::Unlock, now).await),
        VoucherRefusal::NotLocked
    );
    let locked = done(act(lock, now).await);
    assert_eq!(
        (locked.state, locked.locked_until),
        (VoucherState::Locked, Some(at("2026-12-01T12:01:00Z")))
    );
    assert_eq!(refused(act(lock, now).await), VoucherRefusal::Locked);
    let unlocked = done(act(VoucherAction::Unlock, now).await);
    assert_eq!(
        (unlocked.state, unlocked.locked_until),
        (VoucherState::Issued, None)
    );
    done(act(lock, now).await);
    let once = done(act(VoucherAction::Redeem, now).await);
    assert_eq!((once.state, once.redemptions), (VoucherState::Issued, 1));
    done(act(lock, now).await);
    let twice = done(act(VoucherAction::Redeem, now).await);
    assert_eq!(
        (twice.state, twice.redemptions),
        (VoucherState::Redeemed, 2)
    );
    assert_eq!(
        refused(act(lock, now).await),
        VoucherRefusal::AlreadyRedeemed
    );
    assert_eq!(
        refused(act(VoucherAction::Redeem, now).await),
        VoucherRefusal::AlreadyRedeemed
    );

    let other =
        claimed(&claim_all(&store, vec![claim(&campaign, "frank", now)], now).await[0]).clone();
    let expired = store
        .act_on_voucher(&target(&other), lock, at("2026-12-31T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(refused(expired), VoucherRefusal::Expired);
    let unknown = VoucherTarget {
        code: VoucherCode::parse("NOPE-0000").unwrap(),
        ..target(&other)
    };
    assert_eq!(
        store.act_on_voucher(&unknown, lock, now).await.unwrap(),
        VoucherOutcome::NotFound
    );
    let elsewhere = VoucherTarget {
        tenant_id: new_tenant(&store).await,
        ..target(&other)
    };
    assert_eq!(
        store.act_on_voucher(&elsewhere, lock, now).await.unwrap(),
        VoucherOutcome::NotFound
    );
}

pub async fn locks_expire_and_can_be_taken_again(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(
        &store,
        tenant_id,
        CampaignDraft {
            lock_ttl_seconds: Some(600),
            ..coupon(Some(3))
        },
    )
    .await;
    let now = at(NOON);
    let outcomes = claim_all(
        &store,
        vec![claim(&campaign, "gina", now), claim(&campaign, "hal", now)],
        now,
    )
    .await;
    let lock = VoucherAction::Lock;
    for outcome in &outcomes {
        let locked = store
            .act_on_voucher(&target(claimed(outcome)), lock, now)
            .await
            .unwrap();
        assert!(matches!(locked, VoucherOutcome::Done(_)));
    }
    assert_eq!(
        store
            .expire_locks(at("2026-12-01T12:09:59Z"), 100)
            .await
            .unwrap(),
        0
    );
    let later = at("2026-12-01T12:10:00Z");
    let retaken = store
        .act_on_voucher(&target(claimed(&outcomes[0])), lock, later)
        .await
        .unwrap();
    assert!(
        matches!(retaken, VoucherOutcome::Done(_)),
        "a lock past its time can be taken again before the sweep"
    );
    assert_eq!(
        store.expire_locks(later, 100).await.unwrap(),
        1,
        "only the lock not retaken"
    );
    let counts = store.campaign_counts(campaign.id, &[]).await.unwrap();
    assert_eq!((counts.states.locked, counts.states.issued), (1, 1));
}

pub async fn a_customer_acts_only_on_their_own_vouchers(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, coupon(Some(2))).await;
    let now = at(NOON);
    let outcomes = claim_all(&store, vec![claim(&campaign, "ivy", now)], now).await;
    let voucher = claimed(&outcomes[0]);
    let as_other = VoucherTarget {
        holder: Some(user("jack")),
        ..target(voucher)
    };
    assert_eq!(
        store
            .act_on_voucher(&as_other, VoucherAction::Redeem, now)
            .await
            .unwrap(),
        VoucherOutcome::NotFound
    );
    let as_owner = VoucherTarget {
        holder: Some(user("ivy")),
        ..target(voucher)
    };
    let redeemed = store
        .act_on_voucher(&as_owner, VoucherAction::Redeem, now)
        .await
        .unwrap();
    assert!(
        matches!(redeemed, VoucherOutcome::Done(ref voucher) if voucher.state == VoucherState::Redeemed)
    );
}

pub async fn the_schema_refuses_what_a_buggy_engine_might_ask(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, coupon(Some(2))).await;
    let now = at(NOON);
    let mut over_limit = claim(&campaign, "kim", now);
    over_limit.per_user_limit = 5;
    let outcomes = store
        .claim_batch(
            vec![
                over_limit.clone(),
                over_limit.clone(),
                claim(&campaign, "lee", now),
            ],
            now,
        )
        .await
        .unwrap();
    assert!(matches!(outcomes[0], Ok(ClaimOutcome::Claimed(_))));
    assert!(
        matches!(outcomes[1], Err(StoreError::Constraint(_))),
        "{:?}",
        outcomes[1]
    );
    assert!(
        matches!(outcomes[2], Ok(ClaimOutcome::Claimed(ref voucher)) if voucher.rank == 2),
        "the batch went on"
    );
    // A claim that may mint, on a limited campaign with every rank made:
    // the store mints no rank past the row's supply (and the schema would
    // refuse one).
    let mut minting = claim(&campaign, "mo", now);
    minting.mint = campaign.spec.code_pattern().cloned();
    let outcomes = store.claim_batch(vec![minting], now).await.unwrap();
    assert!(
        matches!(outcomes[0], Ok(ClaimOutcome::SoldOut)),
        "no rank past the supply: {:?}",
        outcomes[0]
    );
    let counts = store.campaign_counts(campaign.id, &[]).await.unwrap();
    assert_eq!(counts.states.total(), 2);
    assert_eq!(
        store
            .vouchers_of_user(tenant_id, &user("kim"))
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn responses_are_kept_first_writer_wins_and_forgotten(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let scope = IdempotencyScope {
        tenant_id,
        principal: "service".into(),
        key: "key-1".into(),
    };
    assert_eq!(store.stored_response(&scope).await.unwrap(), None);
    let response = |status, body: &str| StoredResponse {
        fingerprint: vec![1, 2, 3],
        status,
        content_type: "application/json".into(),
        body: body.as_bytes().to_vec(),
        created_at: at(NOON),
    };
    let first = store
        .store_response(&scope, &response(201, "first"))
        .await
        .unwrap();
    assert_eq!(first, response(201, "first"));
    let second = store
        .store_response(&scope, &response(200, "second"))
        .await
        .unwrap();
    assert_eq!(second, response(201, "first"), "the first response stays");
    let other_principal = IdempotencyScope {
        principal: "customer:u1".into(),
        ..scope.clone()
    };
    assert_eq!(store.stored_response(&other_principal).await.unwrap(), None);
    assert_eq!(store.forget_responses(at(NOON), 100).await.unwrap(), 0);
    assert!(
        store
            .forget_responses(at("2026-12-02T12:00:00Z"), 100)
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(store.stored_response(&scope).await.unwrap(), None);
}

pub async fn counts_by_state_rank_range_and_second(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, coupon(Some(6))).await;
    let first_second = at(NOON);
    let next_second = at("2026-12-01T12:00:01Z");
    claim_all(
        &store,
        (0..3)
            .map(|index| claim(&campaign, &format!("a{index}"), first_second))
            .collect(),
        first_second,
    )
    .await;
    claim_all(
        &store,
        vec![claim(&campaign, "b", next_second)],
        next_second,
    )
    .await;
    let counts = store
        .campaign_counts(campaign.id, &[(1, 2), (3, 6)])
        .await
        .unwrap();
    assert_eq!((counts.states.issued, counts.states.available), (4, 2));
    assert_eq!(counts.by_rank_range[0].issued, 2);
    assert_eq!(
        (
            counts.by_rank_range[1].issued,
            counts.by_rank_range[1].available
        ),
        (2, 2)
    );
    let second = first_second.as_second();
    assert_eq!(counts.claims_per_second, [(second, 3), (second + 1, 1)]);
}

pub async fn listings_page_by_rank_and_user(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, coupon(Some(5))).await;
    let now = at(NOON);
    claim_all(
        &store,
        vec![claim(&campaign, "nia", now), claim(&campaign, "oz", now)],
        now,
    )
    .await;
    let page = store.vouchers_page(campaign.id, 1, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|voucher| voucher.rank).collect::<Vec<_>>(),
        [2, 3]
    );
    let mine = store
        .vouchers_of_user(tenant_id, &user("oz"))
        .await
        .unwrap();
    assert_eq!(
        mine.iter().map(|voucher| voucher.rank).collect::<Vec<_>>(),
        [2]
    );
    let elsewhere = store
        .vouchers_of_user(new_tenant(&store).await, &user("oz"))
        .await
        .unwrap();
    assert!(elsewhere.is_empty());
}

pub async fn the_reference_model_agrees_on_random_histories(store: Arc<dyn Store>) {
    crate::model::check_random_histories(store).await;
}

pub async fn nodes_can_follow_campaign_states_and_availability(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let live = live_campaign(&store, tenant_id, coupon(Some(3))).await;
    let draft = draft_campaign(&store, tenant_id, coupon(Some(2))).await;
    let now = at(NOON);
    claim_all(&store, vec![claim(&live, "pia", now)], now).await;
    let changes = store.campaign_changes(None).await.unwrap();
    let state_of = |states: &[CampaignState], id| {
        states
            .iter()
            .rev()
            .find(|state| state.id == id)
            .cloned()
            .expect("every campaign has a state")
    };
    let live_state = state_of(&changes.states, live.id);
    assert_eq!(
        (live_state.lifecycle, live_state.voucher_count),
        (Lifecycle::Live, 3)
    );
    assert_eq!(live_state.published_at, live.published_at);
    let draft_state = state_of(&changes.states, draft.id);
    assert_eq!(
        (draft_state.lifecycle, draft_state.voucher_count),
        (Lifecycle::Draft, 0)
    );
    let available = store
        .available_counts(&[live.id, draft.id], 10)
        .await
        .unwrap();
    assert_eq!(
        available,
        [
            (live.id, Available::Exactly(2)),
            (draft.id, Available::Exactly(0))
        ]
    );
    // The count stops one past its bound, and says so; at the bound it is
    // still exact.
    for (counted_max, expected) in [
        (0, Available::AtLeast(1)),
        (1, Available::AtLeast(2)),
        (2, Available::Exactly(2)),
    ] {
        assert_eq!(
            store
                .available_counts(&[live.id], counted_max)
                .await
                .unwrap(),
            [(live.id, expected)],
            "counting at most {counted_max}"
        );
    }

    // From the cursor on: what changed after it is read, with its new state;
    // a campaign nothing changed stops being read (on PostgreSQL once the
    // transactions running anywhere on the server when it changed are over).
    let generated = coupon(Some(2)).validate().unwrap();
    let pattern = generated.code_pattern().unwrap();
    let codes: Vec<VoucherCode> = (0..2).map(|_| pattern.generate(&mut OsEntropy)).collect();
    store.add_codes(draft.id, &codes, at(NOON)).await.unwrap();
    let mut cursor = changes.next;
    let mut seen_codes = false;
    for _ in 0..200 {
        let later = store.campaign_changes(Some(cursor)).await.unwrap();
        cursor = later.next;
        if later.states.iter().any(|state| state.id == draft.id) {
            assert_eq!(state_of(&later.states, draft.id).voucher_count, 2);
            seen_codes = true;
        }
        if seen_codes && later.states.iter().all(|state| state.id != live.id) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(seen_codes, "a draft's new codes are a change");
    store
        .change_lifecycle(draft.id, Lifecycle::Draft, Lifecycle::Live, now)
        .await
        .unwrap();
    let published = store.campaign_changes(Some(cursor)).await.unwrap();
    let draft_state = state_of(&published.states, draft.id);
    assert_eq!(draft_state.lifecycle, Lifecycle::Live);
    assert!(published.next.0 >= cursor.0, "the cursor never moves back");
    let unchanged = store.campaign_changes(Some(published.next)).await.unwrap();
    let mut cursor = unchanged.next;
    for _ in 0..200 {
        let later = store.campaign_changes(Some(cursor)).await.unwrap();
        if later.states.iter().all(|state| state.id != live.id) {
            cursor = later.next;
            break;
        }
        cursor = later.next;
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // A claim is no campaign change to follow.
    claim_all(&store, vec![claim(&live, "quinn", now)], now).await;
    let after_claim = store.campaign_changes(Some(cursor)).await.unwrap();
    assert!(
        after_claim.states.iter().all(|state| state.id != live.id),
        "a claim was followed as a campaign change: {after_claim:?}"
    );

    // Listing by tenant and the campaigns a login claims.
    let other_tenant = new_tenant(&store).await;
    draft_campaign(&store, other_tenant, coupon(Some(1))).await;
    let mut ids: Vec<CampaignId> = store
        .campaigns_of(tenant_id)
        .await
        .unwrap()
        .iter()
        .map(|campaign| campaign.id)
        .collect();
    ids.sort_unstable();
    let mut expected = vec![live.id, draft.id];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let login_draft = CampaignDraft {
        trigger: Some("first_login".into()),
        ..coupon(Some(1))
    };
    let granting = live_campaign(&store, tenant_id, login_draft.clone()).await;
    draft_campaign(&store, tenant_id, login_draft.clone()).await;
    live_campaign(&store, other_tenant, login_draft).await;
    assert_eq!(
        store.first_login_campaigns(tenant_id).await.unwrap(),
        [granting.id]
    );
}

pub fn sale(supply: i64) -> CampaignDraft {
    CampaignDraft {
        kind: Some("sale".into()),
        price: Some((100_000, "THB".into())),
        tiers: vec![(1, 90)],
        reservation_ttl_seconds: Some(600),
        voucher_valid_for: Some("P30D".into()),
        daily_limit_group: Some("sales".into()),
        ..coupon(Some(supply))
    }
}

pub fn checkout_of(voucher: &VoucherRecord, holder: Option<&str>) -> Checkout {
    Checkout {
        tenant_id: voucher.tenant_id,
        reservation_id: voucher.reservation_id.expect("a reservation"),
        holder: holder.map(user),
        order_id: OrderId::from_uuid(uuid::Uuid::new_v4()),
        email: "buyer@example.com".into(),
        amount: Money::new(10_000, Currency::parse("THB").unwrap()).unwrap(),
        card_brand: "visa".into(),
        card_last_four: "4242".into(),
        sealed_card: vec![1, 2, 3, 4],
    }
}

async fn reserve(
    store: &Arc<dyn Store>,
    campaign: &CampaignRecord,
    name: &str,
    now: Timestamp,
) -> VoucherRecord {
    claimed(&claim_all(store, vec![claim(campaign, name, now)], now).await[0]).clone()
}

pub fn accepted(outcome: CheckoutOutcome) -> OrderRecord {
    match outcome {
        CheckoutOutcome::Accepted(order) => *order,
        other => panic!("expected an accepted checkout, got {other:?}"),
    }
}

pub const LEASE: SignedDuration = SignedDuration::from_secs(30);

async fn lease_one(store: &Arc<dyn Store>, now: Timestamp) -> PaymentTask {
    let mut tasks = store.lease_payments(now, LEASE, 10).await.unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    tasks.remove(0)
}

pub fn step(number: u32, outcome: AttemptOutcome, resolution: Resolution) -> PaymentStep {
    PaymentStep {
        attempt: Some(AttemptResult {
            number,
            outcome,
            detail: None,
            charge_id: Some(format!("ch_{number}")),
        }),
        resolution,
    }
}

pub async fn checkout_opens_an_order_and_queues_its_payment(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, sale(3)).await;
    let now = at(NOON);
    let voucher = reserve(&store, &campaign, "quinn", now).await;
    let found = store
        .reservation(tenant_id, voucher.reservation_id.unwrap())
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&voucher));
    let checkout = checkout_of(&voucher, Some("quinn"));
    let order = accepted(store.begin_checkout(&checkout, now).await.unwrap());
    assert_eq!(
        (order.status, order.voucher_id, order.campaign_id),
        (OrderStatus::Pending, voucher.id, campaign.id)
    );
    assert_eq!(
        (order.user_id.as_str(), order.card_last_four.as_str()),
        ("quinn", "4242")
    );
    let again = checkout_of(&voucher, None);
    assert_eq!(
        store.begin_checkout(&again, now).await.unwrap(),
        CheckoutOutcome::PaymentInFlight(order.id)
    );
    let task = lease_one(&store, now).await;
    assert_eq!(
        (
            task.order.id,
            task.sealed_card.as_slice(),
            task.pinned_gateway.as_deref(),
            task.attempts
        ),
        (order.id, &[1_u8, 2, 3, 4][..], None, 0)
    );
    assert!(
        store
            .lease_payments(now, LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "a leased payment is not handed out twice"
    );
    let details = store
        .order(tenant_id, order.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (details.voucher.id, details.attempts.len()),
        (voucher.id, 0)
    );
    assert_eq!(details.order, order);
    let unknown = OrderId::from_uuid(uuid::Uuid::new_v4());
    assert_eq!(store.order(tenant_id, unknown, None).await.unwrap(), None);
    assert_eq!(
        store
            .order(tenant_id, order.id, Some(&user("other")))
            .await
            .unwrap(),
        None,
        "someone else's order"
    );
    let elsewhere = new_tenant(&store).await;
    assert_eq!(
        store.order(elsewhere, order.id, None).await.unwrap(),
        None,
        "another tenant's order"
    );
}

pub async fn a_paid_order_issues_its_voucher_once(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, sale(3)).await;
    let now = at(NOON);
    let voucher = reserve(&store, &campaign, "rosa", now).await;
    let order = accepted(
        store
            .begin_checkout(&checkout_of(&voucher, None), now)
            .await
            .unwrap(),
    );
    let task = lease_one(&store, now).await;
    let number = store
        .start_attempt(&task.lease, "alpha", AttemptKind::Charge, now)
        .await
        .unwrap();
    assert_eq!(number, Some(1));
    let paid_at = at("2026-12-01T12:00:01Z");
    let expires_at = Some(at("2026-12-31T12:00:01Z"));
    let paid = step(
        1,
        AttemptOutcome::Captured,
        Resolution::Paid {
            gateway: "alpha".into(),
            expires_at,
        },
    );
    assert!(
        store
            .finish_payment(&task.lease, &paid, paid_at)
            .await
            .unwrap()
    );
    let details = store
        .order(tenant_id, order.id, Some(&user("rosa")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            details.order.status,
            details.order.gateway.as_deref(),
            details.order.settled_at
        ),
        (OrderStatus::Paid, Some("alpha"), Some(paid_at))
    );
    let issued = &details.voucher;
    assert_eq!(
        (
            issued.state,
            issued.issued_at,
            issued.expires_at,
            issued.reserved_until
        ),
        (VoucherState::Issued, Some(paid_at), expires_at, None)
    );
    assert_eq!(issued.code, voucher.code);
    let attempt = &details.attempts[0];
    assert_eq!(
        (
            attempt.gateway.as_str(),
            attempt.kind,
            attempt.outcome,
            attempt.charge_id.as_deref()
        ),
        (
            "alpha",
            AttemptKind::Charge,
            Some(AttemptOutcome::Captured),
            Some("ch_1")
        )
    );
    assert!(
        store
            .lease_payments(at("2026-12-01T14:00:00Z"), LEASE, 10)
            .await
            .unwrap()
            .iter()
            .all(|task| task.order.id != order.id),
        "a settled payment leaves the queue"
    );
    assert!(
        !store
            .finish_payment(&task.lease, &paid, paid_at)
            .await
            .unwrap(),
        "a settled payment cannot settle again"
    );
    assert_eq!(
        store
            .begin_checkout(&checkout_of(&voucher, None), paid_at)
            .await
            .unwrap(),
        CheckoutOutcome::AlreadyPaid(order.id)
    );
    let counts = store.payment_counts(campaign.id).await.unwrap();
    assert_eq!(
        (
            counts.orders_paid,
            counts.orders_pending,
            counts.orders_failed
        ),
        (1, 0, 0)
    );
    assert_eq!(
        counts.revenue,
        [Money::new(10_000, Currency::parse("THB").unwrap()).unwrap()]
    );
    assert_eq!(
        counts.attempts,
        [("alpha".to_owned(), AttemptOutcome::Captured, 1)]
    );
    let report = store.campaign_counts(campaign.id, &[]).await.unwrap();
    assert_eq!((report.states.issued, report.states.reserved), (1, 0));
}

pub async fn a_declined_order_fails_and_the_reservation_can_be_paid_again(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, sale(3)).await;
    let now = at(NOON);
    let voucher = reserve(&store, &campaign, "sam", now).await;
    let first = accepted(
        store
            .begin_checkout(&checkout_of(&voucher, None), now)
            .await
            .unwrap(),
    );
    let task = lease_one(&store, now).await;
    store
        .start_attempt(&task.lease, "beta", AttemptKind::Charge, now)
        .await
        .unwrap();
    let declined = step(
        1,
        AttemptOutcome::Declined,
        Resolution::Failed {
            reason: "declined".into(),
        },
    );
    assert!(
        store
            .finish_payment(&task.lease, &declined, now)
            .await
            .unwrap()
    );
    let details = store
        .order(tenant_id, first.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (details.order.status, details.order.failure.as_deref()),
        (OrderStatus::Failed, Some("declined"))
    );
    assert_eq!(
        details.voucher.state,
        VoucherState::Reserved,
        "the reservation stays"
    );
    let second = accepted(
        store
            .begin_checkout(&checkout_of(&voucher, None), now)
            .await
            .unwrap(),
    );
    assert_ne!(second.id, first.id);
    let counts = store.payment_counts(campaign.id).await.unwrap();
    assert_eq!((counts.orders_failed, counts.orders_pending), (1, 1));
}

pub async fn an_unknown_outcome_pins_the_payment_to_its_gateway(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, sale(3)).await;
    let now = at(NOON);
    let voucher = reserve(&store, &campaign, "tess", now).await;
    let order = accepted(
        store
            .begin_checkout(&checkout_of(&voucher, None), now)
            .await
            .unwrap(),
    );
    let task = lease_one(&store, now).await;
    store
        .start_attempt(&task.lease, "gamma", AttemptKind::Charge, now)
        .await
        .unwrap();
    let later = at("2026-12-01T12:00:02Z");
    let unknown = step(
        1,
        AttemptOutcome::Unknown,
        Resolution::Retry {
            next_attempt_at: later,
            pinned_gateway: Some("gamma".into()),
        },
    );
    assert!(
        store
            .finish_payment(&task.lease, &unknown, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .lease_payments(now, LEASE, 10)
            .await
            .unwrap()
            .iter()
            .all(|task| task.order.id != order.id),
        "not due before its time"
    );
    let retry = lease_one(&store, later).await;
    assert_eq!(
        (retry.pinned_gateway.as_deref(), retry.attempts),
        (Some("gamma"), 1)
    );
    let number = store
        .start_attempt(&retry.lease, "gamma", AttemptKind::Lookup, later)
        .await
        .unwrap();
    assert_eq!(number, Some(2));
    let not_found = step(
        2,
        AttemptOutcome::NotFound,
        Resolution::Retry {
            next_attempt_at: later,
            pinned_gateway: None,
        },
    );
    assert!(
        store
            .finish_payment(&retry.lease, &not_found, later)
            .await
            .unwrap()
    );
    assert_eq!(
        lease_one(&store, later).await.pinned_gateway,
        None,
        "a charge the gateway never saw may go anywhere"
    );
}

pub async fn a_lease_that_runs_out_is_taken_again_and_its_call_marked_interrupted(
    store: Arc<dyn Store>,
) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, sale(3)).await;
    let now = at(NOON);
    let voucher = reserve(&store, &campaign, "uma", now).await;
    let order = accepted(
        store
            .begin_checkout(&checkout_of(&voucher, None), now)
            .await
            .unwrap(),
    );
    let lost = lease_one(&store, now).await;
    store
        .start_attempt(&lost.lease, "alpha", AttemptKind::Charge, now)
        .await
        .unwrap();
    let after_lease = at("2026-12-01T12:00:30Z");
    let taken = store
        .lease_payments(after_lease, LEASE, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|task| task.order.id == order.id)
        .expect("taken again once the lease ran out");
    assert_eq!(
        taken.pinned_gateway.as_deref(),
        Some("alpha"),
        "the interrupted charge is resolved where it went"
    );
    assert_ne!(taken.lease, lost.lease);
    let paid = step(
        1,
        AttemptOutcome::Captured,
        Resolution::Paid {
            gateway: "alpha".into(),
            expires_at: None,
        },
    );
    assert!(
        !store
            .finish_payment(&lost.lease, &paid, after_lease)
            .await
            .unwrap(),
        "the old lease can no longer write"
    );
    assert_eq!(
        store
            .start_attempt(&lost.lease, "alpha", AttemptKind::Charge, after_lease)
            .await
            .unwrap(),
        None
    );
    let details = store
        .order(tenant_id, order.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (details.order.status, details.attempts[0].outcome),
        (OrderStatus::Pending, Some(AttemptOutcome::Interrupted))
    );
}

/// Only the payments a lease call takes over have their calls marked
/// interrupted: a node whose lease ran out writes until another node takes
/// the payment, and what it writes is not undone behind its back.
pub async fn a_lapsed_lease_nobody_took_again_still_finishes_its_call(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, sale(3)).await;
    let now = at(NOON);
    for name in ["ada", "bo"] {
        let voucher = reserve(&store, &campaign, name, now).await;
        accepted(
            store
                .begin_checkout(&checkout_of(&voucher, None), now)
                .await
                .unwrap(),
        );
    }
    let tasks = store.lease_payments(now, LEASE, 10).await.unwrap();
    assert_eq!(tasks.len(), 2);
    for task in &tasks {
        let number = store
            .start_attempt(&task.lease, "alpha", AttemptKind::Charge, now)
            .await
            .unwrap();
        assert_eq!(number, Some(1));
    }
    let after_lease = at("2026-12-01T12:00:30Z");
    let taken = store.lease_payments(after_lease, LEASE, 1).await.unwrap();
    assert_eq!(taken.len(), 1, "the limit holds for lapsed leases too");
    let left = tasks
        .iter()
        .find(|task| task.order.id != taken[0].order.id)
        .expect("the payment not taken again");
    let paid = step(
        1,
        AttemptOutcome::Captured,
        Resolution::Paid {
            gateway: "alpha".into(),
            expires_at: None,
        },
    );
    assert!(
        store
            .finish_payment(&left.lease, &paid, after_lease)
            .await
            .unwrap(),
        "nobody took it over, so the lease still writes"
    );
    let outcome_of = async |order_id| {
        let details = store
            .order(tenant_id, order_id, None)
            .await
            .unwrap()
            .unwrap();
        (details.order.status, details.attempts[0].outcome)
    };
    assert_eq!(
        outcome_of(left.order.id).await,
        (OrderStatus::Paid, Some(AttemptOutcome::Captured))
    );
    assert_eq!(
        outcome_of(taken[0].order.id).await,
        (OrderStatus::Pending, Some(AttemptOutcome::Interrupted))
    );
}

pub async fn reservations_expire_and_release_but_never_under_a_payment(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, sale(3)).await;
    let now = at(NOON);
    let paying = reserve(&store, &campaign, "vic", now).await;
    let idle = reserve(&store, &campaign, "wen", now).await;
    let kept = reserve(&store, &campaign, "xia", now).await;
    let order = accepted(
        store
            .begin_checkout(&checkout_of(&paying, None), now)
            .await
            .unwrap(),
    );
    assert_eq!(
        store
            .release_reservation(tenant_id, paying.reservation_id.unwrap(), None)
            .await
            .unwrap(),
        ReleaseOutcome::PaymentInFlight(order.id)
    );
    assert_eq!(
        store
            .release_reservation(tenant_id, kept.reservation_id.unwrap(), Some(&user("vic")))
            .await
            .unwrap(),
        ReleaseOutcome::NotFound,
        "someone else's"
    );
    assert_eq!(
        store
            .release_reservation(tenant_id, kept.reservation_id.unwrap(), Some(&user("xia")))
            .await
            .unwrap(),
        ReleaseOutcome::Released(campaign.id)
    );
    assert_eq!(
        store
            .release_reservation(tenant_id, kept.reservation_id.unwrap(), None)
            .await
            .unwrap(),
        ReleaseOutcome::NotFound,
        "released once"
    );
    assert!(
        store
            .release_expired_reservations(at("2026-12-01T12:09:59Z"), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let expired = store
        .release_expired_reservations(at("2026-12-01T12:10:00Z"), 100)
        .await
        .unwrap();
    assert_eq!(
        expired,
        [campaign.id],
        "the idle reservation, not the one being paid"
    );
    let counts = store.campaign_counts(campaign.id, &[]).await.unwrap();
    assert_eq!((counts.states.available, counts.states.reserved), (2, 1));
    // The freed ranks go to the next buyers, lowest first, and their daily
    // slot was freed with them.
    let later = at("2026-12-01T12:11:00Z");
    let again = claim_all(
        &store,
        vec![
            claim(&campaign, "wen", later),
            claim(&campaign, "yan", later),
        ],
        later,
    )
    .await;
    assert_eq!(
        (claimed(&again[0]).rank, claimed(&again[1]).rank),
        (idle.rank, kept.rank)
    );
    assert_ne!(
        claimed(&again[0]).reservation_id,
        idle.reservation_id,
        "a new hold, a new id"
    );
}

pub async fn checkout_refuses_what_it_cannot_pay_for(store: Arc<dyn Store>) {
    let tenant_id = new_tenant(&store).await;
    let campaign = live_campaign(&store, tenant_id, sale(3)).await;
    let now = at(NOON);
    let voucher = reserve(&store, &campaign, "zed", now).await;
    let expired = at("2026-12-01T12:10:00Z");
    assert_eq!(
        store
            .begin_checkout(&checkout_of(&voucher, None), expired)
            .await
            .unwrap(),
        CheckoutOutcome::Expired
    );
    assert_eq!(
        store
            .begin_checkout(&checkout_of(&voucher, Some("not-zed")), now)
            .await
            .unwrap(),
        CheckoutOutcome::NotFound
    );
    let unknown = Checkout {
        reservation_id: ReservationId::from_uuid(uuid::Uuid::new_v4()),
        ..checkout_of(&voucher, None)
    };
    assert_eq!(
        store.begin_checkout(&unknown, now).await.unwrap(),
        CheckoutOutcome::NotFound
    );
    let elsewhere = Checkout {
        tenant_id: new_tenant(&store).await,
        ..checkout_of(&voucher, None)
    };
    assert_eq!(
        store.begin_checkout(&elsewhere, now).await.unwrap(),
        CheckoutOutcome::NotFound
    );
    assert_eq!(
        store.payment_counts(campaign.id).await.unwrap(),
        PaymentCounts::default(),
        "no order was opened"
    );
}
