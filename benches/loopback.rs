//! Throughput over loopback, success path, small JSON bodies, in one process: reqwest bare,
//! reqwest + redial, reqwest + reqwest-retry; hyper-util bare and + redial.
//!
//! `cargo bench --bench loopback` runs every variant in interleaved rounds against a minimal
//! hyper server and prints the median requests per second and the ratios.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use redial::{RedialMiddleware, RetryBody};
use tower::{Service, ServiceExt};

const BODY: &str = r#"{"requestId":"e42b#14272d07d78","success":true,"result":[{"id":50,"status":"updated"}]}"#;
const CONCURRENCY: usize = 32;
const PER_ROUND: usize = 4000;
const ROUNDS: usize = 7;

async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

/// `PER_ROUND` requests from `CONCURRENCY` loops; requests per second.
async fn drive<F, Fut>(send: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let send = Arc::new(send);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let send = send.clone();
        tasks.spawn(async move {
            let mut bytes = 0;
            for _ in 0..PER_ROUND / CONCURRENCY {
                bytes += send().await;
            }
            bytes
        });
    }
    while let Some(n) = tasks.join_next().await {
        assert_eq!(n.unwrap(), PER_ROUND / CONCURRENCY * BODY.len());
    }
    PER_ROUND as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe bench binaries
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let addr = server().await;
        let url = format!("http://{addr}/rest/v1/leads.json?filterType=id&filterValues=50");
        // The server is 127.0.0.1: Marketo's rules (every 2xx JSON body read) apply there, the
        // costliest success path. Its rate limits are lifted: this measures the engine.
        let policy = redial::Vendor::Marketo.policy().to_builder().no_rate_limit().no_max_concurrency().build().unwrap();
        let layer = redial::builder().host("127.0.0.1", redial::Vendor::Marketo.profile(), policy).unwrap().build();

        let reqwest_bare = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CONCURRENCY).build().unwrap();
        let reqwest_redial = reqwest_middleware::ClientBuilder::new(reqwest_bare.clone())
            .with(RedialMiddleware::new(layer.clone()).with_client(reqwest_bare.clone()))
            .build();
        let retry_policy = reqwest_retry::policies::ExponentialBackoff::builder().build_with_max_retries(3);
        let reqwest_retry = reqwest_middleware::ClientBuilder::new(reqwest_bare.clone())
            .with(reqwest_retry::RetryTransientMiddleware::new_with_policy(retry_policy))
            .build();
        let hyper_bare = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let generic = redial::RetryLayer::generic();
        let hyper_generic = tower::Layer::layer(
            &generic,
            Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>(),
        );
        let reqwest_generic = reqwest_middleware::ClientBuilder::new(reqwest_bare.clone())
            .with(RedialMiddleware::new(generic.clone()).with_client(reqwest_bare.clone()))
            .build();
        let hyper_redial = tower::Layer::layer(
            &layer,
            Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>(),
        );

        let mut results: Vec<(&str, Vec<f64>)> = ["reqwest bare", "reqwest + redial", "reqwest + reqwest-retry", "hyper-util bare", "hyper-util + redial", "reqwest + redial (generic host)", "hyper-util + redial (generic host)"]
            .into_iter()
            .map(|n| (n, Vec::new()))
            .collect();
        for round in 0..=ROUNDS {
            let mut r = Vec::new();
            let (c, u) = (reqwest_bare.clone(), url.clone());
            r.push(drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await);
            let (c, u) = (reqwest_redial.clone(), url.clone());
            r.push(drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await);
            let (c, u) = (reqwest_retry.clone(), url.clone());
            r.push(drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await);
            let (c, u) = (hyper_bare.clone(), url.clone());
            r.push(drive(move || {
                let (c, u) = (c.clone(), u.clone());
                async move { c.get(u.parse().unwrap()).await.unwrap().into_body().collect().await.unwrap().to_bytes().len() }
            }).await);
            let (c, u) = (hyper_redial.clone(), url.clone());
            r.push(drive(move || {
                let (mut c, u) = (c.clone(), u.clone());
                async move {
                    let req = http::Request::get(u).body(Full::default()).unwrap();
                    let res = c.ready().await.unwrap().call(req).await.unwrap();
                    res.into_body().collect().await.unwrap().to_bytes().len()
                }
            }).await);
            let (c, u) = (reqwest_generic.clone(), url.clone());
            r.push(drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await);
            let (c, u) = (hyper_generic.clone(), url.clone());
            r.push(drive(move || {
                let (mut c, u) = (c.clone(), u.clone());
                async move {
                    let req = http::Request::get(u).body(Full::default()).unwrap();
                    let res = c.ready().await.unwrap().call(req).await.unwrap();
                    res.into_body().collect().await.unwrap().to_bytes().len()
                }
            }).await);
            if round > 0 {
                // Round 0 warms the pools up.
                for ((_, v), x) in results.iter_mut().zip(r) {
                    v.push(x);
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let m: Vec<f64> = results.iter_mut().map(|(_, v)| median(v)).collect();
        println!("\n== loopback throughput ({ROUNDS} interleaved rounds of {PER_ROUND} requests, {CONCURRENCY} concurrent; medians)");
        for ((name, _), x) in results.iter().zip(&m) {
            println!("{name:<26} {x:>9.0} req/s");
        }
        println!("reqwest + redial / reqwest bare          {:.3}", m[1] / m[0]);
        println!("reqwest + redial / reqwest + reqwest-retry {:.3}", m[1] / m[2]);
        println!("hyper-util + redial / hyper-util bare     {:.3}", m[4] / m[3]);
        println!("generic host (no body read on success):");
        println!("  reqwest + redial / reqwest bare          {:.3}", m[5] / m[0]);
        println!("  reqwest + redial / reqwest + reqwest-retry {:.3}", m[5] / m[2]);
        println!("  hyper-util + redial / hyper-util bare     {:.3}", m[6] / m[3]);
        let _ = Duration::ZERO;
    });
}
