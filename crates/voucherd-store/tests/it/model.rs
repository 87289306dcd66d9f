//! The store held against a reference model: random histories of claims,
//! locks, unlocks, redemptions, lock expiry and a moving clock, with every
//! answer compared to the model's and the whole state compared after every
//! step. The model is deliberately naive — vectors and linear scans — and
//! takes its voucher rules from `voucherd_core`, which the SQL mirrors.

use std::collections::HashSet;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use voucherd_core::campaign::{CampaignDraft, CampaignSpec};
use voucherd_core::voucher::{Redemption, VoucherRefusal, VoucherState};
use voucherd_core::{Date, SignedDuration, TimeZone, Timestamp};
use voucherd_store::Store;
use voucherd_store::model::{
    CampaignRecord, ClaimOutcome, VoucherAction, VoucherOutcome, VoucherRecord, VoucherTarget,
};

use crate::conformance::{at, claim, coupon, live_campaign, new_tenant, user};

const USERS: usize = 5;
const CASES_DEFAULT: u32 = 40;

#[derive(Debug, Clone)]
enum Op {
    /// Claims committed together in one batch: (campaign, user).
    Claims(Vec<(usize, usize)>),
    Lock(usize),
    Unlock(usize),
    Redeem(usize),
    Advance {
        minutes: i64,
    },
    ExpireLocks,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop::collection::vec((0..3_usize, 0..USERS), 1..4).prop_map(Op::Claims),
        3 => (0..10_usize).prop_map(Op::Lock),
        1 => (0..10_usize).prop_map(Op::Unlock),
        3 => (0..10_usize).prop_map(Op::Redeem),
        2 => (0..=300_i64).prop_map(|minutes| Op::Advance { minutes }),
        1 => Just(Op::ExpireLocks),
    ]
}

/// The three campaigns every history runs against.
fn drafts() -> [CampaignDraft; 3] {
    [
        CampaignDraft {
            per_user_limit: Some(2),
            redemptions_max: Some(2),
            lock_ttl_seconds: Some(3_600),
            voucher_valid_for: Some("PT3H".into()),
            ..coupon(Some(4))
        },
        CampaignDraft {
            daily_limit_group: Some("daily".into()),
            lock_ttl_seconds: Some(1_800),
            ..coupon(Some(3))
        },
        CampaignDraft {
            daily_limit_group: Some("daily".into()),
            voucher_expires_at: Some("2026-12-02T02:00:00Z".into()),
            ..coupon(Some(3))
        },
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelVoucher {
    rank: u32,
    user: Option<usize>,
    claimed_at: Option<Timestamp>,
    redemption: Redemption,
}

#[derive(Debug)]
struct Model {
    specs: Vec<CampaignSpec>,
    vouchers: Vec<Vec<ModelVoucher>>,
    daily: HashSet<(usize, Date)>,
    now: Timestamp,
}

#[derive(Debug, PartialEq)]
enum Answer {
    Claimed { rank: u32 },
    AlreadyHeld { rank: u32 },
    SoldOut,
    DailyLimitReached,
    Done(Redemption),
    Refused(VoucherRefusal),
    NotFound,
    Expired(u32),
}

impl Model {
    fn claim(&mut self, campaign: usize, user: usize) -> Answer {
        let spec = &self.specs[campaign];
        let vouchers = &mut self.vouchers[campaign];
        let latest_held = vouchers
            .iter()
            .filter(|voucher| voucher.user == Some(user))
            .max_by_key(|voucher| (voucher.claimed_at, voucher.rank));
        let held = vouchers
            .iter()
            .filter(|voucher| voucher.user == Some(user))
            .count();
        if held >= spec.per_user_limit as usize {
            return Answer::AlreadyHeld {
                rank: latest_held.map_or(0, |voucher| voucher.rank),
            };
        }
        let day = spec.daily_key(&TimeZone::UTC, self.now).map(|key| key.day);
        if let Some(day) = day
            && self.daily.contains(&(user, day))
        {
            return Answer::DailyLimitReached;
        }
        let Some(voucher) = vouchers
            .iter_mut()
            .filter(|voucher| voucher.redemption.state == VoucherState::Available)
            .min_by_key(|voucher| voucher.rank)
        else {
            return Answer::SoldOut;
        };
        voucher.user = Some(user);
        voucher.claimed_at = Some(self.now);
        voucher.redemption.state = VoucherState::Issued;
        voucher.redemption.expires_at = spec.voucher_expires_at(self.now);
        if let Some(day) = day {
            self.daily.insert((user, day));
        }
        Answer::Claimed { rank: voucher.rank }
    }

    fn act(&mut self, index: usize, action: VoucherAction) -> Answer {
        let count: usize = self.vouchers.iter().map(Vec::len).sum();
        let (campaign, rank) = voucher_at(&self.vouchers, index % count);
        let now = self.now;
        let voucher = &mut self.vouchers[campaign][rank];
        if matches!(
            voucher.redemption.state,
            VoucherState::Available | VoucherState::Reserved
        ) {
            return Answer::NotFound;
        }
        let decided = match action {
            VoucherAction::Lock => voucher.redemption.lock(now, self.specs[campaign].lock_ttl),
            VoucherAction::Unlock => voucher.redemption.unlock(now),
            VoucherAction::Redeem => voucher.redemption.redeem(now),
        };
        match decided {
            Ok(redemption) => {
                voucher.redemption = redemption;
                Answer::Done(redemption)
            }
            Err(refusal) => Answer::Refused(refusal),
        }
    }

    fn expire_locks(&mut self) -> Answer {
        let mut expired = 0;
        for voucher in self.vouchers.iter_mut().flatten() {
            if let Some(redemption) = voucher.redemption.expire_lock(self.now) {
                voucher.redemption = redemption;
                expired += 1;
            }
        }
        Answer::Expired(expired)
    }
}

/// The (campaign, position) of the `index`-th voucher over all campaigns.
fn voucher_at(vouchers: &[Vec<ModelVoucher>], mut index: usize) -> (usize, usize) {
    for (campaign, list) in vouchers.iter().enumerate() {
        if index < list.len() {
            return (campaign, index);
        }
        index -= list.len();
    }
    unreachable!("index is taken modulo the voucher count")
}

fn store_answer(outcome: ClaimOutcome) -> Answer {
    match outcome {
        ClaimOutcome::Claimed(voucher) => Answer::Claimed { rank: voucher.rank },
        ClaimOutcome::AlreadyHeld(voucher) => Answer::AlreadyHeld { rank: voucher.rank },
        ClaimOutcome::SoldOut => Answer::SoldOut,
        ClaimOutcome::DailyLimitReached => Answer::DailyLimitReached,
    }
}

fn voucher_answer(outcome: VoucherOutcome) -> Answer {
    match outcome {
        VoucherOutcome::Done(voucher) => Answer::Done(voucher.redemption()),
        VoucherOutcome::Refused(refusal, _) => Answer::Refused(refusal),
        VoucherOutcome::NotFound => Answer::NotFound,
    }
}

struct History {
    store: Arc<dyn Store>,
    campaigns: Vec<CampaignRecord>,
    codes: Vec<Vec<VoucherRecord>>,
    model: Model,
}

impl History {
    async fn new(store: Arc<dyn Store>) -> History {
        let tenant_id = new_tenant(&store).await;
        let mut campaigns = Vec::new();
        let mut codes = Vec::new();
        for draft in drafts() {
            let campaign = live_campaign(&store, tenant_id, draft).await;
            codes.push(
                store
                    .vouchers_page(campaign.id, 0, 100)
                    .await
                    .expect("listing vouchers"),
            );
            campaigns.push(campaign);
        }
        let vouchers = codes
            .iter()
            .map(|list| {
                list.iter()
                    .map(|voucher| ModelVoucher {
                        rank: voucher.rank,
                        user: None,
                        claimed_at: None,
                        redemption: voucher.redemption(),
                    })
                    .collect()
            })
            .collect();
        History {
            model: Model {
                specs: campaigns
                    .iter()
                    .map(|campaign| campaign.spec.clone())
                    .collect(),
                vouchers,
                daily: HashSet::new(),
                now: at("2026-12-01T20:00:00Z"),
            },
            store,
            campaigns,
            codes,
        }
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.model.now;
        match op {
            Op::Claims(claims) => {
                let requests = claims
                    .iter()
                    .map(|&(campaign, user)| {
                        claim(&self.campaigns[campaign], &format!("user-{user}"), now)
                    })
                    .collect();
                let outcomes = self
                    .store
                    .claim_batch(requests, now)
                    .await
                    .expect("a claim batch");
                for (&(campaign, user), outcome) in claims.iter().zip(outcomes) {
                    let expected = self.model.claim(campaign, user);
                    prop_assert_eq!(
                        store_answer(outcome.expect("a claim")),
                        expected,
                        "{:?}",
                        op
                    );
                }
            }
            Op::Lock(index) | Op::Unlock(index) | Op::Redeem(index) => {
                let action = match op {
                    Op::Lock(_) => VoucherAction::Lock,
                    Op::Unlock(_) => VoucherAction::Unlock,
                    _ => VoucherAction::Redeem,
                };
                let expected = self.model.act(*index, action);
                let target = self.target(*index);
                let outcome = self
                    .store
                    .act_on_voucher(&target, action, now)
                    .await
                    .expect("a voucher action");
                prop_assert_eq!(voucher_answer(outcome), expected, "{:?}", op);
            }
            Op::Advance { minutes } => {
                self.model.now = now
                    .checked_add(SignedDuration::from_mins(*minutes))
                    .expect("a test clock in range");
            }
            Op::ExpireLocks => {
                // The sweep is global and other histories share the store,
                // so it may expire more than this history's locks; the state
                // comparison below checks this history's.
                let expired = self
                    .store
                    .expire_locks(now, 100_000)
                    .await
                    .expect("expiring locks");
                let Answer::Expired(expected) = self.model.expire_locks() else {
                    unreachable!("the model's sweep answers a count")
                };
                prop_assert!(
                    expired >= expected,
                    "{} expired, the model expected {}",
                    expired,
                    expected
                );
            }
        }
        self.compare_state().await
    }

    fn target(&self, index: usize) -> VoucherTarget {
        let count: usize = self.codes.iter().map(Vec::len).sum();
        let (campaign, position) = voucher_at(&self.model.vouchers, index % count);
        let voucher = &self.codes[campaign][position];
        VoucherTarget {
            tenant_id: voucher.tenant_id,
            code: voucher.code.clone(),
            holder: None,
        }
    }

    /// The whole stored state equals the model's, and the invariants hold
    /// on what is stored.
    async fn compare_state(&self) -> Result<(), TestCaseError> {
        for (index, campaign) in self.campaigns.iter().enumerate() {
            let stored = self
                .store
                .vouchers_page(campaign.id, 0, 100)
                .await
                .expect("listing vouchers");
            let supply = campaign
                .spec
                .supply
                .limit()
                .expect("limited test campaigns");
            let ranks: Vec<u32> = stored.iter().map(|voucher| voucher.rank).collect();
            prop_assert_eq!(
                ranks,
                (1..=supply).collect::<Vec<_>>(),
                "each rank exactly once, none past the supply"
            );
            for index in 0..USERS {
                let name = user(&format!("user-{index}"));
                let held = stored
                    .iter()
                    .filter(|voucher| voucher.user_id.as_ref() == Some(&name))
                    .count();
                prop_assert!(
                    held <= campaign.spec.per_user_limit as usize,
                    "user over their limit"
                );
            }
            for (voucher, model) in stored.iter().zip(&self.model.vouchers[index]) {
                prop_assert!(voucher.redemptions <= voucher.redemptions_max);
                prop_assert_eq!(
                    voucher.redemption(),
                    model.redemption,
                    "rank {}",
                    voucher.rank
                );
                let model_user = model.user.map(|index| user(&format!("user-{index}")));
                prop_assert_eq!(&voucher.user_id, &model_user);
                prop_assert_eq!(voucher.claimed_at, model.claimed_at);
            }
        }
        let mut per_day: HashSet<(String, Date)> = HashSet::new();
        for (index, campaign) in self.campaigns.iter().enumerate().skip(1) {
            for voucher in self
                .store
                .vouchers_page(campaign.id, 0, 100)
                .await
                .expect("listing")
                .iter()
            {
                if let (Some(user), Some(claimed_at)) = (&voucher.user_id, voucher.claimed_at) {
                    let day = self.model.specs[index]
                        .daily_key(&TimeZone::UTC, claimed_at)
                        .expect("a daily campaign")
                        .day;
                    prop_assert!(
                        per_day.insert((user.to_string(), day)),
                        "two vouchers of the daily group on one day"
                    );
                }
            }
        }
        Ok(())
    }
}

pub async fn check_random_histories(store: Arc<dyn Store>) {
    let seed = std::env::var("VOUCHERD_MODEL_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
        .unwrap_or_else(|| {
            let mut bytes = [0; 8];
            getrandom::fill(&mut bytes).expect("a random seed");
            u64::from_le_bytes(bytes)
        });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES_DEFAULT);
    eprintln!(
        "reference model: {cases} histories, seed {seed} (VOUCHERD_MODEL_SEED={seed} replays them)"
    );
    let mut seed_bytes = [0; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let runtime = tokio::runtime::Handle::current();
    let histories = prop::collection::vec(op(), 1..50);
    let result = tokio::task::block_in_place(|| {
        runner.run(&histories, |ops| {
            runtime.block_on(async {
                let mut history = History::new(store.clone()).await;
                for op in &ops {
                    history.step(op).await?;
                }
                Ok(())
            })
        })
    });
    if let Err(failure) = result {
        panic!("the store disagrees with the model (seed {seed}): {failure}");
    }
}
