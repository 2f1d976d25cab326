//! The engine against the tower and http-body contracts, with hand-written services and bodies
//! on the paused clock: bodies at their limits, readiness, and what the caller gets back.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::Full;
use redial_core::generic::Generic;
use redial_core::Policy;
use redial_tower::{RetryBody, RetryLayer};
use tower::{ServiceBuilder, ServiceExt};

/// A body of the frames given, that does not know when it is at its end (a chunked body on the
/// wire): its end is a poll that returns `None`.
#[derive(Debug)]
struct Frames(VecDeque<Frame<Bytes>>);

impl Frames {
    fn new(data: &[&'static [u8]]) -> Self {
        Frames(data.iter().map(|d| Frame::data(Bytes::from_static(d))).collect())
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// An RFC 9457 problem padded with spaces to exactly `len` bytes.
fn problem_of_len(len: usize) -> Vec<u8> {
    let mut body = br#"{"type":"https://vendor.test/quota","title":"Over quota","status":400}"#.to_vec();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

fn problem_reply<B>(body: B) -> Response<B> {
    Response::builder().status(400).header("content-type", "application/problem+json").body(body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_error_body_exactly_at_the_inspect_limit_is_read_whole_and_parsed() {
    const LIMIT: usize = 128;
    let policy = || Policy::builder().inspect_limit(LIMIT).build().unwrap();
    let body: &'static [u8] = problem_of_len(LIMIT).leak();

    // In one frame that knows its end (a body of known length), and in two frames that do not.
    let one = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| async move {
        Ok::<_, Infallible>(problem_reply(Full::new(Bytes::from_static(body))))
    });
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(RetryLayer::new(Generic, policy())).service(one).oneshot(req).await;
    let err = err.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(err.body().map(|b| b.len()), Some(LIMIT));
    assert!(err.body_is_complete(), "{LIMIT} bytes of a {LIMIT}-byte body are the whole body");
    assert_eq!(err.problem().and_then(|p| p.title.as_deref()), Some("Over quota"), "{err:?}");

    let two = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| async move {
        Ok::<_, Infallible>(problem_reply(Frames::new(&[&body[..LIMIT / 2], &body[LIMIT / 2..]])))
    });
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(RetryLayer::new(Generic, policy())).service(two).oneshot(req).await;
    let err = err.unwrap_err();
    assert!(err.body_is_complete());
    assert_eq!(err.problem().and_then(|p| p.title.as_deref()), Some("Over quota"), "{err:?}");

    // One byte more is past the limit: not parsed, and the error says its body is cut.
    let longer: &'static [u8] = problem_of_len(LIMIT + 1).leak();
    let over = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| async move {
        Ok::<_, Infallible>(problem_reply(Frames::new(&[&longer[..LIMIT], &longer[LIMIT..]])))
    });
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(RetryLayer::new(Generic, policy())).service(over).oneshot(req).await;
    let err = err.unwrap_err();
    assert!(!err.body_is_complete());
    assert_eq!(err.body().map(|b| b.len()), Some(LIMIT));
    assert!(err.problem().is_none());
}

/// A body that sends its first `limit` bytes, then nothing more, ever (a stalled stream).
struct Stalled(Option<Bytes>);

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut().0.take() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None => Poll::Pending,
        }
    }
}

/// Exactly at the inspect limit, the engine looks once for the body's end and never waits for
/// it: a body that stalls there is taken as cut at once, not waited on until the deadline.
#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_exactly_at_the_inspect_limit_is_not_waited_for() {
    const LIMIT: usize = 128;
    let body = Bytes::from(problem_of_len(LIMIT));
    let stalled = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| {
        let body = body.clone();
        async move { Ok::<_, Infallible>(problem_reply(Stalled(Some(body)))) }
    });
    let policy = Policy::builder().inspect_limit(LIMIT).build().unwrap();
    let started = tokio::time::Instant::now();
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(RetryLayer::new(Generic, policy)).service(stalled).oneshot(req).await;
    let err = err.unwrap_err();
    assert_eq!(started.elapsed(), std::time::Duration::ZERO, "waited for a frame that never comes");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(err.body().map(|b| b.len()), Some(LIMIT));
    assert!(!err.body_is_complete(), "its end was not seen");
}

/// A body that always has one more empty frame ready: it never ends, and never waits. With a
/// length (`Some`), it claims that exact size, so that a request body is buffered for replay.
struct Spinning(Option<u64>);

impl Body for Spinning {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::new()))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.0.map_or_else(http_body::SizeHint::default, http_body::SizeHint::with_exact)
    }
}

/// A body that never ends nor waits does not hold the thread: the engine yields between
/// frames, so other tasks run and the deadline still cuts it (before, one poll spun forever).
/// For the response body being read, and for a request body being buffered for replay.
#[test]
fn a_body_that_never_waits_nor_ends_yields_and_is_cut_at_the_attempts_end() {
    let vendor = |_: Request<RetryBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::builder().status(StatusCode::BAD_REQUEST).body(Spinning(None)).unwrap())
    };
    let err = watched(move || past_the_deadline(vendor, Full::default()));
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");
    assert_eq!(err.failure(), Some(redial_core::Failure::Timeout), "{err}");

    let vendor =
        |_: Request<RetryBody<Spinning>>| async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) };
    let err = watched(move || past_the_deadline(vendor, Spinning(Some(10))));
    assert!(err.is_deadline(), "{err}");
    assert_eq!(err.report().attempt_count(), 0, "never sent: its body never came");
}

/// `scenario` on a paused-clock runtime of its own thread: were the engine to spin in one
/// poll, the test fails after a minute instead of hanging.
fn watched<F: std::future::Future<Output = redial_tower::Error> + 'static>(
    scenario: impl FnOnce() -> F + Send + 'static,
) -> redial_tower::Error {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let _ = done.send(rt.block_on(scenario()));
    });
    result.recv_timeout(std::time::Duration::from_secs(60)).expect("the engine spun in one poll")
}

/// A POST of `body` to `vendor` under a 10 s deadline, while this task (which runs only if the
/// call yields) lets the call start, then moves the clock past the deadline: the error.
async fn past_the_deadline<B, RB, F>(
    vendor: impl FnMut(Request<RetryBody<B>>) -> F + Clone + Send + 'static,
    body: B,
) -> redial_tower::Error
where
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
    RB: Body<Data = Bytes, Error = Infallible> + Send + 'static,
    F: std::future::Future<Output = Result<Response<RB>, Infallible>> + Send + 'static,
{
    let policy = Policy::builder().deadline(std::time::Duration::from_secs(10)).build().unwrap();
    let svc = ServiceBuilder::new().layer(RetryLayer::new(Generic, policy)).service(tower::service_fn(vendor));
    let req = Request::post("http://vendor.test/things").body(body).unwrap();
    let call = tokio::spawn(svc.oneshot(req));
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    call.await.unwrap().unwrap_err()
}

/// An inner service that is never ready: its pool is closed.
#[derive(Clone)]
struct Closed;

impl tower::Service<Request<RetryBody<Full<Bytes>>>> for Closed {
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Response<Full<Bytes>>, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Err(std::io::Error::other("pool closed")))
    }

    fn call(&mut self, _: Request<RetryBody<Full<Bytes>>>) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test(start_paused = true)]
async fn an_inner_service_that_fails_to_get_ready_for_the_first_attempt_is_not_called_a_retry() {
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(RetryLayer::generic()).service(Closed).oneshot(req).await.unwrap_err();
    assert_eq!(err.report().attempt_count(), 0);
    assert!(std::error::Error::source(&err).is_some_and(|e| e.to_string() == "pool closed"));
    let shown = err.to_string();
    assert!(!shown.contains("retry"), "no attempt was made, let alone a retry: {shown}");
}

/// `Report::gave_up` is `None` only on a response redial took for a success: the response an
/// `Error` hands back with `into_response` says why redial gave up on it, as the same response
/// returned by a layer built with `final_responses_as_ok` does.
#[tokio::test(start_paused = true)]
async fn a_response_taken_out_of_an_error_says_why_redial_gave_up_on_it() {
    let vendor = tower::service_fn(|_: Request<RetryBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::builder().status(404).body(Full::new(Bytes::from_static(b"nope"))).unwrap())
    });
    let req = Request::get("http://vendor.test/things").body(Full::default()).unwrap();
    let err = ServiceBuilder::new().layer(RetryLayer::generic()).service(vendor).oneshot(req).await.unwrap_err();
    let res = err.into_response().unwrap();
    let report = res.extensions().get::<redial_tower::Report>().unwrap();
    assert_eq!(report.gave_up, Some(redial_core::FailReason::Final));
}
