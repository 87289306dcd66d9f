//! The open-loop driver: arrivals start when the schedule says, whatever
//! the server answers, each as its own task.
//!
//! The driver runs on a thread of its own, wakes at the next arrival's due
//! time, starts every arrival that is due by then (each carrying its due
//! time, so its latency counts any lateness of the driver too) and goes
//! back to sleep; its lateness is reported as `schedule_lag`. Every
//! arrival starts: the bound is on requests in flight, not on users, so a
//! buyer waiting between order polls holds nothing. A request that finds
//! the bound full is counted `dropped_by_client` and never sent (its user
//! stops there): the schedule is never slowed to fit the server.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::book::UserOutcome;
use crate::curve::Schedule;
use crate::http1::{ConnectionModel, own_connection};
use crate::recorder::{Operation, Recorder, micros};
use crate::scenario::{Context, Flow, visit};

/// What the driver did.
#[derive(Debug, Clone, Copy)]
pub struct Driven {
    pub scheduled: u64,
    pub started: u64,
    /// Requests the in-flight bound refused (never sent).
    pub dropped_by_client: u64,
    /// Visits still going when the drain time ran out, then cut off.
    pub unfinished: u64,
    /// From the start to the last arrival's start.
    pub schedule_elapsed: Duration,
}

/// Arrivals started back to back at most before the launcher yields.
const LAUNCHES_BETWEEN_YIELDS: u64 = 1_024;

/// Arrivals due by the time the schedule woke: handed to the visits'
/// runtime in one message, so that the schedule's thread wakes that
/// runtime once per tick rather than once per arrival.
type Batch = Vec<(u32, Instant)>;

/// What the schedule loop hands back: the counts, and how late each
/// arrival started.
type Scheduled = (Driven, Histogram<u64>);

pub async fn drive(context: Arc<Context>, flow: Arc<Flow>, schedule: &Schedule) -> Driven {
    let (batches, arrivals) = mpsc::unbounded_channel();
    let launcher = launch(context.clone(), flow, arrivals);
    // The schedule runs on a thread of its own: behind thousands of visits
    // in the runtime's queues it would start arrivals late, and every late
    // start is latency the server did not cause.
    let scheduled = async {
        match spawn_schedule_thread(&context, schedule, batches.clone()) {
            Ok(receiver) => match receiver.await.expect("the schedule thread answers") {
                Some(scheduled) => scheduled,
                None => run_schedule(context.clone(), schedule.clone(), batches).await,
            },
            Err(_) => run_schedule(context.clone(), schedule.clone(), batches).await,
        }
    };
    let ((mut driven, lag), mut visits) = tokio::join!(scheduled, launcher);
    context.recorder.add_latencies(Operation::ScheduleLag, &lag);
    driven.unfinished = drain(&context, &mut visits, schedule.arrivals).await;
    driven.dropped_by_client = context.recorder.live.dropped.load(Ordering::Relaxed);
    driven
}

/// Starts each batch's visits as tasks of the runtime it runs on, until
/// the schedule is done; answers the visits still going.
async fn launch(
    context: Arc<Context>,
    flow: Arc<Flow>,
    mut arrivals: mpsc::UnboundedReceiver<Batch>,
) -> JoinSet<()> {
    let own_connections = context.config.connections == ConnectionModel::PerUser;
    let mut visits = JoinSet::new();
    let mut launched = 0_u64;
    while let Some(batch) = arrivals.recv().await {
        for (user, due) in batch {
            let (visitor, flow) = (context.clone(), flow.clone());
            let visit = async move { visit(&visitor, &flow, user, due).await };
            match own_connections {
                true => visits.spawn(own_connection(visit)),
                false => visits.spawn(visit),
            };
            launched += 1;
            if launched.is_multiple_of(LAUNCHES_BETWEEN_YIELDS) {
                tokio::task::yield_now().await;
            }
        }
        // Finished visits are reaped as the run goes, so the set holds
        // only the visits in flight.
        while let Some(finished) = visits.try_join_next() {
            note_panic(&context, finished);
        }
    }
    visits
}

/// Starts the schedule on its own thread and timer; answers `None` through
/// the channel when that thread could not make its timer.
fn spawn_schedule_thread(
    context: &Arc<Context>,
    schedule: &Schedule,
    batches: mpsc::UnboundedSender<Batch>,
) -> std::io::Result<oneshot::Receiver<Option<Scheduled>>> {
    let (sender, receiver) = oneshot::channel();
    let (context, schedule) = (context.clone(), schedule.clone());
    std::thread::Builder::new()
        .name("voucherd-load-schedule".to_owned())
        .spawn(move || {
            let timer = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            let scheduled = timer
                .ok()
                .map(|timer| timer.block_on(run_schedule(context, schedule, batches)));
            let _ = sender.send(scheduled);
        })?;
    Ok(receiver)
}

/// Hands every arrival to the launcher at its due time, in batches of
/// those due together.
async fn run_schedule(
    context: Arc<Context>,
    schedule: Schedule,
    batches: mpsc::UnboundedSender<Batch>,
) -> Scheduled {
    let start = context.recorder.start();
    let mut driven = Driven {
        scheduled: schedule.arrivals,
        started: 0,
        dropped_by_client: 0,
        unfinished: 0,
        schedule_elapsed: Duration::ZERO,
    };
    let mut lag = Recorder::new_histogram();
    let mut next = 0;
    while next < schedule.arrivals {
        let due = start + schedule.due(next);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
            continue;
        }
        let mut batch = Batch::new();
        while next < schedule.arrivals {
            let due = start + schedule.due(next);
            if due > now {
                break;
            }
            lag.saturating_record(micros(now - due));
            batch.push((next as u32, due));
            next += 1;
        }
        driven.started += batch.len() as u64;
        context
            .recorder
            .live
            .arrivals
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if batches.send(batch).is_err() {
            break;
        }
    }
    driven.schedule_elapsed = start.elapsed();
    (driven, lag)
}

/// Waits for the visits still going, up to the drain bound; the rest are
/// cut off and their users counted unfinished.
async fn drain(context: &Context, visits: &mut JoinSet<()>, arrivals: u64) -> u64 {
    let drained = tokio::time::timeout(context.config.drain_max, async {
        while let Some(finished) = visits.join_next().await {
            note_panic(context, finished);
        }
    })
    .await;
    if drained.is_ok() {
        return 0;
    }
    visits.abort_all();
    while visits.join_next().await.is_some() {}
    let mut unfinished = 0;
    for user in 0..arrivals {
        if context
            .book
            .set_if_pending(user as u32, UserOutcome::Unfinished)
        {
            unfinished += 1;
        }
    }
    if unfinished > 0 {
        context
            .recorder
            .error_count("unfinished at the end of the drain".to_owned(), unfinished);
    }
    unfinished
}

fn note_panic(context: &Context, finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished
        && error.is_panic()
    {
        context.recorder.error("visit panicked".to_owned());
    }
}
