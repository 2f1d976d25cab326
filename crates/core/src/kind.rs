//! The words redial uses for what happened ([`Kind`]) and what it does next ([`Action`]).

use std::fmt;

/// What happened, in the words of the vendor tables.
///
/// Every response and every transport failure is classified into exactly one kind.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The request succeeded.
    Success,
    /// The request succeeded, with non-fatal or per-record errors (Adobe 207, Marketo `skipped` records).
    Partial,
    /// A failure that may go away on its own (gateway errors, timeouts, resets).
    Transient,
    /// The vendor asked us to slow down (HTTP 429, Marketo 606/615, Responsys `API_LIMIT_EXCEEDED`).
    Throttled,
    /// The credential expired or is invalid; a new login may fix it.
    AuthExpired,
    /// The vendor failed over; only some endpoints work (Responsys `API_NOT_ALLOWED_IN_SECONDARY`).
    Failover,
    /// A quota that will not recover soon (Marketo 607 daily quota).
    QuotaExhausted,
    /// A final failure: retrying the same request cannot succeed.
    Fatal,
}

impl Kind {
    /// The snake_case word used in `VENDORS.md`, logs and `redial explain`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Success => "success",
            Kind::Partial => "partial",
            Kind::Transient => "transient",
            Kind::Throttled => "throttled",
            Kind::AuthExpired => "auth_expired",
            Kind::Failover => "failover",
            Kind::QuotaExhausted => "quota_exhausted",
            Kind::Fatal => "fatal",
        }
    }

    /// Whether the request did what it was asked to do (`success` or `partial`).
    pub const fn is_success(self) -> bool {
        matches!(self, Kind::Success | Kind::Partial)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What redial does next, in the words of the vendor tables.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Hand the response to the caller.
    Return,
    /// Send the request again after a delay.
    Retry,
    /// Obtain a new credential (single-flight), then replay.
    RefreshAuth,
    /// Change the request (e.g. Marketo's 414 → `POST` with `_method=GET`), then replay.
    Rewrite,
    /// Ask a user hook whether the first try took effect before doing anything else.
    Reconcile,
    /// Give up: the caller gets an error that owns the last response.
    Fail,
}

impl Action {
    /// The snake_case word used in `VENDORS.md`, logs and `redial explain`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Return => "return",
            Action::Retry => "retry",
            Action::RefreshAuth => "refresh_auth",
            Action::Rewrite => "rewrite",
            Action::Reconcile => "reconcile",
            Action::Fail => "fail",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
