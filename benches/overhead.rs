//! The per-request cost of `RetryLayer` on the success path, against the bare service and
//! against `tower::retry::Retry` with a trivial policy, measured in one process.
//!
//! `cargo bench --bench overhead` runs criterion for each variant, then prints a summary:
//! the overhead of each layer over the bare service (ns per request), their ratio, and the
//! heap allocations per request of each variant, counted by a global allocator. A fourth
//! variant, redial without a retry budget or a deadline (which tower::retry's trivial policy
//! does not have either), shows what the engine itself costs.

// The counting allocator is the only unsafe code here: it forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use redial::{Policy, RetryLayer};
use tower::{Layer, Service};
use yardstick::{run, CloneEvery};

#[path = "../tests/yardstick/mod.rs"]
mod yardstick;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The vendor: answers 200 at once, whatever the body type.
#[derive(Clone, Copy)]
struct Ok200;

impl<B> Service<Request<B>> for Ok200 {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<B>) -> Self::Future {
        black_box(&req);
        ready(Ok(Response::new(Full::default())))
    }
}

fn request() -> Request<Full<Bytes>> {
    Request::get("https://api.example.com/v1/things?id=42")
        .header("accept", "application/json")
        .body(Full::default())
        .unwrap()
}

fn one<S>(svc: &mut S) -> bool
where
    S: Service<Request<Full<Bytes>>>,
{
    run(async {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.ok();
        svc.call(request()).await.is_ok()
    })
}

fn redial_layer() -> RetryLayer {
    RetryLayer::new(redial::core::generic::Generic, Policy::default())
}

/// redial without what tower::retry's trivial policy does not have either: no retry budget,
/// no deadline. What is left is the engine itself.
fn redial_plain_layer() -> RetryLayer {
    let policy = Policy::builder().no_budget().no_deadline().build().expect("a valid policy");
    RetryLayer::new(redial::core::generic::Generic, policy)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("overhead");
    let mut bare = Ok200;
    g.bench_function("bare", |b| b.iter(|| black_box(one(&mut bare))));
    let mut tower_retry = tower::retry::RetryLayer::new(CloneEvery).layer(Ok200);
    g.bench_function("tower_retry", |b| b.iter(|| black_box(one(&mut tower_retry))));
    let mut redial = redial_layer().layer(Ok200);
    g.bench_function("redial", |b| b.iter(|| black_box(one(&mut redial))));
    let mut redial_plain = redial_plain_layer().layer(Ok200);
    g.bench_function("redial_no_budget_no_deadline", |b| b.iter(|| black_box(one(&mut redial_plain))));
    g.finish();
}

/// Median ns per request of `f` over `rounds` rounds of `n` requests, variants interleaved.
fn summary() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = rt.enter();
    let mut bare = Ok200;
    let mut tower_retry = tower::retry::RetryLayer::new(CloneEvery).layer(Ok200);
    let mut redial = redial_layer().layer(Ok200);
    let mut redial_plain = redial_plain_layer().layer(Ok200);

    let allocs = |f: &mut dyn FnMut() -> bool| {
        f();
        let before = ALLOCS.load(Ordering::Relaxed);
        for _ in 0..1000 {
            black_box(f());
        }
        (ALLOCS.load(Ordering::Relaxed) - before) as f64 / 1000.0
    };
    let a_bare = allocs(&mut || one(&mut bare));
    let a_tower = allocs(&mut || one(&mut tower_retry));
    let a_redial = allocs(&mut || one(&mut redial));

    // REDIAL_BENCH_QUICK=1: a short run, for profiling under callgrind.
    let (n, rounds) = if std::env::var_os("REDIAL_BENCH_QUICK").is_some() { (20_000u32, 1) } else { (200_000u32, 15) };
    let mut samples = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let time = |f: &mut dyn FnMut() -> bool| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(f());
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        };
        samples[0].push(time(&mut || one(&mut bare)));
        samples[1].push(time(&mut || one(&mut tower_retry)));
        samples[2].push(time(&mut || one(&mut redial)));
        samples[3].push(time(&mut || one(&mut redial_plain)));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [b, t, r, p] = samples.each_mut().map(median);
    println!(
        "\nsize of the futures: tower::retry {} bytes, redial {} bytes",
        std::mem::size_of_val(&tower_retry.call(request())),
        std::mem::size_of_val(&redial.call(request()))
    );
    println!("\n== overhead summary ({rounds} interleaved rounds of {n} requests, medians)");
    println!("bare service                  {b:8.1} ns/request   {a_bare:.2} allocations/request");
    println!(
        "tower::retry trivial          {t:8.1} ns/request   {a_tower:.2} allocations/request   overhead {:6.1} ns",
        t - b
    );
    println!(
        "redial RetryLayer             {r:8.1} ns/request   {a_redial:.2} allocations/request   overhead {:6.1} ns",
        r - b
    );
    println!("redial, no budget or deadline {p:8.1} ns/request                           overhead {:6.1} ns", p - b);
    println!("ratio redial/bare                 {:.3}", r / b);
    println!("ratio redial/tower::retry         {:.3}", r / t);
    println!("ratio of overheads redial:tower   {:.3}", (r - b) / (t - b));
    println!(
        "without budget or deadline: redial/tower::retry {:.3}, ratio of overheads {:.3}",
        p / t,
        (p - b) / (t - b)
    );
    println!(
        "allocations beyond the inner service: redial {:+.2}, tower::retry {:+.2}",
        a_redial - a_bare,
        a_tower - a_bare
    );
}

/// One variant alone, `REDIAL_BENCH_N` times.
fn profile_one(only: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = rt.enter();
    let n: u32 = std::env::var("REDIAL_BENCH_N").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let mut bare = Ok200;
    let mut tower_retry = tower::retry::RetryLayer::new(CloneEvery).layer(Ok200);
    let mut redial = redial_layer().layer(Ok200);
    let mut redial_plain = redial_plain_layer().layer(Ok200);
    let mut one_request: Box<dyn FnMut() -> bool> = match only {
        "bare" => Box::new(move || one(&mut bare)),
        "tower_retry" => Box::new(move || one(&mut tower_retry)),
        "redial" => Box::new(move || one(&mut redial)),
        "redial_plain" => Box::new(move || one(&mut redial_plain)),
        other => panic!("REDIAL_BENCH_ONLY={other}: one of bare, tower_retry, redial, redial_plain"),
    };
    for _ in 0..n {
        black_box(one_request());
    }
}

criterion_group! {
    name = overhead;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}

fn main() {
    // REDIAL_BENCH_ONLY=bare|tower_retry|redial|redial_plain (and REDIAL_BENCH_N, default 1,000,000): only
    // that variant, in a loop, for an instruction count under callgrind or a profile under perf.
    if let Ok(only) = std::env::var("REDIAL_BENCH_ONLY") {
        profile_one(&only);
        return;
    }
    overhead();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
