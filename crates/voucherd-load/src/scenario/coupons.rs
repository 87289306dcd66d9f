//! Free coupons: seed 002's first-login promotion and seed 003's daily
//! coupons.

use std::time::Instant;

use serde_json::json;

use crate::LoadError;
use crate::api::{Answer, Api, Role, to_bytes};
use crate::book::UserOutcome;
use crate::config::Config;
use crate::recorder::Operation;
use crate::scenario::{Campaign, Context, Flow, Judged, picked};
use crate::verdict::Acknowledged;
use crate::wire::{LoginWire, VoucherWire};

/// The three coupons of a day share the supply half, three tenths and
/// the rest, so they run out at different times.
pub fn daily_supplies(supply: u32) -> [u32; 3] {
    let first = (supply / 2).max(1);
    let second = ((supply - first) * 3 / 5).max(1);
    [first, second, supply - first - second]
}

pub async fn setup_first_login(
    api: &Api,
    config: &Config,
    run_id: &str,
) -> Result<(Flow, Vec<Campaign>), LoadError> {
    let supply = config.supply_or_default().unwrap_or(100);
    let id = api
        .create_campaign(&json!({
            "name": format!("First login {run_id}"),
            "kind": "coupon",
            "supply": supply,
            "trigger": "first_login",
            "tiers": [{"until_rank": supply, "discount_percent": 30}],
            "voucher_valid_for": "P30D",
            "codes": {"pattern": "FL-####-????"},
            "message": "30% off your next mobile top-up",
        }))
        .await?;
    api.publish(&id).await?;
    Ok((
        Flow::FirstLogin {
            campaign_id: id.clone(),
        },
        vec![Campaign {
            id,
            supply: Some(supply),
        }],
    ))
}

pub async fn setup_daily_coupons(
    api: &Api,
    config: &Config,
    run_id: &str,
) -> Result<(Flow, Vec<Campaign>), LoadError> {
    let supplies = daily_supplies(config.supply_or_default().unwrap_or(75));
    let mut campaigns = Vec::new();
    for (index, supply) in supplies.into_iter().enumerate() {
        let id = api
            .create_campaign(&json!({
                "name": format!("Daily coupon {} {run_id}", index + 1),
                "kind": "coupon",
                "supply": supply,
                "daily_limit_group": format!("{run_id}-daily"),
                "voucher_valid_for": "P1D",
                "codes": {"pattern": format!("DAY{}-####-????", index + 1)},
                "message": "One coupon a day",
            }))
            .await?;
        api.publish(&id).await?;
        campaigns.push(Campaign {
            id,
            supply: Some(supply),
        });
    }
    let campaign_ids = campaigns
        .iter()
        .map(|campaign| campaign.id.clone())
        .collect();
    Ok((Flow::DailyCoupons { campaign_ids }, campaigns))
}

/// Logs in; a share of users logs in again at once. The first login
/// grants while supply lasts; the second must answer the same voucher as
/// held and grant nothing.
pub async fn first_login(context: &Context, campaign_id: &str, user: u32, due: Instant) {
    let target = context.api.target_of(user);
    let body = to_bytes(&json!({"user_id": context.user_id(user)}));
    let login = || {
        context.api.post(
            target,
            "/v1/events/login",
            Role::Service,
            Some(body.clone()),
            None,
        )
    };
    let judge_login = |answer: &Answer| match answer.status {
        200 => Judged::expected(ours(answer, campaign_id).0.is_some()),
        _ => Judged::unexpected(),
    };
    let first = context
        .attempt(Operation::Login, due, login, judge_login)
        .await;
    let (granted, held) = match &first.sent {
        Ok(answer) if answer.status == 200 => ours(answer, campaign_id),
        _ => return context.book.set(user, first.failed_outcome()),
    };
    if held.is_some() {
        // A user's first login cannot find a voucher already held.
        context
            .recorder
            .error("login held a voucher before the first login".to_owned());
    }
    if let Some(voucher) = &granted {
        acknowledge(context, user, 0, voucher);
    }
    let outcome = if granted.is_some() {
        UserOutcome::Claimed
    } else {
        UserOutcome::SoldOut
    };
    context.book.set(user, outcome);
    if !picked(user, context.config.repeat_login_percent) {
        return;
    }
    let again = context
        .attempt(Operation::Login, first.finished, login, judge_login)
        .await;
    let Ok(answer) = &again.sent else { return };
    if answer.status != 200 {
        return;
    }
    let (granted_again, held_again) = ours(answer, campaign_id);
    if let Some(voucher) = &granted_again {
        // Counted as a second new voucher: the verdict's nobody_twice.
        acknowledge(context, user, 0, voucher);
    }
    let (counter, held_again_same) = match (&granted, &held_again) {
        (Some(first), Some(again)) => (
            &context.book.repeat_mismatches,
            first.rank == again.rank && first.code == again.code,
        ),
        (None, None) => (&context.book.repeat_mismatches, true),
        // The voucher is the user's but the answer leaves it out: a gap in
        // what the login lists, not a second voucher.
        (Some(_), None) => (&context.book.repeat_omissions, false),
        (None, Some(_)) => (&context.book.repeat_mismatches, false),
    };
    if !held_again_same {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The login answer's voucher of the campaign: `(granted, held)`.
fn ours(answer: &Answer, campaign_id: &str) -> (Option<VoucherWire>, Option<VoucherWire>) {
    let Ok(login) = answer.json::<LoginWire>() else {
        return (None, None);
    };
    let find = |vouchers: Vec<VoucherWire>| {
        vouchers
            .into_iter()
            .find(|voucher| voucher.campaign_id == campaign_id)
    };
    (find(login.granted), find(login.held))
}

fn acknowledge(context: &Context, user: u32, campaign: usize, voucher: &VoucherWire) {
    context.book.acknowledge(Acknowledged {
        user,
        campaign,
        rank: voucher.rank,
        code: voucher.code.clone(),
    });
}

/// Claims each of the day's three coupons in turn, starting at a
/// different one per user: one is granted while any is left, the others
/// answer the daily limit (or sold out).
pub async fn daily_coupons(context: &Context, campaign_ids: &[String], user: u32, due: Instant) {
    let target = context.api.target_of(user);
    let body = to_bytes(&json!({"user_id": context.user_id(user)}));
    let mut due = due;
    let mut held = false;
    let mut sold_out = 0;
    for turn in 0..campaign_ids.len() {
        let campaign = (user as usize + turn) % campaign_ids.len();
        let path = format!("/v1/campaigns/{}/claims", campaign_ids[campaign]);
        let claimed = context
            .attempt(
                Operation::Claim,
                due,
                || {
                    context
                        .api
                        .post(target, &path, Role::Service, Some(body.clone()), None)
                },
                |answer| judge_daily_claim(answer, held),
            )
            .await;
        due = claimed.finished;
        match (&claimed.sent, claimed.status()) {
            (Ok(answer), Some(201)) => match answer.json::<VoucherWire>() {
                Ok(voucher) => {
                    acknowledge(context, user, campaign, &voucher);
                    held = true;
                }
                Err(_) => context.recorder.error("claim 201 unreadable".to_owned()),
            },
            (_, Some(410)) => sold_out += 1,
            (_, Some(409)) if held => {}
            _ => return context.book.set(user, claimed.failed_outcome()),
        }
    }
    let outcome = match (held, sold_out == campaign_ids.len()) {
        (true, _) => UserOutcome::Claimed,
        (false, true) => UserOutcome::SoldOut,
        (false, false) => UserOutcome::Failed,
    };
    context.book.set(user, outcome);
}

fn judge_daily_claim(answer: &Answer, held: bool) -> Judged {
    let daily_limit = answer.status == 409 && answer.problem_kind() == "daily-limit-reached";
    match answer.status {
        201 => Judged::expected(true),
        410 => Judged::expected(false),
        // The daily limit answers only a user who already holds one.
        409 if daily_limit && held => Judged::expected(false),
        _ => Judged::unexpected(),
    }
}
