//! The running simulator: its shared state, serving it on a listener, and a
//! handle for tests that start one in-process.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, SimulatorConfig};
use crate::draws::seed_from_entropy;
use crate::ledger::{Admission, Charge, ChargeRequest, Ledger, Policy, Stats};
use crate::routes;

/// Why a simulator could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("invalid gateway simulator configuration")]
    Config(#[from] ConfigError),
    #[error("gateway simulator I/O")]
    Io(#[from] io::Error),
}

/// One simulated gateway. Clones share the same ledger.
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: SimulatorConfig,
    clock: Arc<dyn Clock>,
    // A std mutex, not tokio's: every critical section is a few map
    // operations with no await inside, and admitting a charge must be one
    // indivisible step for the same-key and rate guarantees to hold.
    ledger: Mutex<Ledger>,
    down: AtomicBool,
    in_flight: Arc<Semaphore>,
    /// Set once the server is shutting down, to release held requests:
    /// a graceful shutdown waits for every request, and a held one would
    /// otherwise keep it waiting for `timeout_hold`.
    stopping: watch::Sender<bool>,
}

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Result<Simulator, ConfigError> {
        Simulator::with_clock(config, Arc::new(SystemClock::new()))
    }

    /// A simulator reading time from `clock`, so a test can hold time still
    /// while it sends a burst.
    pub fn with_clock(
        config: SimulatorConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Simulator, ConfigError> {
        config.validate()?;
        let policy = Policy {
            seed: config.seed.unwrap_or_else(seed_from_entropy),
            decline_rate: config.decline_rate,
            timeout_rate: config.timeout_rate,
            latency_ms: config.latency_ms.clone(),
        };
        let shared = Shared {
            ledger: Mutex::new(Ledger::new(policy, config.rate_per_second)),
            clock,
            down: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(config.in_flight_max)),
            stopping: watch::Sender::new(false),
            config,
        };
        Ok(Simulator {
            shared: Arc::new(shared),
        })
    }

    /// Starts a simulator with `config` on an ephemeral loopback port.
    pub async fn start(config: SimulatorConfig) -> Result<SimulatorHandle, SimulatorError> {
        Ok(Simulator::new(config)?.spawn().await?)
    }

    /// Serves this simulator on an ephemeral loopback port until the handle
    /// is stopped or dropped.
    pub async fn spawn(self) -> io::Result<SimulatorHandle> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_requested) = oneshot::channel::<()>();
        let server = tokio::spawn(self.clone().serve(listener, async move {
            // A dropped sender means the same as a sent one.
            let _ = shutdown_requested.await;
        }));
        Ok(SimulatorHandle {
            simulator: self,
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
        })
    }

    /// Serves the gateway protocol on `listener` until `shutdown` resolves,
    /// then releases held requests and waits for open ones to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let shared = self.shared.clone();
        let router = routes::router(self);
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                shared.stopping.send_replace(true);
            })
            .await
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.config
    }

    /// Every decided charge, in the order they were decided.
    pub fn ledger(&self) -> Vec<Charge> {
        self.lock_ledger().charges().to_vec()
    }

    pub fn charge(&self, idempotency_key: &str) -> Option<Charge> {
        self.lock_ledger().charge(idempotency_key).cloned()
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.lock_ledger().stats.clone();
        let idle = self.shared.in_flight.available_permits();
        stats.in_flight = self.shared.config.in_flight_max.saturating_sub(idle) as u64;
        stats.down = self.is_down();
        stats
    }

    /// Takes the gateway down (charges and lookups are refused with `503`)
    /// or brings it back; the ledger is kept either way.
    ///
    /// The flag changes under the ledger's lock, where [`Simulator::admit`]
    /// reads it: once this returns, no charge is admitted (or stamped)
    /// until the gateway is back, even one whose request was already read.
    pub fn set_down(&self, down: bool) {
        let _ledger = self.lock_ledger();
        self.shared.down.store(down, Ordering::SeqCst);
    }

    pub fn is_down(&self) -> bool {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// The charge's admission; `None` when the gateway is down. The time
    /// and the flag are read under the lock, so that admissions are in the
    /// window in the order of their times and none is stamped after an
    /// outage began.
    pub(crate) fn admit(&self, request: ChargeRequest) -> Option<Admission> {
        let mut ledger = self.lock_ledger();
        if self.shared.down.load(Ordering::SeqCst) {
            ledger.stats.refused_down += 1;
            return None;
        }
        let now = self.shared.clock.now();
        Some(ledger.admit(request, now))
    }

    pub(crate) fn in_flight(&self) -> &Arc<Semaphore> {
        &self.shared.in_flight
    }

    pub(crate) fn count(&self, counter: impl FnOnce(&mut Stats)) {
        counter(&mut self.lock_ledger().stats);
    }

    /// Keeps a request that gets no answer open for `timeout_hold`, or until
    /// the server shuts down.
    pub(crate) async fn hold(&self) {
        let mut stopping = self.shared.stopping.subscribe();
        tokio::select! {
            () = tokio::time::sleep(self.shared.config.timeout_hold) => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
    }

    fn lock_ledger(&self) -> MutexGuard<'_, Ledger> {
        // Only a failed assertion can poison the lock, and the ledger's
        // assertions run before it changes, so its contents are still whole.
        self.shared
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A simulator served in the background, for tests. Dropping it stops the
/// server without waiting; [`SimulatorHandle::stop`] waits.
#[derive(Debug)]
pub struct SimulatorHandle {
    simulator: Simulator,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl SimulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, such as `http://127.0.0.1:41234`, without a trailing
    /// slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn simulator(&self) -> &Simulator {
        &self.simulator
    }

    pub fn ledger(&self) -> Vec<Charge> {
        self.simulator.ledger()
    }

    pub fn charge(&self, idempotency_key: &str) -> Option<Charge> {
        self.simulator.charge(idempotency_key)
    }

    pub fn stats(&self) -> Stats {
        self.simulator.stats()
    }

    pub fn set_down(&self, down: bool) {
        self.simulator.set_down(down);
    }

    /// Stops accepting connections, answers held requests with `504`, and
    /// waits for the server to finish.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.take() {
            Some(server) => server.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
