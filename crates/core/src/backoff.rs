//! Backoff: how long to wait before a retry when the server gives no hint.
//!
//! Randomness is injected through [`Rng`], so every delay is reproducible in tests.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A source of randomness for jitter. Implement it to make delays deterministic in tests.
pub trait Rng {
    /// The next pseudo-random 64-bit value.
    fn next_u64(&mut self) -> u64;

    /// A value uniformly distributed in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl<R: Rng + ?Sized> Rng for &mut R {
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

/// A small, fast, non-cryptographic generator (SplitMix64), seeded from the standard library's
/// per-process random hasher keys unless a seed is given. Jitter needs spread, not secrecy.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with a fixed seed: the same seed gives the same delays.
    pub const fn seeded(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator seeded from the process's random hasher keys.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5EED);
        SplitMix64(h.finish())
    }
}

impl Default for SplitMix64 {
    fn default() -> Self {
        Self::from_entropy()
    }
}

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// How jitter spreads an exponential backoff.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// No jitter: `min(cap, base × 2ⁿ)`.
    None,
    /// "Full jitter": uniform in `[0, min(cap, base × 2ⁿ)]`.
    Full,
    /// "Decorrelated jitter": uniform in `[base, min(cap, 3 × previous delay)]`.
    Decorrelated,
}

/// A backoff strategy.
///
/// See the AWS Architecture Blog's "Exponential Backoff And Jitter" for why full and
/// decorrelated jitter spread retries better than plain doubling.
///
/// ```
/// use std::time::Duration;
/// use redial_core::backoff::{Backoff, SplitMix64};
/// let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)).unwrap();
/// let mut rng = SplitMix64::seeded(7);
/// let d = b.delay(3, None, &mut rng).unwrap();
/// assert!(d <= Duration::from_millis(800));
///
/// // "3 times, 2 minutes apart"
/// let s = Backoff::schedule([Duration::from_secs(120); 3]);
/// assert_eq!(s.delay(2, None, &mut rng), Some(Duration::from_secs(120)));
/// assert_eq!(s.delay(3, None, &mut rng), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Backoff(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Exponential { base: Duration, cap: Duration, jitter: Jitter },
    Constant(Duration),
    Schedule(Arc<[Duration]>),
}

/// A backoff could not be built from the values given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBackoff(&'static str);

impl fmt::Display for InvalidBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid backoff: {}", self.0)
    }
}

impl std::error::Error for InvalidBackoff {}

impl Backoff {
    /// Exponential backoff with full jitter, from `base`, never more than `cap`.
    pub fn exponential(base: Duration, cap: Duration) -> Result<Self, InvalidBackoff> {
        Self::exponential_with(base, cap, Jitter::Full)
    }

    /// Exponential backoff with decorrelated jitter, from `base`, never more than `cap`.
    pub fn decorrelated(base: Duration, cap: Duration) -> Result<Self, InvalidBackoff> {
        Self::exponential_with(base, cap, Jitter::Decorrelated)
    }

    /// Exponential backoff with the given jitter.
    pub fn exponential_with(base: Duration, cap: Duration, jitter: Jitter) -> Result<Self, InvalidBackoff> {
        if base.is_zero() {
            return Err(InvalidBackoff("base must be greater than zero"));
        }
        if cap < base {
            return Err(InvalidBackoff("cap must be at least the base"));
        }
        Ok(Backoff(Repr::Exponential { base, cap, jitter }))
    }

    /// The same delay before every retry.
    pub const fn constant(delay: Duration) -> Self {
        Backoff(Repr::Constant(delay))
    }

    /// A fixed schedule: the n-th retry waits the n-th delay; there is no retry past its end.
    /// "Once after 30 s" is `schedule([30 s])`; "3 times, 2 minutes apart" is `schedule([120 s; 3])`.
    pub fn schedule(delays: impl IntoIterator<Item = Duration>) -> Self {
        Backoff(Repr::Schedule(delays.into_iter().collect()))
    }

    /// How many retries this backoff allows on its own (`Some` only for schedules).
    pub fn max_retries(&self) -> Option<u32> {
        match &self.0 {
            Repr::Schedule(s) => Some(u32::try_from(s.len()).unwrap_or(u32::MAX)),
            _ => None,
        }
    }

    /// The delay before retry number `retry` (0 for the first retry), given the previous delay
    /// (for decorrelated jitter). `None` when a schedule has no entry for this retry.
    pub fn delay(&self, retry: u32, previous: Option<Duration>, rng: &mut dyn Rng) -> Option<Duration> {
        let (lo, hi) = self.bounds(retry, previous)?;
        if lo == hi {
            return Some(lo);
        }
        let span = (hi - lo).as_nanos() as f64;
        Some(lo + Duration::from_nanos((span * rng.next_f64()) as u64))
    }

    /// The range a delay for retry number `retry` falls in: what `redial explain` reports.
    pub fn bounds(&self, retry: u32, previous: Option<Duration>) -> Option<(Duration, Duration)> {
        match &self.0 {
            Repr::Constant(d) => Some((*d, *d)),
            Repr::Schedule(s) => s.get(retry as usize).map(|d| (*d, *d)),
            Repr::Exponential { base, cap, jitter } => {
                let ceiling = base.saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX)).min(*cap);
                Some(match jitter {
                    Jitter::None => (ceiling, ceiling),
                    Jitter::Full => (Duration::ZERO, ceiling),
                    Jitter::Decorrelated => {
                        let prev = previous.unwrap_or(*base).max(*base);
                        (*base, prev.saturating_mul(3).min(*cap).max(*base))
                    }
                })
            }
        }
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Exponential { base, cap, jitter } => {
                f.debug_struct("Exponential").field("base", base).field("cap", cap).field("jitter", jitter).finish()
            }
            Repr::Constant(d) => f.debug_tuple("Constant").field(d).finish(),
            Repr::Schedule(s) => f.debug_tuple("Schedule").field(s).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn invalid_backoffs_are_rejected() {
        assert!(Backoff::exponential(Duration::ZERO, MS).is_err());
        assert!(Backoff::exponential(MS * 10, MS).is_err());
        assert!(Backoff::decorrelated(MS, MS).is_ok());
    }

    #[test]
    fn exponential_bounds_double_until_the_cap() {
        let b = Backoff::exponential_with(MS * 100, MS * 1000, Jitter::None).unwrap();
        let got: Vec<_> = (0..6).map(|n| b.bounds(n, None).unwrap().1.as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.bounds(u32::MAX, None), Some((MS * 1000, MS * 1000)));
    }

    #[test]
    fn schedule_ends() {
        let b = Backoff::schedule([Duration::from_secs(30)]);
        assert_eq!(b.max_retries(), Some(1));
        assert_eq!(b.bounds(0, None), Some((Duration::from_secs(30), Duration::from_secs(30))));
        assert_eq!(b.bounds(1, None), None);
    }

    #[test]
    fn seeded_rng_is_reproducible() {
        let b = Backoff::exponential(MS, Duration::from_secs(1)).unwrap();
        let run = |seed| {
            let mut r = SplitMix64::seeded(seed);
            (0..10).map(|n| b.delay(n, None, &mut r)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    /// SplitMix64 is Vigna's generator: seed 0 gives the first outputs of his reference
    /// `splitmix64.c`, so the spread it promises is the published one.
    #[test]
    fn splitmix64_is_the_reference_generator() {
        let mut r = SplitMix64::seeded(0);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]);
    }

    /// A generator lent as `&mut` draws from the generator itself.
    #[test]
    fn a_borrowed_rng_is_the_rng() {
        fn draw<R: Rng>(mut r: R) -> (u64, f64) {
            (r.next_u64(), r.next_f64())
        }
        let mut lent = SplitMix64::seeded(7);
        let mut own = SplitMix64::seeded(7);
        assert_eq!(draw(&mut lent), (own.next_u64(), own.next_f64()));
        assert_eq!(lent.next_u64(), own.next_u64());
    }

    /// Unseeded generators (`from_entropy`, `Default`) each start somewhere else.
    #[test]
    fn unseeded_generators_differ() {
        let draws: Vec<u64> = (0..4)
            .map(|i| if i % 2 == 0 { SplitMix64::from_entropy() } else { SplitMix64::default() }.next_u64())
            .collect();
        for (i, a) in draws.iter().enumerate() {
            assert!(draws[i + 1..].iter().all(|b| a != b), "{draws:x?}");
        }
    }

    proptest! {
        #[test]
        fn every_delay_is_within_its_bounds(
            base_ms in 1u64..10_000,
            extra_ms in 0u64..100_000,
            retry in 0u32..100,
            prev_ms in proptest::option::of(0u64..1_000_000),
            seed: u64,
            kind in 0u8..4,
        ) {
            let base = MS * base_ms as u32;
            let cap = base + MS * extra_ms as u32;
            let b = match kind {
                0 => Backoff::exponential(base, cap).unwrap(),
                1 => Backoff::decorrelated(base, cap).unwrap(),
                2 => Backoff::exponential_with(base, cap, Jitter::None).unwrap(),
                _ => Backoff::constant(cap),
            };
            let prev = prev_ms.map(Duration::from_millis);
            let (lo, hi) = b.bounds(retry, prev).unwrap();
            prop_assert!(lo <= hi);
            prop_assert!(hi <= cap);
            // The range each scheme promises, computed here from its formula, not by `bounds`.
            let doubled = (base_ms as u128) << retry.min(100);
            let ceiling = MS * doubled.min(cap.as_millis()) as u32;
            let expected = match kind {
                // Full jitter: anywhere in [0, min(cap, base · 2^retry)].
                0 => (Duration::ZERO, ceiling),
                // Decorrelated: in [base, min(cap, 3 · max(previous, base))].
                1 => {
                    let prev = prev.unwrap_or(base).max(base);
                    (base, (prev * 3).min(cap).max(base))
                }
                // No jitter: exactly min(cap, base · 2^retry).
                2 => (ceiling, ceiling),
                _ => (cap, cap),
            };
            prop_assert_eq!((lo, hi), expected);
            let d = b.delay(retry, prev, &mut SplitMix64::seeded(seed)).unwrap();
            prop_assert!(expected.0 <= d && d <= expected.1, "{:?} <= {d:?} <= {:?}", expected.0, expected.1);
        }

        /// A fixed schedule waits its n-th delay before the n-th retry, exactly, and allows no
        /// retry past its end.
        #[test]
        fn a_schedule_waits_each_of_its_delays_then_ends(
            delays_ms in proptest::collection::vec(0u64..1_000_000, 0..8),
            seed: u64,
        ) {
            let delays: Vec<Duration> = delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect();
            let b = Backoff::schedule(delays.clone());
            prop_assert_eq!(b.max_retries(), Some(delays.len() as u32));
            let mut rng = SplitMix64::seeded(seed);
            for (n, d) in delays.iter().enumerate() {
                prop_assert_eq!(b.delay(n as u32, None, &mut rng), Some(*d));
            }
            prop_assert_eq!(b.delay(delays.len() as u32, None, &mut rng), None);
        }
    }
}
