//! Checkout, the payment queue, and how a payment settles, for several
//! nodes on one database.
//!
//! Every write is conditional on the state it leaves, and what decides
//! between two nodes is a row lock taken by that write, never a value read
//! in an earlier statement:
//!
//! - a checkout sets the voucher's `payment_order_id` only while it is
//!   unset, so of two checkouts of one reservation the second finds it set
//!   once the first commits (and the unique index on pending orders per
//!   reservation stands behind that);
//! - nodes take due payments with `FOR UPDATE SKIP LOCKED` and a fresh lease
//!   id, so no two hold one payment, and a node writes about a payment only
//!   while the lease id it was given is still the payment's;
//! - releases skip reservations being paid, in the same statement.
//!
//! Where a conditional write matched nothing, a read after it says why; if
//! that read finds the write would be allowed now, another transaction
//! changed the row in between and the write runs again.

use deadpool_postgres::{ClientWrapper, Transaction};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use voucherd_core::ids::{CampaignId, OrderId, ReservationId, TenantId, UserId, VoucherId};
use voucherd_core::money::{Currency, Money};
use voucherd_core::voucher::VoucherState;
use voucherd_core::{SignedDuration, Timestamp};

use super::connection::{database, is_race};
use super::rows::{self, VOUCHER_COLUMNS, get, integer, stored, stored_optional};
use crate::model::PaymentBacklog;
use crate::model::{
    AttemptKind, AttemptOutcome, AttemptRecord, AttemptResult, Checkout, CheckoutOutcome,
    OrderDetails, OrderRecord, OrderStatus, PaymentCounts, PaymentLease, PaymentStep, PaymentTask,
    ReleaseOutcome, Resolution, VoucherRecord,
};
use crate::stored::{corrupt, count};
use crate::{StoreError, StoreResult};

const ORDER_COLUMNS: &str = "id, tenant_id, campaign_id, voucher_id, reservation_id, user_id, email, \
     amount, currency, card_brand, card_last_four, status, failure, gateway, created_at, settled_at";

/// How many columns [`ORDER_COLUMNS`] has: lease columns follow them.
const ORDER_COLUMN_COUNT: usize = 16;

const ATTEMPT_COLUMNS: &str =
    "number, gateway, kind, outcome, detail, charge_id, started_at, finished_at";

/// A checkout or release runs again when its write matched nothing but the
/// reservation, read right after, allows it: another transaction changed
/// the reservation in between (a payment failed, a checkout raced it).
const DECISION_ATTEMPTS_MAX: usize = 3;

fn order(row: &Row) -> StoreResult<OrderRecord> {
    let amount: i64 = get(row, 7)?;
    let currency: String = get(row, 8)?;
    let status: String = get(row, 11)?;
    Ok(OrderRecord {
        id: OrderId::from_uuid(get(row, 0)?),
        tenant_id: TenantId::from_uuid(get(row, 1)?),
        campaign_id: CampaignId::from_uuid(get(row, 2)?),
        voucher_id: VoucherId::from_uuid(get(row, 3)?),
        reservation_id: ReservationId::from_uuid(get(row, 4)?),
        user_id: UserId::parse(&get::<String>(row, 5)?).map_err(corrupt)?,
        email: get(row, 6)?,
        amount: Currency::parse(&currency)
            .and_then(|currency| Money::new(amount, currency))
            .map_err(corrupt)?,
        card_brand: get(row, 9)?,
        card_last_four: get(row, 10)?,
        status: OrderStatus::parse(&status).ok_or_else(|| corrupt(&status))?,
        failure: get(row, 12)?,
        gateway: get(row, 13)?,
        created_at: get(row, 14)?,
        settled_at: get(row, 15)?,
    })
}

fn attempt(row: &Row) -> StoreResult<AttemptRecord> {
    let kind: String = get(row, 2)?;
    let outcome: Option<String> = get(row, 3)?;
    Ok(AttemptRecord {
        number: count(i64::from(get::<i32>(row, 0)?))?,
        gateway: get(row, 1)?,
        kind: AttemptKind::parse(&kind).ok_or_else(|| corrupt(&kind))?,
        outcome: outcome
            .map(|outcome| AttemptOutcome::parse(&outcome).ok_or_else(|| corrupt(&outcome)))
            .transpose()?,
        detail: get(row, 4)?,
        charge_id: get(row, 5)?,
        started_at: get(row, 6)?,
        finished_at: get(row, 7)?,
    })
}

/// A lease id as the database keeps it; one that is not a uuid was never
/// handed out, so it holds nothing.
fn lease_uuid(lease: &PaymentLease) -> Option<uuid::Uuid> {
    lease.lease_id.parse().ok()
}

pub(crate) async fn reservation(
    client: &ClientWrapper,
    tenant_id: TenantId,
    reservation_id: ReservationId,
) -> StoreResult<Option<VoucherRecord>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE tenant_id = $1 AND reservation_id = $2"
        ))
        .await
        .map_err(database)?;
    client
        .query_opt(&statement, &[tenant_id.as_uuid(), reservation_id.as_uuid()])
        .await
        .map_err(database)?
        .as_ref()
        .map(rows::voucher)
        .transpose()
}

/// Opens the order and queues its payment only if it can set the voucher's
/// `payment_order_id`: the update waits for any other transaction holding
/// the voucher and re-checks the row as that one left it, so of two
/// checkouts at once exactly one matches. Every write hangs off that one
/// row, so a checkout that matched nothing wrote nothing.
const OPEN_ORDER: &str = "
    WITH held AS (
        UPDATE vouchers SET payment_order_id = $4
        WHERE tenant_id = $1 AND reservation_id = $2
          AND ($3::text IS NULL OR user_id = $3)
          AND state = 'reserved' AND payment_order_id IS NULL AND reserved_until > $5
        RETURNING id, campaign_id, user_id
    ),
    opened AS (
        INSERT INTO orders (id, tenant_id, campaign_id, voucher_id, reservation_id, user_id, email,
                            amount, currency, card_brand, card_last_four, status, created_at)
        SELECT $4, $1, held.campaign_id, held.id, $2, held.user_id, $6, $7, $8, $9, $10,
               'pending', $5
        FROM held
        RETURNING *
    ),
    queued AS (
        INSERT INTO payments (order_id, state, next_attempt_at, sealed_card)
        SELECT id, 'queued', $5, $11 FROM opened
    )
    SELECT id, tenant_id, campaign_id, voucher_id, reservation_id, user_id, email, amount,
           currency, card_brand, card_last_four, status, failure, gateway, created_at, settled_at
    FROM opened";

/// Why a checkout matched nothing: the reservation as it is now.
const CHECKOUT_REFUSAL: &str = "
    SELECT voucher.state, voucher.reserved_until, voucher.payment_order_id,
           (SELECT paid.id FROM orders AS paid
            WHERE paid.voucher_id = voucher.id AND paid.status = 'paid')
    FROM vouchers AS voucher
    WHERE voucher.tenant_id = $1 AND voucher.reservation_id = $2
      AND ($3::text IS NULL OR voucher.user_id = $3)";

pub(crate) async fn begin_checkout(
    client: &ClientWrapper,
    checkout: &Checkout,
    now: Timestamp,
) -> StoreResult<CheckoutOutcome> {
    let now = stored(now);
    let open = client.prepare_cached(OPEN_ORDER).await.map_err(database)?;
    let holder = checkout.holder.as_ref().map(UserId::as_str);
    let currency = checkout.amount.currency.as_str();
    let parameters: [&(dyn ToSql + Sync); 11] = [
        checkout.tenant_id.as_uuid(),
        checkout.reservation_id.as_uuid(),
        &holder,
        checkout.order_id.as_uuid(),
        &now,
        &checkout.email,
        &checkout.amount.amount,
        &currency,
        &checkout.card_brand,
        &checkout.card_last_four,
        &checkout.sealed_card,
    ];
    for _ in 0..DECISION_ATTEMPTS_MAX {
        match client.query_opt(&open, &parameters).await {
            Ok(Some(row)) => return Ok(CheckoutOutcome::Accepted(Box::new(order(&row)?))),
            Ok(None) => {}
            // Another checkout's pending order for this reservation: the
            // refusal read below sees it in flight.
            Err(error) if is_race(&error) => {
                tracing::debug!(%error, "a checkout met another one for the same reservation");
            }
            Err(error) => return Err(database(error)),
        }
        if let Some(refused) = checkout_refusal(client, checkout, now).await? {
            return Ok(refused);
        }
    }
    Err(StoreError::Unavailable(
        format!(
            "reservation {} kept changing under its checkout",
            checkout.reservation_id
        )
        .into(),
    ))
}

/// The answer to a checkout that matched nothing, or `None` when the
/// reservation can be checked out now after all.
async fn checkout_refusal(
    client: &ClientWrapper,
    checkout: &Checkout,
    now: Timestamp,
) -> StoreResult<Option<CheckoutOutcome>> {
    let statement = client
        .prepare_cached(CHECKOUT_REFUSAL)
        .await
        .map_err(database)?;
    let found = client
        .query_opt(
            &statement,
            &[
                checkout.tenant_id.as_uuid(),
                checkout.reservation_id.as_uuid(),
                &checkout.holder.as_ref().map(UserId::as_str),
            ],
        )
        .await
        .map_err(database)?;
    let Some(row) = found else {
        return Ok(Some(CheckoutOutcome::NotFound));
    };
    let state: String = get(&row, 0)?;
    let reserved_until: Option<Timestamp> = get(&row, 1)?;
    let paying: Option<uuid::Uuid> = get(&row, 2)?;
    let paid: Option<uuid::Uuid> = get(&row, 3)?;
    if VoucherState::parse(&state).ok_or_else(|| corrupt(&state))? != VoucherState::Reserved {
        return Ok(Some(match paid {
            Some(order_id) => CheckoutOutcome::AlreadyPaid(OrderId::from_uuid(order_id)),
            None => CheckoutOutcome::NotFound,
        }));
    }
    if let Some(order_id) = paying {
        return Ok(Some(CheckoutOutcome::PaymentInFlight(OrderId::from_uuid(
            order_id,
        ))));
    }
    if reserved_until.is_none_or(|until| until <= now) {
        return Ok(Some(CheckoutOutcome::Expired));
    }
    Ok(None)
}

/// Returns to the pool the reserved vouchers `filter` picks (`FOR UPDATE`
/// in its own CTE), unless a payment is under way, and forgets their daily
/// grants: the user may claim again that day. Answers one campaign per
/// voucher released.
fn release(filter: &str) -> String {
    format!(
        "WITH picked AS MATERIALIZED ({filter}),
         released AS (
             UPDATE vouchers
             SET state = 'available', user_id = NULL, user_slot = NULL, claimed_at = NULL,
                 reservation_id = NULL, reserved_until = NULL
             FROM picked
             WHERE vouchers.id = picked.id
               AND vouchers.state = 'reserved' AND vouchers.payment_order_id IS NULL
             RETURNING vouchers.id, vouchers.campaign_id
         ),
         forgotten AS (
             DELETE FROM daily_grants WHERE voucher_id IN (SELECT id FROM released)
         )
         SELECT campaign_id FROM released"
    )
}

pub(crate) async fn release_reservation(
    client: &ClientWrapper,
    tenant_id: TenantId,
    reservation_id: ReservationId,
    holder: Option<&UserId>,
) -> StoreResult<ReleaseOutcome> {
    let holder = holder.map(UserId::as_str);
    let parameters: [&(dyn ToSql + Sync); 3] =
        [tenant_id.as_uuid(), reservation_id.as_uuid(), &holder];
    // Waits for a checkout holding the voucher, then sees what it did.
    let released = client
        .prepare_cached(&release(
            "SELECT id FROM vouchers
             WHERE tenant_id = $1 AND reservation_id = $2 AND ($3::text IS NULL OR user_id = $3)
               AND state = 'reserved' AND payment_order_id IS NULL
             FOR UPDATE",
        ))
        .await
        .map_err(database)?;
    let paying = client
        .prepare_cached(
            "SELECT payment_order_id FROM vouchers
             WHERE tenant_id = $1 AND reservation_id = $2 AND ($3::text IS NULL OR user_id = $3)
               AND state = 'reserved'",
        )
        .await
        .map_err(database)?;
    for _ in 0..DECISION_ATTEMPTS_MAX {
        let found = client
            .query_opt(&released, &parameters)
            .await
            .map_err(database)?;
        if let Some(row) = found {
            return Ok(ReleaseOutcome::Released(CampaignId::from_uuid(get(
                &row, 0,
            )?)));
        }
        let found = client
            .query_opt(&paying, &parameters)
            .await
            .map_err(database)?;
        match found
            .map(|row| get::<Option<uuid::Uuid>>(&row, 0))
            .transpose()?
        {
            None => return Ok(ReleaseOutcome::NotFound),
            Some(Some(order_id)) => {
                return Ok(ReleaseOutcome::PaymentInFlight(OrderId::from_uuid(
                    order_id,
                )));
            }
            // The payment failed in between: releasable now.
            Some(None) => {}
        }
    }
    Err(StoreError::Unavailable(
        format!("reservation {reservation_id} kept changing under its release").into(),
    ))
}

/// Skips reservations another transaction holds (a checkout, a release):
/// the next sweep sees what it made of them.
pub(crate) async fn release_expired(
    client: &ClientWrapper,
    now: Timestamp,
    limit: u32,
) -> StoreResult<Vec<CampaignId>> {
    let statement = client
        .prepare_cached(&release(
            "SELECT id FROM vouchers
             WHERE state = 'reserved' AND reserved_until <= $1 AND payment_order_id IS NULL
             ORDER BY reserved_until
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
        ))
        .await
        .map_err(database)?;
    client
        .query(&statement, &[&stored(now), &i64::from(limit)])
        .await
        .map_err(database)?
        .iter()
        .map(|row| Ok(CampaignId::from_uuid(get(row, 0)?)))
        .collect()
}

/// Takes due payments: queued ones whose time has come, and working ones
/// whose lease ran out, whose node stopped mid-call. What that node was
/// calling is not known, so its open attempt is marked interrupted, in the
/// same statement and only for the payments taken here. SKIP LOCKED lets
/// nodes lease at once without waiting for each other, and a row another
/// node leased meanwhile is re-checked as it now is: working under a live
/// lease, so not due. Each kind is taken from its own partial index, the
/// earliest first: one condition with an `OR` scanned and sorted every
/// payment due (15 ms for 20,000 queued, each lease call) where each index
/// gives the first few in 0.1 ms.
const LEASE: &str = "
    WITH lapsed AS MATERIALIZED (
        SELECT order_id, next_attempt_at FROM payments
        WHERE state = 'working' AND lease_until <= $1
        ORDER BY lease_until
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ),
    queued AS MATERIALIZED (
        SELECT order_id, next_attempt_at FROM payments
        WHERE state = 'queued' AND next_attempt_at <= $1
        ORDER BY next_attempt_at, order_id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ),
    due AS MATERIALIZED (
        SELECT order_id, lapsed FROM (
            SELECT order_id, next_attempt_at, true AS lapsed FROM lapsed
            UNION ALL
            SELECT order_id, next_attempt_at, false AS lapsed FROM queued
        ) candidates
        ORDER BY next_attempt_at, order_id
        LIMIT $3
    ),
    interrupted AS (
        UPDATE payment_attempts SET outcome = 'interrupted', finished_at = $1
        WHERE finished_at IS NULL AND order_id IN (SELECT order_id FROM due WHERE lapsed)
    ),
    leased AS (
        UPDATE payments
        SET state = 'working', lease_id = gen_random_uuid(), lease_until = $2
        FROM due
        WHERE payments.order_id = due.order_id
        RETURNING payments.order_id, payments.lease_id, payments.sealed_card,
                  payments.pinned_gateway, payments.attempts, payments.next_attempt_at
    )
    SELECT id, tenant_id, campaign_id, voucher_id, reservation_id, user_id, email, amount,
           currency, card_brand, card_last_four, status, failure, gateway, created_at, settled_at,
           lease_id, sealed_card, pinned_gateway, attempts
    FROM leased JOIN orders ON orders.id = leased.order_id
    ORDER BY next_attempt_at, order_id";

pub(crate) async fn lease(
    client: &ClientWrapper,
    now: Timestamp,
    lease: SignedDuration,
    limit: u32,
) -> StoreResult<Vec<PaymentTask>> {
    let lease_until = stored(now.checked_add(lease).unwrap_or(Timestamp::MAX));
    let statement = client.prepare_cached(LEASE).await.map_err(database)?;
    client
        .query(&statement, &[&stored(now), &lease_until, &i64::from(limit)])
        .await
        .map_err(database)?
        .iter()
        .map(|row| {
            let order = order(row)?;
            let lease_id: uuid::Uuid = get(row, ORDER_COLUMN_COUNT)?;
            Ok(PaymentTask {
                lease: PaymentLease {
                    order_id: order.id,
                    lease_id: lease_id.to_string(),
                },
                order,
                sealed_card: get(row, ORDER_COLUMN_COUNT + 1)?,
                pinned_gateway: get(row, ORDER_COLUMN_COUNT + 2)?,
                attempts: count(i64::from(get::<i32>(row, ORDER_COLUMN_COUNT + 3)?))?,
            })
        })
        .collect()
}

/// Numbers and records the call, only while the lease holds. A charge pins
/// the payment to its gateway before the call leaves, so that if this node
/// dies mid-call the next one asks there first.
const START_ATTEMPT: &str = "
    WITH held AS (
        UPDATE payments
        SET attempts = attempts + 1,
            pinned_gateway = CASE WHEN $3 = 'charge' THEN $4 ELSE pinned_gateway END
        WHERE order_id = $1 AND state = 'working' AND lease_id = $2
        RETURNING order_id, attempts
    )
    INSERT INTO payment_attempts (order_id, number, gateway, kind, started_at)
    SELECT order_id, attempts, $4, $3, $5 FROM held
    RETURNING number";

pub(crate) async fn start_attempt(
    client: &ClientWrapper,
    lease: &PaymentLease,
    gateway: &str,
    kind: AttemptKind,
    now: Timestamp,
) -> StoreResult<Option<u32>> {
    let Some(lease_id) = lease_uuid(lease) else {
        return Ok(None);
    };
    let statement = client
        .prepare_cached(START_ATTEMPT)
        .await
        .map_err(database)?;
    client
        .query_opt(
            &statement,
            &[
                lease.order_id.as_uuid(),
                &lease_id,
                &kind.as_str(),
                &gateway,
                &stored(now),
            ],
        )
        .await
        .map_err(database)?
        .map(|row| count(i64::from(get::<i32>(&row, 0)?)))
        .transpose()
}

/// Locks the payment for the rest of the transaction if the lease still
/// holds: another node cannot take it over until this one commits, and
/// after that the lease id no longer matches.
async fn hold(transaction: &Transaction<'_>, lease: &PaymentLease) -> StoreResult<bool> {
    let Some(lease_id) = lease_uuid(lease) else {
        return Ok(false);
    };
    let statement = transaction
        .prepare_cached(
            "SELECT FROM payments
             WHERE order_id = $1 AND state = 'working' AND lease_id = $2
             FOR UPDATE",
        )
        .await
        .map_err(database)?;
    let held = transaction
        .query_opt(&statement, &[lease.order_id.as_uuid(), &lease_id])
        .await
        .map_err(database)?;
    Ok(held.is_some())
}

pub(crate) async fn finish(
    transaction: &Transaction<'_>,
    lease: &PaymentLease,
    step: &PaymentStep,
    now: Timestamp,
) -> StoreResult<bool> {
    if !hold(transaction, lease).await? {
        return Ok(false);
    }
    let now = stored(now);
    let order_id = lease.order_id;
    if let Some(attempt) = &step.attempt {
        record_outcome(transaction, order_id, attempt, now).await?;
    }
    match &step.resolution {
        Resolution::Paid {
            gateway,
            expires_at,
        } => {
            let voucher_id = settle(transaction, order_id, Settled::Paid(gateway), now).await?;
            issue(transaction, order_id, voucher_id, *expires_at, now).await?;
        }
        Resolution::Failed { reason } => {
            let voucher_id = settle(transaction, order_id, Settled::Failed(reason), now).await?;
            keep_reserved(transaction, order_id, voucher_id).await?;
        }
        Resolution::Retry {
            next_attempt_at,
            pinned_gateway,
        } => {
            requeue(
                transaction,
                order_id,
                stored(*next_attempt_at),
                pinned_gateway.as_deref(),
            )
            .await?;
        }
    }
    Ok(true)
}

async fn record_outcome(
    transaction: &Transaction<'_>,
    order_id: OrderId,
    attempt: &AttemptResult,
    now: Timestamp,
) -> StoreResult<()> {
    let statement = transaction
        .prepare_cached(
            "UPDATE payment_attempts
             SET outcome = $3, detail = $4, charge_id = $5, finished_at = $6
             WHERE order_id = $1 AND number = $2 AND finished_at IS NULL",
        )
        .await
        .map_err(database)?;
    let finished = transaction
        .execute(
            &statement,
            &[
                order_id.as_uuid(),
                &integer(attempt.number),
                &attempt.outcome.as_str(),
                &attempt.detail,
                &attempt.charge_id,
                &now,
            ],
        )
        .await
        .map_err(database)?;
    if finished == 1 {
        Ok(())
    } else {
        Err(corrupt(format!(
            "attempt {} of order {order_id} is not open",
            attempt.number
        )))
    }
}

/// Puts a held payment back in the queue for `next_attempt_at`, giving up
/// the lease.
async fn requeue(
    transaction: &Transaction<'_>,
    order_id: OrderId,
    next_attempt_at: Timestamp,
    pinned_gateway: Option<&str>,
) -> StoreResult<()> {
    let statement = transaction
        .prepare_cached(
            "UPDATE payments
             SET state = 'queued', lease_id = NULL, lease_until = NULL,
                 next_attempt_at = $2, pinned_gateway = $3
             WHERE order_id = $1",
        )
        .await
        .map_err(database)?;
    let requeued = transaction
        .execute(
            &statement,
            &[order_id.as_uuid(), &next_attempt_at, &pinned_gateway],
        )
        .await
        .map_err(database)?;
    if requeued == 1 {
        Ok(())
    } else {
        Err(corrupt(format!("held payment {order_id} was not requeued")))
    }
}

/// A failed order leaves its voucher reserved until the reservation
/// expires, free to be checked out again.
async fn keep_reserved(
    transaction: &Transaction<'_>,
    order_id: OrderId,
    voucher_id: uuid::Uuid,
) -> StoreResult<()> {
    let statement = transaction
        .prepare_cached(
            "UPDATE vouchers SET payment_order_id = NULL
             WHERE id = $1 AND payment_order_id = $2",
        )
        .await
        .map_err(database)?;
    let freed = transaction
        .execute(&statement, &[&voucher_id, order_id.as_uuid()])
        .await
        .map_err(database)?;
    if freed == 1 {
        Ok(())
    } else {
        Err(corrupt(format!(
            "order {order_id} failed but its voucher was not being paid by it"
        )))
    }
}

/// How an order settled: paid at a gateway, or failed for a reason.
enum Settled<'a> {
    Paid(&'a str),
    Failed(&'a str),
}

/// Settles a pending order and takes its payment, with the sealed card, off
/// the queue; answers the order's voucher.
async fn settle(
    transaction: &Transaction<'_>,
    order_id: OrderId,
    settled: Settled<'_>,
    now: Timestamp,
) -> StoreResult<uuid::Uuid> {
    let (status, gateway, failure) = match settled {
        Settled::Paid(gateway) => ("paid", Some(gateway), None),
        Settled::Failed(reason) => ("failed", None, Some(reason)),
    };
    let statement = transaction
        .prepare_cached(
            "WITH settled AS (
                 UPDATE orders SET status = $2, gateway = $3, failure = $4, settled_at = $5
                 WHERE id = $1 AND status = 'pending'
                 RETURNING voucher_id
             ),
             dequeued AS (
                 DELETE FROM payments WHERE order_id = $1
             )
             SELECT voucher_id FROM settled",
        )
        .await
        .map_err(database)?;
    let settled = transaction
        .query_opt(
            &statement,
            &[order_id.as_uuid(), &status, &gateway, &failure, &now],
        )
        .await
        .map_err(database)?;
    match settled {
        Some(row) => get(&row, 0),
        None => Err(corrupt(format!("order {order_id} settled twice"))),
    }
}

/// Issues the paid order's voucher. A statement of its own, after the
/// order's: the schema's trigger issues a reserved voucher only against a
/// paid order, and it sees only what earlier statements did.
async fn issue(
    transaction: &Transaction<'_>,
    order_id: OrderId,
    voucher_id: uuid::Uuid,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> StoreResult<()> {
    let statement = transaction
        .prepare_cached(
            "UPDATE vouchers
             SET state = 'issued', issued_at = $3, expires_at = $4, reserved_until = NULL,
                 payment_order_id = NULL
             WHERE id = $1 AND payment_order_id = $2 AND state = 'reserved'",
        )
        .await
        .map_err(database)?;
    let issued = transaction
        .execute(
            &statement,
            &[
                &voucher_id,
                order_id.as_uuid(),
                &now,
                &stored_optional(expires_at),
            ],
        )
        .await
        .map_err(database)?;
    if issued == 1 {
        Ok(())
    } else {
        Err(corrupt(format!(
            "order {order_id} was paid but its voucher is not reserved for it"
        )))
    }
}

/// The order, its attempts and its voucher, all read on one snapshot so
/// that a paid order never shows beside a voucher still reserved.
pub(crate) async fn details(
    transaction: &Transaction<'_>,
    tenant_id: TenantId,
    order_id: OrderId,
    holder: Option<&UserId>,
) -> StoreResult<Option<OrderDetails>> {
    let statement = transaction
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE id = $1 AND tenant_id = $2 AND ($3::text IS NULL OR user_id = $3)"
        ))
        .await
        .map_err(database)?;
    let found = transaction
        .query_opt(
            &statement,
            &[
                order_id.as_uuid(),
                tenant_id.as_uuid(),
                &holder.map(UserId::as_str),
            ],
        )
        .await
        .map_err(database)?;
    let Some(row) = found else {
        return Ok(None);
    };
    let order = order(&row)?;
    let attempts = transaction
        .prepare_cached(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE order_id = $1 ORDER BY number"
        ))
        .await
        .map_err(database)?;
    let voucher = transaction
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE id = $1"
        ))
        .await
        .map_err(database)?;
    let of_order: [&(dyn ToSql + Sync); 1] = [order.id.as_uuid()];
    let of_voucher: [&(dyn ToSql + Sync); 1] = [order.voucher_id.as_uuid()];
    // Both queries go out together on the one connection.
    let (attempts, voucher) = tokio::try_join!(
        transaction.query(&attempts, &of_order),
        transaction.query_opt(&voucher, &of_voucher),
    )
    .map_err(database)?;
    let voucher = voucher
        .as_ref()
        .map(rows::voucher)
        .transpose()?
        .ok_or_else(|| corrupt("an order without its voucher"))?;
    Ok(Some(OrderDetails {
        attempts: attempts.iter().map(attempt).collect::<StoreResult<_>>()?,
        order,
        voucher,
    }))
}

pub(crate) async fn counts(
    client: &ClientWrapper,
    campaign_id: CampaignId,
) -> StoreResult<PaymentCounts> {
    let by_status = client
        .prepare_cached(
            "SELECT status, currency, count(*), sum(amount)::bigint
             FROM orders WHERE campaign_id = $1
             GROUP BY status, currency ORDER BY status, currency",
        )
        .await
        .map_err(database)?;
    let by_gateway = client
        .prepare_cached(
            "SELECT attempt.gateway, attempt.outcome, count(*)
             FROM payment_attempts AS attempt JOIN orders ON orders.id = attempt.order_id
             WHERE orders.campaign_id = $1 AND attempt.outcome IS NOT NULL
             GROUP BY attempt.gateway, attempt.outcome
             ORDER BY attempt.gateway, attempt.outcome",
        )
        .await
        .map_err(database)?;
    let of_campaign: [&(dyn ToSql + Sync); 1] = [campaign_id.as_uuid()];
    // Both queries go out together on the one connection.
    let (by_status, by_gateway) = tokio::try_join!(
        client.query(&by_status, &of_campaign),
        client.query(&by_gateway, &of_campaign),
    )
    .map_err(database)?;
    let mut counts = PaymentCounts::default();
    for row in &by_status {
        let status: String = get(row, 0)?;
        let currency: String = get(row, 1)?;
        let orders = u64::try_from(get::<i64>(row, 2)?).map_err(corrupt)?;
        match OrderStatus::parse(&status).ok_or_else(|| corrupt(&status))? {
            OrderStatus::Paid => {
                counts.orders_paid += orders;
                counts.revenue.push(Money {
                    amount: get(row, 3)?,
                    currency: Currency::parse(&currency).map_err(corrupt)?,
                });
            }
            OrderStatus::Failed => counts.orders_failed += orders,
            OrderStatus::Pending => counts.orders_pending += orders,
        }
    }
    for row in &by_gateway {
        let outcome: String = get(row, 1)?;
        counts.attempts.push((
            get(row, 0)?,
            AttemptOutcome::parse(&outcome).ok_or_else(|| corrupt(&outcome))?,
            u64::try_from(get::<i64>(row, 2)?).map_err(corrupt)?,
        ));
    }
    Ok(counts)
}

/// The payment queue as it stands, from the two partial indexes.
pub(crate) async fn backlog(client: &ClientWrapper, now: Timestamp) -> StoreResult<PaymentBacklog> {
    let statement = client
        .prepare_cached(
            "SELECT \
               (SELECT count(*) FROM payments WHERE state = 'queued' AND next_attempt_at <= $1), \
               (SELECT min(next_attempt_at) FROM payments WHERE state = 'queued' AND next_attempt_at <= $1), \
               (SELECT count(*) FROM payments WHERE state = 'working')",
        )
        .await
        .map_err(database)?;
    let row = client
        .query_one(&statement, &[&stored(now)])
        .await
        .map_err(database)?;
    let due: i64 = get(&row, 0)?;
    let oldest_due_at: Option<Timestamp> = get(&row, 1)?;
    let working: i64 = get(&row, 2)?;
    Ok(PaymentBacklog {
        due: u64::try_from(due).unwrap_or(0),
        oldest_due_at,
        working: u64::try_from(working).unwrap_or(0),
    })
}
