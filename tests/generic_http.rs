//! The generic HTTP rules end to end: redial over hyper-util's legacy `Client`, against the
//! simulator over real loopback sockets, on tokio's paused clock.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redial::core::backoff::Backoff;
use redial::core::budget::BudgetConfig;
use redial::core::{FailReason, Failure, Kind};
use redial::{Policy, Report, RetryBody, RetryLayer};
use redial_sim::{Fault, Reply, Sim};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

const S: Duration = Duration::from_secs(1);

fn hyper_client<B>() -> Client<HttpConnector, RetryBody<B>>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

fn layer(policy: Policy) -> RetryLayer {
    RetryLayer::builder().default_host(redial::core::generic::Generic, policy).rng_seed(7).build()
}

fn fast_policy() -> redial::core::PolicyBuilder {
    Policy::builder().backoff(Backoff::constant(Duration::from_millis(100)))
}

async fn send(
    layer: RetryLayer,
    req: Request<Full<Bytes>>,
) -> Result<Response<redial::ResponseBody<hyper::body::Incoming>>, redial::Error> {
    ServiceBuilder::new().layer(layer).service(hyper_client()).oneshot(req).await
}

fn get(sim: &Sim, path: &str) -> Request<Full<Bytes>> {
    Request::get(sim.url(path)).body(Full::default()).unwrap()
}

fn post(sim: &Sim, path: &str) -> Request<Full<Bytes>> {
    Request::post(sim.url(path)).body(Full::new(Bytes::from_static(b"{\"create\":1}"))).unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_503_is_honoured() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::status(503).header("Retry-After", "2"));
    sim.enqueue("/x", Reply::json(200, r#"{"ok":true}"#));
    let started = Instant::now();
    let res = send(layer(Policy::default()), get(&sim, "/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(started.elapsed() >= 2 * S, "waited {:?}", started.elapsed());
    let report = res.extensions().get::<Report>().unwrap().clone();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].delay, Some(2 * S));
    assert_eq!(report.attempts[0].status, Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), r#"{"ok":true}"#);
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert!(log[1].at - log[0].at >= 2 * S);
}

#[tokio::test(start_paused = true)]
async fn retry_after_over_the_cap_fails_at_once_with_the_hint() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(429).header("Retry-After", "3600"));
    let policy = Policy::builder().retry_after_cap(60 * S).deadline(7200 * S).build().unwrap();
    let started = Instant::now();
    let err = send(layer(policy), get(&sim, "/x")).await.unwrap_err();
    assert_eq!(sim.count("/x"), 1);
    assert!(started.elapsed() < S);
    assert!(err.is_hint_exceeds_limit(), "{err}");
    assert!(!err.is_deadline());
    assert_eq!(err.retry_after(), Some(3600 * S));
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.kind(), Some(Kind::Throttled));
    assert_eq!(err.report().attempt_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_reset_after_the_request_was_read_is_not_retried() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/create", Reply::ok().fault(Fault::ResetAfterRead));
    sim.set_fallback("/create", Reply::ok());
    let err = send(layer(Policy::default()), post(&sim, "/create")).await.unwrap_err();
    assert_eq!(sim.count("/create"), 1, "a create that may have happened was sent again");
    assert!(err.is_not_idempotent(), "{err}");
    assert!(err.is_transport());
    assert_eq!(err.failure(), Some(Failure::Io));
    assert!(std::error::Error::source(&err).is_some(), "the transport error is kept");
}

#[tokio::test(start_paused = true)]
async fn get_reset_after_the_request_was_read_is_retried() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/x", Reply::ok().fault(Fault::ResetAfterRead));
    sim.set_fallback("/x", Reply::ok());
    let res = send(layer(fast_policy().build().unwrap()), get(&sim, "/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(sim.count("/x"), 2);
}

#[tokio::test(start_paused = true)]
async fn post_connection_refused_is_retried() {
    // A port that refuses connections now and serves 100 ms later.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sim = Sim::start_on(addr).await.unwrap();
        sim.set_fallback("/create", Reply::status(201));
        sim
    });
    let req = Request::post(format!("http://{addr}/create")).body(Full::new(Bytes::from_static(b"x"))).unwrap();
    let res = send(layer(fast_policy().build().unwrap()), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let report = res.extensions().get::<Report>().unwrap();
    assert_eq!(report.attempts[0].failure, Some(Failure::Connect));
    assert_eq!(report.attempt_count(), 2);
    let sim = server.await.unwrap();
    assert_eq!(sim.count("/create"), 1);
}

#[tokio::test(start_paused = true)]
async fn bad_gateway_every_time_stops_at_max_attempts_and_owns_the_last_response() {
    let sim = Sim::start().await.unwrap();
    for i in 1..=10 {
        sim.enqueue("/x", Reply::status(502).header("x-attempt", &i.to_string()).body(format!("gateway said no #{i}")));
    }
    let err = send(layer(fast_policy().max_attempts(4).build().unwrap()), get(&sim, "/x")).await.unwrap_err();
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
    assert_eq!(res.extensions().get::<Report>().unwrap().attempt_count(), 4);
}

#[tokio::test(start_paused = true)]
async fn deadline_reached_during_a_backoff_fails_then_and_never_sleeps_past_it() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(503).header("Retry-After", "4"));
    let policy = Policy::builder().max_attempts(100).deadline(10 * S).build().unwrap();
    let started = Instant::now();
    let err = send(layer(policy), get(&sim, "/x")).await.unwrap_err();
    let elapsed = started.elapsed();
    // Attempts at 0 s, 4 s and 8 s; a fourth would start at 12 s, past the 10 s deadline.
    assert_eq!(sim.count("/x"), 3);
    assert!(elapsed >= 8 * S && elapsed < 9 * S, "{elapsed:?}");
    assert!(err.is_deadline(), "{err}");
    assert!(err.is_hint_exceeds_limit());
    assert_eq!(err.retry_after(), Some(4 * S));
}

#[tokio::test(start_paused = true)]
async fn backoff_that_would_pass_the_deadline_is_not_slept() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::status(502));
    let policy =
        Policy::builder().max_attempts(100).deadline(10 * S).backoff(Backoff::constant(3 * S)).build().unwrap();
    let started = Instant::now();
    let err = send(layer(policy), get(&sim, "/x")).await.unwrap_err();
    assert_eq!(sim.count("/x"), 4); // 0, 3, 6, 9 s
    assert!(started.elapsed() < 10 * S);
    assert!(matches!(err.fail_reason(), Some(FailReason::DeadlineExceeded { .. })), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_also_ends_a_hanging_attempt() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::ok().fault(Fault::Hang));
    let policy = Policy::builder().deadline(5 * S).build().unwrap();
    let started = Instant::now();
    let err = send(layer(policy), get(&sim, "/x")).await.unwrap_err();
    assert_eq!(started.elapsed(), 5 * S);
    assert!(err.is_timeout());
    assert!(err.is_deadline(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn streaming_request_body_is_sent_once_and_the_error_says_why() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/upload", Reply::status(503));
    let chunks = futures_stream(vec![Bytes::from_static(b"part one,"), Bytes::from_static(b"part two")]);
    let req = Request::put(sim.url("/upload")).body(StreamBody::new(chunks)).unwrap();
    let svc = ServiceBuilder::new().layer(layer(Policy::default())).service(hyper_client());
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(sim.count("/upload"), 1);
    assert_eq!(sim.requests()[0].body, "part one,part two");
    assert!(err.is_not_replayable(), "{err}");
    assert!(err.to_string().contains("stream"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn body_over_the_replay_limit_is_sent_once() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/upload", Reply::status(503));
    let req = Request::put(sim.url("/upload")).body(Full::new(Bytes::from(vec![b'x'; 2048]))).unwrap();
    let err = send(layer(Policy::builder().replay_limit(1024).build().unwrap()), req).await.unwrap_err();
    assert_eq!(sim.count("/upload"), 1);
    assert_eq!(sim.requests()[0].body.len(), 2048);
    assert_eq!(
        err.fail_reason(),
        Some(&FailReason::NotReplayable(redial::core::NotReplayable::TooLarge { limit: 1024 }))
    );
}

#[tokio::test(start_paused = true)]
async fn replayed_body_is_identical_on_every_attempt() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue_many("/put", [Reply::status(503), Reply::status(503), Reply::status(204)]);
    let req = Request::put(sim.url("/put")).body(Full::new(Bytes::from_static(b"{\"id\":42}"))).unwrap();
    let res = send(layer(fast_policy().build().unwrap()), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let bodies: Vec<_> = sim.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, vec![Bytes::from_static(b"{\"id\":42}"); 3]);
}

/// A profile that reads every body: to test inspection past the limit.
#[derive(Debug)]
struct InspectEverything;

impl redial::core::Profile for InspectEverything {
    fn name(&self) -> &str {
        "inspect-everything"
    }
    fn inspect(&self, _: &redial::core::RequestHead<'_>, _: &redial::core::ResponseHead<'_>) -> bool {
        true
    }
    fn classify(
        &self,
        req: &redial::core::RequestHead<'_>,
        outcome: &redial::core::Outcome<'_>,
    ) -> redial::core::Classification {
        redial::core::Profile::classify(&redial::core::generic::Generic, req, outcome)
    }
}

#[tokio::test(start_paused = true)]
async fn a_large_response_past_the_inspect_limit_is_delivered_byte_identical() {
    let sim = Sim::start().await.unwrap();
    let body: Bytes =
        (0..10 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect::<Vec<_>>().into();
    sim.set_fallback("/big", Reply::ok().body(body.clone()));
    let layer = RetryLayer::new(InspectEverything, Policy::builder().inspect_limit(64 * 1024).build().unwrap());
    let res = send(layer, get(&sim, "/big")).await.unwrap();
    let got = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got.len(), body.len());
    assert!(got == body, "bytes differ");
}

#[tokio::test(start_paused = true)]
async fn problem_details_reach_the_caller() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        "/x",
        Reply::status(403)
            .header("content-type", "application/problem+json")
            .body(r#"{"type":"https://example.com/probs/out-of-credit","title":"You do not have enough credit.","detail":"Your current balance is 30, but that costs 50.","balance":30}"#),
    );
    let err = send(layer(Policy::default()), get(&sim, "/x")).await.unwrap_err();
    assert!(err.is_final());
    assert_eq!(sim.count("/x"), 1);
    let p = err.problem().unwrap();
    assert_eq!(p.title.as_deref(), Some("You do not have enough credit."));
    assert_eq!(p.extensions["balance"], 30);
    assert_eq!(err.vendor_errors().next().unwrap().code, "out-of-credit");
}

#[tokio::test(start_paused = true)]
async fn a_failing_host_is_held_to_its_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let vendor = tower::service_fn(move |_req: Request<RetryBody<Full<Bytes>>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::builder().status(503).body(Full::<Bytes>::default()).unwrap()) }
    });
    let policy =
        fast_policy().max_attempts(3).budget(BudgetConfig::new(0.2, 0, Duration::from_secs(10))).build().unwrap();
    let svc = ServiceBuilder::new().layer(layer(policy)).service(vendor);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let svc = svc.clone();
        tasks.spawn(async move {
            svc.oneshot(Request::get("http://api.example.com/x").body(Full::default()).unwrap()).await
        });
    }
    let mut budget_refusals = 0;
    while let Some(r) = tasks.join_next().await {
        let err = r.unwrap().unwrap_err();
        budget_refusals += usize::from(err.is_budget_exhausted());
    }
    let attempts = calls.load(Ordering::SeqCst);
    assert!(attempts <= 1200, "{attempts} attempts for 1000 requests with a 20 % budget");
    assert!(attempts >= 1000 + 150, "the budget should still allow retries: {attempts}");
    assert!(budget_refusals >= 700, "{budget_refusals}");
}

#[tokio::test(start_paused = true)]
async fn readiness_is_polled_again_before_each_retry() {
    #[derive(Clone)]
    struct CountReady<S>(S, Arc<AtomicUsize>);
    impl<S: Service<R>, R> Service<R> for CountReady<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;
        fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.poll_ready(cx)
        }
        fn call(&mut self, req: R) -> S::Future {
            self.0.call(req)
        }
    }
    let sim = Sim::start().await.unwrap();
    sim.enqueue_many("/x", [Reply::status(503), Reply::status(503), Reply::ok()]);
    let readies = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(layer(fast_policy().build().unwrap()))
        .service(CountReady(hyper_client::<Full<Bytes>>(), readies.clone()));
    let res = svc.oneshot(get(&sim, "/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Once by the caller for the first attempt, once by redial before each of the two retries.
    assert_eq!(readies.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn idempotency_key_makes_a_post_retryable() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/create", Reply::ok().fault(Fault::ResetAfterRead));
    sim.set_fallback("/create", Reply::status(201));
    let mut req = post(&sim, "/create");
    req.headers_mut().insert("idempotency-key", "8e03978e-40d5-43e8-bc93-6894a57f9324".parse().unwrap());
    let res = send(layer(fast_policy().build().unwrap()), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].headers["idempotency-key"], log[1].headers["idempotency-key"]);
    assert_eq!(log[1].method, Method::POST);
}

#[tokio::test(start_paused = true)]
async fn a_first_try_success_carries_no_report() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::ok().body("hello"));
    let res = send(layer(Policy::default()), get(&sim, "/x")).await.unwrap();
    assert!(res.extensions().get::<Report>().is_none());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hello");
}

fn futures_stream(
    chunks: Vec<Bytes>,
) -> impl futures_core::Stream<Item = Result<http_body::Frame<Bytes>, Infallible>> + Unpin + Send + 'static {
    struct Iter(std::vec::IntoIter<Bytes>);
    impl futures_core::Stream for Iter {
        type Item = Result<http_body::Frame<Bytes>, Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next().map(|b| Ok(http_body::Frame::data(b))))
        }
    }
    Iter(chunks.into_iter())
}
