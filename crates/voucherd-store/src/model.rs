//! What the store keeps and what its operations take and answer.

use voucherd_core::TimeZone;
use voucherd_core::Timestamp;
use voucherd_core::campaign::{CampaignSpec, DailyKey, Hold, Lifecycle};
use voucherd_core::code::{CodePattern, VoucherCode};
use voucherd_core::ids::{CampaignId, OrderId, ReservationId, TenantId, UserId, VoucherId};
use voucherd_core::money::Money;
use voucherd_core::voucher::{Redemption, VoucherRefusal, VoucherState};

/// A business using voucherd, with the key its tokens are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// The key tokens are signed with now, and its id (a token's `kid`).
    pub signing_key: Vec<u8>,
    pub key_id: String,
    /// Keys rotated out: each verifies the tokens it signed before it was
    /// retired, until they expire.
    pub retired_keys: Vec<RetiredKey>,
    /// Keys of the tenant's own identity provider, by `kid`: voucherd
    /// verifies the tokens they sign and holds no private half.
    pub public_keys: Vec<PublicKey>,
    /// An IANA zone name; daily limits count calendar days there.
    pub time_zone: String,
    /// Requests per second across the tenant's tokens; `None` is no limit.
    pub rate_limit_per_second: Option<u32>,
    pub created_at: Timestamp,
}

/// A tenant's new signing key, replacing the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    pub tenant_id: TenantId,
    /// The id of the key being replaced: two rotations at once cannot both
    /// retire the same key.
    pub replacing: String,
    pub key_id: String,
    pub signing_key: Vec<u8>,
    pub now: Timestamp,
}

/// A registered public key: its `kid` and its JWK, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: String,
    pub jwk: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredKey {
    pub key_id: String,
    pub signing_key: Vec<u8>,
    pub retired_at: Timestamp,
}

/// What a person signed in to a tenant's pages may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRole {
    /// Buys and claims for themselves: the API's `customer` role.
    Customer,
    /// Manages the tenant's campaigns: the API's `admin` role.
    Admin,
}

impl AccountRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            AccountRole::Customer => "customer",
            AccountRole::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<AccountRole> {
        match text {
            "customer" => Some(AccountRole::Customer),
            "admin" => Some(AccountRole::Admin),
            _ => None,
        }
    }
}

/// A person's sign-in to one tenant: an email (kept lower-cased, unique in
/// the tenant), the PHC string of their password's argon2id hash, and the
/// user id their claims are made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub tenant_id: TenantId,
    pub email: String,
    pub user_id: UserId,
    pub role: AccountRole,
    pub password_hash: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRecord {
    pub id: CampaignId,
    pub tenant_id: TenantId,
    pub spec: CampaignSpec,
    pub lifecycle: Lifecycle,
    /// How many vouchers (and so codes) exist: the supply once published, or
    /// how far an unlimited campaign has minted.
    pub voucher_count: u32,
    pub created_at: Timestamp,
    pub published_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherRecord {
    pub id: VoucherId,
    pub campaign_id: CampaignId,
    pub tenant_id: TenantId,
    pub rank: u32,
    pub code: VoucherCode,
    pub state: VoucherState,
    pub user_id: Option<UserId>,
    pub claimed_at: Option<Timestamp>,
    pub reservation_id: Option<ReservationId>,
    pub reserved_until: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub locked_until: Option<Timestamp>,
    pub redemptions: u32,
    pub redemptions_max: u32,
}

impl VoucherRecord {
    pub fn redemption(&self) -> Redemption {
        Redemption {
            state: self.state,
            expires_at: self.expires_at,
            locked_until: self.locked_until,
            redemptions: self.redemptions,
            redemptions_max: self.redemptions_max,
        }
    }
}

/// The changing part of a campaign, which nodes follow in each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignState {
    pub id: CampaignId,
    pub lifecycle: Lifecycle,
    pub voucher_count: u32,
    pub published_at: Option<Timestamp>,
}

/// Where a node's reading of campaign changes stands; only the store that
/// made it knows what the number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeCursor(pub i64);

/// How many vouchers of a campaign are available, counted up to a bound:
/// a count walks the campaign's available vouchers, so an unbounded count
/// of a campaign of five million costs a reader a core (see
/// [`crate::Store::available_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Available {
    /// Every available voucher was counted.
    Exactly(u64),
    /// The count stopped at the bound: there are at least this many.
    AtLeast(u64),
}

impl Available {
    /// What a count that stopped after `counted_max + 1` found means.
    pub fn bounded(counted: u64, counted_max: u64) -> Available {
        if counted > counted_max {
            Available::AtLeast(counted)
        } else {
            Available::Exactly(counted)
        }
    }

    /// The count with `more` available vouchers that were not counted one
    /// by one (ranks of a campaign whose codes are made on claim).
    pub fn plus(self, more: u64) -> Available {
        match self {
            Available::Exactly(counted) => Available::Exactly(counted.saturating_add(more)),
            Available::AtLeast(counted) => Available::AtLeast(counted.saturating_add(more)),
        }
    }
}

/// Campaigns changed since a cursor, and the cursor to read from next.
/// A change may be answered twice; none is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignChanges {
    pub states: Vec<CampaignState>,
    pub next: ChangeCursor,
}

/// A node asking for its share of a gateway's rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRequest {
    pub gateway: String,
    /// This run of this node; a restarted node is a new one.
    pub node: String,
    /// The gateway's rate for the whole deployment.
    pub rate: u32,
    /// How much of it this node could use now.
    pub want: u32,
    pub now: Timestamp,
    /// Until when the grant counts against the rate: a window after the
    /// node may last use it.
    pub counted_until: Timestamp,
}

/// One user's claim on one campaign, with everything the store needs to
/// decide it inside the batch's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub tenant_id: TenantId,
    pub campaign_id: CampaignId,
    pub user_id: UserId,
    pub per_user_limit: u32,
    pub hold: Hold,
    pub daily: Option<DailyKey>,
    /// Campaigns whose codes do not exist before their claims (unlimited
    /// ones, and those with codes made on claim) mint a voucher from this
    /// pattern when no free one is available. The store mints no rank past
    /// the campaign's supply, as its row says: such a claim is sold out.
    pub mint: Option<CodePattern>,
    pub redemptions_max: u32,
}

impl ClaimRequest {
    /// The claim of `user_id` on `campaign` at `now`, for a tenant whose
    /// calendar days are those of `zone`.
    pub fn new(
        campaign: &CampaignRecord,
        user_id: UserId,
        zone: &TimeZone,
        now: Timestamp,
    ) -> ClaimRequest {
        let spec = &campaign.spec;
        ClaimRequest {
            tenant_id: campaign.tenant_id,
            campaign_id: campaign.id,
            user_id,
            per_user_limit: spec.per_user_limit,
            hold: spec.hold(now),
            daily: spec.daily_key(zone, now),
            mint: spec
                .code_pattern()
                .filter(|_| spec.mints_on_claim())
                .cloned(),
            redemptions_max: spec.redemptions_max,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// A new voucher: the lowest free rank.
    Claimed(VoucherRecord),
    /// The user already holds their limit; this is their latest voucher.
    AlreadyHeld(VoucherRecord),
    SoldOut,
    DailyLimitReached,
}

/// The answer to adding codes to a draft campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddCodesOutcome {
    Added {
        added: u32,
        /// Codes refused because the tenant already has them; never merged.
        duplicates: Vec<VoucherCode>,
        voucher_count: u32,
    },
    /// Adding them would pass the supply; nothing was added.
    OverSupply {
        room: u32,
        offered: u32,
    },
    NotDraft,
    /// An upload holds the campaign (see [`CodesLease`]).
    Busy,
    NotFound,
}

/// Whose a draft's codes are while an upload stages them, and until when.
///
/// Staged codes are voucher rows past the campaign's `voucher_count`:
/// nobody sees them until the upload commits, which counts them in one
/// small write; an upload refused half-way, or one whose lease ran out,
/// leaves nothing counted, and whoever takes the campaign next removes
/// its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodesLease {
    pub id: uuid::Uuid,
    pub now: Timestamp,
    /// Another upload may take the campaign after this.
    pub until: Timestamp,
    /// What this lease staged so far, as its holder counted: a lease whose
    /// campaign was taken from it never takes it back half-way.
    pub staged: u32,
}

/// The answer to staging one slice of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    Staged {
        added: u32,
        /// Codes the tenant already has, or that came twice; never merged.
        duplicates: Vec<VoucherCode>,
        /// Codes this lease has staged so far, this slice's included.
        staged: u32,
    },
    /// Rows an interrupted upload left behind were removed, as many as one
    /// job removes; nothing of the slice was staged: stage it again.
    Cleaning,
    /// The slice's new codes pass the supply; none of them were staged.
    OverSupply {
        room: u32,
        offered: u32,
    },
    /// Another upload holds the campaign and its lease has not run out.
    Busy,
    /// This lease's campaign was taken by another upload (its lease ran
    /// out): what it staged is gone, nothing of it will count.
    Lost,
    NotDraft,
    NotFound,
}

/// The answer to committing what a lease staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed {
        added: u32,
        voucher_count: u32,
    },
    /// The lease ran out and another upload took the campaign: nothing of
    /// this one was counted.
    Lost,
    NotFound,
}

/// The answer to a lifecycle change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleOutcome {
    Changed,
    /// The campaign was not in the state the change starts from.
    WrongState(Lifecycle),
    /// Publishing needs exactly `supply` codes.
    CodesMissing {
        voucher_count: u32,
        supply: u32,
    },
    /// Publishing waits for the upload that holds the campaign.
    UploadUnderWay,
    NotFound,
}

/// Which voucher a lock, unlock or redeem is about, and who may touch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherTarget {
    pub tenant_id: TenantId,
    pub code: VoucherCode,
    /// A customer may act on their own vouchers only.
    pub holder: Option<UserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoucherAction {
    /// Locks for the campaign's `lock_ttl`.
    Lock,
    Unlock,
    Redeem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoucherOutcome {
    Done(VoucherRecord),
    Refused(VoucherRefusal, VoucherRecord),
    NotFound,
}

/// Vouchers of one campaign (or one rank range of it) by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub available: u64,
    pub reserved: u64,
    pub issued: u64,
    pub locked: u64,
    pub redeemed: u64,
}

impl StateCounts {
    pub fn add(&mut self, state: VoucherState, count: u64) {
        let slot = match state {
            VoucherState::Available => &mut self.available,
            VoucherState::Reserved => &mut self.reserved,
            VoucherState::Issued => &mut self.issued,
            VoucherState::Locked => &mut self.locked,
            VoucherState::Redeemed => &mut self.redeemed,
        };
        *slot += count;
    }

    /// Vouchers that belong to someone for good: issued, locked or redeemed.
    pub fn held(&self) -> u64 {
        self.issued + self.locked + self.redeemed
    }

    pub fn total(&self) -> u64 {
        self.available + self.reserved + self.held()
    }
}

/// Counts for a campaign report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignCounts {
    pub states: StateCounts,
    /// One entry per rank range asked for, in order.
    pub by_rank_range: Vec<StateCounts>,
    /// Claims per second, oldest first: (second since the epoch, claims).
    pub claims_per_second: Vec<(i64, u64)>,
}

/// Who an idempotency key belongs to: keys of different callers never meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyScope {
    pub tenant_id: TenantId,
    pub principal: String,
    pub key: String,
}

/// A response kept for replay under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// A hash of the request it answered; the same key with another request
    /// is refused.
    pub fingerprint: Vec<u8>,
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub created_at: Timestamp,
}

/// A buyer's checkout of a reservation: the order to open and the sealed
/// card the payment queue will charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub tenant_id: TenantId,
    pub reservation_id: ReservationId,
    /// A customer may check out their own reservations only.
    pub holder: Option<UserId>,
    pub order_id: OrderId,
    pub email: String,
    pub amount: Money,
    pub card_brand: String,
    pub card_last_four: String,
    /// The card, sealed with a key the database does not hold; deleted when
    /// the payment reaches its outcome.
    pub sealed_card: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Paid,
    Failed,
}

impl OrderStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        match text {
            "pending" => Some(OrderStatus::Pending),
            "paid" => Some(OrderStatus::Paid),
            "failed" => Some(OrderStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: OrderId,
    pub tenant_id: TenantId,
    pub campaign_id: CampaignId,
    pub voucher_id: VoucherId,
    pub reservation_id: ReservationId,
    pub user_id: UserId,
    pub email: String,
    pub amount: Money,
    pub card_brand: String,
    pub card_last_four: String,
    pub status: OrderStatus,
    /// Why a failed order failed.
    pub failure: Option<String>,
    /// The gateway that settled it.
    pub gateway: Option<String>,
    pub created_at: Timestamp,
    pub settled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutOutcome {
    Accepted(Box<OrderRecord>),
    /// No such reservation for this caller (or it was released).
    NotFound,
    Expired,
    /// A payment for this reservation is under way already.
    PaymentInFlight(OrderId),
    /// The reservation was paid for; the voucher is issued.
    AlreadyPaid(OrderId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released(CampaignId),
    NotFound,
    PaymentInFlight(OrderId),
}

/// What one gateway call did, kept as the order's transaction history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    Charge,
    Lookup,
}

impl AttemptKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptKind::Charge => "charge",
            AttemptKind::Lookup => "lookup",
        }
    }

    pub fn parse(text: &str) -> Option<AttemptKind> {
        match text {
            "charge" => Some(AttemptKind::Charge),
            "lookup" => Some(AttemptKind::Lookup),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Captured,
    Declined,
    /// The gateway did not process it (429, 503, no connection).
    Refused,
    /// Perhaps processed: a timeout, a reset, another error.
    Unknown,
    /// A lookup found no such charge.
    NotFound,
    /// A lookup could not be made.
    Failed,
    /// Started but never finished: the node stopped mid-call.
    Interrupted,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 7] = [
        AttemptOutcome::Captured,
        AttemptOutcome::Declined,
        AttemptOutcome::Refused,
        AttemptOutcome::Unknown,
        AttemptOutcome::NotFound,
        AttemptOutcome::Failed,
        AttemptOutcome::Interrupted,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptOutcome::Captured => "captured",
            AttemptOutcome::Declined => "declined",
            AttemptOutcome::Refused => "refused",
            AttemptOutcome::Unknown => "unknown",
            AttemptOutcome::NotFound => "not_found",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<AttemptOutcome> {
        AttemptOutcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1, 2, ... per order.
    pub number: u32,
    pub gateway: String,
    pub kind: AttemptKind,
    /// `None` while the call is under way.
    pub outcome: Option<AttemptOutcome>,
    pub detail: Option<String>,
    pub charge_id: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// This node's hold on one queued payment. Another node takes the payment
/// only after the lease ran out, and from then on this lease's writes are
/// refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentLease {
    pub order_id: OrderId,
    pub lease_id: String,
}

/// A payment taken from the queue for this node to work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTask {
    pub lease: PaymentLease,
    pub order: OrderRecord,
    pub sealed_card: Vec<u8>,
    /// Set when an earlier call's outcome is unknown: the charge must be
    /// resolved at this gateway before it may go anywhere else.
    pub pinned_gateway: Option<String>,
    pub attempts: u32,
}

/// How a gateway call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub number: u32,
    pub outcome: AttemptOutcome,
    pub detail: Option<String>,
    pub charge_id: Option<String>,
}

/// What becomes of a payment: the call that decided it (none when no
/// gateway had room), and the resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentStep {
    pub attempt: Option<AttemptResult>,
    pub resolution: Resolution,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Captured: the order is paid and the voucher issued, in one step.
    Paid {
        gateway: String,
        expires_at: Option<Timestamp>,
    },
    /// Declined (or not chargeable): the order failed; the reservation
    /// stays until it expires, so the buyer may try again.
    Failed { reason: String },
    /// Try again at `next_attempt_at`; while `pinned_gateway` is set, only
    /// a lookup at that gateway may come next.
    Retry {
        next_attempt_at: Timestamp,
        pinned_gateway: Option<String>,
    },
}

/// An order with its transaction history and its voucher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDetails {
    pub order: OrderRecord,
    pub attempts: Vec<AttemptRecord>,
    pub voucher: VoucherRecord,
}

/// The payment queue as it stands, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaymentBacklog {
    /// Queued payments whose next attempt is due.
    pub due: u64,
    /// When the oldest of them became due; `None` when none is.
    pub oldest_due_at: Option<Timestamp>,
    /// Payments a node holds a lease on (being charged or looked up).
    pub working: u64,
}

/// Money and gateway figures of a campaign, for its report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentCounts {
    /// Paid orders' amounts, by currency.
    pub revenue: Vec<Money>,
    pub orders_paid: u64,
    pub orders_failed: u64,
    pub orders_pending: u64,
    /// Gateway calls by (gateway, outcome).
    pub attempts: Vec<(String, AttemptOutcome, u64)>,
}
