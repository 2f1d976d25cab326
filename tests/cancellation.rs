//! Cancellation: dropping the caller's future at every await point of the engine (Buffer,
//! Acquire, Pace, AuthWait, Ready, Call, Inspect, Sleep, Reconcile) leaves no permit held, no
//! lock taken, no task leaked, and the host state usable.
//!
//! Each test parks a request exactly at one await point, drops it (a `tokio::time::timeout`
//! around it, or `abort()` on its task), lets the runtime settle, then checks:
//! - the host's concurrency permits are all back (`RetryLayer::available_permits`);
//! - the next request to the same host succeeds promptly (nothing locked, nothing wedged);
//! - the runtime's live tasks are back to their baseline (`RuntimeMetrics::num_alive_tasks`):
//!   the client is built without a connection pool, so a finished exchange leaves no task.
//!
//! Real loopback sockets against the simulator, on tokio's paused clock.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redial::core::backoff::Backoff;
use redial::core::FailReason;
use redial::hooks::{ReconcileRequest, Verdict};
use redial::vendors::marketo;
use redial::{Policy, RetryBody, RetryLayer, TokenSource, Vendor};
use redial_sim::vendors::{genesys as sim_genesys, marketo as sim_marketo};
use redial_sim::{Fault, Recorded, Reply, Sim};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const HOST: &str = "127.0.0.1";

// ---------------------------------------------------------------------------------------------
// Plumbing.

type Res = Response<redial::ResponseBody<hyper::body::Incoming>>;

/// hyper-util's client without a pool: every connection closes (and its task ends) once its
/// exchange is over, so live tasks measure what redial leaves behind.
fn hyper_client<B>() -> Client<HttpConnector, RetryBody<B>>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build_http()
}

type Svc = redial::Retry<Client<HttpConnector, RetryBody<Full<Bytes>>>>;

fn svc(layer: &RetryLayer) -> Svc {
    ServiceBuilder::new().layer(layer.clone()).service(hyper_client())
}

fn generic(policy: Policy) -> RetryLayer {
    RetryLayer::builder().host(HOST, redial::core::generic::Generic, policy).unwrap().rng_seed(3).build()
}

/// One permit, a short backoff.
fn one_at_a_time() -> redial::core::PolicyBuilder {
    Policy::builder().max_concurrency(1).backoff(Backoff::constant(100 * MS))
}

fn get(url: String) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

async fn call(svc: &Svc, req: Request<Full<Bytes>>) -> Result<Res, redial::Error> {
    svc.clone().oneshot(req).await
}

/// A caller in a task of its own, to be aborted.
fn spawn_call(svc: &Svc, req: Request<Full<Bytes>>) -> tokio::task::JoinHandle<Result<StatusCode, redial::Error>> {
    let svc = svc.clone();
    tokio::spawn(async move { svc.oneshot(req).await.map(|res| res.status()) })
}

/// Let every task that can make progress make it (paused clock: a few virtual milliseconds).
async fn settle() {
    for _ in 0..5 {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(MS).await;
    }
}

fn alive() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// The caller gives up after `after`: the future is dropped wherever the engine parked it.
async fn give_up_after<F: Future>(after: Duration, fut: F) {
    assert!(
        tokio::time::timeout(after, fut).await.is_err(),
        "the request should still have been parked when its caller gave up"
    );
}

/// Waits (virtual time) until `cond` holds; panics after a minute.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < 60 * S, "timed out waiting for: {what}");
        tokio::time::sleep(MS).await;
    }
}

/// The checks every test ends with: permits back, the next request served promptly, and no
/// task left over.
async fn assert_host_whole(layer: &RetryLayer, svc: &Svc, url: String, permits: usize, baseline_tasks: usize) {
    settle().await;
    assert_eq!(layer.available_permits(HOST), Some(permits), "a permit is still held");
    let started = Instant::now();
    let res = call(svc, get(url)).await.expect("the host serves the next request");
    assert_eq!(res.status(), StatusCode::OK);
    res.into_body().collect().await.unwrap();
    assert!(started.elapsed() < S, "the next request waited {:?}", started.elapsed());
    settle().await;
    assert_eq!(layer.available_permits(HOST), Some(permits));
    assert_eq!(alive(), baseline_tasks, "a task was leaked");
}

/// A sim with `/ok` (200) and a baseline of live tasks taken after one exchange through `svc`.
async fn start(layer: &RetryLayer) -> (Sim, Svc, usize) {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/ok", Reply::ok().body("ok"));
    let svc = svc(layer);
    let res = call(&svc, get(sim.url("/ok"))).await.unwrap();
    res.into_body().collect().await.unwrap();
    settle().await;
    let baseline = alive();
    (sim, svc, baseline)
}

// ---------------------------------------------------------------------------------------------
// Buffer: reading the request body for replay.

#[tokio::test(start_paused = true)]
async fn dropped_while_buffering_the_request_body() {
    let layer = generic(one_at_a_time().build().unwrap());
    let (sim, svc, baseline) = start(&layer).await;
    let stalled = ServiceBuilder::new().layer(layer.clone()).service(hyper_client::<common::StalledBody>());
    let req = Request::put(sim.url("/upload")).body(common::StalledBody).unwrap();
    give_up_after(5 * S, stalled.oneshot(req)).await;
    assert_eq!(sim.count("/upload"), 0, "nothing is sent before the body is buffered");
    assert_host_whole(&layer, &svc, sim.url("/ok"), 1, baseline).await;
}

// ---------------------------------------------------------------------------------------------
// Acquire: waiting for the host's concurrency permit.

#[tokio::test(start_paused = true)]
async fn dropped_while_waiting_for_a_concurrency_permit() {
    let layer = generic(one_at_a_time().build().unwrap());
    let (sim, svc, baseline) = start(&layer).await;
    sim.set_fallback("/hang", Reply::ok().fault(Fault::Hang));

    // A holds the only permit, hanging in its attempt.
    let holder = spawn_call(&svc, get(sim.url("/hang")));
    until("the holder's request reached the sim", || sim.count("/hang") == 1).await;
    assert_eq!(layer.available_permits(HOST), Some(0));

    // B waits for the permit, and its caller gives up.
    let sent = sim.count("/ok");
    give_up_after(5 * S, call(&svc, get(sim.url("/ok")))).await;
    assert_eq!(sim.count("/ok"), sent, "B was never sent");
    assert_eq!(layer.available_permits(HOST), Some(0), "A still holds it");

    // Then A's caller goes too (Call, aborted).
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    assert_host_whole(&layer, &svc, sim.url("/ok"), 1, baseline).await;
}

// ---------------------------------------------------------------------------------------------
// Pace: waiting for a rate-limit slot (holding a concurrency permit).

fn paced() -> Policy {
    Policy::builder().rate_limit(1, 60 * S).max_concurrency(2).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn dropped_while_pacing_for_a_rate_slot_releases_its_permit() {
    let layer = generic(paced());
    // The first exchange took the window's only slot, at t = 0.
    let (sim, svc, baseline) = start(&layer).await;

    let waiter = spawn_call(&svc, get(sim.url("/ok")));
    tokio::time::sleep(5 * S).await;
    assert_eq!(sim.count("/ok"), 1, "the second request waits for the next window");
    assert_eq!(layer.available_permits(HOST), Some(1), "it holds a permit while pacing");
    waiter.abort();
    settle().await;
    assert_eq!(layer.available_permits(HOST), Some(2));

    // The limiter still works: the next request is served (how soon: see the test below).
    let res = call(&svc, get(sim.url("/ok"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.into_body().collect().await.unwrap();
    settle().await;
    assert_eq!(layer.available_permits(HOST), Some(2));
    assert_eq!(alive(), baseline);
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert!(log[1].at - log[0].at >= 60 * S, "the window was respected");
}

#[tokio::test(start_paused = true)]
async fn dropped_while_pacing_gives_back_its_rate_slot() {
    let layer = generic(paced());
    // The first exchange took the window's only slot, at t = 0.
    let (sim, svc, _) = start(&layer).await;
    // Three callers in turn give up while pacing for the slot at 60 s.
    for i in 0..3 {
        let outcome = tokio::time::timeout(5 * S, call(&svc, get(sim.url("/ok")))).await;
        let refused = outcome.err().is_none();
        assert!(!refused, "caller {i} was refused instead of waiting for the slot at 60 s");
    }
    // Nobody used a slot since t = 0: the next request goes when that window ends, not three
    // windows later.
    let res = call(&svc, get(sim.url("/ok"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    let gap = log[1].at - log[0].at;
    assert!(gap <= 60 * S + S, "the next request went {gap:?} after the only call of the window");
}

#[tokio::test(start_paused = true)]
async fn refused_for_the_deadline_while_pacing_gives_back_its_rate_slot() {
    let layer = generic(Policy::builder().rate_limit(1, 60 * S).deadline(30 * S).build().unwrap());
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/ok", Reply::ok());
    let svc = svc(&layer);
    // The window's only slot, at t = 0.
    call(&svc, get(sim.url("/ok"))).await.unwrap();
    // The next slot is at 60 s, past these requests' 30 s deadline: refused at once, rightly.
    for _ in 0..3 {
        let err = call(&svc, get(sim.url("/ok"))).await.unwrap_err();
        assert!(matches!(err.fail_reason(), Some(FailReason::DeadlineExceeded { .. })), "{err}");
    }
    // At 40 s the slot at 60 s is within reach: the request waits for it and is served. With the
    // refused reservations kept, every later request finds the next slot further away, is
    // refused, and pushes it further still: the host never serves again.
    tokio::time::sleep(40 * S).await;
    for round in 0..5 {
        let started = Instant::now();
        let res = call(&svc, get(sim.url("/ok"))).await;
        assert!(res.is_ok(), "round {round}: {}", res.unwrap_err());
        assert!(started.elapsed() <= 30 * S);
        tokio::time::sleep(40 * S).await;
    }
}

// ---------------------------------------------------------------------------------------------
// AuthWait: waiting for a login.

fn identity_reply(token: &str) -> Reply {
    Reply::json(200, format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600,"scope":"sim"}}"#))
}

fn marketo_layer(source: &TokenSource) -> RetryLayer {
    let policy = Vendor::Marketo.policy().to_builder().no_rate_limit().max_concurrency(2).build().unwrap();
    RetryLayer::builder()
        .host(HOST, Vendor::Marketo.profile(), policy)
        .unwrap()
        .auth(HOST, source.clone())
        .unwrap()
        .build()
}

#[tokio::test(start_paused = true)]
async fn dropped_while_waiting_for_a_slow_login_the_login_finishes_and_its_token_is_used() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue(sim_marketo::IDENTITY_PATH, identity_reply("tok-1").delay(10 * S));
    sim.set_fallback("/rest/v1/leads.json", Reply::json(200, r#"{"requestId":"r#1","success":true,"result":[]}"#));
    let source = TokenSource::login(marketo::IdentityLogin::new(&sim.url("/identity"), "id", "secret").unwrap());
    let layer = marketo_layer(&source);
    let svc = svc(&layer);
    settle().await;
    let baseline = alive();

    give_up_after(2 * S, call(&svc, get(sim.url("/rest/v1/leads.json")))).await;
    // The login runs in a task of its own: the caller going away cancels nothing.
    assert!(source.login_in_flight());
    assert_eq!(layer.available_permits(HOST), Some(2), "no permit is taken before the token");
    tokio::time::sleep(10 * S).await;
    assert!(!source.login_in_flight());
    assert!(source.last_error().is_none());
    assert_eq!(sim.count("/rest/v1/leads.json"), 0, "the dropped request was never sent");

    // The next request uses the token that login brought, without logging in again.
    let res = call(&svc, get(sim.url("/rest/v1/leads.json"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(source.logins(), 1);
    let api = sim.requests().into_iter().find(|r| r.path == "/rest/v1/leads.json").unwrap();
    assert_eq!(api.headers["authorization"], "Bearer tok-1");
    assert_host_whole(&layer, &svc, sim.url("/rest/v1/leads.json"), 2, baseline).await;
    assert_eq!(sim.count(sim_marketo::IDENTITY_PATH), 1);
}

#[tokio::test(start_paused = true)]
async fn dropped_while_waiting_for_a_hanging_login_the_next_login_works() {
    let sim = Sim::start().await.unwrap();
    let mut config = sim_marketo::MarketoConfig::new("id", "secret");
    config.rate_limit = None;
    config.max_concurrency = None;
    let vendor = sim_marketo::install(&sim, config);
    let source = TokenSource::login(marketo::IdentityLogin::new(&sim.url("/identity"), "id", "secret").unwrap())
        .login_backoff(S, 60 * S);
    let layer = marketo_layer(&source);
    let svc = svc(&layer);
    settle().await;
    let baseline = alive();

    vendor.hang_logins(true);
    for _ in 0..5 {
        give_up_after(3 * S, call(&svc, get(sim.url("/rest/v1/leads.json")))).await;
    }
    assert_eq!(vendor.logins(), 1, "one login for every caller, dropped or not");
    assert!(source.login_in_flight());
    vendor.hang_logins(false);
    // The hanging login ends at its 30 s timeout, as a failure, and unlocks the cell.
    tokio::time::sleep(30 * S).await;
    assert!(!source.login_in_flight());
    assert!(source.last_error().unwrap().message().contains("longer than"));

    // The next request logs in (after the 1 s login backoff) and is served.
    let started = Instant::now();
    let res = call(&svc, get(sim.url("/rest/v1/leads.json"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(started.elapsed() < 2 * S);
    res.into_body().collect().await.unwrap();
    assert_eq!(vendor.logins(), 2);
    assert!(!source.login_in_flight());
    assert!(source.last_error().is_none());
    assert_host_whole(&layer, &svc, sim.url("/rest/v1/leads.json"), 2, baseline).await;
    assert_eq!(vendor.logins(), 2);
}

// ---------------------------------------------------------------------------------------------
// Ready: waiting for the inner service to be ready for a retry (holding a permit).

/// Ready or not, as the test says; shut by its first call when `shut_after_call` is set.
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    open: Arc<AtomicBool>,
    shut_after_call: Arc<AtomicBool>,
}

impl<S: Service<R>, R> Service<R> for Gate<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if !self.open.load(Ordering::SeqCst) {
            // Never woken: the test drops the request while it waits here.
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: R) -> S::Future {
        if self.shut_after_call.swap(false, Ordering::SeqCst) {
            self.open.store(false, Ordering::SeqCst);
        }
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_while_the_inner_service_is_not_ready_for_a_retry() {
    let layer = generic(one_at_a_time().build().unwrap());
    let (sim, svc, baseline) = start(&layer).await;
    sim.enqueue("/flaky", Reply::status(503).header("retry-after", "1"));
    sim.set_fallback("/flaky", Reply::ok());
    let open = Arc::new(AtomicBool::new(true));
    let shut_after_call = Arc::new(AtomicBool::new(true));
    let gated = ServiceBuilder::new().layer(layer.clone()).service(Gate {
        inner: hyper_client::<Full<Bytes>>(),
        open: open.clone(),
        shut_after_call,
    });
    let req = get(sim.url("/flaky"));
    let waiter = tokio::spawn(async move { gated.oneshot(req).await.map(|r| r.status()) });
    // Attempt 1 at 0 s gets 503, the retry is due at 1 s and waits for readiness.
    tokio::time::sleep(5 * S).await;
    assert_eq!(sim.count("/flaky"), 1);
    assert_eq!(layer.available_permits(HOST), Some(0), "the retry holds the permit");
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    open.store(true, Ordering::SeqCst);
    assert_host_whole(&layer, &svc, sim.url("/flaky"), 1, baseline).await;
    assert_eq!(sim.count("/flaky"), 2);
}

// ---------------------------------------------------------------------------------------------
// Call: the attempt in flight.

#[tokio::test(start_paused = true)]
async fn dropped_while_the_attempt_is_in_flight() {
    let layer = generic(one_at_a_time().build().unwrap());
    let (sim, svc, baseline) = start(&layer).await;
    sim.set_fallback("/hang", Reply::ok().fault(Fault::Hang));
    give_up_after(5 * S, call(&svc, get(sim.url("/hang")))).await;
    assert_eq!(sim.count("/hang"), 1);
    // The sim's connection task for the hanging exchange ends too (the client closed it).
    assert_host_whole(&layer, &svc, sim.url("/ok"), 1, baseline).await;
}

// ---------------------------------------------------------------------------------------------
// Inspect: reading the response body to classify it.

#[tokio::test(start_paused = true)]
async fn dropped_while_inspecting_an_error_body_that_stalls() {
    let layer = generic(one_at_a_time().build().unwrap());
    let (sim, svc, baseline) = start(&layer).await;
    sim.set_fallback(
        "/stall",
        Reply::status(500)
            .header("content-type", "application/problem+json")
            .body(vec![b' '; 10_000])
            .fault(Fault::StallBody { after: 1_000 }),
    );
    give_up_after(5 * S, call(&svc, get(sim.url("/stall")))).await;
    assert_eq!(sim.count("/stall"), 1);
    assert_host_whole(&layer, &svc, sim.url("/ok"), 1, baseline).await;
}

#[tokio::test(start_paused = true)]
async fn dropped_while_inspecting_a_marketo_success_body_that_stalls() {
    let policy = Vendor::Marketo.policy().to_builder().max_concurrency(1).build().unwrap();
    let layer = RetryLayer::builder().host(HOST, Vendor::Marketo.profile(), policy).unwrap().build();
    let sim = Sim::start().await.unwrap();
    let body = r#"{"requestId":"r#1","success":true,"result":[{"id":1}]}"#;
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, body).fault(Fault::StallBody { after: 10 }));
    sim.set_fallback("/rest/v1/leads.json", Reply::json(200, body));
    let svc = svc(&layer);
    settle().await;
    let baseline = alive();
    give_up_after(5 * S, call(&svc, get(sim.url("/rest/v1/leads.json")))).await;
    assert_eq!(sim.count("/rest/v1/leads.json"), 1);
    assert_host_whole(&layer, &svc, sim.url("/rest/v1/leads.json"), 1, baseline).await;
}

// ---------------------------------------------------------------------------------------------
// Sleep: the backoff before a retry.

#[tokio::test(start_paused = true)]
async fn dropped_during_the_backoff() {
    let layer = generic(one_at_a_time().build().unwrap());
    let (sim, svc, baseline) = start(&layer).await;
    sim.enqueue("/busy", Reply::status(503).header("Retry-After", "100"));
    sim.set_fallback("/busy", Reply::ok());
    give_up_after(10 * S, call(&svc, get(sim.url("/busy")))).await;
    assert_eq!(sim.count("/busy"), 1, "the retry never went");
    // The abandoned 100 s wait belongs to the dropped request only.
    assert_host_whole(&layer, &svc, sim.url("/busy"), 1, baseline).await;
    assert_eq!(sim.count("/busy"), 2);
}

// ---------------------------------------------------------------------------------------------
// Reconcile: waiting for the user's hook.

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_while_the_reconcile_hook_runs() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    let asked = Arc::new(AtomicUsize::new(0));
    let hook_dropped = Arc::new(AtomicBool::new(false));
    let hook = {
        let (asked, hook_dropped) = (asked.clone(), hook_dropped.clone());
        move |_req: ReconcileRequest| {
            let n = asked.fetch_add(1, Ordering::SeqCst);
            let flag = DropFlag(hook_dropped.clone());
            async move {
                if n == 0 {
                    // The first question is never answered.
                    let _flag = flag;
                    std::future::pending::<()>().await;
                }
                Verdict::NotApplied
            }
        }
    };
    let policy = Vendor::GenesysEngage.policy().to_builder().max_concurrency(1).build().unwrap();
    let layer = RetryLayer::builder()
        .host(HOST, Vendor::GenesysEngage.profile(), policy)
        .unwrap()
        .reconcile(HOST, hook)
        .unwrap()
        .build();
    let svc = svc(&layer);
    settle().await;
    let baseline = alive();

    // The create is read, then the connection is reset: it may have happened; ask the hook.
    sim.enqueue(sim_genesys::SERVICE_PATH, Reply::ok().fault(Fault::ResetAfterRead));
    give_up_after(10 * S, call(&svc, common::create_sub_campaign(&sim))).await;
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the hook was asked");
    assert!(hook_dropped.load(Ordering::SeqCst), "the hook's future went with the caller");
    assert_eq!(layer.available_permits(HOST), Some(1));
    assert_eq!(sim.count(sim_genesys::SERVICE_PATH), 1, "never re-sent without a verdict");

    // The host is whole: the next create goes through (and nothing was created twice).
    settle().await;
    let started = Instant::now();
    let res = call(&svc, common::create_sub_campaign(&sim)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(started.elapsed() < S);
    res.into_body().collect().await.unwrap();
    assert_eq!(vendor.count_creates(), 1);
    assert_eq!(vendor.sub_campaigns().len(), 1);
    settle().await;
    assert_eq!(layer.available_permits(HOST), Some(1));
    assert_eq!(alive(), baseline);
}

// ---------------------------------------------------------------------------------------------
// All of them at once.

#[tokio::test(start_paused = true)]
async fn a_storm_of_callers_dropped_at_every_await_point_leaves_the_host_whole() {
    let layer = generic(
        Policy::builder().max_concurrency(3).attempt_timeout(20 * S).backoff(Backoff::constant(2 * S)).build().unwrap(),
    );
    let (sim, svc, baseline) = start(&layer).await;
    // Every answer in turn: slow, hanging, stalled, retried after a wait, reset, fine.
    let turn = Arc::new(AtomicUsize::new(0));
    sim.route("/storm", move |_req: Recorded| {
        let n = turn.fetch_add(1, Ordering::SeqCst);
        async move {
            match n % 6 {
                0 => Reply::ok().delay(3 * S),
                1 => Reply::ok().fault(Fault::Hang),
                2 => Reply::status(500)
                    .header("content-type", "application/problem+json")
                    .body(vec![b' '; 1000])
                    .fault(Fault::StallBody { after: 10 }),
                3 => Reply::status(503).header("Retry-After", "7"),
                4 => Reply::ok().fault(Fault::ResetAfterRead),
                _ => Reply::ok(),
            }
        }
    });
    let mut callers = Vec::new();
    for i in 0..120u64 {
        let (svc, url) = (svc.clone(), sim.url("/storm"));
        // Callers arrive every 250 ms and give up after 0.5 to 15 s (some never do).
        let patience = Duration::from_millis(500 + (i * 7919 % 30) * 500);
        callers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250 * i)).await;
            let outcome = tokio::time::timeout(patience, call(&svc, get(url))).await;
            if let Ok(Ok(res)) = outcome {
                let _ = res.into_body().collect().await;
            }
        }));
    }
    // Abort a few outright, mid-flight.
    tokio::time::sleep(10 * S).await;
    for caller in callers.iter().step_by(7) {
        caller.abort();
    }
    for caller in callers {
        let _ = caller.await;
    }
    assert!(sim.count("/storm") >= 30, "the storm reached the sim: {}", sim.count("/storm"));
    assert!(sim.requests().iter().filter(|r| r.path == "/storm").count() <= 120 * 3, "attempts stay bounded");
    assert_host_whole(&layer, &svc, sim.url("/ok"), 3, baseline).await;
}
