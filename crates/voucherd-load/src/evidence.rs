//! Reading back, after the run, what the verdict checks: each campaign's
//! report and export, the buyers' dashboards, and the gateways' ledgers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::LoadError;
use crate::api::Api;
use crate::config::ScenarioKind;
use crate::scenario::{Campaign, Context};
use crate::verdict::{
    CampaignEvidence, Dashboard, Evidence, LedgerEvidence, StoredVoucher, TierCount,
};

/// Dashboards read at once while verifying.
const DASHBOARD_READS_IN_FLIGHT_MAX: usize = 32;

/// The keys each gateway had captured before the run, so the run's own
/// captures can be told apart.
pub async fn captured_keys(api: &Api, gateways: &[String]) -> Result<HashSet<String>, LoadError> {
    let mut keys = HashSet::new();
    for gateway in gateways {
        let ledger = api.ledger(gateway).await?;
        keys.extend(
            ledger
                .charges
                .into_iter()
                .filter(|charge| charge.status == "captured")
                .map(|charge| charge.idempotency_key),
        );
    }
    Ok(keys)
}

async fn ledger_evidence(
    api: &Api,
    gateways: &[String],
    before: &HashSet<String>,
) -> Result<LedgerEvidence, LoadError> {
    let mut captures: HashMap<String, u32> = HashMap::new();
    let mut evidence = LedgerEvidence::default();
    for gateway in gateways {
        let ledger = api.ledger(gateway).await?;
        for charge in ledger.charges {
            if charge.status != "captured" {
                continue;
            }
            if !before.contains(&charge.idempotency_key) {
                evidence.new_captures += 1;
                evidence.new_captured_amount += charge.amount;
            }
            *captures.entry(charge.idempotency_key).or_default() += 1;
        }
    }
    evidence.keys_captured_twice = captures
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(key, _)| key)
        .collect();
    evidence.keys_captured_twice.sort();
    Ok(evidence)
}

async fn campaign_evidence(
    context: &Context,
    campaign: &Campaign,
) -> Result<CampaignEvidence, LoadError> {
    let report = context.api.report(&campaign.id).await?;
    let export = context.api.export(&campaign.id).await?;
    Ok(CampaignEvidence {
        id: campaign.id.clone(),
        supply: campaign.supply,
        reserved: report.reserved,
        issued_total: report.issued_total,
        by_tier: report
            .by_tier
            .into_iter()
            .map(|tier| TierCount {
                first_rank: tier.first_rank,
                last_rank: tier.last_rank,
                discount_percent: tier.discount_percent,
                issued: tier.issued,
                reserved: tier.reserved,
            })
            .collect(),
        export: export
            .into_iter()
            .map(|voucher| StoredVoucher {
                rank: voucher.rank,
                holder: context.holder(voucher.user_id.as_deref()),
                code: voucher.code,
                state: voucher.state,
            })
            .collect(),
    })
}

/// Reads the dashboards of up to the configured number of buyers, spread
/// evenly over them, keeping only the course's vouchers.
async fn dashboards(
    context: &Arc<Context>,
    course_id: &str,
    buyers: &[u32],
) -> Result<Vec<Dashboard>, LoadError> {
    let step = buyers
        .len()
        .div_ceil(context.config.dashboards_checked_max.max(1))
        .max(1);
    let mut reads = JoinSet::new();
    let mut dashboards = Vec::new();
    for &user in buyers.iter().step_by(step) {
        if reads.len() >= DASHBOARD_READS_IN_FLIGHT_MAX
            && let Some(read) = reads.join_next().await
        {
            dashboards.push(read.map_err(|error| LoadError::Task(error.to_string()))??);
        }
        let (context, course_id) = (context.clone(), course_id.to_owned());
        reads.spawn(async move {
            let list = context.api.user_vouchers(&context.user_id(user)).await?;
            Ok::<_, LoadError>(Dashboard {
                user,
                course_vouchers: list
                    .vouchers
                    .into_iter()
                    .filter(|voucher| voucher.campaign_id == course_id)
                    .map(|voucher| (voucher.rank, voucher.code))
                    .collect(),
            })
        });
    }
    while let Some(read) = reads.join_next().await {
        dashboards.push(read.map_err(|error| LoadError::Task(error.to_string()))??);
    }
    dashboards.sort_by_key(|dashboard| dashboard.user);
    Ok(dashboards)
}

/// Everything the verdict needs, read after the last visit ended. The
/// book's records move into the evidence.
pub async fn gather(
    context: &Arc<Context>,
    campaigns: &[Campaign],
    ledger_before: Option<&HashSet<String>>,
    admin_failures: u64,
) -> Result<Evidence, LoadError> {
    let config = &context.config;
    let mut campaign_evidence_list = Vec::new();
    for campaign in campaigns {
        campaign_evidence_list.push(campaign_evidence(context, campaign).await?);
    }
    let ledger = match ledger_before {
        Some(before) => Some(ledger_evidence(&context.api, &config.gateways, before).await?),
        None => None,
    };
    let (users, acknowledged, paid) = context.book.take();
    let is_sale = matches!(
        config.scenario,
        ScenarioKind::HotDeal | ScenarioKind::Enrollment
    );
    let mut evidence = Evidence {
        scenario: config.scenario,
        checkout: is_sale && config.checkout,
        campaigns: campaign_evidence_list,
        users,
        acknowledged,
        paid,
        repeat_mismatches: context
            .book
            .repeat_mismatches
            .load(std::sync::atomic::Ordering::Relaxed),
        repeat_omissions: context
            .book
            .repeat_omissions
            .load(std::sync::atomic::Ordering::Relaxed),
        unexpected: context.recorder.errors(),
        dropped_by_client: context
            .recorder
            .live
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        ledger,
        dashboards: Vec::new(),
        buyers: 0,
        admin_failures,
    };
    if config.scenario == ScenarioKind::Enrollment
        && let Some(course) = campaigns.first()
    {
        let buyers: Vec<u32> = evidence
            .acknowledged
            .iter()
            .filter(|acknowledged| acknowledged.campaign == 0)
            .filter(|acknowledged| {
                evidence
                    .users
                    .get(acknowledged.user as usize)
                    .is_some_and(|record| record.outcome != crate::book::UserOutcome::PaymentFailed)
            })
            .map(|acknowledged| acknowledged.user)
            .collect();
        evidence.buyers = buyers.len() as u64;
        evidence.dashboards = dashboards(context, &course.id, &buyers).await?;
    }
    Ok(evidence)
}
