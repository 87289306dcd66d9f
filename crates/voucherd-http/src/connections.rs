//! A bound on open connections. Requests in flight are bounded by the
//! router's concurrency limit, but every open connection costs buffers
//! whether or not it has a request in flight; a crowd that opens more
//! connections than the bound gets an immediate `503` with `Retry-After`
//! on each extra one, and the connection is closed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The answer given on a connection past the bound, before it is closed.
const REFUSAL: &[u8] = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: application/problem+json\r\n",
    "retry-after: 1\r\n",
    "connection: close\r\n",
    "content-length: 120\r\n\r\n",
    "{\"type\":\"https://voucherd.dev/problems/overloaded\",\"title\":\"Too many connections\",\"status\":503,\"detail\":\"retry shortly\"}"
)
.as_bytes();

#[derive(Debug)]
pub struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    /// Refused connections being answered and drained; past this a refused
    /// connection is closed at once, unanswered.
    refusing: Arc<Semaphore>,
}

/// Refused connections answered at once, at most.
const REFUSING_MAX: usize = 1_024;

impl BoundedListener {
    pub fn new(inner: TcpListener, connections_max: usize) -> BoundedListener {
        BoundedListener {
            inner,
            permits: Arc::new(Semaphore::new(connections_max.max(1))),
            refusing: Arc::new(Semaphore::new(REFUSING_MAX)),
        }
    }
}

/// A connection, holding its place under the bound until it closes.
#[derive(Debug)]
pub struct BoundedStream {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedStream, SocketAddr) {
        loop {
            let (stream, address) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was
                    // accepted: wait a moment rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            // Claims are small requests answered after a commit; Nagle's
            // algorithm would only add latency to them.
            let _ = stream.set_nodelay(true);
            match self.permits.clone().try_acquire_owned() {
                Ok(place) => {
                    return (
                        BoundedStream {
                            stream,
                            _place: place,
                        },
                        address,
                    );
                }
                Err(_) => {
                    if let Ok(turn) = self.refusing.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            refuse(stream).await;
                            drop(turn);
                        });
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// How long a refused connection is drained before it is closed: closing
/// with the client's request unread would reset the connection and lose
/// the answer.
const REFUSAL_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(REFUSAL).await;
    let _ = stream.shutdown().await;
    let mut sink = [0_u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
    })
    .await;
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}
