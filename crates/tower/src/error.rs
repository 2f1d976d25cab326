//! The one error type of redial: opaque, with predicates and accessors that own everything the
//! vendor sent.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, Version};
use redial_core::hint::ServerHint;
use redial_core::{Classification, FailReason, Failure, Kind, Problem, Report, VendorError};

use crate::BoxError;

/// Why a logical request failed, with the last response (or transport error) and the history
/// of every attempt.
///
/// Like hyper-util's client error, it is opaque: ask it with the `is_*` predicates, read it with
/// the accessors. Nothing the vendor sent is lost: the last response's status, headers and the
/// body bytes read, every vendor error from every attempt, and the server's hint.
///
/// ```
/// # async fn demo(err: redial_tower::Error) {
/// if err.is_hint_exceeds_limit() {
///     let wait = err.retry_after().unwrap();
///     eprintln!("vendor asked us to wait {wait:?}; rescheduling");
/// }
/// for e in err.vendor_errors() {
///     eprintln!("vendor said {}: {:?}", e.code, e.message);
/// }
/// eprintln!("{} attempts", err.report().attempt_count());
/// # }
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    classification: Option<Classification>,
    response: Option<LastResponse>,
    source: Option<BoxError>,
    report: Report,
}

struct LastResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    complete: bool,
}

#[derive(Debug)]
pub(crate) enum ErrorKind {
    /// The decision gave up.
    Decided(FailReason),
    /// The inner service failed to become ready for an attempt (the first, or a retry).
    NotReady,
    /// The request body could not be read.
    RequestBody,
    /// A response needed a token and no token source is configured.
    NoTokenSource,
    /// The host is in failover mode and this request is not one it still serves.
    FailoverActive,
    /// The login failed (fatally, or until the deadline).
    AuthFailed(redial_core::auth::LoginError),
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, report: Report) -> Self {
        Error { inner: Box::new(Inner { kind, classification: None, response: None, source: None, report }) }
    }

    pub(crate) fn with_classification(mut self, c: Classification) -> Self {
        self.inner.classification = Some(c);
        self
    }

    pub(crate) fn with_source(mut self, e: BoxError) -> Self {
        self.inner.source = Some(e);
        self
    }

    pub(crate) fn with_response(mut self, head: http::response::Parts, body: Bytes, complete: bool) -> Self {
        self.inner.response =
            Some(LastResponse { status: head.status, version: head.version, headers: head.headers, body, complete });
        self
    }

    fn reason(&self) -> Option<&FailReason> {
        match &self.inner.kind {
            ErrorKind::Decided(r) => Some(r),
            _ => None,
        }
    }

    /// The decision's reason for giving up, if a decision gave up.
    pub fn fail_reason(&self) -> Option<&FailReason> {
        self.reason()
    }

    /// The vendor's rule says the last outcome is final (a fatal error, a quota, a failover).
    pub fn is_final(&self) -> bool {
        matches!(self.reason(), Some(FailReason::Final))
    }

    /// Retries ran out: the attempt limit, a rule's own limit, or the host's retry budget.
    pub fn is_exhausted(&self) -> bool {
        matches!(
            self.reason(),
            Some(FailReason::AttemptsExhausted { .. } | FailReason::RuleExhausted { .. } | FailReason::BudgetExhausted)
        )
    }

    /// The host's retry budget refused a retry.
    pub fn is_budget_exhausted(&self) -> bool {
        matches!(self.reason(), Some(FailReason::BudgetExhausted))
    }

    /// The deadline stopped the request (a wait or an attempt would have passed it, or it came
    /// while the request waited for a login still running: see
    /// [`is_auth_failed`](Error::is_auth_failed) for a login that failed). When the running
    /// login follows one that failed, that failure is the error's
    /// [`source`](std::error::Error::source), unless the last attempt got no response: its
    /// transport error stays the source then (the login's failure is the token source's
    /// [`last_error`](crate::TokenSource::last_error)).
    pub fn is_deadline(&self) -> bool {
        matches!(
            self.reason(),
            Some(FailReason::DeadlineExceeded { .. } | FailReason::HintExceedsLimit { deadline: true, .. })
        )
    }

    /// The server asked for a longer wait than the Retry-After cap or the deadline allows; the
    /// hint is in [`retry_after`](Error::retry_after).
    pub fn is_hint_exceeds_limit(&self) -> bool {
        matches!(self.reason(), Some(FailReason::HintExceedsLimit { .. }))
    }

    /// A retry was wanted but the request body could not be replayed.
    pub fn is_not_replayable(&self) -> bool {
        matches!(self.reason(), Some(FailReason::NotReplayable(_)))
    }

    /// A retry was wanted but the request may have reached the server and is not idempotent.
    pub fn is_not_idempotent(&self) -> bool {
        matches!(self.reason(), Some(FailReason::NotIdempotent))
    }

    /// The last attempt got no response (connect error, reset, timeout).
    pub fn is_transport(&self) -> bool {
        self.failure().is_some()
    }

    /// The last attempt timed out.
    pub fn is_timeout(&self) -> bool {
        self.failure() == Some(Failure::Timeout)
    }

    /// A credential problem of any kind: a response asked for a credential refresh and no token
    /// source is configured, no credential could be obtained ([`is_auth_failed`](Error::is_auth_failed)),
    /// or the vendor still refused the request after the refreshes the policy allows.
    pub fn is_auth(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::NoTokenSource | ErrorKind::AuthFailed(_))
            || matches!(self.reason(), Some(FailReason::AuthRefreshExhausted { .. }))
    }

    /// No credential could be obtained: the login was refused, or kept failing until the
    /// deadline (the last login failed and no other was running when it came). [`login_error`](Error::login_error) has what the login endpoint answered.
    pub fn is_auth_failed(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::AuthFailed(_))
    }

    /// The login's failure, when no credential could be obtained.
    pub fn login_error(&self) -> Option<&redial_core::auth::LoginError> {
        match &self.inner.kind {
            ErrorKind::AuthFailed(e) => Some(e),
            _ => None,
        }
    }

    /// The vendor has failed over: either it said so for this request (Responsys
    /// `API_NOT_ALLOWED_IN_SECONDARY`), or the host is in failover mode and this request was not
    /// sent at all (see [`FailoverMode`](crate::hooks::FailoverMode)).
    pub fn is_failover(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::FailoverActive) || self.kind() == Some(Kind::Failover)
    }

    /// Whether the request was refused locally, without being sent, because of failover mode.
    pub fn is_failover_local(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::FailoverActive)
    }

    /// Why the last attempt got no response, if it got none.
    pub fn failure(&self) -> Option<Failure> {
        self.inner.report.attempts.last().and_then(|a| a.failure)
    }

    /// The kind of the last outcome (`throttled`, `fatal`, …).
    pub fn kind(&self) -> Option<Kind> {
        self.inner.classification.as_ref().map(|c| c.kind)
    }

    /// The last outcome's classification: kind, advice, vendor errors, problem, hint, reason.
    pub fn classification(&self) -> Option<&Classification> {
        self.inner.classification.as_ref()
    }

    /// The last response's status.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.response.as_ref().map(|r| r.status)
    }

    /// The last response's headers.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.inner.response.as_ref().map(|r| &r.headers)
    }

    /// The bytes read of the last response's body (up to the inspect limit).
    pub fn body(&self) -> Option<&Bytes> {
        self.inner.response.as_ref().map(|r| &r.body)
    }

    /// Whether [`body`](Error::body) is the whole body (else the first inspect-limit bytes).
    pub fn body_is_complete(&self) -> bool {
        self.inner.response.as_ref().is_some_and(|r| r.complete)
    }

    /// The last response's RFC 9457 problem body, if it had one.
    pub fn problem(&self) -> Option<&Problem> {
        self.inner.classification.as_ref().and_then(|c| c.problem.as_deref())
    }

    /// The last response's vendor errors.
    pub fn last_vendor_errors(&self) -> &[VendorError] {
        self.inner.classification.as_ref().map_or(&[], |c| &c.errors)
    }

    /// Every vendor error from every attempt, in order.
    pub fn vendor_errors(&self) -> impl Iterator<Item = &VendorError> {
        self.inner.report.errors.iter().map(|(_, e)| e)
    }

    /// The server's last hint (`Retry-After`, RateLimit, a vendor reset time).
    pub fn hint(&self) -> Option<ServerHint> {
        match self.reason() {
            Some(FailReason::HintExceedsLimit { hint, .. }) => Some(*hint),
            _ => self.inner.classification.as_ref().and_then(|c| c.hint),
        }
    }

    /// The delay the server last asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        self.hint().map(|h| h.delay)
    }

    /// Every attempt, with its status, code, kind, action and wait.
    pub fn report(&self) -> &Report {
        &self.inner.report
    }

    /// The last response, rebuilt around the bytes read; `None` if the last attempt got none.
    /// Its [`Report`] says in [`gave_up`](Report::gave_up) why redial gave up on it, when a
    /// decision did.
    pub fn into_response(self) -> Option<Response<Bytes>> {
        let inner = *self.inner;
        let r = inner.response?;
        let mut res = Response::new(r.body);
        *res.status_mut() = r.status;
        *res.version_mut() = r.version;
        *res.headers_mut() = r.headers;
        // A response redial gave up on says why, as with `final_responses_as_ok`.
        let mut report = inner.report;
        if let ErrorKind::Decided(reason) = inner.kind {
            report.gave_up = Some(reason);
        }
        res.extensions_mut().insert(report);
        Some(res)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attempts = self.inner.report.attempt_count();
        match &self.inner.kind {
            ErrorKind::Decided(FailReason::Final) if self.kind() == Some(Kind::Failover) => {
                f.write_str("the vendor has failed over: this endpoint is not served until it fails back")?
            }
            // The rule's own words (the profile's, never the vendor's body): which rule, and why.
            ErrorKind::Decided(r @ FailReason::Final) => match &self.inner.classification {
                Some(c) if !c.reason.is_empty() => write!(f, "{r}: {}", one_line(&c.reason, 200))?,
                _ => write!(f, "{r}")?,
            },
            ErrorKind::Decided(r) => write!(f, "{r}")?,
            ErrorKind::NotReady => f.write_str("the inner service failed while getting ready for an attempt")?,
            ErrorKind::RequestBody => f.write_str("the request body could not be read")?,
            ErrorKind::NoTokenSource => {
                f.write_str("the vendor asked for a new credential and no token source is configured")?
            }
            ErrorKind::AuthFailed(e) => write!(f, "no credential: {e}")?,
            ErrorKind::FailoverActive => {
                f.write_str("the vendor has failed over and this endpoint is not served in failover mode; not sent")?
            }
        }
        // What the reason said already is not said again.
        let reason = self.fail_reason();
        let mut parts = Vec::new();
        if !matches!(reason, Some(FailReason::AttemptsExhausted { .. })) {
            parts.push(format!("{attempts} attempt{}", if attempts == 1 { "" } else { "s" }));
        }
        if let Some(s) = self.status() {
            parts.push(format!("last status {}", s.as_u16()));
        } else if let Some(fail) = self.failure() {
            parts.push(format!("last attempt: {}", fail.as_str()));
        }
        if let Some(c) = &self.inner.classification {
            parts.push(c.kind.to_string());
            if let Some(e) = c.errors.first() {
                parts.push(format!("vendor code {}", one_line(&e.code, 64)));
            }
        }
        if let Some(hint) = self.hint().filter(|_| !matches!(reason, Some(FailReason::HintExceedsLimit { .. }))) {
            parts.push(format!("the server asked to wait {}s", hint.delay.as_secs()));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// `text` (a vendor's code, or a rule's reason that names one) for one line of a message: at
/// most `max` characters, control characters escaped. A code is the vendor's text, and a
/// hostile body can make it a page long or put a line break in a log. The accessors keep it
/// whole.
fn one_line(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max && !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(max.min(text.len()) + 3);
    for c in text.chars().take(max) {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    if text.chars().nth(max).is_some() {
        shown.push('…');
    }
    std::borrow::Cow::Owned(shown)
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers are left out on purpose: they may carry credentials.
        let mut d = f.debug_struct("redial::Error");
        d.field("kind", &self.inner.kind);
        if let Some(r) = &self.inner.response {
            d.field("status", &r.status).field("body_len", &r.body.len());
        }
        if let Some(c) = &self.inner.classification {
            d.field("classification", &c.kind).field("vendor_errors", &c.errors).field("reason", &c.reason);
        }
        d.field("attempts", &self.inner.report.attempts.len());
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|e| e as _)
    }
}
