//! Classification: what a response (or a failure to get one) means, as plain data.
//!
//! A [`Profile`] turns an [`Outcome`] into a [`Classification`]: the [`Kind`] of what happened,
//! the [`Advice`] of the vendor's rule, every [`VendorError`] found and the server's hint. The
//! [decision](crate::decide()) then weighs that advice against the policy, the history, the
//! deadline and the budget.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode, Uri};

use crate::backoff::Backoff;
use crate::hint::ServerHint;
use crate::{Action, Kind, Problem, VendorError};

/// The parts of a request a profile may look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI (host and path select rules such as a SOAP operation or an AFTM path).
    pub uri: &'a Uri,
    /// The headers (e.g. `SOAPAction`, `Idempotency-Key`).
    pub headers: &'a HeaderMap,
    /// The request body, when it was buffered for replay (a SOAP envelope names its operation).
    pub body: Option<&'a [u8]>,
}

/// The head of a response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    /// The status code.
    pub status: StatusCode,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The wall-clock time the head was received, against which HTTP-dates are measured.
    pub received_at: SystemTime,
}

impl<'a> ResponseHead<'a> {
    /// A head with `status` and `headers`, received at `received_at`.
    pub const fn new(status: StatusCode, headers: &'a HeaderMap, received_at: SystemTime) -> Self {
        ResponseHead { status, headers, received_at }
    }
}

/// What was read of a response body.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// The body was not read (the profile did not ask for it).
    NotRead,
    /// The whole body.
    Complete(&'a [u8]),
    /// The first bytes of a body longer than the inspect limit.
    Prefix(&'a [u8]),
}

impl<'a> Body<'a> {
    /// The bytes read, empty when none were.
    pub fn bytes(&self) -> &'a [u8] {
        match *self {
            Body::NotRead => &[],
            Body::Complete(b) | Body::Prefix(b) => b,
        }
    }
}

/// Why an attempt produced no response.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The connection could not be made: the request never left.
    Connect,
    /// The attempt timeout fired; the request may have reached the server.
    Timeout,
    /// The connection failed after the request may have been sent (reset, closed, protocol error).
    Io,
    /// The response body failed while being read for inspection.
    BodyRead,
    /// The request was stopped on this side before it was sent: a layer between redial and
    /// the network refused it (a middleware's own error, a missing signing key). Final: never
    /// retried, whatever the profile.
    Local,
}

impl Failure {
    /// Whether the server may have received (and acted on) the request.
    pub const fn may_have_reached_server(self) -> bool {
        !matches!(self, Failure::Connect | Failure::Local)
    }

    /// A short word for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Io => "io",
            Failure::BodyRead => "body_read",
            Failure::Local => "local",
        }
    }
}

/// What one attempt produced.
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// A response, with what was read of its body.
    Response(ResponseHead<'a>, Body<'a>),
    /// No response.
    Failure(Failure),
}

/// A vendor's knowledge of its own errors: which responses to read, and what they mean.
///
/// Implementations are pure: no I/O, no clock (the receive time is in [`ResponseHead`]).
///
/// # Example
///
/// A vendor that signals throttling with HTTP 200 and `{"throttled":true}`:
///
/// ```
/// use redial_core::{Body, Classification, Kind, Outcome, Profile, RequestHead, ResponseHead, RetryRule};
/// use redial_core::generic::Generic;
///
/// #[derive(Debug)]
/// struct Acme;
///
/// impl Profile for Acme {
///     fn name(&self) -> &str { "acme" }
///     fn inspect(&self, _req: &RequestHead<'_>, res: &ResponseHead<'_>) -> bool {
///         res.status.is_success()
///     }
///     fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
///         if let Outcome::Response(head, Body::Complete(body)) = outcome {
///             if head.status.is_success() && body.windows(15).any(|w| w == b"\"throttled\":tru") {
///                 return Classification::retry(Kind::Throttled, RetryRule::new("acme.throttled"), "Acme throttled us");
///             }
///         }
///         Generic.classify(req, outcome) // everything else: the generic HTTP rules
///     }
/// }
/// ```
pub trait Profile: Send + Sync + fmt::Debug + 'static {
    /// The vendor's name, as used in logs and `redial explain` (`"marketo"`).
    fn name(&self) -> &str;

    /// Whether the body of this response must be read before it can be classified.
    fn inspect(&self, req: &RequestHead<'_>, res: &ResponseHead<'_>) -> bool;

    /// Classify an outcome. Must not panic on any input.
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification;

    /// Whether this request may still be sent while the host is in failover mode (after a
    /// [`Kind::Failover`] answer): Responsys's AFTM endpoints. Default: no request may.
    fn allowed_in_failover(&self, req: &RequestHead<'_>) -> bool {
        let _ = req;
        false
    }
}

impl<P: Profile + ?Sized> Profile for std::sync::Arc<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn inspect(&self, req: &RequestHead<'_>, res: &ResponseHead<'_>) -> bool {
        (**self).inspect(req, res)
    }
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        (**self).classify(req, outcome)
    }
    fn allowed_in_failover(&self, req: &RequestHead<'_>) -> bool {
        (**self).allowed_in_failover(req)
    }
}

/// Whether a retry may re-send a request that may already have reached the server.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// Any method: the vendor documents that the request was not acted on, or asks for a resubmit.
    AnyMethod,
    /// Only idempotent requests (by method, `Idempotency-Key`, or marked safe by the caller).
    IdempotentOnly,
}

/// A vendor rule's retry advice: how long to wait and how often, and for which requests.
///
/// ```
/// use std::time::Duration;
/// use redial_core::{backoff::Backoff, RetryRule};
/// // Responsys UNRECOVERABLE_EXCEPTION: wait about 30 s, resubmit exactly once.
/// let rule = RetryRule::new("responsys.unrecoverable_exception")
///     .backoff(Backoff::schedule([Duration::from_secs(30)]))
///     .any_method();
/// assert_eq!(rule.max_retries(), Some(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRule {
    name: &'static str,
    backoff: Option<Backoff>,
    max_retries: Option<u32>,
    safety: Safety,
    use_hint: bool,
    min_delay: Duration,
}

impl RetryRule {
    /// A rule with the policy's backoff, honouring server hints, for idempotent requests only.
    /// `name` identifies the rule in the history: per-rule retry limits count by it.
    pub const fn new(name: &'static str) -> Self {
        RetryRule {
            name,
            backoff: None,
            max_retries: None,
            safety: Safety::IdempotentOnly,
            use_hint: true,
            min_delay: Duration::ZERO,
        }
    }

    /// Use this backoff instead of the policy's. A schedule also limits the retries.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Retry at most `n` times under this rule.
    pub const fn max(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Allow any method to be re-sent (see [`Safety::AnyMethod`]).
    pub const fn any_method(mut self) -> Self {
        self.safety = Safety::AnyMethod;
        self
    }

    /// Re-send only idempotent requests (the default; see [`Safety::IdempotentOnly`]).
    pub const fn idempotent_only(mut self) -> Self {
        self.safety = Safety::IdempotentOnly;
        self
    }

    /// Ignore the server's `Retry-After` and RateLimit hints under this rule.
    pub const fn ignore_hint(mut self) -> Self {
        self.use_hint = false;
        self
    }

    /// Never wait less than this (a hint or backoff shorter than it is raised to it).
    pub const fn min_delay(mut self, d: Duration) -> Self {
        self.min_delay = d;
        self
    }

    /// The rule's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    /// The backoff named by the rule, if any.
    pub fn backoff_ref(&self) -> Option<&Backoff> {
        self.backoff.as_ref()
    }
    /// The most retries under this rule: its own limit, else its schedule's length.
    pub fn max_retries(&self) -> Option<u32> {
        self.max_retries.or_else(|| self.backoff.as_ref().and_then(Backoff::max_retries))
    }
    /// Which requests may be re-sent.
    pub const fn safety(&self) -> Safety {
        self.safety
    }
    /// Whether server hints are honoured.
    pub const fn uses_hint(&self) -> bool {
        self.use_hint
    }
    /// The shortest wait.
    pub const fn min_delay_ref(&self) -> Duration {
        self.min_delay
    }
}

/// How a request is changed before it is replayed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// `GET` → `POST` with `_method=GET` in the URL and the query string as an
    /// `application/x-www-form-urlencoded` body (Marketo's answer to HTTP 414).
    MethodOverridePost,
}

/// What a vendor's rule says to do, before policy, budget and deadline have their say.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advice {
    /// Hand the response to the caller.
    Return,
    /// Retry under this rule.
    Retry(RetryRule),
    /// Refresh the credential, then replay.
    RefreshAuth,
    /// Rewrite the request, then replay once.
    Rewrite(Rewrite),
    /// Ask the reconcile hook whether the first try took effect.
    Reconcile,
    /// Give up.
    Fail,
}

impl Advice {
    /// The action word of this advice.
    pub fn action(&self) -> Action {
        match self {
            Advice::Return => Action::Return,
            Advice::Retry(_) => Action::Retry,
            Advice::RefreshAuth => Action::RefreshAuth,
            Advice::Rewrite(_) => Action::Rewrite,
            Advice::Reconcile => Action::Reconcile,
            Advice::Fail => Action::Fail,
        }
    }
}

/// How the body contributed to a classification.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// The body was not needed.
    NotRead,
    /// The body was parsed and its vendor errors used.
    Parsed,
    /// The body did not parse as the vendor's format (an HTML gateway page, truncated JSON, an
    /// empty body): the status rules decided instead.
    Fallback,
    /// The body was longer than the inspect limit; the status rules decided.
    TooLarge,
}

impl BodyUse {
    /// A short word for logs and JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            BodyUse::NotRead => "not_read",
            BodyUse::Parsed => "parsed",
            BodyUse::Fallback => "fallback",
            BodyUse::TooLarge => "too_large",
        }
    }
}

/// Which of the host's client-side limits a throttled answer is about: what the engine lowers
/// besides waiting before this request's retry.
///
/// ```
/// use redial_core::{Classification, Kind, RetryRule, Throttle};
///
/// // Marketo 615: ten calls in flight per instance.
/// let c = Classification::retry(Kind::Throttled, RetryRule::new("marketo.615"), "concurrent access limit")
///     .with_throttle(Throttle::Concurrency);
/// assert_eq!(c.throttle, Throttle::Concurrency);
/// // Unless a profile says otherwise, a throttled answer is about the call rate.
/// assert_eq!(Classification::retry(Kind::Throttled, RetryRule::new("429"), "").throttle, Throttle::Rate);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Throttle {
    /// The host's call rate (Marketo 606, HTTP 429): on a host with a rate limit (its policy's,
    /// or a limiter of the user's), the limit is lowered to what the vendor accepted and
    /// admission to the host pauses for the wait. A host without one keeps no rate to lower:
    /// only this request waits, and each other request meets the vendor's answer itself.
    #[default]
    Rate,
    /// The host's calls in flight (Marketo 615): its concurrency limit is lowered.
    Concurrency,
    /// Not a limit of the host's (a job queue is full, an object is in use, a per-function
    /// limit): only this request waits; other calls to the host go on.
    Request,
}

impl Throttle {
    /// A short word for logs and JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Throttle::Rate => "rate",
            Throttle::Concurrency => "concurrency",
            Throttle::Request => "request",
        }
    }
}

/// What an outcome means.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// What happened.
    pub kind: Kind,
    /// What the vendor's rule says to do.
    pub advice: Advice,
    /// Every vendor error found in the response, in order.
    pub errors: Vec<VendorError>,
    /// The RFC 9457 problem body, if there was one.
    pub problem: Option<Box<Problem>>,
    /// The server's hint (`Retry-After`, RateLimit, a vendor reset time).
    pub hint: Option<ServerHint>,
    /// How the body was used.
    pub body: BodyUse,
    /// For a throttled outcome, the host limit it is about.
    pub throttle: Throttle,
    /// Why, in words: the rule that matched.
    pub reason: Cow<'static, str>,
}

impl Classification {
    /// A classification with no errors and no hint.
    pub fn new(kind: Kind, advice: Advice, reason: impl Into<Cow<'static, str>>) -> Self {
        Classification {
            kind,
            advice,
            errors: Vec::new(),
            problem: None,
            hint: None,
            body: BodyUse::NotRead,
            throttle: Throttle::Rate,
            reason: reason.into(),
        }
    }

    /// Success: return the response.
    pub fn success(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Success, Advice::Return, reason)
    }

    /// Retry under `rule`.
    pub fn retry(kind: Kind, rule: RetryRule, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(kind, Advice::Retry(rule), reason)
    }

    /// Give up.
    pub fn fail(kind: Kind, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(kind, Advice::Fail, reason)
    }

    /// Add vendor errors.
    pub fn with_errors(mut self, errors: impl IntoIterator<Item = VendorError>) -> Self {
        self.errors.extend(errors);
        self
    }

    /// Set the server hint.
    pub fn with_hint(mut self, hint: Option<ServerHint>) -> Self {
        self.hint = hint;
        self
    }

    /// Set the problem body.
    pub fn with_problem(mut self, problem: Option<Problem>) -> Self {
        self.problem = problem.map(Box::new);
        self
    }

    /// Say how the body was used.
    pub fn with_body(mut self, body: BodyUse) -> Self {
        self.body = body;
        self
    }

    /// Say which host limit a throttled outcome is about.
    pub fn with_throttle(mut self, throttle: Throttle) -> Self {
        self.throttle = throttle;
        self
    }

    /// The first vendor error's code, the one logs and summaries show.
    pub fn code(&self) -> Option<&str> {
        self.errors.first().map(|e| e.code.as_str())
    }
}
