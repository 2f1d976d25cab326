//! Client-side limits per host, shared by every clone of the service: a rate limit (N calls per
//! sliding window) and a concurrency limit, applied before sending so that a well-configured
//! client never meets the vendor's own limit.
//!
//! # Why a sliding log and not a token bucket
//!
//! A vendor like Marketo counts calls in a *sliding* window: 100 in any 20 s. A token bucket
//! (or GCRA) with a burst of 100 lets 100 go at once and then refills, so it admits up to 199
//! calls in some 20 s span. The sliding log admits a call only when the call `N` places back
//! left at least a window ago, which is exactly the vendor's rule. Each waiting request
//! *reserves* its own slot, so waiters do not stampede when a slot frees.
//!
//! # Sent is not received
//!
//! The log spaces call `k + N` a window after call `k` was *sent*, but the vendor counts calls
//! when they *arrive*: a first call slowed by its connection's handshake lands later than the
//! call a window after it, and the vendor sees `N + 1` in its window. The log therefore keeps
//! each call a little longer than the window: a tenth of it, at most 100 ms.
//!
//! # Reacting to a throttled answer
//!
//! If the vendor throttles anyway (the limit is shared with other clients, or misconfigured),
//! the host's limit drops to what the vendor evidently accepted: the calls sent in the last
//! window, less the refused one (halved instead if that would not lower it). Admission pauses
//! for the wait the decision chose, and each quiet window gives back 1 % of the configured
//! limit: additive increase, multiplicative decrease, around a learned ceiling.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) rate: Option<Mutex<SlidingLog>>,
    pub(crate) concurrency: Option<Concurrency>,
    /// Bumped by every throttle: a slot reserved before it was reserved under a rate (and
    /// without a pause) that no longer holds.
    generation: AtomicU64,
}

impl Limits {
    pub(crate) fn new(rate: Option<(u32, Duration)>, concurrency: Option<u32>) -> Self {
        Limits {
            rate: rate.map(|(n, window)| Mutex::new(SlidingLog::new(n, window))),
            concurrency: concurrency.map(Concurrency::new),
            generation: AtomicU64::new(0),
        }
    }

    /// Reserve a send slot: the instant the next call may go, the time it was asked (the
    /// clock is read only for a host with a rate limit), and the throttle generation it was
    /// reserved under.
    pub(crate) fn reserve(&self) -> Option<(Instant, Instant, u64)> {
        self.rate.as_ref().map(|log| {
            let now = Instant::now();
            let mut log = lock(log);
            let at = log.reserve(now);
            (at, now, self.generation.load(Ordering::Acquire))
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
        if let Some(log) = &self.rate {
            lock(log).release(at);
        }
    }

    /// The vendor throttled a call: slow the host down.
    pub(crate) fn throttled(&self, now: Instant, pause: Duration) {
        if let Some(log) = &self.rate {
            let mut log = lock(log);
            log.throttled(now, pause);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The effective rate limit now (for observability).
    pub(crate) fn effective_rate(&self) -> Option<u32> {
        self.rate.as_ref().map(|log| lock(log).effective)
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

#[derive(Debug)]
pub(crate) struct SlidingLog {
    limit: u32,
    effective: u32,
    window: Duration,
    /// Send times, ascending (some may be reservations in the future).
    sends: VecDeque<Instant>,
    paused_until: Option<Instant>,
    /// When the limit was last lowered, or last given back.
    changed_at: Option<Instant>,
}

impl SlidingLog {
    fn new(limit: u32, window: Duration) -> Self {
        SlidingLog {
            limit,
            effective: limit,
            window: window + (window / 10).min(Duration::from_millis(100)),
            // Grown as needed: a policy may name a limit no host reaches (u32::MAX).
            sends: VecDeque::with_capacity((limit as usize).min(1024)),
            paused_until: None,
            changed_at: None,
        }
    }

    fn reserve(&mut self, now: Instant) -> Instant {
        // Give back 1 % of the limit for every quiet window since it was lowered (all of them,
        // however long the host was idle).
        if self.effective < self.limit {
            if let Some(at) = self.changed_at {
                let windows = now.saturating_duration_since(at).as_nanos() / self.window.as_nanos().max(1);
                if windows > 0 {
                    let steps = u32::try_from(windows).unwrap_or(u32::MAX);
                    let step = (self.limit / 100).max(1);
                    self.effective = self.effective.saturating_add(step.saturating_mul(steps)).min(self.limit);
                    self.changed_at = Some(now);
                }
            }
        }
        while self.sends.front().is_some_and(|t| *t + self.window <= now) {
            self.sends.pop_front();
        }
        let mut at = now.max(self.paused_until.unwrap_or(now));
        let n = self.effective as usize;
        if self.sends.len() >= n {
            at = at.max(self.sends[self.sends.len() - n] + self.window);
        }
        if let Some(last) = self.sends.back() {
            at = at.max(*last);
        }
        // Sends older than the window were dropped above; what is left is this window's sends
        // and the reservations of requests waiting now, all needed if one is given back.
        self.sends.push_back(at);
        at
    }

    fn release(&mut self, at: Instant) {
        // Reservations at the same instant are alike: any one of them goes.
        if let Some(i) = self.sends.iter().rposition(|t| *t == at) {
            self.sends.remove(i);
        }
    }

    fn throttled(&mut self, now: Instant, pause: Duration) {
        let sent = self.sends.iter().filter(|t| **t <= now && now < **t + self.window).count() as u32;
        // Evidence of the vendor's limit: the calls it accepted in the window (all but this one).
        let accepted = (sent > 1).then(|| sent - 1).filter(|a| *a < self.effective);
        let lowered = accepted.unwrap_or((self.effective / 2).max(1));
        let recently = self.changed_at.is_some_and(|at| now < at + self.window) && self.effective < self.limit;
        if lowered < self.effective && (!recently || accepted.is_some()) {
            self.effective = lowered;
            tracing::info!(
                limit = self.limit,
                now_allowed = self.effective,
                "vendor throttled: host rate limit lowered"
            );
        }
        self.changed_at = Some(now);
        // Saturating: a hint can be as long as u64::MAX seconds.
        let until = now.checked_add(pause).unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn never_more_than_n_in_any_window() {
        let start = Instant::now();
        let mut log = SlidingLog::new(100, 20 * S);
        let slots: Vec<Instant> = (0..1000).map(|_| log.reserve(start)).collect();
        for (i, t) in slots.iter().enumerate() {
            let in_window = slots.iter().filter(|u| **u <= *t && *t < **u + 20 * S).count();
            assert!(in_window <= 100, "slot {i} sees {in_window}");
        }
        // 1,000 calls take 9 full windows after the first burst, each kept 100 ms longer than
        // the vendor's 20 s (sent is not received).
        assert_eq!(*slots.last().unwrap() - start, 9 * (20 * S + Duration::from_millis(100)));
    }

    #[test]
    fn throttled_halves_once_per_window_pauses_and_recovers() {
        let t0 = Instant::now();
        let mut log = SlidingLog::new(100, 20 * S);
        // Nothing sent: no evidence of the vendor's limit, so halve (once per window).
        log.throttled(t0, 5 * S);
        log.throttled(t0 + S, 5 * S);
        assert_eq!(log.effective, 50);
        assert_eq!(log.reserve(t0 + S), t0 + 6 * S);
        let _ = log.reserve(t0 + 22 * S);
        assert_eq!(log.effective, 51);
    }

    #[test]
    fn throttled_learns_the_vendors_limit_from_what_was_sent() {
        let t0 = Instant::now();
        let mut log = SlidingLog::new(200, 20 * S);
        for _ in 0..101 {
            log.reserve(t0);
        }
        log.throttled(t0 + S, 2 * S);
        assert_eq!(log.effective, 100);
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
mod release_tests {
    use super::*;

    #[test]
    fn a_released_reservation_is_reused_not_skipped() {
        let s = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut log = SlidingLog::new(1, 60 * s);
        assert_eq!(log.reserve(t0), t0);
        let slot = log.reserve(t0 + s);
        assert_eq!(slot, t0 + 60 * s + Duration::from_millis(100));
        log.release(slot);
        assert_eq!(log.reserve(t0 + 6 * s), slot, "the next request takes the same slot");
    }

    #[test]
    fn a_slot_whose_time_came_and_went_unused_is_given_back() {
        let s = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut log = SlidingLog::new(1, 60 * s);
        let unused = log.reserve(t0);
        assert_eq!(unused, t0);
        // Its request did not go (its service was not ready); the next one may go at once.
        log.release(unused);
        assert_eq!(log.reserve(t0 + 5 * s), t0 + 5 * s);
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_rate_limit_comes_back_one_percent_for_every_quiet_window() {
        let t0 = Instant::now();
        let mut log = SlidingLog::new(100, 20 * S);
        log.throttled(t0, Duration::ZERO);
        assert_eq!(log.effective, 50);
        // Ten quiet windows (each kept 100 ms longer than the vendor's 20 s), then one call.
        let _ = log.reserve(t0 + 10 * (20 * S + Duration::from_millis(100)));
        assert_eq!(log.effective, 60);
        // A quiet night: all the way back, and no further.
        let _ = log.reserve(t0 + 12 * 3600 * S);
        assert_eq!(log.effective, 100);
    }

    #[test]
    fn a_limit_no_host_reaches_costs_nothing_up_front_and_never_overflows() {
        let t0 = Instant::now();
        let mut log = SlidingLog::new(u32::MAX, 20 * S);
        assert!(log.sends.capacity() <= 1024);
        log.throttled(t0, Duration::ZERO);
        let _ = log.reserve(t0 + 365 * 24 * 3600 * S);
        assert_eq!(log.effective, u32::MAX);
    }

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
