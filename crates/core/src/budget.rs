//! Retry budgets: a host that fails cannot multiply its load.
//!
//! # Why budgets and not only max attempts?
//!
//! With `max_attempts = 3`, a host that fails every request receives three times its normal
//! traffic exactly when it can least take it. A budget caps retries as a *fraction* of recent
//! requests, shared by every request to the host: each request deposits `ratio` of a retry,
//! each retry withdraws one, and deposits expire after `ttl`. A small reserve
//! (`min_per_sec × ttl`) lets a quiet host still retry the odd failure. This is the scheme of
//! Finagle's `RetryBudget` and tower's `TpsBudget`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Shared per-host retry accounting. Implement it to keep the budget elsewhere (a store shared
/// by a fleet) and give it to a host with `RetryLayerBuilder::retry_budget` (redial-tower);
/// [`RatioBudget`] is the in-memory default.
///
/// Both methods are called in the request's poll (`withdraw` by the pure decision): neither
/// may wait for a store. `now` is the engine's clock (tokio's, paused in tests); a store a
/// fleet shares keeps its own. A budget is a bound against retry storms, not a count, and a
/// fleet's is best kept as a lease: each process spends retries from a local balance that a
/// background task tops up from the store's (and adds its deposits to it in batches), so the
/// fleet stays within the budget to a lease's size. While the store cannot be reached, a
/// process spends what its lease holds and no more: a budget that allowed every retry then
/// would be none at all.
pub trait RetryBudget: Send + Sync + fmt::Debug {
    /// A logical request started at `now`.
    fn deposit(&self, now: Instant);
    /// A retry is wanted at `now`; `true` if the budget allows it (and it has been withdrawn).
    fn withdraw(&self, now: Instant) -> bool;
}

/// The shape of a [`RatioBudget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    ratio: f32,
    min_per_sec: u32,
    ttl: Duration,
}

impl Default for BudgetConfig {
    /// 20 % of requests may be retried, plus 10 retries a second, over a 10 s window.
    fn default() -> Self {
        BudgetConfig { ratio: 0.2, min_per_sec: 10, ttl: Duration::from_secs(10) }
    }
}

impl BudgetConfig {
    /// `ratio` retries per request (0.2 = 20 %, at most 1000), a reserve of `min_per_sec`
    /// retries a second, deposits kept for `ttl` (1 s to 60 s).
    ///
    /// # Panics
    /// If a value is out of range; these are programming errors in a static configuration.
    pub fn new(ratio: f32, min_per_sec: u32, ttl: Duration) -> Self {
        assert!(ratio.is_finite() && (0.0..=1000.0).contains(&ratio), "ratio must be in 0..=1000");
        assert!(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl),
            "ttl must be between 1 and 60 seconds"
        );
        BudgetConfig { ratio, min_per_sec, ttl }
    }

    /// Retries allowed per request.
    pub fn ratio(&self) -> f32 {
        self.ratio
    }
    /// Retries a second allowed regardless of traffic.
    pub fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }
    /// How long a deposit counts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

const SLOTS: usize = 10;
/// Fixed-point unit: one retry.
const UNIT: i64 = 1000;

/// A sliding-window ratio budget (see the [module docs](self)).
///
/// Deposits are one atomic add on the success path; the window's slots are summed only when a
/// retry is wanted.
///
/// ```
/// use std::time::{Duration, Instant};
/// use redial_core::budget::{BudgetConfig, RatioBudget, RetryBudget};
/// let budget = RatioBudget::new(BudgetConfig::new(0.2, 0, Duration::from_secs(10)));
/// let now = Instant::now();
/// for _ in 0..5 { budget.deposit(now); }
/// assert!(budget.withdraw(now));   // 5 requests × 20 % = one retry
/// assert!(!budget.withdraw(now));
/// ```
#[derive(Debug)]
pub struct RatioBudget {
    deposit: i64,
    reserve: i64,
    slot_nanos: u64,
    origin: OnceLock<Instant>,
    /// Per slot, in one word so that a slot moves to a new epoch and takes a deposit in one
    /// step: the epoch (slot index since `origin`, wrapping at 2³²) in the high half, the net
    /// balance (deposits − withdrawals, thousandths of a retry, saturating) in the low half.
    slots: [AtomicU64; SLOTS],
    /// Serialises withdrawals, so two retries cannot both spend the last unit.
    withdrawing: Mutex<()>,
}

impl RatioBudget {
    /// A budget with the given shape.
    pub fn new(config: BudgetConfig) -> Self {
        let ttl_secs = config.ttl.as_secs_f64();
        RatioBudget {
            deposit: (f64::from(config.ratio) * UNIT as f64).round() as i64,
            reserve: (f64::from(config.min_per_sec) * ttl_secs * UNIT as f64).round() as i64,
            slot_nanos: u64::try_from((config.ttl / SLOTS as u32).as_nanos()).unwrap_or(u64::MAX).max(1),
            origin: OnceLock::new(),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            withdrawing: Mutex::new(()),
        }
    }

    fn epoch(&self, now: Instant) -> u32 {
        let origin = *self.origin.get_or_init(|| now);
        let since = now.saturating_duration_since(origin);
        // Wrapping: epochs are compared by their difference, which stays small.
        ((since.as_secs() * 1_000_000_000 + u64::from(since.subsec_nanos())) / self.slot_nanos) as u32
    }

    /// Add `delta` to `epoch`'s slot, emptying it first if it still holds an older epoch (its
    /// deposits have expired), in one compare-and-swap: a deposit or a withdrawal that lands
    /// while another thread moves the slot on is never lost, nor spent from the old epoch.
    ///
    /// A slot saturates (it holds thousandths of a retry in 32 bits): whether the whole delta
    /// was counted. A withdrawal that could not be is refused, so saturation never lets a
    /// retry through uncounted.
    fn add(&self, epoch: u32, delta: i64) -> bool {
        let slot = &self.slots[epoch as usize % SLOTS];
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let (held, value) = unpack(word);
            // A thread whose clock read came later may have moved the slot on already: the
            // delta then counts in that epoch.
            let (epoch, base) = if newer(epoch, held) { (epoch, 0) } else { (held, i64::from(value)) };
            let exact = base + delta;
            if delta < 0 && exact < i64::from(i32::MIN) {
                return false;
            }
            let value = exact.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            match slot.compare_exchange_weak(word, pack(epoch, value), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return i64::from(value) == exact,
                Err(now) => word = now,
            }
        }
    }

    fn balance(&self, epoch: u32) -> i64 {
        self.reserve
            + self
                .slots
                .iter()
                .map(|slot| unpack(slot.load(Ordering::Acquire)))
                // This window's epochs (and any a later clock read already moved a slot to).
                .filter(|(held, _)| (epoch.wrapping_sub(*held) as i32) < SLOTS as i32)
                .map(|(_, value)| i64::from(value))
                .sum::<i64>()
    }

    /// The retries currently available, for observability.
    pub fn available(&self, now: Instant) -> f64 {
        self.balance(self.epoch(now)) as f64 / UNIT as f64
    }
}

impl RetryBudget for RatioBudget {
    fn deposit(&self, now: Instant) {
        if self.deposit != 0 {
            // A full slot stops counting deposits: fewer retries allowed, never more.
            let _ = self.add(self.epoch(now), self.deposit);
        }
    }

    fn withdraw(&self, now: Instant) -> bool {
        // A poisoned lock guards no data: carry on. Deposits meanwhile only add to the balance.
        let _one_at_a_time = self.withdrawing.lock().unwrap_or_else(|e| e.into_inner());
        let epoch = self.epoch(now);
        self.balance(epoch) >= UNIT && self.add(epoch, -UNIT)
    }
}

fn pack(epoch: u32, value: i32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(value as u32)
}

fn unpack(word: u64) -> (u32, i32) {
    ((word >> 32) as u32, word as u32 as i32)
}

/// Whether epoch `a` comes after epoch `b` (wrapping).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_host_gets_at_most_ratio_retries() {
        let b = RatioBudget::new(BudgetConfig::new(0.2, 0, Duration::from_secs(10)));
        let now = Instant::now();
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit(now);
            while b.withdraw(now) {
                retries += 1;
            }
        }
        assert_eq!(retries, 200);
    }

    #[test]
    fn reserve_allows_retries_without_traffic() {
        let b = RatioBudget::new(BudgetConfig::new(0.0, 2, Duration::from_secs(5)));
        let now = Instant::now();
        let n = std::iter::from_fn(|| b.withdraw(now).then_some(())).count();
        assert_eq!(n, 10);
    }

    #[test]
    fn deposits_expire_after_ttl() {
        let b = RatioBudget::new(BudgetConfig::new(1.0, 0, Duration::from_secs(10)));
        let t0 = Instant::now();
        for _ in 0..3 {
            b.deposit(t0);
        }
        assert_eq!(b.available(t0 + Duration::from_secs(9)), 3.0);
        assert_eq!(b.available(t0 + Duration::from_secs(11)), 0.0);
        assert!(!b.withdraw(t0 + Duration::from_secs(30)));
        b.deposit(t0 + Duration::from_secs(30));
        assert!(b.withdraw(t0 + Duration::from_secs(31)));
    }

    /// Threads depositing while one of them moves a slot on to a new epoch: every deposit counts,
    /// and nothing of the expired epoch is left to spend.
    #[test]
    fn no_deposit_is_lost_when_a_slot_moves_on() {
        let ttl = Duration::from_secs(1);
        for _ in 0..200 {
            let b = std::sync::Arc::new(RatioBudget::new(BudgetConfig::new(1.0, 0, ttl)));
            let t0 = Instant::now();
            for _ in 0..50 {
                b.deposit(t0); // expired by `later`, in the same slot
            }
            let later = t0 + ttl;
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    std::thread::spawn(move || {
                        for _ in 0..100 {
                            b.deposit(later);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(b.available(later), 400.0);
        }
    }

    /// The shape reads back as given; the default is the documented one (20 %, 10 a second,
    /// over 10 s).
    #[test]
    fn a_config_reads_back_as_given() {
        let c = BudgetConfig::new(0.5, 3, Duration::from_secs(7));
        assert_eq!((c.ratio(), c.min_per_sec(), c.ttl()), (0.5, 3, Duration::from_secs(7)));
        let d = BudgetConfig::default();
        assert_eq!((d.ratio(), d.min_per_sec(), d.ttl()), (0.2, 10, Duration::from_secs(10)));
    }

    /// `BudgetConfig::new` panics on a value out of its documented range, and takes the ends.
    #[test]
    fn a_config_out_of_range_panics() {
        let made = |ratio: f32, ttl_ms: u64| {
            std::panic::catch_unwind(|| BudgetConfig::new(ratio, 1, Duration::from_millis(ttl_ms))).is_ok()
        };
        assert!(made(0.0, 1_000) && made(1000.0, 60_000));
        for (ratio, ttl_ms) in [(-0.1, 10_000), (1000.5, 10_000), (f32::NAN, 10_000), (0.2, 999), (0.2, 60_001)] {
            assert!(!made(ratio, ttl_ms), "ratio {ratio}, ttl {ttl_ms} ms");
        }
    }

    /// A deposit counts for `ttl` and no longer: at `ttl` exactly it has expired.
    #[test]
    fn a_deposit_expires_at_ttl_exactly() {
        let b = RatioBudget::new(BudgetConfig::new(1.0, 0, Duration::from_secs(10)));
        let t0 = Instant::now();
        b.deposit(t0);
        assert_eq!(b.available(t0 + Duration::from_millis(9_999)), 1.0);
        assert_eq!(b.available(t0 + Duration::from_secs(10)), 0.0);
    }

    /// Deposits made across the whole window, one in each of its slots, all count; and the
    /// window goes on sliding, however long the host lives.
    #[test]
    fn deposits_across_the_window_all_count() {
        let b = RatioBudget::new(BudgetConfig::new(1.0, 0, Duration::from_secs(10)));
        let t0 = Instant::now();
        for s in 0..10 {
            b.deposit(t0 + Duration::from_secs(s));
        }
        assert_eq!(b.available(t0 + Duration::from_millis(9_500)), 10.0);
        let late = t0 + Duration::from_secs(100_000);
        for s in 0..10 {
            b.deposit(late + Duration::from_secs(s));
        }
        assert_eq!(b.available(late + Duration::from_millis(9_500)), 10.0);
        assert!(b.withdraw(late + Duration::from_millis(9_500)));
        assert_eq!(b.available(late + Duration::from_millis(9_500)), 9.0);
    }

    #[test]
    fn withdrawals_expire_too() {
        let b = RatioBudget::new(BudgetConfig::new(0.0, 1, Duration::from_secs(1)));
        let t0 = Instant::now();
        assert!(b.withdraw(t0));
        assert!(!b.withdraw(t0));
        assert!(b.withdraw(t0 + Duration::from_millis(1100)));
    }
}

#[cfg(test)]
mod saturation_tests {
    use super::*;

    #[test]
    fn a_slot_that_cannot_count_a_withdrawal_refuses_it() {
        // A reserve of 2.4 M retries is more than one slot's 32 bits can count down: retries
        // stop where counting stops, never beyond the reserve.
        let b = RatioBudget::new(BudgetConfig::new(0.0, 40_000, Duration::from_secs(60)));
        let now = Instant::now();
        let mut n = 0u32;
        while n < 2_500_000 && b.withdraw(now) {
            n += 1;
        }
        assert!(n <= 2_400_000, "{n} retries from a reserve of 2.4 M");
        assert!(n >= 2_000_000, "{n}");
        // What was refused was not spent: the reserve less the retries allowed, to the unit.
        assert_eq!(b.available(now), 2_400_000.0 - f64::from(n));
    }

    /// A withdrawal that brings the slot to exactly the least value it holds is counted, and
    /// allowed; the next one cannot be counted, is refused, and spends nothing.
    #[test]
    fn a_slot_counts_down_to_its_last_value_and_no_further() {
        // One deposit of 0.352 retries, then 2,147,484 withdrawals: 352 − 2,147,484,000 is
        // i32::MIN thousandths of a retry.
        let b = RatioBudget::new(BudgetConfig::new(0.352, 40_000, Duration::from_secs(60)));
        let now = Instant::now();
        b.deposit(now);
        let mut n = 0u32;
        while n < 2_500_000 && b.withdraw(now) {
            n += 1;
        }
        assert_eq!(n, 2_147_484);
        let left = b.available(now);
        assert!(!b.withdraw(now));
        assert_eq!(b.available(now), left, "a refused withdrawal spends nothing");
    }
}
