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

/// "Every lowering of a limit and every failover change is a `tracing` event" (the README): a
/// 429 lowers a host's rate limit, a Marketo 615 its concurrency limit, a Responsys
/// `API_NOT_ALLOWED_IN_SECONDARY` fails it over, and a trial the vendor serves brings it back.
#[tokio::test(start_paused = true)]
async fn every_lowering_of_a_limit_and_every_failover_change_is_an_event() {
    use redial::{Vendor, VendorExt};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let (capture, _guard) = common::Capture::install();
    let replies: Arc<Mutex<VecDeque<(u16, &'static str)>>> = Arc::default();
    let queue = replies.clone();
    let vendor = tower::service_fn(move |_req: Request<RetryBody<Full<Bytes>>>| {
        let (status, body) = queue.lock().unwrap().pop_front().unwrap_or((200, r#"{"success":true,"result":[]}"#));
        let res = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("retry-after", "1")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        async move { Ok::<_, std::convert::Infallible>(res) }
    });
    let rated = Policy::builder().rate_limit(10, Duration::from_secs(10)).build().unwrap();
    let layer = RetryLayer::builder()
        .host("rate.example", redial::core::generic::Generic, rated)
        .unwrap()
        .vendor_at(Vendor::Marketo, "mkto.example")
        .unwrap()
        .vendor_at(Vendor::Responsys, "rsys.example")
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(vendor);
    let get = |url: &str| Request::get(url).body(Full::default()).unwrap();
    let events = |needle: &str| capture.text().lines().filter(|l| l.contains(needle)).count();

    replies.lock().unwrap().push_back((429, "{}"));
    svc.clone().oneshot(get("http://rate.example/x")).await.unwrap();
    assert_eq!(layer.current_rate_limit("rate.example"), Some(5));
    assert_eq!(events("host rate limit lowered"), 1, "{}", capture.text());

    replies
        .lock()
        .unwrap()
        .push_back((200, r#"{"success":false,"errors":[{"code":"615","message":"Concurrent access limit reached"}]}"#));
    svc.clone().oneshot(get("http://mkto.example/rest/v1/leads.json")).await.unwrap();
    assert_eq!(layer.current_concurrency_limit("mkto.example"), Some(5));
    assert_eq!(events("vendor refused concurrency: host limit lowered"), 1, "{}", capture.text());

    let secondary = r#"{"type":"","title":"API not allowed in secondary","errorCode":"API_NOT_ALLOWED_IN_SECONDARY","detail":"","errorDetails":[]}"#;
    replies.lock().unwrap().push_back((401, secondary));
    let lists = "http://rsys.example/rest/api/v1.3/lists";
    assert!(svc.clone().oneshot(get(lists)).await.unwrap_err().is_failover());
    assert_eq!(events("failover: the vendor failed over"), 1, "{}", capture.text());
    // Without a probe, a trial request a minute later; the vendor serves it.
    tokio::time::sleep(redial::hooks::FAILOVER_TRIAL_INTERVAL).await;
    svc.oneshot(get(lists)).await.unwrap();
    assert_eq!(layer.failover_mode("rsys.example"), Some(redial::hooks::FailoverMode::Primary));
    assert_eq!(events("failover: the vendor is serving again"), 1, "{}", capture.text());
}

/// A token source configured after it was shared says so (its docs: "ignored, with a warning").
#[test]
fn a_token_source_configured_after_it_was_shared_warns() {
    use redial::core::auth::{Attach, Credential, LoginError};
    let (capture, _guard) = common::Capture::install();
    let source =
        redial::TokenSource::from_fn(Attach::Bearer, || async { Ok::<_, LoginError>(Credential::new("t", None)) });
    let _shared = source.clone();
    let _late = source.skew(std::time::Duration::from_secs(5));
    let out = capture.text();
    assert!(out.contains("WARN") && out.contains("configured after it was cloned"), "{out}");
}

/// A Marketo 606 in a gzipped 200 that reaches redial still encoded (decompression outside it,
/// the order the README warns of) cannot be read: the response goes through as it came, and
/// redial says why once per host, not once per response.
#[tokio::test(start_paused = true)]
async fn an_encoded_body_redial_would_read_is_passed_through_and_warned_of_once() {
    use http_body_util::BodyExt;
    use redial::{Vendor, VendorExt};
    let (capture, _guard) = common::Capture::install();
    let gzipped: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03 a 606, compressed";
    let vendor = tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| async move {
        let res = http::Response::builder()
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(Full::new(Bytes::from_static(gzipped)))
            .unwrap();
        Ok::<_, std::convert::Infallible>(res)
    });
    let layer = RetryLayer::builder().vendor(Vendor::Marketo).build();
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    for _ in 0..2 {
        let req = Request::get("https://123-abc-456.mktorest.com/rest/v1/leads.json").body(Full::default()).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), gzipped);
    }
    let out = capture.text();
    let warnings: Vec<_> = out.lines().filter(|l| l.contains("came encoded")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("gzip"), "{out}");
    assert!(warnings[0].contains("decompression layer inside redial"), "{out}");
}
