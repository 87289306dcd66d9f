//! The demo that `cargo run --release` serves: a live coupon to claim.

use std::sync::Arc;

use anyhow::Context;
use voucherd_core::campaign::CampaignDraft;
use voucherd_core::ids::TenantId;
use voucherd_engine::Engine;
use voucherd_engine::campaigns::CampaignView;

/// The tenant's first campaign, made (and published) when it has none.
pub async fn ensure_demo_campaign(
    engine: &Arc<Engine>,
    tenant_id: TenantId,
) -> anyhow::Result<CampaignView> {
    if let Some(existing) = engine.campaigns_of(tenant_id).await?.into_iter().next() {
        return Ok(existing);
    }
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
