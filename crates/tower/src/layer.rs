//! [`RetryLayer`]: configuration only, cheap to clone.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response};
use http_body::Body;
use redial_core::backoff::SplitMix64;
use redial_core::budget::RetryBudget;
use redial_core::generic::Generic;
use redial_core::rate::RateLimiter;
use redial_core::{Failure, Policy, Profile};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::TokenSource;
use crate::hooks::{FailoverMode, FailoverStore, Probe, ReconcileHook};
use crate::hosts::{Host, Hosts, InvalidHost};
use crate::{ResponseFuture, Retry, RetryBody};

/// Tells from an inner service's error whether the request may have reached the server.
pub type FailureClassifier = fn(&(dyn std::error::Error + 'static)) -> Failure;

pub(crate) struct Shared {
    pub(crate) hosts: Hosts,
    pub(crate) wall_clock: fn() -> SystemTime,
    pub(crate) classify_error: FailureClassifier,
    /// A response given up on is returned (with its report), not turned into an error.
    pub(crate) final_responses_as_ok: bool,
    seed: u64,
    sequence: AtomicU64,
}

impl Shared {
    /// A generator for one logical request: distinct per request, reproducible from the seed.
    pub(crate) fn rng(&self) -> SplitMix64 {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        SplitMix64::seeded(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// Wraps a service with redial's retry engine.
///
/// ```
/// use std::time::Duration;
/// use redial_tower::{Policy, RetryLayer};
/// use redial_tower::core::generic::Generic;
///
/// let layer = RetryLayer::builder()
///     .host("*.example.com", Generic, Policy::builder().max_attempts(5).build()?)?
///     .default_host(Generic, Policy::default())
///     .build();
/// let svc = tower::ServiceBuilder::new()
///     .layer(layer)
///     .service(tower::service_fn(|_req: http::Request<redial_tower::RetryBody<String>>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RetryLayer {
    shared: Arc<Shared>,
}

impl RetryLayer {
    /// Every request goes to one profile with one policy.
    pub fn new(profile: impl Profile, policy: Policy) -> Self {
        Self::builder().default_host(profile, policy).build()
    }

    /// The generic HTTP rules with the default policy.
    pub fn generic() -> Self {
        Self::new(Generic, Policy::default())
    }

    /// A builder for per-host profiles and policies.
    pub fn builder() -> RetryLayerBuilder {
        RetryLayerBuilder {
            hosts: Hosts::new(Host::new("*", Arc::new(Generic), Policy::default())),
            wall_clock: SystemTime::now,
            classify_error: crate::failure::classify_error,
            final_responses_as_ok: false,
            seed: None,
        }
    }
}

impl RetryLayer {
    /// The host registered under `pattern` exactly, or else the one that serves the host name
    /// `pattern` (`123-abc-456.mktorest.com` finds `*.mktorest.com`, or the default).
    fn serving(&self, pattern: &str) -> Option<&Host> {
        let hosts = &self.shared.hosts;
        hosts.by_pattern(pattern).or_else(|| {
            let uri: http::Uri = format!("http://{pattern}/").parse().ok()?;
            (!pattern.contains('*')).then(|| hosts.get(hosts.lookup(&uri)))
        })
    }

    /// The failover mode of the host registered under `pattern` (`*` for the default; a host
    /// name finds the host that serves it), for health checks and alerts; the changes are
    /// also `tracing` events.
    pub fn failover_mode(&self, pattern: &str) -> Option<FailoverMode> {
        self.serving(pattern).map(|h| h.failover.mode(&h.pattern))
    }

    /// The concurrency permits free now for the host registered under `pattern` (or serving
    /// the host name `pattern`), if it has a concurrency limit: equal to the limit when nothing
    /// is in flight.
    pub fn available_permits(&self, pattern: &str) -> Option<usize> {
        self.serving(pattern).and_then(|h| h.limits.concurrency.as_ref()).map(|c| c.available_permits())
    }

    /// The concurrency limit in force for the host registered under `pattern` (or serving the
    /// host name `pattern`), if it has one: lower than the policy's after the vendor refused a
    /// call for having too many in flight.
    pub fn current_concurrency_limit(&self, pattern: &str) -> Option<u32> {
        self.serving(pattern).and_then(|h| h.limits.concurrency.as_ref()).map(|c| c.effective())
    }

    /// The rate limit in force for the host registered under `pattern` (or serving the host
    /// name `pattern`), if it has one: lower than the policy's after the vendor throttled.
    pub fn current_rate_limit(&self, pattern: &str) -> Option<u32> {
        self.serving(pattern).and_then(|h| h.limits.effective_rate())
    }
}

impl RetryLayer {
    /// One request through the engine, for a front door that is not a tower service: each
    /// attempt is a call of `svc`, and what the engine sends on its own (a login, a failover
    /// probe) goes through `detach`'s service.
    ///
    /// `svc` must be ready for its first call, as with [`Service::call`]; the engine polls it
    /// for readiness before every later attempt. Unlike [`Retry`], `svc` need not be `Clone` or
    /// `'static`: it may borrow from the caller's call (the reqwest middleware's does, to send
    /// each attempt through the rest of the caller's middleware chain).
    ///
    /// ```
    /// use http::{Request, Response};
    /// use redial_tower::{Inner, RetryBody, RetryLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let vendor = tower::service_fn(|_req: Request<RetryBody<String>>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
    /// });
    /// let res = RetryLayer::generic().drive(vendor, Inner, Request::new(String::new())).await.unwrap();
    /// assert_eq!(res.status(), 200);
    /// # }
    /// ```
    ///
    /// [`Service::call`]: tower_service::Service::call
    pub fn drive<S, B, RB, D>(&self, svc: S, detach: D, req: Request<B>) -> ResponseFuture<S, B, RB, D>
    where
        S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
        B: Body,
    {
        ResponseFuture::new(svc, detach, self.shared.clone(), req)
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer").field("hosts", &self.shared.hosts).finish_non_exhaustive()
    }
}

/// Builds a [`RetryLayer`].
#[must_use]
pub struct RetryLayerBuilder {
    hosts: Hosts,
    wall_clock: fn() -> SystemTime,
    classify_error: FailureClassifier,
    final_responses_as_ok: bool,
    seed: Option<u64>,
}

impl RetryLayerBuilder {
    /// Serve `pattern` (`api.example.com`, or `*.example.com` for every subdomain; no port)
    /// with this profile and policy. Exact hosts win over patterns, longer patterns over
    /// shorter ones. Registering a pattern again replaces its profile and policy and keeps what
    /// was attached to it ([`auth`](Self::auth), [`retry_budget`](Self::retry_budget),
    /// [`rate_limiter`](Self::rate_limiter), [`reconcile`](Self::reconcile),
    /// [`failover_probe`](Self::failover_probe)).
    pub fn host(mut self, pattern: &str, profile: impl Profile, policy: Policy) -> Result<Self, InvalidHost> {
        self.hosts.insert(pattern, Host::new(pattern, Arc::new(profile), policy))?;
        Ok(self)
    }

    /// Obtain and attach a credential for the host registered under `pattern` (exactly as it
    /// was given to [`host`](Self::host); `*` for the default host). The token is only ever put
    /// on requests to that host: clone `source` to share one login between several hosts.
    ///
    /// Login requests go through the wrapped service itself. When the vendor says the token
    /// expired, it is refreshed once for all waiting requests and the request replayed.
    pub fn auth(mut self, pattern: &str, source: TokenSource) -> Result<Self, InvalidHost> {
        let host = self.hosts.by_pattern_mut(pattern).ok_or_else(|| InvalidHost::unregistered(pattern))?;
        host.auth = Some(source);
        Ok(self)
    }

    /// Keep the retry budget of the host registered under `pattern` in `budget` instead of the
    /// in-memory one its policy describes: a store shared by a fleet, say. The policy's
    /// [`budget`](redial_core::PolicyBuilder::budget) setting is then not used for this host.
    pub fn retry_budget(mut self, pattern: &str, budget: Arc<dyn RetryBudget>) -> Result<Self, InvalidHost> {
        let host = self.hosts.by_pattern_mut(pattern).ok_or_else(|| InvalidHost::unregistered(pattern))?;
        host.budget = Some(budget);
        host.budget_given = true;
        Ok(self)
    }

    /// Pace the sends to the host registered under `pattern` with `limiter` instead of the
    /// in-memory [`SlidingWindow`](redial_core::rate::SlidingWindow) its policy describes: a
    /// store shared by a fleet, say, since a vendor's limit is the account's (Marketo's 100
    /// calls per 20 s are shared by every client of the instance). The policy's
    /// [`rate_limit`](redial_core::PolicyBuilder::rate_limit) setting is then not used for
    /// this host; its concurrency limit still is.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use redial_core::rate::{RateLimiter, SlidingWindow};
    /// use redial_tower::{Policy, RetryLayer};
    ///
    /// // One limiter for two hosts that count against the same account.
    /// let shared: Arc<dyn RateLimiter> = Arc::new(SlidingWindow::new(100, Duration::from_secs(20)));
    /// let generic = || redial_core::generic::Generic;
    /// let layer = RetryLayer::builder()
    ///     .host("eu.api.example.com", generic(), Policy::default())?
    ///     .rate_limiter("eu.api.example.com", shared.clone())?
    ///     .host("us.api.example.com", generic(), Policy::default())?
    ///     .rate_limiter("us.api.example.com", shared)?
    ///     .build();
    /// assert_eq!(layer.current_rate_limit("us.api.example.com"), Some(100));
    /// # Ok::<(), redial_tower::InvalidHost>(())
    /// ```
    pub fn rate_limiter(mut self, pattern: &str, limiter: Arc<dyn RateLimiter>) -> Result<Self, InvalidHost> {
        let host = self.hosts.by_pattern_mut(pattern).ok_or_else(|| InvalidHost::unregistered(pattern))?;
        host.limits.rate = Some(limiter);
        host.rate_given = true;
        Ok(self)
    }

    /// Ask `hook` before re-sending a call to the host registered under `pattern` that a rule
    /// says must be reconciled (Genesys `createSubCampaign`). Without a hook such a call is
    /// never re-sent, and the error says why.
    pub fn reconcile(mut self, pattern: &str, hook: impl ReconcileHook) -> Result<Self, InvalidHost> {
        let host = self.hosts.by_pattern_mut(pattern).ok_or_else(|| InvalidHost::unregistered(pattern))?;
        host.reconcile = Some(Arc::new(hook));
        Ok(self)
    }

    /// While the host registered under `pattern` is in failover mode, send `probe` on its
    /// interval; its first success returns the host to primary.
    ///
    /// Without a probe, one request that failover mode would refuse is let through every
    /// [`FAILOVER_TRIAL_INTERVAL`](crate::hooks::FAILOVER_TRIAL_INTERVAL) instead (the vendor
    /// refuses it unprocessed while failed over), and the host is back to primary when the
    /// vendor serves it.
    pub fn failover_probe(mut self, pattern: &str, probe: Probe) -> Result<Self, InvalidHost> {
        let host = self.hosts.by_pattern_mut(pattern).ok_or_else(|| InvalidHost::unregistered(pattern))?;
        host.failover.probe = Some(probe);
        Ok(self)
    }

    /// Keep the failover mode of the host registered under `pattern` in `store` as well as in
    /// this layer: a store shared with the other clients of the vendor
    /// account (other layers, other processes), since a vendor fails over an account. A
    /// request that meets the vendor's failover refusal sets it; a probe or trial request the
    /// vendor serves clears it; every request reads it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use redial_tower::hooks::{FailoverStore, InMemoryFailover};
    /// use redial_tower::{Policy, RetryLayer};
    ///
    /// // Two layers (say, for two services of one process) for one Responsys account.
    /// let account: Arc<dyn FailoverStore> = Arc::new(InMemoryFailover::default());
    /// let layer = |store: Arc<dyn FailoverStore>| {
    ///     RetryLayer::builder()
    ///         .host("api.example.com", redial_core::generic::Generic, Policy::default())?
    ///         .failover_store("api.example.com", store)
    ///         .map(|b| b.build())
    /// };
    /// let (a, b) = (layer(account.clone())?, layer(account.clone())?);
    /// account.set_failed_over(true);
    /// assert!(b.failover_mode("api.example.com").is_some_and(|m| m != redial_tower::hooks::FailoverMode::Primary));
    /// # let _ = a;
    /// # Ok::<(), redial_tower::InvalidHost>(())
    /// ```
    pub fn failover_store(mut self, pattern: &str, store: Arc<dyn FailoverStore>) -> Result<Self, InvalidHost> {
        let host = self.hosts.by_pattern_mut(pattern).ok_or_else(|| InvalidHost::unregistered(pattern))?;
        host.failover.store = Some(store);
        Ok(self)
    }

    /// Serve every other host with this profile and policy (default: the generic rules).
    pub fn default_host(mut self, profile: impl Profile, policy: Policy) -> Self {
        self.hosts.set_default(Host::new("*", Arc::new(profile), policy));
        self
    }

    /// The wall clock against which `Retry-After` HTTP-dates are measured, a login's answer's
    /// included, and a [`CredentialStore`](crate::auth::CredentialStore)'s credential's expiry
    /// is kept and read (default [`SystemTime::now`]). A test on tokio's paused clock that
    /// shares a store, or waits for a token's expiry, gives one that follows the paused clock:
    /// the real one stands still beside it, and a stored token would look good for ever.
    pub fn wall_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.wall_clock = now;
        self
    }

    /// How an inner service's error is read: did the request fail before it was sent? The
    /// default ([`classify_error`](crate::classify_error)) walks the error's sources for an
    /// `io::Error` of kind `ConnectionRefused` or `AddrNotAvailable` (connect) or `TimedOut`,
    /// and for tower's `Elapsed` (a timeout) and `Overloaded` (refused on this side, final);
    /// anything else may have reached the server. The facade's `redial::builder()` sets
    /// `redial::classify_error`, which also reads hyper-util's and reqwest's connect errors.
    pub fn failure_classifier(mut self, f: FailureClassifier) -> Self {
        self.classify_error = f;
        self
    }

    /// Return the responses redial gives up on, as reqwest and hyper return any status: a
    /// final 4xx or 5xx, a Marketo `success:false` that is not retried, a 503 whose retries
    /// are spent come back as `Ok`, their body whole (what redial read of it, then the rest),
    /// carrying a [`Report`](redial_core::Report) whose
    /// [`gave_up`](redial_core::Report::gave_up) says why.
    ///
    /// By default they come back as an [`Error`](crate::Error) that owns the response's head,
    /// the body bytes read, the vendor's errors and the attempt history. Either way nothing the
    /// vendor said is lost: the report holds the vendor errors of every attempt and each
    /// attempt's kind, the body holds the rest (an RFC 9457 problem is in it, unparsed). What is not a vendor's answer stays an error: a transport failure, a body that
    /// broke, a login that failed, no token source for a token the vendor asked for, the
    /// deadline passing while waiting, a failed-over host refusing the call.
    ///
    /// ```
    /// let layer = redial_tower::RetryLayer::builder().final_responses_as_ok().build();
    /// # let _ = layer;
    /// ```
    pub fn final_responses_as_ok(mut self) -> Self {
        self.final_responses_as_ok = true;
        self
    }

    /// Seed the jitter, for reproducible delays in tests.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Build the layer.
    pub fn build(self) -> RetryLayer {
        use redial_core::backoff::Rng;
        let seed = self.seed.unwrap_or_else(|| SplitMix64::from_entropy().next_u64());
        RetryLayer {
            shared: Arc::new(Shared {
                hosts: self.hosts,
                wall_clock: self.wall_clock,
                classify_error: self.classify_error,
                final_responses_as_ok: self.final_responses_as_ok,
                seed,
                sequence: AtomicU64::new(0),
            }),
        }
    }
}

impl fmt::Debug for RetryLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayerBuilder").field("hosts", &self.hosts).finish_non_exhaustive()
    }
}
