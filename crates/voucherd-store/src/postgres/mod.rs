//! The PostgreSQL backend, for several stateless nodes on one database: a
//! bounded pool of pipelined connections (tokio-postgres' binary protocol),
//! every operation one statement where it can be, and claims decided a
//! batch per statement with `FOR UPDATE SKIP LOCKED` so that nodes claiming
//! from one campaign do not queue behind each other.
//!
//! - `connection`: pools, error sorting and migrations.
//! - `claims` with `claim_batch.sql`: deciding claims.
//! - `payments`: checkout, the payment queue nodes lease from, settlement.
//! - `campaigns`, `vouchers`, `idempotency`: the other operations.
//! - `rows`: rows to records.

mod accounts;
mod campaigns;
mod claims;
mod connection;
mod idempotency;
mod payments;
mod rows;
mod shares;
mod tenants;
mod vouchers;

use std::time::Duration;

use async_trait::async_trait;
use voucherd_core::campaign::Lifecycle;
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, OrderId, ReservationId, TenantId, UserId};
use voucherd_core::{SignedDuration, Timestamp};

use self::connection::{Pools, Side, database};
use crate::model::{Account, Available, KeyRotation, PaymentBacklog, PublicKey, ShareRequest};
use crate::model::{
    AddCodesOutcome, AttemptKind, CampaignChanges, CampaignCounts, CampaignRecord, ChangeCursor,
    Checkout, CheckoutOutcome, ClaimOutcome, ClaimRequest, CodesLease, CommitOutcome,
    IdempotencyScope, LifecycleOutcome, OrderDetails, PaymentCounts, PaymentLease, PaymentStep,
    PaymentTask, ReleaseOutcome, StageOutcome, StoredResponse, Tenant, VoucherAction,
    VoucherOutcome, VoucherRecord, VoucherTarget,
};
use crate::{Store, StoreError, StoreResult, StoreStats};

/// How a PostgreSQL store connects.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// A `postgres://` URL or `key=value` string. Several hosts with
    /// `target_session_attrs=read-write` follow a failover to whichever is
    /// primary; settings in the URL win over the timeouts below.
    pub url: String,
    /// A replica for reports and exports, which tolerate its lag; `None`
    /// reads everything from `url`. What a user acts on next (their
    /// vouchers, stored responses, campaigns) is always read from `url`.
    pub read_url: Option<String>,
    /// Connections per pool at most (the replica has its own pool).
    pub pool_max: usize,
    /// How long a caller waits for a free connection before the store
    /// answers Unavailable.
    pub pool_wait_timeout: Duration,
    /// How long connecting to one host may take.
    pub connect_timeout: Duration,
    /// How long the server lets one statement run (`statement_timeout`);
    /// a claim waiting on another node's transaction waits at most this.
    pub query_timeout: Duration,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            read_url: None,
            pool_max: 16,
            pool_wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub struct PostgresStore {
    pools: Pools,
}

impl PostgresStore {
    /// Migrates the database (safe with several nodes starting at once) and
    /// opens the pools. Fails with Unavailable when the database cannot be
    /// reached; once connected, the store reconnects by itself.
    pub async fn connect(config: &PostgresConfig) -> StoreResult<PostgresStore> {
        let applied = migrate(config).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied PostgreSQL migrations");
        }
        Ok(PostgresStore {
            pools: Pools::open(config)?,
        })
    }

    /// Closes the pools: connections in use finish their work, then every
    /// connection is closed and later calls answer Closed.
    pub fn close(&self) {
        self.pools.close();
    }
}

/// Applies pending migrations without serving; answers the versions applied.
pub async fn migrate(config: &PostgresConfig) -> StoreResult<Vec<i64>> {
    connection::migrate(config).await
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.pools
            .run(Side::Primary, async |client| {
                client.simple_query("SELECT 1").await.map_err(database)?;
                Ok(())
            })
            .await
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            sqlite_writer: None,
            postgres_pool: Some(self.pools.stats()),
        }
    }

    async fn payment_backlog(&self, now: Timestamp) -> StoreResult<PaymentBacklog> {
        self.pools
            .run(Side::Primary, async |client| {
                payments::backlog(client, now).await
            })
            .await
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        self.pools
            .run(Side::Primary, async |client| {
                tenants::insert(client, tenant).await
            })
            .await
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.pools
            .run(Side::Primary, async |client| tenants::all(client).await)
            .await
    }

    async fn rotate_tenant_key(&self, rotation: &KeyRotation) -> StoreResult<bool> {
        self.pools
            .transaction(async |transaction| tenants::rotate_key(transaction, rotation).await)
            .await
    }

    async fn set_tenant_public_keys(
        &self,
        tenant_id: TenantId,
        keys: &[PublicKey],
    ) -> StoreResult<bool> {
        self.pools
            .transaction(async |transaction| {
                tenants::set_public_keys(transaction, tenant_id, keys).await
            })
            .await
    }

    async fn set_tenant_rate_limit(
        &self,
        tenant_id: TenantId,
        rate_limit_per_second: Option<u32>,
    ) -> StoreResult<bool> {
        self.pools
            .run(Side::Primary, async |client| {
                tenants::set_rate_limit(client, tenant_id, rate_limit_per_second).await
            })
            .await
    }

    async fn insert_account(&self, account: &Account) -> StoreResult<bool> {
        self.pools
            .run(Side::Primary, async |client| {
                accounts::insert(client, account).await
            })
            .await
    }

    async fn account(&self, tenant_id: TenantId, email: &str) -> StoreResult<Option<Account>> {
        self.pools
            .run(Side::Primary, async |client| {
                accounts::by_email(client, tenant_id, email).await
            })
            .await
    }

    async fn insert_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()> {
        self.pools
            .run(Side::Primary, async |client| {
                campaigns::insert(client, campaign).await
            })
            .await
    }

    async fn campaign(&self, id: CampaignId) -> StoreResult<Option<CampaignRecord>> {
        self.pools
            .run(Side::Primary, async |client| {
                Ok(campaigns::select(client, Some(id), None).await?.pop())
            })
            .await
    }

    async fn campaigns(&self) -> StoreResult<Vec<CampaignRecord>> {
        self.pools
            .run(Side::Primary, async |client| {
                campaigns::select(client, None, None).await
            })
            .await
    }

    async fn campaigns_of(&self, tenant_id: TenantId) -> StoreResult<Vec<CampaignRecord>> {
        self.pools
            .run(Side::Primary, async |client| {
                campaigns::select(client, None, Some(tenant_id)).await
            })
            .await
    }

    async fn first_login_campaigns(&self, tenant_id: TenantId) -> StoreResult<Vec<CampaignId>> {
        self.pools
            .run(Side::Primary, async |client| {
                campaigns::first_login(client, tenant_id).await
            })
            .await
    }

    async fn campaign_changes(&self, since: Option<ChangeCursor>) -> StoreResult<CampaignChanges> {
        self.pools
            .run(Side::Primary, async |client| {
                campaigns::changes(client, since).await
            })
            .await
    }

    async fn available_counts(
        &self,
        campaign_ids: &[CampaignId],
        counted_max: u64,
    ) -> StoreResult<Vec<(CampaignId, Available)>> {
        self.pools
            .run(Side::Primary, async |client| {
                campaigns::available_counts(client, campaign_ids, counted_max).await
            })
            .await
    }

    async fn add_codes(
        &self,
        campaign_id: CampaignId,
        codes: &[VoucherCode],
        now: Timestamp,
    ) -> StoreResult<AddCodesOutcome> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self
                .pools
                .transaction(async |transaction| {
                    campaigns::add_codes(transaction, campaign_id, codes, now).await
                })
                .await
            {
                Err(StoreError::Constraint(_)) if attempts < campaigns::STAGE_ATTEMPTS_MAX => {}
                answer => return answer,
            }
        }
    }

    async fn stage_codes(
        &self,
        campaign_id: CampaignId,
        lease: CodesLease,
        codes: &[VoucherCode],
    ) -> StoreResult<(StageOutcome, std::time::Duration)> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let started = std::time::Instant::now();
            match self
                .pools
                .transaction(async |transaction| {
                    campaigns::stage_codes(transaction, campaign_id, &lease, codes).await
                })
                .await
            {
                Err(StoreError::Constraint(_)) if attempts < campaigns::STAGE_ATTEMPTS_MAX => {}
                answer => return answer.map(|staged| (staged, started.elapsed())),
            }
        }
    }

    async fn commit_codes(
        &self,
        campaign_id: CampaignId,
        lease: uuid::Uuid,
    ) -> StoreResult<CommitOutcome> {
        self.pools
            .transaction(async |transaction| {
                campaigns::commit_codes(transaction, campaign_id, lease).await
            })
            .await
    }

    async fn discard_codes(
        &self,
        campaign_id: CampaignId,
        lease: uuid::Uuid,
        limit: u32,
    ) -> StoreResult<bool> {
        self.pools
            .transaction(async |transaction| {
                campaigns::discard_codes(transaction, campaign_id, lease, limit).await
            })
            .await
    }

    async fn change_lifecycle(
        &self,
        campaign_id: CampaignId,
        from: Lifecycle,
        to: Lifecycle,
        now: Timestamp,
    ) -> StoreResult<LifecycleOutcome> {
        self.pools
            .run(Side::Primary, async |client| {
                campaigns::change_lifecycle(client, campaign_id, from, to, now).await
            })
            .await
    }

    async fn claim_batch(
        &self,
        claims: Vec<ClaimRequest>,
        now: Timestamp,
    ) -> StoreResult<Vec<StoreResult<ClaimOutcome>>> {
        self.pools
            .run(Side::Primary, async |client| {
                claims::claim_batch(client, &claims, now).await
            })
            .await
    }

    async fn vouchers_of_user(
        &self,
        tenant_id: TenantId,
        user_id: &UserId,
    ) -> StoreResult<Vec<VoucherRecord>> {
        self.pools
            .run(Side::Primary, async |client| {
                vouchers::of_user(client, tenant_id, user_id).await
            })
            .await
    }

    async fn vouchers_page(
        &self,
        campaign_id: CampaignId,
        after_rank: u32,
        limit: u32,
    ) -> StoreResult<Vec<VoucherRecord>> {
        self.pools
            .run(Side::Replica, async |client| {
                vouchers::page(client, campaign_id, after_rank, limit).await
            })
            .await
    }

    async fn act_on_voucher(
        &self,
        target: &VoucherTarget,
        action: VoucherAction,
        now: Timestamp,
    ) -> StoreResult<VoucherOutcome> {
        self.pools
            .run(Side::Primary, async |client| {
                vouchers::act(client, target, action, now).await
            })
            .await
    }

    async fn expire_locks(&self, now: Timestamp, limit: u32) -> StoreResult<u32> {
        self.pools
            .run(Side::Primary, async |client| {
                vouchers::expire_locks(client, now, limit).await
            })
            .await
    }

    async fn campaign_counts(
        &self,
        campaign_id: CampaignId,
        rank_ranges: &[(u32, u32)],
    ) -> StoreResult<CampaignCounts> {
        self.pools
            .run(Side::Replica, async |client| {
                campaigns::counts(client, campaign_id, rank_ranges).await
            })
            .await
    }

    async fn reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
    ) -> StoreResult<Option<VoucherRecord>> {
        self.pools
            .run(Side::Primary, async |client| {
                payments::reservation(client, tenant_id, reservation_id).await
            })
            .await
    }

    async fn begin_checkout(
        &self,
        checkout: &Checkout,
        now: Timestamp,
    ) -> StoreResult<CheckoutOutcome> {
        self.pools
            .run(Side::Primary, async |client| {
                payments::begin_checkout(client, checkout, now).await
            })
            .await
    }

    async fn release_reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
        holder: Option<&UserId>,
    ) -> StoreResult<ReleaseOutcome> {
        self.pools
            .run(Side::Primary, async |client| {
                payments::release_reservation(client, tenant_id, reservation_id, holder).await
            })
            .await
    }

    async fn release_expired_reservations(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CampaignId>> {
        self.pools
            .run(Side::Primary, async |client| {
                payments::release_expired(client, now, limit).await
            })
            .await
    }

    async fn lease_payments(
        &self,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
    ) -> StoreResult<Vec<PaymentTask>> {
        self.pools
            .run(Side::Primary, async |client| {
                payments::lease(client, now, lease, limit).await
            })
            .await
    }

    async fn start_attempt(
        &self,
        lease: &PaymentLease,
        gateway: &str,
        kind: AttemptKind,
        now: Timestamp,
    ) -> StoreResult<Option<u32>> {
        self.pools
            .run(Side::Primary, async |client| {
                payments::start_attempt(client, lease, gateway, kind, now).await
            })
            .await
    }

    async fn finish_payment(
        &self,
        lease: &PaymentLease,
        step: &PaymentStep,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.pools
            .transaction(async |transaction| payments::finish(transaction, lease, step, now).await)
            .await
    }

    async fn order(
        &self,
        tenant_id: TenantId,
        order_id: OrderId,
        holder: Option<&UserId>,
    ) -> StoreResult<Option<OrderDetails>> {
        self.pools
            .snapshot(Side::Primary, async |transaction| {
                payments::details(transaction, tenant_id, order_id, holder).await
            })
            .await
    }

    async fn payment_counts(&self, campaign_id: CampaignId) -> StoreResult<PaymentCounts> {
        self.pools
            .run(Side::Replica, async |client| {
                payments::counts(client, campaign_id).await
            })
            .await
    }

    async fn stored_response(
        &self,
        scope: &IdempotencyScope,
    ) -> StoreResult<Option<StoredResponse>> {
        self.pools
            .run(Side::Primary, async |client| {
                idempotency::find(client, scope).await
            })
            .await
    }

    async fn store_response(
        &self,
        scope: &IdempotencyScope,
        response: &StoredResponse,
    ) -> StoreResult<StoredResponse> {
        self.pools
            .run(Side::Primary, async |client| {
                idempotency::keep(client, scope, response).await
            })
            .await
    }

    async fn forget_responses(&self, before: Timestamp, limit: u32) -> StoreResult<u32> {
        self.pools
            .run(Side::Primary, async |client| {
                idempotency::forget(client, before, limit).await
            })
            .await
    }

    async fn share_gateway(&self, request: &ShareRequest) -> StoreResult<u32> {
        self.pools
            .transaction(async |transaction| shares::share(transaction, request).await)
            .await
    }
}
