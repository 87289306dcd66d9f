//! Sale campaigns: seed 000's Hot Deal and seed 004's course enrollment.
//!
//! A buyer views the campaign, claims (a reservation), checks out with a
//! test card under an `Idempotency-Key`, then polls the order until it is
//! paid or failed. Without checkout the visit ends at the reservation.
//! The enrollment's admin loop creates and publishes other courses and
//! reads the course's report while the buyers arrive, each operation timed
//! on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use crate::LoadError;
use crate::api::{Answer, Api, Failure, Role, to_bytes};
use crate::book::UserOutcome;
use crate::config::Config;
use crate::recorder::{AnswerClass, Operation};
use crate::scenario::{Campaign, Context, Flow, Judged};
use crate::verdict::{Acknowledged, PaidOrder};
use crate::wire::{CampaignWire, OrderCreatedWire, OrderWire, VoucherWire};

/// Seed 000's tiers for its supply of 20,000: 90 % off to rank 1,000, 70 %
/// to 10,000, 50 % to the end. Other supplies keep the proportions.
const HOT_DEAL_SUPPLY: u32 = 20_000;
const HOT_DEAL_TIERS: [(u32, u8); 3] = [(1_000, 90), (10_000, 70), (20_000, 50)];
/// The first order poll waits this long; each next one half as long
/// again, up to the most.
const ORDER_POLL_PAUSE_FIRST: Duration = Duration::from_millis(200);
const ORDER_POLL_PAUSE_MAX: Duration = Duration::from_secs(5);
/// A card the simulated gateways accept; its expiry is a few years ahead.
const TEST_CARD_NUMBER: &str = "4242424242424242";
const TEST_CARD_YEARS_AHEAD: i16 = 3;

/// The Hot Deal's tiers scaled to `supply`: `(until_rank, discount)`,
/// strictly increasing.
pub fn hot_deal_tiers(supply: u32) -> Vec<(u32, u8)> {
    let mut tiers: Vec<(u32, u8)> = Vec::new();
    for (until_rank, discount) in HOT_DEAL_TIERS {
        let scaled =
            (u64::from(until_rank) * u64::from(supply)).div_ceil(u64::from(HOT_DEAL_SUPPLY));
        let scaled = u32::try_from(scaled).unwrap_or(supply).clamp(1, supply);
        if tiers.last().is_none_or(|last| scaled > last.0) {
            tiers.push((scaled, discount));
        }
    }
    tiers
}

pub async fn setup_hot_deal(
    api: &Api,
    config: &Config,
    run_id: &str,
) -> Result<(Flow, Vec<Campaign>), LoadError> {
    let supply = config.supply_or_default().unwrap_or(HOT_DEAL_SUPPLY);
    let tiers: Vec<_> = hot_deal_tiers(supply)
        .into_iter()
        .map(|(until_rank, discount)| json!({"until_rank": until_rank, "discount_percent": discount}))
        .collect();
    let id = api
        .create_campaign(&json!({
            "name": format!("Hot Deal {run_id}"),
            "kind": "sale",
            "supply": supply,
            "price": {"amount": 150_000, "currency": "THB"},
            "tiers": tiers,
            "per_user_limit": 1,
            "reservation_ttl_seconds": 600,
            "codes": {"pattern": "HOT-####-????"},
            "message": "90% off for the first buyers",
            "description": "A load run's Hot Deal (seed 000)",
            "terms": "Load test: no real purchase.",
        }))
        .await?;
    api.publish(&id).await?;
    Ok((
        Flow::Sale {
            campaign_id: id.clone(),
        },
        vec![Campaign {
            id,
            supply: Some(supply),
        }],
    ))
}

fn course_body(run_id: &str, round: Option<u64>) -> serde_json::Value {
    let name = match round {
        Some(round) => format!("Course {run_id} #{round}"),
        None => format!("Course {run_id}"),
    };
    json!({
        "name": name,
        "kind": "sale",
        "supply": null,
        "price": {"amount": 49_900_000, "currency": "IDR"},
        "codes": {"pattern": "CRS-####-????"},
        "description": "A load run's course (seed 004)",
    })
}

pub async fn setup_enrollment(api: &Api, run_id: &str) -> Result<(Flow, Vec<Campaign>), LoadError> {
    let id = api.create_campaign(&course_body(run_id, None)).await?;
    api.publish(&id).await?;
    Ok((
        Flow::Sale {
            campaign_id: id.clone(),
        },
        vec![Campaign { id, supply: None }],
    ))
}

fn judge_claim(answer: &Answer) -> Judged {
    match answer.status {
        201 => Judged::expected(true),
        410 => Judged::expected(false),
        // A user claims once, so `200` (already held) is not expected.
        _ => Judged::unexpected(),
    }
}

fn expect_status(status: u16) -> impl Fn(&Answer) -> Judged {
    move |answer| {
        if answer.status == status {
            Judged::expected(true)
        } else {
            Judged::unexpected()
        }
    }
}

pub async fn visit(context: &Context, campaign_id: &str, user: u32, due: Instant) {
    let api = &context.api;
    let target = api.target_of(user);
    let user_id = context.user_id(user);
    let campaign_path = format!("/v1/campaigns/{campaign_id}");
    let viewed = context
        .attempt(
            Operation::View,
            due,
            || api.get(target, &campaign_path, Role::Service),
            expect_status(200),
        )
        .await;
    if viewed.status() != Some(200) {
        context.book.set(user, viewed.failed_outcome());
        return;
    }
    let claim_path = format!("{campaign_path}/claims");
    let body = to_bytes(&json!({"user_id": user_id}));
    let claimed = context
        .attempt(
            Operation::Claim,
            viewed.finished,
            || api.post(target, &claim_path, Role::Service, Some(body.clone()), None),
            judge_claim,
        )
        .await;
    let voucher = match (claimed.status(), &claimed.sent) {
        (Some(201), Ok(answer)) => match answer.json::<VoucherWire>() {
            Ok(voucher) => voucher,
            Err(_) => return fail(context, user, "claim 201 unreadable"),
        },
        (Some(410), _) => return context.book.set(user, UserOutcome::SoldOut),
        _ => return context.book.set(user, claimed.failed_outcome()),
    };
    context.book.acknowledge(Acknowledged {
        user,
        campaign: 0,
        rank: voucher.rank,
        code: voucher.code.clone(),
    });
    if !context.config.checkout {
        return context.book.set(user, UserOutcome::Claimed);
    }
    let Some(reservation_id) = &voucher.reservation_id else {
        return fail(context, user, "claim 201 without a reservation");
    };
    let Some((order_id, accepted)) =
        check_out(context, target, user, reservation_id, claimed.finished).await
    else {
        return;
    };
    wait_for_order(
        context,
        target,
        user,
        &voucher,
        reservation_id,
        &order_id,
        accepted,
    )
    .await;
}

fn fail(context: &Context, user: u32, kind: &str) {
    context.recorder.error(kind.to_owned());
    context.book.set(user, UserOutcome::Failed);
}

fn checkout_body(user_id: &str) -> Vec<u8> {
    let year = jiff::Zoned::now().year() + TEST_CARD_YEARS_AHEAD;
    to_bytes(&json!({
        "email": format!("{user_id}@load.voucherd.test"),
        "card": {
            "number": TEST_CARD_NUMBER,
            "exp_month": 12,
            "exp_year": year,
            "cvc": "123",
            "name": "Load Test",
        },
    }))
}

/// Checks out under an idempotency key, so a retried checkout is the
/// same order. Answers the order id and when it was accepted.
async fn check_out(
    context: &Context,
    target: usize,
    user: u32,
    reservation_id: &str,
    due: Instant,
) -> Option<(String, Instant)> {
    let user_id = context.user_id(user);
    let path = format!("/v1/reservations/{reservation_id}/checkout");
    let key = format!("{user_id}-checkout");
    let body = checkout_body(&user_id);
    let checked_out = context
        .attempt(
            Operation::Checkout,
            due,
            || {
                context
                    .api
                    .post(target, &path, Role::Service, Some(body.clone()), Some(&key))
            },
            expect_status(202),
        )
        .await;
    match (checked_out.status(), &checked_out.sent) {
        (Some(202), Ok(answer)) => match answer.json::<OrderCreatedWire>() {
            Ok(order) => Some((order.order_id, checked_out.finished)),
            Err(_) => {
                fail(context, user, "checkout 202 unreadable");
                None
            }
        },
        _ => {
            context.book.set(user, checked_out.failed_outcome());
            None
        }
    }
}

/// Polls the order with a growing pause until it is paid or failed, or
/// the wait's bound passes.
async fn wait_for_order(
    context: &Context,
    target: usize,
    user: u32,
    voucher: &VoucherWire,
    reservation_id: &str,
    order_id: &str,
    accepted: Instant,
) {
    let rank = voucher.rank;
    let deadline = accepted + context.config.order_wait_max;
    let path = format!("/v1/orders/{order_id}");
    let mut pause = ORDER_POLL_PAUSE_FIRST;
    loop {
        let now = Instant::now();
        if now >= deadline {
            context.recorder.error("order unsettled".to_owned());
            return context.book.set(user, UserOutcome::OrderUnsettled);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 3 / 2).min(ORDER_POLL_PAUSE_MAX);
        let sent = poll(context, target, &path).await;
        let Ok(answer) = &sent else { continue };
        let Ok(order) = answer.json::<OrderWire>() else {
            continue;
        };
        match order.status.as_str() {
            "paid" => {
                context
                    .recorder
                    .latency(Operation::OrderSettled, accepted.elapsed());
                let voucher = order.voucher.as_ref();
                context.book.paid(PaidOrder {
                    user,
                    campaign: 0,
                    rank: voucher.map_or(rank, |voucher| voucher.rank),
                    code: voucher.and_then(|voucher| voucher.code.clone()),
                    amount: order.amount,
                });
                return context.book.set(user, UserOutcome::Paid);
            }
            "failed" => {
                context
                    .recorder
                    .latency(Operation::OrderSettled, accepted.elapsed());
                // The buyer gives up and hands the reservation back (the
                // server would keep it for a retry until it expires), so
                // its rank goes to the next buyer.
                let path = format!("/v1/reservations/{reservation_id}");
                if !matches!(context.api.delete(target, &path, Role::Service).await, Ok(answer) if answer.status == 204)
                {
                    context
                        .recorder
                        .error("release after a failed payment".to_owned());
                }
                return context.book.set(user, UserOutcome::PaymentFailed);
            }
            _ => {}
        }
    }
}

/// One order poll, under the bound on polls in flight.
async fn poll(context: &Context, target: usize, path: &str) -> Result<Answer, Failure> {
    let due = Instant::now();
    let _poll = context.order_polls.acquire().await;
    // A poll the in-flight bound refuses is counted dropped, and the buyer
    // looks again after the next pause.
    let sent = context
        .send_in_bound(&|| context.api.get(target, path, Role::Service))
        .await;
    if sent.as_ref().is_err_and(Failure::is_dropped_by_client) {
        return sent;
    }
    let class = match &sent {
        Ok(answer) if answer.is_refusal() => AnswerClass::Refused,
        Ok(answer) if answer.status == 200 && answer.json::<OrderWire>().is_ok() => {
            AnswerClass::Expected
        }
        _ => AnswerClass::Unexpected,
    };
    context
        .recorder
        .request(Operation::Order, due, &sent, class, false);
    sent
}

/// What the enrollment's admin did.
#[derive(Debug, Default)]
pub struct AdminLog {
    pub created: Vec<String>,
    pub failures: u64,
}

/// Seed 004's admin at work during the burst: each round creates and
/// publishes another course and reads the bought course's report, until
/// `stop` turns true. Each operation is timed from when it was sent: the
/// admin waits for each answer, as a person at a console does.
pub async fn admin_loop(
    context: Arc<Context>,
    course_id: String,
    mut stop: watch::Receiver<bool>,
) -> AdminLog {
    let mut log = AdminLog::default();
    let api = &context.api;
    let report_path = format!("/v1/campaigns/{course_id}/report");
    let mut round = 0;
    while !*stop.borrow() {
        let body = to_bytes(&course_body(&context.run_id, Some(round)));
        let created = admin_call(&context, &mut log, Operation::AdminCreate, 201, || {
            api.post(0, "/v1/campaigns", Role::Admin, Some(body.clone()), None)
        })
        .await;
        if let Some(campaign) = created.and_then(|answer| answer.json::<CampaignWire>().ok()) {
            let publish_path = format!("/v1/campaigns/{}/publish", campaign.id);
            log.created.push(campaign.id);
            admin_call(&context, &mut log, Operation::AdminPublish, 200, || {
                api.post(0, &publish_path, Role::Admin, None, None)
            })
            .await;
        }
        admin_call(&context, &mut log, Operation::AdminReport, 200, || {
            api.get(0, &report_path, Role::Admin)
        })
        .await;
        round += 1;
        tokio::select! {
            _ = tokio::time::sleep(context.config.admin_interval) => {}
            _ = stop.changed() => {}
        }
    }
    log
}

async fn admin_call<Sending>(
    context: &Context,
    log: &mut AdminLog,
    operation: Operation,
    status: u16,
    send: impl FnOnce() -> Sending,
) -> Option<Answer>
where
    Sending: std::future::Future<Output = Result<Answer, Failure>>,
{
    let due = Instant::now();
    let sent = send().await;
    let good = sent.as_ref().is_ok_and(|answer| answer.status == status);
    let class = match &sent {
        Ok(answer) if answer.is_refusal() => AnswerClass::Refused,
        _ if good => AnswerClass::Expected,
        _ => AnswerClass::Unexpected,
    };
    context
        .recorder
        .request(operation, due, &sent, class, false);
    if !good {
        // An admin turned away is the disturbance seed 004 forbids, even
        // when the server sheds it politely.
        log.failures += 1;
        return None;
    }
    sent.ok()
}
