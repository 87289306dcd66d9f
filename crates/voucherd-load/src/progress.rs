//! The progress line on stderr: elapsed time, arrivals, the live answer
//! rate, outcomes so far, refusals, errors, drops and the supply left.
//! Redrawn in place on a terminal; a plain line every few seconds when
//! stderr is not a terminal or under `CI=true`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::book::UserOutcome;
use crate::config::ProgressMode;
use crate::scenario::{Campaign, Context};

const REDRAW_PERIOD: Duration = Duration::from_millis(250);
const LINE_PERIOD: Duration = Duration::from_secs(5);
/// The remaining supply is read from the server at most this often.
const REMAINING_PERIOD: Duration = Duration::from_secs(1);

/// Draws until `stop` turns true; does nothing when progress is off.
pub fn spawn(
    context: Arc<Context>,
    campaigns: Vec<Campaign>,
    arrivals: u64,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if context.config.progress == ProgressMode::Off {
            return;
        }
        let in_place =
            std::io::stderr().is_terminal() && std::env::var("CI").map_or(true, |ci| ci != "true");
        let period = if in_place { REDRAW_PERIOD } else { LINE_PERIOD };
        let limited: Vec<Campaign> = campaigns
            .into_iter()
            .filter(|campaign| campaign.supply.is_some())
            .collect();
        let mut remaining: Option<u64> = None;
        let mut remaining_read: Option<Instant> = None;
        let mut last = (Instant::now(), 0_u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.changed() => break,
            }
            let due = remaining_read.is_none_or(|read| read.elapsed() >= REMAINING_PERIOD);
            if !limited.is_empty() && due {
                remaining_read = Some(Instant::now());
                remaining = read_remaining(&context, &limited).await.or(remaining);
            }
            let requests = context.recorder.live.requests.load(Ordering::Relaxed);
            let rate = (requests - last.1) as f64 / last.0.elapsed().as_secs_f64().max(0.001);
            last = (Instant::now(), requests);
            let line = line(&context, arrivals, rate, remaining);
            let mut stderr = std::io::stderr().lock();
            let _ = if in_place {
                write!(stderr, "\r{line}\x1b[K")
            } else {
                writeln!(stderr, "{line}")
            };
            let _ = stderr.flush();
        }
        if in_place {
            let _ = writeln!(std::io::stderr());
        }
    })
}

async fn read_remaining(context: &Context, campaigns: &[Campaign]) -> Option<u64> {
    let mut total = 0;
    for campaign in campaigns {
        total += context.api.campaign(&campaign.id).await.ok()?.remaining?;
    }
    Some(total)
}

fn line(context: &Context, arrivals: u64, rate: f64, remaining: Option<u64>) -> String {
    let live = &context.recorder.live;
    let book = &context.book;
    let elapsed = context.recorder.start().elapsed().as_secs_f64();
    let duration = context.config.duration.as_secs_f64();
    let remaining = remaining.map_or_else(|| "-".to_owned(), |left| left.to_string());
    format!(
        "{} {elapsed:6.1}/{duration:.0} s  arrived {}/{arrivals}  {rate:7.0} answers/s  new {}  paid {}  sold out {}  refused {}  errors {}  dropped {}  remaining {remaining}",
        context.config.scenario,
        live.arrivals.load(Ordering::Relaxed),
        book.new_vouchers.load(Ordering::Relaxed),
        book.count(UserOutcome::Paid),
        book.count(UserOutcome::SoldOut),
        live.refused.load(Ordering::Relaxed),
        live.errors.load(Ordering::Relaxed),
        live.dropped.load(Ordering::Relaxed),
    )
}
