//! A store wrapper that injects faults and counts what reaches the store:
//! tests use it to take the database away, to hold claim batches in
//! flight, and to prove that an answer came from memory. With no fault set
//! it passes the conformance suite like any backend.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::Semaphore;
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
use crate::{Store, StoreError, StoreResult, StoreStats};

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    unavailable: AtomicBool,
    claim_batches: AtomicU64,
    claim_gate: Mutex<Option<Arc<Semaphore>>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> FaultyStore {
        FaultyStore {
            inner,
            unavailable: AtomicBool::new(false),
            claim_batches: AtomicU64::new(0),
            claim_gate: Mutex::new(None),
        }
    }

    /// While set, every operation fails as if the database were down.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Claim batches that reached the store.
    pub fn claim_batches(&self) -> u64 {
        self.claim_batches.load(Ordering::SeqCst)
    }

    /// Makes claim batches wait until the returned gate is opened.
    pub fn hold_claims(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self
            .claim_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(gate.clone());
        gate
    }

    fn check(&self) -> StoreResult<()> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "injected: the database is down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn one_writer(&self) -> bool {
        self.inner.one_writer()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.check()?;
        self.inner.ping().await
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    async fn payment_backlog(&self, now: Timestamp) -> StoreResult<PaymentBacklog> {
        self.check()?;
        self.inner.payment_backlog(now).await
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        self.check()?;
        self.inner.insert_tenant(tenant).await
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.check()?;
        self.inner.tenants().await
    }

    async fn rotate_tenant_key(&self, rotation: &KeyRotation) -> StoreResult<bool> {
        self.check()?;
        self.inner.rotate_tenant_key(rotation).await
    }

    async fn set_tenant_public_keys(
        &self,
        tenant_id: TenantId,
        keys: &[PublicKey],
    ) -> StoreResult<bool> {
        self.check()?;
        self.inner.set_tenant_public_keys(tenant_id, keys).await
    }

    async fn set_tenant_rate_limit(
        &self,
        tenant_id: TenantId,
        rate_limit_per_second: Option<u32>,
    ) -> StoreResult<bool> {
        self.check()?;
        self.inner
            .set_tenant_rate_limit(tenant_id, rate_limit_per_second)
            .await
    }

    async fn insert_account(&self, account: &Account) -> StoreResult<bool> {
        self.check()?;
        self.inner.insert_account(account).await
    }

    async fn account(&self, tenant_id: TenantId, email: &str) -> StoreResult<Option<Account>> {
        self.check()?;
        self.inner.account(tenant_id, email).await
    }

    async fn insert_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()> {
        self.check()?;
        self.inner.insert_campaign(campaign).await
    }

    async fn campaign(&self, id: CampaignId) -> StoreResult<Option<CampaignRecord>> {
        self.check()?;
        self.inner.campaign(id).await
    }

    async fn campaigns(&self) -> StoreResult<Vec<CampaignRecord>> {
        self.check()?;
        self.inner.campaigns().await
    }

    async fn campaigns_of(&self, tenant_id: TenantId) -> StoreResult<Vec<CampaignRecord>> {
        self.check()?;
        self.inner.campaigns_of(tenant_id).await
    }

    async fn first_login_campaigns(&self, tenant_id: TenantId) -> StoreResult<Vec<CampaignId>> {
        self.check()?;
        self.inner.first_login_campaigns(tenant_id).await
    }

    async fn campaign_changes(&self, since: Option<ChangeCursor>) -> StoreResult<CampaignChanges> {
        self.check()?;
        self.inner.campaign_changes(since).await
    }

    async fn available_counts(
        &self,
        campaign_ids: &[CampaignId],
        counted_max: u64,
    ) -> StoreResult<Vec<(CampaignId, Available)>> {
        self.check()?;
        self.inner.available_counts(campaign_ids, counted_max).await
    }

    async fn add_codes(
        &self,
        campaign_id: CampaignId,
        codes: &[VoucherCode],
        now: Timestamp,
    ) -> StoreResult<AddCodesOutcome> {
        self.check()?;
        self.inner.add_codes(campaign_id, codes, now).await
    }

    async fn stage_codes(
        &self,
        campaign_id: CampaignId,
        lease: CodesLease,
        codes: &[VoucherCode],
    ) -> StoreResult<(StageOutcome, std::time::Duration)> {
        self.check()?;
        self.inner.stage_codes(campaign_id, lease, codes).await
    }

    async fn commit_codes(
        &self,
        campaign_id: CampaignId,
        lease: uuid::Uuid,
    ) -> StoreResult<CommitOutcome> {
        self.check()?;
        self.inner.commit_codes(campaign_id, lease).await
    }

    async fn discard_codes(
        &self,
        campaign_id: CampaignId,
        lease: uuid::Uuid,
        limit: u32,
    ) -> StoreResult<bool> {
        self.check()?;
        self.inner.discard_codes(campaign_id, lease, limit).await
    }

    async fn change_lifecycle(
        &self,
        campaign_id: CampaignId,
        from: Lifecycle,
        to: Lifecycle,
        now: Timestamp,
    ) -> StoreResult<LifecycleOutcome> {
        self.check()?;
        self.inner
            .change_lifecycle(campaign_id, from, to, now)
            .await
    }

    async fn claim_batch(
        &self,
        claims: Vec<ClaimRequest>,
        now: Timestamp,
    ) -> StoreResult<Vec<StoreResult<ClaimOutcome>>> {
        self.claim_batches.fetch_add(1, Ordering::SeqCst);
        let gate = self
            .claim_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await.map_err(|_| StoreError::Closed)?;
        }
        self.check()?;
        self.inner.claim_batch(claims, now).await
    }

    async fn vouchers_of_user(
        &self,
        tenant_id: TenantId,
        user_id: &UserId,
    ) -> StoreResult<Vec<VoucherRecord>> {
        self.check()?;
        self.inner.vouchers_of_user(tenant_id, user_id).await
    }

    async fn vouchers_page(
        &self,
        campaign_id: CampaignId,
        after_rank: u32,
        limit: u32,
    ) -> StoreResult<Vec<VoucherRecord>> {
        self.check()?;
        self.inner
            .vouchers_page(campaign_id, after_rank, limit)
            .await
    }

    async fn act_on_voucher(
        &self,
        target: &VoucherTarget,
        action: VoucherAction,
        now: Timestamp,
    ) -> StoreResult<VoucherOutcome> {
        self.check()?;
        self.inner.act_on_voucher(target, action, now).await
    }

    async fn expire_locks(&self, now: Timestamp, limit: u32) -> StoreResult<u32> {
        self.check()?;
        self.inner.expire_locks(now, limit).await
    }

    async fn campaign_counts(
        &self,
        campaign_id: CampaignId,
        rank_ranges: &[(u32, u32)],
    ) -> StoreResult<CampaignCounts> {
        self.check()?;
        self.inner.campaign_counts(campaign_id, rank_ranges).await
    }

    async fn reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
    ) -> StoreResult<Option<VoucherRecord>> {
        self.check()?;
        self.inner.reservation(tenant_id, reservation_id).await
    }

    async fn begin_checkout(
        &self,
        checkout: &Checkout,
        now: Timestamp,
    ) -> StoreResult<CheckoutOutcome> {
        self.check()?;
        self.inner.begin_checkout(checkout, now).await
    }

    async fn release_reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
        holder: Option<&UserId>,
    ) -> StoreResult<ReleaseOutcome> {
        self.check()?;
        self.inner
            .release_reservation(tenant_id, reservation_id, holder)
            .await
    }

    async fn release_expired_reservations(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CampaignId>> {
        self.check()?;
        self.inner.release_expired_reservations(now, limit).await
    }

    async fn lease_payments(
        &self,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
    ) -> StoreResult<Vec<PaymentTask>> {
        self.check()?;
        self.inner.lease_payments(now, lease, limit).await
    }

    async fn start_attempt(
        &self,
        lease: &PaymentLease,
        gateway: &str,
        kind: AttemptKind,
        now: Timestamp,
    ) -> StoreResult<Option<u32>> {
        self.check()?;
        self.inner.start_attempt(lease, gateway, kind, now).await
    }

    async fn finish_payment(
        &self,
        lease: &PaymentLease,
        step: &PaymentStep,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.check()?;
        self.inner.finish_payment(lease, step, now).await
    }

    async fn order(
        &self,
        tenant_id: TenantId,
        order_id: OrderId,
        holder: Option<&UserId>,
    ) -> StoreResult<Option<OrderDetails>> {
        self.check()?;
        self.inner.order(tenant_id, order_id, holder).await
    }

    async fn payment_counts(&self, campaign_id: CampaignId) -> StoreResult<PaymentCounts> {
        self.check()?;
        self.inner.payment_counts(campaign_id).await
    }

    async fn stored_response(
        &self,
        scope: &IdempotencyScope,
    ) -> StoreResult<Option<StoredResponse>> {
        self.check()?;
        self.inner.stored_response(scope).await
    }

    async fn store_response(
        &self,
        scope: &IdempotencyScope,
        response: &StoredResponse,
    ) -> StoreResult<StoredResponse> {
        self.check()?;
        self.inner.store_response(scope, response).await
    }

    async fn forget_responses(&self, before: Timestamp, limit: u32) -> StoreResult<u32> {
        self.check()?;
        self.inner.forget_responses(before, limit).await
    }

    async fn share_gateway(&self, request: &ShareRequest) -> StoreResult<u32> {
        self.check()?;
        self.inner.share_gateway(request).await
    }
}
