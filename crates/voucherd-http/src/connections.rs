//! The server's connections: how many may be open, how long a client may
//! take to send a request, and what a connection past the bound is told.
//!
//! Requests in flight are bounded by the router's concurrency limit, but
//! every open connection costs a descriptor and buffers whether or not it
//! has a request in flight. [`serve`] accepts from a listener with a
//! backlog sized for a crowd ([`bind`]), serves each connection with
//! hyper's HTTP/1 (small buffers, a deadline on reading a request's head)
//! and keeps at most `connections_max` open:
//!
//! - When places run short, the connections idle longest — keep-alive
//!   connections between requests, and clients that have not finished
//!   sending a head — are asked to close, and a new connection waits a
//!   moment for the place one of them frees.
//! - A connection that finds no place is answered `503` with
//!   `Retry-After` once its request has been read, then closed: never
//!   closed unanswered.
//! - Past `refusing_max` refusals under way at once the accept loop stops
//!   accepting until one ends, so the kernel's backlog holds the crowd
//!   (and then SYN retries) instead of the process dropping it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use voucherd_engine::metrics::{BoundLabels, EngineMetrics};

use crate::front::Api;

/// The answer given on a connection no place could be found for.
const REFUSAL: &[u8] = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: application/problem+json\r\n",
    "retry-after: 1\r\n",
    "connection: close\r\n",
    "content-length: 120\r\n\r\n",
    "{\"type\":\"https://voucherd.dev/problems/overloaded\",\"title\":\"Too many connections\",\"status\":503,\"detail\":\"retry shortly\"}"
)
.as_bytes();

/// The bounds of [`serve`].
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub connections_max: usize,
    /// Connections past the bound being refused at once; past it the
    /// accept loop waits.
    pub refusing_max: usize,
    /// How long a client may take to send a request's head, counted from
    /// when the connection is ready for it (so it is also how long an idle
    /// keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// A connection with no request in its handler for at least this long
    /// may be asked to close when places run short.
    pub idle_grace: Duration,
    /// How long a connection past the bound waits for a place before it
    /// is refused.
    pub place_wait: Duration,
    /// hyper's read and write buffer per connection, at most (hyper's
    /// least is 8 KiB; bodies stream through it, they are not held whole).
    pub buffer_bytes_max: usize,
    /// Where the open connections and the refusals are counted.
    pub metrics: ConnectionMetrics,
}

/// The connections' metrics; unregistered by default (counted, never
/// shown), registered by the binary with [`ConnectionMetrics::register`].
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: Gauge,
    max: Gauge,
    refused: Counter,
}

impl ConnectionMetrics {
    /// The gauges of open connections and of the bound in `registry`; the
    /// refusals are the `connections` series of `refusals`.
    pub fn register(registry: &mut Registry, engine: &EngineMetrics) -> ConnectionMetrics {
        let metrics = ConnectionMetrics {
            open: Gauge::default(),
            max: Gauge::default(),
            refused: engine
                .refusals
                .get_or_create(&BoundLabels {
                    bound: "connections",
                })
                .clone(),
        };
        registry.register(
            "voucherd_connections_open",
            "Client connections open now",
            metrics.open.clone(),
        );
        registry.register(
            "voucherd_connections_max",
            "Client connections that may be open at once (--connections-max, or sized)",
            metrics.max.clone(),
        );
        metrics
    }
}

/// Counts a connection out of the open gauge however it ends.
struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            connections_max: 4_096,
            refusing_max: 1_024,
            header_read_timeout: Duration::from_secs(10),
            idle_grace: Duration::from_secs(1),
            place_wait: Duration::from_millis(250),
            buffer_bytes_max: 16 * 1024,
            metrics: ConnectionMetrics::default(),
        }
    }
}

/// The backlog asked of the kernel when the caller names none; Linux cuts
/// it to `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 16_384;

/// A listening socket with a backlog sized for a crowd (the default of
/// `std` and tokio is 128 on Linux, past which new connections are dropped
/// at SYN and retried a second later).
pub fn bind(address: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Serves `api` on `listener` under `limits` until `shutdown`
/// completes; then stops accepting, lets every connection finish the
/// request it is in, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    api: Api,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    assert!(limits.connections_max > 0 && limits.refusing_max > 0);
    limits
        .metrics
        .max
        .set(i64::try_from(limits.connections_max).unwrap_or(i64::MAX));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.buffer_bytes_max.max(8 * 1024));
    let server = Arc::new(Server {
        places: Arc::new(Semaphore::new(limits.connections_max)),
        refusing: Arc::new(Semaphore::new(limits.refusing_max)),
        table: Table::new(limits.idle_grace, (limits.connections_max / 64).max(8)),
        limits,
        http,
        api,
    });
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, or a connection reset before it was
                // accepted: wait a moment rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Claims are small requests answered after a commit; Nagle's
        // algorithm would only add latency to them.
        let _ = stream.set_nodelay(true);
        if let Ok(place) = server.places.clone().try_acquire_owned() {
            let slot = server.table.register();
            tokio::spawn(server.clone().connection(stream, place, slot));
            continue;
        }
        server.table.evict_idle();
        // Waits here, not in a queue of its own: past the refusals under
        // way, the kernel's backlog is the queue.
        let Ok(refusing) = server.refusing.clone().acquire_owned().await else {
            break;
        };
        tokio::spawn(server.clone().wait_for_place(stream, refusing));
    }
    drop(listener);
    server.table.evict_all();
    // Every connection and refusal returns its permit when it ends.
    let connections = u32::try_from(server.limits.connections_max).unwrap_or(u32::MAX);
    let refusals = u32::try_from(server.limits.refusing_max).unwrap_or(u32::MAX);
    let _closed = server.places.acquire_many(connections).await;
    let _refused = server.refusing.acquire_many(refusals).await;
}

#[derive(Debug)]
struct Server {
    places: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    table: Table,
    limits: ConnectionLimits,
    http: hyper::server::conn::http1::Builder,
    api: Api,
}

/// How long an evicted connection may take to close by itself before it
/// is dropped (only ever one with no request in its handler).
const EVICTED_CLOSE_WAIT: Duration = Duration::from_millis(100);

impl Server {
    async fn connection(
        self: Arc<Server>,
        stream: TcpStream,
        place: OwnedSemaphorePermit,
        slot: Registered,
    ) {
        let _open = Open::new(&self.limits.metrics.open);
        let tracked = slot.slot.clone();
        let api = self.api.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            tracked.begin_request();
            let api = api.clone();
            let tracked = tracked.clone();
            async move {
                let response = api.answer(request).await;
                tracked.end_request();
                Ok::<Response, Infallible>(response)
            }
        });
        let mut connection = pin!(self.http.serve_connection(TokioIo::new(stream), service));
        tokio::select! {
            _ = connection.as_mut() => return drop(place),
            () = slot.slot.evicted.notified() => connection.as_mut().graceful_shutdown(),
        }
        // An idle keep-alive connection closes at once. A client still
        // sending its first head is not idle to hyper, which would wait for
        // it to finish: it is dropped once it shows no request.
        loop {
            tokio::select! {
                _ = connection.as_mut() => break,
                () = tokio::time::sleep(EVICTED_CLOSE_WAIT) => {
                    if slot.slot.requests.load(Ordering::Acquire) == 0 {
                        break;
                    }
                }
            }
        }
        drop(place);
    }

    /// A connection past the bound: served if a place frees within the
    /// wait, else refused with an answer.
    async fn wait_for_place(self: Arc<Server>, stream: TcpStream, refusing: OwnedSemaphorePermit) {
        let place =
            tokio::time::timeout(self.limits.place_wait, self.places.clone().acquire_owned()).await;
        match place {
            Ok(Ok(place)) => {
                drop(refusing);
                let slot = self.table.register();
                self.connection(stream, place, slot).await;
            }
            _ => {
                self.limits.metrics.refused.inc();
                refuse(stream).await;
                drop(refusing);
            }
        }
    }
}

/// How long a refused connection's request is waited for, and how long it
/// is drained after the answer: closing with the client's request unread
/// would reset the connection and lose the answer.
const REFUSAL_READ_WAIT: Duration = Duration::from_secs(1);
const REFUSAL_DRAIN: Duration = Duration::from_millis(500);
/// The most of a refused connection's request that is read.
const REFUSAL_READ_BYTES_MAX: usize = 16 * 1024;

async fn refuse(mut stream: TcpStream) {
    let mut head = [0_u8; 2048];
    let mut read_total = 0;
    let mut window = [0_u8; 4];
    let _ = tokio::time::timeout(REFUSAL_READ_WAIT, async {
        while read_total < REFUSAL_READ_BYTES_MAX {
            match stream.read(&mut head).await {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    read_total += read;
                    for byte in &head[..read] {
                        window = [window[1], window[2], window[3], *byte];
                        if &window == b"\r\n\r\n" {
                            return;
                        }
                    }
                }
            }
        }
    })
    .await;
    let _ = stream.write_all(REFUSAL).await;
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        while matches!(stream.read(&mut head).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// The open connections, for choosing which to close when places run
/// short.
#[derive(Debug)]
struct Table {
    epoch: Instant,
    idle_grace: Duration,
    /// Connections asked to close per scan, at most.
    evict_batch: usize,
    next_id: AtomicU64,
    slots: Arc<Mutex<HashMap<u64, Arc<Slot>>>>,
    /// When the last scan ran (milliseconds from `epoch`): a crowd past
    /// the bound would otherwise scan the table for every connection.
    last_scan_ms: AtomicU64,
    stopping: AtomicBool,
}

/// Scans for idle connections run at most this often.
const EVICT_SCAN_PERIOD_MS: u64 = 5;

#[derive(Debug)]
struct Slot {
    epoch: Instant,
    /// Requests in the handler now (0 or 1 on HTTP/1 without pipelining).
    requests: AtomicU32,
    /// When the connection last had no request in its handler, in
    /// milliseconds from the table's epoch.
    idle_since_ms: AtomicU64,
    evicting: AtomicBool,
    evicted: Notify,
}

impl Slot {
    fn begin_request(&self) {
        self.requests.fetch_add(1, Ordering::AcqRel);
    }

    fn end_request(&self) {
        let idle_since_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(idle_since_ms, Ordering::Relaxed);
        let before = self.requests.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "a request ended that never began");
    }

    fn evict(&self) {
        self.evicting.store(true, Ordering::Relaxed);
        self.evicted.notify_one();
    }
}

/// A connection's entry in the table, removed when dropped.
#[derive(Debug)]
struct Registered {
    id: u64,
    slot: Arc<Slot>,
    slots: Arc<Mutex<HashMap<u64, Arc<Slot>>>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.slots
            .lock()
            .expect("the connection table")
            .remove(&self.id);
    }
}

impl Table {
    fn new(idle_grace: Duration, evict_batch: usize) -> Table {
        Table {
            epoch: Instant::now(),
            idle_grace,
            evict_batch,
            next_id: AtomicU64::new(0),
            slots: Arc::new(Mutex::new(HashMap::new())),
            last_scan_ms: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn register(&self) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            epoch: self.epoch,
            requests: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            evicting: AtomicBool::new(false),
            evicted: Notify::new(),
        });
        self.slots
            .lock()
            .expect("the connection table")
            .insert(id, slot.clone());
        // A connection that waited for its place while the server began to
        // stop is asked to close at once, like every other.
        if self.stopping.load(Ordering::Acquire) {
            slot.evict();
        }
        Registered {
            id,
            slot,
            slots: self.slots.clone(),
        }
    }

    /// Asks the connections idle longest (past the grace) to close.
    fn evict_idle(&self) {
        let now_ms = self.now_ms();
        let last_ms = self.last_scan_ms.load(Ordering::Relaxed);
        if now_ms < last_ms + EVICT_SCAN_PERIOD_MS
            || self
                .last_scan_ms
                .compare_exchange(last_ms, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let grace_ms = u64::try_from(self.idle_grace.as_millis()).unwrap_or(u64::MAX);
        let slots = self.slots.lock().expect("the connection table");
        let mut idle: Vec<(u64, &Arc<Slot>)> = slots
            .values()
            .filter(|slot| {
                slot.requests.load(Ordering::Acquire) == 0 && !slot.evicting.load(Ordering::Relaxed)
            })
            .map(|slot| (slot.idle_since_ms.load(Ordering::Relaxed), slot))
            .filter(|(since_ms, _)| since_ms.saturating_add(grace_ms) <= now_ms)
            .collect();
        if idle.len() > self.evict_batch {
            idle.select_nth_unstable_by_key(self.evict_batch, |(since_ms, _)| *since_ms);
            idle.truncate(self.evict_batch);
        }
        for (_, slot) in idle {
            slot.evict();
        }
    }

    /// Shutdown: every connection finishes its request and closes.
    fn evict_all(&self) {
        self.stopping.store(true, Ordering::Release);
        for slot in self.slots.lock().expect("the connection table").values() {
            slot.evict();
        }
    }
}
