//! Throughput over loopback, success path, small JSON bodies, in one process: reqwest bare,
//! reqwest + redial, reqwest + reqwest-retry; hyper-util bare and + redial. Two more variants
//! take the reqwest door's cost apart: a reqwest-middleware chain with one pass-through
//! middleware (what any middleware costs), and redial without its default deadline (the timer
//! each attempt that waits arms; reqwest-retry has no deadline).
//!
//! `cargo bench --bench loopback` runs every variant in interleaved rounds against a minimal
//! hyper server and prints the median requests per second and the ratios.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use redial::{RedialMiddleware, RetryBody};
use tower::{Service, ServiceExt};

const BODY: &str = r#"{"requestId":"e42b#14272d07d78","success":true,"result":[{"id":50,"status":"updated"}]}"#;
const CONCURRENCY: usize = 32;
const PER_ROUND: usize = 2000;
const ROUNDS: usize = 21;
/// Connections each client's pool is given before the rounds: more than the concurrent loops,
/// so that no variant's pool runs out of idle connections at every checkout (hyper-util then
/// drops and re-creates its idle list on each request, about a thousand instructions), which
/// happens or not by how the warm-up's connects raced.
const POOL: usize = 2 * CONCURRENCY;
const WARM_PATH: &str = "/warm";

/// A middleware that only calls the rest of the chain: reqwest-middleware's own cost.
struct PassThrough;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for PassThrough {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        next.run(req, extensions).await
    }
}

async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    // The warm-up's requests are held a moment, so that each opens a connection.
                    if req.uri().path() == WARM_PATH {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
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
    let cpu = cpu_ns();
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
    let rate = PER_ROUND as f64 / started.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (cpu, cpu_ns()) {
        CPU.with_borrow_mut(|c| c.push((after - before) as f64 / PER_ROUND as f64 / 1000.0));
    }
    rate
}

thread_local! {
    /// CPU µs per request of each `drive` on this thread, in order (client and server both).
    static CPU: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// CPU time of every thread of this process so far, in ns (Linux: `/proc/self/task/*/schedstat`).
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe bench binaries
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // REDIAL_LOOPBACK_ONLY=1,4: run only these variants (by index), for a profiler.
    let only: Option<Vec<usize>> = std::env::var("REDIAL_LOOPBACK_ONLY")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    rt.block_on(async {
        let addr = server().await;
        let url = format!("http://{addr}/rest/v1/leads.json?filterType=id&filterValues=50");
        // The server is 127.0.0.1: Marketo's rules (every 2xx JSON body read) apply there, the
        // costliest success path. Its rate limits are lifted: this measures the engine.
        let policy = redial::Vendor::Marketo.policy().to_builder().no_rate_limit().no_max_concurrency().build().unwrap();
        let layer = redial::builder().host("127.0.0.1", redial::Vendor::Marketo.profile(), policy).unwrap().build();

        let reqwest_bare = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(POOL).build().unwrap();
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
        let pass_through = reqwest_middleware::ClientBuilder::new(reqwest_bare.clone()).with(PassThrough).build();
        let no_deadline = redial::RetryLayer::new(
            redial::core::generic::Generic,
            redial::Policy::builder().no_deadline().build().unwrap(),
        );
        let reqwest_no_deadline = reqwest_middleware::ClientBuilder::new(reqwest_bare.clone())
            .with(RedialMiddleware::new(no_deadline).with_client(reqwest_bare.clone()))
            .build();
        let hyper_redial = tower::Layer::layer(
            &layer,
            Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>(),
        );

        let mut results: Vec<(&str, Vec<f64>)> = ["reqwest bare", "reqwest + redial", "reqwest + reqwest-retry", "hyper-util bare", "hyper-util + redial", "reqwest + redial (generic host)", "hyper-util + redial (generic host)", "reqwest-middleware pass-through", "reqwest + redial (generic, no deadline)"]
            .into_iter()
            .map(|n| (n, Vec::new()))
            .collect();
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); results.len()];
        // Every pool gets `POOL` connections, the same for each variant. The reqwest ones share
        // `reqwest_bare`'s pool; each hyper-util client has its own.
        // Only the pools of the variants that run (a profiler counts the rest too).
        let warm_url = format!("http://{addr}{WARM_PATH}");
        let runs = |variants: &[usize]| only.as_ref().is_none_or(|o| variants.iter().any(|v| o.contains(v)));
        if runs(&[0, 1, 2, 5, 7, 8]) {
            warm(|| {
                let (c, u) = (reqwest_bare.clone(), warm_url.clone());
                async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() }
            })
            .await;
        }
        if runs(&[3]) {
            warm(|| tower_get(hyper_bare.clone(), warm_url.clone())).await;
        }
        if runs(&[4]) {
            warm(|| tower_get(hyper_redial.clone(), warm_url.clone())).await;
        }
        if runs(&[6]) {
            warm(|| tower_get(hyper_generic.clone(), warm_url.clone())).await;
        }
        for round in 0..=ROUNDS {
            let mut r = Vec::new();
            let mut i = 0usize;
            let (c, u) = (reqwest_bare.clone(), url.clone());
            r.push(if run(&only, &mut i) { drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await } else { 0.0 });
            let (c, u) = (reqwest_redial.clone(), url.clone());
            r.push(if run(&only, &mut i) { drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await } else { 0.0 });
            let (c, u) = (reqwest_retry.clone(), url.clone());
            r.push(if run(&only, &mut i) { drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await } else { 0.0 });
            let (c, u) = (hyper_bare.clone(), url.clone());
            r.push(if run(&only, &mut i) { drive(move || tower_get(c.clone(), u.clone())).await } else { 0.0 });
            let (c, u) = (hyper_redial.clone(), url.clone());
            r.push(if run(&only, &mut i) { drive(move || tower_get(c.clone(), u.clone())).await } else { 0.0 });
            let (c, u) = (reqwest_generic.clone(), url.clone());
            r.push(if run(&only, &mut i) { drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await } else { 0.0 });
            let (c, u) = (hyper_generic.clone(), url.clone());
            r.push(if run(&only, &mut i) { drive(move || tower_get(c.clone(), u.clone())).await } else { 0.0 });
            for c in [pass_through.clone(), reqwest_no_deadline.clone()] {
                let u = url.clone();
                r.push(if run(&only, &mut i) { drive(move || { let (c, u) = (c.clone(), u.clone()); async move { c.get(u).send().await.unwrap().bytes().await.unwrap().len() } }).await } else { 0.0 });
            }
            let mut cpu = CPU.with_borrow_mut(std::mem::take).into_iter();
            if round > 0 {
                // Round 0 warms the pools up.
                for (((_, v), c), x) in results.iter_mut().zip(&mut cpus).zip(r) {
                    if x > 0.0 {
                        v.push(x);
                        c.push(cpu.next().unwrap_or(f64::NAN));
                    }
                }
            }
        }
        let median = |mut v: Vec<f64>| {
            if v.is_empty() {
                return f64::NAN; // a variant left out by REDIAL_LOOPBACK_ONLY
            }
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        // Throughput drifts on a shared machine: each ratio is taken within a round (variants a
        // few hundred milliseconds apart), and the median of those is reported.
        let ratio = |a: usize, b: usize| median(results[a].1.iter().zip(&results[b].1).map(|(x, y)| x / y).collect());
        println!(
            "\n== loopback throughput ({ROUNDS} interleaved rounds of {PER_ROUND} requests, {CONCURRENCY} concurrent; medians)"
        );
        for ((name, v), c) in results.iter().zip(&cpus) {
            if !v.is_empty() {
                println!("{name:<36} {:>9.0} req/s {:>7.1} µs CPU/request", median(v.clone()), median(c.clone()));
            }
        }
        let cpu_ratio = |a: usize, b: usize| median(cpus[a].iter().zip(&cpus[b]).map(|(x, y)| x / y).collect());
        println!("median of the per-round ratios:");
        println!("reqwest + redial / reqwest bare                    {:.3}", ratio(1, 0));
        println!("reqwest + redial / reqwest + reqwest-retry         {:.3}", ratio(1, 2));
        println!("hyper-util + redial / hyper-util bare              {:.3}", ratio(4, 3));
        println!("generic host (no body read on success):");
        println!("  reqwest + redial / reqwest bare                  {:.3}", ratio(5, 0));
        println!("  reqwest + redial / reqwest + reqwest-retry       {:.3}", ratio(5, 2));
        println!("  hyper-util + redial / hyper-util bare            {:.3}", ratio(6, 3));
        println!("the reqwest door taken apart (generic host):");
        println!("  pass-through middleware / reqwest bare           {:.3}", ratio(7, 0));
        println!("  reqwest + redial / pass-through middleware       {:.3}", ratio(5, 7));
        println!("  reqwest + redial, no deadline / reqwest bare     {:.3}", ratio(8, 0));
        println!("  reqwest + redial, no deadline / reqwest-retry    {:.3}", ratio(8, 2));
        println!("CPU per request, median of the per-round ratios (client and server together):");
        println!("reqwest + redial / reqwest bare                    {:.3}", cpu_ratio(1, 0));
        println!("hyper-util + redial / hyper-util bare              {:.3}", cpu_ratio(4, 3));
        println!("  generic host: reqwest + redial / reqwest bare    {:.3}", cpu_ratio(5, 0));
        println!("  generic host: hyper-util + redial / hyper-util bare {:.3}", cpu_ratio(6, 3));
    });
}

/// One GET through a tower service over hyper-util's client, its body read to the end: the same
/// request, built and sent the same way, for the bare client and for redial over it, so that
/// their difference is the layer alone.
async fn tower_get<S, B>(mut svc: S, url: String) -> usize
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let req = http::Request::get(url).body(Full::default()).unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes().len()
}

/// `POOL` requests at once, each held by the server a moment: as many connections in the pool.
async fn warm<F, Fut>(send: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..POOL {
        tasks.spawn(send());
    }
    while let Some(n) = tasks.join_next().await {
        n.unwrap();
    }
}

/// Whether the next variant runs (all do unless `REDIAL_LOOPBACK_ONLY` names some).
fn run(only: &Option<Vec<usize>>, i: &mut usize) -> bool {
    *i += 1;
    only.as_ref().is_none_or(|o| o.contains(&(*i - 1)))
}
