//! The decision: a classification weighed against the policy, the history, the deadline and
//! the budget. A plain function; the async driver only carries its result out.

use std::fmt;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::backoff::Rng;
use crate::budget::RetryBudget;
use crate::classify::{Advice, Classification, Failure, RetryRule, Rewrite, Safety};
use crate::hint::ServerHint;
use crate::{Action, Kind, Policy};

/// One attempt of a logical request, as the history and the [`Report`](crate::Report) keep it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1-based attempt number.
    pub number: u32,
    /// The response status, when there was a response.
    pub status: Option<StatusCode>,
    /// Why there was no response, when there was none.
    pub failure: Option<Failure>,
    /// The first vendor error code of the response, if any.
    pub code: Option<String>,
    /// What happened.
    pub kind: Kind,
    /// What redial did next.
    pub action: Action,
    /// The retry rule that matched, if the action was a retry.
    pub rule: Option<&'static str>,
    /// The wait decided before the next attempt, if there was one; the host's limiter or a
    /// login can make the next attempt start later (see [`elapsed`](Self::elapsed)).
    pub delay: Option<Duration>,
    /// Time since the logical request started when this attempt was sent: after the delay
    /// decided before it, and after any wait for the host's rate or concurrency limiter, a
    /// login, a reconcile hook or the inner service's readiness (and, for the first, for the
    /// caller's request body to be read whole). `None` for an attempt recorded outside the
    /// engine ([`Attempt::new`] alone; see [`with_sent`](Self::with_sent)).
    pub sent: Option<Duration>,
    /// Time since the logical request started when this attempt's outcome was known.
    pub elapsed: Duration,
}

impl Attempt {
    /// Record an attempt from its classification and the decision taken.
    pub fn new(
        number: u32,
        status: Option<StatusCode>,
        failure: Option<Failure>,
        c: &Classification,
        d: &Decision,
        elapsed: Duration,
    ) -> Self {
        Attempt {
            number,
            status,
            failure,
            code: c.code().map(str::to_owned),
            kind: c.kind,
            action: d.action(),
            rule: match (&c.advice, d) {
                (Advice::Retry(rule), Decision::Retry { .. }) => Some(rule.name()),
                _ => None,
            },
            delay: match d {
                Decision::Retry { after, .. } => Some(*after),
                _ => None,
            },
            sent: None,
            elapsed,
        }
    }

    /// The attempt, sent `sent` after the logical request started.
    pub fn with_sent(mut self, sent: Duration) -> Self {
        self.sent = Some(sent);
        self
    }

    /// How long this attempt waited to be sent beyond the delay decided before it (`previous`
    /// is the attempt before it, `None` for the first): the time the host's limiter, a login,
    /// a reconcile hook or the inner service's readiness held it (the first: also the
    /// reading of the caller's request body). `None` if it was recorded without its send time.
    pub fn held(&self, previous: Option<&Attempt>) -> Option<Duration> {
        let ready = match previous {
            Some(p) => p.elapsed + p.delay.unwrap_or_default(),
            None => Duration::ZERO,
        };
        Some(self.sent?.saturating_sub(ready))
    }
}

/// Why a request cannot be sent again.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReplayable {
    /// The body is a stream of unknown length: it was sent as it came and not kept.
    Streaming,
    /// The body is longer than the policy's replay limit.
    TooLarge {
        /// The replay limit, in bytes.
        limit: usize,
    },
}

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReplayable::Streaming => {
                f.write_str("the request body is a stream of unknown length, sent once and not kept")
            }
            NotReplayable::TooLarge { limit } => {
                write!(f, "the request body is larger than the replay limit ({limit} bytes)")
            }
        }
    }
}

/// Why redial gave up.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The vendor's rule says this outcome is final.
    Final,
    /// The policy's attempt limit was reached.
    AttemptsExhausted {
        /// The limit.
        max: u32,
    },
    /// The matching rule's own retry limit was reached (e.g. "resubmit only once").
    RuleExhausted {
        /// The rule.
        rule: &'static str,
        /// Retries already made under it.
        retries: u32,
    },
    /// The wait before the next attempt would end past the deadline.
    DeadlineExceeded {
        /// The wait that was wanted.
        wait: Duration,
        /// The time left before the deadline.
        remaining: Duration,
    },
    /// The server asked for a longer wait than redial will sleep.
    HintExceedsLimit {
        /// The server's hint.
        hint: ServerHint,
        /// The limit it exceeded: the `Retry-After` cap, or the time left before the deadline.
        limit: Duration,
        /// Whether the limit was the deadline (else the cap).
        deadline: bool,
    },
    /// The host's retry budget is spent.
    BudgetExhausted,
    /// The request cannot be replayed.
    NotReplayable(NotReplayable),
    /// The request may have reached the server and is not idempotent.
    NotIdempotent,
    /// The credential was refreshed as often as the policy allows.
    AuthRefreshExhausted {
        /// The limit.
        max: u32,
    },
    /// The request was already rewritten once.
    RewriteExhausted,
    /// A rule asks for reconciliation and no hook is registered for this request.
    NoReconcileHook,
    /// The vendor asks for a new credential and no token source can give this request one.
    NoTokenSource,
}

/// A duration as a person reads it: to the millisecond (`10.1s`, not `10.09999301s`); one
/// under a millisecond as it is.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d < Duration::from_millis(1) {
            return write!(f, "{d:?}");
        }
        let ms = d.as_micros().saturating_add(500) / 1000;
        write!(f, "{:?}", Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Final => f.write_str("the vendor's rule says this is final"),
            FailReason::AttemptsExhausted { max } => {
                write!(f, "gave up after {max} attempt{}", if *max == 1 { "" } else { "s" })
            }
            FailReason::RuleExhausted { rule, retries } => {
                write!(f, "rule {rule} allows no more than {retries} retr{}", if *retries == 1 { "y" } else { "ies" })
            }
            FailReason::DeadlineExceeded { remaining, .. } if remaining.is_zero() => {
                f.write_str("the deadline has passed")
            }
            FailReason::DeadlineExceeded { wait, remaining } => {
                write!(f, "waiting {} would pass the deadline ({} left)", Millis(*wait), Millis(*remaining))
            }
            FailReason::HintExceedsLimit { hint, limit, deadline } => write!(
                f,
                "the server asked to wait {}, more than {} ({})",
                Millis(hint.delay),
                if *deadline { "the time left before the deadline" } else { "the Retry-After cap" },
                Millis(*limit)
            ),
            FailReason::BudgetExhausted => f.write_str("the host's retry budget is spent"),
            FailReason::NotReplayable(why) => write!(f, "not retried: {why}"),
            FailReason::NotIdempotent => {
                f.write_str("not retried: the request may have reached the server and is not idempotent")
            }
            FailReason::AuthRefreshExhausted { max } => {
                write!(f, "the credential was already refreshed {max} times")
            }
            FailReason::RewriteExhausted => f.write_str("the request was already rewritten once"),
            FailReason::NoTokenSource => {
                f.write_str("the vendor asked for a new credential and no token source is configured")
            }
            FailReason::NoReconcileHook => {
                f.write_str("not retried: the rule asks to reconcile and no reconcile hook is registered")
            }
        }
    }
}

/// What redial does next.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Hand the response to the caller.
    Return,
    /// Wait `after`, then send again.
    Retry {
        /// The wait.
        after: Duration,
        /// The range `after` was drawn from (equal ends for hints and fixed delays), its upper
        /// end held below the deadline: a longer draw fails the request instead.
        range: (Duration, Duration),
    },
    /// Refresh the credential, then replay.
    RefreshAuth,
    /// Rewrite the request, then replay.
    Rewrite(Rewrite),
    /// Ask the reconcile hook.
    Reconcile,
    /// Give up.
    Fail(FailReason),
}

impl Decision {
    /// The action word of this decision.
    pub fn action(&self) -> Action {
        match self {
            Decision::Return => Action::Return,
            Decision::Retry { .. } => Action::Retry,
            Decision::RefreshAuth => Action::RefreshAuth,
            Decision::Rewrite(_) => Action::Rewrite,
            Decision::Reconcile => Action::Reconcile,
            Decision::Fail(_) => Action::Fail,
        }
    }
}

/// Everything about the request and its past that a decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The 1-based number of the attempt whose outcome is being decided.
    pub attempt: u32,
    /// The attempts before it.
    pub history: &'a [Attempt],
    /// The host's policy.
    pub policy: &'a Policy,
    /// Whether the request may be re-sent after it may have reached the server.
    pub idempotent: bool,
    /// Whether the request can be sent again at all.
    pub replayable: Result<(), NotReplayable>,
    /// Time since the logical request started.
    pub elapsed: Duration,
    /// Whether a reconcile hook is registered for this request.
    pub can_reconcile: bool,
    /// Whether a token source can give this request a new credential: one serves its host,
    /// and the attempt carried its token.
    pub can_refresh_auth: bool,
}

/// Decide what to do with a classified outcome.
///
/// Checks run from the most forbidding down, and the budget is withdrawn from only when every
/// other check allows a retry: replayability, a deadline already passed, idempotency, the
/// attempt limit, the rule's own limit, the hint cap, the deadline the wait would cross, then
/// the budget. A token refresh, a rewrite or a reconcile is refused too once the deadline has
/// passed: the attempt it leads to would have no time at all.
///
/// ```
/// use std::time::{Duration, Instant};
/// use redial_core::*;
/// use redial_core::backoff::SplitMix64;
///
/// let policy = Policy::default();
/// let c = Classification::retry(Kind::Transient, RetryRule::new("generic.502"), "bad gateway");
/// let ctx = Context {
///     attempt: 1, history: &[], policy: &policy, idempotent: true, replayable: Ok(()),
///     elapsed: Duration::ZERO, can_reconcile: false, can_refresh_auth: false,
/// };
/// let d = decide(&c, &ctx, None, Instant::now(), &mut SplitMix64::seeded(1));
/// assert_eq!(d.action(), Action::Retry);
///
/// // The same outcome for a POST that may have reached the server:
/// let ctx = Context { idempotent: false, ..ctx };
/// let d = decide(&c, &ctx, None, Instant::now(), &mut SplitMix64::seeded(1));
/// assert_eq!(d, Decision::Fail(FailReason::NotIdempotent));
/// ```
pub fn decide(
    c: &Classification,
    ctx: &Context<'_>,
    budget: Option<&dyn RetryBudget>,
    now: Instant,
    rng: &mut dyn Rng,
) -> Decision {
    let policy = ctx.policy;
    let count = |action: Action| ctx.history.iter().filter(|a| a.action == action).count() as u32;
    let past_deadline = policy.deadline().is_some_and(|d| ctx.elapsed >= d);
    let deadline_passed =
        || Decision::Fail(FailReason::DeadlineExceeded { wait: Duration::ZERO, remaining: Duration::ZERO });
    match &c.advice {
        Advice::Return => Decision::Return,
        Advice::Fail => Decision::Fail(FailReason::Final),
        Advice::Retry(rule) => retry(c, rule, ctx, budget, now, rng),
        Advice::RefreshAuth => {
            if !ctx.can_refresh_auth {
                return Decision::Fail(FailReason::NoTokenSource);
            }
            if let Err(why) = ctx.replayable {
                return Decision::Fail(FailReason::NotReplayable(why));
            }
            if count(Action::RefreshAuth) >= policy.max_auth_refreshes() {
                return Decision::Fail(FailReason::AuthRefreshExhausted { max: policy.max_auth_refreshes() });
            }
            if ctx.attempt >= policy.max_attempts() {
                return Decision::Fail(FailReason::AttemptsExhausted { max: policy.max_attempts() });
            }
            if past_deadline {
                return deadline_passed();
            }
            Decision::RefreshAuth
        }
        Advice::Rewrite(rewrite) => {
            if let Err(why) = ctx.replayable {
                return Decision::Fail(FailReason::NotReplayable(why));
            }
            if count(Action::Rewrite) >= 1 {
                return Decision::Fail(FailReason::RewriteExhausted);
            }
            if ctx.attempt >= policy.max_attempts() {
                return Decision::Fail(FailReason::AttemptsExhausted { max: policy.max_attempts() });
            }
            if past_deadline {
                return deadline_passed();
            }
            Decision::Rewrite(*rewrite)
        }
        Advice::Reconcile => {
            if !ctx.can_reconcile {
                Decision::Fail(FailReason::NoReconcileHook)
            } else if let Err(why) = ctx.replayable {
                // The hook is asked about the request as it was sent, body included, and a call
                // that had not taken effect is sent again: both need the body.
                Decision::Fail(FailReason::NotReplayable(why))
            } else if count(Action::Reconcile) >= 1 {
                Decision::Fail(FailReason::Final)
            } else if ctx.attempt >= policy.max_attempts() {
                Decision::Fail(FailReason::AttemptsExhausted { max: policy.max_attempts() })
            } else if past_deadline {
                deadline_passed()
            } else {
                Decision::Reconcile
            }
        }
    }
}

fn retry(
    c: &Classification,
    rule: &RetryRule,
    ctx: &Context<'_>,
    budget: Option<&dyn RetryBudget>,
    now: Instant,
    rng: &mut dyn Rng,
) -> Decision {
    let policy = ctx.policy;
    if let Err(why) = ctx.replayable {
        return Decision::Fail(FailReason::NotReplayable(why));
    }
    // An attempt cut by the deadline failed for want of time: that is the reason, for any method.
    if policy.deadline().is_some_and(|d| ctx.elapsed >= d) {
        return Decision::Fail(FailReason::DeadlineExceeded { wait: Duration::ZERO, remaining: Duration::ZERO });
    }
    if rule.safety() == Safety::IdempotentOnly && !ctx.idempotent {
        return Decision::Fail(FailReason::NotIdempotent);
    }
    if ctx.attempt >= policy.max_attempts() {
        return Decision::Fail(FailReason::AttemptsExhausted { max: policy.max_attempts() });
    }
    let retries = ctx.history.iter().filter(|a| a.action == Action::Retry).count() as u32;
    let rule_retries = ctx.history.iter().filter(|a| a.rule == Some(rule.name())).count() as u32;
    if let Some(max) = rule.max_retries() {
        if rule_retries >= max {
            return Decision::Fail(FailReason::RuleExhausted { rule: rule.name(), retries: rule_retries });
        }
    }

    let hint = c.hint.filter(|_| rule.uses_hint());
    let (after, range) = match hint {
        Some(hint) if hint.delay > policy.retry_after_cap() => {
            return Decision::Fail(FailReason::HintExceedsLimit {
                hint,
                limit: policy.retry_after_cap(),
                deadline: false,
            });
        }
        Some(hint) => {
            let d = hint.delay.max(rule.min_delay_ref());
            (d, (d, d))
        }
        None => {
            let backoff = rule.backoff_ref().unwrap_or(policy.backoff());
            // A schedule is indexed by retries under this rule; growth by all retries so far.
            let index = if backoff.max_retries().is_some() { rule_retries } else { retries };
            let previous = ctx.history.iter().rev().find_map(|a| a.delay);
            let (Some(after), Some((lo, hi))) = (backoff.delay(index, previous, rng), backoff.bounds(index, previous))
            else {
                return Decision::Fail(FailReason::RuleExhausted { rule: rule.name(), retries: rule_retries });
            };
            let min = rule.min_delay_ref();
            (after.max(min), (lo.max(min), hi.max(min)))
        }
    };

    let mut range = range;
    if let Some(deadline) = policy.deadline() {
        let remaining = deadline.saturating_sub(ctx.elapsed);
        if after >= remaining {
            return match hint {
                Some(hint) => Decision::Fail(FailReason::HintExceedsLimit { hint, limit: remaining, deadline: true }),
                None => Decision::Fail(FailReason::DeadlineExceeded { wait: after, remaining }),
            };
        }
        // `after` < `remaining`, and `after` ≥ the range's lower end: the range stays whole.
        range.1 = range.1.min(remaining - Duration::from_nanos(1));
    }
    if let Some(budget) = budget {
        if !budget.withdraw(now) {
            return Decision::Fail(FailReason::BudgetExhausted);
        }
    }
    Decision::Retry { after, range }
}
