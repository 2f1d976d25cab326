//! The engine at the edges of its state machine, against in-process services on the paused
//! clock: what an error keeps when the request goes on after an attempt (a rewrite, a token
//! refresh, a reconcile) or when a body breaks, what is never sent again, and which timer
//! bounds a wait.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use redial_core::auth::{Attach, Credential, LoginError, LoginFailureKind};
use redial_core::backoff::Backoff;
use redial_core::generic::Generic;
use redial_core::{
    Action, Advice, Classification, Failure, Kind, Outcome, Policy, Profile, RequestHead, ResponseHead, RetryRule,
    Rewrite, Throttle,
};
use redial_tower::{ReconcileRequest, RetryBody, RetryLayer, TokenSource, Verdict};
use tokio::time::{sleep_until, Instant, Sleep};
use tower::{Service, ServiceBuilder, ServiceExt};

const S: Duration = Duration::from_secs(1);

/// A vendor whose statuses ask for every kind of next step: 401 a token refresh, 414 a
/// rewrite, 500 a reconcile; and, unlike any built-in profile, a failure it calls a success.
#[derive(Debug)]
struct Steps;

impl Profile for Steps {
    fn name(&self) -> &str {
        "steps"
    }
    fn inspect(&self, _: &RequestHead<'_>, _: &ResponseHead<'_>) -> bool {
        false
    }
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        match outcome {
            Outcome::Response(h, _) if h.status == StatusCode::UNAUTHORIZED => {
                Classification::new(Kind::AuthExpired, Advice::RefreshAuth, "token expired")
            }
            Outcome::Response(h, _) if h.status == StatusCode::URI_TOO_LONG => {
                Classification::new(Kind::Transient, Advice::Rewrite(Rewrite::MethodOverridePost), "uri too long")
            }
            Outcome::Response(h, _) if h.status == StatusCode::INTERNAL_SERVER_ERROR => {
                Classification::new(Kind::Transient, Advice::Reconcile, "did it take effect?")
            }
            Outcome::Failure(_) => Classification::success("a failure this profile calls fine"),
            _ => Generic.classify(req, outcome),
        }
    }
}

fn reply(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("x-request-id", "req-7").body(Full::from(body)).unwrap()
}

/// A request body of unknown length (a stream): sent once, never kept.
#[derive(Debug)]
struct Stream(Option<Bytes>);

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_never_sends_again_a_body_it_could_not_keep() {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let vendor = tower::service_fn(move |req: Request<RetryBody<Stream>>| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push(body);
            Ok::<_, Infallible>(reply(500, "INTERNAL_ERROR"))
        }
    });
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let layer = RetryLayer::builder()
        .default_host(Steps, Policy::default())
        .reconcile("*", move |_: ReconcileRequest| {
            a.fetch_add(1, Ordering::SeqCst);
            async { Verdict::NotApplied }
        })
        .unwrap()
        .build();
    let req = Request::post("http://genesys.test/createSubCampaign")
        .body(Stream(Some(Bytes::from_static(b"<soap>create</soap>"))))
        .unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();

    assert!(err.is_not_replayable(), "{err}");
    assert_eq!(*bodies.lock().unwrap(), [Bytes::from_static(b"<soap>create</soap>")], "sent once, never empty");
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the hook cannot be asked about a body that is gone");
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(err.body().map(|b| &b[..]), Some(&b"INTERNAL_ERROR"[..]));
}

#[tokio::test(start_paused = true)]
async fn a_login_refused_after_a_token_refresh_keeps_the_401_that_asked_for_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let vendor = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Infallible>(if n == 0 { reply(503, "busy") } else { reply(401, "token revoked") }) }
    });
    let logins = Arc::new(AtomicUsize::new(0));
    let source = TokenSource::from_fn(Attach::Bearer, move || {
        let first = logins.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Ok(Credential::new("t1", Some(3600 * S)))
            } else {
                Err(LoginError::new(LoginFailureKind::Fatal, "account suspended"))
            }
        }
    });
    let layer = RetryLayer::builder().default_host(Steps, Policy::default()).auth("*", source).unwrap().build();
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();

    assert!(err.is_auth_failed(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED), "the last response, not the 503 before it");
    assert_eq!(err.kind(), Some(Kind::AuthExpired));
    assert_eq!(err.body().map(|b| &b[..]), Some(&b"token revoked"[..]));
    let actions: Vec<_> = err.report().attempts.iter().map(|a| a.action).collect();
    assert_eq!(actions, [Action::Retry, Action::RefreshAuth]);
}

/// A vendor that asks for a new credential, on a host with no token source: the request fails
/// at once, an auth error owning the 401, and the report says what happened (the attempt was
/// failed), not what the vendor advised (a refresh that never came).
#[tokio::test(start_paused = true)]
async fn a_refresh_asked_for_without_a_token_source_is_recorded_as_the_failure_it_is() {
    let vendor =
        tower::service_fn(|_: Request<RetryBody<Full<Bytes>>>| async { Ok::<_, Infallible>(reply(401, "who?")) });
    let layer = RetryLayer::new(Steps, Policy::default());
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();
    assert!(err.is_auth() && !err.is_auth_failed(), "{err}");
    assert!(err.to_string().contains("no token source is configured"), "{err}");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let actions: Vec<_> = err.report().attempts.iter().map(|a| a.action).collect();
    assert_eq!(actions, [Action::Fail]);
}

/// A response body that breaks after its first bytes.
#[derive(Debug)]
struct Breaks(bool);

impl Body for Breaks {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let first = !std::mem::replace(&mut self.0, true);
        Poll::Ready(Some(if first {
            Ok(Frame::data(Bytes::from_static(b"{\"errorCode\":")))
        } else {
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"))
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_whose_body_breaks_keeps_its_status_headers_and_bytes() {
    let vendor = tower::service_fn(|_: Request<RetryBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(
            Response::builder().status(502).header("x-request-id", "req-7").body(Breaks(false)).unwrap(),
        )
    });
    let layer = RetryLayer::new(Generic, Policy::builder().max_attempts(1).build().unwrap());
    let req = Request::post("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();

    assert_eq!(err.failure(), Some(Failure::BodyRead), "{err}");
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(err.headers().and_then(|h| h.get("x-request-id")).unwrap(), "req-7");
    assert_eq!(err.body().map(|b| &b[..]), Some(&b"{\"errorCode\":"[..]));
    assert!(!err.body_is_complete());
    assert_eq!(err.report().attempts[0].status, Some(StatusCode::BAD_GATEWAY));
    let source = std::error::Error::source(&err).expect("the body's error is the source");
    assert!(source.to_string().contains("connection reset"), "{source}");
}

/// A 429 is the vendor's refusal, whole in its head: its `Retry-After` and its throttle hold
/// whatever then becomes of its body.
#[tokio::test(start_paused = true)]
async fn a_throttle_whose_body_breaks_still_waits_its_retry_after_and_slows_the_host() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let vendor = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| {
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            Ok::<_, Infallible>(if first {
                Response::builder().status(429).header("retry-after", "10").body(Either::Left(Breaks(false))).unwrap()
            } else {
                Response::new(Either::Right(Full::default()))
            })
        }
    });
    let policy = Policy::builder().rate_limit(100, 20 * S).build().unwrap();
    let layer = RetryLayer::new(Generic, policy);
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let res = ServiceBuilder::new().layer(layer.clone()).service(vendor).oneshot(req).await.unwrap();

    let report = res.extensions().get::<redial_tower::Report>().unwrap();
    let first = &report.attempts[0];
    assert_eq!((first.status, first.failure), (Some(StatusCode::TOO_MANY_REQUESTS), Some(Failure::BodyRead)));
    assert_eq!(first.kind, Kind::Throttled);
    assert_eq!(first.delay, Some(10 * S), "the server's Retry-After, not the policy's backoff");
    assert_eq!(layer.current_rate_limit("*"), Some(50), "the host slowed down");
}

/// A body that breaks the contract of one trailers frame: 100 of them, of 1,000 fields each.
#[derive(Debug)]
struct EndlessTrailers(u32);

impl Body for EndlessTrailers {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.0 == 100 {
            return Poll::Ready(None);
        }
        self.0 += 1;
        let mut trailers = http::HeaderMap::new();
        for i in 0..1000 {
            let name = http::HeaderName::try_from(format!("x-t{}-{i}", self.0)).unwrap();
            trailers.insert(name, http::HeaderValue::from_static("v"));
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(0)
    }
}

/// 100,000 trailer fields, past what a `HeaderMap` can hold, on a request body kept for replay
/// and on a response body read for inspection: kept up to a bound, no panic, the request goes
/// on as it would.
#[tokio::test(start_paused = true)]
async fn bodies_that_send_trailers_frame_after_frame_are_kept_bounded_not_a_panic() {
    let vendor = tower::service_fn(|req: Request<RetryBody<EndlessTrailers>>| async move {
        let trailers = req.into_body().collect().await.unwrap().trailers().map_or(0, http::HeaderMap::len);
        assert!((1..=1024).contains(&trailers), "{trailers} request trailers replayed");
        let problem = "application/problem+json";
        Ok::<_, Infallible>(
            Response::builder().status(502).header("content-type", problem).body(EndlessTrailers(0)).unwrap(),
        )
    });
    let layer = RetryLayer::new(Generic, Policy::builder().max_attempts(2).build().unwrap());
    let req = Request::put("http://vendor.test/things").body(EndlessTrailers(0)).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY), "{err}");
    assert_eq!(err.report().attempts.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_profile_that_calls_a_failure_a_success_gets_an_error_not_a_panic() {
    let vendor = tower::service_fn(|_: Request<RetryBody<Full<Bytes>>>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"))
    });
    let layer = RetryLayer::new(Steps, Policy::default());
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();

    assert!(err.is_final(), "{err}");
    assert!(std::error::Error::source(&err).is_some_and(|e| e.to_string().contains("reset")));
    assert_eq!(err.report().attempt_count(), 1);
}

/// A vendor that answers after a second; after its first call it is not ready until `busy_until`.
struct Slow {
    calls: Arc<Mutex<Vec<Instant>>>,
    busy_until: Instant,
    first: StatusCode,
    wait: Option<Pin<Box<Sleep>>>,
}

impl Clone for Slow {
    fn clone(&self) -> Self {
        Slow { calls: self.calls.clone(), busy_until: self.busy_until, first: self.first, wait: None }
    }
}

impl Slow {
    fn new(first: StatusCode, busy_until: Instant) -> Self {
        Slow { calls: Arc::default(), busy_until, first, wait: None }
    }
}

impl Service<Request<RetryBody<Full<Bytes>>>> for Slow {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.calls.lock().unwrap().is_empty() || Instant::now() >= self.busy_until {
            return Poll::Ready(Ok(()));
        }
        let until = self.busy_until;
        self.wait.get_or_insert_with(|| Box::pin(sleep_until(until))).as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, _: Request<RetryBody<Full<Bytes>>>) -> Self::Future {
        self.wait = None;
        let mut calls = self.calls.lock().unwrap();
        calls.push(Instant::now());
        let status = if calls.len() == 1 { self.first } else { StatusCode::OK };
        Box::pin(async move {
            tokio::time::sleep(S).await;
            Ok(Response::builder().status(status).body(Full::default()).unwrap())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_rewrite_a_service_slow_to_be_ready_is_bounded_by_the_deadline_only() {
    let t0 = Instant::now();
    // The first attempt's time limit (10 s) must not bound the wait for readiness that follows.
    let policy = Policy::builder().attempt_timeout(10 * S).no_deadline().build().unwrap();
    let vendor = Slow::new(StatusCode::URI_TOO_LONG, t0 + 30 * S);
    let calls = vendor.calls.clone();
    let layer = RetryLayer::new(Steps, policy);
    let req = Request::get("http://vendor.test/search?q=a-very-long-query").body(Full::default()).unwrap();
    let res = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(*calls.lock().unwrap(), [t0, t0 + 30 * S], "rewritten, then sent once the service was ready");
}

#[tokio::test(start_paused = true)]
async fn a_rate_slot_is_taken_when_the_service_is_ready_not_before() {
    let t0 = Instant::now();
    // One call per 10 s. The first request's 503 comes at 1 s and it is retried after its
    // backoff; the retry's slot comes at 10.1 s, and its service is not ready until 20 s: the
    // call goes at 20 s, and the next request's call must wait a window after that, not after
    // 10.1 s.
    let policy = Policy::builder().rate_limit(1, 10 * S).build().unwrap();
    let vendor = Slow::new(StatusCode::SERVICE_UNAVAILABLE, t0 + 20 * S);
    let calls = vendor.calls.clone();
    let layer = RetryLayer::new(Generic, policy);
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    let first = tokio::spawn(svc.clone().oneshot(Request::get("http://vendor.test/a").body(Full::default()).unwrap()));
    tokio::time::sleep_until(t0 + 21 * S).await;
    let second = svc.oneshot(Request::get("http://vendor.test/b").body(Full::default()).unwrap()).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);

    // The report tells the time the retry was held apart from its backoff.
    let report = first.extensions().get::<redial_core::Report>().expect("a retried response has a report");
    let [one, two] = &report.attempts[..] else { panic!("{report:?}") };
    assert_eq!((one.sent, two.sent), (Some(Duration::ZERO), Some(20 * S)), "sent at the start, then when ready");
    let backoff_ends = one.elapsed + one.delay.expect("a retry's wait");
    assert_eq!(two.held(Some(one)), Some(20 * S - backoff_ends));
    assert_eq!(report.total_held(), 20 * S - backoff_ends, "{report:?}");

    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[1], t0 + 20 * S, "the retry went when its service was ready");
    assert!(calls[2] - calls[1] >= 10 * S, "two calls {:?} apart in a 10 s window", calls[2] - calls[1]);
}

/// A login answered `token:lifetime`, through the inner service.
#[derive(Debug)]
struct PlainLogin;

impl redial_core::auth::Login for PlainLogin {
    fn request(&self) -> Request<Bytes> {
        Request::post("http://vendor.test/login").body(Bytes::new()).unwrap()
    }
    fn parse(&self, _: &redial_core::ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        let text = std::str::from_utf8(body).map_err(|_| LoginError::new(LoginFailureKind::Fatal, "not text"))?;
        Ok(Credential::new(text, Some(3600 * S)))
    }
}

/// tower's ConcurrencyLimit of one below redial: the request is polled ready (it holds the
/// limit's only permit), then waits for a login that goes through a clone of the same service,
/// which needs that permit. The request gives its readiness back while it waits.
#[tokio::test(start_paused = true)]
async fn a_login_through_a_concurrency_limited_inner_service_does_not_wait_on_its_own_request() {
    let vendor = tower::service_fn(|req: Request<RetryBody<Full<Bytes>>>| async move {
        let body = if req.uri().path() == "/login" { "t1" } else { "ok" };
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(body)))
    });
    let source = TokenSource::login(PlainLogin);
    let layer =
        RetryLayer::builder().default_host(Generic, Policy::default()).auth("*", source.clone()).unwrap().build();
    let svc = ServiceBuilder::new().layer(layer).concurrency_limit(1).service(vendor);
    let started = Instant::now();
    let res = svc.oneshot(Request::get("http://vendor.test/things").body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(source.logins(), 1);
    assert!(started.elapsed() < S, "waited {:?}", started.elapsed());
}

/// A vendor, boxed.
type Vendor = tower::util::BoxCloneService<Request<RetryBody<Full<Bytes>>>, Response<Full<Bytes>>, Infallible>;

/// A vendor giving `answer`, and what it saw: when each attempt came, from the start.
fn recording(
    answer: impl Fn() -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Clone + Send + 'static,
) -> (Vendor, Arc<Mutex<Vec<Duration>>>) {
    let t0 = Instant::now();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    let svc = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| {
        log.lock().unwrap().push(t0.elapsed());
        let answer = answer();
        async move { Ok::<_, Infallible>(answer.await) }
    });
    (Vendor::new(svc), sent)
}

fn deadline_10s() -> Policy {
    Policy::builder().deadline(10 * S).no_budget().build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_create_cut_by_the_deadline_is_not_sent_again_after_its_reconcile() {
    // The vendor is slow: the attempt is cut by the request's 10 s deadline, the hook says the
    // call had not taken effect, and there is no time left to send it again.
    let (vendor, sent) = recording(|| {
        Box::pin(async {
            tokio::time::sleep(60 * S).await;
            reply(200, "created")
        })
    });
    let layer = RetryLayer::builder()
        .default_host(TimeoutReconciles, deadline_10s())
        .reconcile("*", |_: ReconcileRequest| async { Verdict::NotApplied })
        .unwrap()
        .build();
    let req = Request::post("http://genesys.test/createSubCampaign").body(Full::from("<create/>")).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();
    assert_eq!(*sent.lock().unwrap(), [Duration::ZERO], "sent once, at the start");
    assert!(err.is_deadline(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_rewrite_asked_for_as_the_deadline_falls_is_not_sent() {
    let t0 = Instant::now();
    let (vendor, sent) = recording(move || {
        Box::pin(async move {
            sleep_until(t0 + 10 * S).await;
            reply(414, "")
        })
    });
    let layer = RetryLayer::builder().default_host(Steps, deadline_10s()).build();
    let req = Request::get("http://mkto.test/rest/v1/leads.json?filterValues=1,2").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();
    assert_eq!(*sent.lock().unwrap(), [Duration::ZERO]);
    assert!(err.is_deadline(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::URI_TOO_LONG), "the 414 is kept");
}

#[tokio::test(start_paused = true)]
async fn a_service_that_gets_ready_as_the_deadline_falls_is_not_called() {
    // Rewritten after a 414 at 1 s, the request waits for the service, which is ready again at
    // 10 s: the deadline. The attempt would have no time at all; nothing is sent.
    let t0 = Instant::now();
    let vendor = Slow::new(StatusCode::URI_TOO_LONG, t0 + 10 * S);
    let calls = vendor.calls.clone();
    let layer = RetryLayer::new(Steps, deadline_10s());
    let req = Request::get("http://vendor.test/search?q=a-very-long-query").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();
    assert_eq!(*calls.lock().unwrap(), [t0]);
    assert!(err.is_deadline(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::URI_TOO_LONG), "the 414 is kept");
}

#[tokio::test(start_paused = true)]
async fn a_login_that_ends_as_the_deadline_falls_sends_nothing() {
    let source = TokenSource::from_fn(Attach::Bearer, || async {
        tokio::time::sleep(10 * S).await;
        Ok::<_, LoginError>(Credential::new("t0k3n", Some(3600 * S)))
    });
    let (vendor, sent) = recording(|| Box::pin(async { reply(200, "ok") }));
    let layer = RetryLayer::builder().default_host(Generic, deadline_10s()).auth("*", source).unwrap().build();
    let err = ServiceBuilder::new()
        .layer(layer)
        .service(vendor)
        .oneshot(Request::get("http://api.test/things").body(Full::default()).unwrap())
        .await
        .unwrap_err();
    assert!(sent.lock().unwrap().is_empty(), "sent at {:?}", sent.lock().unwrap());
    assert!(err.is_deadline(), "{err}");
}

/// A create whose timeout asks the reconcile hook (as Genesys's `createSubCampaign`).
#[derive(Debug)]
struct TimeoutReconciles;

impl Profile for TimeoutReconciles {
    fn name(&self) -> &str {
        "timeout reconciles"
    }
    fn inspect(&self, _: &RequestHead<'_>, _: &ResponseHead<'_>) -> bool {
        false
    }
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        match outcome {
            Outcome::Failure(Failure::Timeout) => {
                Classification::new(Kind::Transient, Advice::Reconcile, "did it take effect?")
            }
            _ => Generic.classify(req, outcome),
        }
    }
}

/// A fleet-wide budget kept elsewhere: here, one that is spent.
#[derive(Debug, Default)]
struct Spent {
    deposits: AtomicUsize,
    withdrawals: AtomicUsize,
}

impl redial_core::budget::RetryBudget for Spent {
    fn deposit(&self, _: std::time::Instant) {
        self.deposits.fetch_add(1, Ordering::SeqCst);
    }
    fn withdraw(&self, _: std::time::Instant) -> bool {
        self.withdrawals.fetch_add(1, Ordering::SeqCst);
        false
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_budget_kept_elsewhere_is_the_one_asked() {
    let budget = Arc::new(Spent::default());
    let (vendor, sent) = recording(|| Box::pin(async { reply(503, "busy") }));
    let layer = RetryLayer::builder()
        .host("api.example.com", Generic, Policy::default())
        .unwrap()
        .retry_budget("api.example.com", budget.clone())
        .unwrap()
        // Registered again (a new policy): the budget given stays.
        .host("api.example.com", Generic, Policy::builder().max_attempts(5).build().unwrap())
        .unwrap()
        .build();
    let req = Request::get("http://api.example.com/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();
    assert!(err.is_budget_exhausted(), "{err}");
    assert_eq!(sent.lock().unwrap().len(), 1);
    assert_eq!((budget.deposits.load(Ordering::SeqCst), budget.withdrawals.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_error_says_each_thing_once() {
    let (vendor, _) = recording(|| Box::pin(async { reply(502, "bad gateway") }));
    let layer = RetryLayer::new(Generic, Policy::builder().no_budget().build().unwrap());
    let req = Request::get("http://api.example.com/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();
    assert_eq!(err.to_string(), "gave up after 3 attempts (last status 502, transient)");
}

/// A vendor's code is the vendor's text: a hostile body can make it a page long or break a
/// log line. The message shows it on one line and cut; the accessors keep it whole.
#[tokio::test(start_paused = true)]
async fn a_hostile_vendor_code_is_shown_on_one_line_cut_and_kept_whole() {
    #[derive(Debug)]
    struct Hostile;
    impl Profile for Hostile {
        fn name(&self) -> &str {
            "hostile"
        }
        fn inspect(&self, _: &RequestHead<'_>, _: &ResponseHead<'_>) -> bool {
            false
        }
        fn classify(&self, _: &RequestHead<'_>, _: &Outcome<'_>) -> Classification {
            let code = format!("E1\nlevel=ERROR forged line{}", "x".repeat(10_000));
            Classification::fail(Kind::Fatal, format!("hostile: code {code}"))
                .with_errors([redial_core::VendorError::code_only(code)])
        }
    }
    let (vendor, _) = recording(|| Box::pin(async { reply(400, "no") }));
    let req = Request::get("http://api.example.com/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new()
        .layer(RetryLayer::new(Hostile, Policy::default()))
        .service(vendor)
        .oneshot(req)
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains('\n') && shown.contains("E1\\nlevel=ERROR"), "{shown}");
    assert!(shown.len() < 600, "{} bytes", shown.len());
    assert_eq!(err.vendor_errors().next().unwrap().code.len(), 10_026, "the accessor keeps the code whole");
}

/// A final answer names the rule that made it final, in the profile's words: a log line says
/// why without the `Debug` of the error.
#[tokio::test(start_paused = true)]
async fn a_final_error_names_its_rule() {
    let (vendor, _) = recording(|| Box::pin(async { reply(404, "no such thing") }));
    let layer = RetryLayer::new(Generic, Policy::default());
    let req = Request::get("http://api.example.com/things/7").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(vendor).oneshot(req).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the vendor's rule says this is final: generic: 404 is final (1 attempt, last status 404, fatal)"
    );
}

#[test]
fn a_response_future_shows_its_state_not_the_request() {
    let (vendor, _) = recording(|| Box::pin(async { reply(200, "ok") }));
    let req = Request::get("http://api.example.com/things?access_token=TOPSECRET")
        .header("authorization", "Bearer TOPSECRET")
        .body(Full::<Bytes>::default())
        .unwrap();
    let fut = RetryLayer::generic().drive(vendor, redial_tower::Inner, req);
    let shown = format!("{fut:?}");
    assert!(shown.contains("ready to send") && shown.contains("/things"), "{shown}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
}

#[tokio::test(start_paused = true)]
async fn a_request_polled_late_gets_its_whole_deadline_from_its_first_poll() {
    // Built at t=0, first polled at 11 s, past what would have been its 10 s deadline: it
    // starts then, and is not cut as it goes (a create cut at once would end ambiguous).
    let (vendor, sent) = recording(|| {
        Box::pin(async {
            tokio::time::sleep(5 * S).await;
            reply(200, "created")
        })
    });
    let mut svc = ServiceBuilder::new().layer(RetryLayer::new(Generic, deadline_10s())).service(vendor);
    let req = Request::post("http://api.example.com/orders").body(Full::from("{}")).unwrap();
    let fut = svc.ready().await.unwrap().call(req);
    tokio::time::advance(11 * S).await;
    let res = fut.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(*sent.lock().unwrap(), [11 * S]);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_holds_the_requests_that_had_already_reserved_their_slot() {
    // One call per 10 s; three requests at once take the slots of 0 s, 10.1 s and 20.2 s. The
    // first is answered 429 with Retry-After: 30 at 1 s: the host pauses until 31 s, and the
    // two waiting requests go after it too, not at their old slots.
    let t0 = Instant::now();
    let (vendor, sent) = recording(move || {
        Box::pin(async move {
            tokio::time::sleep(S).await;
            if t0.elapsed() < 30 * S {
                Response::builder().status(429).header("retry-after", "30").body(Full::default()).unwrap()
            } else {
                reply(200, "ok")
            }
        })
    });
    let policy = Policy::builder().rate_limit(1, 10 * S).deadline(300 * S).no_budget().build().unwrap();
    let svc = ServiceBuilder::new().layer(RetryLayer::new(Generic, policy)).service(vendor);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(svc.clone().oneshot(Request::get("http://api.example.com/x").body(Full::default()).unwrap()))
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let sent = sent.lock().unwrap().clone();
    assert!(sent.iter().all(|t| *t <= S || *t >= 31 * S), "sent while the host was paused: {sent:?}");
    assert_eq!(sent.len(), 4, "{sent:?}");
}

/// A vendor's "busy" answer that names what it is about (Marketo 1029 "too many jobs in queue",
/// a 1022 "object in use"; Responsys `API_LIMIT_EXCEEDED` for one API function): `/busy`
/// answers 409 once, which this profile classifies as throttled with the given [`Throttle`].
#[derive(Debug)]
struct Busy(Throttle);

impl Profile for Busy {
    fn name(&self) -> &str {
        "busy"
    }
    fn inspect(&self, _: &RequestHead<'_>, _: &ResponseHead<'_>) -> bool {
        false
    }
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        match outcome {
            Outcome::Response(h, _) if h.status == StatusCode::CONFLICT => {
                let rule = RetryRule::new("busy").backoff(Backoff::constant(20 * S)).any_method();
                Classification::retry(Kind::Throttled, rule, "busy").with_throttle(self.0)
            }
            _ => Generic.classify(req, outcome),
        }
    }
}

/// One request meets a throttle, and a second request to the same host comes a second later:
/// when each was sent (path, time from the start), and the host's rate limit afterwards.
async fn a_second_request_after_a_throttle(throttle: Throttle) -> (Vec<(String, Duration)>, Option<u32>) {
    let t0 = Instant::now();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    let busy_once = Arc::new(AtomicUsize::new(0));
    let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
        log.lock().unwrap().push((req.uri().path().to_owned(), t0.elapsed()));
        let busy = req.uri().path() == "/busy" && busy_once.fetch_add(1, Ordering::SeqCst) == 0;
        async move { Ok::<_, Infallible>(if busy { reply(409, "busy") } else { reply(200, "ok") }) }
    });
    let policy = Policy::builder().rate_limit(100, 20 * S).deadline(300 * S).no_budget().build().unwrap();
    let layer = RetryLayer::builder().host("api.example.com", Busy(throttle), policy).unwrap().build();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(vendor);
    let get = |path: &str| Request::get(format!("http://api.example.com{path}")).body(Full::default()).unwrap();
    let first = tokio::spawn(svc.clone().oneshot(get("/busy")));
    tokio::time::sleep(S).await;
    assert_eq!(svc.oneshot(get("/other")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    let sent = sent.lock().unwrap().clone();
    (sent, layer.current_rate_limit("api.example.com"))
}

/// `Throttle::Request` (a full job queue, an object in use, a per-function limit): only the
/// request that met it waits; other calls to the host go on, and its rate limit is untouched.
/// `Throttle::Rate`, for contrast, holds the host for the wait.
#[tokio::test(start_paused = true)]
async fn a_throttle_about_one_request_holds_only_that_request() {
    let (sent, limit) = a_second_request_after_a_throttle(Throttle::Request).await;
    let at = |path: &str| sent.iter().filter(|(p, _)| p == path).map(|(_, t)| *t).collect::<Vec<_>>();
    assert_eq!(at("/busy"), [Duration::ZERO, 20 * S], "{sent:?}");
    assert_eq!(at("/other"), [S], "the other request went at once: {sent:?}");
    assert_eq!(limit, Some(100), "the host's rate limit is not lowered");

    let (sent, limit) = a_second_request_after_a_throttle(Throttle::Rate).await;
    let other = sent.iter().find(|(p, _)| p == "/other").unwrap().1;
    assert!(other >= 20 * S, "a rate throttle holds the host: {sent:?}");
    assert!(limit < Some(100), "{limit:?}");
}

/// A vendor that says "failed over" with a 409, and "not served" in a 200 (as Marketo says any
/// error: `success:false` in a 200) with `x-success: false`.
#[derive(Debug)]
struct SaysFailover;

impl Profile for SaysFailover {
    fn name(&self) -> &str {
        "says-failover"
    }
    fn inspect(&self, _: &RequestHead<'_>, _: &ResponseHead<'_>) -> bool {
        false
    }
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        match outcome {
            Outcome::Response(h, _) if h.status == StatusCode::CONFLICT => {
                Classification::fail(Kind::Failover, "failed over")
            }
            Outcome::Response(h, _) if h.headers.get("x-success").is_some_and(|v| v == "false") => {
                Classification::fail(Kind::Fatal, "success:false: not served")
            }
            _ => Generic.classify(req, outcome),
        }
    }
}

/// With `final_responses_as_ok`, a probe answered with a 200 that redial gives up on (a vendor
/// error in a 200) comes back as `Ok`: it is no success, and the host stays failed over.
#[tokio::test(start_paused = true)]
async fn a_probe_answered_with_a_200_redial_gives_up_on_does_not_end_failover() {
    let vendor = tower::service_fn(|req: Request<RetryBody<Full<Bytes>>>| async move {
        let res = match req.uri().path() {
            "/probe" => Response::builder().status(200).header("x-success", "false").body(Full::from("no")).unwrap(),
            _ => reply(409, "failed over"),
        };
        Ok::<_, Infallible>(res)
    });
    let probe =
        redial_tower::Probe::new(10 * S, || Request::get("http://api.example.com/probe").body(Bytes::new()).unwrap());
    let layer = RetryLayer::builder()
        .host("api.example.com", SaysFailover, Policy::default())
        .unwrap()
        .failover_probe("api.example.com", probe)
        .unwrap()
        .final_responses_as_ok()
        .build();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(vendor);
    let req = Request::get("http://api.example.com/work").body(Full::default()).unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(matches!(layer.failover_mode("api.example.com"), Some(redial_tower::FailoverMode::Secondary { .. })));
    // Two probes go, each answered "not served".
    tokio::time::sleep(25 * S).await;
    assert!(
        matches!(layer.failover_mode("api.example.com"), Some(redial_tower::FailoverMode::Secondary { .. })),
        "a probe the vendor did not serve brought the host back: {:?}",
        layer.failover_mode("api.example.com")
    );
}

/// `Failure::Local` is "final: never retried, whatever the profile": an inner service's
/// `AttemptError::final_error` (a middleware refusing the call) is not sent again, even under a
/// profile that calls every failure a success or retries it for any method.
#[tokio::test(start_paused = true)]
async fn a_final_attempt_error_is_final_whatever_the_profile() {
    #[derive(Debug)]
    struct RetriesEveryFailure;
    impl Profile for RetriesEveryFailure {
        fn name(&self) -> &str {
            "retries-every-failure"
        }
        fn inspect(&self, _: &RequestHead<'_>, _: &ResponseHead<'_>) -> bool {
            false
        }
        fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
            match outcome {
                Outcome::Failure(_) => {
                    Classification::retry(Kind::Transient, RetryRule::new("every").any_method(), "again")
                }
                _ => Generic.classify(req, outcome),
            }
        }
    }
    async fn refused(profile: impl Profile) -> (redial_tower::Error, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let refuses = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| {
            seen.fetch_add(1, Ordering::SeqCst);
            let e = redial_tower::AttemptError::final_error("no signing key".into());
            async move { Err::<Response<Full<Bytes>>, _>(e) }
        });
        let layer = RetryLayer::new(profile, Policy::default());
        let req = Request::post("http://vendor.test/things").body(Full::default()).unwrap();
        let err = ServiceBuilder::new().layer(layer).service(refuses).oneshot(req).await.unwrap_err();
        (err, calls.load(Ordering::SeqCst))
    }
    for (err, calls) in [refused(RetriesEveryFailure).await, refused(Steps).await] {
        assert_eq!(calls, 1, "{err}");
        assert_eq!(err.failure(), Some(Failure::Local), "{err}");
        assert!(err.is_final(), "{err}");
        let source = std::error::Error::source(&err).expect("the middleware's error is the source");
        assert!(source.to_string().contains("no signing key"), "{source}");
    }
}

/// `final_responses_as_ok` returns what the vendor answered; what is not a vendor's answer
/// stays an error, as its docs list: a body that broke, a login that failed, no token source
/// for a token the vendor asked for, the deadline passing while waiting, a failed-over host
/// refusing the call.
#[tokio::test(start_paused = true)]
async fn with_final_responses_as_ok_what_is_not_a_vendors_answer_stays_an_error() {
    fn ok_layer(profile: impl Profile, policy: Policy) -> redial_tower::RetryLayerBuilder {
        RetryLayer::builder().default_host(profile, policy).final_responses_as_ok()
    }
    let get = || Request::get("http://api.example.com/things").body(Full::default()).unwrap();
    let answers = |status: u16| {
        tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("retry-after", "1")
                    .body(Full::new(Bytes::from_static(b"x")))
                    .unwrap(),
            )
        })
    };

    // A body that broke while it was read.
    let breaks = tower::service_fn(|_: Request<RetryBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::builder().status(404).body(Breaks(false)).unwrap())
    });
    let layer = ok_layer(Generic, Policy::builder().max_attempts(1).build().unwrap()).build();
    let err = ServiceBuilder::new().layer(layer).service(breaks).oneshot(get()).await.unwrap_err();
    assert_eq!(err.failure(), Some(Failure::BodyRead), "{err}");

    // A login that failed.
    let source = TokenSource::from_fn(Attach::Bearer, || async {
        Err::<Credential, _>(LoginError::new(LoginFailureKind::Fatal, "account suspended"))
    });
    let layer = ok_layer(Steps, Policy::default()).auth("*", source).unwrap().build();
    let err = ServiceBuilder::new().layer(layer).service(answers(200)).oneshot(get()).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");

    // The vendor asked for a new token, and no token source serves the host.
    let layer = ok_layer(Steps, Policy::default()).build();
    let err = ServiceBuilder::new().layer(layer).service(answers(401)).oneshot(get()).await.unwrap_err();
    assert!(err.is_auth() && err.to_string().contains("no token source"), "{err}");

    // The deadline passing while a retry of a 503 waits for the host's rate limit: the next slot
    // is a minute away, the deadline 10 s.
    let paced = Policy::builder().rate_limit(1, 60 * S).deadline(10 * S).build().unwrap();
    let layer = ok_layer(Generic, paced).build();
    let err = ServiceBuilder::new().layer(layer).service(answers(503)).oneshot(get()).await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "it owns the 503 it retried");

    // A failed-over host refusing a call: the vendor's refusal comes back as the response it
    // was; the next call, refused here without being sent, is an error.
    let layer = ok_layer(SaysFailover, Policy::default()).build();
    let svc = ServiceBuilder::new().layer(layer).service(answers(409));
    assert_eq!(svc.clone().oneshot(get()).await.unwrap().status(), StatusCode::CONFLICT);
    assert!(svc.oneshot(get()).await.unwrap_err().is_failover_local());
}

/// A request's own limits are its own: one that may not retry (`RequestLimits::no_retries()`,
/// a health check) and meets a 429 with `Retry-After: 10` still pauses its host for the 10 s
/// the vendor asked, as a request without limits does; the next call waits for it.
#[tokio::test(start_paused = true)]
async fn a_request_with_no_retries_that_meets_a_429_still_pauses_its_host() {
    for limits in [None, Some(redial_tower::RequestLimits::no_retries())] {
        let t0 = Instant::now();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let first = Arc::new(AtomicUsize::new(0));
        let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
            log.lock().unwrap().push((req.uri().path().to_owned(), t0.elapsed()));
            let throttled = first.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                Ok::<_, Infallible>(if throttled {
                    Response::builder().status(429).header("retry-after", "10").body(Full::from("slow down")).unwrap()
                } else {
                    reply(200, "ok")
                })
            }
        });
        let policy = Policy::builder().rate_limit(100, 20 * S).deadline(300 * S).no_budget().build().unwrap();
        let layer = RetryLayer::builder().host("api.example.com", Generic, policy).unwrap().build();
        let svc = ServiceBuilder::new().layer(layer).service(vendor);
        let mut health = Request::get("http://api.example.com/health").body(Full::default()).unwrap();
        if let Some(limits) = limits {
            health.extensions_mut().insert(limits);
        }
        let health = tokio::spawn(svc.clone().oneshot(health));
        tokio::time::sleep(S).await;
        let other = Request::get("http://api.example.com/other").body(Full::default()).unwrap();
        assert_eq!(svc.oneshot(other).await.unwrap().status(), StatusCode::OK);
        let _ = health.await.unwrap();
        let sent = sent.lock().unwrap().clone();
        let other = sent.iter().find(|(p, _)| p == "/other").unwrap().1;
        assert!(other >= 10 * S, "limits {limits:?}: sent while the vendor asked the host to wait: {sent:?}");
    }
}

/// Limits that change nothing (`RequestLimits::new()`) change nothing: a 429 whose retry the
/// host's spent budget refuses pauses the host exactly as it does for a request without limits.
#[tokio::test(start_paused = true)]
async fn limits_that_change_nothing_pause_the_host_as_no_limits_do_when_the_budget_refuses() {
    let mut seen = Vec::new();
    for limits in [None, Some(redial_tower::RequestLimits::new())] {
        let t0 = Instant::now();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let first = Arc::new(AtomicUsize::new(0));
        let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
            log.lock().unwrap().push((req.uri().path().to_owned(), t0.elapsed()));
            let throttled = first.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                Ok::<_, Infallible>(if throttled {
                    Response::builder().status(429).header("retry-after", "10").body(Full::from("slow down")).unwrap()
                } else {
                    reply(200, "ok")
                })
            }
        });
        // A budget that allows no retry at all.
        let budget = redial_core::budget::BudgetConfig::new(0.0, 0, S);
        let policy = Policy::builder().rate_limit(100, 20 * S).deadline(300 * S).budget(budget).build().unwrap();
        let layer = RetryLayer::builder().host("api.example.com", Generic, policy).unwrap().build();
        let svc = ServiceBuilder::new().layer(layer).service(vendor);
        let mut first_req = Request::get("http://api.example.com/first").body(Full::default()).unwrap();
        if let Some(limits) = limits {
            first_req.extensions_mut().insert(limits);
        }
        assert_eq!(svc.clone().oneshot(first_req).await.unwrap_err().status(), Some(StatusCode::TOO_MANY_REQUESTS));
        let other = Request::get("http://api.example.com/other").body(Full::default()).unwrap();
        assert_eq!(svc.oneshot(other).await.unwrap().status(), StatusCode::OK);
        let sent = sent.lock().unwrap().clone();
        seen.push(sent.iter().find(|(p, _)| p == "/other").unwrap().1);
    }
    assert_eq!(seen[0], seen[1], "RequestLimits::new() changed the host's pause: {seen:?}");
}

/// A probe request that never gets an answer (a host with no deadline and no attempt timeout)
/// does not hold the host in failover mode for good: while it hangs no trial may go (a probe
/// is running) and no other probe starts. It is given up after ten trial intervals, as a trial
/// is, and the next turn's probe finds the vendor back.
#[tokio::test(start_paused = true)]
async fn a_probe_that_never_gets_an_answer_does_not_hold_failover_mode_for_good() {
    let probes = Arc::new(AtomicUsize::new(0));
    let seen = probes.clone();
    let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
        let seen = seen.clone();
        async move {
            if req.uri().path() == "/probe" && seen.fetch_add(1, Ordering::SeqCst) == 0 {
                std::future::pending::<()>().await;
            }
            let res = match req.uri().path() {
                "/probe" => reply(200, "back"),
                _ => reply(409, "failed over"),
            };
            Ok::<_, Infallible>(res)
        }
    });
    let probe =
        redial_tower::Probe::new(30 * S, || Request::get("http://api.example.com/probe").body(Bytes::new()).unwrap());
    let policy = Policy::builder().no_deadline().build().unwrap();
    let layer = RetryLayer::builder()
        .host("api.example.com", SaysFailover, policy)
        .unwrap()
        .failover_probe("api.example.com", probe)
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(vendor);
    let req = Request::get("http://api.example.com/work").body(Full::default()).unwrap();
    assert!(svc.oneshot(req).await.unwrap_err().is_failover());
    tokio::time::sleep(31 * S).await;
    assert_eq!(probes.load(Ordering::SeqCst), 1, "the first probe went, and hangs");
    tokio::time::sleep(redial_tower::hooks::FAILOVER_TRIAL_INTERVAL * 10 + 60 * S).await;
    assert_eq!(
        layer.failover_mode("api.example.com"),
        Some(redial_tower::FailoverMode::Primary),
        "probes sent: {}",
        probes.load(Ordering::SeqCst)
    );
}
