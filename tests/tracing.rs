//! What redial tells tracing: a span per logical request, an event per attempt, never a secret.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use redial::{Policy, RetryBody, RetryLayer};
use redial_sim::{Reply, Sim};
use tower::{ServiceBuilder, ServiceExt};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_span_per_request_an_event_per_attempt_and_no_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = Sim::start().await.unwrap();
    sim.enqueue("/v1/things", Reply::status(503).header("Retry-After", "1"));
    sim.enqueue("/v1/things", Reply::json(200, "{}"));
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let svc =
        ServiceBuilder::new().layer(RetryLayer::new(redial::core::generic::Generic, Policy::default())).service(client);
    let req = Request::get(sim.url("/v1/things?client_secret=hunter2&access_token=tok-SECRET"))
        .header("authorization", "Bearer tok-SECRET")
        .body(Full::default())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert!(res.status().is_success());

    let out = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let attempts: Vec<_> = out.lines().filter(|l| l.contains("attempt")).collect();
    assert_eq!(attempts.len(), 2, "{out}");
    assert!(attempts[0].contains("redial{vendor=\"generic\" method=GET"), "{out}");
    assert!(attempts[0].contains("path=\"/v1/things\""), "{out}");
    assert!(attempts[0].contains("attempt=1") && attempts[0].contains("status=503"), "{out}");
    assert!(attempts[0].contains("action=\"retry\"") && attempts[0].contains("delay_ms=1000"), "{out}");
    assert!(attempts[1].contains("attempt=2") && attempts[1].contains("action=\"return\""), "{out}");
    for secret in ["hunter2", "tok-SECRET", "client_secret", "access_token"] {
        assert!(!out.contains(secret), "{secret} leaked into tracing:\n{out}");
    }
}
