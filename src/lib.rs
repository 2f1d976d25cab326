//! redial: vendor-aware retries for HTTP clients.
//!
//! This facade re-exports the pieces: the tower layer ([`RetryLayer`]), the policy and the
//! sans-io [`core`] every decision is made in.
#![forbid(unsafe_code)]
#![doc(html_root_url = "https://docs.rs/redial/0.1.0")]

#[doc(inline)]
pub use redial_tower::{
    classify_error, BoxError, Error, FailureClassifier, InvalidHost, Policy, Report, ResponseBody, ResponseFuture, Retry,
    RetryBody, RetryLayer, RetryLayerBuilder, RetrySafe,
};

/// The sans-io core: classification, decision, backoff, Retry-After, budgets.
pub use redial_core as core;
