//! Per-host policy: the limits every retry decision is bounded by.

use std::fmt;
use std::time::Duration;

use http::Method;

use crate::backoff::Backoff;
use crate::budget::BudgetConfig;

/// A set of HTTP methods (the nine of RFC 9110 and PATCH; extension methods are never members).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct MethodSet(u16);

const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

impl MethodSet {
    /// The empty set.
    pub const EMPTY: MethodSet = MethodSet(0);

    /// The idempotent methods of RFC 9110 §9.2.2: GET, HEAD, PUT, DELETE, OPTIONS, TRACE.
    pub fn idempotent() -> MethodSet {
        [Method::GET, Method::HEAD, Method::PUT, Method::DELETE, Method::OPTIONS, Method::TRACE].iter().collect()
    }

    fn bit(method: &Method) -> Option<u16> {
        METHODS.iter().position(|m| m == method).map(|i| 1 << i)
    }

    /// Whether `method` is in the set.
    pub fn contains(&self, method: &Method) -> bool {
        Self::bit(method).is_some_and(|b| self.0 & b != 0)
    }

    /// The set with `method` added (extension methods are ignored).
    pub fn with(mut self, method: &Method) -> MethodSet {
        self.0 |= Self::bit(method).unwrap_or(0);
        self
    }

    /// The set with `method` removed.
    pub fn without(mut self, method: &Method) -> MethodSet {
        self.0 &= !Self::bit(method).unwrap_or(0);
        self
    }
}

impl<'a> FromIterator<&'a Method> for MethodSet {
    fn from_iter<I: IntoIterator<Item = &'a Method>>(iter: I) -> Self {
        iter.into_iter().fold(MethodSet::EMPTY, |s, m| s.with(m))
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(METHODS.iter().filter(|m| self.contains(m))).finish()
    }
}

/// The limits of retrying against one host.
///
/// Build one with [`Policy::builder`]; `Policy::default()` is the generic policy.
///
/// ```
/// use std::time::Duration;
/// use redial_core::Policy;
/// let policy = Policy::builder()
///     .max_attempts(5)
///     .deadline(Duration::from_secs(30))
///     .attempt_timeout(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(policy.max_attempts(), 5);
///
/// // An attempt may not be allowed longer than the whole request.
/// assert!(Policy::builder()
///     .deadline(Duration::from_secs(1))
///     .attempt_timeout(Duration::from_secs(5))
///     .build()
///     .is_err());
/// # Ok::<(), redial_core::InvalidPolicy>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    max_attempts: u32,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    replay_limit: usize,
    inspect_limit: usize,
    idempotent_methods: MethodSet,
    honor_idempotency_key: bool,
    retry_after_cap: Duration,
    backoff: Backoff,
    max_auth_refreshes: u32,
    budget: Option<BudgetConfig>,
    rate_limit: Option<(u32, Duration)>,
    max_concurrency: Option<u32>,
    add_idempotency_key: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 3,
            deadline: Some(Duration::from_secs(120)),
            attempt_timeout: None,
            replay_limit: 1024 * 1024,
            inspect_limit: 64 * 1024,
            idempotent_methods: MethodSet::idempotent(),
            honor_idempotency_key: true,
            retry_after_cap: Duration::from_secs(300),
            backoff: Backoff::exponential(Duration::from_millis(200), Duration::from_secs(30))
                .expect("valid default backoff"),
            max_auth_refreshes: 2,
            budget: Some(BudgetConfig::default()),
            rate_limit: None,
            max_concurrency: None,
            add_idempotency_key: false,
        }
    }
}

impl Policy {
    /// A builder starting from the defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder(Policy::default())
    }

    /// A builder starting from this policy, to adjust a vendor's defaults.
    pub fn to_builder(&self) -> PolicyBuilder {
        PolicyBuilder(self.clone())
    }

    /// The most attempts one logical request may make, the first included. Default 3.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The total time a logical request may take, attempts and sleeps included, from when it
    /// starts (the first poll of its future). Default 2 min.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }
    /// The time one attempt may take until its response head (and inspected body) arrives.
    /// Default none: the inner client's own timeouts apply.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }
    /// The largest request body kept for replay. A larger body, or one of unknown size, is sent
    /// once and never replayed. Default 1 MiB.
    pub fn replay_limit(&self) -> usize {
        self.replay_limit
    }
    /// The most bytes of a response body read to classify it. Default 64 KiB.
    pub fn inspect_limit(&self) -> usize {
        self.inspect_limit
    }
    /// The methods that may be re-sent after they may have reached the server.
    pub fn idempotent_methods(&self) -> MethodSet {
        self.idempotent_methods
    }
    /// Whether a request carrying an `Idempotency-Key` header counts as idempotent. Default true.
    pub fn honor_idempotency_key(&self) -> bool {
        self.honor_idempotency_key
    }
    /// The longest server hint (`Retry-After`) redial will sleep on. Default 5 min.
    pub fn retry_after_cap(&self) -> Duration {
        self.retry_after_cap
    }
    /// The backoff used when a rule names none and the server gives no hint.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
    /// The most credential refreshes one logical request may cause. Default 2.
    pub fn max_auth_refreshes(&self) -> u32 {
        self.max_auth_refreshes
    }
    /// The retry budget shared by every request to the host; `None` disables it.
    pub fn budget(&self) -> Option<&BudgetConfig> {
        self.budget.as_ref()
    }
    /// At most this many calls (attempts, retries included) per sliding window, enforced before
    /// sending, for every request to the host. Default none.
    pub fn rate_limit(&self) -> Option<(u32, Duration)> {
        self.rate_limit
    }
    /// Whether every request to the host gets an `Idempotency-Key` (a random UUID), added once
    /// and sent unchanged on every attempt, so that it may be retried even after it may have
    /// reached the server, if the host honours keys
    /// ([`honor_idempotency_key`](Self::honor_idempotency_key)). Default false (opt in per
    /// request with `AddIdempotencyKey`).
    pub fn add_idempotency_key(&self) -> bool {
        self.add_idempotency_key
    }
    /// At most this many attempts in flight at once to the host. Default none.
    pub fn max_concurrency(&self) -> Option<u32> {
        self.max_concurrency
    }
}

/// Builds a [`Policy`], validating it in [`build`](PolicyBuilder::build).
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder(Policy);

impl PolicyBuilder {
    /// See [`Policy::max_attempts`]; at least 1.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.0.max_attempts = n;
        self
    }
    /// See [`Policy::deadline`].
    pub fn deadline(mut self, d: Duration) -> Self {
        self.0.deadline = Some(d);
        self
    }
    /// Remove the deadline: only attempts, timeouts and the Retry-After cap bound a request.
    pub fn no_deadline(mut self) -> Self {
        self.0.deadline = None;
        self
    }
    /// See [`Policy::attempt_timeout`].
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.0.attempt_timeout = Some(d);
        self
    }
    /// See [`Policy::replay_limit`].
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.0.replay_limit = bytes;
        self
    }
    /// See [`Policy::inspect_limit`].
    pub fn inspect_limit(mut self, bytes: usize) -> Self {
        self.0.inspect_limit = bytes;
        self
    }
    /// See [`Policy::idempotent_methods`].
    pub fn idempotent_methods(mut self, methods: MethodSet) -> Self {
        self.0.idempotent_methods = methods;
        self
    }
    /// See [`Policy::honor_idempotency_key`].
    pub fn honor_idempotency_key(mut self, yes: bool) -> Self {
        self.0.honor_idempotency_key = yes;
        self
    }
    /// See [`Policy::retry_after_cap`].
    pub fn retry_after_cap(mut self, d: Duration) -> Self {
        self.0.retry_after_cap = d;
        self
    }
    /// See [`Policy::backoff`].
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.0.backoff = b;
        self
    }
    /// See [`Policy::max_auth_refreshes`].
    pub fn max_auth_refreshes(mut self, n: u32) -> Self {
        self.0.max_auth_refreshes = n;
        self
    }
    /// See [`Policy::budget`].
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.0.budget = Some(budget);
        self
    }
    /// See [`Policy::rate_limit`]: `calls` per sliding `window`.
    pub fn rate_limit(mut self, calls: u32, window: Duration) -> Self {
        self.0.rate_limit = Some((calls, window));
        self
    }
    /// Remove the rate limit.
    pub fn no_rate_limit(mut self) -> Self {
        self.0.rate_limit = None;
        self
    }
    /// See [`Policy::max_concurrency`].
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.0.max_concurrency = Some(n);
        self
    }
    /// See [`Policy::add_idempotency_key`].
    pub fn idempotency_keys(mut self, yes: bool) -> Self {
        self.0.add_idempotency_key = yes;
        self
    }
    /// Remove the concurrency limit.
    pub fn no_max_concurrency(mut self) -> Self {
        self.0.max_concurrency = None;
        self
    }
    /// Disable the retry budget (not recommended: a failing host then sees up to
    /// `max_attempts` times its normal load).
    pub fn no_budget(mut self) -> Self {
        self.0.budget = None;
        self
    }

    /// Check the policy and build it.
    pub fn build(self) -> Result<Policy, InvalidPolicy> {
        let p = self.0;
        if p.max_attempts == 0 {
            return Err(InvalidPolicy("max_attempts must be at least 1"));
        }
        if p.deadline.is_some_and(|d| d.is_zero()) {
            return Err(InvalidPolicy("deadline must be greater than zero"));
        }
        if p.attempt_timeout.is_some_and(|d| d.is_zero()) {
            return Err(InvalidPolicy("attempt_timeout must be greater than zero"));
        }
        if let (Some(t), Some(d)) = (p.attempt_timeout, p.deadline) {
            if t > d {
                return Err(InvalidPolicy("attempt_timeout must not exceed the deadline"));
            }
        }
        if p.retry_after_cap.is_zero() {
            return Err(InvalidPolicy("retry_after_cap must be greater than zero"));
        }
        if let Some((calls, window)) = p.rate_limit {
            if calls == 0 || window.is_zero() {
                return Err(InvalidPolicy("rate_limit needs at least one call per non-zero window"));
            }
        }
        if p.max_concurrency == Some(0) {
            return Err(InvalidPolicy("max_concurrency must be at least 1"));
        }
        if p.inspect_limit > MAX_INSPECT_LIMIT {
            return Err(InvalidPolicy("inspect_limit must be at most 64 MiB"));
        }
        if p.inspect_limit == 0 {
            // Nothing read: every vendor error in a 2xx body (Marketo's 606) would pass as a success.
            return Err(InvalidPolicy("inspect_limit must be at least 1 byte"));
        }
        // Times the clock can add: `Duration::MAX` is no way to say "none" (`no_deadline()` is).
        let too_long = |d: Duration| d > MAX_DURATION;
        if p.deadline.is_some_and(too_long)
            || p.attempt_timeout.is_some_and(too_long)
            || too_long(p.retry_after_cap)
            || p.rate_limit.is_some_and(|(_, w)| too_long(w))
        {
            return Err(InvalidPolicy(
                "deadline, attempt_timeout, retry_after_cap and the rate-limit window must be at most a year \
                 (no deadline at all: `no_deadline()`)",
            ));
        }
        Ok(p)
    }
}

/// The largest inspect limit a policy accepts: inspection is for error bodies, not payloads.
pub const MAX_INSPECT_LIMIT: usize = 64 * 1024 * 1024;

/// The longest deadline, attempt timeout, Retry-After cap or rate-limit window a policy accepts:
/// a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A policy was rejected by [`PolicyBuilder::build`]; the message says which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPolicy(&'static str);

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid policy: {}", self.0)
    }
}

impl std::error::Error for InvalidPolicy {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_sets() {
        let s = MethodSet::idempotent();
        for m in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"] {
            assert!(s.contains(&m.parse().unwrap()), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(!s.contains(&m.parse().unwrap()), "{m}");
        }
        assert!(s.with(&Method::POST).contains(&Method::POST));
        assert!(!s.without(&Method::GET).contains(&Method::GET));
        assert_eq!(format!("{:?}", MethodSet::EMPTY.with(&Method::GET)), "{GET}");
    }

    /// The defaults each accessor's docs (and the README's "Everything is bounded") state.
    #[test]
    fn the_default_policy_is_the_documented_one() {
        let p = Policy::default();
        assert_eq!(p.max_attempts(), 3);
        assert_eq!(p.deadline(), Some(Duration::from_secs(120)));
        assert_eq!(p.attempt_timeout(), None);
        assert_eq!(p.replay_limit(), 1024 * 1024);
        assert_eq!(p.inspect_limit(), 64 * 1024);
        assert_eq!(p.idempotent_methods(), MethodSet::idempotent());
        assert!(p.honor_idempotency_key());
        assert_eq!(p.retry_after_cap(), Duration::from_secs(300));
        assert_eq!(p.max_auth_refreshes(), 2);
        assert_eq!(p.budget(), Some(&BudgetConfig::default()));
        assert_eq!(p.rate_limit(), None);
        assert_eq!(p.max_concurrency(), None);
        assert!(!p.add_idempotency_key());
        assert_eq!(Policy::builder().build(), Ok(p));
    }

    /// Every setting the builder takes is the one the policy answers (away from the defaults).
    #[test]
    fn a_built_policy_answers_what_it_was_given() {
        let budget = BudgetConfig::new(0.5, 3, Duration::from_secs(5));
        let methods = MethodSet::idempotent().without(&Method::DELETE);
        let p = Policy::builder()
            .replay_limit(7)
            .inspect_limit(9)
            .idempotent_methods(methods)
            .honor_idempotency_key(false)
            .budget(budget)
            .rate_limit(100, Duration::from_secs(20))
            .max_concurrency(10)
            .idempotency_keys(true)
            .build()
            .unwrap();
        assert_eq!((p.replay_limit(), p.inspect_limit()), (7, 9));
        assert!(p.idempotent_methods().contains(&Method::GET) && !p.idempotent_methods().contains(&Method::DELETE));
        assert!(!p.honor_idempotency_key() && p.add_idempotency_key());
        assert_eq!(p.budget(), Some(&budget));
        assert_eq!(p.rate_limit(), Some((100, Duration::from_secs(20))));
        assert_eq!(p.max_concurrency(), Some(10));

        let none = p.to_builder().no_budget().no_rate_limit().no_max_concurrency().build().unwrap();
        assert_eq!((none.budget(), none.rate_limit(), none.max_concurrency()), (None, None, None));
    }

    /// The bounds are the ones their docs give (64 MiB, a year), and a refusal names its rule.
    #[test]
    fn the_bounds_are_the_documented_ones_and_a_refusal_names_its_rule() {
        assert_eq!(MAX_INSPECT_LIMIT, 67_108_864);
        assert_eq!(MAX_DURATION, Duration::from_secs(31_536_000));
        let e = Policy::builder().max_attempts(0).build().unwrap_err();
        assert_eq!(e.to_string(), "invalid policy: max_attempts must be at least 1");
    }

    #[test]
    fn builder_validates() {
        let s = Duration::from_secs(1);
        let cases: Vec<(PolicyBuilder, bool)> = vec![
            (Policy::builder(), true),
            (Policy::builder().max_attempts(0), false),
            (Policy::builder().deadline(Duration::ZERO), false),
            (Policy::builder().attempt_timeout(Duration::ZERO), false),
            (Policy::builder().deadline(s).attempt_timeout(s * 2), false),
            (Policy::builder().deadline(s * 2).attempt_timeout(s * 2), true),
            (Policy::builder().no_deadline().attempt_timeout(s * 900), true),
            (Policy::builder().retry_after_cap(Duration::ZERO), false),
            (Policy::builder().inspect_limit(MAX_INSPECT_LIMIT + 1), false),
            (Policy::builder().inspect_limit(0), false),
            (Policy::builder().inspect_limit(1), true),
            // Durations the engine's clock arithmetic can hold; `Duration::MAX` is not "none".
            (Policy::builder().deadline(Duration::MAX), false),
            (Policy::builder().deadline(MAX_DURATION), true),
            (Policy::builder().no_deadline().attempt_timeout(Duration::MAX), false),
            (Policy::builder().retry_after_cap(Duration::MAX), false),
            (Policy::builder().rate_limit(1, Duration::MAX), false),
            (Policy::builder().rate_limit(1, MAX_DURATION), true),
            (Policy::builder().rate_limit(0, s), false),
            (Policy::builder().rate_limit(1, Duration::ZERO), false),
            (Policy::builder().max_concurrency(0), false),
            (Policy::builder().max_concurrency(1), true),
            (Policy::builder().inspect_limit(MAX_INSPECT_LIMIT), true),
        ];
        for (i, (b, ok)) in cases.into_iter().enumerate() {
            assert_eq!(b.build().is_ok(), ok, "case {i}");
        }
    }
}
