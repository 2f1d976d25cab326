//! `redial call`: requests through the full redial stack, like curl, with load.
//!
//! The stack is hyper-util's legacy client (plain HTTP/1.1: no TLS in this build) wrapped in a
//! [`RetryLayer`] that serves the URL's host with the vendor's profile and its policy, with the
//! command line's overrides, and a [`TokenSource`] when a login is configured.
//!
//! The pieces are public so that they can be tested without a network:
//! [`policy`], [`token_source`] and [`layer`] build the stack; [`attempt_line`],
//! [`response_line`], [`error_line`], [`failure_key`] and [`Tally`] make the output; [`run`]
//! sends the requests and prints as they complete.
//!
//! ```
//! use redial_cli::args::CallArgs;
//! use redial_cli::call::{policy, Tally};
//! use redial_vendors::Vendor;
//!
//! let mut args = CallArgs::new(Vendor::Marketo, "http://127.0.0.1:8080/rest/v1/leads.json".parse().unwrap());
//! args.rate_limit = Some((10, std::time::Duration::from_secs(2)));
//! let p = policy(&args).unwrap();
//! assert_eq!(p.rate_limit(), Some((10, std::time::Duration::from_secs(2))));
//! assert_eq!(p.max_attempts(), Vendor::Marketo.policy().max_attempts());
//!
//! let mut tally = Tally::default();
//! tally.success(2);
//! tally.failure("fatal", 1);
//! let line = tally.summary(1, std::time::Duration::from_millis(1500));
//! assert_eq!(line["summary"]["failures"]["fatal"], 1);
//! assert_eq!(line["summary"]["attempts"], 3);
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redial_core::Attempt;
use redial_tower::{Error, Policy, Report, ResponseBody, Retry, RetryBody, RetryLayer, TokenSource};
use redial_vendors::Vendor;
use redial_vendors::{adobe::ImsLogin, marketo::IdentityLogin, oauth2::ClientCredentials, responsys::PasswordLogin};
use serde_json::{json, Value};
// The runtime's clock: the engine's waits and these times agree, paused clock included.
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::args::{CallArgs, LoginArgs, UsageError};

/// The client under the layer: plain HTTP/1.1.
pub type HttpClient = Client<HttpConnector, RetryBody<Full<Bytes>>>;

/// The full stack: redial over the client.
pub type Stack = Retry<HttpClient>;

/// How many failures `--repeat` without `--json` describes on stderr, one line each.
const FAILURES_SHOWN: u64 = 10;

/// The vendor's policy with the command line's overrides.
pub fn policy(args: &CallArgs) -> Result<Policy, UsageError> {
    let base = args.vendor.policy();
    let mut b = base.to_builder();
    if let Some((calls, window)) = args.rate_limit {
        b = b.rate_limit(calls, window);
    }
    if let Some(n) = args.max_concurrency {
        b = b.max_concurrency(n);
    }
    if let Some(n) = args.max_attempts {
        b = b.max_attempts(n);
    }
    if let Some(d) = args.deadline {
        b = b.deadline(d);
        // One attempt cannot outlast the whole request.
        if base.attempt_timeout().is_some_and(|t| t > d) {
            b = b.attempt_timeout(d);
        }
    }
    b.build().map_err(|e| UsageError::new(e.to_string()))
}

/// The token source the login flags describe, if any.
pub fn token_source(args: &CallArgs) -> Result<Option<TokenSource>, UsageError> {
    let Some(login) = &args.login else { return Ok(None) };
    let bad_url = |e: redial_vendors::oauth2::InvalidLoginUrl| UsageError::new(format!("--login-url: {e}"));
    let source = match (args.vendor, login) {
        (Vendor::Marketo, LoginArgs::ClientCredentials { url, client_id, secret, .. }) => {
            TokenSource::login(IdentityLogin::new(url, client_id.clone(), secret.clone()).map_err(bad_url)?)
        }
        (Vendor::AdobeEdge, LoginArgs::ClientCredentials { url, client_id, secret, scopes, .. }) => TokenSource::login(
            ImsLogin::new(client_id.clone(), secret.clone(), scopes.iter().cloned()).token_url(url).map_err(bad_url)?,
        ),
        (Vendor::Generic, LoginArgs::ClientCredentials { url, client_id, secret, scopes, client_auth }) => {
            TokenSource::login(
                ClientCredentials::new(url, client_id.clone(), secret.clone())
                    .map_err(bad_url)?
                    .scopes(scopes.iter().cloned())
                    .auth_style(*client_auth),
            )
        }
        (Vendor::Responsys, LoginArgs::Password { url, user, password }) => {
            TokenSource::login(PasswordLogin::new(url, user.clone(), password.clone()).map_err(bad_url)?)
        }
        (vendor, _) => {
            return Err(UsageError::new(format!(
                "these login flags do not fit {} (see `redial call --help`)",
                vendor.name()
            )))
        }
    };
    Ok(Some(source))
}

/// The layer: the URL's host served with the vendor's profile and [`policy`], and the token
/// source attached to it.
pub fn layer(args: &CallArgs, source: Option<&TokenSource>) -> Result<RetryLayer, UsageError> {
    let host = args.url.host().ok_or_else(|| UsageError::new("the URL has no host"))?;
    // `localhost.` is `localhost` fully qualified, and the engine looks a request's host up
    // without its trailing dot: registered with it, the host would never be matched, and the
    // overrides and the login would serve nothing.
    let host = host.strip_suffix('.').unwrap_or(host);
    let invalid = |e: redial_tower::InvalidHost| UsageError::new(format!("the URL's host: {e}"));
    let mut b = RetryLayer::builder().host(host, args.vendor.profile(), policy(args)?).map_err(invalid)?;
    if let Some(source) = source {
        b = b.auth(host, source.clone()).map_err(invalid)?;
    }
    Ok(b.build())
}

/// The full stack over a fresh client. Must be called within a tokio runtime.
pub fn stack(layer: &RetryLayer) -> Stack {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(http);
    layer.layer(client)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The JSON line of one attempt of request `request` (counted from 0):
/// `{"request","attempt","status","failure","code","kind","action","rule","delay_ms","sent_ms","elapsed_ms"}`.
pub fn attempt_line(request: u32, a: &Attempt) -> Value {
    json!({
        "request": request,
        "attempt": a.number,
        "status": a.status.map(|s| s.as_u16()),
        "failure": a.failure.map(|f| f.as_str()),
        "code": a.code,
        "kind": a.kind.as_str(),
        "action": a.action.as_str(),
        "rule": a.rule,
        "delay_ms": a.delay.map(millis),
        "sent_ms": a.sent.map(millis),
        "elapsed_ms": millis(a.elapsed),
    })
}

/// The attempt line of a response that went through on its first attempt with nothing to
/// report (no [`Report`] extension): a success, returned.
pub fn response_line(request: u32, status: StatusCode, elapsed: Duration) -> Value {
    json!({
        "request": request,
        "attempt": 1,
        "status": status.as_u16(),
        "failure": null,
        "code": null,
        "kind": "success",
        "action": "return",
        "rule": null,
        "delay_ms": null,
        // Not known: a response with nothing to report carries no report.
        "sent_ms": null,
        "elapsed_ms": millis(elapsed),
    })
}

/// The line after the attempts of a request that failed: `{"request","error","reason"}`, where
/// `reason` is its [`failure_key`].
pub fn error_line(request: u32, error: &str, reason: &str) -> Value {
    json!({"request": request, "error": error, "reason": reason})
}

/// What a failure is counted under in the summary: the kind of the last outcome (`fatal`,
/// `throttled`, …), or why there was none to classify (`auth_failed`, `failover`, `deadline`,
/// a transport failure such as `connect`, `not_ready`, `request_body`).
pub fn failure_key(e: &Error) -> String {
    if e.is_auth_failed() {
        return "auth_failed".to_owned();
    }
    if e.is_failover_local() {
        return "failover".to_owned();
    }
    if let Some(kind) = e.kind() {
        return kind.as_str().to_owned();
    }
    if let Some(f) = e.failure() {
        return f.as_str().to_owned();
    }
    if e.is_deadline() {
        return "deadline".to_owned();
    }
    if e.is_auth() {
        return "auth".to_owned();
    }
    // Left: the client failed to get ready, or the request body failed.
    let text = e.to_string();
    if text.starts_with("the request body") {
        "request_body".to_owned()
    } else {
        "not_ready".to_owned()
    }
}

/// The counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests finished.
    pub requests: u64,
    /// Requests that got a response redial returned.
    pub successes: u64,
    /// Failed requests by [`failure_key`].
    pub failures: BTreeMap<String, u64>,
    /// Attempts, over every request.
    pub attempts: u64,
}

impl Tally {
    /// Count a request that succeeded after `attempts` attempts.
    pub fn success(&mut self, attempts: u64) {
        self.requests += 1;
        self.successes += 1;
        self.attempts += attempts;
    }

    /// Count a request that failed (`key`: its [`failure_key`]) after `attempts` attempts.
    pub fn failure(&mut self, key: &str, attempts: u64) {
        self.requests += 1;
        *self.failures.entry(key.to_owned()).or_default() += 1;
        self.attempts += attempts;
    }

    /// How many requests failed.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// The summary line:
    /// `{"summary":{"requests","successes","failures":{KEY:N},"attempts","logins","elapsed_ms"}}`.
    pub fn summary(&self, logins: u64, elapsed: Duration) -> Value {
        json!({"summary": {
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "attempts": self.attempts,
            "logins": logins,
            "elapsed_ms": millis(elapsed),
        }})
    }

    /// The summary for people, one line.
    pub fn human(&self, logins: u64, elapsed: Duration) -> String {
        let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let mut line = format!(
            "{} in {:.1} s: {} succeeded, {} failed",
            plural(self.requests, "request"),
            elapsed.as_secs_f64(),
            self.successes,
            self.failed()
        );
        if !self.failures.is_empty() {
            let by: Vec<String> = self.failures.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = write!(line, " ({})", by.join(", "));
        }
        let _ = write!(line, "; {}, {}", plural(self.attempts, "attempt"), plural(logins, "login"));
        line
    }
}

/// Where [`run`] prints: stdout and stderr, or anything else (tests). The first write error is
/// kept; printing stops there, the requests go on.
pub struct Output {
    out: Mutex<Box<dyn Write + Send>>,
    err: Mutex<Box<dyn Write + Send>>,
    failed: Mutex<Option<io::Error>>,
    /// Told when a write first fails.
    broken: tokio::sync::Notify,
}

impl Output {
    /// Print to these.
    pub fn new(out: impl Write + Send + 'static, err: impl Write + Send + 'static) -> Self {
        Output {
            out: Mutex::new(Box::new(out)),
            err: Mutex::new(Box::new(err)),
            failed: Mutex::new(None),
            broken: tokio::sync::Notify::new(),
        }
    }

    /// Print to the process's stdout and stderr.
    pub fn stdio() -> Self {
        Output::new(io::stdout(), io::stderr())
    }

    fn write(&self, to: &Mutex<Box<dyn Write + Send>>, bytes: &[u8]) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if failed.is_some() {
            return;
        }
        let mut w = to.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = w.write_all(bytes).and_then(|()| w.flush()) {
            *failed = Some(e);
            self.broken.notify_one();
        }
    }

    /// Ends when a write has failed (a closed pipe: `redial call … | head -1`).
    pub async fn broken(&self) {
        self.broken.notified().await;
    }

    /// Write to stdout.
    pub fn out(&self, bytes: &[u8]) {
        self.write(&self.out, bytes);
    }

    /// Write a line to stderr, after `redial: `.
    pub fn err_line(&self, line: &str) {
        self.write(&self.err, format!("redial: {line}\n").as_bytes());
    }

    /// The first write error, if any.
    pub fn take_error(&self) -> Option<io::Error> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").finish_non_exhaustive()
    }
}

/// The status line and headers, as `curl -i` prints them.
pub fn head_text(version: Version, status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut text = format!("{version:?} {}", status.as_str()).into_bytes();
    if let Some(reason) = status.canonical_reason() {
        text.push(b' ');
        text.extend_from_slice(reason.as_bytes());
    }
    text.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b"\r\n");
    text
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The counts.
    pub tally: Tally,
    /// Logins started ([`TokenSource::logins`]).
    pub logins: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Stopped by [`run_until`]'s `stop` (Ctrl-C) before every request was sent and answered.
    pub interrupted: bool,
}

/// How the run prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One request, no `--json`: the response, like curl.
    Curl,
    /// `--json`: attempt lines and a summary.
    Json,
    /// `--repeat` without `--json`: failures and a summary on stderr.
    Quiet,
}

struct Run {
    args: CallArgs,
    body: Bytes,
    mode: Mode,
    out: Arc<Output>,
    next: AtomicU32,
    tally: Mutex<Tally>,
}

/// Send the request `args.repeat` times, at most `args.concurrency` at once, through `stack`,
/// and print as [`CallArgs::json`] and the repeat count say. Must run within a tokio runtime.
pub async fn run(args: CallArgs, body: Bytes, stack: Stack, source: Option<TokenSource>, out: Arc<Output>) -> Finished {
    run_until(args, body, stack, source, out, std::future::pending()).await
}

/// [`run`], until `stop` completes (the binary's Ctrl-C): then the requests under way are
/// dropped, and the summary counts those that finished and says that the run was interrupted.
pub async fn run_until(
    args: CallArgs,
    body: Bytes,
    stack: Stack,
    source: Option<TokenSource>,
    out: Arc<Output>,
    stop: impl std::future::Future<Output = ()>,
) -> Finished {
    let mode = if args.json {
        Mode::Json
    } else if args.repeat == 1 {
        Mode::Curl
    } else {
        Mode::Quiet
    };
    let workers = args.concurrency.min(args.repeat);
    let run = Arc::new(Run { args, body, mode, out, next: AtomicU32::new(0), tally: Mutex::new(Tally::default()) });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(worker(run.clone(), stack.clone()));
    }
    let all_done = async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    };
    // A run whose output cannot be written (a closed pipe) stops too: nobody reads what it
    // would print, and its requests would go on for nothing.
    let (interrupted, broken) = tokio::select! {
        () = all_done => (false, false),
        () = stop => (true, false),
        () = run.out.broken() => (false, true),
        () = report_failed_logins(source.as_ref(), &run.out) => unreachable!("it never ends"),
    };
    if interrupted || broken {
        // Wait for the cancelled workers to stop: none prints after the summary.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let elapsed = started.elapsed();
    let tally = run.tally.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let logins = source.as_ref().map_or(0, TokenSource::logins);
    match mode {
        Mode::Json => {
            let mut summary = tally.summary(logins, elapsed);
            if interrupted {
                summary["summary"]["interrupted"] = Value::Bool(true);
            }
            run.out.out(format!("{summary}\n").as_bytes());
        }
        Mode::Quiet if interrupted => run.out.err_line(&format!("interrupted: {}", tally.human(logins, elapsed))),
        Mode::Quiet => run.out.err_line(&tally.human(logins, elapsed)),
        Mode::Curl if interrupted => run.out.err_line("interrupted"),
        Mode::Curl => {}
    }
    Finished { tally, logins, elapsed, interrupted }
}

/// Say on stderr, as it happens, each login that failed and is tried again: its requests wait,
/// silent otherwise, up to their deadline (minutes for a vendor's policy). A refused login is
/// not: its requests fail with it at once. Never ends.
async fn report_failed_logins(source: Option<&TokenSource>, out: &Output) {
    let Some(source) = source else { return std::future::pending().await };
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let logins = source.logins();
        if logins == seen || source.login_in_flight() {
            continue;
        }
        seen = logins;
        if let Some(e) = source.last_error().filter(|e| !e.is_fatal()) {
            let e = redial_core::auth::redact_urls(&e.to_string()).into_owned();
            out.err_line(&format!("{e} (login {logins}); trying again until the requests' deadline"));
        }
    }
}

/// What a failed request prints: the error and, when the last attempt got no response (a
/// refused connection, a reset, a timeout), the innermost cause, such as `Connection refused
/// (os error 111)`: "last attempt: connect" alone does not tell a closed port from a bad host.
fn failure_message(e: &Error) -> String {
    let mut message = e.to_string();
    if e.status().is_none() && e.failure().is_some() {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        let mut innermost = None;
        while let Some(c) = cause {
            innermost = Some(c);
            cause = c.source();
        }
        if let Some(c) = innermost {
            // Whatever a transport's error says, a URL in it is shown without credentials.
            let _ = write!(message, ": {}", redial_core::auth::redact_urls(&c.to_string()));
        }
    }
    message
}

/// What to add to the error of a request that needed a credential, sent without the login
/// flags: the flags this vendor's login takes.
fn login_hint(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Responsys => "; to log in, give --login-url, --user and --password or REDIAL_PASSWORD",
        Vendor::GenesysEngage => "; redial call has no genesys-engage login: send its credentials with -H",
        _ => "; to log in, give --login-url, --client-id and --client-secret or REDIAL_CLIENT_SECRET",
    }
}

/// One request through the stack.
async fn send(mut stack: Stack, req: Request<Full<Bytes>>) -> Result<Response<ResponseBody<Incoming>>, Error> {
    std::future::poll_fn(|cx| stack.poll_ready(cx)).await?;
    stack.call(req).await
}

async fn worker(run: Arc<Run>, stack: Stack) {
    loop {
        let i = run.next.fetch_add(1, Ordering::Relaxed);
        if i >= run.args.repeat {
            return;
        }
        let mut req = Request::new(Full::new(run.body.clone()));
        *req.method_mut() = run.args.method.clone();
        *req.uri_mut() = run.args.url.clone();
        *req.headers_mut() = run.args.headers.clone();
        let started = Instant::now();
        match send(stack.clone(), req).await {
            Ok(res) => run.succeeded(i, res, started.elapsed()).await,
            Err(e) => run.failed(i, &e),
        }
    }
}

impl Run {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn succeeded(&self, i: u32, res: Response<ResponseBody<Incoming>>, elapsed: Duration) {
        let (head, mut body) = res.into_parts();
        let report = head.extensions.get::<Report>();
        let mut lines = String::new();
        match report {
            Some(r) if !r.attempts.is_empty() => {
                for a in &r.attempts {
                    let _ = writeln!(lines, "{}", attempt_line(i, a));
                }
            }
            _ => {
                let _ = writeln!(lines, "{}", response_line(i, head.status, elapsed));
            }
        }
        let attempts = report.map_or(1, |r| u64::from(r.attempt_count().max(1)));
        if self.mode == Mode::Curl {
            self.out.out(&head_text(head.version, head.status, &head.headers));
        }
        // Read the body to its end (printing it for curl), so that the connection is reused.
        let mut body_error = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let (Mode::Curl, Some(data)) = (self.mode, frame.data_ref()) {
                        self.out.out(data);
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = body_error {
            let message = format!("the response body failed after the head: {e}");
            match self.mode {
                Mode::Json => {
                    let _ = writeln!(lines, "{}", error_line(i, &message, "body_read"));
                    self.out.out(lines.as_bytes());
                }
                Mode::Curl => self.out.err_line(&message),
                Mode::Quiet => {}
            }
            self.count_failure(i, "body_read", attempts, &message);
            return;
        }
        if self.mode == Mode::Json {
            self.out.out(lines.as_bytes());
        }
        self.tally().success(attempts);
    }

    fn failed(&self, i: u32, e: &Error) {
        let key = failure_key(e);
        let mut message = failure_message(e);
        // Without a login, a credential error is the vendor asking for one: say how to give it.
        if e.is_auth() && self.args.login.is_none() {
            message.push_str(login_hint(self.args.vendor));
        }
        match self.mode {
            Mode::Json => {
                let mut lines = String::new();
                for a in &e.report().attempts {
                    let _ = writeln!(lines, "{}", attempt_line(i, a));
                }
                let _ = writeln!(lines, "{}", error_line(i, &message, &key));
                self.out.out(lines.as_bytes());
            }
            Mode::Curl => {
                if let (Some(status), Some(headers), Some(body)) = (e.status(), e.headers(), e.body()) {
                    self.out.out(&head_text(Version::HTTP_11, status, headers));
                    self.out.out(body);
                    // On a terminal, the error starts a line of its own after a body without a
                    // last newline (redirected, both streams stay as they came).
                    use std::io::IsTerminal;
                    if !body.is_empty()
                        && !body.ends_with(b"\n")
                        && std::io::stdout().is_terminal()
                        && std::io::stderr().is_terminal()
                    {
                        self.out.write(&self.out.err, b"\n");
                    }
                }
                self.out.err_line(&message);
                if e.status().is_some() && !e.body_is_complete() {
                    self.out.err_line("only the first bytes of the body were kept (the policy's inspect limit)");
                }
            }
            Mode::Quiet => {}
        }
        self.count_failure(i, &key, u64::from(e.report().attempt_count()), &message);
    }

    /// Count a failure; with `--repeat` and without `--json`, describe it on stderr if it is one
    /// of the first. Counted and described under the tally's lock: requests failing at once on
    /// other threads must not both take the same place (11 described, and the line saying that
    /// the rest are not printed twice or never).
    fn count_failure(&self, i: u32, key: &str, attempts: u64, message: &str) {
        let mut tally = self.tally();
        let earlier = tally.failed();
        tally.failure(key, attempts);
        if self.mode != Mode::Quiet {
            return;
        }
        if earlier < FAILURES_SHOWN {
            self.out.err_line(&format!("request {i}: {message}"));
        } else if earlier == FAILURES_SHOWN {
            self.out.err_line("more failures: only the first ones are shown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{parse, Command};

    fn call(args: &[&str]) -> CallArgs {
        match parse(std::iter::once("call").chain(args.iter().copied())).unwrap() {
            Command::Call(a) => *a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn policy_overrides() {
        let a = call(&[
            "--vendor",
            "marketo",
            "--rate-limit",
            "10/2",
            "--max-concurrency",
            "3",
            "--max-attempts",
            "7",
            "--deadline",
            "1.5",
            "http://127.0.0.1:1/rest/v1/leads.json",
        ]);
        let p = policy(&a).unwrap();
        // The engine's limiter adds its own margin (sent is not received): the policy is as given.
        assert_eq!(p.rate_limit(), Some((10, Duration::from_secs(2))));
        assert_eq!(p.max_concurrency(), Some(3));
        assert_eq!(p.max_attempts(), 7);
        assert_eq!(p.deadline(), Some(Duration::from_millis(1500)));
        assert!(p.attempt_timeout().is_none_or(|t| t <= Duration::from_millis(1500)));
        // Unchanged: the vendor's own.
        assert_eq!(p.inspect_limit(), Vendor::Marketo.policy().inspect_limit());
        // Without --rate-limit, the vendor's own.
        let a = call(&["--vendor", "marketo", "http://127.0.0.1:1/rest/v1/leads.json"]);
        assert_eq!(policy(&a).unwrap().rate_limit(), Vendor::Marketo.policy().rate_limit());
    }

    #[test]
    fn every_vendor_login_builds() {
        let id = ["--client-id", "id", "--client-secret", "s"];
        for (vendor, extra) in [
            ("marketo", &id[..]),
            ("adobe-edge", &id[..]),
            ("generic", &id[..]),
            ("responsys", &["--user", "u", "--password", "p"][..]),
        ] {
            let mut all = vec!["--vendor", vendor, "--login-url", "http://127.0.0.1:1/login"];
            all.extend_from_slice(extra);
            all.push("http://127.0.0.1:1/x");
            let a = call(&all);
            let source = token_source(&a).unwrap().expect(vendor);
            assert_eq!(source.logins(), 0);
            layer(&a, Some(&source)).unwrap();
        }
        assert!(token_source(&call(&["http://127.0.0.1:1/x"])).unwrap().is_none());
    }

    /// A server that always answers 503, counting the requests it gets.
    #[derive(Clone)]
    struct Unavailable(Arc<AtomicU32>);

    impl<B> Service<Request<B>> for Unavailable {
        type Response = Response<Full<Bytes>>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<B>) -> Self::Future {
            self.0.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(Response::builder().status(503).body(Full::default()).unwrap()))
        }
    }

    /// `http://localhost.:8080/` names the same host as `http://localhost:8080/` (a fully
    /// qualified name), and the engine looks requests up without the dot: the overrides serve it.
    #[tokio::test(start_paused = true)]
    async fn the_overrides_serve_a_host_written_with_a_trailing_dot() {
        for url in ["http://localhost:8080/x", "http://localhost.:8080/x", "http://LOCALHOST.:8080/x"] {
            let a = call(&["--max-attempts", "1", url]);
            let sent = Arc::new(AtomicU32::new(0));
            let mut svc = layer(&a, None).unwrap().layer(Unavailable(sent.clone()));
            let req = Request::get(url).body(Full::<Bytes>::default()).unwrap();
            std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut svc, cx)).await.unwrap();
            let err = svc.call(req).await.unwrap_err();
            assert_eq!(err.report().attempt_count(), 1, "{url}: {err}");
            assert_eq!(sent.load(Ordering::Relaxed), 1, "{url}");
        }
    }

    #[test]
    fn lines() {
        let line = response_line(3, StatusCode::OK, Duration::from_millis(12));
        assert_eq!(line["request"], 3);
        assert_eq!(line["kind"], "success");
        assert_eq!(line["elapsed_ms"], 12);
        assert!(line["delay_ms"].is_null());
        let mut tally = Tally::default();
        tally.success(1);
        tally.failure("throttled", 4);
        tally.failure("throttled", 4);
        assert_eq!(tally.failed(), 2);
        let human = tally.human(1, Duration::from_secs(2));
        assert_eq!(human, "3 requests in 2.0 s: 1 succeeded, 2 failed (throttled 2); 9 attempts, 1 login");
    }

    #[test]
    fn head_like_curl() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        let text = head_text(Version::HTTP_11, StatusCode::NOT_FOUND, &headers);
        assert_eq!(text, b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n\r\n");
    }
}
