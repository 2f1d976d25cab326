//! Peak memory while 1,000 concurrent 1 MiB responses pass through an inspecting layer, against
//! the same run without redial, in one process.
//!
//! `cargo bench --bench memory` prints the peak heap of each run and the difference per
//! in-flight request, which must stay near the inspect limit (64 KiB here), not the body size.

// A tracking allocator is the only unsafe code here: it forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redial::core::generic::Generic;
use redial::core::{Classification, Outcome, Profile, RequestHead, ResponseHead};
use redial::{Policy, RetryBody, RetryLayer};
use redial_sim::{Reply, Sim};
use tower::ServiceExt;

struct Tracking;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Reads every body (up to the inspect limit): the worst case for memory.
#[derive(Debug)]
struct InspectAll;

impl Profile for InspectAll {
    fn name(&self) -> &str {
        "inspect-all"
    }
    fn inspect(&self, _: &RequestHead<'_>, _: &ResponseHead<'_>) -> bool {
        true
    }
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        Generic.classify(req, outcome)
    }
}

const REQUESTS: usize = 1000;
const BODY: u64 = 1 << 20;
const INSPECT: usize = 64 * 1024;

async fn run(sim: &Sim, redial: bool) -> (usize, u64, std::time::Duration) {
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let layer = RetryLayer::new(InspectAll, Policy::builder().inspect_limit(INSPECT).build().unwrap());
    let url = sim.url("/big");
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let req = http::Request::get(&url).body(Full::default()).unwrap();
        if redial {
            let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(client.clone());
            tasks.spawn(async move { drain(svc.oneshot(req).await.unwrap().into_body()).await });
        } else {
            let client = client.clone();
            tasks.spawn(async move {
                let (parts, body) = req.into_parts();
                let req = http::Request::from_parts(parts, RetryBody::from_bytes(Bytes::new()));
                let _ = body;
                drain(client.request(req).await.unwrap().into_body()).await
            });
        }
    }
    let mut bytes = 0;
    while let Some(n) = tasks.join_next().await {
        bytes += n.unwrap();
    }
    (PEAK.load(Ordering::Relaxed) - base, bytes, started.elapsed())
}

async fn drain<B>(mut body: B) -> u64
where
    B: http_body::Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += bytes::Buf::remaining(&data) as u64;
        }
    }
    n
}

/// One variant, measured in a process of its own so that nothing of another run (pooled
/// connections, their buffers) is still alive while it is measured.
fn child(redial: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let sim = Sim::start().await.unwrap();
        sim.set_fallback("/big", Reply::ok().header("content-type", "application/json").generated_body(BODY, b' '));
        let (peak, bytes, time) = run(&sim, redial).await;
        assert_eq!(bytes, REQUESTS as u64 * BODY, "every body arrived whole");
        println!("{peak} {}", time.as_millis());
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe bench binaries
    }
    if let Some(i) = args.iter().position(|a| a == "--variant") {
        return child(args.get(i + 1).map(String::as_str) == Some("redial"));
    }
    let measure = |variant: &str| -> (f64, u64) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--variant", variant])
            .output()
            .expect("run the measurement");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut it = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        (it.next().unwrap() as f64, it.next().unwrap())
    };
    let (bare, b_ms) = measure("bare");
    let (with, w_ms) = measure("redial");
    let mib = |n: f64| n / (1024.0 * 1024.0);
    println!("== memory: {REQUESTS} concurrent {} KiB responses, inspect limit {} KiB", BODY / 1024, INSPECT / 1024);
    println!("bare hyper-util client    peak heap {:8.1} MiB   ({b_ms} ms)", mib(bare));
    println!("with redial (inspecting)  peak heap {:8.1} MiB   ({w_ms} ms)", mib(with));
    let per = |n: f64| n / REQUESTS as f64 / 1024.0;
    println!(
        "peak per in-flight request: bare {:.0} KiB, with redial {:.0} KiB (inspect limit {} KiB; body {} KiB)",
        per(bare),
        per(with),
        INSPECT / 1024,
        BODY / 1024
    );
    println!("(both include hyper's own connection buffers, which vary with scheduling)");
    // The conclusion is drawn from the figures, not printed whatever they are.
    let bounded = per(with) < (BODY / 1024) as f64;
    println!(
        "with redial, a request in flight holds {} its body ({:.0} KiB of {} KiB)",
        if bounded { "less than" } else { "AS MUCH AS OR MORE THAN" },
        per(with),
        BODY / 1024
    );
    println!("ratio with/bare: {:.2}", with / bare);
}
