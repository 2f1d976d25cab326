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
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// `{"orders":[{"id":7,"status":"shipped"}]}`, gzipped, as the vendor sends it.
const GZIPPED: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x56, 0xca, 0x2f, 0x4a, 0x49, 0x2d, 0x2a, 0x56,
    0xb2, 0x8a, 0xae, 0x56, 0xca, 0x4c, 0x51, 0xb2, 0x32, 0xd7, 0x51, 0x2a, 0x2e, 0x49, 0x2c, 0x29, 0x05, 0x8a, 0x28,
    0x15, 0x67, 0x64, 0x16, 0x14, 0xa4, 0xa6, 0x28, 0xd5, 0xc6, 0xd6, 0x02, 0x00, 0xd8, 0x3a, 0x30, 0xb1, 0x28, 0x00,
    0x00, 0x00,
];

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), redial::BoxError> {
    tracing_subscriber::fmt().with_max_level(Level::INFO).init();
    let sim = Sim::start().await?;
    sim.enqueue("/v1/orders", Reply::status(503).header("Retry-After", "1"));
    sim.enqueue(
        "/v1/orders",
        Reply::status(200).header("content-type", "application/json").header("content-encoding", "gzip").body(GZIPPED),
    );

    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let svc = ServiceBuilder::new()
        // One span for the logical request, redial's attempt events inside it (at INFO: the
        // TraceLayer's defaults are DEBUG).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(redial::builder().build()) // vendor rules; a generic host here
        .layer(DecompressionLayer::new()) // per attempt: redial sees decoded bodies
        .service(client);

    let res = svc.oneshot(http::Request::get(sim.url("/v1/orders")).body(Full::default())?).await?;
    println!("status {}; content-encoding {:?} (decoded)", res.status(), res.headers().get("content-encoding"));
    println!("{}", String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()));
    Ok(())
}
