//! The report of a logical request: every attempt, every wait, every vendor error.

use std::time::Duration;

use crate::{Attempt, FailReason, Kind, VendorError};

/// What happened across the attempts of one logical request.
///
/// A successful response carries it as an `http` extension when anything was worth reporting
/// (a retry, a vendor error, a partial success); a response without one went through on its
/// first attempt with nothing to report. Errors always carry it, and so does a response redial
/// gave up on and returned (see [`gave_up`](Report::gave_up)).
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Every vendor error seen, with the number of the attempt that reported it.
    pub errors: Vec<(u32, VendorError)>,
    /// The response is not from the last attempt: a reconcile hook found that an earlier
    /// attempt had taken effect, and this is its result.
    pub reconciled: bool,
    /// Why redial gave up on this response, when it returned it instead of an error (a layer
    /// built with `final_responses_as_ok`, redial-tower): a final 4xx, retries spent on a 503.
    /// `None` on a response redial took for a success.
    pub gave_up: Option<FailReason>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Report::default()
    }

    /// How many attempts were made.
    pub fn attempt_count(&self) -> u32 {
        self.attempts.len() as u32
    }

    /// The total of the waits decided between attempts (backoff, `Retry-After`, a vendor's
    /// hint). Time spent otherwise is not in it: waiting for the host's rate or concurrency
    /// limiter to admit an attempt (after a 606 it may hold a retry to the end of the window)
    /// or for a login: that is [`total_held`](Self::total_held). The whole time up to the
    /// last outcome is the last attempt's [`elapsed`](crate::Attempt::elapsed).
    pub fn total_delay(&self) -> Duration {
        self.attempts.iter().filter_map(|a| a.delay).sum()
    }

    /// The total of the time attempts waited to be sent beyond their decided delays: held by
    /// the host's rate or concurrency limiter, a login, a reconcile hook, or the inner
    /// service's readiness, or the reading of the caller's request body before the first
    /// ([`Attempt::held`](crate::Attempt::held)). Attempts recorded
    /// without their send time count nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redial_core::Report;
    /// assert_eq!(Report::new().total_held(), Duration::ZERO);
    /// ```
    pub fn total_held(&self) -> Duration {
        let previous = std::iter::once(None).chain(self.attempts.iter().map(Some));
        self.attempts.iter().zip(previous).filter_map(|(a, p)| a.held(p)).sum()
    }

    /// The kind of the last attempt.
    pub fn last_kind(&self) -> Option<Kind> {
        self.attempts.last().map(|a| a.kind)
    }

    /// The vendor errors reported by the last attempt (e.g. the record errors of a partial
    /// success).
    pub fn last_errors(&self) -> impl Iterator<Item = &VendorError> {
        let last = self.attempts.last().map(|a| a.number);
        self.errors.iter().filter(move |(n, _)| Some(*n) == last).map(|(_, e)| e)
    }
}
