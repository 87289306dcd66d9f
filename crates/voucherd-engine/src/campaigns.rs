//! The engine's memory of campaigns: their rules, lifecycle and how many
//! vouchers are left, so that sold out, not started, ended and paused are
//! answered without touching the store.
//!
//! The store stays the authority. Memory may only be behind it in one
//! direction that is safe: it can think vouchers remain when none do (the
//! store then answers sold out and memory learns), never the reverse for
//! longer than a refresh.
//!
//! A count read from the store can be older than what this node already
//! learned from its own claims: a batch commits, the count is read (without
//! it), then the batch's claims are remembered. Taken as it is, that count
//! would subtract the batch twice and answer sold out while vouchers
//! remain. So a count read while claims of the campaign were at the store,
//! or while memory changed, may only raise memory's count, never lower it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use voucherd_core::Timestamp;
use voucherd_core::campaign::{CampaignSpec, CampaignStatus, ClaimRefusal, Lifecycle, Supply};
use voucherd_core::ids::{CampaignId, TenantId};
use voucherd_store::model::{Available, CampaignRecord, CampaignState};

/// `remaining` of an unlimited campaign.
const UNLIMITED: i64 = i64::MAX;

#[derive(Debug)]
pub struct CampaignEntry {
    /// The campaign as created; its lifecycle fields are kept in `state`.
    pub record: CampaignRecord,
    /// Lifecycle and size, which change after creation.
    state: RwLock<CampaignState>,
    /// Available vouchers as far as this node knows.
    remaining: AtomicI64,
    /// Claims sent to the store whose outcome memory has not learned yet.
    claims_at_store: AtomicI64,
    /// Bumped by every change memory makes to `remaining` from its own
    /// claims and releases.
    changes: AtomicU64,
    /// Held while the campaign is being published, so that two publishes
    /// of one campaign do not make its codes at once.
    pub(crate) publishing: Arc<tokio::sync::Mutex<()>>,
    /// Why the last publish on this node that went on after its answer
    /// did not make the campaign live.
    pub(crate) publish_failure: std::sync::Mutex<Option<String>>,
}

/// A consistent copy of a campaign's changing parts.
#[derive(Debug, Clone)]
pub struct CampaignView {
    pub record: CampaignRecord,
    pub lifecycle: Lifecycle,
    pub published_at: Option<Timestamp>,
    pub voucher_count: u32,
    /// `None` for an unlimited supply.
    pub remaining: Option<u64>,
    /// This node is making the campaign's codes to publish it.
    pub publishing: bool,
    /// Why a publish that went on after its answer stopped short.
    pub publish_failure: Option<String>,
}

impl CampaignView {
    pub fn status(&self, now: Timestamp) -> CampaignStatus {
        self.record.spec.status(self.lifecycle, now)
    }

    pub fn sold_out(&self) -> bool {
        self.remaining == Some(0)
    }
}

impl CampaignEntry {
    /// An entry for a stored campaign with `available` vouchers left.
    pub fn new(record: CampaignRecord, available: u64) -> CampaignEntry {
        let remaining = match record.spec.supply {
            Supply::Limited(_) => i64::try_from(available).unwrap_or(i64::MAX),
            Supply::Unlimited => UNLIMITED,
        };
        CampaignEntry {
            state: RwLock::new(CampaignState {
                id: record.id,
                lifecycle: record.lifecycle,
                published_at: record.published_at,
                voucher_count: record.voucher_count,
            }),
            record,
            remaining: AtomicI64::new(remaining),
            claims_at_store: AtomicI64::new(0),
            changes: AtomicU64::new(0),
            publishing: Arc::new(tokio::sync::Mutex::new(())),
            publish_failure: std::sync::Mutex::new(None),
        }
    }

    pub fn id(&self) -> CampaignId {
        self.record.id
    }

    pub fn tenant_id(&self) -> TenantId {
        self.record.tenant_id
    }

    pub fn spec(&self) -> &CampaignSpec {
        &self.record.spec
    }

    fn state(&self) -> CampaignState {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.state().lifecycle
    }

    pub fn sold_out(&self) -> bool {
        self.remaining.load(Ordering::Acquire) <= 0
    }

    /// Whether a claim may go to the store now, from memory alone.
    pub fn claimable(&self, now: Timestamp) -> Result<(), ClaimRefusal> {
        self.spec()
            .claimable(self.lifecycle(), self.sold_out(), now)
    }

    pub fn view(&self) -> CampaignView {
        let state = self.state();
        let remaining = match self.record.spec.supply {
            Supply::Limited(_) => Some(self.remaining.load(Ordering::Acquire).max(0) as u64),
            Supply::Unlimited => None,
        };
        let mut record = self.record.clone();
        record.lifecycle = state.lifecycle;
        record.published_at = state.published_at;
        record.voucher_count = state.voucher_count;
        CampaignView {
            record,
            lifecycle: state.lifecycle,
            published_at: state.published_at,
            voucher_count: state.voucher_count,
            remaining,
            publishing: self.publishing.try_lock().is_err(),
            publish_failure: self
                .publish_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    pub fn set_lifecycle(&self, lifecycle: Lifecycle, now: Timestamp) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.lifecycle = lifecycle;
        if lifecycle != Lifecycle::Draft && state.published_at.is_none() {
            state.published_at = Some(now);
        }
    }

    /// Takes the lifecycle and size another node gave the campaign.
    pub fn follow(&self, state: &CampaignState) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = state.clone();
    }

    pub(crate) fn set_publish_failure(&self, failure: Option<String>) {
        *self
            .publish_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = failure;
    }

    pub fn set_voucher_count(&self, voucher_count: u32) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .voucher_count = voucher_count;
    }

    /// Taken just before the store's count of available vouchers is read,
    /// and handed back with the count to `learn_available`.
    pub fn before_counting(&self) -> Counting {
        Counting {
            changes: self.changes.load(Ordering::Acquire),
            quiet: self.claims_at_store.load(Ordering::Acquire) == 0,
        }
    }

    /// Memory learns how many vouchers are available from the store: an
    /// exact count as it is when nothing of this node's moved while it was
    /// read, otherwise only if it is more than memory has. A bounded count
    /// that stopped says only "at least": memory that has less is behind,
    /// memory that has more is kept (on one node it is exact by itself; on
    /// several it lacks the others' claims only until fewer than the bound
    /// are left, when the count is exact again).
    pub fn learn_available(&self, available: Available, before: Counting) {
        if self.record.spec.supply == Supply::Unlimited {
            return;
        }
        let after = self.before_counting();
        match available {
            Available::Exactly(count) => {
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                if before.quiet && after.quiet && before.changes == after.changes {
                    self.remaining.store(count, Ordering::Release);
                } else {
                    self.remaining.fetch_max(count, Ordering::AcqRel);
                }
            }
            Available::AtLeast(count) => {
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                self.remaining.fetch_max(count, Ordering::AcqRel);
            }
        }
    }

    /// Claims of this campaign go to the store.
    pub fn sending_claim(&self) {
        self.claims_at_store.fetch_add(1, Ordering::AcqRel);
    }

    /// A claim sent to the store was decided (or failed), and what it did
    /// to `remaining` is already applied.
    pub fn claim_decided(&self) {
        self.claims_at_store.fetch_sub(1, Ordering::AcqRel);
    }

    /// A claim took a voucher.
    pub fn took_one(&self) {
        if self.record.spec.supply != Supply::Unlimited {
            self.remaining.fetch_sub(1, Ordering::AcqRel);
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Vouchers came back to the pool (released reservations).
    pub fn returned(&self, count: u64) {
        if self.record.spec.supply != Supply::Unlimited {
            self.remaining
                .fetch_add(i64::try_from(count).unwrap_or(i64::MAX), Ordering::AcqRel);
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The store found none left.
    pub fn ran_out(&self) {
        if self.record.spec.supply != Supply::Unlimited {
            self.remaining.store(0, Ordering::Release);
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// What `learn_available` needs to know of the moment a count was read.
#[derive(Debug, Clone, Copy)]
pub struct Counting {
    changes: u64,
    quiet: bool,
}

/// Every campaign by id.
#[derive(Debug, Default)]
pub struct CampaignBook {
    entries: RwLock<HashMap<CampaignId, Arc<CampaignEntry>>>,
}

impl CampaignBook {
    pub fn get(&self, id: CampaignId) -> Option<Arc<CampaignEntry>> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    pub fn insert(&self, entry: Arc<CampaignEntry>) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(entry.id(), entry);
    }

    /// The tenant's campaigns, oldest first.
    pub fn of_tenant(&self, tenant_id: TenantId) -> Vec<Arc<CampaignEntry>> {
        let mut entries: Vec<Arc<CampaignEntry>> = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|entry| entry.tenant_id() == tenant_id)
            .cloned()
            .collect();
        entries.sort_by_key(|entry| (entry.record.created_at, entry.id()));
        entries
    }

    /// Forgets campaigns that ended before `ended_before`, so that memory
    /// holds the campaigns that can still be claimed and those that ended
    /// within the last hour, not every campaign there ever was. A request
    /// for a forgotten one reads it from the store again. Answers how many
    /// were forgotten.
    pub fn evict_ended(&self, ended_before: Timestamp) -> usize {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let before = entries.len();
        entries.retain(|_, entry| {
            entry
                .spec()
                .ends_at
                .is_none_or(|ends_at| ends_at >= ended_before)
        });
        before - entries.len()
    }

    pub fn all(&self) -> Vec<Arc<CampaignEntry>> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use voucherd_core::campaign::CampaignDraft;

    use super::*;
    use voucherd_core::ids::uuid_at;

    fn entry(supply: i64) -> CampaignEntry {
        let now = Timestamp::now();
        let draft = CampaignDraft {
            name: Some("noon".into()),
            kind: Some("coupon".into()),
            supply: Some(Some(supply)),
            ..CampaignDraft::default()
        };
        let record = CampaignRecord {
            id: CampaignId::from_uuid(uuid_at(now)),
            tenant_id: TenantId::from_uuid(uuid_at(now)),
            spec: draft.validate().expect("a valid campaign"),
            lifecycle: Lifecycle::Live,
            voucher_count: supply as u32,
            created_at: now,
            published_at: Some(now),
        };
        CampaignEntry::new(record, supply as u64)
    }

    fn remaining(entry: &CampaignEntry) -> Option<u64> {
        entry.view().remaining
    }

    #[test]
    fn a_count_read_between_a_claims_commit_and_its_memory_does_not_count_it_twice() {
        let entry = entry(10);
        entry.sending_claim();
        // The claim commits in the store (9 left); the refresher reads 9
        // and lands before the batch's outcome is remembered.
        let before = entry.before_counting();
        entry.learn_available(Available::Exactly(9), before);
        entry.took_one();
        entry.claim_decided();
        assert_eq!(remaining(&entry), Some(9), "not 8: the claim counted once");
    }

    #[test]
    fn a_count_read_while_memory_moved_only_raises() {
        let entry = entry(10);
        let before = entry.before_counting();
        // Read 10; meanwhile this node's claim commits and is remembered.
        entry.sending_claim();
        entry.took_one();
        entry.claim_decided();
        entry.learn_available(Available::Exactly(10), before);
        assert_eq!(remaining(&entry), Some(10), "over, the safe side");
        // A release another node made is learned even while busy.
        entry.sending_claim();
        let before = entry.before_counting();
        entry.learn_available(Available::Exactly(12), before);
        assert_eq!(remaining(&entry), Some(12));
        entry.claim_decided();
    }

    #[test]
    fn a_quiet_count_is_taken_as_it_is() {
        let entry = entry(10);
        // Other nodes took seven.
        let before = entry.before_counting();
        entry.learn_available(Available::Exactly(3), before);
        assert_eq!(remaining(&entry), Some(3));
        assert!(!entry.sold_out());
        let before = entry.before_counting();
        entry.learn_available(Available::Exactly(0), before);
        assert!(entry.sold_out());
    }

    #[test]
    fn a_count_that_stopped_at_its_bound_only_raises() {
        let entry = entry(100);
        // This node took 95 of a hundred; the store has counted past the
        // bound of ten. Even a quiet count says only "at least eleven".
        for _ in 0..95 {
            entry.sending_claim();
            entry.took_one();
            entry.claim_decided();
        }
        let before = entry.before_counting();
        entry.learn_available(Available::AtLeast(11), before);
        assert_eq!(
            remaining(&entry),
            Some(11),
            "memory behind the store is raised"
        );
        assert!(!entry.sold_out());
        // Memory with more than the bound keeps what it has.
        let entry = self::entry(100);
        let before = entry.before_counting();
        entry.learn_available(Available::AtLeast(11), before);
        assert_eq!(remaining(&entry), Some(100));
        // Once fewer than the bound are left the count is exact again.
        let before = entry.before_counting();
        entry.learn_available(Available::Exactly(4), before);
        assert_eq!(remaining(&entry), Some(4));
    }
}
