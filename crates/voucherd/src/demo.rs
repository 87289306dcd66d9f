//! The demo that `cargo run --release` serves: a live coupon to claim, a
//! Hot Deal sale paid through two gateway simulators in the process, and
//! an admin account for the console.

use std::sync::Arc;

use anyhow::Context;
use voucherd_core::campaign::{CampaignDraft, CampaignKind};
use voucherd_core::ids::{TenantId, UserId};
use voucherd_engine::Engine;
use voucherd_engine::campaigns::CampaignView;
use voucherd_engine::model::{Account, AccountRole, Tenant};

use crate::cli::GatewayArg;

/// The demo admin's email; the password is derived from the tenant's key,
/// so that every demo start can print it without storing it.
const DEMO_ADMIN_EMAIL: &str = "admin@demo.test";

/// Two gateway simulators in the process, for the demo's sale.
pub async fn demo_gateways() -> anyhow::Result<Vec<GatewayArg>> {
    let mut gateways = Vec::new();
    for (priority, name) in ["alpha", "beta"].into_iter().enumerate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a demo gateway simulator")?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let served = voucherd_gateway_sim::serve(
                listener,
                voucherd_gateway_sim::SimulatorConfig::default(),
                std::future::pending(),
            )
            .await;
            if let Err(error) = served {
                tracing::error!(%error, "a demo gateway simulator stopped");
            }
        });
        gateways.push(GatewayArg {
            name: name.to_owned(),
            url,
            rate_per_second: 100,
            priority: priority as u32 + 1,
        });
    }
    Ok(gateways)
}

/// The demo's admin account, made on the first demo start; answers its
/// email and password.
pub async fn ensure_demo_admin(
    engine: &Arc<Engine>,
    tenant: &Tenant,
) -> anyhow::Result<(String, String)> {
    let password = format!(
        "demo-{}",
        &voucherd_http::web::derived_secret(&tenant.signing_key, "demo admin password")[..16]
    );
    if engine.account(tenant.id, DEMO_ADMIN_EMAIL).await?.is_none() {
        let account = Account {
            tenant_id: tenant.id,
            email: DEMO_ADMIN_EMAIL.to_owned(),
            user_id: UserId::parse("demo-admin").map_err(|invalid| anyhow::anyhow!("{invalid}"))?,
            role: AccountRole::Admin,
            password_hash: voucherd_http::web::hash_password(&password),
            created_at: engine.now(),
        };
        engine
            .create_account(&account)
            .await
            .context("creating the demo admin")?;
    }
    Ok((DEMO_ADMIN_EMAIL.to_owned(), password))
}

/// The demo's campaigns, made (and published) when the tenant has none:
/// a free coupon, and a Hot Deal sale in three price tiers. Answers the
/// coupon.
pub async fn ensure_demo_campaign(
    engine: &Arc<Engine>,
    tenant_id: TenantId,
) -> anyhow::Result<CampaignView> {
    let existing = engine.campaigns_of(tenant_id).await?;
    if !existing.is_empty() {
        return existing
            .into_iter()
            .find(|view| view.record.spec.kind == CampaignKind::Coupon)
            .context("the tenant has campaigns but no coupon for the demo");
    }
    let sale = CampaignDraft {
        name: Some("Hot Deal: the Bangkok spa day".into()),
        message: Some("20,000 vouchers, up to 90 % off, first come first served".into()),
        description: Some("A day at the spa. The first 1,000 buyers pay 10 %, the next 9,000 pay 30 %, the rest half price.".into()),
        terms: Some("One voucher per person.\n\nValid for 90 days from purchase. Not refundable; not exchangeable for cash.".into()),
        kind: Some("sale".into()),
        supply: Some(Some(20_000)),
        price: Some((150_000, "THB".into())),
        tiers: vec![(1_000, 90), (10_000, 70), (20_000, 50)],
        per_user_limit: Some(1),
        voucher_valid_for: Some("P90D".into()),
        code_pattern: Some("SPA-####-????".into()),
        ..CampaignDraft::default()
    };
    let spec = sale.validate().context("the demo sale")?;
    let created = engine
        .create_campaign(tenant_id, spec)
        .await
        .context("creating the demo sale")?;
    engine
        .publish(tenant_id, created.record.id)
        .await
        .context("publishing the demo sale")?;
    let draft = CampaignDraft {
        name: Some("Free coffee at noon".into()),
        message: Some("The first 100 get a free coffee".into()),
        kind: Some("coupon".into()),
        supply: Some(Some(100)),
        per_user_limit: Some(1),
        voucher_valid_for: Some("P30D".into()),
        code_pattern: Some("COFFEE-####-????".into()),
        ..CampaignDraft::default()
    };
    let spec = draft.validate().context("the demo campaign")?;
    let created = engine
        .create_campaign(tenant_id, spec)
        .await
        .context("creating the demo campaign")?;
    let published = engine
        .publish(tenant_id, created.record.id)
        .await
        .context("publishing the demo campaign")?;
    Ok(published)
}
