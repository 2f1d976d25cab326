//! Behaviour of the simulator as seen by a real hyper client over loopback sockets.

use std::error::Error as StdError;
use std::io::ErrorKind;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redial_sim::{ConnFault, Fault, Recorded, Reply, Sim, RECORDED_BODY_LIMIT};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// The handle and the script types can be shared across tasks and threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Sim>();
    send_sync::<Reply>();
    send_sync::<Recorded>();
};

type TestClient = Client<HttpConnector, Full<Bytes>>;
type ClientResult = Result<Response<Incoming>, hyper_util::client::legacy::Error>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(client: &TestClient, url: String) -> ClientResult {
    client.get(url.parse().unwrap()).await
}

/// GET and read the whole response: (status, body).
async fn fetch(client: &TestClient, url: String) -> (u16, String) {
    let response = get(client, url).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Reads a body frame by frame without keeping it: (bytes received, how it ended), where
/// `Err(None)` means no frame arrived within 10 s.
async fn drain(mut body: Incoming) -> (u64, Result<(), Option<hyper::Error>>) {
    let mut received = 0;
    loop {
        match timeout(Duration::from_secs(10), body.frame()).await {
            Ok(Some(Ok(frame))) => received += frame.into_data().unwrap().len() as u64,
            Ok(Some(Err(error))) => return (received, Err(Some(error))),
            Ok(None) => return (received, Ok(())),
            Err(_elapsed) => return (received, Err(None)),
        }
    }
}

/// Whether an error chain contains an I/O error of this kind.
fn has_io_kind(error: &(dyn StdError + 'static), kind: ErrorKind) -> bool {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == kind) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Whether an error chain contains a TCP reset.
fn is_reset(error: &(dyn StdError + 'static)) -> bool {
    has_io_kind(error, ErrorKind::ConnectionReset)
}

#[tokio::test(start_paused = true)]
async fn fifo_replies_then_fallback_then_404() {
    let sim = Sim::start().await.unwrap();
    let c = client();
    let fetch = |path: &str| fetch(&c, sim.url(path));
    sim.enqueue("/a", Reply::json(429, "first"));
    sim.enqueue_many("/a", [Reply::status(503), Reply::ok().body("third")]);
    sim.set_fallback("/b", Reply::status(202).body("fallback"));

    assert_eq!(fetch("/a?x=1").await, (429, "first".into()));
    assert_eq!(fetch("/a").await, (503, "".into()));
    assert_eq!(fetch("/a").await, (200, "third".into()));
    // Queue drained, no fallback: 404 with an empty body.
    assert_eq!(fetch("/a").await, (404, "".into()));
    for _ in 0..3 {
        assert_eq!(fetch("/b").await, (202, "fallback".into()));
    }
    // Queued replies take precedence over the fallback.
    sim.enqueue("/b", Reply::status(500));
    assert_eq!(fetch("/b").await.0, 500);
    assert_eq!(fetch("/b").await.0, 202);
    assert_eq!(fetch("/nowhere").await, (404, "".into()));

    assert_eq!(sim.count("/a"), 4);
    assert_eq!(sim.count("/b?ignored"), 5);
    assert_eq!(sim.count("/nowhere"), 1);
    assert_eq!(sim.count("/never"), 0);
}

#[tokio::test(start_paused = true)]
async fn headers_repeat_and_json_sets_content_type() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/h", Reply::json(200, "{}").header("x-rate", "1").header("X-Rate", "2"));
    let response = get(&client(), sim.url("/h")).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let values: Vec<_> = response.headers().get_all("x-rate").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(response.headers()["content-length"], "2");
}

#[tokio::test(start_paused = true)]
async fn request_log_records_everything() {
    let sim = Sim::start().await.unwrap();
    let c = client();
    let start = Instant::now();
    let request = Request::builder()
        .method(Method::POST)
        .uri(sim.url("/leads?fields=id&x=%20"))
        .header("x-custom", "abc")
        .body(Full::new(Bytes::from("hello")))
        .unwrap();
    c.request(request).await.unwrap().collect().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    fetch(&c, sim.url("/other")).await;

    let log = sim.requests();
    assert_eq!(log.len(), 2);
    let first = &log[0];
    assert_eq!(first.method, Method::POST);
    assert_eq!(first.path, "/leads");
    assert_eq!(first.query.as_deref(), Some("fields=id&x=%20"));
    assert_eq!(first.headers["x-custom"], "abc");
    assert_eq!(first.body, "hello");
    assert_eq!(first.body_len, 5);
    assert!(!first.body_truncated());
    assert_eq!(first.connection, 0);
    assert_eq!(first.at, start);
    let second = &log[1];
    assert_eq!(second.method, Method::GET);
    assert_eq!((second.path.as_str(), second.query.as_deref()), ("/other", None));
    assert_eq!(second.at - first.at, Duration::from_secs(5));
    // Keep-alive: the client reused its connection.
    assert_eq!(second.connection, 0);
    assert_eq!(sim.connections(), 1);
}

#[tokio::test(start_paused = true)]
async fn recorded_body_is_capped() {
    let sim = Sim::start().await.unwrap();
    let body = Bytes::from(vec![b'x'; RECORDED_BODY_LIMIT + 10]);
    let request = Request::post(sim.url("/upload")).body(Full::new(body)).unwrap();
    client().request(request).await.unwrap().collect().await.unwrap();
    let log = sim.requests();
    assert_eq!(log[0].body.len(), RECORDED_BODY_LIMIT);
    assert_eq!(log[0].body_len, RECORDED_BODY_LIMIT as u64 + 10);
    assert!(log[0].body_truncated());
}

#[tokio::test(start_paused = true)]
async fn concurrent_connections_are_served_independently() {
    let sim = Sim::start().await.unwrap();
    let c = client();
    sim.enqueue("/slow", Reply::ok().delay(Duration::from_secs(30)));
    sim.enqueue("/fast", Reply::ok());
    let start = Instant::now();
    let slow = async {
        get(&c, sim.url("/slow")).await.unwrap();
        start.elapsed()
    };
    let fast = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        get(&c, sim.url("/fast")).await.unwrap();
        start.elapsed()
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(fast, Duration::from_secs(1));
    assert_eq!(slow, Duration::from_secs(30));
    assert_eq!(sim.connections(), 2);
    let log = sim.requests();
    assert_ne!(log[0].connection, log[1].connection);
}

#[tokio::test(start_paused = true)]
async fn delay_waits_in_virtual_time() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/d", Reply::status(503).delay(Duration::from_secs(90)));
    let start = Instant::now();
    assert_eq!(fetch(&client(), sim.url("/d")).await.0, 503);
    assert_eq!(start.elapsed(), Duration::from_secs(90));
}

#[tokio::test(start_paused = true)]
async fn reset_after_read_records_then_resets() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/r", Reply::ok().body("never sent").fault(Fault::ResetAfterRead));
    let error = get(&client(), sim.url("/r?q=1")).await.unwrap_err();
    assert!(is_reset(&error), "expected a TCP reset, got {error:?}");
    assert_eq!(sim.count("/r"), 1);
    assert_eq!(sim.requests()[0].query.as_deref(), Some("q=1"));
    // The next request is served normally (on a new connection).
    sim.enqueue("/r", Reply::ok());
    assert_eq!(fetch(&client(), sim.url("/r")).await.0, 200);
    assert_eq!(sim.connections(), 2);
}

#[tokio::test(start_paused = true)]
async fn reset_on_accept_resets_before_reading() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue_connection_fault(ConnFault::ResetOnAccept);
    sim.enqueue_connection_fault(ConnFault::ResetOnAccept);
    sim.set_fallback("/x", Reply::ok());

    let mut raw = TcpStream::connect(sim.addr()).await.unwrap();
    let error = raw.read(&mut [0; 16]).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);

    let error = get(&client(), sim.url("/x")).await.unwrap_err();
    assert!(is_reset(&error), "expected a TCP reset, got {error:?}");
    assert!(sim.requests().is_empty());

    // Faults are consumed one per connection.
    assert_eq!(fetch(&client(), sim.url("/x")).await.0, 200);
    assert_eq!(sim.connections(), 3);
    assert_eq!(sim.requests()[0].connection, 2);
}

#[tokio::test(start_paused = true)]
async fn hang_never_answers_until_shutdown() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/h", Reply::ok().fault(Fault::Hang));
    let (c, url) = (client(), sim.url("/h"));
    let mut pending = tokio::spawn(async move { get(&c, url).await });
    assert!(timeout(Duration::from_secs(10), &mut pending).await.is_err());
    assert_eq!(sim.count("/h"), 1);
    sim.shutdown();
    let result = timeout(Duration::from_secs(1), pending).await.unwrap().unwrap();
    assert!(result.is_err(), "a hung request must fail once the sim shuts down");
}

#[tokio::test(start_paused = true)]
async fn slow_body_arrives_complete_and_slowly() {
    let sim = Sim::start().await.unwrap();
    let every = Duration::from_secs(2);
    sim.enqueue("/s", Reply::ok().body("0123456789").fault(Fault::SlowBody { chunk: 3, every }));
    let start = Instant::now();
    let response = get(&client(), sim.url("/s")).await.unwrap();
    assert!(start.elapsed() < every, "the head is sent at once");
    assert_eq!(response.headers()["content-length"], "10");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "0123456789");
    assert!(start.elapsed() >= every * 4, "4 chunks took only {:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn stall_body_sends_a_prefix_then_nothing() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/st", Reply::ok().body("0123456789").fault(Fault::StallBody { after: 4 }));
    let response = get(&client(), sim.url("/st")).await.unwrap();
    assert_eq!(response.headers()["content-length"], "10");
    let (received, end) = drain(response.into_body()).await;
    assert_eq!(received, 4);
    assert!(matches!(end, Err(None)), "expected a stall, got {end:?}");
}

#[tokio::test(start_paused = true)]
async fn truncated_body_is_a_client_error() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/t", Reply::ok().body(vec![7u8; 100]).fault(Fault::TruncatedBody { sent: 10 }));
    sim.enqueue("/t", Reply::ok().generated_body(8 << 20, 1).fault(Fault::TruncatedBody { sent: 5_000_000 }));
    for (expected_len, sent) in [(100, 10), (8 << 20, 5_000_000)] {
        let response = get(&client(), sim.url("/t")).await.unwrap();
        assert_eq!(response.headers()["content-length"], expected_len.to_string().as_str());
        let (received, end) = drain(response.into_body()).await;
        assert_eq!(received, sent);
        let Err(Some(error)) = end else { panic!("expected a body error, got {end:?}") };
        // The connection was closed before Content-Length bytes arrived.
        assert!(has_io_kind(&error, ErrorKind::UnexpectedEof), "{error:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn generated_body_streams_100_mib() {
    const LEN: u64 = 100 * 1024 * 1024;
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/big", Reply::ok().generated_body(LEN, b'z'));
    let response = get(&client(), sim.url("/big")).await.unwrap();
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let (received, end) = drain(response.into_body()).await;
    assert_eq!(received, LEN);
    assert!(end.is_ok(), "{end:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_accepting() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/", Reply::ok());
    assert_eq!(fetch(&client(), sim.url("/")).await.0, 200);
    sim.shutdown();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(TcpStream::connect(sim.addr()).await.is_err());
    assert!(get(&client(), sim.url("/")).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn drop_stops_accepting() {
    let sim = Sim::start().await.unwrap();
    let addr = sim.addr();
    assert!(TcpStream::connect(addr).await.is_ok());
    drop(sim);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn routes_longest_prefix_wins_and_scripts_win_over_routes() {
    let sim = Sim::start().await.unwrap();
    let c = client();
    sim.route("/api", |req: Recorded| async move { Reply::ok().body(format!("api {}", req.path)) });
    sim.route("/api/v2", |req: Recorded| async move {
        Reply::status(201).body(format!("v2 {} {}", req.path, req.query.unwrap_or_default()))
    });
    sim.route("/files/", |_req: Recorded| async { Reply::status(202) });

    assert_eq!(fetch(&c, sim.url("/api")).await, (200, "api /api".into()));
    assert_eq!(fetch(&c, sim.url("/api/v1/x")).await, (200, "api /api/v1/x".into()));
    assert_eq!(fetch(&c, sim.url("/api/v2/x?q=1")).await, (201, "v2 /api/v2/x q=1".into()));
    assert_eq!(fetch(&c, sim.url("/api/v2")).await.0, 201);
    // Prefixes match whole segments.
    assert_eq!(fetch(&c, sim.url("/apix")).await.0, 404);
    assert_eq!(fetch(&c, sim.url("/api/v2x")).await.0, 200);
    // A prefix ending in `/` serves only what is below it.
    assert_eq!(fetch(&c, sim.url("/files/a")).await.0, 202);
    assert_eq!(fetch(&c, sim.url("/files")).await.0, 404);

    // A queued reply for the exact path wins over the route, once; so does a fallback.
    sim.enqueue("/api/v2/x", Reply::status(503));
    assert_eq!(fetch(&c, sim.url("/api/v2/x")).await.0, 503);
    assert_eq!(fetch(&c, sim.url("/api/v2/x")).await.0, 201);
    sim.set_fallback("/api/fixed", Reply::status(204));
    assert_eq!(fetch(&c, sim.url("/api/fixed")).await.0, 204);

    // Mounting again at a prefix replaces its handler.
    sim.route("/api", |_req: Recorded| async { Reply::status(418) });
    assert_eq!(fetch(&c, sim.url("/api/v1/x")).await.0, 418);

    // Everything is logged, whoever answered.
    assert_eq!(sim.requests().len(), 12);
    assert_eq!(sim.count("/api/v2/x"), 3);
}

#[tokio::test(start_paused = true)]
async fn route_handlers_wait_in_virtual_time_and_are_dropped_with_their_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts the handler futures dropped, finished or not.
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let sim = Sim::start().await.unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = dropped.clone();
    sim.route("/slow", move |_req: Recorded| {
        let guard = OnDrop(counter.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(guard);
            Reply::ok().body("late")
        }
    });
    let c = client();
    let start = Instant::now();
    assert_eq!(fetch(&c, sim.url("/slow")).await, (200, "late".into()));
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);

    // The client gives up after 5 s: its connection closes and the handler future is dropped.
    assert!(timeout(Duration::from_secs(5), get(&client(), sim.url("/slow"))).await.is_err());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    assert_eq!(sim.count("/slow"), 2);
}
