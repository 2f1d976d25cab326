//! The sans-io core of redial: outcome → classification → decision.
//!
//! Nothing here does I/O, reads a clock or draws randomness on its own: time and randomness
//! come in as arguments, so every vendor rule is testable with plain values.
//!
//! - [`Profile`]: a vendor's knowledge of its errors: which bodies to read, what they mean.
//! - [`Classification`]: [`Kind`] + [`Advice`] + every [`VendorError`] + the server's hint.
//! - [`decide()`]: the advice weighed against [`Policy`], history, deadline and budget → [`Decision`].
//! - [`backoff`], [`hint`], [`budget`], [`rate`]: the arithmetic of waiting.
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
pub mod rate;
mod report;
mod vendor_error;

use std::time::Duration;

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
/// after it may have reached the server, on a host whose policy honours the key (the default:
/// [`Policy::honor_idempotency_key`]). Hosts can opt every request in with
/// [`PolicyBuilder::idempotency_keys`].
///
/// ```
/// let mut req = http::Request::post("https://api.example.com/payments").body(()).unwrap();
/// req.extensions_mut().insert(redial_core::AddIdempotencyKey);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddIdempotencyKey;

/// Limits for one request, put in its extensions: they tighten its host's policy and never
/// loosen it, so a caller cannot stretch a vendor's documented schedule. A user-facing call can
/// have a shorter deadline than the host's batch jobs; a health check, no retries at all.
///
/// ```
/// use std::time::Duration;
/// use redial_core::{Policy, RequestLimits};
///
/// let mut req = http::Request::get("https://api.example.com/search").body(()).unwrap();
/// req.extensions_mut().insert(RequestLimits::new().deadline(Duration::from_secs(5)).max_attempts(2));
///
/// // What the request gets: the tighter of each.
/// let host = Policy::builder().max_attempts(5).deadline(Duration::from_secs(120)).build().unwrap();
/// let own = RequestLimits::new().deadline(Duration::from_secs(5)).max_attempts(9).apply(&host);
/// assert_eq!((own.max_attempts(), own.deadline()), (5, Some(Duration::from_secs(5))));
/// assert_eq!(RequestLimits::no_retries().apply(&host).max_attempts(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestLimits {
    max_attempts: Option<u32>,
    deadline: Option<Duration>,
}

impl RequestLimits {
    /// No limits of its own: the host's policy as it is.
    pub fn new() -> Self {
        RequestLimits::default()
    }

    /// One attempt: whatever happens, the request is not sent again.
    pub fn no_retries() -> Self {
        RequestLimits::new().max_attempts(1)
    }

    /// At most `n` attempts, the first included (at least 1), or the host's, if fewer.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// At most `d` in all, attempts and waits included (at least 1 ms), or the host's deadline,
    /// if sooner. An attempt timeout longer than it is shortened to it.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d.clamp(Duration::from_millis(1), MAX_DURATION));
        self
    }

    /// `policy` with these limits: the fewer attempts and the sooner deadline.
    pub fn apply(&self, policy: &Policy) -> Policy {
        let mut b = policy.to_builder();
        if let Some(n) = self.max_attempts {
            b = b.max_attempts(n.min(policy.max_attempts()));
        }
        if let Some(d) = self.deadline {
            let d = policy.deadline().map_or(d, |host| host.min(d));
            b = b.deadline(d);
            if let Some(t) = policy.attempt_timeout() {
                b = b.attempt_timeout(t.min(d));
            }
        }
        // Each value is one the host's valid policy had, or a tighter one within range.
        b.build().unwrap_or_else(|_| policy.clone())
    }
}
