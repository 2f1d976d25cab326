//! Vendor rules through the tower layer, against the simulator over real loopback sockets.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use redial::core::{ErrorScope, Kind};
use redial::{Report, RetryBody, RetryLayer, Vendor, VendorExt};
use redial_sim::{Reply, Sim};
use tower::{ServiceBuilder, ServiceExt};

const MARKETO_606: &str = r#"{"requestId":"e42b#14272d07d78","success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"}]}"#;
const MARKETO_RECORDS: &str = r#"{"requestId":"e42b#14272d07d78","success":true,"result":[{"id":50,"status":"created"},{"id":51,"status":"created"},{"status":"skipped","reasons":[{"code":"1005","message":"Lead already exists"}]}]}"#;

fn layer_for(vendor: Vendor) -> RetryLayer {
    // The sim listens on 127.0.0.1: serve that host with the vendor's profile and policy.
    RetryLayer::builder().vendor_at(vendor, "127.0.0.1").unwrap().rng_seed(1).build()
}

async fn send(
    layer: RetryLayer,
    req: Request<Full<Bytes>>,
) -> Result<http::Response<redial::ResponseBody<hyper::body::Incoming>>, redial::Error> {
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    ServiceBuilder::new().layer(layer).service(client).oneshot(req).await
}

#[tokio::test(start_paused = true)]
async fn marketo_200_carrying_606_is_retried_and_the_success_returned() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, MARKETO_606));
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, r#"{"requestId":"a1","success":true,"result":[{"id":50}]}"#));
    let started = tokio::time::Instant::now();
    let req = Request::get(sim.url("/rest/v1/leads.json?filterType=id&filterValues=50")).body(Full::default()).unwrap();
    let res = send(layer_for(Vendor::Marketo), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(sim.count("/rest/v1/leads.json"), 2);
    let report = res.extensions().get::<Report>().unwrap().clone();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].code.as_deref(), Some("606"));
    assert_eq!(report.attempts[0].kind, Kind::Throttled);
    let waited = report.attempts[0].delay.unwrap();
    assert!(started.elapsed() >= waited && waited >= Duration::from_secs(2), "{waited:?}");
    assert_eq!(report.errors[0].1.code, "606");
    // The body handed back is the whole success body, rebuilt around the bytes redial read.
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"{"requestId":"a1","success":true,"result":[{"id":50}]}"#);
}

#[tokio::test(start_paused = true)]
async fn marketo_record_level_error_is_a_success_with_the_record_errors_in_the_report() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/rest/v1/leads.json", Reply::json(200, MARKETO_RECORDS));
    let req = Request::post(sim.url("/rest/v1/leads.json"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"action":"createOnly","input":[{},{},{}]}"#)))
        .unwrap();
    let res = send(layer_for(Vendor::Marketo), req).await.unwrap();
    assert_eq!(sim.count("/rest/v1/leads.json"), 1);
    let report = res.extensions().get::<Report>().unwrap().clone();
    assert_eq!(report.attempt_count(), 1);
    assert_eq!(report.last_kind(), Some(Kind::Partial));
    let records: Vec<_> = report.last_errors().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].code, "1005");
    assert_eq!(records[0].message.as_deref(), Some("Lead already exists"));
    assert_eq!(records[0].scope, ErrorScope::Record(2));
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), MARKETO_RECORDS);
}

#[tokio::test(start_paused = true)]
async fn marketo_200_carrying_603_is_an_error_that_owns_the_vendor_code() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback(
        "/rest/v1/leads.json",
        Reply::json(200, r#"{"requestId":"x","success":false,"errors":[{"code":603,"message":"Access denied"}]}"#),
    );
    let req = Request::get(sim.url("/rest/v1/leads.json")).body(Full::default()).unwrap();
    let err = send(layer_for(Vendor::Marketo), req).await.unwrap_err();
    assert_eq!(sim.count("/rest/v1/leads.json"), 1);
    assert!(err.is_final());
    assert_eq!(err.status(), Some(StatusCode::OK));
    assert_eq!(err.kind(), Some(Kind::Fatal));
    let e = err.vendor_errors().next().unwrap();
    assert_eq!((e.code.as_str(), e.message.as_deref()), ("603", Some("Access denied")));
    assert!(err.to_string().contains("603"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn adobe_207_is_returned_with_errors_and_warnings_never_retried() {
    let body = r#"{"requestId":"72eaa048-207e-4dde-bf16-0cb2b21336d5","handle":[],"errors":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0201-503","status":503,"title":"The 'com.adobe.experience.platform.ode' service is temporarily unable to serve this request. Please try again later."}],"warnings":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0204-200","status":200,"title":"A warning occurred while calling the 'com.adobe.audiencemanager' service for this request.","report":{"cause":{"message":"Cannot read related customer for device id: ...","code":202}}}]}"#;
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/ee/v2/interact", Reply::json(207, body));
    let req = Request::post(sim.url("/ee/v2/interact")).body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    let res = send(layer_for(Vendor::AdobeEdge), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::MULTI_STATUS);
    assert_eq!(sim.count("/ee/v2/interact"), 1);
    let report = res.extensions().get::<Report>().unwrap();
    let scopes: Vec<_> = report.last_errors().map(|e| (e.code.as_str(), e.scope)).collect();
    assert_eq!(scopes, [("EXEG-0201-503", ErrorScope::NonFatal), ("EXEG-0204-200", ErrorScope::Warning)]);
}

#[tokio::test(start_paused = true)]
async fn adobe_429_without_retry_after_waits_five_seconds() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue(
        "/ee/v2/interact",
        Reply::status(429).header("content-type", "application/problem+json").body(
            r#"{"type":"https://ns.adobe.com/aep/errors/EXEG-0000-429","status":429,"title":"Too many requests"}"#,
        ),
    );
    sim.enqueue("/ee/v2/interact", Reply::json(200, r#"{"requestId":"r","handle":[]}"#));
    let req = Request::post(sim.url("/ee/v2/interact")).body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    let res = send(layer_for(Vendor::AdobeEdge), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].at - log[0].at, Duration::from_secs(5));
}
