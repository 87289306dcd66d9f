//! The loop around [`crate::Engine::sweep_once`]: it only waits. Tests call
//! the step directly with the time they want.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;

/// Sweeps every `period` until `shutdown` resolves. A failed sweep is logged
/// and tried again next period; nothing it does is lost by waiting.
pub async fn run_sweeper(
    engine: Arc<Engine>,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        match engine.sweep_once(engine.now()).await {
            Ok(report) if report != Default::default() => tracing::info!(?report, "swept"),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = &error as &dyn std::error::Error, "a sweep failed")
            }
        }
    }
}
