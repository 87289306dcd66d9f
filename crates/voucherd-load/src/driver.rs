//! The open-loop driver: arrivals start when the schedule says, whatever
//! the server answers, each as its own task.
//!
//! The driver runs on a thread of its own, wakes at the next arrival's due
//! time, starts every arrival that is due by then (each carrying its due
//! time, so its latency counts any lateness of the driver too) and goes
//! back to sleep; its lateness is reported as `schedule_lag`. An arrival
//! that finds the in-flight bound full is counted `dropped_by_client` and
//! never sent: the schedule is never slowed to fit the server.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::book::UserOutcome;
use crate::curve::Schedule;
use crate::recorder::{Operation, Recorder, micros};
use crate::scenario::{Context, Flow, visit};

/// What the driver did.
#[derive(Debug, Clone, Copy)]
pub struct Driven {
    pub scheduled: u64,
    pub started: u64,
    pub dropped_by_client: u64,
    /// Visits still going when the drain time ran out, then cut off.
    pub unfinished: u64,
    /// From the start to the last arrival's start.
    pub schedule_elapsed: Duration,
}

/// Arrivals started back to back at most before the driver yields.
const LAUNCHES_BETWEEN_YIELDS: u64 = 1_024;

/// What the schedule loop hands back: the visits still going, the counts,
/// and how late each arrival started.
type Scheduled = (JoinSet<()>, Driven, Histogram<u64>);

pub async fn drive(context: Arc<Context>, flow: Arc<Flow>, schedule: &Schedule) -> Driven {
    let visits_runtime = Handle::current();
    // The schedule runs on a thread of its own: behind thousands of visits
    // in the runtime's queues it would start arrivals late, and every late
    // start is latency the server did not cause.
    let on_own_thread = match spawn_schedule_thread(&context, &flow, schedule, &visits_runtime) {
        Ok(receiver) => receiver.await.expect("the schedule thread answers"),
        Err(_) => None,
    };
    let (mut visits, mut driven, lag) = match on_own_thread {
        Some(scheduled) => scheduled,
        None => run_schedule(context.clone(), flow, schedule.clone(), visits_runtime).await,
    };
    context.recorder.add_latencies(Operation::ScheduleLag, &lag);
    driven.unfinished = drain(&context, &mut visits, schedule.arrivals).await;
    driven
}

/// Starts the schedule on its own thread and timer; answers `None` through
/// the channel when that thread could not make its timer.
fn spawn_schedule_thread(
    context: &Arc<Context>,
    flow: &Arc<Flow>,
    schedule: &Schedule,
    visits_runtime: &Handle,
) -> std::io::Result<oneshot::Receiver<Option<Scheduled>>> {
    let (sender, receiver) = oneshot::channel();
    let (context, flow) = (context.clone(), flow.clone());
    let (schedule, visits_runtime) = (schedule.clone(), visits_runtime.clone());
    std::thread::Builder::new()
        .name("voucherd-load-schedule".to_owned())
        .spawn(move || {
            let timer = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            let scheduled = timer
                .ok()
                .map(|timer| timer.block_on(run_schedule(context, flow, schedule, visits_runtime)));
            let _ = sender.send(scheduled);
        })?;
    Ok(receiver)
}

/// Starts every arrival at its due time, each visit a task on
/// `visits_runtime`.
async fn run_schedule(
    context: Arc<Context>,
    flow: Arc<Flow>,
    schedule: Schedule,
    visits_runtime: Handle,
) -> Scheduled {
    let start = context.recorder.start();
    let in_flight = Arc::new(Semaphore::new(context.config.in_flight_max));
    let mut visits = JoinSet::new();
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
        lag.saturating_record(micros(now - due));
        let user = next as u32;
        next += 1;
        context
            .recorder
            .live
            .arrivals
            .fetch_add(1, Ordering::Relaxed);
        match in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                driven.started += 1;
                let (context, flow) = (context.clone(), flow.clone());
                let visit = async move { visit(&context, &flow, user, due, permit).await };
                visits.spawn_on(visit, &visits_runtime);
            }
            Err(_) => {
                driven.dropped_by_client += 1;
                context.book.set(user, UserOutcome::DroppedByClient);
                context.recorder.dropped();
            }
        }
        // Finished visits are reaped as the run goes, so the set holds only
        // the visits in flight; a driver catching up on a backlog still
        // lets other tasks run now and then.
        while let Some(finished) = visits.try_join_next() {
            note_panic(&context, finished);
        }
        if next % LAUNCHES_BETWEEN_YIELDS == 0 {
            tokio::task::yield_now().await;
        }
    }
    driven.schedule_elapsed = start.elapsed();
    (visits, driven, lag)
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
