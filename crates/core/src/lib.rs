//! The sans-io core of redial: outcome → classification → decision.
//!
//! Nothing here does I/O, reads a clock or draws randomness on its own: time and randomness
//! come in as arguments, so every vendor rule is testable with plain values.
//!
//! - [`Profile`]: a vendor's knowledge of its errors: which bodies to read, what they mean.
//! - [`Classification`]: [`Kind`] + [`Advice`] + every [`VendorError`] + the server's hint.
//! - [`decide()`]: the advice weighed against [`Policy`], history, deadline and budget → [`Decision`].
//! - [`backoff`], [`hint`], [`budget`]: the arithmetic of waiting.
//! - [`generic`]: plain HTTP rules and RFC 9457 problem details.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod backoff;
pub mod budget;
mod classify;
mod decide;
pub mod generic;
pub mod hint;
mod kind;
mod policy;
mod problem;
mod report;
mod vendor_error;

pub use classify::{
    Advice, Body, BodyUse, Classification, Failure, Outcome, Profile, RequestHead, ResponseHead, RetryRule, Rewrite,
    Safety, Throttle,
};
pub use decide::{decide, Attempt, Context, Decision, FailReason, NotReplayable};
pub use kind::{Action, Kind};
pub use policy::{InvalidPolicy, MethodSet, Policy, PolicyBuilder, MAX_DURATION, MAX_INSPECT_LIMIT};
pub use problem::{is_json_media_type, is_problem_media_type, without_bom, Problem};
pub use report::Report;
pub use vendor_error::{ErrorScope, VendorError};

/// A marker a caller puts in a request's extensions to say it is safe to re-send even if it may
/// have reached the server (the operation is idempotent though its method is not).
///
/// ```
/// let mut req = http::Request::post("https://api.example.com/upsert").body(()).unwrap();
/// req.extensions_mut().insert(redial_core::RetrySafe);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetrySafe;

/// A marker a caller puts in a request's extensions to have an `Idempotency-Key` (a random
/// UUID) added once and sent unchanged on every attempt; the request may then be retried even
/// after it may have reached the server. Hosts can opt every request in with
/// [`PolicyBuilder::idempotency_keys`].
///
/// ```
/// let mut req = http::Request::post("https://api.example.com/payments").body(()).unwrap();
/// req.extensions_mut().insert(redial_core::AddIdempotencyKey);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddIdempotencyKey;
