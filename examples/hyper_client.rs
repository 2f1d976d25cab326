//! redial over hyper-util's legacy `Client`: every built-in vendor on its own hosts.
//!
//! `cargo run --example hyper_client` (it starts a simulated Marketo on loopback).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redial::{Report, RetryBody, Vendor};
use redial_sim::{Reply, Sim};
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A Marketo that rate-limits the first call (HTTP 200 carrying 606), then answers.
    let sim = Sim::start().await?;
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, r#"{"requestId":"a","success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"}]}"#));
    sim.enqueue("/rest/v1/leads.json", Reply::json(200, r#"{"requestId":"b","success":true,"result":[{"id":50}]}"#));

    // In an application: `redial::builder().build()` serves *.mktorest.com with Marketo's rules.
    // The simulator is 127.0.0.1, so the example registers Marketo there too.
    let layer = redial::builder().host("127.0.0.1", Vendor::Marketo.profile(), Vendor::Marketo.policy())?.build();
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let svc = tower::ServiceBuilder::new().layer(layer).service(client);

    let req = http::Request::get(sim.url("/rest/v1/leads.json?filterType=id&filterValues=50")).body(Full::default())?;
    let res = svc.oneshot(req).await?;
    let report = res.extensions().get::<Report>().cloned().unwrap_or_default();
    println!("status {}; {} attempts; waited {:?}", res.status(), report.attempt_count(), report.total_delay());
    for (attempt, e) in &report.errors {
        println!("attempt {attempt}: Marketo said {e}");
    }
    println!("{}", String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()));
    Ok(())
}
