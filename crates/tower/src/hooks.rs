//! Reconcile hooks and failover probes: the user's say in what redial does.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// [`MIN_PROBE_INTERVAL`] (a zero one would probe back to back), at most a year. A probe
    /// request with no outcome after ten [`FAILOVER_TRIAL_INTERVAL`]s (a host with no deadline)
    /// is given up, and the next one goes at its turn.
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

/// Where a host's failover mode is kept. A vendor fails over an account, not a process: every
/// client of a Responsys account meets `API_NOT_ALLOWED_IN_SECONDARY` once it has. A store
/// shared by a fleet lets the first client that meets it spare the others their refused calls,
/// and the first that finds the vendor back bring every one of them back.
///
/// Only the mode is kept here. Each layer keeps its own probe and trial schedule: a layer that
/// learns of a failover from the store finds out whether the vendor is back by one trial
/// request each [`FAILOVER_TRIAL_INTERVAL`], unless the store says so first. Without a store
/// ([`RetryLayerBuilder::failover_store`](crate::RetryLayerBuilder::failover_store)) a layer
/// keeps the mode of each host to itself; [`InMemoryFailover`], given to several layers,
/// shares it within a process.
///
/// ```
/// use std::sync::Arc;
/// use redial_tower::hooks::{FailoverStore, InMemoryFailover};
///
/// let account: Arc<dyn FailoverStore> = Arc::new(InMemoryFailover::default());
/// assert!(!account.is_failed_over());
/// account.set_failed_over(true);
/// assert!(account.is_failed_over());
/// ```
pub trait FailoverStore: Send + Sync + fmt::Debug + 'static {
    /// Whether the vendor has failed over, as far as the store knows. Read by every request
    /// to the host: it must answer at once (a store shared by a fleet answers from a copy it
    /// keeps fresh), and with this store's own last write as soon as it is made (a copy is
    /// not overwritten by a read of the shared store from before that write landed): a layer
    /// that reads anything else takes it for another client's word.
    fn is_failed_over(&self) -> bool;

    /// A request met the vendor's failover refusal (`true`), or a probe or trial request was
    /// served as in primary mode (`false`). `true` is written when this layer fails the host
    /// over, not again for the refusals it meets while it holds the host failed over (of
    /// requests sent before another client found the vendor back, they may be older news
    /// than the store's): a store that could not make the write makes it again itself.
    fn set_failed_over(&self, failed_over: bool);
}

/// A [`FailoverStore`] in this process's memory: one flag.
#[derive(Debug, Default)]
pub struct InMemoryFailover(AtomicBool);

impl FailoverStore for InMemoryFailover {
    fn is_failed_over(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set_failed_over(&self, failed_over: bool) {
        self.0.store(failed_over, Ordering::Release);
    }
}

#[derive(Debug)]
pub(crate) struct Failover {
    pub(crate) probe: Option<Probe>,
    /// The mode, as the account's clients share it, when the user gave a store; without
    /// one, `secondary` alone keeps it.
    pub(crate) store: Option<Arc<dyn FailoverStore>>,
    /// Whether this layer has the host in failover mode: read (and compared with the store)
    /// by every request, so not behind the lock.
    secondary: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    mode: FailoverMode,
    /// The probe task is running, or (without a probe) a trial request is in flight.
    probing: bool,
    /// The number of the last probe task started: the end of an earlier one changes nothing.
    probe: u64,
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
            store: None,
            secondary: AtomicBool::new(false),
            state: Mutex::new(State {
                mode: FailoverMode::Primary,
                probing: false,
                probe: 0,
                next_trial: Instant::now(),
                trial_since: None,
                trial: 0,
            }),
        }
    }
}

impl Failover {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn mode(&self, host: &str) -> FailoverMode {
        if let Some(store) = &self.store {
            if store.is_failed_over() != self.secondary.load(Ordering::Acquire) {
                self.adopt(host, &**store);
            }
        }
        if !self.secondary.load(Ordering::Acquire) {
            return FailoverMode::Primary;
        }
        self.lock().mode
    }

    /// Take the store's word, which another layer (another process) changed. It is read again
    /// under the lock: the word read before it may be older than an `enter` or `recovered` of
    /// this layer's that ran since (they write the store before they take the lock).
    fn adopt(&self, host: &str, store: &dyn FailoverStore) {
        let mut st = self.lock();
        let failed_over = store.is_failed_over();
        if failed_over {
            if st.mode == FailoverMode::Primary {
                st.failed_over(Instant::now());
                tracing::warn!(
                    host,
                    "failover: the store says the vendor failed over; only failover endpoints are sent"
                );
            }
        } else if st.mode != FailoverMode::Primary {
            // A probe of this layer's still running ends at its next turn; a trial in flight
            // ends now (its outcome is not needed).
            st.mode = FailoverMode::Primary;
            if st.trial_since.take().is_some() {
                st.probing = false;
            }
            tracing::warn!(host, "failover: the store says the vendor is serving again; the host is back to primary");
        }
        self.secondary.store(failed_over, Ordering::Release);
    }

    /// Enter failover mode; the number of the probe to start, if one should be (none is
    /// running).
    pub(crate) fn enter(&self, host: &str) -> Option<u64> {
        if let Some(store) = &self.store {
            // This layer holds the host failed over, so the store was told so (by this layer or
            // by the client it learnt it from): the refusal is no news to write. If another
            // client has found the vendor back since, the refusal is of a request sent before
            // that (a trial, a probe, one in flight when the host failed over), older news than
            // the store's, and writing it would hold every client failed over until its next
            // trial. A store that answers from a copy may not know yet of that recovery, so
            // its word is not what decides whether to write.
            if self.secondary.load(Ordering::Acquire) {
                if !store.is_failed_over() {
                    self.adopt(host, &**store);
                    return None;
                }
            } else {
                store.set_failed_over(true);
            }
        }
        let mut st = self.lock();
        if st.mode == FailoverMode::Primary {
            st.failed_over(Instant::now());
            self.secondary.store(true, Ordering::Release);
            tracing::warn!(host, "failover: the vendor failed over; only failover endpoints are sent");
        }
        if self.probe.is_none() || st.probing {
            return None;
        }
        st.probing = true;
        st.probe += 1;
        Some(st.probe)
    }

    pub(crate) fn recovered(&self, host: &str) {
        if let Some(store) = &self.store {
            store.set_failed_over(false);
        }
        let mut st = self.lock();
        if st.mode != FailoverMode::Primary {
            tracing::warn!(host, "failover: the vendor is serving again; the host is back to primary");
        }
        st.mode = FailoverMode::Primary;
        st.probing = false;
        st.trial_since = None;
        self.secondary.store(false, Ordering::Release);
    }

    /// Whether probe `probe` is the one this host runs (a probe that slept through a return
    /// to primary and a new failover is not: the new failover's probe is).
    pub(crate) fn probe_is_current(&self, probe: u64) -> bool {
        let st = self.lock();
        st.probing && st.probe == probe
    }

    /// Probe `probe` could not start, or has ended: the next failover starts one again.
    pub(crate) fn probe_ended(&self, probe: u64) {
        let mut st = self.lock();
        if st.probe == probe {
            st.probing = false;
        }
    }

    /// The trial's number when a request that failover mode refuses goes instead, as the one
    /// trial in flight, [`FAILOVER_TRIAL_INTERVAL`] after failover began or after the last
    /// trial: without a probe, or with one that is not running (it could not start, or the
    /// failover was learnt from the store).
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

impl State {
    fn failed_over(&mut self, now: Instant) {
        self.mode = FailoverMode::Secondary { since: now };
        self.next_trial = now + FAILOVER_TRIAL_INTERVAL;
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

    /// The store says the vendor failed back while this layer's trial was in flight, then
    /// that it failed over again: the next trial still goes, a minute later (the first one's
    /// outcome, no longer needed, does not hold the host in failover mode for good).
    #[tokio::test(start_paused = true)]
    async fn a_failover_learnt_from_the_store_takes_trials_however_the_last_one_ended() {
        let store = Arc::new(InMemoryFailover::default());
        let f = Failover { store: Some(store.clone()), ..Failover::default() };
        store.set_failed_over(true);
        assert!(matches!(f.mode("h"), FailoverMode::Secondary { .. }));
        assert_eq!(f.take_trial("h"), None, "not before an interval");
        tokio::time::advance(FAILOVER_TRIAL_INTERVAL).await;
        let first = f.take_trial("h").expect("a trial after an interval");
        store.set_failed_over(false);
        assert_eq!(f.mode("h"), FailoverMode::Primary);
        f.trial_ended("h", first, false);
        store.set_failed_over(true);
        assert!(matches!(f.mode("h"), FailoverMode::Secondary { .. }));
        tokio::time::advance(FAILOVER_TRIAL_INTERVAL).await;
        assert!(f.take_trial("h").is_some_and(|t| t > first), "not stuck in failover mode");
    }

    /// A store read that another request of this layer's raced: it read "failed over" just
    /// before that request found the vendor back (and wrote the store, then the layer's own
    /// state). The stale word is not taken: the host stays in primary mode, and the request
    /// is sent, not refused locally.
    #[test]
    fn a_store_read_from_before_this_layers_recovery_does_not_fail_the_host_over_again() {
        #[derive(Debug, Default)]
        struct Raced(std::sync::atomic::AtomicUsize);
        impl FailoverStore for Raced {
            fn is_failed_over(&self) -> bool {
                // The first read is from before the recovery's write; the others after it.
                self.0.fetch_add(1, Ordering::SeqCst) == 0
            }
            fn set_failed_over(&self, _: bool) {}
        }
        let f = Failover { store: Some(Arc::new(Raced::default())), ..Failover::default() };
        assert_eq!(f.mode("h"), FailoverMode::Primary);
        assert_eq!(f.mode("h"), FailoverMode::Primary);
    }

    /// A probe that ends after the host came back and failed over again (with a new probe)
    /// does not end the new one: the next failover answer starts no third.
    #[tokio::test(start_paused = true)]
    async fn an_old_probes_end_leaves_the_new_one_running() {
        let f = Failover {
            probe: Some(Probe::new(Duration::from_secs(30), || Request::new(Bytes::new()))),
            ..Failover::default()
        };
        let first = f.enter("h").expect("a probe to start");
        assert_eq!(f.enter("h"), None, "one probe at a time");
        f.recovered("h");
        let second = f.enter("h").expect("a probe for the new failover");
        assert!(!f.probe_is_current(first) && f.probe_is_current(second), "the first ends at its next turn");
        f.probe_ended(first);
        assert_eq!(f.enter("h"), None, "the second probe still runs");
        f.probe_ended(second);
        assert!(f.enter("h").is_some_and(|p| p > second));
    }

    /// Two clients of one account. The first finds the vendor back while a trial of the
    /// second, sent before, is still out; its refusal comes after: it does not put the account
    /// back in failover mode (every client would be held there until its next trial).
    #[tokio::test(start_paused = true)]
    async fn a_refusal_older_than_anothers_recovery_does_not_fail_the_account_over_again() {
        let store: Arc<dyn FailoverStore> = Arc::new(InMemoryFailover::default());
        let one = Failover { store: Some(store.clone()), ..Failover::default() };
        let other = Failover { store: Some(store.clone()), ..Failover::default() };
        assert_eq!(one.enter("h"), None);
        assert!(matches!(other.mode("h"), FailoverMode::Secondary { .. }));
        tokio::time::advance(FAILOVER_TRIAL_INTERVAL).await;
        let trial = other.take_trial("h").expect("the other's trial");
        one.recovered("h");
        other.trial_ended("h", trial, false);
        assert_eq!(other.enter("h"), None);
        assert!(!store.is_failed_over(), "the store keeps the newer word");
        assert_eq!((one.mode("h"), other.mode("h")), (FailoverMode::Primary, FailoverMode::Primary));
        // A refusal met in primary mode is news: the account fails over again.
        other.enter("h");
        assert!(store.is_failed_over() && matches!(one.mode("h"), FailoverMode::Secondary { .. }));
    }

    /// A client's view of a store shared by a fleet: answered from a copy, which `refresh`
    /// brings up to date with the store; a write goes to both.
    #[derive(Debug)]
    struct Copied {
        remote: Arc<AtomicBool>,
        copy: AtomicBool,
    }

    impl Copied {
        fn refresh(&self) {
            self.copy.store(self.remote.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    impl FailoverStore for Copied {
        fn is_failed_over(&self) -> bool {
            self.copy.load(Ordering::SeqCst)
        }
        fn set_failed_over(&self, failed_over: bool) {
            self.copy.store(failed_over, Ordering::SeqCst);
            self.remote.store(failed_over, Ordering::SeqCst);
        }
    }

    /// As above, with a store that answers from a copy (as the trait's docs advise a fleet's
    /// does): the late refusal comes before the second client's copy has caught up with the
    /// first's recovery. It is still older news, and is not written.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_older_than_anothers_recovery_is_not_written_through_a_stale_copy() {
        let remote = Arc::new(AtomicBool::new(false));
        let view = || Arc::new(Copied { remote: remote.clone(), copy: AtomicBool::new(false) });
        let (one_view, other_view) = (view(), view());
        let one = Failover { store: Some(one_view.clone()), ..Failover::default() };
        let other = Failover { store: Some(other_view.clone()), ..Failover::default() };
        assert_eq!(other.enter("h"), None);
        one_view.refresh();
        assert!(matches!(one.mode("h"), FailoverMode::Secondary { .. }));
        tokio::time::advance(FAILOVER_TRIAL_INTERVAL).await;
        let trial = other.take_trial("h").expect("the other's trial");
        one.recovered("h");
        // The other's copy still says failed over when its trial's refusal comes.
        other.trial_ended("h", trial, false);
        assert_eq!(other.enter("h"), None);
        assert!(!remote.load(Ordering::SeqCst), "the store keeps the newer word");
        one_view.refresh();
        other_view.refresh();
        assert_eq!((one.mode("h"), other.mode("h")), (FailoverMode::Primary, FailoverMode::Primary));
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
