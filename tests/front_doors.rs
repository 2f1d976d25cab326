//! One engine, two front doors: every scenario here is written once, over [`FrontDoor`], and
//! runs through the tower layer (over hyper-util's legacy client) and through the reqwest
//! middleware (over `reqwest::Client`), against the simulator over real loopback sockets, on
//! tokio's paused clock.

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::InspectEverything;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redial::core::backoff::Backoff;
use redial::core::{ErrorScope, FailReason, Failure, Kind, NotReplayable};
use redial::vendors::marketo;
use redial::{Error, Policy, Report, RequestLimits, Retry, RetryBody, RetryLayer, TokenSource, Vendor, VendorExt};
use redial_reqwest::RedialMiddleware;
use redial_sim::vendors::marketo as sim_marketo;
use redial_sim::{Fault, Reply, Sim};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tokio::time::Instant;
use tower::ServiceExt;

const S: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The doors

/// A request as a scenario writes it, whichever door it goes through.
struct Call {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: CallBody,
    /// Per-request limits: a request extension (tower), `with_extension` (reqwest).
    limits: Option<RequestLimits>,
}

enum CallBody {
    Empty,
    /// A body in memory: replayable through both doors (`Full` / a reqwest bytes body).
    Bytes(Bytes),
    /// A stream of unknown length: sent once through both doors.
    Stream(Vec<Bytes>),
}

impl Call {
    fn new(method: Method, url: String, body: CallBody) -> Call {
        Call { method, url, headers: HeaderMap::new(), body, limits: None }
    }

    fn limits(mut self, limits: RequestLimits) -> Call {
        self.limits = Some(limits);
        self
    }

    fn get(url: String) -> Call {
        Call::new(Method::GET, url, CallBody::Empty)
    }

    fn header(mut self, name: &'static str, value: &str) -> Call {
        self.headers.insert(name, HeaderValue::from_str(value).unwrap());
        self
    }
}

/// What a scenario sees of a success, the same from either door.
#[derive(Debug)]
struct Got {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    /// The body's exact size as handed back (before reading it), if known.
    size: Option<u64>,
    body: Bytes,
    report: Option<Report>,
}

/// A way into the engine. Failures are the engine's own [`Error`] through either door.
trait FrontDoor: Sized {
    fn open(layer: RetryLayer) -> Self;
    async fn send(&self, call: Call) -> Result<Got, Error>;
}

/// The tower layer over hyper-util's legacy client.
struct TowerDoor {
    svc: Retry<Client<HttpConnector, RetryBody<TestBody>>>,
}

impl FrontDoor for TowerDoor {
    fn open(layer: RetryLayer) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<TestBody>>();
        TowerDoor { svc: tower::Layer::layer(&layer, client) }
    }

    async fn send(&self, call: Call) -> Result<Got, Error> {
        let mut req =
            http::Request::builder().method(call.method).uri(&call.url).body(TestBody::from(call.body)).unwrap();
        *req.headers_mut() = call.headers;
        if let Some(limits) = call.limits {
            req.extensions_mut().insert(limits);
        }
        let res = self.svc.clone().oneshot(req).await?;
        let size = res.body().size_hint().exact();
        let (head, body) = res.into_parts();
        Ok(Got {
            status: head.status,
            version: head.version,
            report: head.extensions.get::<Report>().cloned(),
            headers: head.headers,
            size,
            body: body.collect().await.unwrap().to_bytes(),
        })
    }
}

/// The reqwest middleware over `reqwest::Client`.
struct ReqwestDoor {
    client: ClientWithMiddleware,
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

impl FrontDoor for ReqwestDoor {
    fn open(layer: RetryLayer) -> Self {
        ReqwestDoor { client: ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(layer)).build() }
    }

    async fn send(&self, call: Call) -> Result<Got, Error> {
        let mut req = self.client.request(call.method, &call.url).headers(call.headers);
        match call.body {
            CallBody::Empty => {}
            CallBody::Bytes(b) => req = req.body(b),
            CallBody::Stream(chunks) => req = req.body(reqwest::Body::wrap(TestBody::stream(chunks))),
        }
        if let Some(limits) = call.limits {
            req = req.with_extension(limits);
        }
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => {
                return Err(redial_reqwest::into_redial_error(e).unwrap_or_else(|e| panic!("not a redial error: {e:?}")))
            }
        };
        // A real reqwest::Response: the final URL, the peer, status, version and headers as
        // received.
        assert_eq!(res.url().as_str(), call.url);
        let authority = res.url().host_str().unwrap().to_owned() + ":" + &res.url().port().unwrap().to_string();
        assert_eq!(res.remote_addr().map(|a| a.to_string()), Some(authority));
        let (status, version, headers) = (res.status(), res.version(), res.headers().clone());
        let size = res.content_length();
        let report = res.extensions().get::<Report>().cloned();
        Ok(Got { status, version, headers, size, body: res.bytes().await.unwrap(), report })
    }
}

/// A request body for both doors: bytes of known length, or a stream of unknown length.
enum TestBody {
    Full(Option<Bytes>),
    Stream(VecDeque<Bytes>),
}

impl TestBody {
    fn stream(chunks: Vec<Bytes>) -> TestBody {
        TestBody::Stream(chunks.into())
    }
}

impl From<CallBody> for TestBody {
    fn from(body: CallBody) -> TestBody {
        match body {
            CallBody::Empty => TestBody::Full(None),
            CallBody::Bytes(b) => TestBody::Full(Some(b)),
            CallBody::Stream(chunks) => TestBody::stream(chunks),
        }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.get_mut() {
            TestBody::Full(b) => b.take(),
            TestBody::Stream(chunks) => chunks.pop_front(),
        };
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            TestBody::Full(b) => b.is_none(),
            TestBody::Stream(chunks) => chunks.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            TestBody::Stream(_) => SizeHint::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layers

fn generic(policy: Policy) -> RetryLayer {
    RetryLayer::builder().default_host(redial::core::generic::Generic, policy).rng_seed(7).build()
}

fn fast_policy() -> redial::core::PolicyBuilder {
    Policy::builder().backoff(Backoff::constant(Duration::from_millis(100)))
}

fn marketo_on_the_sim() -> RetryLayer {
    RetryLayer::builder().vendor_at(Vendor::Marketo, "127.0.0.1").unwrap().rng_seed(1).build()
}

const MARKETO_606: &str = r#"{"requestId":"e42b#14272d07d78","success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"}]}"#;
const MARKETO_RECORDS: &str = r#"{"requestId":"e42b#14272d07d78","success":true,"result":[{"id":50,"status":"created"},{"id":51,"status":"created"},{"status":"skipped","reasons":[{"code":"1005","message":"Lead already exists"}]}]}"#;

// ---------------------------------------------------------------------------------------------
// The scenarios, once

async fn retry_after_on_503_is_honoured<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::status(503).header("Retry-After", "2"));
    sim.enqueue("/x", Reply::json(200, r#"{"ok":true}"#).header("x-served-by", "sim"));
    let door = D::open(generic(Policy::default()));
    let started = Instant::now();
    let got = door.send(Call::get(sim.url("/x"))).await.unwrap();
    assert!(started.elapsed() >= 2 * S, "waited {:?}", started.elapsed());
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.version, Version::HTTP_11);
    assert_eq!(got.headers["x-served-by"], "sim");
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.body, r#"{"ok":true}"#);
    let report = got.report.unwrap();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].status, Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(report.attempts[0].delay, Some(2 * S));
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert!(log[1].at - log[0].at >= 2 * S);
}

async fn retry_after_over_the_cap_fails_at_once_with_the_hint<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(429).header("Retry-After", "3600"));
    let policy = Policy::builder().retry_after_cap(60 * S).deadline(7200 * S).build().unwrap();
    let door = D::open(generic(policy));
    let started = Instant::now();
    let err = door.send(Call::get(sim.url("/x"))).await.unwrap_err();
    assert!(started.elapsed() < S);
    assert_eq!(sim.count("/x"), 1);
    assert!(err.is_hint_exceeds_limit(), "{err}");
    assert_eq!(err.retry_after(), Some(3600 * S));
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.kind(), Some(Kind::Throttled));
    assert_eq!(err.report().attempt_count(), 1);
    assert!(err.to_string().contains("3600"), "{err}");
}

async fn post_reset_after_the_request_was_read_is_not_retried<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/create", Reply::ok().fault(Fault::ResetAfterRead));
    sim.set_fallback("/create", Reply::ok());
    let door = D::open(generic(Policy::default()));
    let call = Call::new(Method::POST, sim.url("/create"), CallBody::Bytes(Bytes::from_static(b"{\"create\":1}")));
    let err = door.send(call).await.unwrap_err();
    assert_eq!(sim.count("/create"), 1, "a create that may have happened was sent again");
    assert!(err.is_not_idempotent(), "{err}");
    assert_eq!(err.failure(), Some(Failure::Io));
    assert!(std::error::Error::source(&err).is_some(), "the transport error is kept");
}

async fn post_connection_refused_is_retried<D: FrontDoor>() {
    // A port that refuses connections now and serves 50 ms later.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sim = Sim::start_on(addr).await.unwrap();
        sim.set_fallback("/create", Reply::status(201));
        sim
    });
    let door = D::open(generic(fast_policy().build().unwrap()));
    let call = Call::new(Method::POST, format!("http://{addr}/create"), CallBody::Bytes(Bytes::from_static(b"x")));
    let got = door.send(call).await.unwrap();
    assert_eq!(got.status, StatusCode::CREATED);
    let report = got.report.unwrap();
    assert_eq!(report.attempts[0].failure, Some(Failure::Connect));
    assert_eq!(report.attempt_count(), 2);
    let sim = server.await.unwrap();
    assert_eq!(sim.count("/create"), 1);
    assert_eq!(sim.requests()[0].body, "x");
}

async fn bad_gateway_every_time_stops_at_max_attempts_and_owns_the_last_response<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    for i in 1..=10 {
        sim.enqueue("/x", Reply::status(502).header("x-attempt", &i.to_string()).body(format!("gateway said no #{i}")));
    }
    let door = D::open(generic(fast_policy().max_attempts(4).build().unwrap()));
    let err = door.send(Call::get(sim.url("/x"))).await.unwrap_err();
    assert_eq!(sim.count("/x"), 4);
    assert!(err.is_exhausted());
    assert_eq!(err.fail_reason(), Some(&FailReason::AttemptsExhausted { max: 4 }));
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(err.headers().unwrap()["x-attempt"], "4");
    assert_eq!(err.body().unwrap(), "gateway said no #4");
    assert!(err.body_is_complete());
    let statuses: Vec<_> = err.report().attempts.iter().map(|a| a.status.unwrap().as_u16()).collect();
    assert_eq!(statuses, [502; 4]);
    let res = err.into_response().unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.version(), Version::HTTP_11);
    assert_eq!(res.extensions().get::<Report>().unwrap().attempt_count(), 4);
}

async fn marketo_200_carrying_606_is_retried_and_the_success_returned<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    let success = r#"{"requestId":"a1","success":true,"result":[{"id":50}]}"#;
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, MARKETO_606));
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, success));
    let door = D::open(marketo_on_the_sim());
    let started = Instant::now();
    let got = door.send(Call::get(sim.url("/rest/v1/leads.json?filterType=id&filterValues=50"))).await.unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(sim.count("/rest/v1/leads.json"), 2);
    let report = got.report.unwrap();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].code.as_deref(), Some("606"));
    assert_eq!(report.attempts[0].kind, Kind::Throttled);
    let waited = report.attempts[0].delay.unwrap();
    assert!(started.elapsed() >= waited && waited >= 2 * S, "{waited:?}");
    assert_eq!(report.errors[0].1.code, "606");
    // The whole success body, rebuilt around the bytes redial read to classify it.
    assert_eq!(got.size, Some(success.len() as u64));
    assert_eq!(got.body, success);
}

async fn marketo_record_level_errors_are_a_success_with_the_errors_in_the_report<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/rest/v1/leads.json", Reply::json(200, MARKETO_RECORDS));
    let door = D::open(marketo_on_the_sim());
    let call = Call::new(
        Method::POST,
        sim.url("/rest/v1/leads.json"),
        CallBody::Bytes(Bytes::from_static(br#"{"action":"createOnly","input":[{},{},{}]}"#)),
    )
    .header("content-type", "application/json");
    let got = door.send(call).await.unwrap();
    assert_eq!(sim.count("/rest/v1/leads.json"), 1);
    let report = got.report.unwrap();
    assert_eq!(report.attempt_count(), 1);
    assert_eq!(report.last_kind(), Some(Kind::Partial));
    let records: Vec<_> = report.last_errors().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].code, "1005");
    assert_eq!(records[0].message.as_deref(), Some("Lead already exists"));
    assert_eq!(records[0].scope, ErrorScope::Record(2));
    assert_eq!(got.body, MARKETO_RECORDS);
}

async fn marketo_expired_token_logs_in_once_and_the_call_is_replayed<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    let mut config = sim_marketo::MarketoConfig::new("sim-client-id", "s3cr3t");
    config.rate_limit = None;
    let vendor = sim_marketo::install(&sim, config);
    let source =
        TokenSource::login(marketo::IdentityLogin::new(&sim.url("/identity"), "sim-client-id", "s3cr3t").unwrap());
    let layer = RetryLayer::builder()
        .host("127.0.0.1", Vendor::Marketo.profile(), Vendor::Marketo.policy())
        .unwrap()
        .auth("127.0.0.1", source)
        .unwrap()
        .rng_seed(5)
        .build();
    let door = D::open(layer);
    let leads = || Call::get(sim.url("/rest/v1/leads.json?filterType=id&filterValues=1"));
    // The first call logs in (through the door's own transport) before it is sent.
    assert_eq!(door.send(leads()).await.unwrap().status, StatusCode::OK);
    assert_eq!(vendor.logins(), 1);
    vendor.expire_tokens();
    let got = door.send(leads()).await.unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(vendor.logins(), 2);
    let report = got.report.unwrap();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].code.as_deref(), Some("602"));
}

async fn streaming_request_body_is_sent_once_and_the_error_says_why<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/upload", Reply::status(503));
    let door = D::open(generic(Policy::default()));
    let chunks = vec![Bytes::from_static(b"part one,"), Bytes::from_static(b"part two")];
    let err = door.send(Call::new(Method::PUT, sim.url("/upload"), CallBody::Stream(chunks))).await.unwrap_err();
    assert_eq!(sim.count("/upload"), 1);
    assert_eq!(sim.requests()[0].body, "part one,part two");
    assert!(err.is_not_replayable(), "{err}");
    assert_eq!(err.fail_reason(), Some(&FailReason::NotReplayable(NotReplayable::Streaming)));
    assert!(err.to_string().contains("stream"), "{err}");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
}

async fn a_10_mib_response_past_a_64_kib_inspect_limit_is_byte_identical<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    let body: Bytes =
        (0..10 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect::<Vec<_>>().into();
    sim.set_fallback("/big", Reply::ok().header("x-big", "yes").body(body.clone()));
    let layer = RetryLayer::new(InspectEverything, Policy::builder().inspect_limit(64 * 1024).build().unwrap());
    let door = D::open(layer);
    let got = door.send(Call::get(sim.url("/big"))).await.unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["x-big"], "yes");
    assert_eq!(got.size, Some(body.len() as u64), "the length is still known");
    assert_eq!(got.body.len(), body.len());
    assert!(got.body == body, "bytes differ");
}

async fn replayed_body_is_identical_on_every_attempt<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue_many("/put", [Reply::status(503), Reply::status(503), Reply::status(204)]);
    let door = D::open(generic(fast_policy().build().unwrap()));
    let call = Call::new(Method::PUT, sim.url("/put"), CallBody::Bytes(Bytes::from_static(b"{\"id\":42}")))
        .header("x-request", "r1");
    let got = door.send(call).await.unwrap();
    assert_eq!(got.status, StatusCode::NO_CONTENT);
    let log = sim.requests();
    assert_eq!(log.len(), 3);
    for r in &log {
        assert_eq!(r.method, Method::PUT);
        assert_eq!(r.body, "{\"id\":42}");
        assert_eq!(r.headers["x-request"], "r1");
        assert_eq!(r.headers["content-length"], "9");
    }
}

async fn a_hanging_attempt_is_cut_at_the_attempt_timeout_and_retried<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::ok().fault(Fault::Hang));
    sim.set_fallback("/x", Reply::ok().body("second"));
    let door = D::open(generic(fast_policy().attempt_timeout(2 * S).build().unwrap()));
    let started = Instant::now();
    let got = door.send(Call::get(sim.url("/x"))).await.unwrap();
    assert!(started.elapsed() >= 2 * S && started.elapsed() < 3 * S, "{:?}", started.elapsed());
    assert_eq!(got.body, "second");
    let report = got.report.unwrap();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].failure, Some(Failure::Timeout));
    assert_eq!(sim.count("/x"), 2);
}

async fn a_first_try_success_carries_no_report<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::ok().body("hello"));
    let door = D::open(generic(Policy::default()));
    let got = door.send(Call::get(sim.url("/x"))).await.unwrap();
    assert!(got.report.is_none());
    assert_eq!(got.body, "hello");
}

/// Every scenario, through both doors.
async fn get_reset_after_the_request_was_read_is_retried<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::ok().fault(Fault::ResetAfterRead));
    sim.set_fallback("/x", Reply::ok().body("second"));
    let door = D::open(generic(fast_policy().build().unwrap()));
    let got = door.send(Call::get(sim.url("/x"))).await.unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "second");
    assert_eq!(sim.count("/x"), 2);
    assert_eq!(got.report.unwrap().attempts[0].failure, Some(Failure::Io));
}

async fn deadline_reached_during_a_backoff_fails_then_and_never_sleeps_past_it<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(503).header("Retry-After", "4"));
    let door = D::open(generic(Policy::builder().max_attempts(100).deadline(10 * S).build().unwrap()));
    let started = Instant::now();
    let err = door.send(Call::get(sim.url("/x"))).await.unwrap_err();
    let elapsed = started.elapsed();
    // Attempts at 0 s, 4 s and 8 s; a fourth would start at 12 s, past the 10 s deadline.
    assert_eq!(sim.count("/x"), 3);
    assert!(elapsed >= 8 * S && elapsed < 9 * S, "{elapsed:?}");
    assert!(err.is_deadline(), "{err}");
    assert!(err.is_hint_exceeds_limit());
    assert_eq!(err.retry_after(), Some(4 * S));
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
}

async fn backoff_that_would_pass_the_deadline_is_not_slept<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(502));
    let policy =
        Policy::builder().max_attempts(100).deadline(10 * S).backoff(Backoff::constant(3 * S)).build().unwrap();
    let door = D::open(generic(policy));
    let started = Instant::now();
    let err = door.send(Call::get(sim.url("/x"))).await.unwrap_err();
    assert_eq!(sim.count("/x"), 4); // 0, 3, 6, 9 s
    assert!(started.elapsed() < 10 * S);
    assert!(matches!(err.fail_reason(), Some(FailReason::DeadlineExceeded { .. })), "{err}");
}

async fn the_deadline_also_ends_a_hanging_attempt<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::ok().fault(Fault::Hang));
    let door = D::open(generic(Policy::builder().deadline(5 * S).build().unwrap()));
    let started = Instant::now();
    let err = door.send(Call::get(sim.url("/x"))).await.unwrap_err();
    assert_eq!(started.elapsed(), 5 * S);
    assert!(err.is_timeout());
    assert!(err.is_deadline(), "{err}");
}

async fn body_over_the_replay_limit_is_sent_once<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/upload", Reply::status(503));
    let door = D::open(generic(Policy::builder().replay_limit(1024).build().unwrap()));
    let call = Call::new(Method::PUT, sim.url("/upload"), CallBody::Bytes(Bytes::from(vec![b'x'; 2048])));
    let err = door.send(call).await.unwrap_err();
    assert_eq!(sim.count("/upload"), 1);
    assert_eq!(sim.requests()[0].body.len(), 2048);
    assert_eq!(err.fail_reason(), Some(&FailReason::NotReplayable(NotReplayable::TooLarge { limit: 1024 })));
}

async fn problem_details_reach_the_caller<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        "/x",
        Reply::status(403)
            .header("content-type", "application/problem+json")
            .body(r#"{"type":"https://example.com/probs/out-of-credit","title":"You do not have enough credit.","detail":"Your current balance is 30, but that costs 50.","balance":30}"#),
    );
    let door = D::open(generic(Policy::default()));
    let err = door.send(Call::get(sim.url("/x"))).await.unwrap_err();
    assert!(err.is_final());
    assert_eq!(sim.count("/x"), 1);
    let p = err.problem().unwrap();
    assert_eq!(p.title.as_deref(), Some("You do not have enough credit."));
    assert_eq!(p.extensions["balance"], 30);
    assert_eq!(err.vendor_errors().next().unwrap().code, "out-of-credit");
}

async fn idempotency_key_makes_a_post_retryable<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/create", Reply::ok().fault(Fault::ResetAfterRead));
    sim.set_fallback("/create", Reply::status(201));
    let door = D::open(generic(fast_policy().build().unwrap()));
    let call = Call::new(Method::POST, sim.url("/create"), CallBody::Bytes(Bytes::from_static(b"{\"create\":1}")))
        .header("idempotency-key", "8e03978e-40d5-43e8-bc93-6894a57f9324");
    let got = door.send(call).await.unwrap();
    assert_eq!(got.status, StatusCode::CREATED);
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].headers["idempotency-key"], log[1].headers["idempotency-key"]);
    assert_eq!(log[1].method, Method::POST);
}

async fn marketo_200_carrying_603_is_an_error_that_owns_the_vendor_code<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        "/rest/v1/leads.json",
        Reply::json(200, r#"{"requestId":"x","success":false,"errors":[{"code":603,"message":"Access denied"}]}"#),
    );
    let door = D::open(marketo_on_the_sim());
    let err = door.send(Call::get(sim.url("/rest/v1/leads.json"))).await.unwrap_err();
    assert_eq!(sim.count("/rest/v1/leads.json"), 1);
    assert!(err.is_final());
    assert_eq!(err.status(), Some(StatusCode::OK));
    assert_eq!(err.kind(), Some(Kind::Fatal));
    let e = err.vendor_errors().next().unwrap();
    assert_eq!((e.code.as_str(), e.message.as_deref()), ("603", Some("Access denied")));
    assert!(err.to_string().contains("603"), "{err}");
}

/// `final_responses_as_ok`: a response redial gives up on comes back as a response, whole,
/// with why in its report; what is not a vendor's answer stays an error.
async fn with_final_responses_as_ok_what_redial_gives_up_on_is_returned_whole<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    for i in 1..=4 {
        sim.enqueue("/x", Reply::status(502).header("x-attempt", &i.to_string()).body(format!("gateway said no #{i}")));
    }
    // An error body longer than the inspect limit: what redial read of it, then the rest.
    let big: Bytes = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    sim.set_fallback("/missing", Reply::status(404).body(big.clone()));
    let policy = fast_policy().max_attempts(4).inspect_limit(64 * 1024).build().unwrap();
    let layer = RetryLayer::builder()
        .default_host(redial::core::generic::Generic, policy)
        .final_responses_as_ok()
        .rng_seed(7)
        .build();
    let door = D::open(layer);

    let got = door.send(Call::get(sim.url("/x"))).await.unwrap();
    assert_eq!(sim.count("/x"), 4);
    assert_eq!((got.status, &got.headers["x-attempt"]), (StatusCode::BAD_GATEWAY, &HeaderValue::from_static("4")));
    assert_eq!(got.body, "gateway said no #4");
    let report = got.report.unwrap();
    assert_eq!(report.gave_up, Some(FailReason::AttemptsExhausted { max: 4 }));
    let statuses: Vec<_> = report.attempts.iter().map(|a| a.status.unwrap().as_u16()).collect();
    assert_eq!(statuses, [502; 4]);
    assert_eq!(report.attempts.last().unwrap().action, redial::core::Action::Fail);

    let got = door.send(Call::get(sim.url("/missing"))).await.unwrap();
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.size, Some(big.len() as u64), "the length is still known");
    assert!(got.body == big, "the error body comes back byte-identical");
    let report = got.report.unwrap();
    assert_eq!((report.gave_up.as_ref(), report.attempt_count()), (Some(&FailReason::Final), 1));

    // A POST reset after it was read is not the vendor's answer: still an error.
    sim.enqueue("/create", Reply::ok().fault(Fault::ResetAfterRead));
    let post = Call::new(Method::POST, sim.url("/create"), CallBody::Bytes(Bytes::from_static(b"x")));
    assert!(door.send(post).await.unwrap_err().is_not_idempotent());
}

/// The same for a vendor's answer in a 200: Marketo 603 (access denied) is final, and comes
/// back as the 200 it was, its vendor code in the report.
async fn with_final_responses_as_ok_a_marketo_603_is_the_200_it_was<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    let denied = r#"{"requestId":"x","success":false,"errors":[{"code":603,"message":"Access denied"}]}"#;
    sim.set_fallback("/rest/v1/leads.json", Reply::json(200, denied));
    let layer = RetryLayer::builder().vendor_at(Vendor::Marketo, "127.0.0.1").unwrap().final_responses_as_ok().build();
    let got = D::open(layer).send(Call::get(sim.url("/rest/v1/leads.json"))).await.unwrap();
    assert_eq!((got.status, &got.body[..]), (StatusCode::OK, denied.as_bytes()));
    let report = got.report.unwrap();
    assert_eq!(report.gave_up, Some(FailReason::Final));
    assert_eq!(report.last_kind(), Some(Kind::Fatal));
    let e = report.last_errors().next().unwrap();
    assert_eq!((e.code.as_str(), e.message.as_deref()), ("603", Some("Access denied")));
    assert_eq!(sim.count("/rest/v1/leads.json"), 1);
}

/// `RequestLimits` in a request's extensions tighten its host's policy, never loosen it.
async fn request_limits_tighten_the_hosts_policy_for_that_request<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(503).header("retry-after", "2"));
    let door = D::open(generic(fast_policy().max_attempts(4).build().unwrap()));

    // No retries: one attempt, and the error says the (request's) attempt limit was reached.
    let err = door.send(Call::get(sim.url("/x")).limits(RequestLimits::no_retries())).await.unwrap_err();
    assert_eq!(sim.count("/x"), 1);
    assert_eq!(err.fail_reason(), Some(&FailReason::AttemptsExhausted { max: 1 }));
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));

    // More attempts than the host allows: the host's 4.
    let err = door.send(Call::get(sim.url("/x")).limits(RequestLimits::new().max_attempts(9))).await.unwrap_err();
    assert_eq!(sim.count("/x"), 1 + 4);
    assert_eq!(err.fail_reason(), Some(&FailReason::AttemptsExhausted { max: 4 }));

    // A 3 s deadline: the first 2 s wait fits, the second does not (1 s is left).
    let started = Instant::now();
    let limits = RequestLimits::new().deadline(3 * S);
    let err = door.send(Call::get(sim.url("/x")).limits(limits)).await.unwrap_err();
    assert_eq!(sim.count("/x"), 5 + 2);
    assert!(
        matches!(err.fail_reason(), Some(FailReason::HintExceedsLimit { deadline: true, .. })),
        "{:?}",
        err.fail_reason()
    );
    assert!(started.elapsed() < 3 * S, "{:?}", started.elapsed());

    // Without limits, the same door keeps the host's policy.
    let err = door.send(Call::get(sim.url("/x"))).await.unwrap_err();
    assert_eq!(err.report().attempt_count(), 4);
}

fn adobe_on_the_sim() -> RetryLayer {
    RetryLayer::builder().vendor_at(Vendor::AdobeEdge, "127.0.0.1").unwrap().rng_seed(1).build()
}

async fn adobe_207_is_returned_with_errors_and_warnings_never_retried<D: FrontDoor>() {
    let body = r#"{"requestId":"72eaa048-207e-4dde-bf16-0cb2b21336d5","handle":[],"errors":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0201-503","status":503,"title":"The 'com.adobe.experience.platform.ode' service is temporarily unable to serve this request. Please try again later."}],"warnings":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0204-200","status":200,"title":"A warning occurred while calling the 'com.adobe.audiencemanager' service for this request.","report":{"cause":{"message":"Cannot read related customer for device id: ...","code":202}}}]}"#;
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/ee/v2/interact", Reply::json(207, body));
    let door = D::open(adobe_on_the_sim());
    let call = Call::new(Method::POST, sim.url("/ee/v2/interact"), CallBody::Bytes(Bytes::from_static(b"{}")));
    let got = door.send(call).await.unwrap();
    assert_eq!(got.status, StatusCode::MULTI_STATUS);
    assert_eq!(sim.count("/ee/v2/interact"), 1);
    let report = got.report.unwrap();
    let scopes: Vec<_> = report.last_errors().map(|e| (e.code.as_str(), e.scope)).collect();
    assert_eq!(scopes, [("EXEG-0201-503", ErrorScope::NonFatal), ("EXEG-0204-200", ErrorScope::Warning)]);
    assert_eq!(got.body, body);
}

async fn adobe_429_without_retry_after_waits_five_seconds<D: FrontDoor>() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue(
        "/ee/v2/interact",
        Reply::status(429).header("content-type", "application/problem+json").body(
            r#"{"type":"https://ns.adobe.com/aep/errors/EXEG-0000-429","status":429,"title":"Too many requests"}"#,
        ),
    );
    sim.enqueue("/ee/v2/interact", Reply::json(200, r#"{"requestId":"r","handle":[]}"#));
    let door = D::open(adobe_on_the_sim());
    let call = Call::new(Method::POST, sim.url("/ee/v2/interact"), CallBody::Bytes(Bytes::from_static(b"{}")));
    let got = door.send(call).await.unwrap();
    assert_eq!(got.status, StatusCode::OK);
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].at - log[0].at, 5 * S);
}

macro_rules! through_both_doors {
    ($($scenario:ident),* $(,)?) => {
        mod tower_door {
            $(
                #[tokio::test(start_paused = true)]
                async fn $scenario() {
                    super::$scenario::<super::TowerDoor>().await
                }
            )*
        }
        mod reqwest_door {
            $(
                #[tokio::test(start_paused = true)]
                async fn $scenario() {
                    super::$scenario::<super::ReqwestDoor>().await
                }
            )*
        }
    };
}

through_both_doors!(
    retry_after_on_503_is_honoured,
    retry_after_over_the_cap_fails_at_once_with_the_hint,
    post_reset_after_the_request_was_read_is_not_retried,
    post_connection_refused_is_retried,
    bad_gateway_every_time_stops_at_max_attempts_and_owns_the_last_response,
    marketo_200_carrying_606_is_retried_and_the_success_returned,
    marketo_record_level_errors_are_a_success_with_the_errors_in_the_report,
    marketo_expired_token_logs_in_once_and_the_call_is_replayed,
    streaming_request_body_is_sent_once_and_the_error_says_why,
    a_10_mib_response_past_a_64_kib_inspect_limit_is_byte_identical,
    replayed_body_is_identical_on_every_attempt,
    a_hanging_attempt_is_cut_at_the_attempt_timeout_and_retried,
    a_first_try_success_carries_no_report,
    get_reset_after_the_request_was_read_is_retried,
    deadline_reached_during_a_backoff_fails_then_and_never_sleeps_past_it,
    backoff_that_would_pass_the_deadline_is_not_slept,
    the_deadline_also_ends_a_hanging_attempt,
    body_over_the_replay_limit_is_sent_once,
    problem_details_reach_the_caller,
    idempotency_key_makes_a_post_retryable,
    marketo_200_carrying_603_is_an_error_that_owns_the_vendor_code,
    adobe_207_is_returned_with_errors_and_warnings_never_retried,
    adobe_429_without_retry_after_waits_five_seconds,
    with_final_responses_as_ok_what_redial_gives_up_on_is_returned_whole,
    with_final_responses_as_ok_a_marketo_603_is_the_200_it_was,
    request_limits_tighten_the_hosts_policy_for_that_request,
);

// ---------------------------------------------------------------------------------------------
// What only the reqwest door has

static ATTEMPTS_SEEN: AtomicUsize = AtomicUsize::new(0);

/// A middleware after redial: counts the attempts that reach it, and checks that each is a
/// request reqwest can clone, with its bytes readable (as a signing middleware needs).
fn count_attempts<'a>(
    req: reqwest::Request,
    extensions: &'a mut http::Extensions,
    next: reqwest_middleware::Next<'a>,
) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a>> {
    ATTEMPTS_SEEN.fetch_add(1, Ordering::SeqCst);
    assert!(req.try_clone().is_some(), "an attempt of a bytes body can be cloned");
    assert_eq!(req.body().and_then(|b| b.as_bytes()), Some(&b"{\"id\":42}"[..]));
    next.run(req, extensions)
}

#[tokio::test(start_paused = true)]
async fn reqwest_each_attempt_runs_the_middlewares_after_redial() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue_many("/put", [Reply::status(503), Reply::status(503), Reply::status(204)]);
    let client = ClientBuilder::new(reqwest_client())
        .with(RedialMiddleware::new(generic(fast_policy().build().unwrap())))
        .with(count_attempts)
        .build();
    let res = client.put(sim.url("/put")).body("{\"id\":42}").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(ATTEMPTS_SEEN.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn reqwest_a_stream_of_known_length_keeps_its_content_length_and_is_sent_once() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/upload", Reply::status(503));
    let client = ClientBuilder::new(reqwest_client())
        .with(RedialMiddleware::new(generic(fast_policy().build().unwrap())))
        .build();
    let body = reqwest::Body::wrap(http_body_util::Full::new(Bytes::from_static(b"0123456789")));
    let err = client.put(sim.url("/upload")).body(body).send().await.unwrap_err();
    let err = redial_reqwest::redial_error(&err).unwrap();
    assert_eq!(err.fail_reason(), Some(&FailReason::NotReplayable(NotReplayable::Streaming)));
    let log = sim.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].headers["content-length"], "10");
    assert!(!log[0].headers.contains_key("transfer-encoding"));
    assert_eq!(log[0].body, "0123456789");
}

#[tokio::test(start_paused = true)]
async fn reqwest_own_timeout_bounds_each_attempt_and_reads_as_a_timeout() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::ok().fault(Fault::Hang));
    sim.set_fallback("/x", Reply::ok().body("second"));
    let layer = RetryLayer::builder()
        .default_host(redial::core::generic::Generic, fast_policy().build().unwrap())
        .failure_classifier(redial_reqwest::classify_error)
        .build();
    let client = ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(layer)).build();
    let started = Instant::now();
    // reqwest's per-request timeout travels with every attempt the engine makes.
    let res = client.get(sim.url("/x")).timeout(3 * S).send().await.unwrap();
    assert!(started.elapsed() >= 3 * S && started.elapsed() < 4 * S, "{:?}", started.elapsed());
    let report = res.extensions().get::<Report>().unwrap();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].failure, Some(Failure::Timeout));
    assert_eq!(res.text().await.unwrap(), "second");
}

#[tokio::test(start_paused = true)]
async fn reqwest_response_url_is_the_final_url_after_redirects() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/old", Reply::status(503).header("Retry-After", "1"));
    sim.set_fallback("/old", Reply::status(301).header("Location", "/new"));
    sim.set_fallback("/new", Reply::ok().body("moved here"));
    let client = ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(generic(Policy::default()))).build();
    let res = client.get(sim.url("/old")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().as_str(), sim.url("/new"));
    assert_eq!(res.extensions().get::<Report>().unwrap().attempt_count(), 2);
    assert_eq!(res.text().await.unwrap(), "moved here");
}

#[tokio::test(start_paused = true)]
async fn reqwest_a_response_the_engine_read_keeps_its_final_url_after_redirects() {
    // Marketo's rules read every 2xx JSON body: the response the caller gets is rebuilt
    // around the bytes read, and must still name the URL reqwest was redirected to.
    let sim = Sim::start().await.unwrap();
    let body = r#"{"requestId":"1#a","success":true,"result":[{"id":7}]}"#;
    sim.set_fallback("/old", Reply::status(301).header("Location", "/new"));
    sim.set_fallback("/new", Reply::json(200, body));
    let policy = Vendor::Marketo.policy().to_builder().no_rate_limit().no_max_concurrency().build().unwrap();
    let layer = redial::builder().host("127.0.0.1", Vendor::Marketo.profile(), policy).unwrap().build();
    let client = ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(layer)).build();
    let res = client.get(sim.url("/old")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().as_str(), sim.url("/new"));
    assert!(res.remote_addr().is_some(), "reqwest's own extensions come through");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), body);
}

#[tokio::test(start_paused = true)]
async fn reqwest_hundred_concurrent_calls_with_an_expired_token_cause_one_login() {
    let sim = Sim::start().await.unwrap();
    let mut config = sim_marketo::MarketoConfig::new("sim-client-id", "s3cr3t");
    config.rate_limit = None;
    config.max_concurrency = None;
    let vendor = sim_marketo::install(&sim, config);
    let source =
        TokenSource::login(marketo::IdentityLogin::new(&sim.url("/identity"), "sim-client-id", "s3cr3t").unwrap());
    let layer = RetryLayer::builder()
        .host("127.0.0.1", Vendor::Marketo.profile(), Vendor::Marketo.policy())
        .unwrap()
        .auth("127.0.0.1", source)
        .unwrap()
        .build();
    let client =
        ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(layer).with_client(reqwest_client())).build();
    let url = sim.url("/rest/v1/leads.json?filterType=id&filterValues=1");
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::OK);
    vendor.expire_tokens();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move { client.get(&url).send().await.map(|r| r.status()) });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(vendor.logins(), 2, "one login for the hundred");
}

#[tokio::test(start_paused = true)]
async fn reqwest_a_login_that_outlives_its_call_is_finished_by_the_background_client() {
    let sim = Sim::start().await.unwrap();
    let mut config = sim_marketo::MarketoConfig::new("sim-client-id", "s3cr3t");
    config.rate_limit = None;
    let vendor = sim_marketo::install(&sim, config);
    let source =
        TokenSource::login(marketo::IdentityLogin::new(&sim.url("/identity"), "sim-client-id", "s3cr3t").unwrap())
            .login_backoff(600 * S, 600 * S);
    let layer = RetryLayer::builder()
        .host("127.0.0.1", Vendor::Marketo.profile(), Vendor::Marketo.policy())
        .unwrap()
        .auth("127.0.0.1", source.clone())
        .unwrap()
        .build();
    let client =
        ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(layer).with_client(reqwest_client())).build();
    let url = sim.url("/rest/v1/leads.json?filterType=id&filterValues=1");
    let started = Instant::now();
    // The first call starts the login, which hangs; the caller gives up on it.
    vendor.hang_logins(true);
    let first = tokio::time::timeout(S, client.get(&url).send()).await;
    assert!(first.is_err(), "the first call was cancelled");
    assert!(source.login_in_flight());
    vendor.hang_logins(false);
    // The login goes on, through the background client, and the next call uses its token.
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(source.logins(), 1, "the cancelled call's login was not started again");
    assert!(started.elapsed() < 10 * S, "no login backoff: {:?}", started.elapsed());
}

/// A middleware after redial that refuses every call, as a signing middleware without its key.
struct Refuses(std::sync::Arc<AtomicUsize>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Refuses {
    async fn handle(
        &self,
        _: reqwest::Request,
        _: &mut http::Extensions,
        _: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(reqwest_middleware::Error::middleware(std::io::Error::other("the signing key is missing")))
    }
}

#[tokio::test(start_paused = true)]
async fn reqwest_the_error_of_a_middleware_after_redial_is_final() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/things", Reply::json(200, "{}"));
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let client = ClientBuilder::new(reqwest_client())
        .with(RedialMiddleware::new(RetryLayer::generic()))
        .with(Refuses(calls.clone()))
        .build();
    let e = client.get(sim.url("/things")).send().await.unwrap_err();
    let err = redial_reqwest::redial_error(&e).expect("redial's error");
    assert!(err.is_final(), "{err}");
    assert_eq!(err.failure(), Some(Failure::Local));
    assert_eq!(err.report().attempt_count(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not sent again: it would meet the same refusal");
    let source = std::error::Error::source(err).expect("the middleware's error");
    assert!(source.to_string().contains("signing key"), "{source}");
    assert_eq!(sim.count("/things"), 0);
}

#[tokio::test(start_paused = true)]
async fn reqwest_a_reqwest_timeout_is_a_timeout_with_the_default_classifier() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/slow", Reply::json(200, "{}").delay(10 * S));
    let layer = RetryLayer::new(redial::core::generic::Generic, Policy::builder().max_attempts(2).build().unwrap());
    let client = ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(layer)).build();
    let e = client.get(sim.url("/slow")).timeout(S).send().await.unwrap_err();
    let err = redial_reqwest::redial_error(&e).expect("redial's error");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.failure(), Some(Failure::Timeout));
    assert_eq!(err.report().attempt_count(), 2, "a GET that timed out is retried");
}

/// A background token renewal is started by a call that does not wait for it: without a client
/// given, it still lands (through a default client) instead of failing when its call ends, and
/// no call waits at the token's expiry.
#[tokio::test(start_paused = true)]
async fn reqwest_without_a_client_a_background_renewal_still_lands() {
    let sim = Sim::start().await.unwrap();
    // An identity service that takes 5 s to answer with a 300 s token, and an API that takes
    // half a second: the call that starts a renewal ends long before the renewal does (and
    // after the renewal's request has reached the vendor).
    let token = r#"{"access_token":"tok","token_type":"bearer","expires_in":300,"scope":"x"}"#;
    sim.set_fallback("/identity/oauth/token", Reply::json(200, token).delay(5 * S));
    sim.set_fallback("/api", Reply::json(200, "{}").delay(S / 2));
    let source = TokenSource::login(marketo::IdentityLogin::new(&sim.url("/identity"), "id", "secret").unwrap());
    let layer = RetryLayer::builder()
        .host("127.0.0.1", redial::core::generic::Generic, Policy::default())
        .unwrap()
        .auth("127.0.0.1", source.clone())
        .unwrap()
        .build();
    let client = ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(layer)).build();
    // 400 calls, one every 1.5 s (600 s): the 300 s token is renewed in the background twice.
    let mut slowest = Duration::ZERO;
    for second in 0..400 {
        let started = Instant::now();
        assert_eq!(client.get(sim.url("/api")).send().await.unwrap().status(), StatusCode::OK);
        if second > 0 {
            slowest = slowest.max(started.elapsed());
        }
        tokio::time::sleep(S).await;
    }
    assert!(slowest < S, "a call waited {slowest:?} for a token");
    assert_eq!(source.logins(), 3, "the first login and two renewals");
    // Each renewal went once: not cut off with its call and sent again.
    assert_eq!(sim.count("/identity/oauth/token"), 3, "login requests at the vendor");
}

/// Responsys failed over: the call that met `API_NOT_ALLOWED_IN_SECONDARY` ends at once, so the
/// probe it started must get through on its own, or the host would stay in failover for good.
#[tokio::test(start_paused = true)]
async fn reqwest_without_a_client_the_failover_probe_still_brings_the_host_back() {
    use redial::hooks::{FailoverMode, Probe};
    use redial::vendors::responsys;
    use redial_sim::vendors::responsys as sim_responsys;

    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", "pw"));
    let login = responsys::PasswordLogin::new(&sim.url(""), "api-user", "pw").unwrap();
    let probe_url = sim.url("/rest/api/v1.3/lists");
    let layer = RetryLayer::builder()
        .host("127.0.0.1", Vendor::Responsys.profile(), Vendor::Responsys.policy())
        .unwrap()
        .auth("127.0.0.1", TokenSource::login(login))
        .unwrap()
        .failover_probe(
            "127.0.0.1",
            Probe::new(30 * S, move || http::Request::get(&probe_url).body(Bytes::new()).unwrap()),
        )
        .unwrap()
        .build();
    let client = ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(layer.clone())).build();
    let lists = sim.url("/rest/api/v1.3/lists");
    assert_eq!(client.get(&lists).send().await.unwrap().status(), StatusCode::OK);

    vendor.set_secondary(true);
    let err = client.get(&lists).send().await.unwrap_err();
    assert!(redial_reqwest::redial_error(&err).is_some_and(Error::is_failover), "{err}");
    assert!(matches!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Secondary { .. })));

    vendor.set_secondary(false);
    tokio::time::sleep(65 * S).await;
    assert_eq!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Primary));
    assert_eq!(client.get(&lists).send().await.unwrap().status(), StatusCode::OK);
}

/// reqwest users mark a request with `RequestBuilder::with_extension`: a POST that may have
/// reached the server is re-sent only when marked safe, and `AddIdempotencyKey` sends one key
/// on every attempt.
#[tokio::test(start_paused = true)]
async fn reqwest_with_extension_marks_a_post_retry_safe_or_keyed() {
    let sim = Sim::start().await.unwrap();
    let client = ClientBuilder::new(reqwest_client()).with(RedialMiddleware::new(RetryLayer::generic())).build();
    let url = sim.url("/v1/upsert");

    sim.enqueue("/v1/upsert", Reply::status(500));
    let err = client.post(&url).body("{}").send().await.unwrap_err();
    assert_eq!(redial_reqwest::redial_error(&err).unwrap().report().attempt_count(), 1, "not marked: not re-sent");

    sim.enqueue("/v1/upsert", Reply::status(500));
    sim.enqueue("/v1/upsert", Reply::status(200));
    let res = client.post(&url).body("{}").with_extension(redial::RetrySafe).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.extensions().get::<Report>().unwrap().attempt_count(), 2);

    sim.enqueue("/v1/upsert", Reply::status(500));
    sim.enqueue("/v1/upsert", Reply::status(200));
    let res = client.post(&url).body("{}").with_extension(redial::core::AddIdempotencyKey).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let log = sim.requests();
    let keys: Vec<_> = log.iter().rev().take(2).map(|r| r.headers["idempotency-key"].clone()).collect();
    assert_eq!(keys[0], keys[1], "one key, on both attempts");
}
