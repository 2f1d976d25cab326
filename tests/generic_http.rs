//! What only the tower door has, and the budget: the generic rules against the simulator over
//! real sockets are in `front_doors.rs`, run through both doors. Here, readiness polled again
//! before each retry (a tower `Service` concept), and a host held to its retry budget (1,000
//! requests to an in-process service that always fails), on tokio's paused clock.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redial::core::backoff::Backoff;
use redial::core::budget::BudgetConfig;
use redial::{Policy, RetryBody, RetryLayer};
use redial_sim::{Reply, Sim};
use tower::{Service, ServiceBuilder, ServiceExt};

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

fn get(sim: &Sim, path: &str) -> Request<Full<Bytes>> {
    Request::get(sim.url(path)).body(Full::default()).unwrap()
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

/// A connect that failed for another reason than a refusal (here a TLS handshake, as a TLS
/// connector reports it; a name that does not resolve is the same) never wrote the request:
/// `redial::builder()` reads hyper-util's connect error as such, and sends a POST again.
#[tokio::test(start_paused = true)]
async fn a_post_whose_connect_failed_over_hyper_util_is_sent_again() {
    use hyper_util::rt::TokioIo;
    let connects = Arc::new(AtomicUsize::new(0));
    let counted = connects.clone();
    let connector = tower::service_fn(move |_: http::Uri| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<TokioIo<tokio::net::TcpStream>, _>(std::io::Error::other("tls handshake failed")))
    });
    let client = Client::builder(TokioExecutor::new()).build::<_, RetryBody<Full<Bytes>>>(connector);
    let policy = fast_policy().max_attempts(3).build().unwrap();
    let layer = redial::builder().default_host(redial::Generic, policy).build();
    let post = || Request::post("http://api.example.com/v1/orders").body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    let err = ServiceBuilder::new().layer(layer).service(client.clone()).oneshot(post()).await.unwrap_err();
    assert_eq!(connects.load(Ordering::SeqCst), 3, "{err}");
    assert!(err.is_exhausted(), "{err}");
    assert_eq!(err.failure(), Some(redial::core::Failure::Connect));

    // The tower layer's own default knows only a refused connect: the POST may have been sent.
    connects.store(0, Ordering::SeqCst);
    let layer = RetryLayer::builder().default_host(redial::Generic, fast_policy().build().unwrap()).build();
    let err = ServiceBuilder::new().layer(layer).service(client).oneshot(post()).await.unwrap_err();
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    assert!(err.is_not_idempotent(), "{err}");
}
