//! The reqwest front door: what reqwest itself knows of a request and its errors survives the
//! crossing into the engine and back. These are the cases the tower door never meets (the
//! scenarios both doors share are in `front_doors.rs`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::InspectEverything;
use http::Extensions;
use redial::core::backoff::Backoff;
use redial::{Policy, RetryLayer};
use redial_reqwest::RedialMiddleware;
use redial_sim::{Reply, Sim};
use reqwest_middleware::{ClientBuilder, Middleware, Next};

fn generic() -> RetryLayer {
    let policy = Policy::builder().backoff(Backoff::constant(Duration::from_millis(100))).build().unwrap();
    RetryLayer::builder().default_host(redial::core::generic::Generic, policy).rng_seed(7).build()
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_redirect_loop_is_final_as_without_redial() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/loop", Reply::status(302).header("Location", "/loop"));
    let bare = ClientBuilder::new(plain()).build();
    assert!(bare.get(sim.url("/loop")).send().await.unwrap_err().is_redirect());
    let without = sim.take_requests().len();

    let client = ClientBuilder::new(plain()).with(RedialMiddleware::new(generic())).build();
    let e = client.get(sim.url("/loop")).send().await.unwrap_err();
    assert_eq!(sim.take_requests().len(), without, "the chain of redirects is not run again");
    let err = redial_reqwest::redial_error(&e).expect("redial's error");
    assert_eq!(err.report().attempt_count(), 1);
    assert!(err.is_final(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_request_reqwest_cannot_build_is_final_and_never_left() {
    // An https-only client and an http URL: it can never succeed, and it was never sent.
    let https_only = reqwest::Client::builder().no_proxy().https_only(true).build().unwrap();
    let client = ClientBuilder::new(https_only).with(RedialMiddleware::new(generic())).build();
    for e in [
        client.get("http://127.0.0.1:9/x").send().await.unwrap_err(),
        client.post("http://127.0.0.1:9/x").body("x").send().await.unwrap_err(),
    ] {
        let err = redial_reqwest::redial_error(&e).expect("redial's error");
        assert_eq!(err.report().attempt_count(), 1);
        let failure = err.report().attempts[0].failure.expect("no response");
        assert!(!failure.may_have_reached_server(), "{failure:?}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_url_reqwest_takes_and_http_does_not_fails_as_reqwest_says() {
    let bare = ClientBuilder::new(plain()).build();
    let without = bare.get("http://{{hostname}}/").send().await.unwrap_err();
    let client = ClientBuilder::new(plain()).with(RedialMiddleware::new(generic())).build();
    let with = client.get("http://{{hostname}}/").send().await.unwrap_err();
    assert!(without.is_builder() && with.is_builder(), "{without} / {with}");
    assert_eq!(with.url().map(|u| u.as_str()), without.url().map(|u| u.as_str()));
}

/// Counts the requests with a body that reach the middleware after redial.
struct SeeBody(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Middleware for SeeBody {
    async fn handle(
        &self,
        req: reqwest::Request,
        ext: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if req.body().is_some() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        next.run(req, ext).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_body_reaches_later_middlewares_without_one() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::ok());
    let seen = Arc::new(AtomicUsize::new(0));
    let client = ClientBuilder::new(plain()).with(RedialMiddleware::new(generic())).with(SeeBody(seen.clone())).build();
    client.get(sim.url("/x")).send().await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 0, "a GET without a body was given one");
    client.post(sim.url("/x")).body("").send().await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 1, "an empty body is still a body");
}

/// A server on loopback that answers every request with `answer`, byte for byte.
async fn raw_server(answer: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
                let _ = s.read(&mut buf).await;
            });
        }
    });
    format!("http://{addr}/x")
}

/// A chunked 200 with a trailer.
const WITH_TRAILER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\
      trailer: x-checksum\r\n\r\n2\r\n{}\r\n0\r\nx-checksum: abc\r\n\r\n";

/// A chunked 200 (no Content-Length).
const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";

async fn trailer(res: reqwest::Response) -> Option<http::HeaderValue> {
    use http_body_util::BodyExt;
    let collected = http::Response::<reqwest::Body>::from(res).into_body().collect().await.unwrap();
    collected.trailers().and_then(|t| t.get("x-checksum").cloned())
}

#[tokio::test(start_paused = true)]
async fn trailers_survive_a_body_the_engine_read() {
    let url = raw_server(WITH_TRAILER).await;
    let bare = ClientBuilder::new(plain()).build();
    assert_eq!(trailer(bare.get(&url).send().await.unwrap()).await.as_ref().map(|v| v.as_bytes()), Some(&b"abc"[..]));
    let layer = RetryLayer::builder().default_host(InspectEverything, Policy::default()).build();
    let client = ClientBuilder::new(plain()).with(RedialMiddleware::new(layer)).build();
    assert_eq!(trailer(client.get(&url).send().await.unwrap()).await.as_ref().map(|v| v.as_bytes()), Some(&b"abc"[..]));
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_reqwest_cannot_take_is_final_and_never_left() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/x", Reply::ok());
    // A login names an endpoint `http::Uri` takes and reqwest's URL parser refuses (a port
    // past 65535): every attempt to it fails to build, as a builder error, before it leaves.
    let endpoint: http::Uri = "http://127.0.0.1:99999".parse().unwrap();
    let source = redial::TokenSource::from_fn(redial::core::auth::Attach::Bearer, move || {
        let endpoint = endpoint.clone();
        async move { Ok(redial::core::auth::Credential::new("tok", None).with_endpoint(endpoint)) }
    });
    let layer = RetryLayer::builder()
        .host("127.0.0.1", redial::core::generic::Generic, Policy::default())
        .unwrap()
        .auth("127.0.0.1", source)
        .unwrap()
        .build();
    let client = ClientBuilder::new(plain()).with(RedialMiddleware::new(layer)).build();
    let e = client.get(sim.url("/x")).send().await.unwrap_err();
    let err = redial_reqwest::into_redial_error(e).unwrap();
    assert_eq!(err.report().attempt_count(), 1, "{err}");
    assert!(err.is_final(), "{err}");
    let failure = err.report().attempts[0].failure.expect("no response");
    assert!(!failure.may_have_reached_server(), "{failure:?}: {err}");
}

/// A URL's password never shows in the error, its text or its `Debug`: reqwest's own error
/// names the URL, and redial's error keeps reqwest's as its source.
#[tokio::test(start_paused = true)]
async fn a_password_in_the_url_never_shows_in_the_error() {
    // A port nobody listens on: a connect error, which names the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = reqwest::Url::parse(&format!("http://api-user:TOPSECRET@127.0.0.1:{port}/x")).unwrap();
    let client = ClientBuilder::new(plain()).with(RedialMiddleware::new(generic())).build();
    let e = client.execute(reqwest::Request::new(reqwest::Method::GET, url)).await.unwrap_err();
    let err = redial_reqwest::redial_error(&e).expect("redial's error");
    assert!(err.report().attempt_count() >= 1);
    let mut shown = format!("{e} {e:?} {err} {err:?}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        shown.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!shown.contains("TOPSECRET"), "{shown}");
}

/// A body whose length the wire did not tell (chunked) has no `content_length` without redial;
/// read by the engine to classify it, it must not come back with one.
#[tokio::test(start_paused = true)]
async fn a_chunked_body_the_engine_read_keeps_its_unknown_length() {
    let url = raw_server(CHUNKED).await;
    let bare = ClientBuilder::new(plain()).build();
    let res = bare.get(&url).send().await.unwrap();
    assert_eq!(res.content_length(), None);
    let layer = RetryLayer::builder().default_host(InspectEverything, Policy::default()).build();
    let client = ClientBuilder::new(plain()).with(RedialMiddleware::new(layer)).build();
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.content_length(), None, "the length the wire did not tell");
    assert_eq!(res.bytes().await.unwrap(), "{}");
}
