//! Checkout, the payment queue, and how a payment settles: each step one
//! job of the writer, each state change conditional on the state it leaves.

use rusqlite::{Connection, OptionalExtension, params};
use voucherd_core::ids::{CampaignId, OrderId, ReservationId, TenantId, UserId};
use voucherd_core::money::{Currency, Money};
use voucherd_core::{SignedDuration, Timestamp};

use super::connection::database;
use super::rows::{self, VOUCHER_COLUMNS, millis, optional_millis};
use crate::model::PaymentBacklog;
use crate::model::{
    AttemptKind, AttemptOutcome, AttemptRecord, Checkout, CheckoutOutcome, OrderDetails,
    OrderRecord, OrderStatus, PaymentCounts, PaymentLease, PaymentStep, PaymentTask,
    ReleaseOutcome, Resolution, VoucherRecord,
};
use crate::{StoreError, StoreResult};

const ORDER_COLUMNS: &str = "id, tenant_id, campaign_id, voucher_id, reservation_id, user_id, email, \
     amount, currency, card_brand, card_last_four, status, failure, gateway, created_at, settled_at";

fn parse<T: std::str::FromStr>(text: String) -> StoreResult<T> {
    text.parse()
        .map_err(|_| rows::corrupt(format!("bad id {text:?}")))
}

fn order(row: &rusqlite::Row<'_>) -> StoreResult<OrderRecord> {
    let get_text = |index: usize| row.get::<_, String>(index).map_err(database);
    let status = get_text(11)?;
    let currency = get_text(8)?;
    let amount: i64 = row.get(7).map_err(database)?;
    Ok(OrderRecord {
        id: parse(get_text(0)?)?,
        tenant_id: parse(get_text(1)?)?,
        campaign_id: parse(get_text(2)?)?,
        voucher_id: parse(get_text(3)?)?,
        reservation_id: parse(get_text(4)?)?,
        user_id: UserId::parse(&get_text(5)?).map_err(rows::corrupt)?,
        email: get_text(6)?,
        amount: Currency::parse(&currency)
            .and_then(|currency| Money::new(amount, currency))
            .map_err(rows::corrupt)?,
        card_brand: get_text(9)?,
        card_last_four: get_text(10)?,
        status: OrderStatus::parse(&status).ok_or_else(|| rows::corrupt(&status))?,
        failure: row.get(12).map_err(database)?,
        gateway: row.get(13).map_err(database)?,
        created_at: rows::timestamp(row.get(14).map_err(database)?)?,
        settled_at: row
            .get::<_, Option<i64>>(15)
            .map_err(database)?
            .map(rows::timestamp)
            .transpose()?,
    })
}

pub(crate) fn reservation(
    connection: &Connection,
    tenant_id: TenantId,
    reservation_id: ReservationId,
) -> StoreResult<Option<VoucherRecord>> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE tenant_id = ?1 AND reservation_id = ?2"
        ))
        .map_err(database)?;
    let mut found = statement
        .query(params![tenant_id.to_string(), reservation_id.to_string()])
        .map_err(database)?;
    found
        .next()
        .map_err(database)?
        .map(rows::voucher)
        .transpose()
}

/// The reservation a checkout is about, as stored.
struct Reservation {
    voucher_id: String,
    campaign_id: String,
    state: String,
    user_id: String,
    reserved_until: Option<i64>,
    payment_order_id: Option<String>,
}

pub(crate) fn begin_checkout(
    connection: &Connection,
    checkout: &Checkout,
    now: Timestamp,
) -> StoreResult<CheckoutOutcome> {
    let found = connection
        .prepare_cached(
            "SELECT id, campaign_id, state, user_id, reserved_until, payment_order_id FROM vouchers
             WHERE tenant_id = ?1 AND reservation_id = ?2 AND (?3 IS NULL OR user_id = ?3)",
        )
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![
                        checkout.tenant_id.to_string(),
                        checkout.reservation_id.to_string(),
                        checkout.holder.as_ref().map(UserId::as_str)
                    ],
                    |row| {
                        Ok(Reservation {
                            voucher_id: row.get(0)?,
                            campaign_id: row.get(1)?,
                            state: row.get(2)?,
                            user_id: row.get(3)?,
                            reserved_until: row.get(4)?,
                            payment_order_id: row.get(5)?,
                        })
                    },
                )
                .optional()
        })
        .map_err(database)?;
    let Some(Reservation {
        voucher_id,
        campaign_id,
        state,
        user_id,
        reserved_until,
        payment_order_id,
    }) = found
    else {
        return Ok(CheckoutOutcome::NotFound);
    };
    if state != "reserved" {
        let paid: Option<String> = connection
            .query_row(
                "SELECT id FROM orders WHERE voucher_id = ?1 AND status = 'paid'",
                [&voucher_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(database)?;
        return Ok(match paid {
            Some(order_id) => CheckoutOutcome::AlreadyPaid(parse(order_id)?),
            None => CheckoutOutcome::NotFound,
        });
    }
    if let Some(order_id) = payment_order_id {
        return Ok(CheckoutOutcome::PaymentInFlight(parse(order_id)?));
    }
    if reserved_until.is_none_or(|until| until <= millis(now)) {
        return Ok(CheckoutOutcome::Expired);
    }
    let order = OrderRecord {
        id: checkout.order_id,
        tenant_id: checkout.tenant_id,
        campaign_id: parse::<CampaignId>(campaign_id)?,
        voucher_id: parse(voucher_id)?,
        reservation_id: checkout.reservation_id,
        user_id: UserId::parse(&user_id).map_err(rows::corrupt)?,
        email: checkout.email.clone(),
        amount: checkout.amount,
        card_brand: checkout.card_brand.clone(),
        card_last_four: checkout.card_last_four.clone(),
        status: OrderStatus::Pending,
        failure: None,
        gateway: None,
        created_at: now,
        settled_at: None,
    };
    connection
        .prepare_cached(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', NULL, NULL, ?12, NULL)"
        ))
        .and_then(|mut statement| {
            statement.execute(params![
                order.id.to_string(),
                order.tenant_id.to_string(),
                order.campaign_id.to_string(),
                order.voucher_id.to_string(),
                order.reservation_id.to_string(),
                order.user_id.as_str(),
                order.email,
                order.amount.amount,
                order.amount.currency.as_str(),
                order.card_brand,
                order.card_last_four,
                millis(now)
            ])
        })
        .map_err(database)?;
    let held = connection
        .execute(
            "UPDATE vouchers SET payment_order_id = ?1
             WHERE id = ?2 AND state = 'reserved' AND payment_order_id IS NULL AND reserved_until > ?3",
            params![order.id.to_string(), order.voucher_id.to_string(), millis(now)],
        )
        .map_err(database)?;
    if held != 1 {
        return Err(StoreError::Corrupt(
            "a reservation changed under its checkout".into(),
        ));
    }
    connection
        .execute(
            "INSERT INTO payments (order_id, state, next_attempt_at, sealed_card) VALUES (?1, 'queued', ?2, ?3)",
            params![order.id.to_string(), millis(now), checkout.sealed_card],
        )
        .map_err(database)?;
    Ok(CheckoutOutcome::Accepted(Box::new(order)))
}

/// Returns reserved vouchers to the pool: those `filter` picks, and only
/// while no payment is under way. Answers their campaigns, one per voucher.
fn release(
    connection: &Connection,
    filter: &str,
    arguments: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<CampaignId>> {
    let mut released = connection
        .prepare_cached(&format!(
            "UPDATE vouchers
             SET state = 'available', user_id = NULL, user_slot = NULL, claimed_at = NULL,
                 reservation_id = NULL, reserved_until = NULL
             WHERE id IN (SELECT id FROM vouchers WHERE {filter})
               AND state = 'reserved' AND payment_order_id IS NULL
             RETURNING id, campaign_id"
        ))
        .map_err(database)?;
    let released: Vec<(String, String)> = released
        .query_map(arguments, |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(database)?
        .collect::<Result<_, _>>()
        .map_err(database)?;
    let mut forget_grant = connection
        .prepare_cached("DELETE FROM daily_grants WHERE voucher_id = ?1")
        .map_err(database)?;
    released
        .into_iter()
        .map(|(voucher_id, campaign_id)| {
            forget_grant.execute([voucher_id]).map_err(database)?;
            parse(campaign_id)
        })
        .collect()
}

pub(crate) fn release_reservation(
    connection: &Connection,
    tenant_id: TenantId,
    reservation_id: ReservationId,
    holder: Option<&UserId>,
) -> StoreResult<ReleaseOutcome> {
    let (tenant, reservation) = (tenant_id.to_string(), reservation_id.to_string());
    let holder = holder.map(UserId::as_str);
    let released = release(
        connection,
        "tenant_id = ?1 AND reservation_id = ?2 AND (?3 IS NULL OR user_id = ?3)",
        &[&tenant, &reservation, &holder],
    )?;
    if let Some(campaign_id) = released.into_iter().next() {
        return Ok(ReleaseOutcome::Released(campaign_id));
    }
    let paying: Option<Option<String>> = connection
        .query_row(
            "SELECT payment_order_id FROM vouchers
             WHERE tenant_id = ?1 AND reservation_id = ?2 AND state = 'reserved' AND (?3 IS NULL OR user_id = ?3)",
            params![tenant, reservation, holder],
            |row| row.get(0),
        )
        .optional()
        .map_err(database)?;
    Ok(match paying.flatten() {
        Some(order_id) => ReleaseOutcome::PaymentInFlight(parse(order_id)?),
        None => ReleaseOutcome::NotFound,
    })
}

pub(crate) fn release_expired(
    connection: &Connection,
    now: Timestamp,
    limit: u32,
) -> StoreResult<Vec<CampaignId>> {
    release(
        connection,
        "state = 'reserved' AND reserved_until <= ?1 AND payment_order_id IS NULL LIMIT ?2",
        &[&millis(now), &limit],
    )
}

pub(crate) fn lease(
    connection: &Connection,
    now: Timestamp,
    lease: SignedDuration,
    limit: u32,
) -> StoreResult<Vec<PaymentTask>> {
    let lease_until = millis(now.checked_add(lease).unwrap_or(Timestamp::MAX));
    let mut due = connection
        .prepare_cached(
            // Two index ranges, lapsed leases first: an OR over both would
            // scan every payment at work and sort the queue.
            "SELECT order_id, 1 FROM payments WHERE state = 'working' AND lease_until <= ?1
             UNION ALL
             SELECT * FROM (
                 SELECT order_id, 0 FROM payments WHERE state = 'queued' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at LIMIT ?2
             )
             LIMIT ?2",
        )
        .map_err(database)?;
    let due: Vec<(String, bool)> = due
        .query_map(params![millis(now), limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(database)?
        .collect::<Result<_, _>>()
        .map_err(database)?;
    due.into_iter()
        .map(|(order_id, lapsed)| {
            // A working payment whose lease ran out belongs to a node that
            // stopped mid-call: what it was calling is not known, so it is
            // marked so. Only for the payments taken here: until another
            // node takes a payment, its lease still writes.
            if lapsed {
                connection
                    .execute(
                        "UPDATE payment_attempts SET outcome = 'interrupted', finished_at = ?2
                         WHERE order_id = ?1 AND finished_at IS NULL",
                        params![order_id, millis(now)],
                    )
                    .map_err(database)?;
            }
            take(connection, parse(order_id)?, lease_until)
        })
        .collect()
}

/// Leases one due payment under a fresh lease id.
fn take(connection: &Connection, order_id: OrderId, lease_until: i64) -> StoreResult<PaymentTask> {
    let (lease_id, sealed_card, pinned_gateway, attempts) = connection
        .prepare_cached(
            "UPDATE payments SET state = 'working', lease_id = lower(hex(randomblob(16))), lease_until = ?2
             WHERE order_id = ?1
             RETURNING lease_id, sealed_card, pinned_gateway, attempts",
        )
        .and_then(|mut statement| {
            statement.query_row(params![order_id.to_string(), lease_until], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
        })
        .map_err(database)?;
    Ok(PaymentTask {
        order: find_order(connection, order_id)?
            .ok_or_else(|| rows::corrupt("a payment without its order"))?,
        lease: PaymentLease { order_id, lease_id },
        sealed_card,
        pinned_gateway,
        attempts: u32::try_from(attempts).map_err(rows::corrupt)?,
    })
}

fn find_order(connection: &Connection, order_id: OrderId) -> StoreResult<Option<OrderRecord>> {
    let mut statement = connection
        .prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))
        .map_err(database)?;
    let mut found = statement.query([order_id.to_string()]).map_err(database)?;
    found.next().map_err(database)?.map(order).transpose()
}

fn holds_lease(connection: &Connection, lease: &PaymentLease) -> StoreResult<bool> {
    let held: Option<i64> = connection
        .query_row(
            "SELECT 1 FROM payments WHERE order_id = ?1 AND state = 'working' AND lease_id = ?2",
            params![lease.order_id.to_string(), lease.lease_id],
            |row| row.get(0),
        )
        .optional()
        .map_err(database)?;
    Ok(held.is_some())
}

pub(crate) fn start_attempt(
    connection: &Connection,
    lease: &PaymentLease,
    gateway: &str,
    kind: AttemptKind,
    now: Timestamp,
) -> StoreResult<Option<u32>> {
    if !holds_lease(connection, lease)? {
        return Ok(None);
    }
    // A charge pins the payment to its gateway before the call leaves, so
    // that if this node dies mid-call the next one asks there first.
    let attempts: i64 = connection
        .query_row(
            "UPDATE payments
             SET attempts = attempts + 1,
                 pinned_gateway = CASE WHEN ?2 = 'charge' THEN ?3 ELSE pinned_gateway END
             WHERE order_id = ?1
             RETURNING attempts",
            params![lease.order_id.to_string(), kind.as_str(), gateway],
            |row| row.get(0),
        )
        .map_err(database)?;
    connection
        .execute(
            "INSERT INTO payment_attempts (order_id, number, gateway, kind, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease.order_id.to_string(), attempts, gateway, kind.as_str(), millis(now)],
        )
        .map_err(database)?;
    Ok(Some(u32::try_from(attempts).map_err(rows::corrupt)?))
}

pub(crate) fn finish(
    connection: &Connection,
    lease: &PaymentLease,
    step: &PaymentStep,
    now: Timestamp,
) -> StoreResult<bool> {
    if !holds_lease(connection, lease)? {
        return Ok(false);
    }
    let order_id = lease.order_id.to_string();
    if let Some(attempt) = &step.attempt {
        let finished = connection
            .execute(
                "UPDATE payment_attempts SET outcome = ?3, detail = ?4, charge_id = ?5, finished_at = ?6
                 WHERE order_id = ?1 AND number = ?2 AND finished_at IS NULL",
                params![order_id, attempt.number, attempt.outcome.as_str(), attempt.detail, attempt.charge_id, millis(now)],
            )
            .map_err(database)?;
        if finished != 1 {
            return Err(StoreError::Corrupt(format!(
                "attempt {} of order {order_id} is not open",
                attempt.number
            )));
        }
    }
    match &step.resolution {
        Resolution::Paid {
            gateway,
            expires_at,
        } => {
            settle(connection, &order_id, "paid", None, Some(gateway), now)?;
            let issued = connection
                .prepare_cached(
                    "UPDATE vouchers
                     SET state = 'issued', issued_at = ?2, expires_at = ?3, reserved_until = NULL,
                         payment_order_id = NULL
                     WHERE id = (SELECT voucher_id FROM orders WHERE id = ?1)
                       AND payment_order_id = ?1 AND state = 'reserved'",
                )
                .and_then(|mut statement| {
                    statement.execute(params![order_id, millis(now), optional_millis(*expires_at)])
                })
                .map_err(database)?;
            if issued != 1 {
                return Err(StoreError::Corrupt(format!(
                    "order {order_id} was paid but its voucher is not reserved for it"
                )));
            }
        }
        Resolution::Failed { reason } => {
            settle(connection, &order_id, "failed", Some(reason), None, now)?;
            connection
                .prepare_cached(
                    "UPDATE vouchers SET payment_order_id = NULL
                     WHERE id = (SELECT voucher_id FROM orders WHERE id = ?1) AND payment_order_id = ?1",
                )
                .and_then(|mut statement| statement.execute([&order_id]))
                .map_err(database)?;
        }
        Resolution::Retry {
            next_attempt_at,
            pinned_gateway,
        } => {
            connection
                .execute(
                    "UPDATE payments
                     SET state = 'queued', lease_id = NULL, lease_until = NULL, next_attempt_at = ?2, pinned_gateway = ?3
                     WHERE order_id = ?1",
                    params![order_id, millis(*next_attempt_at), pinned_gateway],
                )
                .map_err(database)?;
            return Ok(true);
        }
    }
    connection
        .execute("DELETE FROM payments WHERE order_id = ?1", [&order_id])
        .map_err(database)?;
    Ok(true)
}

fn settle(
    connection: &Connection,
    order_id: &str,
    status: &str,
    failure: Option<&String>,
    gateway: Option<&String>,
    now: Timestamp,
) -> StoreResult<()> {
    let settled = connection
        .execute(
            "UPDATE orders SET status = ?2, failure = ?3, gateway = ?4, settled_at = ?5
             WHERE id = ?1 AND status = 'pending'",
            params![order_id, status, failure, gateway, millis(now)],
        )
        .map_err(database)?;
    if settled == 1 {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "order {order_id} settled twice"
        )))
    }
}

pub(crate) fn details(
    connection: &Connection,
    tenant_id: TenantId,
    order_id: OrderId,
    holder: Option<&UserId>,
) -> StoreResult<Option<OrderDetails>> {
    let Some(order) = find_order(connection, order_id)? else {
        return Ok(None);
    };
    if order.tenant_id != tenant_id || holder.is_some_and(|holder| *holder != order.user_id) {
        return Ok(None);
    }
    let mut statement = connection
        .prepare_cached(
            "SELECT number, gateway, kind, outcome, detail, charge_id, started_at, finished_at
             FROM payment_attempts WHERE order_id = ?1 ORDER BY number",
        )
        .map_err(database)?;
    let mut found = statement.query([order_id.to_string()]).map_err(database)?;
    let mut attempts = Vec::new();
    while let Some(row) = found.next().map_err(database)? {
        let kind: String = row.get(2).map_err(database)?;
        let outcome: Option<String> = row.get(3).map_err(database)?;
        attempts.push(AttemptRecord {
            number: u32::try_from(row.get::<_, i64>(0).map_err(database)?)
                .map_err(rows::corrupt)?,
            gateway: row.get(1).map_err(database)?,
            kind: AttemptKind::parse(&kind).ok_or_else(|| rows::corrupt(&kind))?,
            outcome: outcome
                .map(|outcome| {
                    AttemptOutcome::parse(&outcome).ok_or_else(|| rows::corrupt(&outcome))
                })
                .transpose()?,
            detail: row.get(4).map_err(database)?,
            charge_id: row.get(5).map_err(database)?,
            started_at: rows::timestamp(row.get(6).map_err(database)?)?,
            finished_at: row
                .get::<_, Option<i64>>(7)
                .map_err(database)?
                .map(rows::timestamp)
                .transpose()?,
        });
    }
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE id = ?1"
        ))
        .map_err(database)?;
    let mut found = statement
        .query([order.voucher_id.to_string()])
        .map_err(database)?;
    let voucher = found
        .next()
        .map_err(database)?
        .map(rows::voucher)
        .transpose()?
        .ok_or_else(|| rows::corrupt("an order without its voucher"))?;
    Ok(Some(OrderDetails {
        order,
        attempts,
        voucher,
    }))
}

pub(crate) fn counts(
    connection: &Connection,
    campaign_id: CampaignId,
) -> StoreResult<PaymentCounts> {
    let campaign = campaign_id.to_string();
    let mut counts = PaymentCounts::default();
    let mut statement = connection
        .prepare_cached("SELECT status, currency, count(*), sum(amount) FROM orders WHERE campaign_id = ?1 GROUP BY status, currency")
        .map_err(database)?;
    let mut found = statement.query([&campaign]).map_err(database)?;
    while let Some(row) = found.next().map_err(database)? {
        let status: String = row.get(0).map_err(database)?;
        let currency: String = row.get(1).map_err(database)?;
        let orders =
            u64::try_from(row.get::<_, i64>(2).map_err(database)?).map_err(rows::corrupt)?;
        let amount: i64 = row.get(3).map_err(database)?;
        match OrderStatus::parse(&status).ok_or_else(|| rows::corrupt(&status))? {
            OrderStatus::Paid => {
                counts.orders_paid += orders;
                let currency = Currency::parse(&currency).map_err(rows::corrupt)?;
                counts.revenue.push(Money { amount, currency });
            }
            OrderStatus::Failed => counts.orders_failed += orders,
            OrderStatus::Pending => counts.orders_pending += orders,
        }
    }
    let mut statement = connection
        .prepare_cached(
            "SELECT attempt.gateway, attempt.outcome, count(*)
             FROM payment_attempts AS attempt JOIN orders ON orders.id = attempt.order_id
             WHERE orders.campaign_id = ?1 AND attempt.outcome IS NOT NULL
             GROUP BY attempt.gateway, attempt.outcome ORDER BY attempt.gateway, attempt.outcome",
        )
        .map_err(database)?;
    let mut found = statement.query([&campaign]).map_err(database)?;
    while let Some(row) = found.next().map_err(database)? {
        let outcome: String = row.get(1).map_err(database)?;
        counts.attempts.push((
            row.get(0).map_err(database)?,
            AttemptOutcome::parse(&outcome).ok_or_else(|| rows::corrupt(&outcome))?,
            u64::try_from(row.get::<_, i64>(2).map_err(database)?).map_err(rows::corrupt)?,
        ));
    }
    Ok(counts)
}

/// The payment queue as it stands, from the two partial indexes.
pub(crate) fn backlog(connection: &Connection, now: Timestamp) -> StoreResult<PaymentBacklog> {
    let (due, oldest): (i64, Option<i64>) = connection
        .query_row(
            "SELECT COUNT(*), MIN(next_attempt_at) FROM payments \
             WHERE state = 'queued' AND next_attempt_at <= ?1",
            params![millis(now)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(database)?;
    let working: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM payments WHERE state = 'working'",
            [],
            |row| row.get(0),
        )
        .map_err(database)?;
    Ok(PaymentBacklog {
        due: u64::try_from(due).unwrap_or(0),
        oldest_due_at: oldest.map(rows::timestamp).transpose()?,
        working: u64::try_from(working).unwrap_or(0),
    })
}
