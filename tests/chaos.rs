//! Chaos: the wire misbehaving in every way the issue lists, over real loopback sockets against
//! the simulator (and, for what hyper's server refuses to send, a bare TCP server), on tokio's
//! paused clock.
//!
//! Every test checks the invariants of `docs/DESIGN.md`:
//! - bounded: virtual time and memory stay within the policy (bytes and peaks are counted; no
//!   test times itself: speed claims live in the benches);
//! - the right kind and action, read from the error's predicates or the report;
//! - nothing lost: the caller gets the response, or an error that owns its status, the body bytes
//!   read, the vendor errors and the attempt history;
//! - nothing doubled: a non-idempotent request that may have reached the server is sent at most
//!   once, unless a vendor rule, an idempotency key or a reconcile hook allows more (checked from
//!   the sim's log).

// Only for the counting allocator below (`GlobalAlloc` is an unsafe trait); no other unsafe code.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redial::core::backoff::Backoff;
use redial::core::{Action, BodyUse, FailReason, Failure, Kind};
use redial::vendors::marketo;
use redial::{Policy, Report, RetryBody, RetryLayer, TokenSource, Vendor};
use redial_sim::vendors::{genesys as sim_genesys, marketo as sim_marketo};
use redial_sim::{ConnFault, Fault, Recorded, Reply, Sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Plumbing.

type Res = Response<redial::ResponseBody<hyper::body::Incoming>>;

fn hyper_client() -> Client<HttpConnector, RetryBody<Full<Bytes>>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The sim's host (`127.0.0.1`) served by `profile` under `policy`.
fn layer(profile: impl redial::core::Profile, policy: Policy) -> RetryLayer {
    RetryLayer::builder().host("127.0.0.1", profile, policy).unwrap().rng_seed(42).build()
}

fn generic(policy: Policy) -> RetryLayer {
    layer(redial::core::generic::Generic, policy)
}

/// A short constant backoff, so that retries are about the fault, not the wait.
fn fast() -> redial::core::PolicyBuilder {
    Policy::builder().backoff(Backoff::constant(100 * MS))
}

async fn send(layer: &RetryLayer, req: Request<Full<Bytes>>) -> Result<Res, redial::Error> {
    ServiceBuilder::new().layer(layer.clone()).service(hyper_client()).oneshot(req).await
}

fn get(url: String) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

fn post(url: String) -> Request<Full<Bytes>> {
    Request::post(url).body(Full::new(Bytes::from_static(b"{\"create\":1}"))).unwrap()
}

fn posts(sim: &Sim, path: &str) -> usize {
    sim.requests().iter().filter(|r| r.path == path && r.method == Method::POST).count()
}

fn report(res: &Res) -> &Report {
    res.extensions().get::<Report>().expect("a retried response carries a report")
}

fn failures(report: &Report) -> Vec<Option<Failure>> {
    report.attempts.iter().map(|a| a.failure).collect()
}

fn statuses(report: &Report) -> Vec<Option<u16>> {
    report.attempts.iter().map(|a| a.status.map(|s| s.as_u16())).collect()
}

/// The `hyper::Error` somewhere in an error's source chain.
fn hyper_error(err: &redial::Error) -> Option<&hyper::Error> {
    let mut next = std::error::Error::source(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        next = e.source();
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Memory: a counting allocator, per thread. `#[tokio::test]` runs the test, the sim and the
// client on the test's own thread, so the live bytes of that thread are the test's alone (other
// tests run on other threads).

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts measuring this thread's peak of live heap bytes; returns the baseline.
fn measure_from_here() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    live
}

/// The most heap this thread held above `baseline` since [`measure_from_here`].
fn peak_above(baseline: isize) -> usize {
    (PEAK.with(Cell::get) - baseline).max(0) as usize
}

// ---------------------------------------------------------------------------------------------
// A bare TCP server, for bytes hyper's server will not write (a body longer than its
// Content-Length). Each connection: read one request head, count it, write the scripted bytes
// (the last script repeats), close.

struct Raw {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

async fn raw_server(scripts: Vec<Bytes>) -> Raw {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let script = scripts[n.min(scripts.len() - 1)].clone();
            n += 1;
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(&script).await;
                let _ = stream.shutdown().await;
                // Drain until the client closes, so that closing never turns into a reset.
                while matches!(stream.read(&mut buf).await, Ok(k) if k > 0) {}
            });
        }
    });
    Raw { addr, requests }
}

// ---------------------------------------------------------------------------------------------
// Connection reset before the request is read.

#[tokio::test(start_paused = true)]
async fn reset_on_accept_a_get_is_retried_and_succeeds() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue_connection_fault(ConnFault::ResetOnAccept);
    sim.set_fallback("/x", Reply::ok().body("fine"));
    let started = Instant::now();
    let res = send(&generic(fast().build().unwrap()), get(sim.url("/x"))).await.unwrap();
    assert!(started.elapsed() < S);
    assert_eq!(res.status(), StatusCode::OK);
    let report = report(&res).clone();
    // The connect succeeded (the kernel accepted it), so the reset is an I/O failure after
    // sending: retried because GET is idempotent.
    assert_eq!(failures(&report), [Some(Failure::Io), None]);
    assert_eq!(report.attempts[0].kind, Kind::Transient);
    assert_eq!(report.attempts[0].action, Action::Retry);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "fine");
    assert_eq!(sim.connections(), 2);
    assert_eq!(sim.count("/x"), 1, "the reset connection never delivered the request");
}

#[tokio::test(start_paused = true)]
async fn reset_on_accept_a_post_is_not_resent_and_the_error_says_why() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue_connection_fault(ConnFault::ResetOnAccept);
    sim.set_fallback("/create", Reply::status(201));
    let started = Instant::now();
    let err = send(&generic(fast().build().unwrap()), post(sim.url("/create"))).await.unwrap_err();
    assert!(started.elapsed() < S);
    // The request never reached the server, but a client cannot tell a reset before reading
    // from one after: the engine sees an I/O failure that may have reached the server and does
    // not re-send a POST. Conservative, and what the README promises.
    assert!(err.is_not_idempotent(), "{err}");
    assert!(err.is_transport());
    assert_eq!(err.failure(), Some(Failure::Io));
    assert_eq!(err.kind(), Some(Kind::Transient));
    assert!(std::error::Error::source(&err).is_some(), "the transport error is kept");
    assert_eq!(err.report().attempt_count(), 1);
    assert_eq!(sim.connections(), 1);
    assert_eq!(posts(&sim, "/create"), 0, "the sim never read the POST");
}

// ---------------------------------------------------------------------------------------------
// Reset after the request is read.

/// A SOAP call to the sim's Genesys service (the operation in the body and in `SOAPAction`).
fn soap_to(sim: &Sim, op: &str) -> Request<Full<Bytes>> {
    let envelope = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><{op}><campaign>Spring</campaign><externalId>sub-42</externalId></{op}></soapenv:Body></soapenv:Envelope>"#
    );
    Request::post(sim.url(sim_genesys::SERVICE_PATH))
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"{op}\""))
        .body(Full::new(Bytes::from(envelope)))
        .unwrap()
}

fn genesys() -> RetryLayer {
    layer(Vendor::GenesysEngage.profile(), Vendor::GenesysEngage.policy())
}

#[tokio::test(start_paused = true)]
async fn reset_after_the_request_is_read_get_retried_post_sent_once_unless_the_vendor_says_so() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::ok().fault(Fault::ResetAfterRead));
    sim.enqueue("/create", Reply::ok().fault(Fault::ResetAfterRead));
    sim.set_fallback("/x", Reply::ok());
    sim.set_fallback("/create", Reply::status(201));
    let l = generic(fast().build().unwrap());

    let res = send(&l, get(sim.url("/x"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(failures(report(&res)), [Some(Failure::Io), None]);
    assert_eq!(sim.count("/x"), 2);

    let err = send(&l, post(sim.url("/create"))).await.unwrap_err();
    assert!(err.is_not_idempotent() && err.failure() == Some(Failure::Io), "{err}");
    assert_eq!(posts(&sim, "/create"), 1, "a create that may have happened was sent again");

    // Genesys: "no response" on an ordinary operation is re-invoked once after 30 s, any method
    // (a vendor rule)…
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    sim.enqueue(sim_genesys::SERVICE_PATH, Reply::ok().fault(Fault::ResetAfterRead));
    let started = Instant::now();
    let err = send(&genesys(), soap_to(&sim, "showSubCampaignState")).await.unwrap_err();
    // (the sub-campaign does not exist: the re-invocation got a real, final answer)
    assert_eq!(err.report().attempt_count(), 2);
    assert_eq!(err.report().attempts[0].failure, Some(Failure::Io));
    assert_eq!(err.report().attempts[0].action, Action::Retry);
    assert!(started.elapsed() >= 30 * S && started.elapsed() < 31 * S);
    assert_eq!(err.vendor_errors().next().unwrap().code, "OBJECT_NOT_EXISTS");
    assert_eq!(posts(&sim, sim_genesys::SERVICE_PATH), 2, "re-invoked once, by the vendor rule");

    // …but createSubCampaign without a reconcile hook is never re-sent.
    sim.enqueue(sim_genesys::SERVICE_PATH, Reply::ok().fault(Fault::ResetAfterRead));
    let err = send(&genesys(), soap_to(&sim, "createSubCampaign")).await.unwrap_err();
    assert_eq!(err.fail_reason(), Some(&FailReason::NoReconcileHook));
    assert_eq!(posts(&sim, sim_genesys::SERVICE_PATH), 3);
    assert_eq!(vendor.count_creates(), 0, "the reset create never reached the vendor's logic");
}

// ---------------------------------------------------------------------------------------------
// A hang past the attempt timeout.

#[tokio::test(start_paused = true)]
async fn a_hang_past_the_attempt_timeout_is_cut_at_the_timeout_get_retried_post_not() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::ok().fault(Fault::Hang));
    sim.set_fallback("/x", Reply::ok().body("late but fine"));
    sim.set_fallback("/create", Reply::ok().fault(Fault::Hang));
    let l = generic(fast().attempt_timeout(5 * S).deadline(60 * S).build().unwrap());

    let started = Instant::now();
    let res = send(&l, get(sim.url("/x"))).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= 5 * S && elapsed < 6 * S, "{elapsed:?}");
    let r = report(&res);
    assert_eq!(failures(r), [Some(Failure::Timeout), None]);
    assert_eq!(r.attempts[0].kind, Kind::Transient);
    assert_eq!(r.attempts[0].delay, Some(100 * MS));
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "late but fine");

    let started = Instant::now();
    let err = send(&l, post(sim.url("/create"))).await.unwrap_err();
    assert_eq!(started.elapsed(), 5 * S);
    assert!(err.is_timeout() && err.is_not_idempotent(), "{err}");
    assert!(err.status().is_none());
    assert_eq!(posts(&sim, "/create"), 1);
}

// ---------------------------------------------------------------------------------------------
// A body that stalls halfway.

#[tokio::test(start_paused = true)]
async fn an_error_body_that_stalls_halfway_is_cut_at_the_attempt_timeout_and_retried_for_get() {
    let sim = Sim::start().await.unwrap();
    let stalled = Reply::status(500)
        .header("content-type", "application/problem+json")
        .body(vec![b' '; 10_000])
        .fault(Fault::StallBody { after: 5_000 });
    sim.enqueue("/x", stalled.clone());
    sim.set_fallback("/x", Reply::ok().body("ok"));
    sim.set_fallback("/create", stalled);
    let l = generic(fast().attempt_timeout(10 * S).build().unwrap());

    let started = Instant::now();
    let res = send(&l, get(sim.url("/x"))).await.unwrap();
    assert!(started.elapsed() >= 10 * S && started.elapsed() < 11 * S);
    let r = report(&res);
    assert_eq!(failures(r), [Some(Failure::Timeout), None]);
    assert_eq!(r.attempts[0].kind, Kind::Transient);
    assert_eq!(r.attempts[0].action, Action::Retry);

    let started = Instant::now();
    let err = send(&l, post(sim.url("/create"))).await.unwrap_err();
    assert_eq!(started.elapsed(), 10 * S);
    assert!(err.is_timeout() && err.is_not_idempotent(), "{err}");
    assert_eq!(posts(&sim, "/create"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_marketo_success_body_that_stalls_halfway_is_bounded_and_retried_for_get() {
    let sim = Sim::start().await.unwrap();
    let body = r#"{"requestId":"a#1","success":true,"result":[{"id":1,"status":"updated"}]}"#;
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, body).fault(Fault::StallBody { after: 20 }));
    sim.set_fallback("/rest/v1/leads.json", Reply::json(200, body));
    let policy = Vendor::Marketo.policy().to_builder().attempt_timeout(10 * S).build().unwrap();
    let started = Instant::now();
    let res = send(&layer(Vendor::Marketo.profile(), policy), get(sim.url("/rest/v1/leads.json"))).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= 10 * S && elapsed < 10 * S + 30 * S, "{elapsed:?}");
    let r = report(&res);
    assert_eq!(failures(r), [Some(Failure::Timeout), None]);
    assert_eq!(r.attempts[0].kind, Kind::Transient);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), body);
}

// ---------------------------------------------------------------------------------------------
// A truncated body; a Content-Length that lies.

#[tokio::test(start_paused = true)]
async fn a_truncated_error_body_is_a_body_read_failure_retried_for_get_not_for_post() {
    let sim = Sim::start().await.unwrap();
    let cut = Reply::status(500)
        .header("content-type", "application/problem+json")
        .body(vec![b'{'; 1000])
        .fault(Fault::TruncatedBody { sent: 100 });
    sim.enqueue("/x", cut.clone());
    sim.set_fallback("/x", Reply::ok());
    sim.set_fallback("/create", cut);
    let l = generic(fast().build().unwrap());

    let started = Instant::now();
    let res = send(&l, get(sim.url("/x"))).await.unwrap();
    assert!(started.elapsed() < S);
    assert_eq!(failures(report(&res)), [Some(Failure::BodyRead), None]);
    assert_eq!(report(&res).attempts[0].kind, Kind::Transient);

    let err = send(&l, post(sim.url("/create"))).await.unwrap_err();
    assert!(err.is_not_idempotent(), "{err}");
    assert_eq!(err.failure(), Some(Failure::BodyRead));
    assert!(std::error::Error::source(&err).is_some(), "the body error is kept");
    assert_eq!(posts(&sim, "/create"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_truncated_success_body_reaches_the_caller_as_a_body_error_not_as_a_short_success() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::ok().body(vec![b'a'; 1000]).fault(Fault::TruncatedBody { sent: 100 }));
    // Not inspected (generic, 200): handed back as it comes; the caller sees the truncation.
    let res = send(&generic(Policy::default()), get(sim.url("/x"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.into_body().collect().await.is_err(), "a short body must not look complete");

    // Inspected (Marketo reads every 2xx JSON body): a broken read, retried for GET until the
    // attempts run out, with every attempt in the history.
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        "/rest/v1/leads.json",
        Reply::json(200, format!("{{\"success\":true,\"result\":[{}]}}", "1,".repeat(500) + "1"))
            .fault(Fault::TruncatedBody { sent: 50 }),
    );
    let policy = Vendor::Marketo.policy().to_builder().backoff(Backoff::constant(S)).build().unwrap();
    let err = send(&layer(Vendor::Marketo.profile(), policy), get(sim.url("/rest/v1/leads.json"))).await.unwrap_err();
    assert!(err.is_exhausted(), "{err}");
    assert_eq!(err.failure(), Some(Failure::BodyRead));
    assert_eq!(failures(err.report()), [Some(Failure::BodyRead); 4]);
    assert_eq!(sim.count("/rest/v1/leads.json"), 4);
}

#[tokio::test(start_paused = true)]
async fn a_content_length_shorter_than_the_body_gives_exactly_the_declared_bytes_and_no_smuggled_response() {
    // hyper's server never writes more than the Content-Length it declares, so the sim cannot
    // say this: a bare TCP server does. After the declared 5 bytes comes a whole second
    // response; it must never be taken for the answer to the retry.
    let raw = raw_server(vec![
        Bytes::from_static(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/problem+json\r\ncontent-length: 5\r\n\r\n{\"a\":HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled"),
        Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\ngenuine"),
    ])
    .await;
    let url = format!("http://{}/x", raw.addr);
    let res = send(&generic(fast().build().unwrap()), get(url.clone())).await.unwrap();
    assert_eq!(statuses(report(&res)), [Some(500), Some(200)]);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "genuine");
    assert_eq!(raw.requests.load(Ordering::SeqCst), 2);

    // A final error status owns exactly the declared bytes, and knows they are the whole body.
    let raw = raw_server(vec![Bytes::from_static(
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot here.and then a lot more that was never declared",
    )])
    .await;
    let err = send(&generic(Policy::default()), get(format!("http://{}/x", raw.addr))).await.unwrap_err();
    assert!(err.is_final(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(err.body().unwrap(), "not here.");
    assert!(err.body_is_complete());
}

// ---------------------------------------------------------------------------------------------
// gzip that does not decode.

const NOT_GZIP: &[u8] = b"\x1f\x8b\x08\x00this is not deflate data \xff\xfe\x00\x01";

#[tokio::test(start_paused = true)]
async fn gzip_that_does_not_decode_passes_through_untouched_on_2xx_and_is_owned_on_4xx() {
    let sim = Sim::start().await.unwrap();
    let gz = |status| {
        Reply::status(status)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(NOT_GZIP)
    };
    sim.set_fallback("/plain", gz(200));
    sim.set_fallback("/rest/v1/leads.json", gz(200));
    sim.set_fallback("/bad", gz(400));

    // Not inspected: redial does not decompress (a Decompression layer would sit inside it).
    let res = send(&generic(Policy::default()), get(sim.url("/plain"))).await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), NOT_GZIP);

    // Inspected (Marketo reads 2xx JSON): the bytes are not JSON, the status rules say success,
    // and the caller gets the bytes exactly as sent.
    let res = send(&layer(Vendor::Marketo.profile(), Vendor::Marketo.policy()), get(sim.url("/rest/v1/leads.json")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), NOT_GZIP);

    // 4xx: final, and the error owns the raw bytes and the header that explains them.
    let err = send(&generic(Policy::default()), get(sim.url("/bad"))).await.unwrap_err();
    assert!(err.is_final(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(err.body().unwrap(), NOT_GZIP);
    assert!(err.body_is_complete());
    assert_eq!(err.headers().unwrap()["content-encoding"], "gzip");
    assert_eq!(sim.count("/bad"), 1);
}

// ---------------------------------------------------------------------------------------------
// A 1 GB body.

const GIB: u64 = 1 << 30;

#[tokio::test(start_paused = true)]
async fn a_one_gigabyte_success_body_is_streamed_to_the_caller_not_buffered() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        "/rest/v1/leads.json",
        Reply::status(200).header("content-type", "application/json").generated_body(GIB, b'x'),
    );
    let baseline = measure_from_here();
    // Marketo reads every 2xx JSON body, at most its inspect limit (256 KiB).
    let res = send(&layer(Vendor::Marketo.profile(), Vendor::Marketo.policy()), get(sim.url("/rest/v1/leads.json")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        peak_above(baseline) < 4 * MIB,
        "redial held {} bytes before handing the response back",
        peak_above(baseline)
    );
    // The caller streams what it wants, the prefix redial read first, then drops the rest.
    let mut body = res.into_body();
    let mut read = 0usize;
    while read < 8 * MIB {
        let frame = body.frame().await.expect("more body").expect("no body error");
        if let Ok(data) = frame.into_data() {
            assert!(data.iter().all(|b| *b == b'x'));
            read += data.len();
        }
    }
    drop(body);
    assert!(peak_above(baseline) < 16 * MIB, "peak {} bytes", peak_above(baseline));
    assert_eq!(sim.count("/rest/v1/leads.json"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_one_gigabyte_error_body_is_owned_only_up_to_the_inspect_limit() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        "/rest/v1/leads.json",
        Reply::status(500).header("content-type", "application/json").generated_body(GIB, b'x'),
    );
    let limit = 256 * 1024;
    let policy = Vendor::Marketo
        .policy()
        .to_builder()
        .max_attempts(2)
        .backoff(Backoff::constant(S))
        .inspect_limit(limit)
        .build()
        .unwrap();
    let baseline = measure_from_here();
    let err = send(&layer(Vendor::Marketo.profile(), policy), get(sim.url("/rest/v1/leads.json"))).await.unwrap_err();
    assert!(err.is_exhausted(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(!err.body_is_complete());
    // (The sim sends a generated body in 64 KiB chunks, which divide this limit evenly; the
    // test below shows what happens when frames do not.)
    let owned = err.body().unwrap();
    assert!(owned.len() >= limit / 2 && owned.len() <= limit, "owns {} bytes", owned.len());
    assert!(owned.iter().all(|b| *b == b'x'));
    assert_eq!(err.classification().unwrap().body, BodyUse::TooLarge);
    assert_eq!(sim.count("/rest/v1/leads.json"), 2);
    assert!(peak_above(baseline) < 16 * MIB, "peak {} bytes", peak_above(baseline));
}

#[tokio::test(start_paused = true)]
async fn an_error_body_with_a_content_length_is_owned_only_up_to_an_odd_inspect_limit() {
    // With a Content-Length, hyper hands out frames as large as its read buffer, not the sim's
    // 64 KiB chunks: the inspect loop's last frame overshoots the limit.
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        "/x",
        Reply::status(500)
            .header("content-type", "application/problem+json")
            .header("content-length", &GIB.to_string())
            .generated_body(GIB, b'x'),
    );
    let limit = 100_000;
    let policy = fast().max_attempts(1).inspect_limit(limit).build().unwrap();
    let err = send(&generic(policy), get(sim.url("/x"))).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(!err.body_is_complete());
    assert!(err.body().unwrap().len() <= limit, "owns {} bytes", err.body().unwrap().len());
}

// ---------------------------------------------------------------------------------------------
// Monstrous heads.

#[tokio::test(start_paused = true)]
async fn a_hundred_thousand_headers_are_a_bounded_typed_transport_error() {
    // Written by the bare server: through the sim, `http::HeaderMap` holds at most 32,768
    // names (it panics past that) and draining 100,000 values of one name is quadratic in a
    // debug build (an O(n) `debug_assert!` per value), minutes of CPU before a byte is sent.
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..100_000 {
        head.extend_from_slice(format!("x-chaos-{i}: {i}\r\n").as_bytes());
    }
    head.extend_from_slice(b"content-length: 2\r\n\r\nok");
    let raw = raw_server(vec![Bytes::from(head)]).await;
    let l = generic(fast().build().unwrap());
    let started = Instant::now();
    let baseline = measure_from_here();
    let err = send(&l, get(format!("http://{}/x", raw.addr))).await.unwrap_err();
    assert!(started.elapsed() < S, "{:?}", started.elapsed());
    // The 2.4 MB head is refused at hyper's read buffer limit, never held whole.
    assert!(peak_above(baseline) < MIB, "peak {} bytes", peak_above(baseline));
    // hyper's client refuses the head: an I/O-class failure after sending, retried for GET
    // until the attempts run out, never a panic.
    assert!(err.is_exhausted(), "{err}");
    assert!(err.status().is_none(), "no head was accepted");
    assert_eq!(failures(err.report()), [Some(Failure::Io); 3]);
    let h = hyper_error(&err).expect("the hyper error is kept");
    assert!(h.is_parse_too_large(), "{h:?}");
    assert_eq!(raw.requests.load(Ordering::SeqCst), 3);

    let err = send(&l, post(format!("http://{}/create", raw.addr))).await.unwrap_err();
    assert!(err.is_not_idempotent() && err.failure() == Some(Failure::Io), "{err}");
    assert_eq!(raw.requests.load(Ordering::SeqCst), 4, "the POST was sent once");
}

#[tokio::test(start_paused = true)]
async fn a_ten_megabyte_header_value_is_a_bounded_typed_transport_error() {
    // Written by the bare server (the sim's own encoding of the head would be measured too:
    // the client's memory is what is bounded here).
    let mut head = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nx-huge: ".to_vec();
    head.resize(head.len() + 10 * MIB, b'v');
    head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let raw = raw_server(vec![Bytes::from(head)]).await;
    let started = Instant::now();
    let baseline = measure_from_here();
    let err = send(&generic(fast().build().unwrap()), get(format!("http://{}/x", raw.addr))).await.unwrap_err();
    assert!(started.elapsed() < S);
    // Refused at hyper's read buffer limit, three times: never held whole.
    assert!(peak_above(baseline) < MIB, "peak {} bytes", peak_above(baseline));
    assert!(err.is_exhausted(), "{err}");
    assert!(err.status().is_none(), "no head was accepted");
    assert_eq!(failures(err.report()), [Some(Failure::Io); 3]);
    let h = hyper_error(&err).expect("the hyper error is kept");
    assert!(h.is_parse_too_large(), "{h:?}");
    assert_eq!(raw.requests.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------------------------
// Retry-After absurdities.

#[tokio::test(start_paused = true)]
async fn retry_after_99999999999_on_503_fails_at_once_with_the_hint() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(503).header("Retry-After", "99999999999"));
    let started = Instant::now();
    let err = send(&generic(Policy::default()), get(sim.url("/x"))).await.unwrap_err();
    assert!(started.elapsed() < S);
    assert!(err.is_hint_exceeds_limit(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(99_999_999_999)));
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(err.kind(), Some(Kind::Transient));
    assert_eq!(err.report().attempt_count(), 1);
    assert_eq!(err.report().attempts[0].action, Action::Fail);
    assert_eq!(sim.count("/x"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_huge_retry_after_on_429_does_not_pause_the_host_for_centuries() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::status(429).header("Retry-After", "99999999999"));
    sim.set_fallback("/x", Reply::ok());
    let policy = Policy::builder().rate_limit(100, S).build().unwrap();
    let l = generic(policy);
    let err = send(&l, get(sim.url("/x"))).await.unwrap_err();
    assert!(err.is_hint_exceeds_limit(), "{err}");
    // The hint was refused, not honoured. Pausing the host after a 429 is fair, but never for
    // longer than the Retry-After cap: once the cap has passed, the host serves again (it does
    // not fail every request locally for the next 3,170 years).
    tokio::time::sleep(Policy::default().retry_after_cap()).await;
    let started = Instant::now();
    let res = send(&l, get(sim.url("/x"))).await;
    assert!(res.is_ok(), "{}", res.unwrap_err());
    assert!(started.elapsed() < S);
    assert_eq!(sim.count("/x"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_u64_seconds_on_429_is_no_panic() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(429).header("Retry-After", "99999999999999999999999"));
    let l = generic(Policy::builder().rate_limit(100, S).build().unwrap());
    let caller = tokio::spawn(async move { send(&l, get(sim.url("/x"))).await.map(|_| ()) });
    let err = caller.await.expect("no panic on input from the network").unwrap_err();
    assert!(err.is_hint_exceeds_limit(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(u64::MAX)));
}

// ---------------------------------------------------------------------------------------------
// Hostile XML in a Genesys SOAP fault.

const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>&lol9;</faultstring><detail><error><code>INTERNAL_ERROR</code><message>&lol9;</message></error></detail></soap:Fault></soap:Body></soap:Envelope>"#;

const EXTERNAL_ENTITY: &str = r#"<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>&xxe;</faultstring><detail><error><code>INTERNAL_ERROR</code><message>&xxe;</message></error></detail></soap:Fault></soap:Body></soap:Envelope>"#;

/// A Genesys SOAP fault with a hostile body: bounded, nothing expanded or fetched, the status
/// rules decide (the `INTERNAL_ERROR` inside is never believed), and the error owns the raw body.
async fn hostile_soap_fault(body: &'static str) -> (redial::Error, Sim) {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        sim_genesys::SERVICE_PATH,
        Reply::status(500).header("content-type", "text/xml; charset=utf-8").body(body),
    );
    let baseline = measure_from_here();
    let started = Instant::now();
    let err = send(&genesys(), soap_to(&sim, "showSubCampaignState")).await.unwrap_err();
    assert!(started.elapsed() < S);
    assert!(peak_above(baseline) < 4 * MIB, "peak {} bytes", peak_above(baseline));
    // Status rules: 500 is transient, retried for idempotent requests only; a SOAP POST is not.
    assert!(err.is_not_idempotent(), "{err}");
    assert_eq!(err.kind(), Some(Kind::Transient));
    assert_eq!(err.classification().unwrap().body, BodyUse::Fallback);
    assert_eq!(err.vendor_errors().count(), 0, "nothing was taken from a DOCTYPE body");
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(err.body().unwrap(), body.as_bytes());
    assert!(err.body_is_complete());
    assert_eq!(posts(&sim, sim_genesys::SERVICE_PATH), 1);
    (err, sim)
}

#[tokio::test(start_paused = true)]
async fn an_xml_bomb_in_a_genesys_soap_fault_is_not_expanded() {
    let (err, _sim) = hostile_soap_fault(BILLION_LAUGHS).await;
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("lollollol"), "{shown}");
}

#[tokio::test(start_paused = true)]
async fn an_external_entity_in_a_genesys_soap_fault_is_not_resolved() {
    let (err, _sim) = hostile_soap_fault(EXTERNAL_ENTITY).await;
    let shown = format!("{err} {err:?} {:?}", err.classification());
    assert!(!shown.contains("root:"), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// A login endpoint that hangs.

#[tokio::test(start_paused = true)]
async fn a_login_endpoint_that_hangs_fails_requests_at_their_deadline_while_a_login_still_runs() {
    let sim = Sim::start().await.unwrap();
    let config = sim_marketo::MarketoConfig { rate_limit: None, max_concurrency: None, ..Default::default() };
    let vendor = sim_marketo::install(&sim, config);
    vendor.hang_logins(true);
    let source = TokenSource::login(
        marketo::IdentityLogin::new(&sim.url("/identity"), "sim-client-id", "sim-client-secret").unwrap(),
    );
    let policy = Vendor::Marketo.policy().to_builder().deadline(100 * S).build().unwrap();
    let l = RetryLayer::builder()
        .host("127.0.0.1", Vendor::Marketo.profile(), policy)
        .unwrap()
        .auth("127.0.0.1", source.clone())
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(l).service(hyper_client());
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let req = get(sim.url("/rest/v1/leads.json"));
        callers.spawn(svc.clone().oneshot(req));
    }
    // A login (the fourth) is still running when the deadline comes: the callers ran out of
    // time waiting for it, and fail on their deadline (it might have answered a moment later),
    // not with the third login's failure.
    while let Some(r) = callers.join_next().await {
        let err = r.unwrap().unwrap_err();
        assert!(err.is_deadline(), "{err}");
        assert!(err.login_error().is_none(), "{err}");
        // What kept it waiting is the error's source: the logins before that one timed out.
        let why = std::error::Error::source(&err).expect("the failed login before it");
        assert!(why.to_string().contains("longer than"), "{why}");
        assert_eq!(started.elapsed(), 100 * S, "every caller fails at the deadline");
    }
    // The logins' failures are the token source's to tell.
    let login = source.last_error().unwrap();
    assert!(!login.is_fatal());
    assert!(login.message().contains("longer than"), "{login}");
    // Login timeouts of 30 s with 1, 2, 4 s of backoff between them: logins at 0, 31, 63, 97 s,
    // one at a time for all twenty callers.
    assert_eq!(vendor.logins(), 4);
    assert_eq!(source.logins(), 4);
    assert!(vendor.api_calls().is_empty(), "nothing was sent without a token");
    // The last login is still running; it ends at its own timeout and leaves nothing behind.
    assert!(source.login_in_flight());
    tokio::time::sleep(30 * S).await;
    assert!(!source.login_in_flight());
    assert!(source.last_error().is_some());
    // And the host recovers once the vendor does.
    vendor.hang_logins(false);
    let res = svc.oneshot(get(sim.url("/rest/v1/leads.json"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!source.login_in_flight());
    assert_eq!(vendor.logins(), 5);
}

// ---------------------------------------------------------------------------------------------
// The vendor flipping between answers.

const GARBAGE: &[u8] = b"\x00\xff<<<{not json, not xml, not anything\xfe";

/// Answers in turn: 503, 200, 429, garbage (a 502 with binary noise), reset.
fn flipping(sim: &Sim, path: &str) {
    let turn = Arc::new(AtomicUsize::new(0));
    sim.route(path, move |_req: Recorded| {
        let n = turn.fetch_add(1, Ordering::SeqCst);
        async move {
            match n % 5 {
                0 => Reply::status(503).header("retry-after", "1"),
                1 => Reply::ok().body(format!("ok #{n}")),
                2 => Reply::status(429).header("retry-after", "2"),
                3 => Reply::status(502).header("content-type", "application/problem+json").body(GARBAGE),
                _ => Reply::ok().fault(Fault::ResetAfterRead),
            }
        }
    });
}

#[tokio::test(start_paused = true)]
async fn a_vendor_flipping_between_answers_gets_bounded_attempts_and_the_right_final_state() {
    let sim = Sim::start().await.unwrap();
    flipping(&sim, "/flip");
    let l = generic(fast().max_attempts(3).deadline(60 * S).build().unwrap());
    let started = Instant::now();

    // GET: 503 (wait 1 s) → 200.
    let res = send(&l, get(sim.url("/flip"))).await.unwrap();
    assert_eq!(statuses(report(&res)), [Some(503), Some(200)]);
    assert_eq!(report(&res).attempts[0].delay, Some(S));
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok #1");

    // GET: 429 (wait 2 s) → garbage 502 → reset: attempts exhausted, the last failure owned,
    // every attempt in the history.
    let err = send(&l, get(sim.url("/flip"))).await.unwrap_err();
    assert!(err.is_exhausted(), "{err}");
    assert_eq!(statuses(err.report()), [Some(429), Some(502), None]);
    assert_eq!(failures(err.report()), [None, None, Some(Failure::Io)]);
    let kinds: Vec<_> = err.report().attempts.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [Kind::Throttled, Kind::Transient, Kind::Transient]);
    assert!(err.status().is_none() && err.is_transport());

    // POST: 503 → 200 (503 is retried for any method: the vendor did not process it).
    let res = send(&l, post(sim.url("/flip"))).await.unwrap();
    assert_eq!(statuses(report(&res)), [Some(503), Some(200)]);

    // POST: 429 → garbage 502: a 502 may have been acted on upstream, so the POST stops there,
    // and the error owns the garbage as it came.
    let err = send(&l, post(sim.url("/flip"))).await.unwrap_err();
    assert!(err.is_not_idempotent(), "{err}");
    assert_eq!(statuses(err.report()), [Some(429), Some(502)]);
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(err.body().unwrap(), GARBAGE);
    assert!(err.problem().is_none());

    // POST: reset after it was read: never re-sent.
    let before = posts(&sim, "/flip");
    let err = send(&l, post(sim.url("/flip"))).await.unwrap_err();
    assert!(err.is_not_idempotent() && err.failure() == Some(Failure::Io), "{err}");
    assert_eq!(posts(&sim, "/flip"), before + 1);

    // 10 answers for 5 logical requests, in bounded time: 1 + 2 + 1 + 2 s of hints, 0.1 s
    // backoffs.
    assert_eq!(sim.count("/flip"), 10);
    assert!(started.elapsed() < 10 * S, "{:?}", started.elapsed());
    // Each POST was sent at most twice, and twice only after an answer that says "not processed".
    assert_eq!(posts(&sim, "/flip"), 5);
}

// ---------------------------------------------------------------------------------------------
// Nothing lost, nothing doubled.

fn marketo_error(code: &str, n: u32) -> Reply {
    Reply::json(
        200,
        format!(r#"{{"requestId":"r#{n}","success":false,"errors":[{{"code":"{code}","message":"error {code}"}}]}}"#),
    )
}

#[tokio::test(start_paused = true)]
async fn three_different_vendor_errors_across_attempts_are_all_kept_in_order() {
    let sim = Sim::start().await.unwrap();
    for path in ["/rest/v1/leads.json", "/rest/v1/leads/push.json"] {
        sim.enqueue_many(path, [marketo_error("606", 1), marketo_error("604", 2), marketo_error("611", 3)]);
        sim.set_fallback(path, marketo_error("611", 4));
    }
    let policy = Vendor::Marketo.policy().to_builder().max_attempts(3).build().unwrap();
    let l = layer(Vendor::Marketo.profile(), policy);

    for (req, path) in [
        (get(sim.url("/rest/v1/leads.json")), "/rest/v1/leads.json"),
        // 606, 604 and 611 are "not executed" codes: the vendor rule re-sends any method.
        (post(sim.url("/rest/v1/leads/push.json")), "/rest/v1/leads/push.json"),
    ] {
        let started = Instant::now();
        let err = send(&l, req).await.unwrap_err();
        assert!(started.elapsed() < 100 * S);
        assert_eq!(err.fail_reason(), Some(&FailReason::AttemptsExhausted { max: 3 }), "{err}");
        let codes: Vec<_> = err.vendor_errors().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["606", "604", "611"]);
        let attempts: Vec<_> = err.report().errors.iter().map(|(n, _)| *n).collect();
        assert_eq!(attempts, [1, 2, 3]);
        let kinds: Vec<_> = err.report().attempts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [Kind::Throttled, Kind::Transient, Kind::Transient]);
        assert_eq!(err.last_vendor_errors()[0].code, "611");
        assert_eq!(err.status(), Some(StatusCode::OK), "Marketo says it all in a 200");
        assert!(String::from_utf8_lossy(err.body().unwrap()).contains("r#3"));
        assert_eq!(sim.count(path), 3);
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded time at the engine's own await points.

/// Ready for its first call, then never ready again (a saturated inner pool, say).
#[derive(Clone)]
struct ReadyOnce<S> {
    inner: S,
    called: Arc<AtomicBool>,
}

impl<S: Service<R>, R> Service<R> for ReadyOnce<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.called.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: R) -> S::Future {
        self.called.store(true, Ordering::SeqCst);
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn an_inner_service_that_never_gets_ready_for_a_retry_is_bounded_by_the_deadline() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(503).header("retry-after", "1"));
    let svc = ServiceBuilder::new()
        .layer(generic(Policy::builder().deadline(10 * S).build().unwrap()))
        .service(ReadyOnce { inner: hyper_client(), called: Arc::default() });
    let started = Instant::now();
    let outcome = tokio::time::timeout(600 * S, svc.oneshot(get(sim.url("/x")))).await;
    let err = outcome.expect("the request outlived its 10 s deadline by ten minutes").unwrap_err();
    assert!(started.elapsed() <= 10 * S);
    assert!(err.is_deadline(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "the last response is owned");
}

#[tokio::test(start_paused = true)]
async fn a_request_body_that_stalls_while_buffered_is_bounded_by_the_deadline() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/upload", Reply::ok());
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<common::StalledBody>>();
    let svc = ServiceBuilder::new().layer(generic(Policy::builder().deadline(10 * S).build().unwrap())).service(client);
    let req = Request::put(sim.url("/upload")).body(common::StalledBody).unwrap();
    let started = Instant::now();
    let outcome = tokio::time::timeout(600 * S, svc.oneshot(req)).await;
    let err = outcome.expect("the request outlived its 10 s deadline by ten minutes").unwrap_err();
    assert!(started.elapsed() <= 10 * S);
    assert!(err.is_deadline(), "{err}");
    assert_eq!(sim.count("/upload"), 0);
}

/// A body of the frames given, then pending forever.
struct Frames(std::collections::VecDeque<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.0.pop_front() {
            Some(b) => Poll::Ready(Some(Ok(http_body::Frame::data(b)))),
            None => Poll::Pending,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_frame_far_over_the_inspect_limit_is_neither_copied_nor_kept() {
    // One byte, then a 64 MiB frame, then nothing: the error owns 1 KiB, and holds no more.
    let vendor = tower::service_fn(|_: Request<RetryBody<Full<Bytes>>>| async {
        let frames = Frames([Bytes::from_static(b"{"), Bytes::from(vec![b'x'; 64 * MIB])].into());
        Ok::<_, std::convert::Infallible>(Response::builder().status(400).body(frames).unwrap())
    });
    let policy = Policy::builder().inspect_limit(1024).max_attempts(1).build().unwrap();
    let baseline = measure_from_here();
    let err = ServiceBuilder::new()
        .layer(RetryLayer::new(redial::core::generic::Generic, policy))
        .service(vendor)
        .oneshot(get("http://api.example.com/things".into()))
        .await
        .unwrap_err();
    assert_eq!(err.body().map(|b| b.len()), Some(1024));
    let held = LIVE.with(Cell::get) - baseline;
    assert!(held < MIB as isize, "an error with a 1 KiB body holds {held} bytes");
    assert!(peak_above(baseline) < 66 * MIB, "the 64 MiB frame was copied: peak {}", peak_above(baseline));
}
