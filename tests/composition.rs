//! redial's `RetryLayer` in the tower stacks its users write: tower's own layers outside and
//! inside it, tower-http's, hyper-util's client under it; the stack boxed, shared and spawned;
//! its error through `BoxError` and back. In-process vendors on the paused clock, and the
//! simulator on loopback where the wire matters (compression).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redial::core::auth::{Credential, Login, LoginError};
use redial::core::backoff::Backoff;
use redial::core::generic::Generic;
use redial::core::Failure;
use redial::{Policy, Report, RetryBody, RetryLayer, TokenSource, Vendor, VendorExt};
use redial_sim::{Reply, Sim};
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// The request an inner service of redial's gets.
type Req = Request<RetryBody<Full<Bytes>>>;

/// A vendor that answers each call with the next status of its script after its delay (then
/// 200 at once), the status as its body, and counts its calls.
#[derive(Clone)]
struct Script {
    replies: Arc<Mutex<VecDeque<(u16, Duration)>>>,
    calls: Arc<Mutex<Vec<http::Method>>>,
}

impl Script {
    fn new(replies: impl IntoIterator<Item = (u16, Duration)>) -> Self {
        Script { replies: Arc::new(Mutex::new(replies.into_iter().collect())), calls: Default::default() }
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn service(
        &self,
    ) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
    {
        let this = self.clone();
        tower::service_fn(move |req: Req| {
            this.calls.lock().unwrap().push(req.method().clone());
            let (status, delay) = this.replies.lock().unwrap().pop_front().unwrap_or((200, Duration::ZERO));
            async move {
                tokio::time::sleep(delay).await;
                let res =
                    Response::builder().status(status).header("retry-after", "1").body(Full::from(status.to_string()));
                Ok::<_, Infallible>(res.unwrap())
            }
        })
    }
}

/// The generic rules, retries 1 s apart.
fn layer() -> RetryLayer {
    let policy = Policy::builder().backoff(Backoff::constant(S)).build().unwrap();
    RetryLayer::builder().default_host(Generic, policy).rng_seed(1).build()
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://vendor.test/things").body(Full::default()).unwrap()
}

const UNAVAILABLE: (u16, Duration) = (503, Duration::ZERO);

// ---------------------------------------------------------------------------------------------
// Outside redial: the logical request.

#[tokio::test(start_paused = true)]
async fn a_timeout_outside_bounds_the_whole_request_and_redials_error_comes_back_out_of_its_box_error() {
    // Retries run out within the timeout: redial's error, boxed by `Timeout`, downcasts back.
    let vendor = Script::new([UNAVAILABLE; 3]);
    let svc = ServiceBuilder::new().timeout(30 * S).layer(layer()).service(vendor.service());
    let err = svc.oneshot(get()).await.unwrap_err();
    let err = err.downcast::<redial::Error>().expect("redial's error inside the BoxError");
    assert!(err.is_exhausted(), "{err}");
    assert_eq!(err.report().attempt_count(), 3);

    // The retry is still in flight when the timeout fires: the timeout's error.
    let vendor = Script::new([UNAVAILABLE, (200, 60 * S)]);
    let svc = ServiceBuilder::new().timeout(5 * S).layer(layer()).service(vendor.service());
    let started = Instant::now();
    let err = svc.oneshot(get()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(started.elapsed(), 5 * S);
    assert_eq!(vendor.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_buffered_and_boxed_stack_is_cloned_into_spawned_tasks_and_its_bodies_box() {
    let vendor = Script::new([UNAVAILABLE]);
    let svc = ServiceBuilder::new()
        .boxed_clone()
        .buffer(8)
        .map_err(|e: redial::Error| BoxError::from(e))
        .layer(layer())
        .service(vendor.service());
    let tasks: Vec<_> = (0..4).map(|_| tokio::spawn(svc.clone().oneshot(get()))).collect();
    let mut retried = 0;
    for task in tasks {
        let res = task.await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        retried += usize::from(res.extensions().get::<Report>().is_some());
        // `BoxBody` wants a `Send + Sync` body.
        let body = res.into_body().map_err(BoxError::from).boxed();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "200");
    }
    assert_eq!(retried, 1);
    assert_eq!(vendor.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn the_stack_is_sync_it_boxes_as_a_sync_service_and_is_shared_in_an_arc() {
    let vendor = Script::new([UNAVAILABLE]);
    let svc = tower::util::BoxCloneSyncService::new(ServiceBuilder::new().layer(layer()).service(vendor.service()));
    let shared = Arc::new(svc);
    let task = {
        let shared = shared.clone();
        tokio::spawn(async move { (*shared).clone().oneshot(get()).await.map(|res| res.into_body().boxed_unsync()) })
    };
    let body = task.await.unwrap().unwrap();
    assert_eq!(body.collect().await.unwrap().to_bytes(), "200");
    assert_eq!(vendor.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn load_shed_over_a_concurrency_limit_outside_sheds_the_call_beyond_it_unsent() {
    let vendor = Script::new([(200, 10 * S)]);
    let mut svc = ServiceBuilder::new().load_shed().concurrency_limit(1).layer(layer()).service(vendor.service());
    let first = svc.ready().await.unwrap().call(get());
    let err = svc.ready().await.unwrap().call(get()).await.unwrap_err();
    assert!(err.is::<tower::load_shed::error::Overloaded>(), "{err}");
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn steer_sends_each_request_to_its_own_retrying_stack() {
    let (reads, writes) = (Script::new([]), Script::new([UNAVAILABLE]));
    let stack = |vendor: &Script| ServiceBuilder::new().layer(layer()).service(vendor.service()).boxed_clone();
    let steer = tower::steer::Steer::new(vec![stack(&reads), stack(&writes)], |req: &Request<_>, _: &[_]| {
        usize::from(req.method() == http::Method::POST)
    });
    let post = Request::post("http://vendor.test/things").body(Full::from("{}")).unwrap();
    // A 503 is refused unprocessed: re-sent for any method.
    assert_eq!(steer.oneshot(post).await.unwrap().status(), StatusCode::OK);
    assert_eq!((reads.calls(), writes.calls()), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_redirect_outside_redial_is_followed_as_a_request_of_its_own() {
    let vendor = tower::service_fn(|req: Req| async move {
        let res = match req.uri().path() {
            "/old" => Response::builder().status(301).header("location", "/new").body(Full::default()),
            _ => Response::builder().body(Full::<Bytes>::from("new")),
        };
        Ok::<_, Infallible>(res.unwrap())
    });
    let svc = ServiceBuilder::new()
        .layer(tower_http::follow_redirect::FollowRedirectLayer::new())
        .layer(layer())
        .service(vendor);
    let res = svc.oneshot(Request::get("http://vendor.test/old").body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "new");
}

// ---------------------------------------------------------------------------------------------
// Inside redial: each attempt.

/// A first request meets a 503 and waits 1 s for its retry; a second sent 10 ms later goes
/// at once through `svc`, whose inner layer admits one call at a time: the first holds none of
/// it through its backoff.
async fn a_backoff_holds_nothing_of<S>(svc: S, vendor: &Script)
where
    S: Service<Request<Full<Bytes>>, Response = Response<redial::ResponseBody<Full<Bytes>>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
{
    let started = Instant::now();
    let first = tokio::spawn(svc.clone().oneshot(get()));
    tokio::time::sleep(10 * MS).await;
    let second = svc.oneshot(get()).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), 10 * MS);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_inside_is_not_held_through_a_backoff() {
    let vendor = Script::new([UNAVAILABLE]);
    a_backoff_holds_nothing_of(
        ServiceBuilder::new().layer(layer()).concurrency_limit(1).service(vendor.service()),
        &vendor,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_buffer_inside_is_not_held_through_a_backoff() {
    let vendor = Script::new([UNAVAILABLE]);
    a_backoff_holds_nothing_of(ServiceBuilder::new().layer(layer()).buffer(1).service(vendor.service()), &vendor).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_mid_attempt_gives_back_the_permit_of_a_concurrency_limit_inside() {
    let vendor = Script::new([(200, 3600 * S)]);
    let svc = ServiceBuilder::new().layer(layer()).concurrency_limit(1).service(vendor.service());
    let hung = tokio::spawn(svc.clone().oneshot(get()));
    tokio::time::sleep(S).await;
    hung.abort();
    assert!(hung.await.unwrap_err().is_cancelled());
    let started = Instant::now();
    let res = tokio::time::timeout(10 * S, svc.oneshot(get())).await.expect("the permit came back").unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_redirect_inside_redial_is_followed_within_each_attempt() {
    // `/old` redirects to `/new`, which is unavailable once: the retry starts over at `/old`.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let vendor = tower::service_fn(move |req: Req| {
        let mut seen = log.lock().unwrap();
        seen.push(req.uri().path().to_owned());
        let new_calls = seen.iter().filter(|p| *p == "/new").count();
        let res = match req.uri().path() {
            "/old" => Response::builder().status(301).header("location", "/new").body(Full::default()),
            _ if new_calls == 1 => Response::builder().status(503).header("retry-after", "1").body(Full::default()),
            _ => Response::builder().body(Full::<Bytes>::from("new")),
        };
        std::future::ready(Ok::<_, Infallible>(res.unwrap()))
    });
    let svc = ServiceBuilder::new()
        .layer(layer())
        .layer(tower_http::follow_redirect::FollowRedirectLayer::new())
        .service(vendor);
    let res = svc.oneshot(Request::get("http://vendor.test/old").body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.extensions().get::<Report>().unwrap().attempt_count(), 2);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "new");
    assert_eq!(*seen.lock().unwrap(), ["/old", "/new", "/old", "/new"]);
}

/// A 307 keeps the method and the body (RFC 9110 §15.4.8): a redirect layer inside redial
/// follows it with the body only if its policy can clone the body, which a buffered
/// `RetryBody` can (`try_clone`). tower-http's standard policy alone does not follow it.
#[tokio::test(start_paused = true)]
async fn a_307_inside_redial_is_followed_with_its_body_by_a_policy_that_clones_it() {
    use tower_http::follow_redirect::{policy, policy::PolicyExt, FollowRedirectLayer};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let vendor = tower::service_fn(move |req: Req| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            log.lock().unwrap().push((path.clone(), body));
            let res = match path.as_str() {
                "/old" => Response::builder().status(307).header("location", "/new").body(Full::default()),
                _ => Response::builder().status(201).body(Full::<Bytes>::from("created")),
            };
            Ok::<_, Infallible>(res.unwrap())
        }
    });
    let post = || Request::post("http://vendor.test/old").body(Full::new(Bytes::from_static(b"{\"id\":1}"))).unwrap();
    let clones = policy::Standard::default().and::<_, _, ()>(policy::clone_body_fn(RetryBody::try_clone));
    let svc =
        ServiceBuilder::new().layer(layer()).layer(FollowRedirectLayer::with_policy(clones)).service(vendor.clone());
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("/old".to_owned(), Bytes::from_static(b"{\"id\":1}")),
            ("/new".to_owned(), Bytes::from_static(b"{\"id\":1}"))
        ]
    );

    seen.lock().unwrap().clear();
    let svc = ServiceBuilder::new().layer(layer()).layer(FollowRedirectLayer::new()).service(vendor);
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TEMPORARY_REDIRECT, "not followed without a clone of the body");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_inside_bounds_each_attempt_and_reads_as_a_timeout() {
    let vendor = Script::new([(200, 60 * S)]);
    let svc = ServiceBuilder::new().layer(layer()).timeout(5 * S).service(vendor.service());
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let report = res.extensions().get::<Report>().unwrap();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].failure, Some(Failure::Timeout), "{report:?}");

    // Every attempt timed out: the error says so, and owns the timeout's error.
    let vendor = Script::new([(200, 60 * S); 3]);
    let svc = ServiceBuilder::new().layer(layer()).timeout(5 * S).service(vendor.service());
    let err = svc.oneshot(get()).await.unwrap_err();
    assert!(err.is_timeout() && err.is_exhausted(), "{err}");
    let source = std::error::Error::source(&err).unwrap();
    assert!(source.is::<tower::timeout::error::Elapsed>(), "{source:?}");
}

#[tokio::test(start_paused = true)]
async fn a_post_shed_by_load_shed_inside_fails_as_refused_on_this_side_not_as_one_that_may_have_been_sent() {
    let vendor = Script::new([(200, 10 * S)]);
    let svc = ServiceBuilder::new().layer(layer()).load_shed().concurrency_limit(1).service(vendor.service());
    let post = || Request::post("http://vendor.test/things").body(Full::from("{}")).unwrap();
    let first = tokio::spawn(svc.clone().oneshot(post()));
    tokio::time::sleep(10 * MS).await;
    let err = svc.oneshot(post()).await.unwrap_err();
    assert_eq!(err.failure(), Some(Failure::Local), "{err}");
    assert!(err.is_final() && !err.is_not_idempotent(), "{err}");
    assert!(std::error::Error::source(&err).unwrap().is::<tower::load_shed::error::Overloaded>());
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_outside_that_fires_mid_backoff_leaves_a_buffer_and_a_limit_inside_free() {
    // A 503 asks for 1 s; the caller's timeout ends the request half-way through that wait.
    let vendor = Script::new([UNAVAILABLE]);
    let inner = ServiceBuilder::new().buffer(1).concurrency_limit(1).service(vendor.service());
    let retrying = ServiceBuilder::new().layer(layer()).service(inner);
    let svc = ServiceBuilder::new().timeout(500 * MS).service(retrying.clone());
    let err = svc.oneshot(get()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    let started = Instant::now();
    let res = tokio::time::timeout(S, retrying.oneshot(get())).await.expect("a slot and a permit are free");
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(vendor.calls(), 2);
}

/// An inner service that is not ready for `busy` after each call (it wakes its caller when
/// it is), and counts how often it is asked.
#[derive(Clone)]
struct BusyAfterEachCall<T> {
    inner: T,
    busy: Duration,
    until: Arc<Mutex<Option<Instant>>>,
    polls: Arc<std::sync::atomic::AtomicUsize>,
}

impl<T: Service<Req>> Service<Req> for BusyAfterEachCall<T> {
    type Response = T::Response;
    type Error = T::Error;
    type Future = T::Future;
    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), T::Error>> {
        self.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(until) = *self.until.lock().unwrap() {
            if Instant::now() < until {
                let waker = cx.waker().clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(until).await;
                    waker.wake();
                });
                return std::task::Poll::Pending;
            }
        }
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: Req) -> T::Future {
        *self.until.lock().unwrap() = Some(Instant::now() + self.busy);
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_an_inner_service_that_is_not_ready_without_polling_it_in_a_loop() {
    let vendor = Script::new([UNAVAILABLE]);
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let busy =
        BusyAfterEachCall { inner: vendor.service(), busy: 5 * S, until: Default::default(), polls: polls.clone() };
    // redial's own limits too: the rate slot is given back while the service is not ready.
    let policy = Policy::builder().backoff(Backoff::constant(S)).rate_limit(10, S).max_concurrency(2).build().unwrap();
    let svc = ServiceBuilder::new().layer(RetryLayer::new(Generic, policy)).service(busy);
    let started = Instant::now();
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The retry was due at 1 s and went when the service was ready again.
    assert_eq!(started.elapsed(), 5 * S);
    // Once for the first attempt, once at 1 s, once when woken at 5 s.
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// A login answered with its token as the body.
#[derive(Debug)]
struct PlainLogin;

impl Login for PlainLogin {
    fn request(&self) -> Request<Bytes> {
        Request::post("http://vendor.test/login").body(Bytes::new()).unwrap()
    }
    fn parse(&self, _: &redial::core::ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        Ok(Credential::new(String::from_utf8_lossy(body).into_owned(), Some(3600 * S)))
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_goes_through_a_buffer_of_one_inside_while_its_request_waits() {
    // The request is polled ready (it holds the buffer's one slot), then waits for a login
    // that needs a slot of the same buffer.
    let vendor = tower::service_fn(|req: Req| async move {
        let token = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("none");
        let body = if req.uri().path() == "/login" { "t1".to_owned() } else { token.to_owned() };
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(body)))
    });
    let source = TokenSource::login(PlainLogin);
    let layer =
        RetryLayer::builder().default_host(Generic, Policy::default()).auth("*", source.clone()).unwrap().build();
    let svc = ServiceBuilder::new().layer(layer).buffer(1).service(vendor);
    let res = tokio::time::timeout(10 * S, svc.oneshot(get())).await.expect("no deadlock").unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "Bearer t1");
    assert_eq!(source.logins(), 1);
}

/// Marketo's 606 in a 200, gzipped as a vendor sends it to a client that accepts gzip.
const GZIPPED_606: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x15, 0xca, 0x31, 0x0e, 0x82, 0x40, 0x10, 0x46, 0xe1,
    0xab, 0x4c, 0xc6, 0x62, 0x1b, 0x8a, 0x85, 0x18, 0x0a, 0x6e, 0x60, 0xe1, 0x09, 0x8c, 0xc5, 0x3a, 0xfb, 0xab, 0x9b,
    0x80, 0xc4, 0x99, 0x25, 0x90, 0x10, 0xee, 0xee, 0x58, 0xbe, 0x97, 0x6f, 0x67, 0xc5, 0x77, 0x81, 0xd5, 0x4b, 0xe6,
    0x81, 0x71, 0xee, 0x1e, 0xa7, 0x96, 0x1b, 0xb6, 0x45, 0x04, 0x66, 0x3c, 0x3c, 0xd3, 0x68, 0x68, 0x18, 0xaa, 0xb3,
    0x7a, 0xde, 0x76, 0x96, 0x39, 0xc3, 0x69, 0x1f, 0x7b, 0x77, 0x93, 0xa3, 0xf4, 0xfa, 0xf7, 0x35, 0x6d, 0xa4, 0xa9,
    0x82, 0xc6, 0x32, 0x95, 0x4a, 0xa1, 0x8d, 0x31, 0x10, 0x36, 0x01, 0x32, 0x32, 0xad, 0xa5, 0xbe, 0xa9, 0x7c, 0x28,
    0x74, 0x7e, 0x0d, 0x62, 0x7c, 0xdc, 0x8f, 0x1f, 0x57, 0x4c, 0x49, 0x25, 0x7c, 0x00, 0x00, 0x00,
];

/// A simulated Marketo whose first answer is [`GZIPPED_606`], and redial serving it.
async fn gzipping_marketo() -> (Sim, RetryLayer) {
    let sim = Sim::start().await.unwrap();
    let gzipped = Reply::json(200, "").header("content-encoding", "gzip").body(GZIPPED_606);
    sim.enqueue("/rest/v1/leads.json", gzipped);
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, r#"{"requestId":"b","success":true,"result":[]}"#));
    let layer = redial::builder().vendor_at(Vendor::Marketo, "127.0.0.1").unwrap().rng_seed(1).build();
    (sim, layer)
}

#[tokio::test(start_paused = true)]
async fn decompression_inside_and_trace_outside_over_hyper_util_let_redial_read_a_gzipped_606() {
    let (sim, layer) = gzipping_marketo().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let svc = ServiceBuilder::new()
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(layer)
        .layer(tower_http::decompression::DecompressionLayer::new())
        .service(client);
    let res = svc.oneshot(Request::get(sim.url("/rest/v1/leads.json")).body(Full::default()).unwrap()).await.unwrap();
    let report = res.extensions().get::<Report>().expect("redial retried").clone();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.errors[0].1.code, "606");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), r#"{"requestId":"b","success":true,"result":[]}"#);
    assert!(sim.requests().iter().all(|r| r.headers["accept-encoding"] == "gzip"));
}

#[tokio::test(start_paused = true)]
async fn decompression_outside_hides_a_gzipped_606_from_redial() {
    // The order the README warns against: redial reads gzip, not JSON, and takes the 200 for a
    // success; the caller gets Marketo's refusal, decoded, as if it had been served.
    let (sim, layer) = gzipping_marketo().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let svc =
        ServiceBuilder::new().layer(tower_http::decompression::DecompressionLayer::new()).layer(layer).service(client);
    let res = svc.oneshot(Request::get(sim.url("/rest/v1/leads.json")).body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.extensions().get::<Report>().is_none());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(br#"{"requestId":"e42b#1","success":false"#), "{body:?}");
    assert_eq!(sim.count("/rest/v1/leads.json"), 1);
}
