//! The yardstick the success-path cost of redial is measured against, shared by
//! `tests/allocations.rs` and `benches/overhead.rs` (which includes this file by its path: a
//! bench target cannot use the tests' modules otherwise): tower::retry with its simplest
//! policy, and a runner for futures that complete without waiting.

use std::future::{Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::Request;

/// tower::retry's simplest policy: clone every request (the copy every retrying layer keeps
/// to send the request again), retry nothing.
#[derive(Clone, Copy)]
pub(crate) struct CloneEvery;

impl<B: Clone, Res, E> tower::retry::Policy<Request<B>, Res, E> for CloneEvery {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut Request<B>, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

/// Runs a future that completes without waiting (every service measured answers at once): a
/// future still pending after a few polls is a bug in the measurement, not something to spin on.
pub(crate) fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..16 {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("a request that should answer at once is still pending");
}
