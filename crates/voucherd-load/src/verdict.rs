//! The verdict: the invariants checked against what the server says (its
//! reports, its voucher exports, users' dashboards, gateway ledgers) and
//! what the load generator itself was told during the run.
//!
//! [`judge`] is a pure function of an [`Evidence`], so the checks can be
//! fed a fabricated record set and shown to bite.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::book::UserOutcome;
use crate::config::ScenarioKind;

/// Mismatches quoted in a failed check's detail, at most.
const QUOTED_MAX: usize = 3;

/// One user's record: where the visit ended and how many new vouchers
/// (`201`s, login grants) the server gave them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRecord {
    pub outcome: UserOutcome,
    pub new_vouchers: u8,
}

/// A new voucher the server acknowledged to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    pub user: u32,
    /// Index into [`Evidence::campaigns`].
    pub campaign: usize,
    pub rank: u32,
    /// Null for a reservation.
    pub code: Option<String>,
}

/// An order the server said was paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidOrder {
    pub user: u32,
    pub campaign: usize,
    pub rank: u32,
    /// The voucher's code in the order; `None` if the order had none.
    pub code: Option<String>,
    pub amount: Option<i64>,
}

/// Who a stored voucher belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    Nobody,
    /// A user of this run, by number.
    User(u32),
    /// A user id this run did not make.
    Stranger(String),
}

/// A voucher as the campaign's export lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVoucher {
    pub rank: u32,
    pub code: String,
    pub state: String,
    pub holder: Holder,
}

/// A tier of the campaign as the report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierCount {
    pub first_rank: u32,
    pub last_rank: Option<u32>,
    pub discount_percent: u8,
    pub issued: u64,
    pub reserved: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignEvidence {
    pub id: String,
    pub supply: Option<u32>,
    /// `reserved` and `issued_total` of the report.
    pub reserved: u64,
    pub issued_total: u64,
    pub by_tier: Vec<TierCount>,
    pub export: Vec<StoredVoucher>,
}

impl CampaignEvidence {
    /// Vouchers someone holds, reserved or issued.
    pub fn held(&self) -> u64 {
        self.reserved + self.issued_total
    }
}

/// What the gateways' ledgers gained during the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerEvidence {
    pub new_captures: u64,
    pub new_captured_amount: i64,
    /// Keys captured more than once across all gateways.
    pub keys_captured_twice: Vec<String>,
}

/// A buyer's dashboard (`GET /v1/users/{id}/vouchers`), reduced to the
/// vouchers of the run's course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    pub user: u32,
    /// `(rank, code)` of each voucher of the course the user holds.
    pub course_vouchers: Vec<(u32, Option<String>)>,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub scenario: ScenarioKind,
    pub checkout: bool,
    /// The campaigns the run created, the claimed ones first.
    pub campaigns: Vec<CampaignEvidence>,
    /// Indexed by user number.
    pub users: Vec<UserRecord>,
    pub acknowledged: Vec<Acknowledged>,
    pub paid: Vec<PaidOrder>,
    /// Repeated logins that granted again, or answered another voucher
    /// as held.
    pub repeat_mismatches: u64,
    /// Repeated logins that left out the voucher the user holds: not a
    /// second voucher, so reported without failing.
    pub repeat_omissions: u64,
    /// Answers the scenario did not expect, and failures without one.
    pub unexpected: u64,
    /// Requests the generator's own in-flight bound refused: load the run
    /// meant to apply and did not.
    pub dropped_by_client: u64,
    pub ledger: Option<LedgerEvidence>,
    /// Enrollment: the buyers' dashboards read, and how many buyers there
    /// were in all.
    pub dashboards: Vec<Dashboard>,
    pub buyers: u64,
    pub admin_failures: u64,
}

impl Evidence {
    fn count(&self, outcome: UserOutcome) -> u64 {
        self.users
            .iter()
            .filter(|record| record.outcome == outcome)
            .count() as u64
    }

    /// A voucher acknowledged to a user whose payment then failed was
    /// released, and may since be someone else's.
    fn released(&self, acknowledged: &Acknowledged) -> bool {
        self.users
            .get(acknowledged.user as usize)
            .is_some_and(|record| record.outcome == UserOutcome::PaymentFailed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &str, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            passed,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn new(checks: Vec<Check>) -> Verdict {
        Verdict {
            passed: checks.iter().all(|check| check.passed),
            checks,
        }
    }
}

/// Every check the scenario calls for.
pub fn judge(evidence: &Evidence) -> Verdict {
    let mut checks = Vec::new();
    let claimed = evidence.campaigns.iter().collect::<Vec<_>>();
    match evidence.scenario {
        ScenarioKind::Baseline => {}
        ScenarioKind::HotDeal => {
            checks.extend(claim_checks(evidence, &claimed, "nobody_twice"));
            checks.push(tiers(evidence));
            if evidence.checkout {
                checks.push(paid_orders_have_vouchers(evidence));
                checks.push(issued_only_when_paid(evidence));
            }
            if let Some(ledger) = &evidence.ledger {
                checks.push(gateway_ledgers(evidence, ledger));
            }
        }
        ScenarioKind::FirstLogin => {
            checks.extend(claim_checks(evidence, &claimed, "nobody_twice"));
            checks.push(Check::new(
                "repeat_logins_grant_nothing_new",
                evidence.repeat_mismatches == 0,
                format!(
                    "{} repeated logins granted again or answered another voucher; {} left out the voucher held",
                    evidence.repeat_mismatches, evidence.repeat_omissions
                ),
            ));
        }
        ScenarioKind::DailyCoupons => {
            checks.extend(claim_checks(evidence, &claimed, "one_per_user_per_day"));
        }
        ScenarioKind::Enrollment => {
            // The admin loop's courses are listed after the bought one;
            // only the bought one is claimed.
            checks.extend(claim_checks(evidence, &claimed[..1], "nobody_twice"));
            checks.push(every_buyer_has_one(evidence));
            if evidence.checkout {
                checks.push(paid_orders_have_vouchers(evidence));
            }
            checks.push(Check::new(
                "admin_operations_succeeded",
                evidence.admin_failures == 0,
                format!("{} admin operations failed", evidence.admin_failures),
            ));
        }
    }
    checks.push(Check::new(
        "load_delivered",
        evidence.dropped_by_client == 0,
        format!(
            "{} requests dropped by the client's in-flight bound (never sent)",
            evidence.dropped_by_client
        ),
    ));
    checks.push(Check::new(
        "no_unexpected_answers",
        evidence.unexpected == 0,
        format!(
            "{} unexpected answers or failures (see errors)",
            evidence.unexpected
        ),
    ));
    Verdict::new(checks)
}

/// The checks every claiming scenario makes.
fn claim_checks(
    evidence: &Evidence,
    campaigns: &[&CampaignEvidence],
    nobody_twice_name: &str,
) -> Vec<Check> {
    vec![
        supply_not_exceeded(campaigns),
        sold_equals_supply(evidence, campaigns),
        server_holds_what_was_acknowledged(evidence, campaigns),
        ranks_unique(campaigns),
        nobody_twice(evidence, campaigns, nobody_twice_name),
        acknowledged_present(evidence, campaigns),
    ]
}

fn supply_not_exceeded(campaigns: &[&CampaignEvidence]) -> Check {
    let over: Vec<String> = campaigns
        .iter()
        .filter_map(|campaign| {
            let supply = u64::from(campaign.supply?);
            let exported = held_in_export(campaign) as u64;
            (campaign.held() > supply || exported > supply).then(|| {
                format!(
                    "{}: {} held by the report, {exported} by the export, supply {supply}",
                    campaign.id,
                    campaign.held()
                )
            })
        })
        .collect();
    Check::new(
        "supply_not_exceeded",
        over.is_empty(),
        if over.is_empty() {
            "no campaign holds more than its supply".to_owned()
        } else {
            over.join("; ")
        },
    )
}

fn held_in_export(campaign: &CampaignEvidence) -> usize {
    campaign
        .export
        .iter()
        .filter(|voucher| voucher.holder != Holder::Nobody)
        .count()
}

/// The sold (issued when checking out, held otherwise) across the
/// campaigns.
fn sold(evidence: &Evidence, campaigns: &[&CampaignEvidence]) -> u64 {
    campaigns
        .iter()
        .map(|campaign| {
            if evidence.checkout {
                campaign.issued_total
            } else {
                campaign.held()
            }
        })
        .sum()
}

/// Once anyone was told nothing is left, the whole supply is taken: no
/// voucher was lost on the way. Payments that failed or never settled
/// may have put some back.
fn sold_equals_supply(evidence: &Evidence, campaigns: &[&CampaignEvidence]) -> Check {
    let name = "sold_equals_supply";
    let supplies: Option<u64> = campaigns
        .iter()
        .map(|campaign| campaign.supply.map(u64::from))
        .sum();
    let Some(supply) = supplies else {
        return Check::new(name, true, "unlimited supply: nothing to sell out");
    };
    let sold = sold(evidence, campaigns);
    let told_sold_out = evidence.count(UserOutcome::SoldOut);
    if told_sold_out == 0 {
        return Check::new(
            name,
            sold <= supply,
            format!("never sold out: {sold} of {supply} sold"),
        );
    }
    let given_back =
        evidence.count(UserOutcome::PaymentFailed) + evidence.count(UserOutcome::OrderUnsettled);
    let passed = sold <= supply && sold + given_back >= supply;
    let slack = if given_back > 0 {
        format!(" ({given_back} payments failed or unsettled may have released vouchers)")
    } else {
        String::new()
    };
    Check::new(
        name,
        passed,
        format!("{told_sold_out} users told sold out; {sold} of {supply} sold{slack}"),
    )
}

/// What the server holds is what it acknowledged to the load generator:
/// nothing lost, and no voucher handed to nobody the run knows of. An
/// unexpected answer (a timeout) may have claimed without an answer, so
/// then the server may hold more.
fn server_holds_what_was_acknowledged(
    evidence: &Evidence,
    campaigns: &[&CampaignEvidence],
) -> Check {
    let held: u64 = campaigns.iter().map(|campaign| campaign.held()).sum();
    let claimed: HashSet<usize> = (0..campaigns.len()).collect();
    let acknowledged = evidence
        .acknowledged
        .iter()
        .filter(|acknowledged| {
            claimed.contains(&acknowledged.campaign) && !evidence.released(acknowledged)
        })
        .count() as u64;
    let unsettled = evidence.count(UserOutcome::OrderUnsettled);
    let low = acknowledged.saturating_sub(unsettled);
    let passed = if evidence.unexpected == 0 {
        (low..=acknowledged).contains(&held)
    } else {
        held >= low
    };
    Check::new(
        "server_holds_what_was_acknowledged",
        passed,
        format!("the server holds {held}; {acknowledged} acknowledged and not released"),
    )
}

fn ranks_unique(campaigns: &[&CampaignEvidence]) -> Check {
    let mut problems = Vec::new();
    for campaign in campaigns {
        let mut seen = HashSet::new();
        for voucher in &campaign.export {
            let in_supply = campaign
                .supply
                .is_none_or(|supply| (1..=supply).contains(&voucher.rank));
            if !seen.insert(voucher.rank) {
                problems.push(format!("{}: rank {} twice", campaign.id, voucher.rank));
            } else if !in_supply {
                problems.push(format!(
                    "{}: rank {} past the supply",
                    campaign.id, voucher.rank
                ));
            }
        }
    }
    quoted(
        "ranks_unique",
        &problems,
        "every rank once, within the supply",
    )
}

/// Nobody holds two vouchers of the checked campaigns, by the exports and
/// by the new vouchers the server gave each user.
fn nobody_twice(evidence: &Evidence, campaigns: &[&CampaignEvidence], name: &str) -> Check {
    let mut holders: HashMap<&Holder, u32> = HashMap::new();
    for voucher in campaigns.iter().flat_map(|campaign| &campaign.export) {
        if voucher.holder != Holder::Nobody {
            *holders.entry(&voucher.holder).or_default() += 1;
        }
    }
    let mut problems: Vec<String> = holders
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(holder, count)| format!("{holder:?} holds {count}"))
        .collect();
    problems.sort();
    problems.extend(
        evidence
            .users
            .iter()
            .enumerate()
            .filter(|(_, record)| record.new_vouchers > 1)
            .map(|(user, record)| {
                format!("user {user} was given {} new vouchers", record.new_vouchers)
            }),
    );
    quoted(name, &problems, "nobody holds two")
}

/// Every voucher acknowledged to a user is stored at its rank, held by
/// that user, with the code the user was told.
fn acknowledged_present(evidence: &Evidence, campaigns: &[&CampaignEvidence]) -> Check {
    let by_rank: Vec<HashMap<u32, &StoredVoucher>> = campaigns
        .iter()
        .map(|campaign| {
            campaign
                .export
                .iter()
                .map(|voucher| (voucher.rank, voucher))
                .collect()
        })
        .collect();
    let mut problems = Vec::new();
    let mut checked = 0_u64;
    for acknowledged in &evidence.acknowledged {
        let Some(ranks) = by_rank.get(acknowledged.campaign) else {
            continue;
        };
        if evidence.released(acknowledged) {
            continue;
        }
        checked += 1;
        let stored = ranks.get(&acknowledged.rank);
        let matches = stored.is_some_and(|stored| {
            stored.holder == Holder::User(acknowledged.user)
                && acknowledged
                    .code
                    .as_ref()
                    .is_none_or(|code| *code == stored.code)
        });
        if !matches {
            problems.push(format!(
                "user {} rank {} code {:?}: stored as {:?}",
                acknowledged.user,
                acknowledged.rank,
                acknowledged.code,
                stored.map(|stored| (&stored.holder, &stored.code, &stored.state))
            ));
        }
    }
    quoted(
        "acknowledged_present",
        &problems,
        &format!("all {checked} acknowledged vouchers stored as acknowledged"),
    )
}

/// The report's count per tier is the count of the run's own vouchers
/// (paid, or reserved when not checking out) whose rank falls in it.
fn tiers(evidence: &Evidence) -> Check {
    let name = "tiers";
    let Some(campaign) = evidence.campaigns.first() else {
        return Check::new(name, false, "no campaign");
    };
    let ranks: Vec<u32> = if evidence.checkout {
        evidence.paid.iter().map(|order| order.rank).collect()
    } else {
        evidence
            .acknowledged
            .iter()
            .filter(|acknowledged| !evidence.released(acknowledged))
            .map(|acknowledged| acknowledged.rank)
            .collect()
    };
    let mut reported = Vec::new();
    let mut seen = Vec::new();
    for tier in &campaign.by_tier {
        let count = if evidence.checkout {
            tier.issued
        } else {
            tier.issued + tier.reserved
        };
        let last = tier.last_rank.unwrap_or(u32::MAX);
        let mine = ranks
            .iter()
            .filter(|rank| (tier.first_rank..=last).contains(rank))
            .count() as u64;
        reported.push(count);
        seen.push(mine);
    }
    let join = |counts: &[u64]| {
        counts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let comparable = evidence.unexpected == 0 && evidence.count(UserOutcome::OrderUnsettled) == 0;
    let detail = format!(
        "by tier: the report says {}, the run saw {}",
        join(&reported),
        join(&seen)
    );
    if comparable {
        Check::new(name, reported == seen, detail)
    } else {
        let within = reported
            .iter()
            .zip(&seen)
            .all(|(report, own)| report >= own);
        Check::new(
            name,
            within,
            format!("{detail} (answers were missed, so at least)"),
        )
    }
}

/// Every paid order carries its voucher, stored as issued to the buyer
/// under the same code.
fn paid_orders_have_vouchers(evidence: &Evidence) -> Check {
    let by_rank: Vec<HashMap<u32, &StoredVoucher>> = evidence
        .campaigns
        .iter()
        .map(|campaign| {
            campaign
                .export
                .iter()
                .map(|voucher| (voucher.rank, voucher))
                .collect()
        })
        .collect();
    let mut problems = Vec::new();
    for order in &evidence.paid {
        let stored = by_rank
            .get(order.campaign)
            .and_then(|ranks| ranks.get(&order.rank));
        let good = order.code.is_some()
            && stored.is_some_and(|stored| {
                stored.holder == Holder::User(order.user)
                    && Some(&stored.code) == order.code.as_ref()
                    && stored.state != "reserved"
                    && stored.state != "available"
            });
        if !good {
            problems.push(format!(
                "user {} rank {} code {:?}: stored as {:?}",
                order.user,
                order.rank,
                order.code,
                stored.map(|stored| (&stored.holder, &stored.code, &stored.state))
            ));
        }
    }
    quoted(
        "paid_orders_have_vouchers",
        &problems,
        &format!(
            "all {} paid orders carry their issued voucher",
            evidence.paid.len()
        ),
    )
}

/// No voucher is issued without a paid order the run saw (when every
/// order settled).
fn issued_only_when_paid(evidence: &Evidence) -> Check {
    let name = "issued_only_when_paid";
    let Some(campaign) = evidence.campaigns.first() else {
        return Check::new(name, false, "no campaign");
    };
    let paid: HashSet<u32> = evidence.paid.iter().map(|order| order.user).collect();
    let unpaid: Vec<String> = campaign
        .export
        .iter()
        .filter(|voucher| voucher.state != "reserved" && voucher.state != "available")
        .filter(|voucher| !matches!(voucher.holder, Holder::User(user) if paid.contains(&user)))
        .map(|voucher| format!("rank {} {:?} issued unpaid", voucher.rank, voucher.holder))
        .collect();
    if evidence.count(UserOutcome::OrderUnsettled) > 0 || evidence.unexpected > 0 {
        return Check::new(
            name,
            true,
            format!(
                "not decidable: some orders were not seen settled ({} issued without a seen payment)",
                unpaid.len()
            ),
        );
    }
    quoted(name, &unpaid, "every issued voucher has a paid order")
}

fn gateway_ledgers(evidence: &Evidence, ledger: &LedgerEvidence) -> Check {
    let paid = evidence.paid.len() as u64;
    let paid_amount: Option<i64> = evidence.paid.iter().map(|order| order.amount).sum();
    let amounts_match = paid_amount.is_none_or(|amount| amount == ledger.new_captured_amount);
    // An order still pending when the run stopped waiting may have been
    // captured since; then the ledger may hold more than the run saw paid.
    let unsettled = evidence.count(UserOutcome::OrderUnsettled) > 0;
    let captures_match = if unsettled {
        ledger.new_captures >= paid
    } else {
        ledger.new_captures == paid && amounts_match
    };
    let passed = ledger.keys_captured_twice.is_empty() && captures_match;
    Check::new(
        "gateway_ledgers",
        passed,
        format!(
            "{} new captures for {paid} paid orders; amounts {} vs {:?}; keys captured twice: {:?}",
            ledger.new_captures,
            ledger.new_captured_amount,
            paid_amount,
            ledger
                .keys_captured_twice
                .iter()
                .take(QUOTED_MAX)
                .collect::<Vec<_>>()
        ),
    )
}

/// Seed 004: each buyer's dashboard lists the course exactly once, the
/// voucher they were given.
fn every_buyer_has_one(evidence: &Evidence) -> Check {
    let acknowledged: HashMap<u32, &Acknowledged> = evidence
        .acknowledged
        .iter()
        .filter(|acknowledged| acknowledged.campaign == 0)
        .map(|acknowledged| (acknowledged.user, acknowledged))
        .collect();
    let paid: HashMap<u32, &PaidOrder> = evidence
        .paid
        .iter()
        .map(|order| (order.user, order))
        .collect();
    let mut problems = Vec::new();
    for dashboard in &evidence.dashboards {
        let expected_rank = acknowledged.get(&dashboard.user).map(|ack| ack.rank);
        let expected_code = paid
            .get(&dashboard.user)
            .and_then(|order| order.code.clone());
        let good = match dashboard.course_vouchers.as_slice() {
            [(rank, code)] => {
                Some(*rank) == expected_rank
                    && expected_code
                        .as_ref()
                        .is_none_or(|paid| Some(paid) == code.as_ref())
            }
            _ => false,
        };
        if !good {
            problems.push(format!(
                "user {} sees {:?}, was given rank {:?}",
                dashboard.user, dashboard.course_vouchers, expected_rank
            ));
        }
    }
    quoted(
        "every_buyer_has_one",
        &problems,
        &format!(
            "{} of {} buyers' dashboards read; each lists the course once",
            evidence.dashboards.len(),
            evidence.buyers
        ),
    )
}

/// Passes when `problems` is empty; quotes the first few otherwise.
fn quoted(name: &str, problems: &[String], fine: &str) -> Check {
    if problems.is_empty() {
        return Check::new(name, true, fine);
    }
    let mut detail = problems[..problems.len().min(QUOTED_MAX)].join("; ");
    if problems.len() > QUOTED_MAX {
        detail.push_str(&format!("; and {} more", problems.len() - QUOTED_MAX));
    }
    Check::new(name, false, detail)
}
