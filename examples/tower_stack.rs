//! The recommended tower stack: tracing of the logical request outside redial, decompression
//! inside it (so redial inspects decoded bytes), the client at the bottom.
//!
//! `cargo run --example tower_stack`

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redial::RetryBody;
use redial_sim::{Reply, Sim};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::decompression::DecompressionLayer;
use tower_http::trace::TraceLayer;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), redial::BoxError> {
    tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).init();
    let sim = Sim::start().await?;
    sim.enqueue("/v1/orders", Reply::status(503).header("Retry-After", "1"));
    sim.enqueue("/v1/orders", Reply::json(200, r#"{"orders":[]}"#));

    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http()) // one span for the logical request, retries inside it
        .layer(redial::builder().build()) // vendor rules; a generic host here
        .layer(DecompressionLayer::new()) // per attempt: redial sees decoded bodies
        .service(client);

    let res = svc.oneshot(http::Request::get(sim.url("/v1/orders")).body(Full::default())?).await?;
    println!("status {}", res.status());
    println!("{}", String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()));
    Ok(())
}
