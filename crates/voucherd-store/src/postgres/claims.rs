//! Deciding claims: the batch statement in `claim_batch.sql`, and what the
//! store does with the signals it answers.
//!
//! A batch is one statement: one round trip, one transaction, set-based.
//! It takes the lowest free vouchers with `FOR UPDATE SKIP LOCKED`, so nodes
//! claiming from one campaign at once never wait for each other, and the
//! unique constraints on (campaign, user, slot) and on daily grants are what
//! make a user's limits hold between nodes. Three things send a batch round
//! again, each rare and each after the statement wrote nothing:
//!
//! - another transaction got there first (a unique key it took while this
//!   statement ran, ranks it minted from a campaign whose supply this
//!   statement's snapshot then overstated, or a deadlock the server broke):
//!   the batch runs again and sees what that transaction did;
//! - the campaign looked sold out but some of its free vouchers were locked
//!   by another transaction: sold out is answered only when nothing is free,
//!   so the store waits for those locks to go (holding none of its own,
//!   which is why no wait can deadlock) and runs the batch again;
//! - the schema refused the batch (an engine bug) or its claims depend on
//!   each other in a way the set-based statement leaves to a sequence: the
//!   claims are decided one at a time, so that a refused claim fails alone.

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use voucherd_core::campaign::Hold;
use voucherd_core::ids::OrderedUuids;
use voucherd_core::{Date, Timestamp};

use super::connection::{database, is_race};
use super::rows::{self, get, integer, stored, stored_optional};
use crate::model::{ClaimOutcome, ClaimRequest};
use crate::stored::corrupt;
use crate::{OsEntropy, StoreError, StoreResult};

const CLAIM_BATCH: &str = include_str!("claim_batch.sql");

/// Waits until the transactions holding these vouchers end. KEY SHARE
/// conflicts with the claimers' FOR UPDATE, and the locks go with the
/// statement's own implicit transaction at once.
const WAIT_FOR_LOCKS: &str =
    "SELECT FROM vouchers WHERE id = ANY($1) ORDER BY campaign_id, rank FOR KEY SHARE";

/// Candidate codes sent for each claim that may mint. With the code space at
/// least a hundred times the supply, five collisions in a row mean something
/// is wrong (the SQLite backend tries as many).
const MINT_CANDIDATES: usize = 5;

/// Rounds of one batch before it gives up: each round either answers or
/// follows another transaction that has just finished, so many rounds mean
/// a storm of contention the caller should back off from.
const ROUNDS_MAX: usize = 32;

/// The voucher columns start after signal, waiting_on, ordinal and outcome.
const VOUCHER_FIRST_COLUMN: usize = 4;

pub(crate) async fn claim_batch(
    client: &ClientWrapper,
    claims: &[ClaimRequest],
    now: Timestamp,
) -> StoreResult<Vec<StoreResult<ClaimOutcome>>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let undecided = match decide(client, claims, now).await? {
        Decision::Answered(outcomes) => return Ok(outcomes),
        Decision::Undecided(why) => why,
    };
    if claims.len() == 1 {
        return Ok(vec![Err(undecided)]);
    }
    tracing::debug!(claims = claims.len(), reason = %undecided, "deciding a batch one claim at a time");
    // Each claim commits on its own here, in order; the caller hears of
    // all of them together, as with a batch.
    let mut outcomes = Vec::with_capacity(claims.len());
    for claim in claims {
        outcomes.push(
            match decide(client, std::slice::from_ref(claim), now).await? {
                Decision::Answered(mut answers) => answers
                    .pop()
                    .unwrap_or_else(|| Err(corrupt("a claim without an answer"))),
                Decision::Undecided(why) => Err(why),
            },
        );
    }
    Ok(outcomes)
}

enum Decision {
    /// One answer per claim, committed.
    Answered(Vec<StoreResult<ClaimOutcome>>),
    /// Nothing was written; decided one at a time the claims can be, and
    /// for a lone claim this is its answer.
    Undecided(StoreError),
}

/// What the statement answers instead of outcomes; see `claim_batch.sql`.
enum Signal {
    Wait(Vec<uuid::Uuid>),
    Sequence,
    Exhausted,
}

async fn decide(
    client: &ClientWrapper,
    claims: &[ClaimRequest],
    now: Timestamp,
) -> StoreResult<Decision> {
    let statement = client.prepare_cached(CLAIM_BATCH).await.map_err(database)?;
    let mut last_failure = StoreError::Unavailable("no round was run".into());
    for _ in 0..ROUNDS_MAX {
        // Fresh candidate codes every round: a collision is not repeated.
        let columns = ClaimColumns::new(claims, now);
        let rows = match client.query(&statement, &columns.parameters()).await {
            Ok(rows) => rows,
            Err(error) if is_race(&error) || minted_past_supply(&error) => {
                tracing::debug!(%error, "a claim batch met another transaction; running it again");
                last_failure = database(error);
                continue;
            }
            Err(error) => {
                return match database(error) {
                    refused @ StoreError::Constraint(_) => Ok(Decision::Undecided(refused)),
                    other => Err(other),
                };
            }
        };
        match signal(&rows)? {
            None => return Ok(Decision::Answered(outcomes(&rows, claims.len())?)),
            Some(Signal::Wait(locked)) => {
                client
                    .query(WAIT_FOR_LOCKS, &[&locked])
                    .await
                    .map_err(database)?;
                last_failure = StoreError::Unavailable(
                    "free vouchers stayed locked by other claims round after round".into(),
                );
            }
            Some(Signal::Sequence) => {
                return Ok(Decision::Undecided(corrupt(
                    "claims that depend on each other in a batch of one",
                )));
            }
            Some(Signal::Exhausted) => {
                return Ok(Decision::Undecided(corrupt(format!(
                    "{MINT_CANDIDATES} minted codes in a row collided; the code space is exhausted"
                ))));
            }
        }
    }
    match last_failure {
        refused @ StoreError::Constraint(_) => Ok(Decision::Undecided(refused)),
        other => Err(other),
    }
}

/// The batch minted on a room its snapshot overstated: another batch minted
/// from the campaign meanwhile, and the count's check refused this one,
/// which wrote nothing. A fresh snapshot has the room right.
fn minted_past_supply(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|error| {
        *error.code() == SqlState::CHECK_VIOLATION
            && error.constraint() == Some("campaigns_count_within_supply")
    })
}

fn signal(rows: &[Row]) -> StoreResult<Option<Signal>> {
    let Some(first) = rows.first() else {
        return Err(corrupt("a claim batch answered nothing"));
    };
    let Some(signal) = get::<Option<String>>(first, 0)? else {
        return Ok(None);
    };
    match signal.as_str() {
        "wait" => Ok(Some(Signal::Wait(get(first, 1)?))),
        "sequence" => Ok(Some(Signal::Sequence)),
        "exhausted" => Ok(Some(Signal::Exhausted)),
        other => Err(corrupt(format!("claim batch signal {other:?}"))),
    }
}

fn outcomes(rows: &[Row], count: usize) -> StoreResult<Vec<StoreResult<ClaimOutcome>>> {
    // A claim without an answer had a voucher locked for it that the update
    // did not take; the others of the batch are sound.
    let mut outcomes: Vec<StoreResult<ClaimOutcome>> = (0..count)
        .map(|_| Err(corrupt("a voucher locked for a claim could not be taken")))
        .collect();
    for row in rows {
        let ordinal: i64 = get(row, 2)?;
        let slot = usize::try_from(ordinal - 1)
            .ok()
            .and_then(|index| outcomes.get_mut(index))
            .ok_or_else(|| corrupt(format!("an answer to claim {ordinal} of {count}")))?;
        let outcome: String = get(row, 3)?;
        let voucher = || rows::voucher_at(row, VOUCHER_FIRST_COLUMN);
        *slot = match outcome.as_str() {
            "claimed" => voucher().map(ClaimOutcome::Claimed),
            "held" => voucher().map(ClaimOutcome::AlreadyHeld),
            "sold_out" => Ok(ClaimOutcome::SoldOut),
            "daily" => Ok(ClaimOutcome::DailyLimitReached),
            other => Err(corrupt(format!("claim outcome {other:?}"))),
        };
    }
    Ok(outcomes)
}

/// The claims as one array per field, the statement's parameters.
struct ClaimColumns<'a> {
    tenant_ids: Vec<uuid::Uuid>,
    campaign_ids: Vec<uuid::Uuid>,
    user_ids: Vec<&'a str>,
    per_user_limits: Vec<i32>,
    states: Vec<&'static str>,
    reserved_untils: Vec<Option<Timestamp>>,
    expires_ats: Vec<Option<Timestamp>>,
    limit_groups: Vec<Option<&'a str>>,
    days: Vec<Option<Date>>,
    mints: Vec<bool>,
    redemptions_maxes: Vec<i32>,
    minted_ids: Vec<uuid::Uuid>,
    /// The id of the reservation a claim makes, when it holds one.
    reservation_ids: Vec<uuid::Uuid>,
    /// The claim (1-based) each candidate code is for, in trying order.
    code_ordinals: Vec<i64>,
    codes: Vec<String>,
    now: Timestamp,
}

impl<'a> ClaimColumns<'a> {
    fn new(claims: &'a [ClaimRequest], now: Timestamp) -> ClaimColumns<'a> {
        let mut columns = ClaimColumns {
            tenant_ids: Vec::with_capacity(claims.len()),
            campaign_ids: Vec::with_capacity(claims.len()),
            user_ids: Vec::with_capacity(claims.len()),
            per_user_limits: Vec::with_capacity(claims.len()),
            states: Vec::with_capacity(claims.len()),
            reserved_untils: Vec::with_capacity(claims.len()),
            expires_ats: Vec::with_capacity(claims.len()),
            limit_groups: Vec::with_capacity(claims.len()),
            days: Vec::with_capacity(claims.len()),
            mints: Vec::with_capacity(claims.len()),
            redemptions_maxes: Vec::with_capacity(claims.len()),
            minted_ids: Vec::with_capacity(claims.len()),
            reservation_ids: Vec::with_capacity(claims.len()),
            code_ordinals: Vec::new(),
            codes: Vec::new(),
            now: stored(now),
        };
        // Time-ordered: a minted voucher's id and a reservation's land at
        // their indexes' ends.
        let mut ids = OrderedUuids::at(now);
        for (ordinal, claim) in (1_i64..).zip(claims) {
            let (state, reserved_until, expires_at) = match claim.hold {
                Hold::Issue { expires_at } => ("issued", None, expires_at),
                Hold::Reserve { until } => ("reserved", Some(until), None),
            };
            columns.tenant_ids.push(*claim.tenant_id.as_uuid());
            columns.campaign_ids.push(*claim.campaign_id.as_uuid());
            columns.user_ids.push(claim.user_id.as_str());
            columns.per_user_limits.push(integer(claim.per_user_limit));
            columns.states.push(state);
            columns
                .reserved_untils
                .push(stored_optional(reserved_until));
            columns.expires_ats.push(stored_optional(expires_at));
            columns
                .limit_groups
                .push(claim.daily.as_ref().map(|daily| daily.group.as_str()));
            columns
                .days
                .push(claim.daily.as_ref().map(|daily| daily.day));
            columns.mints.push(claim.mint.is_some());
            columns
                .redemptions_maxes
                .push(integer(claim.redemptions_max));
            columns.minted_ids.push(ids.next_id());
            columns.reservation_ids.push(ids.next_id());
            if let Some(pattern) = &claim.mint {
                for _ in 0..MINT_CANDIDATES {
                    columns.code_ordinals.push(ordinal);
                    columns
                        .codes
                        .push(pattern.generate(&mut OsEntropy).as_str().to_owned());
                }
            }
        }
        columns
    }

    fn parameters(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 16] {
        [
            &self.tenant_ids,
            &self.campaign_ids,
            &self.user_ids,
            &self.per_user_limits,
            &self.states,
            &self.reserved_untils,
            &self.expires_ats,
            &self.limit_groups,
            &self.days,
            &self.mints,
            &self.redemptions_maxes,
            &self.minted_ids,
            &self.code_ordinals,
            &self.codes,
            &self.now,
            &self.reservation_ids,
        ]
    }
}
