//! voucherd's storage.
//!
//! - [`Store`] is the one interface the engine writes through: intent-level
//!   operations (`claim_batch`, `expire_locks`), each one transaction that
//!   enforces its limits with conditional statements and constraints.
//! - [`sqlite`] is the embedded default: one writer thread that commits
//!   whatever work has queued up in one transaction and one fsync, and a
//!   small pool of reader connections.
//! - [`postgres`] is for several nodes on one database: a bounded pool, and
//!   each batch of claims decided in one set-based statement that several
//!   nodes can run on one campaign at once.
//! - [`model`] holds the records and the outcomes of the operations.
//! - [`faults`] wraps any store to inject outages and count calls, for
//!   tests of the layers above.
//!
//! The schema of each backend makes oversell, a rank issued twice and a user
//! over their limit impossible even if the engine above had a bug: vouchers
//! are rows made before they are claimed, one per rank, and a user's holdings
//! are numbered `1..=per_user_limit` under a unique constraint.

mod entropy;
pub mod faults;
pub mod model;
pub mod postgres;
pub mod sqlite;
mod staging;
mod stats;
mod stored;

pub use entropy::OsEntropy;
pub use stats::{PoolStats, StoreStats, WriterStats};

use std::fmt;

use async_trait::async_trait;
use voucherd_core::campaign::Lifecycle;
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, OrderId, ReservationId, TenantId, UserId};
use voucherd_core::{SignedDuration, Timestamp};

use crate::model::{Account, Available, KeyRotation, PaymentBacklog, PublicKey, ShareRequest};
use crate::model::{
    AddCodesOutcome, AttemptKind, CampaignChanges, CampaignCounts, CampaignRecord, ChangeCursor,
    Checkout, CheckoutOutcome, ClaimOutcome, ClaimRequest, CodesLease, CommitOutcome,
    IdempotencyScope, LifecycleOutcome, OrderDetails, PaymentCounts, PaymentLease, PaymentStep,
    PaymentTask, ReleaseOutcome, StageOutcome, StoredResponse, Tenant, VoucherAction,
    VoucherOutcome, VoucherRecord, VoucherTarget,
};

/// Why a store operation failed, as opposed to the outcomes it answers with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; the caller may retry later.
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
    /// A constraint of the schema refused a write. The engine checks every
    /// limit first, so this is a bug caught by the last line of defence.
    #[error("the schema refused a write: {0}")]
    Constraint(String),
    /// A row that cannot be read back into its type.
    #[error("a stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Closed)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Staged rows one job removes at most, when an upload is discarded or
/// another's leftovers are cleared.
pub const STAGED_ROWS_PER_JOB: u32 = 2_000;

/// Everything the engine asks of a database. Every method takes `now` from
/// the caller; no backend reads the clock.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Whether every write waits behind one writer (the embedded store):
    /// admin work is then cut into slices of a short time, so that a claim
    /// waits behind one at most. Otherwise writes to other campaigns do not
    /// wait for a slice, and a slice is as large as a bounded transaction.
    fn one_writer(&self) -> bool {
        false
    }

    /// The backend's bounds as they stand, from counters in memory (no
    /// query): for the metrics, read at each scrape.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    /// The payments waiting for a gateway: how many are due now, how long
    /// the oldest due one has waited, how many are being worked on. One
    /// indexed read.
    async fn payment_backlog(&self, now: Timestamp) -> StoreResult<PaymentBacklog>;

    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    /// Every tenant, with its current key and its retired ones.
    async fn tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Makes `rotation.signing_key` the tenant's current key, keeping the
    /// one it replaces as retired at `rotation.now`; `false` when there is
    /// no such tenant or its current key is not `rotation.replacing`.
    async fn rotate_tenant_key(&self, rotation: &KeyRotation) -> StoreResult<bool>;
    /// The tenant's registered public keys become exactly `keys`; `false`
    /// when there is no such tenant.
    async fn set_tenant_public_keys(
        &self,
        tenant_id: TenantId,
        keys: &[PublicKey],
    ) -> StoreResult<bool>;
    /// `false` when there is no such tenant.
    async fn set_tenant_rate_limit(
        &self,
        tenant_id: TenantId,
        rate_limit_per_second: Option<u32>,
    ) -> StoreResult<bool>;

    /// Adds an account unless its email is taken in its tenant; answers
    /// whether it was added.
    async fn insert_account(&self, account: &Account) -> StoreResult<bool>;
    /// The tenant's account with this (lower-cased) email.
    async fn account(&self, tenant_id: TenantId, email: &str) -> StoreResult<Option<Account>>;

    async fn insert_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()>;
    async fn campaign(&self, id: CampaignId) -> StoreResult<Option<CampaignRecord>>;
    /// Every campaign, for the engine's memory.
    async fn campaigns(&self) -> StoreResult<Vec<CampaignRecord>>;
    /// The tenant's campaigns, oldest first.
    async fn campaigns_of(&self, tenant_id: TenantId) -> StoreResult<Vec<CampaignRecord>>;
    /// The tenant's published `first_login` campaigns: what a login claims.
    async fn first_login_campaigns(&self, tenant_id: TenantId) -> StoreResult<Vec<CampaignId>>;
    /// The lifecycle and size of every campaign changed since `since`
    /// (every campaign with `None`): what a node needs to follow the others,
    /// without reading the campaigns nothing changed.
    async fn campaign_changes(&self, since: Option<ChangeCursor>) -> StoreResult<CampaignChanges>;
    /// How many vouchers of each campaign are available now, counting at
    /// most `counted_max + 1` of each: a campaign with more answers
    /// `AtLeast(counted_max + 1)`. The engine asks this of every running
    /// campaign twice a second; bounded, that costs the same for a campaign
    /// of five million vouchers as for one of a thousand, and it is exact
    /// where exactness matters, near sold out.
    async fn available_counts(
        &self,
        campaign_ids: &[CampaignId],
        counted_max: u64,
    ) -> StoreResult<Vec<(CampaignId, Available)>>;
    /// Adds codes to a draft campaign as vouchers of the next ranks, all or
    /// nothing; codes the tenant already has are reported, not added. One
    /// slice staged and committed in one job (one transaction) under a
    /// lease of its own: for codes few enough for one job (a publish's
    /// generated slices, tests). An interrupted upload holding the
    /// campaign past its lease is cleared first.
    async fn add_codes(
        &self,
        campaign_id: CampaignId,
        codes: &[VoucherCode],
        now: Timestamp,
    ) -> StoreResult<AddCodesOutcome>;
    /// Stages one slice of the upload `lease` holds (taking the campaign
    /// when it is free or its holder's lease ran out, renewing it when it is
    /// the lease's own): the slice's new codes become vouchers past the
    /// campaign's `voucher_count` and what was staged before, seen by
    /// nobody and counted only by [`Store::commit_codes`]. Codes the tenant
    /// already has, or that came twice, are reported and not staged. With
    /// how long the database worked on the slice, its turn not counted:
    /// what the next slice is sized from.
    async fn stage_codes(
        &self,
        campaign_id: CampaignId,
        lease: CodesLease,
        codes: &[VoucherCode],
    ) -> StoreResult<(StageOutcome, std::time::Duration)>;
    /// Counts what `lease` staged and frees the campaign: an upload's
    /// commit, one small write.
    async fn commit_codes(
        &self,
        campaign_id: CampaignId,
        lease: uuid::Uuid,
    ) -> StoreResult<CommitOutcome>;
    /// Removes up to `limit` of the rows `lease` staged; `true` once none is
    /// left and the campaign is free (or was taken by another upload, which
    /// removes them itself).
    async fn discard_codes(
        &self,
        campaign_id: CampaignId,
        lease: uuid::Uuid,
        limit: u32,
    ) -> StoreResult<bool>;
    /// Moves a campaign from `from` to `to`; publishing also requires the
    /// whole supply of codes.
    async fn change_lifecycle(
        &self,
        campaign_id: CampaignId,
        from: Lifecycle,
        to: Lifecycle,
        now: Timestamp,
    ) -> StoreResult<LifecycleOutcome>;

    /// Decides a batch of claims in one transaction, in order: the first
    /// claim gets the lowest free rank. One answer per claim; a claim that
    /// fails alone does not fail the others.
    async fn claim_batch(
        &self,
        claims: Vec<ClaimRequest>,
        now: Timestamp,
    ) -> StoreResult<Vec<StoreResult<ClaimOutcome>>>;

    async fn vouchers_of_user(
        &self,
        tenant_id: TenantId,
        user_id: &UserId,
    ) -> StoreResult<Vec<VoucherRecord>>;
    /// Vouchers of a campaign in rank order, after `after_rank`.
    async fn vouchers_page(
        &self,
        campaign_id: CampaignId,
        after_rank: u32,
        limit: u32,
    ) -> StoreResult<Vec<VoucherRecord>>;
    async fn act_on_voucher(
        &self,
        target: &VoucherTarget,
        action: VoucherAction,
        now: Timestamp,
    ) -> StoreResult<VoucherOutcome>;
    /// Returns locks past their time to issued, at most `limit` of them;
    /// answers how many.
    async fn expire_locks(&self, now: Timestamp, limit: u32) -> StoreResult<u32>;

    /// Counts by state, by the given inclusive rank ranges, and claims per
    /// second.
    async fn campaign_counts(
        &self,
        campaign_id: CampaignId,
        rank_ranges: &[(u32, u32)],
    ) -> StoreResult<CampaignCounts>;

    /// A reservation's voucher, by the reservation's id (also after it was
    /// paid, when the voucher is issued).
    async fn reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
    ) -> StoreResult<Option<VoucherRecord>>;
    /// Opens the order and queues its payment, in one transaction with the
    /// checks: the reservation is the caller's, live, and not being paid.
    async fn begin_checkout(
        &self,
        checkout: &Checkout,
        now: Timestamp,
    ) -> StoreResult<CheckoutOutcome>;
    /// Returns a reservation's voucher to the pool, unless it is being paid.
    async fn release_reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
        holder: Option<&UserId>,
    ) -> StoreResult<ReleaseOutcome>;
    /// Returns reservations past their time to the pool, at most `limit`,
    /// skipping those being paid; answers the campaign of each.
    async fn release_expired_reservations(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CampaignId>>;
    /// Takes up to `limit` due payments for this node for `lease`; a payment
    /// whose lease ran out is due again, its unfinished call marked
    /// interrupted.
    async fn lease_payments(
        &self,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
    ) -> StoreResult<Vec<PaymentTask>>;
    /// Records a gateway call about to leave; a charge pins the payment to
    /// its gateway. `None` when the lease was lost.
    async fn start_attempt(
        &self,
        lease: &PaymentLease,
        gateway: &str,
        kind: AttemptKind,
        now: Timestamp,
    ) -> StoreResult<Option<u32>>;
    /// Records how the call ended and settles or requeues the payment; a
    /// paid order issues its voucher in the same transaction. `false` when
    /// the lease was lost.
    async fn finish_payment(
        &self,
        lease: &PaymentLease,
        step: &PaymentStep,
        now: Timestamp,
    ) -> StoreResult<bool>;
    async fn order(
        &self,
        tenant_id: TenantId,
        order_id: OrderId,
        holder: Option<&UserId>,
    ) -> StoreResult<Option<OrderDetails>>;
    async fn payment_counts(&self, campaign_id: CampaignId) -> StoreResult<PaymentCounts>;

    async fn stored_response(
        &self,
        scope: &IdempotencyScope,
    ) -> StoreResult<Option<StoredResponse>>;
    /// Keeps `response` unless one is stored under the scope already; answers
    /// the one that is kept, so that of two racing requests both answer alike.
    async fn store_response(
        &self,
        scope: &IdempotencyScope,
        response: &StoredResponse,
    ) -> StoreResult<StoredResponse>;
    /// Forgets responses stored before `before`, at most `limit`.
    async fn forget_responses(&self, before: Timestamp, limit: u32) -> StoreResult<u32>;

    /// Grants this node its share of a gateway's rate as
    /// [`voucherd_core::share::share_of`] decides from the rows still
    /// counted, records the grant and answers it. Requests for one gateway
    /// are decided one at a time, across every node.
    async fn share_gateway(&self, request: &ShareRequest) -> StoreResult<u32>;
}
