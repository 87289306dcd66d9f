//! The engine: what the HTTP layer calls, one method per intent.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use prometheus_client::registry::Registry;
use std::time::Duration;
use voucherd_core::campaign::{
    CampaignKind, CampaignSpec, CampaignStatus, CodeSource, Lifecycle, Offer, Supply, Trigger,
};
use voucherd_core::code::VoucherCode;
use voucherd_core::ids::{CampaignId, OrderId, ReservationId, TenantId, UserId, uuid_at};
use voucherd_core::payment::{Card, Email};
use voucherd_core::{SignedDuration, Timestamp};
use voucherd_store::OsEntropy;
use voucherd_store::Store;
use voucherd_store::model::{
    Account, AddCodesOutcome, Available, CampaignRecord, CampaignState, ChangeCursor, Checkout,
    CheckoutOutcome, CodesLease, CommitOutcome, IdempotencyScope, KeyRotation, LifecycleOutcome,
    OrderDetails, OrderRecord, PaymentCounts, ReleaseOutcome, StageOutcome, StateCounts,
    StoredResponse, Tenant, VoucherAction, VoucherOutcome, VoucherRecord, VoucherTarget,
};

use crate::campaigns::{CampaignBook, CampaignEntry, CampaignView, Counting};
use crate::claims::{ClaimAnswer, ClaimLimits, ClaimQueue, Refusal};
use crate::clock::Clock;
use crate::error::{ConflictKind, EngineError};
use crate::metrics::EngineMetrics;
use crate::payments::seal::PaymentKey;
use crate::payments::{GatewayRoute, PaymentLimits, PaymentRouter};
use crate::tenants::{TenantBook, TenantEntry};

/// Bounds and periods of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub claims: ClaimLimits,
    /// Codes one request may upload or generate.
    pub codes_per_request_max: u32,
    /// Codes sent to the store in one call while publishing at most: one
    /// slice, what a claim waits behind on the SQLite writer.
    pub codes_per_slice: u32,
    /// How long one slice should take: slices shrink as the store grows
    /// slower (a bigger database, cold pages) and grow back, so that a
    /// claim waits about this long behind one, whatever the store's size.
    pub slice_time_target: Duration,
    /// A publish that must make more codes than this answers at once and
    /// makes them after its answer; one with fewer answers when live.
    pub codes_made_before_answer_max: u32,
    /// How long an upload may stage before it gives up, discards what it
    /// staged and says so: under the HTTP request timeout, so that an
    /// upload never commits after its client was told it timed out.
    pub upload_time_max: Duration,
    /// How long an upload holds its campaign without staging a slice: a
    /// node that dies mid-upload leaves the campaign to others after this.
    pub upload_lease: SignedDuration,
    /// How long a response is replayed for its idempotency key.
    pub idempotency_ttl: SignedDuration,
    /// Rows one sweep of a worker touches at most.
    pub sweep_limit: u32,
    /// Gateways and the key queued cards are sealed with; `None` refuses
    /// checkouts.
    pub payments: Option<PaymentSetup>,
}

/// What the payment router needs.
#[derive(Debug, Clone)]
pub struct PaymentSetup {
    pub key: PaymentKey,
    pub gateways: Vec<GatewayRoute>,
    pub limits: PaymentLimits,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            claims: ClaimLimits::default(),
            codes_per_request_max: 100_000,
            codes_per_slice: 2_000,
            slice_time_target: Duration::from_millis(5),
            codes_made_before_answer_max: 100_000,
            upload_time_max: Duration::from_secs(20),
            upload_lease: SignedDuration::from_secs(30),
            idempotency_ttl: SignedDuration::from_hours(24),
            sweep_limit: 10_000,
            payments: None,
        }
    }
}

/// What adding codes did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodesAdded {
    pub added: u32,
    pub duplicates: Vec<VoucherCode>,
    pub voucher_count: u32,
}

/// One price tier's ranks and how its vouchers stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierCounts {
    pub first_rank: u32,
    pub last_rank: Option<u32>,
    pub discount_percent: u8,
    pub counts: StateCounts,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub campaign: CampaignView,
    pub counts: StateCounts,
    pub tiers: Vec<TierCounts>,
    pub claims_per_second: Vec<(i64, u64)>,
    pub payments: PaymentCounts,
}

/// What one sweep of the expiry worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub locks_expired: u32,
    pub reservations_released: u32,
    pub responses_forgotten: u32,
}

#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    tenants: TenantBook,
    campaigns: Arc<CampaignBook>,
    claims: ClaimQueue,
    payments: Option<Arc<PaymentRouter>>,
    metrics: EngineMetrics,
    config: EngineConfig,
    /// Where this node's reading of other nodes' campaign changes stands.
    changes_seen: std::sync::Mutex<Option<ChangeCursor>>,
    /// Codes the next slice of a publish or an upload takes: the pace of
    /// the last one, shared, so that an upload starts where the last left
    /// off rather than with a slice the store takes too long over.
    slice: std::sync::atomic::AtomicU32,
}

/// The first slice a node stages, before it knows the store's pace.
const FIRST_SLICE: u32 = 100;

/// The most available vouchers of one campaign a refresh counts. A count
/// walks the campaign's available vouchers: unbounded, a campaign of five
/// million cost a reader most of a core twice a second, and a claim on any
/// campaign waited behind it. Near sold out, where memory must be exact to
/// answer from memory, the count is exact.
const AVAILABLE_COUNTED_MAX: u64 = 10_000;

/// How long memory keeps a campaign after it ended: a late claim on it is
/// refused from memory for this long, then with one read of the store.
const ENDED_KEPT: SignedDuration = SignedDuration::from_hours(1);

impl Engine {
    /// Loads tenants and campaigns into memory and starts the claim batcher.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        registry: &mut Registry,
    ) -> Result<Arc<Engine>, EngineError> {
        let metrics = EngineMetrics::register(registry);
        metrics.register_state(registry, store.clone());
        metrics
            .claim_queue_max
            .set(i64::try_from(config.claims.claim_queue_max).unwrap_or(i64::MAX));
        let claims = ClaimQueue::start(
            store.clone(),
            clock.clone(),
            config.claims.clone(),
            metrics.clone(),
        );
        let campaigns = Arc::new(CampaignBook::default());
        let payments = config.payments.clone().map(|setup| {
            Arc::new(PaymentRouter::new(
                store.clone(),
                clock.clone(),
                campaigns.clone(),
                setup.key,
                setup.gateways,
                setup.limits,
                metrics.clone(),
            ))
        });
        let first_slice = if store.one_writer() {
            FIRST_SLICE.min(config.codes_per_slice)
        } else {
            config.codes_per_slice
        };
        let engine = Engine {
            store,
            clock,
            tenants: TenantBook::default(),
            campaigns,
            claims,
            payments,
            metrics,
            config,
            changes_seen: std::sync::Mutex::new(None),
            slice: std::sync::atomic::AtomicU32::new(first_slice),
        };
        engine.reload_tenants().await?;
        for record in engine.store.campaigns().await? {
            let available = engine.available(&record).await?;
            engine
                .campaigns
                .insert(Arc::new(CampaignEntry::new(record, available)));
        }
        Ok(Arc::new(engine))
    }

    async fn available(&self, record: &CampaignRecord) -> Result<u64, EngineError> {
        if record.lifecycle == Lifecycle::Draft || record.spec.supply == Supply::Unlimited {
            return Ok(record.spec.supply.limit().map_or(0, u64::from));
        }
        Ok(self
            .store
            .campaign_counts(record.id, &[])
            .await?
            .states
            .available)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The payment router, for the binary to run.
    pub fn payments(&self) -> Option<Arc<PaymentRouter>> {
        self.payments.clone()
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// Succeeds when the store answers.
    pub async fn ready(&self) -> Result<(), EngineError> {
        Ok(self.store.ping().await?)
    }

    pub fn tenant(&self, id: TenantId) -> Option<Arc<TenantEntry>> {
        self.tenants.get(id)
    }

    pub async fn reload_tenants(&self) -> Result<(), EngineError> {
        self.tenants.replace(self.store.tenants().await?);
        Ok(())
    }

    pub async fn create_tenant(&self, tenant: Tenant) -> Result<(), EngineError> {
        self.store.insert_tenant(&tenant).await?;
        self.reload_tenants().await
    }

    /// Makes `signing_key` the tenant's current key under the next key id
    /// (`k2` after `k1`); the key it replaces verifies what it signed until
    /// those tokens expire. Answers the tenant as it is now.
    pub async fn rotate_tenant_key(
        &self,
        tenant_id: TenantId,
        signing_key: Vec<u8>,
    ) -> Result<Tenant, EngineError> {
        assert!(
            signing_key.len() >= 32,
            "a signing key has 256 bits at least"
        );
        let current = self.tenant_entry(tenant_id)?.tenant.clone();
        let rotation = KeyRotation {
            tenant_id,
            replacing: current.key_id.clone(),
            key_id: next_key_id(&current),
            signing_key,
            now: self.now(),
        };
        if !self.store.rotate_tenant_key(&rotation).await? {
            return Err(EngineError::conflict(
                ConflictKind::WrongState,
                "the tenant's key was rotated meanwhile; read it again",
            ));
        }
        self.reload_tenants().await?;
        Ok(self.tenant_entry(tenant_id)?.tenant.clone())
    }

    pub async fn set_tenant_rate_limit(
        &self,
        tenant_id: TenantId,
        rate_limit_per_second: Option<u32>,
    ) -> Result<Tenant, EngineError> {
        if !self
            .store
            .set_tenant_rate_limit(tenant_id, rate_limit_per_second)
            .await?
        {
            return Err(EngineError::NotFound("tenant"));
        }
        self.reload_tenants().await?;
        Ok(self.tenant_entry(tenant_id)?.tenant.clone())
    }

    /// Adds an account to a tenant the engine knows; `false` when the
    /// email is taken there.
    pub async fn create_account(&self, account: &Account) -> Result<bool, EngineError> {
        self.tenant_entry(account.tenant_id)?;
        Ok(self.store.insert_account(account).await?)
    }

    pub async fn account(
        &self,
        tenant_id: TenantId,
        email: &str,
    ) -> Result<Option<Account>, EngineError> {
        Ok(self.store.account(tenant_id, email).await?)
    }

    pub fn tenants(&self) -> Vec<Arc<TenantEntry>> {
        self.tenants.all()
    }

    fn entry(
        &self,
        tenant_id: TenantId,
        id: CampaignId,
    ) -> Result<Arc<CampaignEntry>, EngineError> {
        self.campaigns
            .get(id)
            .filter(|entry| entry.tenant_id() == tenant_id)
            .ok_or(EngineError::NotFound("campaign"))
    }

    fn tenant_entry(&self, tenant_id: TenantId) -> Result<Arc<TenantEntry>, EngineError> {
        self.tenants
            .get(tenant_id)
            .ok_or(EngineError::NotFound("tenant"))
    }

    pub async fn create_campaign(
        &self,
        tenant_id: TenantId,
        spec: CampaignSpec,
    ) -> Result<CampaignView, EngineError> {
        let now = self.now();
        let record = CampaignRecord {
            id: CampaignId::from_uuid(uuid_at(now)),
            tenant_id,
            spec,
            lifecycle: Lifecycle::Draft,
            voucher_count: 0,
            created_at: now,
            published_at: None,
        };
        self.store.insert_campaign(&record).await?;
        let available = record.spec.supply.limit().map_or(0, u64::from);
        let entry = Arc::new(CampaignEntry::new(record, available));
        self.campaigns.insert(entry.clone());
        Ok(entry.view())
    }

    /// The campaign as memory holds it, read from the store when memory
    /// does not know it. Its spec never changes once made, so this is what
    /// answers that show a voucher's terms use; its lifecycle may be one
    /// refresh behind another node's change.
    pub async fn campaign(
        &self,
        tenant_id: TenantId,
        id: CampaignId,
    ) -> Result<CampaignView, EngineError> {
        Ok(self.known_entry(tenant_id, id).await?.view())
    }

    /// What the holder of `voucher` pays: its campaign's offer at its rank.
    /// The answer to every claim needs it, and [`Engine::campaign`] would
    /// copy the whole campaign (its terms may be 50,000 characters) to
    /// give it.
    pub async fn offer(
        &self,
        tenant_id: TenantId,
        voucher: &VoucherRecord,
    ) -> Result<Offer, EngineError> {
        let entry = self.known_entry(tenant_id, voucher.campaign_id).await?;
        Ok(entry.spec().offer(voucher.rank))
    }

    /// The campaign as the store has it now: an admin on any node sees
    /// what another node just published, paused or added.
    pub async fn campaign_now(
        &self,
        tenant_id: TenantId,
        id: CampaignId,
    ) -> Result<CampaignView, EngineError> {
        self.load_entry(id).await?;
        Ok(self.entry(tenant_id, id)?.view())
    }

    /// Every campaign of the tenant, oldest first, as the store has them:
    /// memory may not know one another node just made, or one it evicted.
    pub async fn campaigns_of(
        &self,
        tenant_id: TenantId,
    ) -> Result<Vec<CampaignView>, EngineError> {
        let mut views = Vec::new();
        for record in self.store.campaigns_of(tenant_id).await? {
            let entry = self.remember(record).await?;
            views.push(entry.view());
        }
        Ok(views)
    }

    /// Memory's entry for a campaign read from the store, made or brought
    /// up to date.
    async fn remember(&self, record: CampaignRecord) -> Result<Arc<CampaignEntry>, EngineError> {
        if let Some(entry) = self.campaigns.get(record.id) {
            entry.follow(&CampaignState {
                id: record.id,
                lifecycle: record.lifecycle,
                voucher_count: record.voucher_count,
                published_at: record.published_at,
            });
            return Ok(entry);
        }
        let available = self.available(&record).await?;
        let entry = Arc::new(CampaignEntry::new(record, available));
        self.campaigns.insert(entry.clone());
        Ok(entry)
    }

    /// The tenant's campaigns that can be claimed now (003's "live coupons").
    /// The tenant's campaigns a shop shows, from memory: live ones,
    /// including those not started yet and those sold out.
    pub fn shown_campaigns(&self, tenant_id: TenantId) -> Vec<CampaignView> {
        let now = self.now();
        self.campaigns
            .of_tenant(tenant_id)
            .into_iter()
            .map(|entry| entry.view())
            .filter(|view| view.status(now) == voucherd_core::campaign::CampaignStatus::Live)
            .collect()
    }

    pub fn live_campaigns(&self, tenant_id: TenantId) -> Vec<CampaignView> {
        let now = self.now();
        self.campaigns
            .of_tenant(tenant_id)
            .into_iter()
            .filter(|entry| entry.claimable(now).is_ok())
            .map(|entry| entry.view())
            .collect()
    }

    /// Adds uploaded codes and `generate` codes from the campaign's pattern.
    pub async fn add_codes(
        self: &Arc<Self>,
        tenant_id: TenantId,
        id: CampaignId,
        upload: Vec<VoucherCode>,
        generate: u32,
    ) -> Result<CodesAdded, EngineError> {
        let entry = self.known_entry(tenant_id, id).await?;
        let total = u64::from(generate) + upload.len() as u64;
        if total > u64::from(self.config.codes_per_request_max) {
            return Err(EngineError::Invalid(
                voucherd_core::validation::Invalid::one(
                    "codes",
                    format!(
                        "at most {} codes per request",
                        self.config.codes_per_request_max
                    ),
                ),
            ));
        }
        let mut codes = upload;
        if generate > 0 {
            let Some(pattern) = entry.spec().code_pattern() else {
                return Err(EngineError::Invalid(
                    voucherd_core::validation::Invalid::one(
                        "generate",
                        "this campaign takes uploaded codes; it has no pattern to generate from",
                    ),
                ));
            };
            codes.extend((0..generate).map(|_| pattern.generate(&mut OsEntropy)));
        }
        // In a task of its own, so that a client that stops waiting leaves
        // the upload to finish or to be discarded, never held half-way.
        let engine = self.clone();
        let uploading = entry.clone();
        let added = tokio::spawn(async move { engine.upload_codes(&uploading, &codes).await })
            .await
            .map_err(|error| {
                EngineError::Internal(voucherd_store::StoreError::Database(Box::new(error)))
            })??;
        entry.set_voucher_count(added.voucher_count);
        Ok(added)
    }

    /// Stages `codes` slice by slice under one lease (a claim on any
    /// campaign waits behind one slice at most) and commits them in one
    /// small write: all or nothing, however long the upload. Refused or
    /// failed, what it staged is discarded.
    async fn upload_codes(
        &self,
        entry: &CampaignEntry,
        codes: &[VoucherCode],
    ) -> Result<CodesAdded, EngineError> {
        let lease = CodesLease {
            id: uuid::Uuid::new_v4(),
            now: self.now(),
            until: self.lease_end()?,
            staged: 0,
        };
        let staged = self.stage_all(entry.id(), lease, codes).await;
        let answer = match staged {
            Ok(duplicates) => match self.store.commit_codes(entry.id(), lease.id).await {
                Ok(CommitOutcome::Committed {
                    added,
                    voucher_count,
                }) => {
                    return Ok(CodesAdded {
                        added,
                        duplicates,
                        voucher_count,
                    });
                }
                Ok(CommitOutcome::Lost) => Err(upload_lost()),
                Ok(CommitOutcome::NotFound) => Err(EngineError::NotFound("campaign")),
                Err(error) => Err(error.into()),
            },
            Err(refused) => Err(refused),
        };
        self.discard_upload(entry.id(), lease.id).await;
        answer
    }

    /// Stages every slice of `codes`; the duplicates found, in order.
    async fn stage_all(
        &self,
        id: CampaignId,
        mut lease: CodesLease,
        codes: &[VoucherCode],
    ) -> Result<Vec<VoucherCode>, EngineError> {
        let mut duplicates = Vec::new();
        let mut rest = codes;
        // An empty upload still stages once: it takes and frees the
        // campaign, clearing what an interrupted upload left.
        let mut first = true;
        let deadline = tokio::time::Instant::now() + self.config.upload_time_max;
        while first || !rest.is_empty() {
            first = false;
            if tokio::time::Instant::now() > deadline {
                return Err(EngineError::TooSlow(format!(
                    "the upload took longer than {} s and nothing was added; upload fewer codes at a time",
                    self.config.upload_time_max.as_secs()
                )));
            }
            let slice = self.slice.load(std::sync::atomic::Ordering::Relaxed);
            let (chunk, after) = rest.split_at(rest.len().min(slice as usize));
            lease.now = self.now();
            lease.until = self.lease_end()?;
            let jobs_before = self.writer_jobs();
            let (staged, took) = self.store.stage_codes(id, lease, chunk).await?;
            match staged {
                StageOutcome::Cleaning => continue,
                StageOutcome::Staged {
                    duplicates: found,
                    staged,
                    ..
                } => {
                    duplicates.extend(found);
                    lease.staged = staged;
                }
                StageOutcome::OverSupply { room, offered } => {
                    let more = if after.is_empty() { "" } else { " or more" };
                    return Err(EngineError::conflict(
                        ConflictKind::CodesRefused,
                        format!(
                            "{offered}{more} new codes offered but the supply leaves room for {room}; nothing was added"
                        ),
                    ));
                }
                StageOutcome::Busy => return Err(upload_busy()),
                StageOutcome::Lost => return Err(upload_lost()),
                StageOutcome::NotDraft => {
                    return Err(EngineError::conflict(
                        ConflictKind::CodesRefused,
                        "codes can be added only before the campaign is published",
                    ));
                }
                StageOutcome::NotFound => return Err(EngineError::NotFound("campaign")),
            }
            if !chunk.is_empty() {
                self.paced(chunk.len() as u32, took);
            }
            rest = after;
            // Only between slices: the last one's answer is not held back.
            if !rest.is_empty() {
                self.make_way_after(jobs_before, took).await;
            }
        }
        Ok(duplicates)
    }

    /// Removes what an upload staged, slice by slice; a failure is logged
    /// and left to whoever takes the campaign after the lease ran out.
    async fn discard_upload(&self, id: CampaignId, lease: uuid::Uuid) {
        loop {
            match self
                .store
                .discard_codes(id, lease, voucherd_store::STAGED_ROWS_PER_JOB)
                .await
            {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, campaign = %id, "discarding an upload failed; the next upload or publish clears it");
                    return;
                }
            }
        }
    }

    /// Sizes the next slice from how long `made` codes took: to about
    /// `slice_time_target` behind one writer, else `codes_per_slice`.
    fn paced(&self, made: u32, took: Duration) {
        if !self.store.one_writer() {
            return;
        }
        let next = next_slice(
            made,
            took,
            self.config.slice_time_target,
            self.config.codes_per_slice,
        );
        self.slice.store(next, std::sync::atomic::Ordering::Relaxed);
    }

    /// After a slice that took `took` of the writer, waits as `make_way`
    /// says when other jobs ran beside it (the writer's job count moved by
    /// more than the slice's own since `jobs_before`).
    async fn make_way_after(&self, jobs_before: Option<u64>, took: Duration) {
        let others_wrote = self
            .writer_jobs()
            .zip(jobs_before)
            .is_some_and(|(after, before)| after > before + 1);
        let pause = make_way(took, others_wrote);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }

    /// Jobs the store's one writer has run, where it has one.
    fn writer_jobs(&self) -> Option<u64> {
        self.store.stats().sqlite_writer.map(|writer| writer.jobs)
    }

    fn lease_end(&self) -> Result<Timestamp, EngineError> {
        self.now()
            .checked_add(self.config.upload_lease)
            .map_err(|error| {
                EngineError::Internal(voucherd_store::StoreError::Corrupt(error.to_string()))
            })
    }

    /// Publishes a draft: generates the codes still missing when the
    /// campaign has a pattern, then makes it live.
    ///
    /// When more codes are missing than `codes_made_before_answer_max`, the
    /// answer comes at once with the campaign still a draft and `publishing`
    /// set; the codes
    /// are made slice by slice (a claim on any campaign waits behind one
    /// slice at most) and the campaign goes live when the last exists.
    /// Claims are refused until then: a campaign is claimable only with its
    /// whole supply of codes. A node that dies meanwhile leaves a draft with
    /// the codes made so far; publishing again makes the rest. A campaign
    /// whose codes are made on claim has none missing and goes live at
    /// once, whatever its supply.
    pub async fn publish(
        self: &Arc<Self>,
        tenant_id: TenantId,
        id: CampaignId,
    ) -> Result<CampaignView, EngineError> {
        let entry = self.known_entry(tenant_id, id).await?;
        let Ok(held) = entry.publishing.clone().try_lock_owned() else {
            // Under way: what it has made so far.
            return Ok(entry.view());
        };
        // Codes made on claim are not missing: claims make them.
        let missing = match entry.spec().supply {
            Supply::Limited(_) if entry.spec().mints_on_claim() => 0,
            Supply::Limited(supply) => supply.saturating_sub(entry.view().voucher_count),
            Supply::Unlimited => 0,
        };
        let long = entry.lifecycle() == Lifecycle::Draft
            && matches!(entry.spec().codes, CodeSource::Pattern(_))
            && missing > self.config.codes_made_before_answer_max;
        let engine = self.clone();
        let publishing = entry.clone();
        // The work runs in a task of its own, holding the lock taken above,
        // so that a client that stops waiting does not stop it, and
        // publishing again while it runs answers what it made so far.
        let task = tokio::spawn(async move {
            let _held = held;
            publishing.set_publish_failure(None);
            let published = async {
                if publishing.lifecycle() == Lifecycle::Draft {
                    // Takes the campaign's codes from an upload that was
                    // interrupted, discarding what it staged, or waits for
                    // one under way.
                    match engine
                        .store
                        .add_codes(publishing.id(), &[], engine.now())
                        .await?
                    {
                        AddCodesOutcome::Busy => return Err(upload_busy()),
                        AddCodesOutcome::NotFound => return Err(EngineError::NotFound("campaign")),
                        _ => {}
                    }
                    engine.generate_missing_codes(&publishing).await?;
                }
                engine
                    .change_lifecycle(&publishing, Lifecycle::Draft, Lifecycle::Live)
                    .await
            }
            .await;
            // A publish answered before it finished can tell its failure only
            // through the campaign; any other is told in its own answer.
            if long && let Err(error) = &published {
                tracing::warn!(%error, campaign = %publishing.id(), "publishing stopped short");
                publishing.set_publish_failure(Some(error.to_string()));
            }
            published
        });
        if long {
            return Ok(entry.view());
        }
        let published = task.await.map_err(|error| {
            EngineError::Internal(voucherd_store::StoreError::Database(Box::new(error)))
        })?;
        // Seen after the task let go of the lock: no longer publishing.
        published.map(|_| entry.view())
    }

    async fn generate_missing_codes(&self, entry: &CampaignEntry) -> Result<(), EngineError> {
        let (Supply::Limited(supply), CodeSource::Pattern(pattern)) =
            (entry.spec().supply, &entry.spec().codes)
        else {
            return Ok(());
        };
        // Each round adds a chunk and the next replaces the codes that
        // collided; with a code space a hundred times the supply, a round in
        // which most codes collide means the space is used up.
        let mut crowded_rounds = 0;
        while crowded_rounds < 8 {
            let before = entry.view().voucher_count;
            let missing = supply.saturating_sub(before);
            if missing == 0 {
                return Ok(());
            }
            let chunk = missing.min(self.slice.load(std::sync::atomic::Ordering::Relaxed));
            let codes: Vec<VoucherCode> = (0..chunk)
                .map(|_| pattern.generate(&mut OsEntropy))
                .collect();
            let started = tokio::time::Instant::now();
            let jobs_before = self.writer_jobs();
            let outcome = self.store.add_codes(entry.id(), &codes, self.now()).await?;
            let took = started.elapsed();
            self.paced(chunk, took);
            self.make_way_after(jobs_before, took).await;
            match outcome {
                AddCodesOutcome::Added { voucher_count, .. } => {
                    entry.set_voucher_count(voucher_count)
                }
                AddCodesOutcome::NotDraft => return Ok(()),
                AddCodesOutcome::Busy => return Err(upload_busy()),
                other => {
                    return Err(EngineError::Internal(voucherd_store::StoreError::Corrupt(
                        format!("generating codes: {other:?}"),
                    )));
                }
            }
            let added = entry.view().voucher_count.saturating_sub(before);
            if added * 2 < chunk {
                crowded_rounds += 1;
            }
        }
        Err(EngineError::conflict(
            ConflictKind::CodesMissing,
            "could not generate enough distinct codes; use a pattern with more placeholders",
        ))
    }

    pub async fn pause(
        &self,
        tenant_id: TenantId,
        id: CampaignId,
    ) -> Result<CampaignView, EngineError> {
        let entry = self.known_entry(tenant_id, id).await?;
        self.change_lifecycle(&entry, Lifecycle::Live, Lifecycle::Paused)
            .await
    }

    pub async fn resume(
        &self,
        tenant_id: TenantId,
        id: CampaignId,
    ) -> Result<CampaignView, EngineError> {
        let entry = self.known_entry(tenant_id, id).await?;
        self.change_lifecycle(&entry, Lifecycle::Paused, Lifecycle::Live)
            .await
    }

    async fn change_lifecycle(
        &self,
        entry: &CampaignEntry,
        from: Lifecycle,
        to: Lifecycle,
    ) -> Result<CampaignView, EngineError> {
        let now = self.now();
        match self
            .store
            .change_lifecycle(entry.id(), from, to, now)
            .await?
        {
            LifecycleOutcome::Changed => {
                entry.set_lifecycle(to, now);
                Ok(entry.view())
            }
            LifecycleOutcome::WrongState(current) => {
                entry.set_lifecycle(current, now);
                Err(EngineError::conflict(
                    ConflictKind::WrongState,
                    format!(
                        "the campaign is {}, not {}",
                        current.as_str(),
                        from.as_str()
                    ),
                ))
            }
            LifecycleOutcome::UploadUnderWay => Err(upload_busy()),
            LifecycleOutcome::CodesMissing {
                voucher_count,
                supply,
            } => Err(EngineError::conflict(
                ConflictKind::CodesMissing,
                format!(
                    "{voucher_count} of {supply} codes are there; upload the rest before publishing"
                ),
            )),
            LifecycleOutcome::NotFound => Err(EngineError::NotFound("campaign")),
        }
    }

    /// A campaign in memory, or, when another node created it since the last
    /// refresh, read from the store into memory.
    async fn known_entry(
        &self,
        tenant_id: TenantId,
        id: CampaignId,
    ) -> Result<Arc<CampaignEntry>, EngineError> {
        if self.campaigns.get(id).is_none() {
            self.load_entry(id).await?;
        }
        self.entry(tenant_id, id)
    }

    /// Reads a campaign from the store into memory, or updates memory's copy.
    async fn load_entry(&self, id: CampaignId) -> Result<(), EngineError> {
        let record = self
            .store
            .campaign(id)
            .await?
            .ok_or(EngineError::NotFound("campaign"))?;
        self.remember(record).await?;
        Ok(())
    }

    /// The campaign as claims must see it. Memory answers, except for what
    /// it cannot know yet: a campaign another node created, or published
    /// since the last refresh, is read from the store.
    async fn claimable_entry(
        &self,
        tenant_id: TenantId,
        id: CampaignId,
    ) -> Result<Arc<CampaignEntry>, EngineError> {
        if self.published_entry(id).is_some() {
            return self.entry(tenant_id, id);
        }
        self.load_entry(id).await?;
        self.entry(tenant_id, id)
    }

    /// The campaign as memory holds it once published; a draft, or one
    /// memory does not hold yet, is the store's to say.
    fn published_entry(&self, id: CampaignId) -> Option<Arc<CampaignEntry>> {
        self.campaigns
            .get(id)
            .filter(|entry| entry.lifecycle() != Lifecycle::Draft)
    }

    /// A user's claim on a campaign.
    pub async fn claim(
        &self,
        tenant_id: TenantId,
        campaign_id: CampaignId,
        user_id: UserId,
    ) -> Result<ClaimAnswer, EngineError> {
        let entry = self.claimable_entry(tenant_id, campaign_id).await?;
        if entry.spec().trigger == Trigger::FirstLogin {
            return Err(EngineError::conflict(
                ConflictKind::LoginOnly,
                "this campaign is granted on login; send the login event instead",
            ));
        }
        if let Err(refusal) = self.refusal(&entry) {
            return Ok(ClaimAnswer::Refused(refusal));
        }
        let zone = self.tenant_entry(tenant_id)?.zone.clone();
        self.claims.claim(entry, user_id, zone).await
    }

    /// What memory alone answers a claim on a campaign it holds, with no
    /// store and no wait: the refusal [`Engine::claim`] would answer (sold
    /// out, not started, ended, paused), counted as it counts it. `None`
    /// when the claim needs [`Engine::claim`]: the campaign is claimable,
    /// or granted on login, or not in memory as published, or not the
    /// tenant's (which `claim` answers as not found). The HTTP layer
    /// answers the crowd's refusals with it before its router
    /// (`voucherd_http::front`).
    pub fn claim_refused(&self, tenant_id: TenantId, campaign_id: CampaignId) -> Option<Refusal> {
        let entry = self
            .published_entry(campaign_id)
            .filter(|entry| entry.tenant_id() == tenant_id)
            .filter(|entry| entry.spec().trigger != Trigger::FirstLogin)?;
        self.refusal(&entry).err()
    }

    /// Whether memory refuses a claim on `entry` now, counted as a claim's
    /// outcome when it does: the one decision of [`Engine::claim`] and
    /// [`Engine::claim_refused`].
    fn refusal(&self, entry: &CampaignEntry) -> Result<(), Refusal> {
        entry.claimable(self.now()).map_err(|refusal| {
            let refusal = Refusal::from(refusal);
            self.metrics.count_claim(refusal.as_str());
            refusal
        })
    }

    /// A login: claims every first_login campaign of the tenant that is
    /// claimable now; answers what each one gave.
    pub async fn login(
        &self,
        tenant_id: TenantId,
        user_id: UserId,
    ) -> Result<Vec<ClaimAnswer>, EngineError> {
        let now = self.now();
        let zone = self.tenant_entry(tenant_id)?.zone.clone();
        // Which campaigns a login claims is the store's to say: one published
        // on another node a moment ago grants on this node's next login.
        // Whether each can be claimed now is memory's (paused, sold out).
        let mut first_login = Vec::new();
        for id in self.store.first_login_campaigns(tenant_id).await? {
            first_login.push(self.claimable_entry(tenant_id, id).await?);
        }
        let (claimable, closed): (Vec<_>, Vec<_>) = first_login
            .into_iter()
            .filter(|entry| entry.spec().trigger == Trigger::FirstLogin)
            .partition(|entry| entry.claimable(now).is_ok());
        let claims = claimable
            .into_iter()
            .map(|entry| self.claims.claim(entry, user_id.clone(), zone.clone()));
        let mut answers = join_all(claims)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        // A campaign that sold out or closed grants nothing, but the user
        // still holds what an earlier login gave them.
        if !closed.is_empty() {
            let closed: Vec<CampaignId> = closed.iter().map(|entry| entry.id()).collect();
            let held = self.store.vouchers_of_user(tenant_id, &user_id).await?;
            answers.extend(
                held.into_iter()
                    .filter(|voucher| closed.contains(&voucher.campaign_id))
                    .map(ClaimAnswer::AlreadyHeld),
            );
        }
        Ok(answers)
    }

    pub async fn vouchers_of_user(
        &self,
        tenant_id: TenantId,
        user_id: &UserId,
    ) -> Result<Vec<VoucherRecord>, EngineError> {
        Ok(self.store.vouchers_of_user(tenant_id, user_id).await?)
    }

    pub async fn vouchers_page(
        &self,
        tenant_id: TenantId,
        id: CampaignId,
        after_rank: u32,
        limit: u32,
    ) -> Result<Vec<VoucherRecord>, EngineError> {
        self.known_entry(tenant_id, id).await?;
        Ok(self.store.vouchers_page(id, after_rank, limit).await?)
    }

    pub async fn act_on_voucher(
        &self,
        target: &VoucherTarget,
        action: VoucherAction,
    ) -> Result<VoucherOutcome, EngineError> {
        Ok(self
            .store
            .act_on_voucher(target, action, self.now())
            .await?)
    }

    pub async fn report(&self, tenant_id: TenantId, id: CampaignId) -> Result<Report, EngineError> {
        let entry = self.known_entry(tenant_id, id).await?;
        let ranges = tier_ranges(entry.spec());
        let bounds: Vec<(u32, u32)> = ranges
            .iter()
            .map(|(first, last, _)| (*first, last.unwrap_or(u32::MAX)))
            .collect();
        let before = entry.before_counting();
        let counts = self.store.campaign_counts(id, &bounds).await?;
        let payments = match entry.spec().kind {
            CampaignKind::Sale => self.store.payment_counts(id).await?,
            CampaignKind::Coupon => PaymentCounts::default(),
        };
        // The store is the authority; memory catches up with what it says.
        if entry.lifecycle() != Lifecycle::Draft {
            entry.learn_available(Available::Exactly(counts.states.available), before);
        }
        let tiers = ranges
            .into_iter()
            .zip(counts.by_rank_range)
            .map(
                |((first_rank, last_rank, discount_percent), counts)| TierCounts {
                    first_rank,
                    last_rank,
                    discount_percent,
                    counts,
                },
            )
            .collect();
        Ok(Report {
            campaign: entry.view(),
            counts: counts.states,
            tiers,
            claims_per_second: counts.claims_per_second,
            payments,
        })
    }

    /// Opens an order for a reservation and queues its payment.
    pub async fn checkout(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
        holder: Option<UserId>,
        email: Email,
        card: &Card,
    ) -> Result<OrderRecord, EngineError> {
        let router = self
            .payments
            .as_ref()
            .ok_or(EngineError::PaymentsUnavailable)?;
        let voucher = self
            .store
            .reservation(tenant_id, reservation_id)
            .await?
            .filter(|voucher| holder.is_none() || voucher.user_id == holder)
            .ok_or(EngineError::NotFound("reservation"))?;
        let entry = self.known_entry(tenant_id, voucher.campaign_id).await?;
        let Some(amount) = entry.spec().offer(voucher.rank).price else {
            return Err(EngineError::NotFound("reservation"));
        };
        let checkout = Checkout {
            tenant_id,
            reservation_id,
            holder,
            order_id: OrderId::from_uuid(uuid_at(self.now())),
            email: email.as_str().to_owned(),
            amount,
            card_brand: card.brand.as_str().to_owned(),
            card_last_four: card.last_four().to_owned(),
            sealed_card: router.key().seal(card),
        };
        match self.store.begin_checkout(&checkout, self.now()).await? {
            CheckoutOutcome::Accepted(order) => {
                router.wake();
                Ok(*order)
            }
            CheckoutOutcome::NotFound => Err(EngineError::NotFound("reservation")),
            CheckoutOutcome::Expired => Err(EngineError::ReservationExpired),
            CheckoutOutcome::PaymentInFlight(order_id) => Err(EngineError::conflict(
                ConflictKind::PaymentInProgress,
                format!("order {order_id} is being paid for this reservation"),
            )),
            CheckoutOutcome::AlreadyPaid(order_id) => Err(EngineError::conflict(
                ConflictKind::AlreadyPaid,
                format!("order {order_id} paid for this reservation"),
            )),
        }
    }

    /// Gives a reservation back before it expires.
    pub async fn release_reservation(
        &self,
        tenant_id: TenantId,
        reservation_id: ReservationId,
        holder: Option<&UserId>,
    ) -> Result<(), EngineError> {
        match self
            .store
            .release_reservation(tenant_id, reservation_id, holder)
            .await?
        {
            ReleaseOutcome::Released(campaign_id) => {
                if let Some(entry) = self.campaigns.get(campaign_id) {
                    entry.returned(1);
                }
                Ok(())
            }
            ReleaseOutcome::NotFound => Err(EngineError::NotFound("reservation")),
            ReleaseOutcome::PaymentInFlight(order_id) => Err(EngineError::conflict(
                ConflictKind::PaymentInProgress,
                format!("order {order_id} is being paid for this reservation"),
            )),
        }
    }

    pub async fn order(
        &self,
        tenant_id: TenantId,
        order_id: OrderId,
        holder: Option<&UserId>,
    ) -> Result<OrderDetails, EngineError> {
        self.store
            .order(tenant_id, order_id, holder)
            .await?
            .ok_or(EngineError::NotFound("order"))
    }

    pub async fn stored_response(
        &self,
        scope: &IdempotencyScope,
    ) -> Result<Option<StoredResponse>, EngineError> {
        Ok(self.store.stored_response(scope).await?)
    }

    pub async fn store_response(
        &self,
        scope: &IdempotencyScope,
        response: &StoredResponse,
    ) -> Result<StoredResponse, EngineError> {
        Ok(self.store.store_response(scope, response).await?)
    }

    /// Catches memory up with the store: campaigns other nodes created or
    /// changed, what is left of each running campaign, and the tenants. On
    /// one node this only corrects drift; on several it is how a campaign
    /// paused or sold out on one node is answered from memory on the others.
    pub async fn refresh_once(&self) -> Result<(), EngineError> {
        let refreshed = self.refresh_from_store().await;
        self.metrics.refreshed(refreshed.is_ok());
        if refreshed.is_ok() && self.payments.is_some() {
            self.read_payment_backlog().await;
        }
        refreshed
    }

    /// The payment queue into the metrics; a failure leaves them as they
    /// were (the refresh that came before has just reached the store).
    async fn read_payment_backlog(&self) {
        let now = self.now();
        match self.store.payment_backlog(now).await {
            Ok(backlog) => {
                let waited = backlog
                    .oldest_due_at
                    .map_or(0.0, |due| now.duration_since(due).as_secs_f64().max(0.0));
                self.metrics
                    .payments_due
                    .set(i64::try_from(backlog.due).unwrap_or(i64::MAX));
                self.metrics.payments_oldest_due_seconds.set(waited);
                self.metrics
                    .payments_working
                    .set(i64::try_from(backlog.working).unwrap_or(i64::MAX));
            }
            Err(error) => tracing::debug!(
                error = &error as &dyn std::error::Error,
                "reading the payment backlog failed"
            ),
        }
    }

    async fn refresh_from_store(&self) -> Result<(), EngineError> {
        self.reload_tenants().await?;
        let now = self.now();
        let since = *self
            .changes_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changes = self.store.campaign_changes(since).await?;
        for state in &changes.states {
            match self.campaigns.get(state.id) {
                Some(entry) => entry.follow(state),
                // A campaign this node has not seen: read once, whole.
                None => {
                    if let Some(record) = self.store.campaign(state.id).await? {
                        self.remember(record).await?;
                    }
                }
            }
        }
        *self
            .changes_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(changes.next);
        let ended_before = now.checked_sub(ENDED_KEPT).unwrap_or(Timestamp::MIN);
        let evicted = self.campaigns.evict_ended(ended_before);
        if evicted > 0 {
            tracing::debug!(evicted, "campaigns that ended over an hour ago left memory");
        }
        let running: Vec<CampaignId> = self
            .campaigns
            .all()
            .into_iter()
            .filter(|entry| {
                entry.spec().supply != Supply::Unlimited
                    && matches!(
                        entry.view().status(now),
                        CampaignStatus::Live | CampaignStatus::Paused
                    )
            })
            .map(|entry| entry.id())
            .collect();
        let counting: HashMap<CampaignId, Counting> = running
            .iter()
            .filter_map(|id| Some((*id, self.campaigns.get(*id)?.before_counting())))
            .collect();
        for (id, available) in self
            .store
            .available_counts(&running, AVAILABLE_COUNTED_MAX)
            .await?
        {
            if let (Some(entry), Some(before)) = (self.campaigns.get(id), counting.get(&id)) {
                entry.learn_available(available, *before);
            }
        }
        Ok(())
    }

    /// One sweep of the expiry worker: locks past their time back to issued,
    /// idempotency keys past their time forgotten.
    pub async fn sweep_once(&self, now: Timestamp) -> Result<SweepReport, EngineError> {
        let locks_expired = self
            .store
            .expire_locks(now, self.config.sweep_limit)
            .await?;
        self.metrics.locks_expired.inc_by(u64::from(locks_expired));
        let released = self
            .store
            .release_expired_reservations(now, self.config.sweep_limit)
            .await?;
        for campaign_id in &released {
            if let Some(entry) = self.campaigns.get(*campaign_id) {
                entry.returned(1);
            }
        }
        self.metrics
            .reservations_expired
            .inc_by(released.len() as u64);
        let forget_before = now
            .checked_sub(self.config.idempotency_ttl)
            .unwrap_or(Timestamp::MIN);
        let responses_forgotten = self
            .store
            .forget_responses(forget_before, self.config.sweep_limit)
            .await?;
        Ok(SweepReport {
            locks_expired,
            reservations_released: u32::try_from(released.len()).unwrap_or(u32::MAX),
            responses_forgotten,
        })
    }
}

/// The rank ranges of a campaign's tiers, with the full-price range past the
/// last tier when the supply goes beyond it: (first, last, discount).
fn tier_ranges(spec: &CampaignSpec) -> Vec<(u32, Option<u32>, u8)> {
    let mut ranges = Vec::new();
    let mut first = 1;
    for tier in spec.tiers.as_slice() {
        ranges.push((first, Some(tier.until_rank), tier.discount_percent));
        first = tier.until_rank.saturating_add(1);
    }
    match spec.supply {
        Supply::Limited(supply) if first <= supply => ranges.push((first, Some(supply), 0)),
        Supply::Limited(_) => {}
        Supply::Unlimited => ranges.push((first, None, 0)),
    }
    ranges
}

/// The id of the key after the tenant's current one: `k2` after `k1`, and
/// past every retired id.
pub fn next_key_id(tenant: &Tenant) -> String {
    let number = |id: &str| id.strip_prefix('k').and_then(|n| n.parse::<u64>().ok());
    let highest = std::iter::once(tenant.key_id.as_str())
        .chain(
            tenant
                .retired_keys
                .iter()
                .map(|retired| retired.key_id.as_str()),
        )
        .filter_map(number)
        .max()
        .unwrap_or(0);
    format!("k{}", highest + 1)
}

/// How long a publish or an upload waits after a slice before its next:
/// as long as the slice took, when other work ran on the writer meanwhile
/// (claims, most likely), so that the writer is free at least half the time
/// while others need it and a claim waits behind one slice at most, never
/// behind a train of them; no wait when nothing else wants the writer, so
/// a publish or an upload on an idle node runs at full speed. Bounded, so
/// that one slow slice does not stall it. An upload's wait counts against
/// its `upload_time_max`, as its slices do.
fn make_way(took: Duration, others_wrote: bool) -> Duration {
    const PAUSE_MAX: Duration = Duration::from_millis(50);
    if others_wrote {
        took.min(PAUSE_MAX)
    } else {
        Duration::ZERO
    }
}

fn upload_busy() -> EngineError {
    EngineError::conflict(
        ConflictKind::CodesRefused,
        "another upload of codes to this campaign is under way; try again when it has finished",
    )
}

fn upload_lost() -> EngineError {
    EngineError::conflict(
        ConflictKind::CodesRefused,
        "the upload stalled past its lease and another took the campaign; nothing was added",
    )
}

/// The codes of the next slice: as many as the last slice's pace makes in
/// the target time, between a floor that keeps progress and `most`.
fn next_slice(made: u32, took: Duration, target: Duration, most: u32) -> u32 {
    const FEWEST: u32 = 50;
    assert!(most >= FEWEST, "a slice takes {FEWEST} codes at least");
    let per_second = f64::from(made) / took.as_secs_f64().max(1e-6);
    let fits = (per_second * target.as_secs_f64()) as u64;
    // At most double from one slice to the next, so one fast slice (pages
    // in the cache) does not make the next one long.
    fits.min(u64::from(made) * 2)
        .clamp(u64::from(FEWEST), u64::from(most)) as u32
}

#[cfg(test)]
mod slice_tests {
    use super::*;

    #[test]
    fn a_publish_makes_way_only_for_other_writers() {
        let slice = Duration::from_millis(12);
        assert_eq!(make_way(slice, false), Duration::ZERO);
        assert_eq!(make_way(slice, true), slice);
        assert_eq!(
            make_way(Duration::from_secs(2), true),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn slices_follow_the_store_pace() {
        let target = Duration::from_millis(10);
        // 2,000 codes in 280 ms (a big, cold database): 71 fit in 10 ms.
        assert_eq!(
            next_slice(2_000, Duration::from_millis(280), target, 2_000),
            71
        );
        // Slower still: never below the floor.
        assert_eq!(next_slice(50, Duration::from_secs(1), target, 2_000), 50);
        // Fast again: grows, but at most double a slice.
        assert_eq!(
            next_slice(100, Duration::from_millis(1), target, 2_000),
            200
        );
        assert_eq!(
            next_slice(2_000, Duration::from_millis(1), target, 2_000),
            2_000
        );
    }
}
