//! The loops around the engine's steps ([`crate::Engine::sweep_once`],
//! [`crate::Engine::refresh_once`]): they only wait. Tests call the steps
//! directly with the time they want.

use std::time::Duration;

/// Runs `step` every `period` until `shutdown` resolves. A failed step is
/// logged and tried again next period; nothing it does is lost by waiting.
pub async fn run_periodically<F, Fut, T, E>(
    name: &'static str,
    period: Duration,
    shutdown: impl Future<Output = ()>,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: std::fmt::Debug + Default + PartialEq,
    E: std::error::Error + 'static,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        match step().await {
            Ok(report) if report != T::default() => {
                tracing::info!(worker = name, ?report, "worked")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                worker = name,
                error = &error as &dyn std::error::Error,
                "a step failed"
            ),
        }
    }
}
