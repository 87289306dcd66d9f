//! The embedded SQLite backend: one database file in WAL mode with
//! `synchronous = FULL`, one writer thread committing in groups, and a few
//! reader connections.

mod accounts;
mod campaigns;
mod checkpointer;
mod claims;
mod connection;
mod idempotency;
mod payments;
mod readers;
mod rows;
mod shares;
mod tenants;
mod vouchers;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use voucherd_core::campaign::Lifecycle;
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, OrderId, ReservationId, TenantId, UserId};
use voucherd_core::{SignedDuration, Timestamp};

use self::connection::database;
use self::readers::Readers;
use self::writer::Writer;
use crate::model::{Account, Available, KeyRotation, PaymentBacklog, PublicKey, ShareRequest};
use crate::model::{
    AddCodesOutcome, AttemptKind, CampaignChanges, CampaignCounts, CampaignRecord, ChangeCursor,
    Checkout, CheckoutOutcome, ClaimOutcome, ClaimRequest, CodesLease, CommitOutcome,
    IdempotencyScope, LifecycleOutcome, OrderDetails, PaymentCounts, PaymentLease, PaymentStep,
    PaymentTask, ReleaseOutcome, StageOutcome, StoredResponse, Tenant, VoucherAction,
    VoucherOutcome, VoucherRecord, VoucherTarget,
};
use crate::{Store, StoreError, StoreResult, StoreStats};

/// Kept here too for callers that found it here first.
pub use crate::OsEntropy;

/// How an SQLite store is opened.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    /// Read-only connections for listings and reports.
    pub readers: usize,
    /// Write jobs committed together at most; each job may itself be a
    /// batch of claims.
    pub write_group_max: usize,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> SqliteConfig {
        SqliteConfig {
            path: path.into(),
            readers: 4,
            write_group_max: 64,
        }
    }
}

#[derive(Debug)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    _checkpointer: checkpointer::Checkpointer,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(config: &SqliteConfig) -> StoreResult<SqliteStore> {
        let mut write_connection = connection::open_writer(&config.path)?;
        let applied = connection::migrate(&mut write_connection)?;
        if !applied.is_empty() {
            tracing::info!(path = %config.path.display(), ?applied, "applied SQLite migrations");
        }
        let checkpointer = checkpointer::Checkpointer::start(&config.path)?;
        Ok(SqliteStore {
            writer: Writer::start(write_connection, config.write_group_max)?,
            readers: Readers::open(config.path.clone(), config.readers)?,
            _checkpointer: checkpointer,
        })
    }

    /// Ends the lease of every upload holding a campaign, for the process
    /// that is about to be the file's only writer: what holds one now was
    /// interrupted. Answers how many campaigns were held.
    pub async fn free_interrupted_uploads(&self) -> StoreResult<usize> {
        self.writer
            .run(|connection| {
                connection
                    .execute(
                        "UPDATE campaigns SET upload_until = 0 WHERE upload_id IS NOT NULL",
                        [],
                    )
                    .map_err(connection::database)
            })
            .await
    }

    /// Applies pending migrations without serving; answers the versions applied.
    pub fn migrate(path: &Path) -> StoreResult<Vec<i64>> {
        connection::migrate(&mut connection::open_writer(path)?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn one_writer(&self) -> bool {
        true
    }

    async fn ping(&self) -> StoreResult<()> {
        self.readers
            .run(|connection| {
                connection
                    .query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(database)
            })
            .await
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            sqlite_writer: Some(self.writer.stats()),
            postgres_pool: None,
        }
    }

    async fn payment_backlog(&self, now: Timestamp) -> StoreResult<PaymentBacklog> {
        self.readers
            .run(move |connection| payments::backlog(connection, now))
            .await
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let tenant = tenant.clone();
        self.writer
            .run(move |connection| tenants::insert(connection, &tenant))
            .await
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.readers.run(tenants::all).await
    }

    async fn rotate_tenant_key(&self, rotation: &KeyRotation) -> StoreResult<bool> {
        let rotation = rotation.clone();
        self.writer
            .run(move |connection| tenants::rotate_key(connection, &rotation))
            .await
    }

    async fn set_tenant_public_keys(
        &self,
        tenant_id: TenantId,
        keys: &[PublicKey],
    ) -> StoreResult<bool> {
        let keys = keys.to_vec();
        self.writer
            .run(move |connection| tenants::set_public_keys(connection, tenant_id, &keys))
            .await
    }

    async fn set_tenant_rate_limit(
        &self,
        tenant_id: TenantId,
        rate_limit_per_second: Option<u32>,
    ) -> StoreResult<bool> {
        self.writer
            .run(move |connection| {
                tenants::set_rate_limit(connection, tenant_id, rate_limit_per_second)
            })
            .await
    }

    async fn insert_account(&self, account: &Account) -> StoreResult<bool> {
        let account = account.clone();
        self.writer
            .run(move |connection| accounts::insert(connection, &account))
            .await
    }

    async fn account(&self, tenant_id: TenantId, email: &str) -> StoreResult<Option<Account>> {
        let email = email.to_owned();
        self.readers
            .run(move |connection| accounts::by_email(connection, tenant_id, &email))
            .await
    }

    async fn insert_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()> {
        let campaign = campaign.clone();
        self.writer
            .run(move |connection| campaigns::insert(connection, &campaign))
            .await
    }

    async fn campaign(&self, id: CampaignId) -> StoreResult<Option<CampaignRecord>> {
        self.readers
            .run(move |connection| {
                let id = id.to_string();
                Ok(campaigns::select(connection, "id = ?1", &[&id])?.pop())
            })
            .await
    }

    async fn campaigns(&self) -> StoreResult<Vec<CampaignRecord>> {
        self.readers
            .run(|connection| campaigns::select(connection, "1 = 1", &[]))
            .await
    }

    async fn campaigns_of(&self, tenant_id: TenantId) -> StoreResult<Vec<CampaignRecord>> {
        self.readers
            .run(move |connection| {
                let tenant_id = tenant_id.to_string();
                campaigns::select(connection, "tenant_id = ?1", &[&tenant_id])
            })
            .await
    }

    async fn first_login_campaigns(&self, tenant_id: TenantId) -> StoreResult<Vec<CampaignId>> {
        self.readers
            .run(move |connection| campaigns::first_login(connection, tenant_id))
            .await
    }

    async fn campaign_changes(&self, since: Option<ChangeCursor>) -> StoreResult<CampaignChanges> {
        self.readers
            .run(move |connection| campaigns::changes(connection, since))
            .await
    }

    async fn available_counts(
        &self,
        campaign_ids: &[CampaignId],
        counted_max: u64,
    ) -> StoreResult<Vec<(CampaignId, Available)>> {
        let campaign_ids = campaign_ids.to_vec();
        self.readers
            .run(move |connection| {
                campaigns::available_counts(connection, &campaign_ids, counted_max)
            })
            .await
    }

    async fn add_codes(
        &self,
        campaign_id: CampaignId,
        codes: &[VoucherCode],
        now: Timestamp,
    ) -> StoreResult<AddCodesOutcome> {
        let codes = codes.to_vec();
        self.writer
            .run(move |connection| campaigns::add_codes(connection, campaign_id, &codes, now))
            .await
    }

    async fn stage_codes(
        &self,
        campaign_id: CampaignId,
        lease: CodesLease,
        codes: &[VoucherCode],
    ) -> StoreResult<(StageOutcome, std::time::Duration)> {
        let codes = codes.to_vec();
        self.writer
            .run(move |connection| {
                let started = std::time::Instant::now();
                let staged = campaigns::stage_codes(connection, campaign_id, &lease, &codes)?;
                Ok((staged, started.elapsed()))
            })
            .await
    }

    async fn commit_codes(
        &self,
        campaign_id: CampaignId,
        lease: uuid::Uuid,
    ) -> StoreResult<CommitOutcome> {
        self.writer
            .run(move |connection| campaigns::commit_codes(connection, campaign_id, lease))
            .await
    }

    async fn discard_codes(
        &self,
        campaign_id: CampaignId,
        lease: uuid::Uuid,
        limit: u32,
    ) -> StoreResult<bool> {
        self.writer
            .run(move |connection| campaigns::discard_codes(connection, campaign_id, lease, limit))
            .await
    }

    async fn change_lifecycle(
        &self,
        campaign_id: CampaignId,
        from: Lifecycle,
        to: Lifecycle,
        now: Timestamp,
    ) -> StoreResult<LifecycleOutcome> {
        self.writer
            .run(move |connection| {
                campaigns::change_lifecycle(connection, campaign_id, from, to, now)
            })
            .await
    }

    async fn claim_batch(
        &self,
        claims: Vec<ClaimRequest>,
        now: Timestamp,
    ) -> StoreResult<Vec<StoreResult<ClaimOutcome>>> {
        let claims = Arc::new(claims);
        let all = claims.clone();
        match self
            .writer
            .run(move |connection| claims::claim_all(connection, &all, now))
            .await
        {
            Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
            Err(StoreError::Closed) => Err(StoreError::Closed),
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "a claim batch failed as a whole; deciding its claims one by one"
                );
                self.writer
                    .run(move |connection| Ok(claims::claim_each(connection, &claims, now)))
                    .await
            }
        }
    }

    async fn vouchers_of_user(
        &self,
        tenant_id: TenantId,
        user_id: &UserId,
    ) -> StoreResult<Vec<VoucherRecord>> {
        let user_id = user_id.clone();
        self.readers
            .run(move |connection| vouchers::of_user(connection, tenant_id, &user_id))
            .await
    }

    async fn vouchers_page(
        &self,
        campaign_id: CampaignId,
        after_rank: u32,
        limit: u32,
    ) -> StoreResult<Vec<VoucherRecord>> {
        self.readers
            .run(move |connection| vouchers::page(connection, campaign_id, after_rank, limit))
            .await
    }

    async fn act_on_voucher(
        &self,
        target: &VoucherTarget,
        action: VoucherAction,
        now: Timestamp,
    ) -> StoreResult<VoucherOutcome> {
        let target = target.clone();
        self.writer
            .run(move |connection| vouchers::act(connection, &target, action, now))
            .await
    }

    async fn expire_locks(&self, now: Timestamp, limit: u32) -> StoreResult<u32> {
        self.writer
            .run(move |connection| vouchers::expire_locks(connection, now, limit))
            .await
    }

    async fn campaign_counts(
        &self,
        campaign_id: CampaignId,
        rank_ranges: &[(u32, u32)],
    ) -> StoreResult<CampaignCounts> {
        let rank_ranges = rank_ranges.to_vec();
        self.readers
            .run(move |connection| campaigns::counts(connection, campaign_id, &rank_ranges))
            .await
    }

    async fn reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
    ) -> StoreResult<Option<VoucherRecord>> {
        self.readers
            .run(move |connection| payments::reservation(connection, tenant_id, reservation_id))
            .await
    }

    async fn begin_checkout(
        &self,
        checkout: &Checkout,
        now: Timestamp,
    ) -> StoreResult<CheckoutOutcome> {
        let checkout = checkout.clone();
        self.writer
            .run(move |connection| payments::begin_checkout(connection, &checkout, now))
            .await
    }

    async fn release_reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
        holder: Option<&UserId>,
    ) -> StoreResult<ReleaseOutcome> {
        let holder = holder.cloned();
        self.writer
            .run(move |connection| {
                payments::release_reservation(
                    connection,
                    tenant_id,
                    reservation_id,
                    holder.as_ref(),
                )
            })
            .await
    }

    async fn release_expired_reservations(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CampaignId>> {
        self.writer
            .run(move |connection| payments::release_expired(connection, now, limit))
            .await
    }

    async fn lease_payments(
        &self,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
    ) -> StoreResult<Vec<PaymentTask>> {
        self.writer
            .run(move |connection| payments::lease(connection, now, lease, limit))
            .await
    }

    async fn start_attempt(
        &self,
        lease: &PaymentLease,
        gateway: &str,
        kind: AttemptKind,
        now: Timestamp,
    ) -> StoreResult<Option<u32>> {
        let (lease, gateway) = (lease.clone(), gateway.to_owned());
        self.writer
            .run(move |connection| payments::start_attempt(connection, &lease, &gateway, kind, now))
            .await
    }

    async fn finish_payment(
        &self,
        lease: &PaymentLease,
        step: &PaymentStep,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (lease, step) = (lease.clone(), step.clone());
        self.writer
            .run(move |connection| payments::finish(connection, &lease, &step, now))
            .await
    }

    async fn order(
        &self,
        tenant_id: TenantId,
        order_id: OrderId,
        holder: Option<&UserId>,
    ) -> StoreResult<Option<OrderDetails>> {
        let holder = holder.cloned();
        self.readers
            .run(move |connection| {
                payments::details(connection, tenant_id, order_id, holder.as_ref())
            })
            .await
    }

    async fn payment_counts(&self, campaign_id: CampaignId) -> StoreResult<PaymentCounts> {
        self.readers
            .run(move |connection| payments::counts(connection, campaign_id))
            .await
    }

    async fn stored_response(
        &self,
        scope: &IdempotencyScope,
    ) -> StoreResult<Option<StoredResponse>> {
        let scope = scope.clone();
        self.readers
            .run(move |connection| idempotency::find(connection, &scope))
            .await
    }

    async fn store_response(
        &self,
        scope: &IdempotencyScope,
        response: &StoredResponse,
    ) -> StoreResult<StoredResponse> {
        let (scope, response) = (scope.clone(), response.clone());
        self.writer
            .run(move |connection| idempotency::keep(connection, &scope, &response))
            .await
    }

    async fn forget_responses(&self, before: Timestamp, limit: u32) -> StoreResult<u32> {
        self.writer
            .run(move |connection| idempotency::forget(connection, before, limit))
            .await
    }

    async fn share_gateway(&self, request: &ShareRequest) -> StoreResult<u32> {
        let request = request.clone();
        self.writer
            .run(move |connection| shares::share(connection, &request))
            .await
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        database(error)
    }
}
