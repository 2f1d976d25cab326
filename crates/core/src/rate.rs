//! Client-side rate limits per host: N calls per sliding window, applied before sending so
//! that a well-configured client never meets the vendor's own limit.
//!
//! [`RateLimiter`] is what the engine asks for a send slot; [`SlidingWindow`] is the in-memory
//! default a policy's [`rate_limit`](crate::PolicyBuilder::rate_limit) makes. A vendor's limit
//! belongs to the account, not to one process (Marketo's 100 calls per 20 s are shared by every
//! client of the instance): implement the trait over a store the fleet shares and give it to a
//! host with `RetryLayerBuilder::rate_limiter` (redial-tower).
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
//! the limit drops to what the vendor evidently accepted: the calls sent in the last window,
//! less the ones it refused in it (halved instead if that would not lower it). Admission
//! pauses for the wait the decision chose.
//!
//! Each quiet window (one without a throttle) then gives back twice what the one before gave:
//! 1 % of the configured limit, then 2 %, 4 %, and so on. The evidence may be of one window
//! only: a client that starts (or restarts) in a window that another client, or its own
//! earlier run, had nearly spent sees two calls accepted, and has its whole limit back seven
//! quiet windows later, not a hundred. A throttle starts the steps again at 1 %: a limit the
//! vendor keeps enforcing (a client beside it taking a steady share, or a configured limit above
//! the vendor's) is met again by a probe a few calls over it, more the further below it the
//! learned limit had fallen (learned 25 by halving under a ceiling of 50, the steps go 26, 28,
//! 32, 40, 56: six calls over).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A host's send pacing, shared by every request to it.
///
/// The engine reserves a slot before each attempt and sends the attempt at the slot's time; a
/// slot whose request ends first (dropped, refused locally, its service never ready) is given
/// back. The instants are this process's clock as the engine reads it (tokio's, so paused in
/// tests): an implementation over a store shared by a fleet keeps that store in its own clock
/// and answers in offsets from `now`.
///
/// Only `reserve` may wait for a store (it answers a [`Reservation`]); the other methods are
/// called in the request's poll, and one over a store queues its writes. A fleet that shares
/// one limit this way stays within it together; a limiter per process (the default) sees only
/// its own calls, and learns the rest from the vendor's throttling.
///
/// ```
/// use std::time::{Duration, Instant};
/// use redial_core::rate::{RateLimiter, SlidingWindow};
///
/// let limiter: &dyn RateLimiter = &SlidingWindow::new(2, Duration::from_secs(10));
/// let t0 = Instant::now();
/// assert_eq!(limiter.reserve(t0).at(), Some(t0));
/// assert_eq!(limiter.reserve(t0).at(), Some(t0));
/// // The third call waits for the first to leave the window (kept 100 ms longer: sent is
/// // not received).
/// assert_eq!(limiter.reserve(t0).at(), Some(t0 + Duration::from_millis(10_100)));
/// ```
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// A call is asked for at `now`: the instant it may be sent (`now`, or later), reserved
    /// for it, at once or once a store shared by a fleet has answered (see [`Reservation`]).
    fn reserve(&self, now: Instant) -> Reservation;
    /// Give back a slot `reserve` answered `at` that was not used: no call was sent in it,
    /// whether or not its time has come. Called in the request's poll: it must not wait for
    /// a store (one shared by a fleet queues the write).
    fn release(&self, at: Instant);
    /// The vendor throttled a call at `now`: send nothing for `pause`, and lower the limit.
    /// Called in the request's poll: it must not wait for a store (one shared by a fleet
    /// queues the write; the slots other processes hold meanwhile are theirs to give back).
    /// A `reserve` made after it must see it: a store that queues the write sends its next
    /// reservations after it, or the pause does not hold for them.
    fn throttled(&self, now: Instant, pause: Duration);
    /// The calls per window allowed now (for observability): lower than the configured limit
    /// after the vendor throttled.
    fn current_limit(&self) -> u32;
}

/// A send slot, as [`RateLimiter::reserve`] gives it.
///
/// An in-memory limiter answers [`At`](Reservation::At). One over a store a fleet shares
/// (Redis, say: a sorted set of send times and a script that reserves atomically) must ask
/// that store, and answers [`Pending`](Reservation::Pending) with the round trip: the request
/// waits for it without holding its thread, under its deadline. A pending reservation may be
/// dropped before it answers (the request was cancelled, or its deadline came): a slot the
/// store reserved for it is then never used, and never given back with
/// [`release`](RateLimiter::release); the store lets it lapse as a slot sent in.
///
/// ```
/// use std::time::{Duration, Instant};
/// use redial_core::rate::Reservation;
///
/// let now = Instant::now();
/// let asked = Reservation::Pending(Box::pin(async move { now + Duration::from_millis(50) }));
/// assert!(matches!(asked, Reservation::Pending(_)));
/// assert_eq!(Reservation::At(now).at(), Some(now));
/// ```
pub enum Reservation {
    /// The slot's send time.
    At(Instant),
    /// The store is being asked: the slot's send time, once it answers.
    Pending(Pin<Box<dyn Future<Output = Instant> + Send + 'static>>),
}

impl Reservation {
    /// The send time, if it is known now.
    pub fn at(&self) -> Option<Instant> {
        match self {
            Reservation::At(at) => Some(*at),
            Reservation::Pending(_) => None,
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reservation::At(at) => f.debug_tuple("At").field(at).finish(),
            Reservation::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// The in-memory [`RateLimiter`]: `limit` calls in any sliding `window`, learned down when
/// the vendor throttles and given back as the host stays quiet (see the [module](self) docs).
pub struct SlidingWindow {
    log: Mutex<Log>,
}

#[derive(Debug)]
struct Log {
    limit: u32,
    effective: u32,
    window: Duration,
    /// Send times, ascending (some may be reservations in the future).
    sends: VecDeque<Instant>,
    paused_until: Option<Instant>,
    /// When the limit was last lowered, or last given back.
    changed_at: Option<Instant>,
    /// What the next quiet window gives back: 1 % of the limit after a throttle, twice as much
    /// each quiet window after.
    step: u32,
    /// When the vendor refused calls, within the last window (ascending): a burst of refusals
    /// is that many calls the vendor did not accept.
    refusals: VecDeque<Instant>,
}

impl SlidingWindow {
    /// `limit` calls in any `window` (each call kept a tenth of the window longer, at most
    /// 100 ms: sent is not received).
    pub fn new(limit: u32, window: Duration) -> Self {
        SlidingWindow {
            log: Mutex::new(Log {
                limit,
                effective: limit,
                window: window + (window / 10).min(Duration::from_millis(100)),
                // Grown as needed: a policy may name a limit no host reaches (u32::MAX).
                sends: VecDeque::with_capacity((limit as usize).min(1024)),
                paused_until: None,
                changed_at: None,
                step: Log::first_step(limit),
                refusals: VecDeque::new(),
            }),
        }
    }

    /// A call is asked for at `now`: the instant it may be sent, reserved for it. The
    /// in-memory limiter answers at once; [`RateLimiter::reserve`] is this, as
    /// [`Reservation::At`].
    pub fn reserve(&self, now: Instant) -> Instant {
        self.lock().reserve(now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // Plain data, consistent after every statement.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for SlidingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.lock();
        f.debug_struct("SlidingWindow")
            .field("limit", &log.limit)
            .field("effective", &log.effective)
            .field("window", &log.window)
            .field("in_window", &log.sends.len())
            .finish()
    }
}

impl RateLimiter for SlidingWindow {
    fn reserve(&self, now: Instant) -> Reservation {
        Reservation::At(SlidingWindow::reserve(self, now))
    }

    fn release(&self, at: Instant) {
        self.lock().release(at);
    }

    fn throttled(&self, now: Instant, pause: Duration) {
        self.lock().throttled(now, pause);
    }

    fn current_limit(&self) -> u32 {
        self.lock().effective
    }
}

impl Log {
    fn first_step(limit: u32) -> u32 {
        (limit / 100).max(1)
    }

    fn reserve(&mut self, now: Instant) -> Instant {
        // Give back a step for every quiet window since the limit was lowered (all of them,
        // however long the host was idle), each step twice the one before.
        if self.effective < self.limit {
            if let Some(at) = self.changed_at {
                let windows = now.saturating_duration_since(at).as_nanos() / self.window.as_nanos().max(1);
                if windows > 0 {
                    let steps = u32::try_from(windows).unwrap_or(u32::MAX);
                    // 33 doublings of a step of 1 or more pass any u32 limit.
                    for _ in 0..steps.min(33) {
                        self.effective = self.effective.saturating_add(self.step).min(self.limit);
                        self.step = self.step.saturating_mul(2);
                    }
                    // Whole windows only: the part of a window gone since counts towards the next
                    // step, so a host called more often than once a window still gets every step.
                    self.changed_at =
                        Some(at.checked_add(self.window.saturating_mul(steps)).map_or(now, |t| t.min(now)));
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
        while self.refusals.front().is_some_and(|t| *t + self.window <= now) {
            self.refusals.pop_front();
        }
        // At most one per call in the window: a refusal is of a call that was sent.
        if self.refusals.len() < (sent as usize).max(1) {
            self.refusals.push_back(now);
        }
        let refused = self.refusals.len() as u32;
        // Evidence of the vendor's limit: the calls it accepted in the window (all but the ones
        // it refused, this one included).
        let accepted = (sent > refused).then(|| sent - refused).filter(|a| *a < self.effective);
        let lowered = accepted.unwrap_or((self.effective / 2).max(1));
        let recently = self.changed_at.is_some_and(|at| now < at + self.window) && self.effective < self.limit;
        if lowered < self.effective && (!recently || accepted.is_some()) {
            self.effective = lowered;
        }
        // Giving back starts again from its first, smallest step.
        self.step = Self::first_step(self.limit);
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

    fn effective(w: &SlidingWindow) -> u32 {
        w.current_limit()
    }

    #[test]
    fn never_more_than_n_in_any_window() {
        let start = Instant::now();
        let log = SlidingWindow::new(100, 20 * S);
        let slots: Vec<Instant> = (0..1000).map(|_| log.reserve(start)).collect();
        for (i, t) in slots.iter().enumerate() {
            let in_window = slots.iter().filter(|u| **u <= *t && *t < **u + 20 * S).count();
            assert!(in_window <= 100, "slot {i} sees {in_window}");
        }
        // 1,000 calls take 9 full windows after the first burst, each kept 100 ms longer than
        // the vendor's 20 s (sent is not received).
        assert_eq!(*slots.last().unwrap() - start, 9 * (20 * S + Duration::from_millis(100)));
    }

    /// `SlidingWindow::new`: each call is kept a tenth of the window longer, at most 100 ms.
    #[test]
    fn a_call_is_kept_a_tenth_of_the_window_longer_at_most_100_ms() {
        let t0 = Instant::now();
        for (window_ms, kept_ms) in [(500, 550), (1_000, 1_100), (20_000, 20_100), (3_600_000, 3_600_100)] {
            let log = SlidingWindow::new(1, Duration::from_millis(window_ms));
            log.reserve(t0);
            assert_eq!(log.reserve(t0) - t0, Duration::from_millis(kept_ms), "a {window_ms} ms window");
        }
    }

    #[test]
    fn throttled_halves_once_per_window_pauses_and_recovers() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(100, 20 * S);
        // Nothing sent: no evidence of the vendor's limit, so halve (once per window).
        log.throttled(t0, 5 * S);
        log.throttled(t0 + S, 5 * S);
        assert_eq!(effective(&log), 50);
        assert_eq!(log.reserve(t0 + S), t0 + 6 * S);
        let _ = log.reserve(t0 + 22 * S);
        assert_eq!(effective(&log), 51);
    }

    #[test]
    fn throttled_learns_the_vendors_limit_from_what_was_sent() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(200, 20 * S);
        for _ in 0..101 {
            log.reserve(t0);
        }
        log.throttled(t0 + S, 2 * S);
        assert_eq!(effective(&log), 100);
    }

    /// A burst past the vendor's limit is refused call by call: the limit learned is what the
    /// vendor accepted of the burst, not the burst less one refusal.
    #[test]
    fn a_burst_of_refusals_teaches_what_the_vendor_accepted() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(100, 20 * S);
        for _ in 0..20 {
            log.reserve(t0);
        }
        // The vendor took 10 of the 20 and refuses the other 10 as they come back.
        for i in 0..10 {
            log.throttled(t0 + Duration::from_millis(10 * i), 20 * S);
        }
        assert_eq!(effective(&log), 10);
    }

    #[test]
    fn a_released_reservation_is_reused_not_skipped() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(1, 60 * S);
        assert_eq!(log.reserve(t0), t0);
        let slot = log.reserve(t0 + S);
        assert_eq!(slot, t0 + 60 * S + Duration::from_millis(100));
        log.release(slot);
        assert_eq!(log.reserve(t0 + 6 * S), slot, "the next request takes the same slot");
    }

    #[test]
    fn a_slot_whose_time_came_and_went_unused_is_given_back() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(1, 60 * S);
        let unused = log.reserve(t0);
        assert_eq!(unused, t0);
        // Its request did not go (its service was not ready); the next one may go at once.
        log.release(unused);
        assert_eq!(log.reserve(t0 + 5 * S), t0 + 5 * S);
    }

    #[test]
    fn each_quiet_window_gives_back_twice_what_the_one_before_gave() {
        let t0 = Instant::now();
        let window = 20 * S + Duration::from_millis(100); // the vendor's 20 s, kept 100 ms longer
        let log = SlidingWindow::new(100, 20 * S);
        log.throttled(t0, Duration::ZERO);
        assert_eq!(effective(&log), 50);
        // 1, 2, 4 and 8 % of the limit in four quiet windows, then one call.
        let _ = log.reserve(t0 + 4 * window);
        assert_eq!(effective(&log), 65);
        // 16 % the next window, then back in full, and no further.
        let _ = log.reserve(t0 + 5 * window);
        assert_eq!(effective(&log), 81);
        let _ = log.reserve(t0 + 6 * window);
        assert_eq!(effective(&log), 100);
        let _ = log.reserve(t0 + 12 * 3600 * S);
        assert_eq!(effective(&log), 100);
    }

    /// The steps are of the host's own limit: 1 % of 1,000 is 10 calls, then 20, 40.
    #[test]
    fn the_first_step_is_one_percent_of_the_limit() {
        let t0 = Instant::now();
        let window = 20 * S + Duration::from_millis(100);
        let log = SlidingWindow::new(1000, 20 * S);
        log.throttled(t0, Duration::ZERO);
        assert_eq!(effective(&log), 500);
        let _ = log.reserve(t0 + window);
        assert_eq!(effective(&log), 510);
        let _ = log.reserve(t0 + 3 * window);
        assert_eq!(effective(&log), 570);
        // Under 100, a step is still one call.
        let log = SlidingWindow::new(10, 20 * S);
        log.throttled(t0, Duration::ZERO);
        let _ = log.reserve(t0 + window);
        assert_eq!(effective(&log), 6);
    }

    /// A throttle starts the giving back again from its first step: a limit the vendor keeps
    /// enforcing is probed 1 % at a time.
    #[test]
    fn a_throttle_starts_the_steps_again_from_one_percent() {
        let t0 = Instant::now();
        let window = 20 * S + Duration::from_millis(100);
        let log = SlidingWindow::new(100, 20 * S);
        log.throttled(t0, Duration::ZERO);
        let _ = log.reserve(t0 + 3 * window);
        assert_eq!(effective(&log), 57);
        // A throttle with no evidence a window after the last change halves it; then the
        // first quiet window after gives back 1 %, not the 8 % that was next.
        let again = t0 + 4 * window;
        log.throttled(again, Duration::ZERO);
        assert_eq!(effective(&log), 28);
        let _ = log.reserve(again + window);
        assert_eq!(effective(&log), 29);
    }

    /// The module's case: a client that starts in a window another had nearly spent sees two
    /// of its calls accepted, and has Marketo's whole 100 back seven quiet windows later (2,
    /// then 3, 5, 9, 17, 33, 65, 100), not after the hundred a step of 1 % would take.
    #[test]
    fn a_limit_learned_as_two_is_back_in_full_seven_quiet_windows_later() {
        let t0 = Instant::now();
        let window = 20 * S + Duration::from_millis(100);
        let log = SlidingWindow::new(100, 20 * S);
        for _ in 0..3 {
            log.reserve(t0);
        }
        // Three sent, the third refused: the vendor accepted two.
        log.throttled(t0, Duration::ZERO);
        assert_eq!(effective(&log), 2);
        let mut seen = Vec::new();
        for n in 1..=8 {
            let _ = log.reserve(t0 + window * n);
            seen.push(effective(&log));
        }
        assert_eq!(seen, [3, 5, 9, 17, 33, 65, 100, 100]);
    }

    /// Quiet is without throttles, not without calls. A host called every 0.6 window gets a
    /// step back for each window as an idle one does: four windows, four steps.
    #[test]
    fn a_busy_host_gets_its_steps_back_for_every_window_too() {
        let t0 = Instant::now();
        let window = 20 * S + Duration::from_millis(100);
        let log = SlidingWindow::new(100, 20 * S);
        log.throttled(t0, Duration::ZERO);
        assert_eq!(effective(&log), 50);
        for i in 1..=7 {
            let _ = log.reserve(t0 + window * 3 * i / 5);
        }
        // 4.2 windows: 1 + 2 + 4 + 8.
        assert_eq!(effective(&log), 65);
    }

    /// A limit as large as a u32 is given back without overflow, however long the host idles.
    #[test]
    fn the_steps_never_overflow() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(u32::MAX, S);
        log.throttled(t0, Duration::ZERO);
        let _ = log.reserve(t0 + 100_000 * S);
        assert_eq!(effective(&log), u32::MAX);
    }

    /// The evidence is the calls *sent* in the window: reservations still waiting were not.
    #[test]
    fn only_calls_already_sent_are_evidence() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(10, 20 * S);
        for _ in 0..15 {
            log.reserve(t0); // 10 now, 5 a window later
        }
        log.throttled(t0 + S, Duration::ZERO);
        assert_eq!(effective(&log), 9);
    }

    /// A call sent a whole window ago has left it: no evidence, so the limit is halved.
    #[test]
    fn a_call_sent_a_window_ago_is_no_evidence() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(20, 20 * S);
        for _ in 0..10 {
            log.reserve(t0);
        }
        log.throttled(t0 + 20 * S + Duration::from_millis(100), Duration::ZERO);
        assert_eq!(effective(&log), 10);
    }

    /// "At most one per call in the window": with nothing sent, two refusals count as one.
    #[test]
    fn refusals_count_at_most_one_per_call_sent() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(100, 20 * S);
        log.throttled(t0, Duration::ZERO);
        log.throttled(t0, Duration::ZERO);
        assert_eq!(effective(&log), 50);
        for _ in 0..10 {
            log.reserve(t0 + S);
        }
        // 10 sent, 2 refusals counted (this one and one of the two before).
        log.throttled(t0 + 2 * S, Duration::ZERO);
        assert_eq!(effective(&log), 8);
    }

    /// A vendor that refuses every call sent leaves the limit at one call a window, never none.
    #[test]
    fn refusing_every_call_never_drives_the_limit_to_zero() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(100, 20 * S);
        log.reserve(t0);
        log.reserve(t0);
        log.throttled(t0 + S, Duration::ZERO);
        log.throttled(t0 + S, Duration::ZERO);
        assert_eq!(effective(&log), 1);
        assert_eq!(log.reserve(t0 + 2 * S), t0 + 20 * S + Duration::from_millis(100));
    }

    /// Halving is once per window of the last change: a whole window later it halves again,
    /// and a limit given back in full halves at the next throttle without evidence.
    #[test]
    fn throttled_halves_again_a_window_later_or_once_the_limit_is_back() {
        let t0 = Instant::now();
        let window = 20 * S + Duration::from_millis(100);
        let log = SlidingWindow::new(100, 20 * S);
        log.throttled(t0, Duration::ZERO);
        log.throttled(t0 + window, Duration::ZERO);
        assert_eq!(effective(&log), 25);

        let log = SlidingWindow::new(100, 20 * S);
        log.throttled(t0, Duration::ZERO);
        let night = t0 + 12 * 3600 * S;
        let _ = log.reserve(night);
        assert_eq!(effective(&log), 100);
        log.throttled(night + S, Duration::ZERO);
        assert_eq!(effective(&log), 50);
    }

    /// A pause too long for the clock (a `Retry-After` of u64::MAX seconds) holds sends for a
    /// year.
    #[test]
    fn a_pause_too_long_for_the_clock_is_a_year() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(100, 20 * S);
        log.throttled(t0, Duration::MAX);
        assert_eq!(log.reserve(t0 + S), t0 + 365 * 24 * 3600 * S);
    }

    #[test]
    fn a_limit_no_host_reaches_costs_nothing_up_front_and_never_overflows() {
        let t0 = Instant::now();
        let log = SlidingWindow::new(u32::MAX, 20 * S);
        assert!(log.lock().sends.capacity() <= 1024);
        log.throttled(t0, Duration::ZERO);
        let _ = log.reserve(t0 + 365 * 24 * 3600 * S);
        assert_eq!(effective(&log), u32::MAX);
    }

    #[test]
    fn debug_shows_the_limits_not_the_log() {
        let log = SlidingWindow::new(100, 20 * S);
        let _ = log.reserve(Instant::now());
        let shown = format!("{log:?}");
        assert!(shown.contains("limit: 100") && shown.contains("in_window: 1"), "{shown}");
    }
}
