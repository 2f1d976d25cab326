//! The async driver of redial: a [`tower`](https://docs.rs/tower) layer that retries HTTP
//! requests by the rules of each host's vendor.
//!
//! [`RetryLayer`] wraps any `Service<http::Request<RetryBody<B>>, Response = http::Response<RB>>`
//! (hyper-util's legacy `Client`, a reqwest adapter, a `tower::service_fn`). For each request it:
//!
//! 1. finds the host's profile and policy (exact host, then `*.suffix`, then the default);
//! 2. keeps the request body for replay when its size is known and within the replay limit
//!    (a stream, or a larger body, is sent once and never replayed);
//! 3. sends an attempt under the attempt timeout and the deadline;
//! 4. reads at most the inspect limit of the body when the profile needs it (and of error
//!    responses, so that errors own what the vendor said);
//! 5. classifies and decides with [`redial_core`], then returns the response (rebuilt around
//!    the bytes read), sleeps and retries, or fails with an [`Error`] that owns the last
//!    response and the history of every attempt.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use redial_tower::{RetryBody, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # tokio::time::pause();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let vendor = tower::service_fn(move |_req: Request<RetryBody<String>>| {
//!     let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         let status = if n == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, Infallible>(Response::builder().status(status).header("retry-after", "1").body(String::new()).unwrap())
//!     }
//! });
//! let mut svc = ServiceBuilder::new().layer(RetryLayer::generic()).service(vendor);
//! let res = svc.ready().await.unwrap().call(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! let report = res.extensions().get::<redial_tower::Report>().unwrap();
//! assert_eq!(report.attempt_count(), 2);
//! # }
//! ```
//!
//! # Other front doors
//!
//! The engine is not tied to the tower `Service` it wraps: [`RetryLayer::drive`] runs one
//! request over an inner service that may borrow from the caller's call (neither `Clone` nor
//! `'static`), with what the engine sends on its own (logins, failover probes) going through
//! a [`Detach`]. The reqwest middleware of `redial-reqwest` is built that way: each attempt goes
//! through the rest of the caller's middleware chain from the engine's own poll.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
mod body;
mod detach;
mod error;
mod failure;
mod future;
pub mod hooks;
mod hosts;
mod layer;
mod limits;
mod rewrite;
mod service;

pub use auth::TokenSource;
pub use body::{ResponseBody, RetryBody};
pub use detach::{Detach, Inner};
pub use error::Error;
pub use failure::{classify_error, AttemptError};
pub use future::ResponseFuture;
pub use hooks::{FailoverMode, Probe, ReconcileHook, ReconcileRequest, Verdict};
pub use hosts::InvalidHost;
pub use layer::{FailureClassifier, RetryLayer, RetryLayerBuilder};
pub use service::Retry;

/// A request extension on what the engine sends on its own, a login or a failover probe: such
/// a request may outlive the call that started it (an adapter that hands attempts to the
/// caller's call, as the reqwest middleware does, keeps a way to send it without that call).
///
/// ```
/// # let req = http::Request::new(());
/// let detached = req.extensions().get::<redial_tower::Detached>().is_some();
/// # assert!(!detached);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detached {
    /// A token source's login that a request waits for.
    Login,
    /// A token source's login renewing a token that is still valid: started by a request
    /// that does not wait for it, so it outlives that request's call as a rule.
    Renewal,
    /// A failover probe.
    Probe,
}

pub use redial_core as core;
pub use redial_core::{Policy, Report, RequestLimits, RetrySafe};

/// A boxed error, as the inner services' errors are carried.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
