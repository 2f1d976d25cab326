//! A scripted HTTP/1.1 vendor simulator for testing redial.
//!
//! [`Sim`] is a hyper 1 server on `127.0.0.1:0` that answers each request with the next
//! [`Reply`] queued for its path, records every request ([`Recorded`]), and can misbehave on
//! purpose: delays, resets, hangs, slow, stalled or truncated bodies ([`Fault`]), and resets
//! before reading anything ([`ConnFault`]).
//!
//! All waiting uses `tokio::time`, so tests can run on a paused clock
//! (`#[tokio::test(start_paused = true)]`) and simulate minutes of vendor slowness instantly.
//!
//! ```
//! use redial_sim::{Reply, Sim};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let sim = Sim::start().await?;
//! sim.enqueue("/rest/v1/leads.json", Reply::status(503).header("Retry-After", "1"));
//! sim.enqueue("/rest/v1/leads.json", Reply::json(200, r#"{"success":true}"#));
//!
//! // Any HTTP/1.1 client works; a raw socket keeps this example short.
//! let mut tcp = tokio::net::TcpStream::connect(sim.addr()).await?;
//! tcp.write_all(b"GET /rest/v1/leads.json?id=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
//!     .await?;
//! let mut response = String::new();
//! tcp.read_to_string(&mut response).await?;
//! assert!(response.starts_with("HTTP/1.1 503"));
//!
//! let log = sim.requests();
//! assert_eq!(log[0].query.as_deref(), Some("id=1"));
//! assert_eq!(sim.count("/rest/v1/leads.json"), 1);
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! Beyond scripts, [`Sim::route`] mounts a [`Handler`] (any async closure from [`Recorded`] to
//! [`Reply`]) under a path prefix; the stateful fake vendors in [`vendors`] (Marketo, Responsys,
//! Adobe Edge, Genesys Engage) are built that way. A reply queued with [`Sim::enqueue`] still wins
//! over any handler, so a test can inject a one-off fault into a vendor's conversation.
//!
//! The sim depends on nothing from redial: it is the fake vendor, not part of the code under test.

pub mod vendors;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, Sleep};
use tracing::debug;

/// At most this many bytes of a request body are kept in [`Recorded::body`].
pub const RECORDED_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Generated bodies are sent in frames of at most this size (one shared buffer).
const GENERATED_CHUNK: usize = 64 * 1024;

/// A running simulator. Stops accepting and closes every connection on [`Sim::shutdown`] or drop.
pub struct Sim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: AbortHandle,
}

/// One request the sim received, recorded once its body was fully read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Recorded {
    /// Request method.
    pub method: Method,
    /// Request path, without the query.
    pub path: String,
    /// Query string (without `?`), if the request target had one.
    pub query: Option<String>,
    /// Request headers as received.
    pub headers: HeaderMap,
    /// Request body, capped at [`RECORDED_BODY_LIMIT`] bytes (see [`Recorded::body_len`]).
    pub body: Bytes,
    /// Full length of the request body as received, even when `body` was capped.
    pub body_len: u64,
    /// When the request was fully read (tokio clock, so it follows a paused test clock).
    pub at: Instant,
    /// Ordinal of the TCP connection it came on: the first accepted connection is 0.
    pub connection: u64,
}

impl Recorded {
    /// Whether `body` holds less than what was received (the body exceeded the recording cap).
    pub fn body_truncated(&self) -> bool {
        self.body_len > self.body.len() as u64
    }
}

/// A scripted reply: status, headers, body, and optionally a delay and a [`Fault`].
///
/// Built with consuming methods: `Reply::json(429, "{}").header("Retry-After", "2")`.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: BodySpec,
    delay: Option<Duration>,
    fault: Option<Fault>,
}

#[derive(Debug, Clone)]
enum BodySpec {
    Fixed(Bytes),
    Generated { len: u64, fill: u8 },
}

impl Reply {
    /// A reply with this status code and an empty body.
    ///
    /// # Panics
    /// If `code` is not a valid HTTP status code (100..=999).
    pub fn status(code: u16) -> Reply {
        let status = StatusCode::from_u16(code).unwrap_or_else(|_| panic!("redial-sim: invalid status code {code}"));
        Reply { status, headers: Vec::new(), body: BodySpec::Fixed(Bytes::new()), delay: None, fault: None }
    }

    /// `200 OK` with an empty body.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// A reply with this status, the given JSON text as body and `Content-Type: application/json`.
    ///
    /// # Panics
    /// As [`Reply::status`].
    pub fn json(code: u16, body: impl Into<String>) -> Reply {
        Reply::status(code).header("content-type", "application/json").body(body.into())
    }

    /// Adds a header line. Repeatable: the same name twice sends two header lines.
    ///
    /// # Panics
    /// If `name` or `value` is not a valid header name or value.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|_| panic!("redial-sim: invalid header name {name:?}"));
        let value =
            HeaderValue::from_str(value).unwrap_or_else(|_| panic!("redial-sim: invalid header value {value:?}"));
        self.headers.push((name, value));
        self
    }

    /// Sets the body (sent with its true `Content-Length`).
    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = BodySpec::Fixed(body.into());
        self
    }

    /// Sets a body of `len` bytes all equal to `fill`, generated on the fly in 64 KiB frames
    /// from one shared buffer, so even gigabytes use bounded memory. It is sent chunked
    /// (no `Content-Length`) unless the fault is [`Fault::TruncatedBody`], or a
    /// `Content-Length` header is set explicitly with [`Reply::header`].
    pub fn generated_body(mut self, len: u64, fill: u8) -> Reply {
        self.body = BodySpec::Generated { len, fill };
        self
    }

    /// Waits this long (tokio time) after reading the request, before sending the head
    /// (or before applying [`Fault::ResetAfterRead`] / [`Fault::Hang`]).
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }

    /// Makes this reply misbehave. A reply has at most one fault: the last one set wins.
    pub fn fault(mut self, fault: Fault) -> Reply {
        self.fault = Some(fault);
        self
    }
}

/// A misbehaviour of one reply, applied after the request has been read and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Read the whole request (it *is* recorded), then reset the connection (TCP RST:
    /// `SO_LINGER` 0, then close) without answering.
    ResetAfterRead,
    /// Read the request, then never answer: hold the connection open until the sim shuts down
    /// or the client goes away.
    Hang,
    /// Send the head at once (true `Content-Length`, or chunked for generated bodies), then the
    /// body in pieces of `chunk` bytes (0 counts as 1), sleeping `every` before each piece.
    SlowBody {
        /// Bytes per piece.
        chunk: usize,
        /// Pause before each piece.
        every: Duration,
    },
    /// Send the head and the first `after` bytes of the body, then stall forever.
    StallBody {
        /// Bytes of body sent before stalling.
        after: usize,
    },
    /// Send the head with the full `Content-Length` but only `sent` bytes of body, then close
    /// the connection (FIN), so the client sees an incomplete body.
    TruncatedBody {
        /// Bytes of body sent before closing.
        sent: usize,
    },
}

/// A misbehaviour applied to a newly accepted connection before any byte is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnFault {
    /// Accept, then reset at once (RST) before reading anything.
    ResetOnAccept,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

/// The future a [`Handler`] returns: the reply, produced in its own time.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// Serves the requests under a path prefix mounted with [`Sim::route`].
///
/// The handler gets the request as recorded (the same value [`Sim::requests`] logs) and answers
/// asynchronously: it may sleep (use `tokio::time`, so a paused test clock drives it), keep
/// state, and count requests in flight. Its future is dropped if the connection goes away or
/// the sim shuts down, so keep per-request bookkeeping in drop guards. The [`Reply`] it returns
/// may carry a delay and a [`Fault`] like any scripted reply.
///
/// Any `Fn(Recorded) -> impl Future<Output = Reply>` closure that is `Send + Sync + 'static`
/// (and whose future is `Send + 'static`) is a handler:
///
/// ```
/// use redial_sim::{Reply, Sim};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let sim = Sim::start().await?;
/// sim.route("/echo", |req: redial_sim::Recorded| async move { Reply::ok().body(req.path) });
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, req: Recorded) -> ReplyFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(Recorded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    fn handle(&self, req: Recorded) -> ReplyFuture {
        Box::pin(self(req))
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    /// Handlers by path prefix (see [`prefix_matches`]).
    handlers: HashMap<String, Arc<dyn Handler>>,
    conn_faults: VecDeque<ConnFault>,
    log: Vec<Recorded>,
    connections: u64,
}

/// The scripted replies for one exact path.
#[derive(Default)]
struct Route {
    queue: VecDeque<Reply>,
    fallback: Option<Reply>,
}

/// What answers a request: a scripted reply, or a handler with its own copy of the request.
enum Answer {
    Scripted(Reply),
    Handler(Arc<dyn Handler>, Recorded),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Records `req` and picks what answers it in the same critical section, so scripted replies
    /// are handed out in exactly the order requests appear in the log.
    ///
    /// Precedence: the path's queue, then its fallback, then the handler with the longest
    /// matching prefix, then a 404.
    fn record_and_reply(&mut self, req: Recorded) -> Answer {
        let scripted =
            self.routes.get_mut(&req.path).and_then(|route| route.queue.pop_front().or_else(|| route.fallback.clone()));
        let answer = match scripted {
            Some(reply) => Answer::Scripted(reply),
            None => match self.handler_for(&req.path) {
                Some(handler) => Answer::Handler(handler, req.clone()),
                None => Answer::Scripted(Reply::status(404)),
            },
        };
        self.log.push(req);
        answer
    }

    fn handler_for(&self, path: &str) -> Option<Arc<dyn Handler>> {
        self.handlers
            .iter()
            .filter(|(prefix, _)| prefix_matches(prefix, path))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, handler)| handler.clone())
    }
}

/// Whether a handler mounted at `prefix` serves `path`: the path equals the prefix or continues
/// it at a `/` (`/rest` serves `/rest` and `/rest/v1`, not `/restore`); a prefix ending in `/`
/// serves everything below it.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// Matching uses the path only: drop any query the caller passed.
fn route_key(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

impl Sim {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime (via `tokio::spawn`).
    ///
    /// Works on a `current_thread` runtime with a paused clock.
    pub async fn start() -> std::io::Result<Sim> {
        Sim::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Like [`start`](Sim::start), on a given loopback address (e.g. a port a test saw refuse
    /// connections a moment ago).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Sim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        debug!(%addr, "redial-sim listening");
        Ok(Sim { addr, shared, accept_task })
    }

    /// The address the sim listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Queues a reply for `path` (matched on the path only; a query is ignored). Replies for a
    /// path are served FIFO, in the order requests for it arrive.
    pub fn enqueue(&self, path: &str, reply: Reply) {
        self.enqueue_many(path, [reply]);
    }

    /// Queues several replies for `path`, in order.
    pub fn enqueue_many(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut state = self.shared.lock();
        let route = state.routes.entry(route_key(path).to_owned()).or_default();
        route.queue.extend(replies);
    }

    /// Sets the reply used for `path` whenever its queue is empty (repeated forever); it wins
    /// over a handler mounted with [`Sim::route`]. Without either, such requests get a 404 with
    /// an empty body.
    pub fn set_fallback(&self, path: &str, reply: Reply) {
        let mut state = self.shared.lock();
        state.routes.entry(route_key(path).to_owned()).or_default().fallback = Some(reply);
    }

    /// Mounts `handler` for every path under `prefix` (see [`Handler`]); mounting again at the
    /// same prefix replaces the handler. `prefix` matches whole segments: `/rest` serves `/rest`
    /// and `/rest/v1/leads.json` but not `/restore` (a prefix ending in `/` serves only what is
    /// below it). The longest matching prefix wins.
    ///
    /// Scripted replies win over handlers: a request whose exact path has a queued reply (or a
    /// fallback) gets that, and never reaches the handler. Every request is logged either way.
    pub fn route(&self, prefix: &str, handler: impl Handler) {
        let mut state = self.shared.lock();
        state.handlers.insert(route_key(prefix).to_owned(), Arc::new(handler));
    }

    /// Queues a fault for the next accepted TCP connection, applied before any byte is read.
    /// Faults are consumed FIFO, one per connection.
    pub fn enqueue_connection_fault(&self, fault: ConnFault) {
        self.shared.lock().conn_faults.push_back(fault);
    }

    /// Every request received (fully read), in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().log.clone()
    }

    /// Removes every request logged so far and returns them, in arrival order: a long-running
    /// sim (the `redial-sim` binary) keeps its log bounded this way. [`Sim::count`] and
    /// [`Sim::requests`] see only what was logged since.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.shared.lock().log)
    }

    /// Number of requests received for `path` (query ignored).
    pub fn count(&self, path: &str) -> usize {
        let path = route_key(path);
        self.shared.lock().log.iter().filter(|r| r.path == path).count()
    }

    /// Number of TCP connections accepted, including ones reset on accept.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections as usize
    }

    /// Stops accepting and closes every connection (hanging and stalled ones included).
    ///
    /// Takes effect when the runtime next runs the sim's tasks (e.g. at the caller's next
    /// `.await`). Also done on drop; calling it more than once is harmless.
    pub fn shutdown(&self) {
        self.accept_task.abort();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Accepts connections until aborted. Connection tasks live in a `JoinSet` owned by this task,
/// so aborting it aborts them all.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (id, fault) = {
                        let mut state = shared.lock();
                        state.connections += 1;
                        (state.connections - 1, state.conn_faults.pop_front())
                    };
                    debug!(id, %peer, ?fault, "redial-sim accepted connection");
                    match fault {
                        Some(ConnFault::ResetOnAccept) => reset(SockRef::from(&stream)),
                        None => {
                            conns.spawn(serve_connection(stream, id, shared.clone()));
                        }
                    }
                }
                Err(error) => {
                    debug!(%error, "redial-sim accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Sets `SO_LINGER` to zero so the final close of the socket sends RST instead of FIN.
fn reset(socket: SockRef<'_>) {
    if let Err(error) = socket.set_linger(Some(Duration::ZERO)) {
        debug!(%error, "redial-sim could not set SO_LINGER 0");
    }
}

async fn serve_connection(stream: TcpStream, id: u64, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    // A second fd on the same socket, so we can reset it after hyper owns the stream:
    // SO_LINGER is a property of the socket, and RST goes out when its last fd closes.
    let keep = match SockRef::from(&stream).try_clone() {
        Ok(keep) => keep,
        Err(error) => {
            debug!(%error, "redial-sim could not dup socket");
            return;
        }
    };
    let ctl = Arc::new(ConnCtl::default());
    let service = {
        let ctl = ctl.clone();
        hyper::service::service_fn(move |req| handle(req, id, shared.clone(), ctl.clone()))
    };
    let io = SimIo { stream, ctl: ctl.clone() };
    let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(io), service);
    // Leaving the select drops the hyper connection (and its fd) without any further I/O.
    tokio::select! {
        result = conn => debug!(id, ?result, "redial-sim connection closed"),
        () = ctl.close.notified() => debug!(id, "redial-sim closing connection mid-body"),
        () = ctl.reset.notified() => {
            debug!(id, "redial-sim resetting connection");
            reset(SockRef::from(&keep));
        }
    }
    drop(keep);
}

/// Lets a request's handler and body act on their connection, which hyper owns.
#[derive(Default)]
struct ConnCtl {
    /// Reset the connection now.
    reset: Notify,
    /// Close the connection now.
    close: Notify,
    /// Set by a body cut short: notify `close` once hyper has written everything before it.
    close_after_flush: AtomicBool,
}

/// The connection's socket as hyper sees it: a `TcpStream` that reports complete flushes.
struct SimIo {
    stream: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl AsyncRead for SimIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// hyper flushes the socket only after writing out its whole buffer.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = ready!(Pin::new(&mut self.stream).poll_flush(cx));
        if flushed.is_ok() && self.ctl.close_after_flush.swap(false, Ordering::SeqCst) {
            self.ctl.close.notify_one();
        }
        Poll::Ready(flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn handle(
    req: Request<Incoming>,
    connection: u64,
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
) -> Result<Response<SimBody>, hyper::Error> {
    let (parts, mut incoming) = req.into_parts();
    let mut body = BytesMut::new();
    let mut body_len = 0u64;
    while let Some(frame) = incoming.frame().await {
        if let Ok(data) = frame?.into_data() {
            body_len += data.len() as u64;
            let room = RECORDED_BODY_LIMIT.saturating_sub(body.len());
            body.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    let recorded = Recorded {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: body.freeze(),
        body_len,
        at: Instant::now(),
        connection,
    };
    debug!(connection, method = %recorded.method, path = %recorded.path, "redial-sim request");
    let answer = shared.lock().record_and_reply(recorded);
    let reply = match answer {
        Answer::Scripted(reply) => reply,
        Answer::Handler(handler, req) => handler.handle(req).await,
    };

    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    match reply.fault {
        Some(Fault::ResetAfterRead) => {
            ctl.reset.notify_one();
            std::future::pending().await
        }
        Some(Fault::Hang) => std::future::pending().await,
        _ => {}
    }
    let mut response = Response::new(SimBody::new(reply.body, reply.fault, ctl));
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

/// The response body: fixed or generated bytes, optionally paced, stalled or cut short.
struct SimBody {
    source: Source,
    /// Bytes that may still be sent before the body stalls or is cut short (`u64::MAX`: no limit).
    budget: u64,
    /// On exhausting `budget` with data left: `true` closes the connection, `false` stalls.
    close_at_budget: bool,
    ctl: Arc<ConnCtl>,
    max_frame: usize,
    pace: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    exact_len: Option<u64>,
}

enum Source {
    Fixed(Bytes),
    Generated { pattern: Bytes, left: u64 },
}

impl Source {
    fn remaining(&self) -> u64 {
        match self {
            Source::Fixed(bytes) => bytes.len() as u64,
            Source::Generated { left, .. } => *left,
        }
    }

    /// Takes up to `n` (> 0) bytes; never returns an empty chunk while data remains.
    fn take(&mut self, n: u64) -> Bytes {
        match self {
            Source::Fixed(bytes) => bytes.split_to(n.min(bytes.len() as u64) as usize),
            Source::Generated { pattern, left } => {
                let n = n.min(*left).min(pattern.len() as u64);
                *left -= n;
                pattern.slice(..n as usize)
            }
        }
    }
}

impl SimBody {
    fn new(spec: BodySpec, fault: Option<Fault>, ctl: Arc<ConnCtl>) -> SimBody {
        let (source, mut exact_len) = match spec {
            BodySpec::Fixed(bytes) => {
                let len = bytes.len() as u64;
                (Source::Fixed(bytes), Some(len))
            }
            BodySpec::Generated { len, fill } => {
                let pattern = Bytes::from(vec![fill; len.min(GENERATED_CHUNK as u64) as usize]);
                (Source::Generated { pattern, left: len }, None)
            }
        };
        let mut body = SimBody {
            budget: u64::MAX,
            close_at_budget: false,
            ctl,
            max_frame: usize::MAX,
            pace: None,
            sleep: None,
            exact_len: None,
            source,
        };
        match fault {
            Some(Fault::SlowBody { chunk, every }) => {
                body.max_frame = chunk.max(1);
                body.pace = Some(every);
            }
            Some(Fault::StallBody { after }) => body.budget = after as u64,
            Some(Fault::TruncatedBody { sent }) => {
                body.budget = sent as u64;
                body.close_at_budget = true;
                exact_len = Some(body.source.remaining());
            }
            _ => {}
        }
        body.exact_len = exact_len;
        body
    }
}

impl http_body::Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.source.remaining() == 0 {
            return Poll::Ready(None);
        }
        if this.budget == 0 {
            // Never woken: a stall lasts until the sim or the client closes the connection. A
            // truncation lets hyper flush what came before, then `SimIo` has the connection
            // closed (an error here would make hyper drop its unflushed buffer).
            if this.close_at_budget {
                this.ctl.close_after_flush.store(true, Ordering::SeqCst);
            }
            return Poll::Pending;
        }
        if let Some(every) = this.pace {
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        let n = this.budget.min(this.max_frame as u64);
        let chunk = this.source.take(n);
        this.budget -= chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.source.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        self.exact_len.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}
