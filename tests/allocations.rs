//! What one request allocates on the success path, counted per thread by a global allocator:
//! no allocation beyond the inner service's and the copy of the request head that every
//! retrying layer keeps to send the request again (tower::retry with a policy that clones the
//! request is the yardstick), when no body needs reading. A vendor that needs its success
//! bodies read (Marketo) pays for the reading, and only for that.

// Only for the counting allocator below (`GlobalAlloc` is an unsafe trait); no other unsafe code.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use redial::{Policy, RetryLayer, Vendor};
use tower::{Layer, Service};
use yardstick::{run, CloneEvery};

mod yardstick;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A vendor that answers at once with `body`, whatever the request.
#[derive(Clone)]
struct Answer(Bytes);

impl<B> Service<Request<B>> for Answer {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<B>) -> Self::Future {
        ready(Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(self.0.clone()))
            .expect("a valid response")))
    }
}

fn get() -> Request<Full<Bytes>> {
    Request::get("https://api.example.com/rest/v1/leads.json?filterType=id&filterValues=50")
        .header("accept", "application/json")
        .body(Full::default())
        .expect("a valid request")
}

fn post() -> Request<Full<Bytes>> {
    Request::post("https://api.example.com/rest/v1/leads.json")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"input":[{"email":"a@example.com"}]}"#)))
        .expect("a valid request")
}

/// The allocations of one request through `svc`, its response body read to the end, from
/// making the request to dropping the response; the median of a few, after a warm-up (the
/// first request starts the layer's per-host state).
fn allocations<S, B>(svc: &mut S, request: fn() -> Request<Full<Bytes>>) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut one = || {
        let before = ALLOCATIONS.with(Cell::get);
        run(async {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.expect("ready");
            let res = svc.call(request()).await.expect("a response");
            res.into_body().collect().await.expect("a whole body");
        });
        ALLOCATIONS.with(Cell::get) - before
    };
    one();
    let mut counts: Vec<usize> = (0..5).map(|_| one()).collect();
    counts.sort_unstable();
    counts[counts.len() / 2]
}

const JSON: &[u8] = br#"{"requestId":"e42b#14272d07d78","result":[{"id":50,"email":"a@example.com"}],"success":true}"#;

fn vendor() -> Answer {
    Answer(Bytes::from_static(JSON))
}

#[test]
fn a_generic_success_allocates_nothing_beyond_the_head_copy_every_retrying_layer_keeps() {
    for request in [get as fn() -> _, post] {
        let bare = allocations(&mut vendor(), request);
        let tower_retry = allocations(&mut tower::retry::RetryLayer::new(CloneEvery).layer(vendor()), request);
        let redial = allocations(&mut RetryLayer::generic().layer(vendor()), request);
        assert!(tower_retry > bare, "the yardstick copies the head: {tower_retry} vs {bare}");
        assert_eq!(redial, tower_retry, "bare {bare}, tower::retry {tower_retry}");
    }
}

#[test]
fn the_defaults_add_no_allocation_of_their_own() {
    // The budget, the deadline (armed only when an attempt waits) and the attempt history (made
    // only when there is something to report) cost nothing on the heap.
    let plain = Policy::builder().no_budget().no_deadline().build().expect("a valid policy");
    let bare_engine = allocations(&mut RetryLayer::new(redial::core::generic::Generic, plain).layer(vendor()), get);
    let defaults = allocations(&mut RetryLayer::generic().layer(vendor()), get);
    assert_eq!(defaults, bare_engine);
}

#[test]
fn a_marketo_success_pays_only_for_reading_its_body() {
    // Marketo says `success:false` in a 200: every JSON success body is read and parsed. The
    // reading is the only cost (its state and the body it reads, on the heap): the bytes are
    // parsed where they are and handed on, not copied.
    let host = |vendor: Vendor| {
        let policy = vendor.policy().to_builder().no_rate_limit().no_max_concurrency().build().expect("valid");
        redial::builder().host("api.example.com", vendor.profile(), policy).expect("a host").build()
    };
    let generic = allocations(&mut RetryLayer::generic().layer(vendor()), get);
    let marketo = allocations(&mut host(Vendor::Marketo).layer(vendor()), get);
    assert!(marketo > generic, "the body is read: {marketo} vs {generic}");
    assert_eq!(marketo, generic + 2, "reading one small JSON body");
}
