//! A small HTTP/1.1 client: what a run needs and nothing else, so that the
//! generator leaves the server the CPU it is measuring.
//!
//! A general client (a pool with tower layers, URL parsing, header maps,
//! a timer per stage) cost about 76 µs of CPU per request here, five times
//! what `wrk` spends; this one writes a request prepared in one buffer,
//! reads the answer with `httparse` into a buffer it keeps, and takes a
//! timer only for the whole exchange.
//!
//! Two connection models ([`ConnectionModel`]):
//! - `Pooled`: at most `pool_connections_max` keep-alive connections per
//!   target, as a load balancer's upstream pool presents a crowd to the
//!   nodes; a request waits for one (its latency counts the wait).
//!   Without the bound the connections grow with the requests in flight
//!   when answers slow, and each new one costs both sides.
//! - `PerUser`: each user's visit opens its own connection and keeps it for
//!   its requests, as a million browsers do; the visit runs inside
//!   [`own_connection`], and its connection closes when the visit ends.

use std::cell::RefCell;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::api::{Answer, Failure, FailureKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionModel {
    Pooled,
    PerUser,
}

impl ConnectionModel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionModel::Pooled => "pooled",
            ConnectionModel::PerUser => "per-user",
        }
    }

    pub fn parse(text: &str) -> Option<ConnectionModel> {
        match text {
            "pooled" => Some(ConnectionModel::Pooled),
            "per-user" => Some(ConnectionModel::PerUser),
            _ => None,
        }
    }
}

/// A pooled connection idle longer than this is closed rather than used:
/// the server may close an idle connection once it has been idle for a
/// second, and a request sent on it as it closes would get no answer.
const POOLED_IDLE_MAX: Duration = Duration::from_millis(500);
/// An answer's head may be at most this long.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// An answer's body may be at most this long (an export page).
const BODY_BYTES_MAX: usize = 256 * 1024 * 1024;
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// One server, by address.
#[derive(Debug)]
pub struct Endpoint {
    address: SocketAddr,
    /// `host:port`, for the `Host` header.
    authority: String,
    idle: Mutex<Vec<(Connection, Instant)>>,
    /// Pooled connections open or being opened, at most.
    connections: Semaphore,
}

impl Endpoint {
    /// `http://host:port`, with at most `connections_max` pooled
    /// connections.
    pub fn parse(url: &str, connections_max: usize) -> Result<Endpoint, String> {
        let (authority, _) = split_url(url)?;
        let address = authority
            .to_socket_addrs()
            .map_err(|error| format!("{url:?}: {error}"))?
            .next()
            .ok_or_else(|| format!("{url:?} names no address"))?;
        Ok(Endpoint {
            address,
            authority: authority.to_owned(),
            idle: Mutex::new(Vec::new()),
            connections: Semaphore::new(connections_max.max(1)),
        })
    }
}

/// `http://host:port/path` → (`host:port`, `/path`).
pub fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    Ok(match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    })
}

#[derive(Debug)]
struct Connection {
    address: SocketAddr,
    stream: TcpStream,
    buffer: Vec<u8>,
}

tokio::task_local! {
    /// The visit's own connection, in the per-user model.
    static OWN: RefCell<Option<Connection>>;
}

/// Runs a visit with a connection of its own (the per-user model): every
/// request it makes goes on that connection, which closes when it ends.
pub async fn own_connection<F: Future>(visit: F) -> F::Output {
    OWN.scope(RefCell::new(None), visit).await
}

/// A request, its head written but for the `Host` line.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
}

/// The client of a run.
#[derive(Debug)]
pub struct Client {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Client {
    /// Sends `request` to `endpoint` and reads the whole answer.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        request: &Request<'_>,
    ) -> Result<Answer, Failure> {
        let mut bytes = Vec::with_capacity(256 + request.body.map_or(0, <[u8]>::len));
        write_head(&mut bytes, endpoint, request);
        let exchange = self.exchange(endpoint, &bytes, request.method == "GET");
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(answered) => answered,
            Err(_) => Err(failure(
                FailureKind::Timeout,
                "no answer in time".to_owned(),
            )),
        }
    }

    async fn exchange(
        &self,
        endpoint: &Endpoint,
        request: &[u8],
        retry_stale: bool,
    ) -> Result<Answer, Failure> {
        let own = OWN.try_with(|own| own.borrow_mut().take());
        let per_user = own.is_ok();
        // A pooled request holds one of the endpoint's connections for its
        // exchange, waiting for one when all are busy.
        let _pooled =
            match per_user {
                true => None,
                false => {
                    Some(endpoint.connections.acquire().await.map_err(|_| {
                        failure(FailureKind::Connect, "the pool is closed".to_owned())
                    })?)
                }
            };
        let reusable = match own {
            Ok(own) => own.filter(|own| own.address == endpoint.address),
            Err(_) => self.pooled(endpoint),
        };
        let (mut connection, reused) = match reusable {
            Some(connection) => (connection, true),
            None => (self.connect(endpoint).await?, false),
        };
        let mut answered = connection.exchange(request).await;
        if reused && retry_stale && matches!(&answered, Err(Stale::Closed)) {
            // The server had closed the idle connection before this request
            // reached it; a GET may go again on a new one.
            connection = self.connect(endpoint).await?;
            answered = connection.exchange(request).await;
        }
        match answered {
            Ok((answer, keep)) => {
                if keep {
                    self.give_back(endpoint, connection, per_user);
                }
                Ok(answer)
            }
            Err(Stale::Closed) => Err(failure(
                FailureKind::Transport,
                "connection closed before an answer".to_owned(),
            )),
            Err(Stale::Failed(failed)) => Err(failed),
        }
    }

    fn pooled(&self, endpoint: &Endpoint) -> Option<Connection> {
        let mut idle = endpoint.idle.lock().expect("the pool's lock");
        let (connection, since) = idle.pop()?;
        if since.elapsed() > POOLED_IDLE_MAX {
            // The rest of the stack went idle earlier still.
            idle.clear();
            return None;
        }
        Some(connection)
    }

    fn give_back(&self, endpoint: &Endpoint, connection: Connection, per_user: bool) {
        if per_user {
            let _ = OWN.try_with(|own| *own.borrow_mut() = Some(connection));
            return;
        }
        // Never more than the bound: the connection is given back while
        // its request still holds its place.
        endpoint
            .idle
            .lock()
            .expect("the pool's lock")
            .push((connection, Instant::now()));
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<Connection, Failure> {
        let connecting = TcpStream::connect(endpoint.address);
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(failure(FailureKind::Connect, error.to_string())),
            Err(_) => {
                return Err(failure(
                    FailureKind::Connect,
                    "connect timed out".to_owned(),
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            address: endpoint.address,
            stream,
            buffer: Vec::with_capacity(READ_CHUNK_BYTES),
        })
    }
}

fn failure(kind: FailureKind, detail: String) -> Failure {
    Failure { kind, detail }
}

fn write_head(bytes: &mut Vec<u8>, endpoint: &Endpoint, request: &Request<'_>) {
    let mut line = |parts: &[&[u8]]| {
        for part in parts {
            bytes.extend_from_slice(part);
        }
        bytes.extend_from_slice(b"\r\n");
    };
    line(&[
        request.method.as_bytes(),
        b" ",
        request.path.as_bytes(),
        b" HTTP/1.1",
    ]);
    line(&[b"host: ", endpoint.authority.as_bytes()]);
    for (name, value) in request.headers {
        line(&[name.as_bytes(), b": ", value.as_bytes()]);
    }
    if let Some(body) = request.body {
        line(&[b"content-length: ", body.len().to_string().as_bytes()]);
    }
    line(&[]);
    if let Some(body) = request.body {
        bytes.extend_from_slice(body);
    }
}

/// How an exchange ended without an answer.
#[derive(Debug)]
enum Stale {
    /// The connection was closed before any byte of an answer: on a
    /// reused connection, the server had closed it while idle.
    Closed,
    Failed(Failure),
}

fn transport(error: std::io::Error) -> Stale {
    Stale::Failed(failure(FailureKind::Transport, error.to_string()))
}

impl Connection {
    /// Writes the request and reads its answer; answers whether the
    /// connection may carry another request.
    async fn exchange(&mut self, request: &[u8]) -> Result<(Answer, bool), Stale> {
        self.buffer.clear();
        if let Err(error) = self.stream.write_all(request).await {
            return Err(match error.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                    Stale::Closed
                }
                _ => transport(error),
            });
        }
        let head = loop {
            if self.read_more().await? == 0 {
                return Err(match self.buffer.is_empty() {
                    true => Stale::Closed,
                    false => Stale::Failed(failure(
                        FailureKind::Transport,
                        "closed mid-answer".to_owned(),
                    )),
                });
            }
            if let Some(head) = parse_head(&self.buffer)? {
                break head;
            }
            if self.buffer.len() > HEAD_BYTES_MAX {
                return Err(Stale::Failed(failure(
                    FailureKind::Transport,
                    "answer head too long".to_owned(),
                )));
            }
        };
        let body = match head.framing {
            Framing::Length(length) => self.read_length(head.length, length).await?,
            Framing::Chunked => self.read_chunked(head.length).await?,
            Framing::UntilClose => self.read_to_close(head.length).await?,
        };
        let keep = head.keep_alive && !matches!(head.framing, Framing::UntilClose);
        Ok((
            Answer {
                status: head.status,
                retry_after: head.retry_after,
                body,
            },
            keep,
        ))
    }

    async fn read_more(&mut self) -> Result<usize, Stale> {
        let empty = self.buffer.is_empty();
        // Reads into the buffer's spare room, which is never zeroed.
        self.buffer.reserve(READ_CHUNK_BYTES);
        match self.stream.read_buf(&mut self.buffer).await {
            Ok(read) => Ok(read),
            Err(error) if empty && error.kind() == std::io::ErrorKind::ConnectionReset => {
                Err(Stale::Closed)
            }
            Err(error) => Err(transport(error)),
        }
    }

    async fn read_length(&mut self, head_length: usize, length: usize) -> Result<Vec<u8>, Stale> {
        if length > BODY_BYTES_MAX {
            return Err(Stale::Failed(failure(
                FailureKind::Transport,
                "answer body too long".to_owned(),
            )));
        }
        while self.buffer.len() < head_length + length {
            if self.read_more().await? == 0 {
                return Err(Stale::Failed(failure(
                    FailureKind::Transport,
                    "closed mid-body".to_owned(),
                )));
            }
        }
        Ok(self.buffer[head_length..head_length + length].to_vec())
    }

    async fn read_to_close(&mut self, head_length: usize) -> Result<Vec<u8>, Stale> {
        while self.read_more().await? > 0 {
            if self.buffer.len() > head_length + BODY_BYTES_MAX {
                return Err(Stale::Failed(failure(
                    FailureKind::Transport,
                    "answer body too long".to_owned(),
                )));
            }
        }
        Ok(self.buffer[head_length..].to_vec())
    }

    async fn read_chunked(&mut self, head_length: usize) -> Result<Vec<u8>, Stale> {
        let mut body = Vec::new();
        let mut at = head_length;
        loop {
            let Some(line_end) = find_line(&self.buffer[at..]) else {
                self.more_or_fail().await?;
                continue;
            };
            let size_text = std::str::from_utf8(&self.buffer[at..at + line_end]).unwrap_or("");
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                Stale::Failed(failure(FailureKind::Transport, "bad chunk size".to_owned()))
            })?;
            if size == 0 {
                return Ok(body);
            }
            if body.len() + size > BODY_BYTES_MAX {
                return Err(Stale::Failed(failure(
                    FailureKind::Transport,
                    "answer body too long".to_owned(),
                )));
            }
            let data = at + line_end + 2;
            while self.buffer.len() < data + size + 2 {
                self.more_or_fail().await?;
            }
            body.extend_from_slice(&self.buffer[data..data + size]);
            at = data + size + 2;
        }
    }

    async fn more_or_fail(&mut self) -> Result<(), Stale> {
        match self.read_more().await? {
            0 => Err(Stale::Failed(failure(
                FailureKind::Transport,
                "closed mid-body".to_owned(),
            ))),
            _ => Ok(()),
        }
    }
}

fn find_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

#[derive(Debug)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    status: u16,
    /// Bytes of the head, up to and with the blank line.
    length: usize,
    framing: Framing,
    keep_alive: bool,
    retry_after: Option<Duration>,
}

fn parse_head(bytes: &[u8]) -> Result<Option<Head>, Stale> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => {
            return Err(Stale::Failed(failure(
                FailureKind::Transport,
                format!("bad answer: {error}"),
            )));
        }
    };
    let status = response.code.unwrap_or(0);
    let mut head = Head {
        status,
        length,
        framing: Framing::UntilClose,
        keep_alive: response.version == Some(1),
        retry_after: None,
    };
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = value.parse().map_err(|_| {
                Stale::Failed(failure(
                    FailureKind::Transport,
                    "bad content-length".to_owned(),
                ))
            })?;
            head.framing = Framing::Length(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if value.eq_ignore_ascii_case("chunked") {
                head.framing = Framing::Chunked;
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            head.keep_alive = !value.eq_ignore_ascii_case("close");
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            head.retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    // Answers that never carry a body.
    if status == 204 || status == 304 || (100..200).contains(&status) {
        head.framing = Framing::Length(0);
    }
    Ok(Some(head))
}
