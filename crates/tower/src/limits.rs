//! Client-side limits per host, shared by every clone of the service: a rate limit (N calls per
//! sliding window) and a concurrency limit, applied before sending so that a well-configured
//! client never meets the vendor's own limit.
//!
//! The rate limit is a [`RateLimiter`] (the in-memory [`SlidingWindow`] unless the user gave
//! one: see `redial_core::rate` for how it paces, learns and recovers); the concurrency limit
//! is a tokio semaphore, below.
//!
//! # Reacting to a concurrency refusal
//!
//! When the vendor refuses a call for having too many in flight, the host's limit drops to the
//! calls it was serving alongside (halved if that would not lower it), and grows back by one
//! for each quiet [`CONCURRENCY_RECOVERY`].

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial_core::rate::{RateLimiter, Reservation, SlidingWindow};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) rate: Option<Arc<dyn RateLimiter>>,
    pub(crate) concurrency: Option<Concurrency>,
    /// Bumped by every throttle: a slot reserved before it was reserved under a rate (and
    /// without a pause) that no longer holds.
    generation: AtomicU64,
}

impl Limits {
    pub(crate) fn new(rate: Option<(u32, Duration)>, concurrency: Option<u32>) -> Self {
        Limits {
            rate: rate.map(|(n, window)| Arc::new(SlidingWindow::new(n, window)) as Arc<dyn RateLimiter>),
            concurrency: concurrency.map(Concurrency::new),
            generation: AtomicU64::new(0),
        }
    }

    /// Reserve a send slot: when the next call may go (or the store's answer to come), the
    /// time it was asked (the clock is read only for a host with a rate limit), and the
    /// throttle generation it was reserved under.
    pub(crate) fn reserve(&self) -> Option<(Reservation, Instant, u64)> {
        self.rate.as_ref().map(|rate| {
            let now = Instant::now();
            let generation = self.generation.load(Ordering::Acquire);
            (rate.reserve(now.into_std()), now, generation)
        })
    }

    /// Whether the vendor throttled since a slot was reserved under `generation`: the slot
    /// must be given back and reserved again, under the pause and the lowered limit.
    pub(crate) fn throttled_since(&self, generation: u64) -> bool {
        self.rate.is_some() && self.generation.load(Ordering::Acquire) != generation
    }

    /// Give back a reserved slot that was not used (its request was dropped or refused, or its
    /// service was not ready): whether or not its time has come, no call was sent in it.
    pub(crate) fn release(&self, at: Instant) {
        if let Some(rate) = &self.rate {
            rate.release(at.into_std());
        }
    }

    /// The vendor throttled a call: slow the host down.
    pub(crate) fn throttled(&self, now: Instant, pause: Duration) {
        if let Some(rate) = &self.rate {
            let before = rate.current_limit();
            rate.throttled(now.into_std(), pause);
            self.generation.fetch_add(1, Ordering::AcqRel);
            let after = rate.current_limit();
            if after < before {
                tracing::info!(was_allowed = before, now_allowed = after, "vendor throttled: host rate limit lowered");
            }
        }
    }

    /// The effective rate limit now (for observability).
    pub(crate) fn effective_rate(&self) -> Option<u32> {
        self.rate.as_ref().map(|rate| rate.current_limit())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data, consistent after every statement.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the calls in flight must go without a concurrency refusal before the limit grows
/// back by one **\[I\]**.
pub(crate) const CONCURRENCY_RECOVERY: Duration = Duration::from_secs(10);

/// The host's concurrency limit: a semaphore of permits, one per call in flight. When the
/// vendor refuses a call for having too many in flight (Marketo 615: ten per instance, shared
/// with its other clients), the limit drops to the calls it was serving alongside (halved, if
/// that would not lower it), and grows back by one for each quiet [`CONCURRENCY_RECOVERY`].
#[derive(Debug)]
pub(crate) struct Concurrency {
    semaphore: Arc<Semaphore>,
    limit: u32,
    /// Whether the limit is below `limit` now: the one check on the path of every call.
    lowered: AtomicBool,
    /// Calls holding a permit that are at the vendor (sent, not yet answered): a permit held by
    /// a request still waiting (for a rate slot, a login) is no call the vendor is serving.
    sent: AtomicU32,
    state: Mutex<Lowered>,
}

#[derive(Debug)]
struct Lowered {
    effective: u32,
    /// Permits to take out of circulation as their calls end (they were held when the limit
    /// dropped).
    debt: u32,
    changed_at: Instant,
}

impl Concurrency {
    fn new(limit: u32) -> Self {
        Concurrency {
            semaphore: Arc::new(Semaphore::new(limit as usize)),
            limit,
            lowered: AtomicBool::new(false),
            sent: AtomicU32::new(0),
            state: Mutex::new(Lowered { effective: limit, debt: 0, changed_at: Instant::now() }),
        }
    }

    /// The semaphore to take a permit from, after giving back one permit if the limit was
    /// lowered and has been quiet since.
    pub(crate) fn semaphore(&self) -> &Arc<Semaphore> {
        if self.lowered.load(Ordering::Acquire) {
            let now = Instant::now();
            let mut st = lock(&self.state);
            // One permit back for every quiet interval since the last change (all of them,
            // however long the host was idle).
            let quiet = now.saturating_duration_since(st.changed_at).as_nanos() / CONCURRENCY_RECOVERY.as_nanos();
            let steps = u32::try_from(quiet).unwrap_or(u32::MAX).min(self.limit - st.effective);
            if steps > 0 {
                st.effective += steps;
                let paid = steps.min(st.debt);
                st.debt -= paid;
                self.semaphore.add_permits((steps - paid) as usize);
                st.changed_at = now;
                self.lowered.store(st.effective < self.limit, Ordering::Release);
            }
        }
        &self.semaphore
    }

    /// A permit about to be used for a send, while the limit is lowered and permits still owe
    /// the debt: it pays the debt instead (`None`), and its request waits for another. A
    /// request that held its permit from before the limit dropped (waiting for a rate slot, a
    /// login) is not sent over the lowered limit.
    pub(crate) fn keep_for_send(&self, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        if !self.lowered.load(Ordering::Acquire) {
            return Some(permit);
        }
        let mut st = lock(&self.state);
        if st.debt > 0 {
            st.debt -= 1;
            permit.forget();
            None
        } else {
            Some(permit)
        }
    }

    /// A call holding a permit is sent.
    pub(crate) fn sending(&self) {
        self.sent.fetch_add(1, Ordering::AcqRel);
    }

    /// A call's permit back, at the end of its attempt (`sent`: whether the call went): out of
    /// circulation if the limit dropped while it was held.
    pub(crate) fn release(&self, permit: OwnedSemaphorePermit, sent: bool) {
        if sent {
            self.sent.fetch_sub(1, Ordering::AcqRel);
        }
        if self.lowered.load(Ordering::Acquire) {
            Self::give_back(&mut lock(&self.state), permit);
            return;
        }
        drop(permit);
        // `throttled` may have lowered the limit meanwhile, counting this permit as one still
        // held (a debt): then it is paid from the free permits. Both sides fence, so that
        // either `throttled` takes the permit as a free one or this call sees the flag.
        fence(Ordering::SeqCst);
        if self.lowered.load(Ordering::Relaxed) {
            let mut st = lock(&self.state);
            if st.debt > 0 && self.semaphore.forget_permits(1) == 1 {
                st.debt -= 1;
            }
        }
    }

    fn give_back(st: &mut Lowered, permit: OwnedSemaphorePermit) {
        if st.debt > 0 {
            st.debt -= 1;
            permit.forget();
        }
    }

    /// The vendor refused a call (sent, holding `permit`) for having too many in flight.
    pub(crate) fn throttled(&self, now: Instant, permit: OwnedSemaphorePermit) {
        // Evidence of the vendor's limit for this client: the calls it was serving alongside
        // (sent and not yet answered), not the permits held by calls still waiting to go.
        let others = self.sent.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        let mut st = lock(&self.state);
        let accepted = (1..st.effective).contains(&others).then_some(others);
        let lowered = accepted.unwrap_or((st.effective / 2).max(1));
        st.changed_at = now;
        if lowered < st.effective {
            // Flagged first: a permit given back from now on pays the debt (see `release`).
            self.lowered.store(true, Ordering::Release);
            fence(Ordering::SeqCst);
            // The refused call's permit leaves circulation first, then free ones, then the rest
            // as their calls end.
            permit.forget();
            let cut = st.effective - lowered - 1;
            let taken = self.semaphore.forget_permits(cut as usize) as u32;
            st.debt += cut - taken;
            st.effective = lowered;
            tracing::info!(limit = self.limit, now_allowed = lowered, "vendor refused concurrency: host limit lowered");
        } else {
            Self::give_back(&mut st, permit);
        }
    }

    /// The permits free now.
    pub(crate) fn available_permits(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// The limit in force now.
    pub(crate) fn effective(&self) -> u32 {
        lock(&self.state).effective
    }
}

#[cfg(test)]
mod concurrency_tests {
    use super::*;

    /// A permit for a call that is sent at once.
    fn sent(c: &Concurrency) -> OwnedSemaphorePermit {
        let p = c.semaphore().clone().try_acquire_owned().unwrap();
        c.sending();
        p
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_lowers_the_limit_to_the_calls_in_flight_and_quiet_gives_it_back() {
        let c = Concurrency::new(10);
        // Four calls in flight, a fifth refused.
        let held: Vec<_> = (0..4).map(|_| sent(&c)).collect();
        let refused = sent(&c);
        c.throttled(Instant::now(), refused);
        assert_eq!(c.effective(), 4, "the vendor served four alongside");
        assert_eq!(c.available_permits(), 0, "no fifth call goes while four are in flight");
        // The four end: their permits return to a limit of four.
        for p in held {
            c.release(p, true);
        }
        assert_eq!(c.available_permits(), 4);
        // Each quiet interval gives one back, up to the configured limit.
        tokio::time::advance(CONCURRENCY_RECOVERY).await;
        c.semaphore();
        assert_eq!((c.effective(), c.available_permits()), (5, 5));
        for _ in 0..10 {
            tokio::time::advance(CONCURRENCY_RECOVERY).await;
            c.semaphore();
        }
        assert_eq!((c.effective(), c.available_permits()), (10, 10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_with_nothing_else_in_flight_halves_the_limit() {
        let c = Concurrency::new(10);
        let refuse = |c: &Concurrency| c.throttled(Instant::now(), sent(c));
        refuse(&c);
        assert_eq!((c.effective(), c.available_permits()), (5, 5));
        for _ in 0..3 {
            refuse(&c);
        }
        assert_eq!((c.effective(), c.available_permits()), (1, 1), "never below one");
        refuse(&c);
        assert_eq!((c.effective(), c.available_permits()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_refused_calls_permit_is_not_counted_as_one_the_vendor_served() {
        let c = Concurrency::new(3);
        let a = sent(&c);
        let refused = sent(&c);
        let _b = sent(&c);
        // A call waits for a permit: the refused call's must not pass to it.
        let waiting = tokio::spawn(c.semaphore().clone().acquire_owned());
        tokio::task::yield_now().await;
        c.throttled(Instant::now(), refused);
        assert_eq!(c.effective(), 2, "two were served alongside");
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "two in flight, a limit of two: the waiting call waits");
        c.release(a, true);
        assert!(waiting.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn calls_still_waiting_to_go_are_not_counted_as_served() {
        let c = Concurrency::new(4);
        // One call at the vendor, two holding permits while they wait for a rate slot.
        let at_vendor = sent(&c);
        let _waiting: Vec<_> = (0..2).map(|_| c.semaphore().clone().try_acquire_owned().unwrap()).collect();
        c.throttled(Instant::now(), sent(&c));
        assert_eq!(c.effective(), 1, "the vendor served one alongside");
        c.release(at_vendor, true);
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_concurrency_limit_comes_back_one_for_every_quiet_interval() {
        let c = Concurrency::new(8);
        let refused = c.semaphore().clone().try_acquire_owned().unwrap();
        c.sending();
        c.throttled(Instant::now(), refused);
        assert_eq!(c.effective(), 4);
        tokio::time::advance(3 * CONCURRENCY_RECOVERY).await;
        let _ = c.semaphore();
        assert_eq!((c.effective(), c.available_permits()), (7, 7));
        tokio::time::advance(60 * CONCURRENCY_RECOVERY).await;
        let _ = c.semaphore();
        assert_eq!((c.effective(), c.available_permits()), (8, 8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permit_held_from_before_the_limit_dropped_pays_the_debt_instead_of_going() {
        let c = Concurrency::new(4);
        let at_vendor = c.semaphore().clone().try_acquire_owned().unwrap();
        c.sending();
        let refused = c.semaphore().clone().try_acquire_owned().unwrap();
        c.sending();
        // Two more hold permits while they wait for a rate slot: not yet sent.
        let waiting: Vec<_> = (0..2).map(|_| c.semaphore().clone().try_acquire_owned().unwrap()).collect();
        c.throttled(Instant::now(), refused);
        assert_eq!(c.effective(), 1, "the vendor served one alongside");
        let mut kept = waiting.into_iter().filter_map(|p| c.keep_for_send(p)).collect::<Vec<_>>();
        assert!(kept.is_empty(), "one call is at the vendor, the limit is one: neither waiting call goes");
        c.release(at_vendor, true);
        let next = c.semaphore().clone().try_acquire_owned().expect("the permit the call at the vendor gave back");
        kept.extend(c.keep_for_send(next));
        assert_eq!(kept.len(), 1);
    }
}
