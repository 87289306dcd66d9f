//! The verdict bites: a record set that keeps every invariant passes, and
//! each broken invariant fails the check that guards it.

use voucherd_load::ScenarioKind;
use voucherd_load::book::UserOutcome;
use voucherd_load::verdict::{
    Acknowledged, CampaignEvidence, Dashboard, Evidence, Holder, LedgerEvidence, PaidOrder,
    StoredVoucher, TierCount, UserRecord, judge,
};

const SUPPLY: u32 = 4;

fn code(rank: u32) -> String {
    format!("HOT-000{rank}-ABCD")
}

/// A sold-out Hot Deal of four, claims only: users 0..4 hold ranks 1..=4,
/// users 4 and 5 were told sold out.
fn sold_out_hot_deal() -> Evidence {
    let export = (1..=SUPPLY)
        .map(|rank| StoredVoucher {
            rank,
            code: code(rank),
            state: "reserved".to_owned(),
            holder: Holder::User(rank - 1),
        })
        .collect();
    let tier = |first_rank, last_rank, discount_percent, reserved| TierCount {
        first_rank,
        last_rank: Some(last_rank),
        discount_percent,
        issued: 0,
        reserved,
    };
    let mut users = vec![
        UserRecord {
            outcome: UserOutcome::Claimed,
            new_vouchers: 1,
        };
        SUPPLY as usize
    ];
    users.extend(
        [UserRecord {
            outcome: UserOutcome::SoldOut,
            new_vouchers: 0,
        }; 2],
    );
    Evidence {
        scenario: ScenarioKind::HotDeal,
        checkout: false,
        campaigns: vec![CampaignEvidence {
            id: "hot-deal".to_owned(),
            supply: Some(SUPPLY),
            reserved: u64::from(SUPPLY),
            issued_total: 0,
            by_tier: vec![tier(1, 1, 90, 1), tier(2, 2, 70, 1), tier(3, 4, 50, 2)],
            export,
        }],
        users,
        acknowledged: (1..=SUPPLY)
            .map(|rank| Acknowledged {
                user: rank - 1,
                campaign: 0,
                rank,
                code: None,
            })
            .collect(),
        paid: Vec::new(),
        repeat_mismatches: 0,
        repeat_omissions: 0,
        unexpected: 0,
        dropped_by_client: 0,
        ledger: None,
        dashboards: Vec::new(),
        buyers: 0,
        admin_failures: 0,
    }
}

/// The same sale, checked out and paid through one gateway.
fn paid_hot_deal() -> Evidence {
    let mut evidence = sold_out_hot_deal();
    evidence.checkout = true;
    let campaign = &mut evidence.campaigns[0];
    campaign.issued_total = campaign.reserved;
    campaign.reserved = 0;
    for tier in &mut campaign.by_tier {
        (tier.issued, tier.reserved) = (tier.reserved, 0);
    }
    for voucher in &mut campaign.export {
        voucher.state = "issued".to_owned();
    }
    for user in &mut evidence.users[..SUPPLY as usize] {
        user.outcome = UserOutcome::Paid;
    }
    evidence.paid = (1..=SUPPLY)
        .map(|rank| PaidOrder {
            user: rank - 1,
            campaign: 0,
            rank,
            code: Some(code(rank)),
            amount: Some(15_000),
        })
        .collect();
    evidence.ledger = Some(LedgerEvidence {
        new_captures: u64::from(SUPPLY),
        new_captured_amount: 15_000 * i64::from(SUPPLY),
        keys_captured_twice: Vec::new(),
    });
    evidence
}

fn failed_checks(evidence: &Evidence) -> Vec<String> {
    judge(evidence)
        .checks
        .into_iter()
        .filter(|check| !check.passed)
        .map(|check| format!("{}: {}", check.name, check.detail))
        .collect()
}

/// Breaking `evidence` with `mutate` fails `check`, and the verdict.
fn check(evidence: fn() -> Evidence, mutate: impl FnOnce(&mut Evidence), check: &str) {
    let mut broken = evidence();
    mutate(&mut broken);
    let failed = failed_checks(&broken);
    assert!(
        failed
            .iter()
            .any(|failure| failure.starts_with(&format!("{check}:"))),
        "{check} should fail; failed: {failed:?}"
    );
    assert!(!judge(&broken).passed);
}

#[test]
fn records_that_keep_the_invariants_pass() {
    for evidence in [sold_out_hot_deal(), paid_hot_deal()] {
        assert_eq!(failed_checks(&evidence), Vec::<String>::new());
        assert!(judge(&evidence).passed);
    }
}

#[test]
fn a_rank_stored_twice_fails() {
    check(
        sold_out_hot_deal,
        |evidence| evidence.campaigns[0].export[3].rank = 3,
        "ranks_unique",
    );
}

#[test]
fn a_user_holding_two_fails() {
    check(
        sold_out_hot_deal,
        |evidence| evidence.campaigns[0].export[3].holder = Holder::User(0),
        "nobody_twice",
    );
    check(
        sold_out_hot_deal,
        |evidence| evidence.users[0].new_vouchers = 2,
        "nobody_twice",
    );
}

#[test]
fn an_acknowledged_voucher_that_is_missing_or_changed_fails() {
    check(
        sold_out_hot_deal,
        |evidence| {
            evidence.campaigns[0].export[2].holder = Holder::Nobody;
            evidence.campaigns[0].reserved -= 1;
        },
        "acknowledged_present",
    );
    check(
        sold_out_hot_deal,
        |evidence| evidence.acknowledged[1].code = Some("HOT-9999-ZZZZ".to_owned()),
        "acknowledged_present",
    );
    check(
        sold_out_hot_deal,
        |evidence| evidence.campaigns[0].reserved -= 1,
        "server_holds_what_was_acknowledged",
    );
}

#[test]
fn more_than_the_supply_fails() {
    check(
        sold_out_hot_deal,
        |evidence| {
            let campaign = &mut evidence.campaigns[0];
            campaign.export.push(StoredVoucher {
                rank: 5,
                code: code(5),
                state: "reserved".to_owned(),
                holder: Holder::User(4),
            });
            campaign.reserved += 1;
        },
        "supply_not_exceeded",
    );
}

#[test]
fn a_sold_out_campaign_short_of_its_supply_fails() {
    check(
        sold_out_hot_deal,
        |evidence| {
            evidence.campaigns[0].export.pop();
            evidence.campaigns[0].reserved -= 1;
            evidence.acknowledged.pop();
        },
        "sold_equals_supply",
    );
}

#[test]
fn a_tier_count_off_by_one_fails() {
    check(
        sold_out_hot_deal,
        |evidence| {
            let tiers = &mut evidence.campaigns[0].by_tier;
            tiers[0].reserved -= 1;
            tiers[1].reserved += 1;
        },
        "tiers",
    );
}

#[test]
fn a_paid_order_without_its_voucher_fails() {
    check(
        paid_hot_deal,
        |evidence| evidence.paid[0].code = None,
        "paid_orders_have_vouchers",
    );
    check(
        paid_hot_deal,
        |evidence| evidence.campaigns[0].export[1].state = "reserved".to_owned(),
        "paid_orders_have_vouchers",
    );
}

#[test]
fn a_voucher_issued_without_payment_fails() {
    check(
        paid_hot_deal,
        |evidence| {
            evidence.paid.pop();
            evidence.users[3].outcome = UserOutcome::PaymentFailed;
        },
        "issued_only_when_paid",
    );
}

#[test]
fn a_double_capture_fails() {
    check(
        paid_hot_deal,
        |evidence| {
            let ledger = evidence.ledger.as_mut().unwrap();
            ledger.keys_captured_twice.push("order-1".to_owned());
        },
        "gateway_ledgers",
    );
    check(
        paid_hot_deal,
        |evidence| evidence.ledger.as_mut().unwrap().new_captures += 1,
        "gateway_ledgers",
    );
}

#[test]
fn unexpected_answers_fail() {
    check(
        sold_out_hot_deal,
        |evidence| evidence.unexpected = 1,
        "no_unexpected_answers",
    );
}

#[test]
fn a_second_login_granting_again_fails() {
    check(
        || Evidence {
            scenario: ScenarioKind::FirstLogin,
            ..sold_out_hot_deal()
        },
        |evidence| evidence.repeat_mismatches = 1,
        "repeat_logins_grant_nothing_new",
    );
}

#[test]
fn two_coupons_of_one_day_fail() {
    check(
        || {
            let mut evidence = sold_out_hot_deal();
            evidence.scenario = ScenarioKind::DailyCoupons;
            // A second coupon of the day, so far empty.
            let mut second = evidence.campaigns[0].clone();
            second.id = "second".to_owned();
            second.export.clear();
            second.reserved = 0;
            evidence.campaigns.push(second);
            evidence
        },
        |evidence| {
            evidence.campaigns[1].export.push(StoredVoucher {
                rank: 1,
                code: "DAY2-0001-ABCD".to_owned(),
                state: "issued".to_owned(),
                holder: Holder::User(0),
            });
            evidence.campaigns[1].reserved = 1;
            evidence.campaigns[1].supply = Some(1);
        },
        "one_per_user_per_day",
    );
}

#[test]
fn a_buyer_whose_dashboard_lists_the_course_twice_fails() {
    let enrollment = || {
        let mut evidence = sold_out_hot_deal();
        evidence.scenario = ScenarioKind::Enrollment;
        evidence.campaigns[0].supply = None;
        evidence.users.truncate(SUPPLY as usize);
        evidence.buyers = u64::from(SUPPLY);
        evidence.dashboards = (1..=SUPPLY)
            .map(|rank| Dashboard {
                user: rank - 1,
                course_vouchers: vec![(rank, None)],
            })
            .collect();
        evidence
    };
    assert!(
        judge(&enrollment()).passed,
        "{:?}",
        failed_checks(&enrollment())
    );
    check(
        enrollment,
        |evidence| evidence.dashboards[2].course_vouchers.push((9, None)),
        "every_buyer_has_one",
    );
    check(
        enrollment,
        |evidence| evidence.admin_failures = 1,
        "admin_operations_succeeded",
    );
}
