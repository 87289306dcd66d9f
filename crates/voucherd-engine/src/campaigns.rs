//! The engine's memory of campaigns: their rules, lifecycle and how many
//! vouchers are left, so that sold out, not started, ended and paused are
//! answered without touching the store.
//!
//! The store stays the authority. Memory may only be behind it in one
//! direction that is safe: it can think vouchers remain when none do (the
//! store then answers sold out and memory learns), never the reverse for
//! longer than a refresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use voucherd_core::Timestamp;
use voucherd_core::campaign::{CampaignSpec, CampaignStatus, ClaimRefusal, Lifecycle, Supply};
use voucherd_core::ids::{CampaignId, TenantId};
use voucherd_store::model::{CampaignRecord, CampaignState};

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
    /// Held while the campaign is being published, so that two publishes
    /// of one campaign do not make its codes at once.
    pub(crate) publishing: tokio::sync::Mutex<()>,
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
            publishing: tokio::sync::Mutex::new(()),
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

    pub fn set_voucher_count(&self, voucher_count: u32) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .voucher_count = voucher_count;
    }

    /// Memory learns how many vouchers are available from the store.
    pub fn set_available(&self, available: u64) {
        if self.record.spec.supply != Supply::Unlimited {
            self.remaining.store(
                i64::try_from(available).unwrap_or(i64::MAX),
                Ordering::Release,
            );
        }
    }

    /// A claim took a voucher.
    pub fn took_one(&self) {
        if self.record.spec.supply != Supply::Unlimited {
            self.remaining.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Vouchers came back to the pool (released reservations).
    pub fn returned(&self, count: u64) {
        if self.record.spec.supply != Supply::Unlimited {
            self.remaining
                .fetch_add(i64::try_from(count).unwrap_or(i64::MAX), Ordering::AcqRel);
        }
    }

    /// The store found none left.
    pub fn ran_out(&self) {
        self.set_available(0);
    }
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

    pub fn all(&self) -> Vec<Arc<CampaignEntry>> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}
