//! A vendor of your own: Acme answers 200 `{"error":"BUSY","retry_in":3}` when overloaded.
//! `cargo run --example custom_vendor`
use redial::core::hint::{HintSource, ServerHint};
use redial::core::{generic::Generic, Body, Classification, Kind, Outcome, Profile, RequestHead, ResponseHead};
use redial::core::{RetryRule, VendorError};
use serde_json::Value;
use std::time::Duration;
use tower::ServiceExt;

#[derive(Debug)]
struct Acme;

impl Profile for Acme {
    fn name(&self) -> &str {
        "acme"
    }
    fn inspect(&self, _: &RequestHead<'_>, res: &ResponseHead<'_>) -> bool {
        res.status.is_success()
    }
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        let body = match outcome {
            Outcome::Response(_, Body::Complete(body)) => serde_json::from_slice::<Value>(body).unwrap_or_default(),
            _ => Value::Null,
        };
        let Some(code) = body["error"].as_str() else {
            return Generic.classify(req, outcome);
        };
        let error = VendorError::code_only(code);
        if code != "BUSY" {
            return Classification::fail(Kind::Fatal, "Acme refused").with_errors([error]);
        }
        let wait = Duration::from_secs(body["retry_in"].as_u64().unwrap_or(5));
        Classification::retry(Kind::Throttled, RetryRule::new("acme.busy").any_method(), "Acme is busy")
            .with_hint(Some(ServerHint { delay: wait, source: HintSource::Vendor }))
            .with_errors([error])
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), redial::BoxError> {
    let sim = redial_sim::Sim::start().await?;
    sim.enqueue("/jobs", redial_sim::Reply::json(200, r#"{"error":"BUSY","retry_in":3}"#));
    sim.enqueue("/jobs", redial_sim::Reply::json(200, r#"{"id":7}"#));
    let layer = redial::RetryLayer::builder().host("127.0.0.1", Acme, redial::Policy::default())?.build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(sim.url("/jobs")).body(http_body_util::Full::new(bytes::Bytes::from("{}")))?;
    let res = tower::ServiceBuilder::new().layer(layer).service(client).oneshot(req).await?;
    let report = res.extensions().get::<redial::Report>().cloned().unwrap_or_default();
    println!("{} after {} attempts, waited {:?}", res.status(), report.attempt_count(), report.total_delay());
    Ok(())
}
