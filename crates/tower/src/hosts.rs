//! Which profile and policy serve a request: exact hosts, then `*.suffix` patterns, then the
//! default. Each host has its own shared state (the retry budget, the rate and concurrency
//! limits, the token source, the failover mode), shared by every clone of the service.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::Uri;
use redial_core::budget::{RatioBudget, RetryBudget};
use redial_core::{Policy, Profile};

use crate::auth::TokenSource;
use crate::hooks::{Failover, ReconcileHook};
use crate::limits::Limits;

/// A host's profile, policy and shared state.
pub(crate) struct Host {
    pub(crate) pattern: Arc<str>,
    pub(crate) profile: Arc<dyn Profile>,
    pub(crate) policy: Policy,
    pub(crate) budget: Option<Arc<dyn RetryBudget>>,
    /// Whether `budget` was given by the user (kept when the pattern is registered again).
    pub(crate) budget_given: bool,
    /// Whether the rate limiter in `limits` was given by the user (kept likewise).
    pub(crate) rate_given: bool,
    pub(crate) auth: Option<TokenSource>,
    pub(crate) limits: Limits,
    pub(crate) failover: Failover,
    pub(crate) reconcile: Option<Arc<dyn ReconcileHook>>,
    /// Whether an encoded body the profile wanted to read was warned of (once per host).
    pub(crate) warned_encoded: std::sync::atomic::AtomicBool,
}

impl Host {
    pub(crate) fn new(pattern: &str, profile: Arc<dyn Profile>, policy: Policy) -> Self {
        let limits = Limits::new(policy.rate_limit(), policy.max_concurrency());
        let budget = policy.budget().map(|c| Arc::new(RatioBudget::new(*c)) as Arc<dyn RetryBudget>);
        Host {
            pattern: pattern.into(),
            profile,
            policy,
            budget,
            budget_given: false,
            rate_given: false,
            auth: None,
            limits,
            failover: Failover::default(),
            reconcile: None,
            warned_encoded: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Host {
    /// `self`, with what was attached to `old`'s pattern moved over.
    fn attachments_from(mut self, old: &mut Host) -> Host {
        self.auth = self.auth.take().or_else(|| old.auth.take());
        self.reconcile = self.reconcile.take().or_else(|| old.reconcile.take());
        if old.budget_given && !self.budget_given {
            self.budget = old.budget.take();
            self.budget_given = true;
        }
        if old.rate_given && !self.rate_given {
            self.limits.rate = old.limits.rate.take();
            self.rate_given = true;
        }
        if self.failover.probe.is_none() {
            self.failover.probe = old.failover.probe.take();
        }
        if self.failover.store.is_none() {
            self.failover.store = old.failover.store.take();
        }
        self
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("pattern", &self.pattern)
            .field("profile", &self.profile.name())
            .field("policy", &self.policy)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// A host pattern was not of the form `host.example.com` or `*.example.com` (a host name or
/// an IP address, without a port: patterns match the URI's host alone), or nothing was
/// registered under the pattern a token source, a retry budget, a rate limiter, a reconcile
/// hook or a probe was given for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHost {
    pattern: String,
    unregistered: bool,
}

impl InvalidHost {
    pub(crate) fn malformed(pattern: &str) -> Self {
        InvalidHost { pattern: pattern.to_owned(), unregistered: false }
    }

    pub(crate) fn unregistered(pattern: &str) -> Self {
        InvalidHost { pattern: pattern.to_owned(), unregistered: true }
    }

    /// The pattern as it was given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

impl fmt::Display for InvalidHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unregistered {
            write!(f, "no host is registered under {:?}: register it first (`host`, `vendor_at`)", self.pattern)
        } else {
            write!(
                f,
                "invalid host pattern {:?}: expected `host.example.com` or `*.example.com`, without a port or a trailing dot",
                self.pattern
            )
        }
    }
}

impl std::error::Error for InvalidHost {}

/// Index of a host in its [`Hosts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostId(usize);

#[derive(Debug)]
pub(crate) struct Hosts {
    all: Vec<Host>,
    exact: HashMap<Box<str>, HostId>,
    /// `(".example.com", host)`, longest suffix first.
    suffixes: Vec<(Box<str>, HostId)>,
}

/// The default host is always the first.
const DEFAULT: HostId = HostId(0);

impl Hosts {
    pub(crate) fn new(default: Host) -> Self {
        Hosts { all: vec![default], exact: HashMap::new(), suffixes: Vec::new() }
    }

    /// Serve every other host with `host`, keeping what was attached to the default before.
    pub(crate) fn set_default(&mut self, host: Host) {
        self.all[DEFAULT.0] = host.attachments_from(&mut self.all[DEFAULT.0]);
    }

    /// The host registered under exactly this pattern (`*` for the default).
    pub(crate) fn by_pattern_mut(&mut self, pattern: &str) -> Option<&mut Host> {
        self.all.iter_mut().rev().find(|h| h.pattern.eq_ignore_ascii_case(pattern))
    }

    pub(crate) fn by_pattern(&self, pattern: &str) -> Option<&Host> {
        self.all.iter().rev().find(|h| h.pattern.eq_ignore_ascii_case(pattern))
    }

    pub(crate) fn get(&self, id: HostId) -> &Host {
        &self.all[id.0]
    }

    /// Register `host` under `pattern`. A pattern registered before is served by `host` from
    /// now on, and keeps what was attached to it (a token source, a retry budget or rate
    /// limiter given by the user, a reconcile hook, a probe).
    pub(crate) fn insert(&mut self, pattern: &str, host: Host) -> Result<(), InvalidHost> {
        let invalid = || InvalidHost::malformed(pattern);
        // A port never matches (the URI's host has none); an IPv6 literal keeps its colons
        // inside its brackets.
        let bracketed = pattern.starts_with('[') && pattern.ends_with(']');
        if pattern.contains(':') && !bracketed {
            return Err(invalid());
        }
        if let Some(old) = self.all.iter_mut().skip(1).find(|h| h.pattern.eq_ignore_ascii_case(pattern)) {
            *old = host.attachments_from(old);
            return Ok(());
        }
        let lower = pattern.to_ascii_lowercase();
        let key: Box<str>;
        let exact = match lower.strip_prefix('*') {
            Some(suffix) => {
                let valid = suffix.len() > 1
                    && suffix.starts_with('.')
                    && !suffix.ends_with('.')
                    && !suffix.contains(['*', '/', ' '])
                    && !suffix.contains("..");
                if !valid {
                    return Err(invalid());
                }
                key = suffix.into();
                false
            }
            None => {
                // A host written with its root's dot (`localhost.`) is looked up without it: a
                // pattern with one would never match.
                if lower.is_empty() || lower.ends_with('.') || lower.contains(['*', '/', ' ']) {
                    return Err(invalid());
                }
                key = lower.into();
                true
            }
        };
        let id = HostId(self.all.len());
        self.all.push(host);
        if exact {
            self.exact.insert(key, id);
        } else {
            self.suffixes.retain(|(s, _)| *s != key);
            self.suffixes.push((key, id));
            self.suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        }
        Ok(())
    }

    pub(crate) fn lookup(&self, uri: &Uri) -> HostId {
        if self.all.len() == 1 {
            return DEFAULT;
        }
        let Some(host) = uri.host() else { return DEFAULT };
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if let Some(id) = self.exact.get(host) {
            return *id;
        }
        self.suffixes
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(&**suffix))
            .map_or(DEFAULT, |(_, id)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redial_core::generic::Generic;

    fn host(name: &str) -> Host {
        Host::new(name, Arc::new(Generic), Policy::default())
    }

    #[test]
    fn exact_then_longest_suffix_then_default() {
        let mut hosts = Hosts::new(host("default"));
        hosts.insert("*.example.com", host("*.example.com")).unwrap();
        hosts.insert("*.api.example.com", host("*.api.example.com")).unwrap();
        hosts.insert("special.api.example.com", host("special")).unwrap();
        for (uri, want) in [
            ("https://a.example.com/x", "*.example.com"),
            ("https://A.EXAMPLE.com/x", "*.example.com"),
            ("https://a.example.com./x", "*.example.com"),
            ("https://b.api.example.com/x", "*.api.example.com"),
            ("https://special.api.example.com/x", "special"),
            ("https://example.com/x", "default"),
            ("https://notexample.com/x", "default"),
            ("/relative", "default"),
        ] {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(&*hosts.get(hosts.lookup(&uri)).pattern, want, "{uri}");
        }
    }

    #[test]
    fn a_pattern_registered_again_keeps_what_was_attached_to_it() {
        let mut hosts = Hosts::new(host("default"));
        hosts.insert("*.mktorest.com", host("*.mktorest.com")).unwrap();
        let source = TokenSource::from_fn(redial_core::auth::Attach::Bearer, || async {
            Ok::<_, redial_core::auth::LoginError>(redial_core::auth::Credential::new("t", None))
        });
        hosts.by_pattern_mut("*.mktorest.com").unwrap().auth = Some(source);
        let store: Arc<dyn crate::hooks::FailoverStore> = Arc::new(crate::hooks::InMemoryFailover::default());
        hosts.by_pattern_mut("*.mktorest.com").unwrap().failover.store = Some(store.clone());
        let stricter = Policy::builder().max_attempts(2).build().unwrap();
        hosts.insert("*.MKTOREST.com", Host::new("*.MKTOREST.com", Arc::new(Generic), stricter)).unwrap();
        let uri: Uri = "https://123-abc-456.mktorest.com/rest".parse().unwrap();
        let served = hosts.get(hosts.lookup(&uri));
        assert_eq!(served.policy.max_attempts(), 2, "the new policy serves");
        assert!(served.auth.is_some(), "the token source stays");
        store.set_failed_over(true);
        assert_ne!(
            served.failover.mode(&served.pattern),
            crate::hooks::FailoverMode::Primary,
            "the failover store stays"
        );
        assert_eq!(hosts.all.len(), 2, "replaced, not added");

        // The default too.
        hosts.all[0].auth = hosts.all[1].auth.clone();
        hosts.set_default(host("*"));
        assert!(hosts.all[0].auth.is_some());
    }

    /// `RetryLayerBuilder::host` says a pattern registered again keeps its retry budget, rate
    /// limiter, reconcile hook and probe, not only its token source: the ones the user gave,
    /// not the in-memory ones its old policy made.
    #[test]
    fn a_pattern_registered_again_keeps_its_budget_limiter_hook_and_probe() {
        use redial_core::budget::BudgetConfig;
        use redial_core::rate::{RateLimiter, SlidingWindow};
        let mut hosts = Hosts::new(host("default"));
        hosts.insert("api.example.com", host("api.example.com")).unwrap();
        let budget: Arc<dyn RetryBudget> = Arc::new(RatioBudget::new(BudgetConfig::default()));
        let limiter: Arc<dyn RateLimiter> = Arc::new(SlidingWindow::new(7, std::time::Duration::from_secs(1)));
        let h = hosts.by_pattern_mut("api.example.com").unwrap();
        (h.budget, h.budget_given) = (Some(budget.clone()), true);
        (h.limits.rate, h.rate_given) = (Some(limiter.clone()), true);
        h.reconcile = Some(Arc::new(|_: crate::hooks::ReconcileRequest| async { crate::hooks::Verdict::NotApplied }));
        h.failover.probe = Some(crate::hooks::Probe::new(std::time::Duration::from_secs(42), || {
            http::Request::new(bytes::Bytes::new())
        }));

        let own = Policy::builder().rate_limit(100, std::time::Duration::from_secs(20)).build().unwrap();
        hosts.insert("api.example.com", Host::new("api.example.com", Arc::new(Generic), own)).unwrap();
        let served = hosts.by_pattern("api.example.com").unwrap();
        assert!(Arc::ptr_eq(served.budget.as_ref().unwrap(), &budget), "the budget stays");
        assert!(Arc::ptr_eq(served.limits.rate.as_ref().unwrap(), &limiter), "the rate limiter stays");
        assert_eq!(served.limits.effective_rate(), Some(7));
        assert!(served.reconcile.is_some(), "the reconcile hook stays");
        assert_eq!(served.failover.probe.as_ref().map(|p| p.interval()), Some(std::time::Duration::from_secs(42)));

        // Without a budget or limiter of the user's, the new policy's own serve.
        hosts.insert("plain.example.com", host("plain.example.com")).unwrap();
        let own = Policy::builder().rate_limit(100, std::time::Duration::from_secs(20)).build().unwrap();
        hosts.insert("plain.example.com", Host::new("plain.example.com", Arc::new(Generic), own)).unwrap();
        assert_eq!(hosts.by_pattern("plain.example.com").unwrap().limits.effective_rate(), Some(100));
    }

    #[test]
    fn patterns_are_validated() {
        let mut hosts = Hosts::new(host("default"));
        for bad in ["", "*", "*.", "*example.com", "a.*.com", "**.x.com", "*..com", "a/b", "localhost.", "x.com."] {
            assert!(hosts.insert(bad, host(bad)).is_err(), "{bad:?}");
        }
        for bad in ["x.com:8443", "*.x.com:443", "127.0.0.1:80", "::1"] {
            assert!(hosts.insert(bad, host(bad)).is_err(), "{bad:?}");
        }
        for good in ["x.com", "*.x.com", "localhost", "127.0.0.1", "[::1]"] {
            assert!(hosts.insert(good, host(good)).is_ok(), "{good:?}");
        }
    }
}
