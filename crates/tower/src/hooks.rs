//! Reconcile hooks and failover probes: the user's say in what redial does.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use redial_core::{Failure, VendorError};
use tokio::time::Instant;

use crate::auth::BoxFuture;

/// What a reconcile hook is asked about: a call that may or may not have taken effect.
///
/// Its `Debug` shows the request's method, URI path, header names and body length: never a
/// header's value (the caller's `Authorization`) nor the body.
#[non_exhaustive]
pub struct ReconcileRequest {
    /// The original request, body included.
    pub request: Request<Bytes>,
    /// The status of the failed attempt, if it got a response.
    pub status: Option<StatusCode>,
    /// Why the failed attempt got no response, if it got none.
    pub failure: Option<Failure>,
    /// The vendor errors of the failed attempt.
    pub errors: Vec<VendorError>,
}

impl fmt::Debug for ReconcileRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.request.headers().keys().map(|k| k.as_str()).collect();
        f.debug_struct("ReconcileRequest")
            .field("method", self.request.method())
            .field("path", &self.request.uri().path())
            .field("headers", &names)
            .field("body_len", &self.request.body().len())
            .field("status", &self.status)
            .field("failure", &self.failure)
            .field("errors", &self.errors)
            .finish()
    }
}

/// The hook's answer.
#[non_exhaustive]
#[derive(Debug)]
pub enum Verdict {
    /// The call did not take effect: redial sends it once more.
    NotApplied,
    /// The call did take effect: this is its result, returned to the caller marked reconciled.
    Applied(Response<Bytes>),
    /// The call half-happened and the hook has undone it (Genesys: the sub-campaign was stopped
    /// with `changeSubCampaignState`): redial sends it once more.
    Compensated,
}

/// Decides whether a non-idempotent call that failed ambiguously took effect (Genesys:
/// `showSubCampaignState` after `createSubCampaign` timed out).
///
/// Any `Fn(ReconcileRequest) -> impl Future<Output = Verdict>` is a hook.
///
/// ```
/// use redial_tower::hooks::{ReconcileRequest, Verdict};
/// let hook = |req: ReconcileRequest| async move {
///     // Look the object up with your own client, by the external id in `req.request`.
///     let _ = req;
///     Verdict::NotApplied
/// };
/// # fn is_hook(_: impl redial_tower::hooks::ReconcileHook) {}
/// # is_hook(hook);
/// ```
pub trait ReconcileHook: Send + Sync + 'static {
    /// Find out whether the call took effect.
    fn reconcile(&self, req: ReconcileRequest) -> BoxFuture<Verdict>;
}

impl<F, Fut> ReconcileHook for F
where
    F: Fn(ReconcileRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    fn reconcile(&self, req: ReconcileRequest) -> BoxFuture<Verdict> {
        Box::pin(self(req))
    }
}

/// Whether a host is serving normally or has failed over.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// Every request is sent.
    Primary,
    /// The vendor failed over at `since`: only the requests its profile allows in failover
    /// (Responsys AFTM endpoints) are sent; the others fail at once with
    /// [`Error::is_failover`](crate::Error::is_failover), without reaching the vendor (except,
    /// while no probe runs, one trial request each [`FAILOVER_TRIAL_INTERVAL`]).
    Secondary {
        /// When the host entered failover mode.
        since: Instant,
    },
}

/// A read-only request sent on an interval while a host is in failover mode; the first success
/// returns the host to [`FailoverMode::Primary`].
#[derive(Clone)]
pub struct Probe {
    pub(crate) request: std::sync::Arc<dyn Fn() -> Request<Bytes> + Send + Sync>,
    pub(crate) interval: Duration,
}

impl Probe {
    /// Send `request()` every `interval` while in failover mode (Responsys suggests a standard
    /// read-only call such as "Fetch All Profile Lists"). The interval is at least
    /// [`MIN_PROBE_INTERVAL`] (a zero one would probe back to back), at most a year.
    pub fn new(interval: Duration, request: impl Fn() -> Request<Bytes> + Send + Sync + 'static) -> Self {
        let interval = interval.clamp(MIN_PROBE_INTERVAL, redial_core::MAX_DURATION);
        Probe { request: std::sync::Arc::new(request), interval }
    }

    /// How often the probe is sent.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// The shortest interval between two failover probes: one a second.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe").field("interval", &self.interval).finish_non_exhaustive()
    }
}

/// Without a [`Probe`], how long a host stays in failover mode before one request that failover
/// mode would refuse is let through, to find out whether the vendor is back **\[I\]**. While
/// failed over, the vendor refuses such a request without carrying it out (Responsys:
/// `API_NOT_ALLOWED_IN_SECONDARY`), so the trial is safe whatever it is.
pub const FAILOVER_TRIAL_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Failover {
    pub(crate) probe: Option<Probe>,
    /// Whether the host is in failover mode: read by every request, so not behind the lock.
    secondary: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    mode: FailoverMode,
    /// The probe task is running, or (without a probe) a trial request is in flight.
    probing: bool,
    /// Without a probe: when the next trial request may go.
    next_trial: Instant,
    /// Without a probe: when the trial in flight went (one that never ends, with no deadline,
    /// stops blocking others after ten intervals).
    trial_since: Option<Instant>,
    /// The number of the current trial: the end of a superseded one changes nothing.
    trial: u64,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            probe: None,
            secondary: AtomicBool::new(false),
            state: Mutex::new(State {
                mode: FailoverMode::Primary,
                probing: false,
                next_trial: Instant::now(),
                trial_since: None,
                trial: 0,
            }),
        }
    }
}

impl Failover {
    pub(crate) fn with_probe(probe: Probe) -> Self {
        Failover { probe: Some(probe), ..Failover::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn mode(&self) -> FailoverMode {
        if !self.secondary.load(Ordering::Acquire) {
            return FailoverMode::Primary;
        }
        self.lock().mode
    }

    /// Enter failover mode; `true` if a probe should be started (none is running).
    pub(crate) fn enter(&self, host: &str) -> bool {
        let mut st = self.lock();
        if st.mode == FailoverMode::Primary {
            let now = Instant::now();
            st.mode = FailoverMode::Secondary { since: now };
            st.next_trial = now + FAILOVER_TRIAL_INTERVAL;
            self.secondary.store(true, Ordering::Release);
            tracing::warn!(host, "failover: the vendor failed over; only failover endpoints are sent");
        }
        let start = self.probe.is_some() && !st.probing;
        st.probing |= start;
        start
    }

    pub(crate) fn recovered(&self, host: &str) {
        let mut st = self.lock();
        if st.mode != FailoverMode::Primary {
            tracing::warn!(host, "failover: the vendor is serving again; the host is back to primary");
        }
        st.mode = FailoverMode::Primary;
        st.probing = false;
        st.trial_since = None;
        self.secondary.store(false, Ordering::Release);
    }

    /// The probe task could not start (or has ended): the next failover starts one again.
    pub(crate) fn probe_ended(&self) {
        self.lock().probing = false;
    }

    /// The trial's number when a request that failover mode refuses goes instead, as the one
    /// trial in flight, [`FAILOVER_TRIAL_INTERVAL`] after failover began or after the last
    /// trial: without a probe, or with one that is not running (it could not start).
    pub(crate) fn take_trial(&self, host: &str) -> Option<u64> {
        let mut st = self.lock();
        let now = Instant::now();
        let stale = st.trial_since.is_some_and(|t| now >= t + FAILOVER_TRIAL_INTERVAL * 10);
        let due = matches!(st.mode, FailoverMode::Secondary { .. }) && (!st.probing || stale) && now >= st.next_trial;
        if !due {
            return None;
        }
        st.probing = true;
        st.trial_since = Some(now);
        st.trial += 1;
        tracing::info!(host, "failover: one request goes to find out whether the vendor is back");
        Some(st.trial)
    }

    /// Trial `trial`'s outcome: `served` when the vendor answered it as in primary mode.
    /// Otherwise (refused for failover, a server error, no answer, cancelled) the next trial
    /// waits an interval. A trial superseded by a newer one changes nothing.
    pub(crate) fn trial_ended(&self, host: &str, trial: u64, served: bool) {
        let mut st = self.lock();
        if st.trial != trial || st.trial_since.is_none() {
            return;
        }
        if served {
            drop(st);
            return self.recovered(host);
        }
        st.probing = false;
        st.trial_since = None;
        st.next_trial = Instant::now() + FAILOVER_TRIAL_INTERVAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_interval_is_held_to_its_bounds() {
        let probe = |d| Probe::new(d, || Request::new(Bytes::new())).interval();
        assert_eq!(probe(Duration::ZERO), MIN_PROBE_INTERVAL);
        assert_eq!(probe(Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(probe(Duration::MAX), redial_core::MAX_DURATION);
    }

    #[test]
    fn a_reconcile_request_shows_no_header_value_nor_body() {
        let request = Request::post("https://engage.example.com/soap?op=createSubCampaign")
            .header("authorization", "Basic TOPSECRET")
            .body(Bytes::from_static(b"<password>TOPSECRET</password>"))
            .unwrap();
        let req = ReconcileRequest { request, status: None, failure: Some(Failure::Timeout), errors: Vec::new() };
        let shown = format!("{req:?}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("authorization") && shown.contains("body_len: 30"), "{shown}");
    }
}
