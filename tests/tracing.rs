//! What redial tells tracing: a span per logical request, an event per attempt, never a secret.

mod common;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use redial::{Policy, RetryBody, RetryLayer};
use redial_sim::{Reply, Sim};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test(start_paused = true)]
async fn a_span_per_request_an_event_per_attempt_and_no_secret() {
    let (capture, _guard) = common::Capture::install();

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

    let out = capture.text();
    let attempts: Vec<_> = out.lines().filter(|l| l.contains("attempt")).collect();
    assert_eq!(attempts.len(), 2, "{out}");
    assert!(attempts[0].contains("redial{vendor=\"generic\" method=GET"), "{out}");
    assert!(attempts[0].contains("path=\"/v1/things\""), "{out}");
    assert!(attempts[0].contains("attempt=1") && attempts[0].contains("status=503"), "{out}");
    assert!(attempts[0].contains("action=\"retry\"") && attempts[0].contains("delay_ms=1000"), "{out}");
    assert!(attempts[1].contains("attempt=2") && attempts[1].contains("action=\"return\""), "{out}");
    // When each attempt was sent: the first at the start, the second after its 1 s wait.
    let sent_ms = |line: &str| -> u64 {
        let at = line.find("sent_ms=").expect("a sent_ms field") + "sent_ms=".len();
        line[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert_eq!(sent_ms(attempts[0]), 0, "{out}");
    assert!(sent_ms(attempts[1]) >= 1000, "{out}");
    for secret in ["hunter2", "tok-SECRET", "client_secret", "access_token"] {
        assert!(!out.contains(secret), "{secret} leaked into tracing:\n{out}");
    }
}
