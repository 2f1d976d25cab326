//! The decision, check by check: limits, hints, deadline and budget.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use redial_core::backoff::{Backoff, SplitMix64};
use redial_core::budget::{BudgetConfig, RatioBudget};
use redial_core::hint::{HintSource, ServerHint};
use redial_core::*;

const S: Duration = Duration::from_secs(1);

fn ctx<'a>(policy: &'a Policy, history: &'a [Attempt], elapsed: Duration) -> Context<'a> {
    Context {
        attempt: history.len() as u32 + 1,
        history,
        policy,
        idempotent: true,
        replayable: Ok(()),
        elapsed,
        can_reconcile: false,
        can_refresh_auth: true,
    }
}

fn run(c: &Classification, ctx: &Context<'_>) -> Decision {
    decide(c, ctx, None, Instant::now(), &mut SplitMix64::seeded(9))
}

fn retried(rule: &'static str, n: u32) -> Vec<Attempt> {
    let c = Classification::retry(Kind::Transient, RetryRule::new(rule), "x");
    (1..=n).map(|i| Attempt::new(i, None, None, &c, &Decision::Retry { after: S, range: (S, S) }, S * i)).collect()
}

fn hinted(secs: u64) -> Classification {
    Classification::retry(Kind::Throttled, RetryRule::new("t"), "x")
        .with_hint(Some(ServerHint { delay: S * secs as u32, source: HintSource::RetryAfter }))
}

#[test]
fn stops_at_max_attempts() {
    let p = Policy::builder().max_attempts(3).build().unwrap();
    let c = Classification::retry(Kind::Transient, RetryRule::new("r"), "x");
    assert_eq!(run(&c, &ctx(&p, &retried("r", 1), S)).action(), Action::Retry);
    assert_eq!(run(&c, &ctx(&p, &retried("r", 2), S)), Decision::Fail(FailReason::AttemptsExhausted { max: 3 }));
}

#[test]
fn rule_limit_counts_only_its_own_retries() {
    let p = Policy::builder().max_attempts(10).build().unwrap();
    let once = Classification::retry(Kind::Transient, RetryRule::new("once").max(1), "x");
    assert_eq!(run(&once, &ctx(&p, &retried("other", 3), S)).action(), Action::Retry);
    assert_eq!(
        run(&once, &ctx(&p, &retried("once", 1), S)),
        Decision::Fail(FailReason::RuleExhausted { rule: "once", retries: 1 })
    );
}

/// Exponential growth follows the retries so far, whatever their rule; a refresh is not one.
#[test]
fn exponential_growth_counts_the_retries_so_far() {
    let p = Policy::builder().max_attempts(10).deadline(S * 3600).build().unwrap();
    let backoff = Backoff::exponential_with(S, S * 60, backoff::Jitter::None).unwrap();
    let c = Classification::retry(Kind::Transient, RetryRule::new("r").backoff(backoff), "x");
    let expired = Classification::new(Kind::AuthExpired, Advice::RefreshAuth, "x");
    let mut history = retried("other", 1);
    history.push(Attempt::new(2, None, None, &expired, &Decision::RefreshAuth, S));
    let retry = Classification::retry(Kind::Transient, RetryRule::new("r"), "x");
    history.push(Attempt::new(3, None, None, &retry, &Decision::Retry { after: S, range: (S, S) }, S * 3));
    // Two retries so far: 1 s × 2².
    assert_eq!(run(&c, &ctx(&p, &history, S)), Decision::Retry { after: S * 4, range: (S * 4, S * 4) });
}

#[test]
fn schedule_gives_its_delays_then_stops() {
    let p = Policy::builder().max_attempts(10).deadline(S * 3600).build().unwrap();
    let rule = RetryRule::new("sched").backoff(Backoff::schedule([S * 120; 3])).any_method();
    let c = Classification::retry(Kind::Transient, rule, "x");
    let mut history = Vec::new();
    for i in 1..=3 {
        let d = run(&c, &ctx(&p, &history, S * 200 * i));
        assert_eq!(d, Decision::Retry { after: S * 120, range: (S * 120, S * 120) }, "retry {i}");
        history.push(Attempt::new(i, None, None, &c, &d, S));
    }
    assert_eq!(run(&c, &ctx(&p, &history, S)), Decision::Fail(FailReason::RuleExhausted { rule: "sched", retries: 3 }));
}

#[test]
fn hint_over_the_cap_fails_with_the_hint() {
    let p = Policy::builder().retry_after_cap(S * 60).deadline(S * 3600).build().unwrap();
    assert_eq!(run(&hinted(60), &ctx(&p, &[], Duration::ZERO)).action(), Action::Retry);
    let d = run(&hinted(61), &ctx(&p, &[], Duration::ZERO));
    let Decision::Fail(FailReason::HintExceedsLimit { hint, limit, deadline: false }) = d else { panic!("{d:?}") };
    assert_eq!((hint.delay, limit), (S * 61, S * 60));
}

#[test]
fn hint_past_the_deadline_fails_with_the_hint() {
    let p = Policy::builder().deadline(S * 10).build().unwrap();
    let d = run(&hinted(5), &ctx(&p, &[], S * 6));
    assert_eq!(
        d,
        Decision::Fail(FailReason::HintExceedsLimit {
            hint: ServerHint { delay: S * 5, source: HintSource::RetryAfter },
            limit: S * 4,
            deadline: true
        })
    );
}

#[test]
fn backoff_past_the_deadline_fails() {
    let p = Policy::builder().deadline(S * 10).build().unwrap();
    let c = Classification::retry(Kind::Transient, RetryRule::new("r").backoff(Backoff::constant(S * 3)), "x");
    assert_eq!(run(&c, &ctx(&p, &[], S * 6)).action(), Action::Retry);
    assert_eq!(
        run(&c, &ctx(&p, &[], S * 8)),
        Decision::Fail(FailReason::DeadlineExceeded { wait: S * 3, remaining: S * 2 })
    );
}

/// A jittered backoff whose range runs past the deadline: the retry goes ahead for the draw
/// that fits, and the range it reports ends before the deadline (a longer draw would fail).
#[test]
fn a_retry_range_ends_before_the_deadline() {
    let p = Policy::builder().deadline(S * 10).build().unwrap();
    let backoff = Backoff::exponential(S * 8, S * 8).unwrap();
    let c = Classification::retry(Kind::Transient, RetryRule::new("r").backoff(backoff), "x");
    let left = S * 3;
    let retry = (0..64)
        .map(|seed| decide(&c, &ctx(&p, &[], S * 10 - left), None, Instant::now(), &mut SplitMix64::seeded(seed)))
        .find(|d| d.action() == Action::Retry)
        .expect("some draw of full jitter over 0..8 s fits in 3 s");
    let Decision::Retry { after, range } = retry else { unreachable!() };
    assert!(range.0 <= after && after <= range.1);
    assert!(range.1 < left, "{range:?} runs past the {left:?} left");
}

#[test]
fn min_delay_raises_short_hints() {
    let p = Policy::default();
    let c = Classification::retry(Kind::Throttled, RetryRule::new("r").min_delay(S * 60), "x")
        .with_hint(Some(ServerHint { delay: S, source: HintSource::RetryAfter }));
    assert_eq!(run(&c, &ctx(&p, &[], Duration::ZERO)), Decision::Retry { after: S * 60, range: (S * 60, S * 60) });
}

/// A rule that ignores hints (`RetryRule::ignore_hint`) waits its backoff, whatever the server
/// asked: a `Retry-After` over the cap fails nothing, and a short one is not taken.
#[test]
fn a_rule_that_ignores_hints_waits_its_backoff() {
    let p = Policy::builder().retry_after_cap(S * 60).build().unwrap();
    let rule = RetryRule::new("r").backoff(Backoff::constant(S * 7)).ignore_hint();
    for secs in [1, 3600] {
        let c = Classification::retry(Kind::Throttled, rule.clone(), "x")
            .with_hint(Some(ServerHint { delay: S * secs, source: HintSource::RetryAfter }));
        assert_eq!(run(&c, &ctx(&p, &[], Duration::ZERO)), Decision::Retry { after: S * 7, range: (S * 7, S * 7) });
    }
}

#[test]
fn forbidding_checks_come_first() {
    let p = Policy::default();
    let c = Classification::retry(Kind::Transient, RetryRule::new("r"), "x");
    let mut x = ctx(&p, &[], Duration::ZERO);
    x.replayable = Err(NotReplayable::Streaming);
    assert_eq!(run(&c, &x), Decision::Fail(FailReason::NotReplayable(NotReplayable::Streaming)));
    let mut x = ctx(&p, &[], Duration::ZERO);
    x.idempotent = false;
    assert_eq!(run(&c, &x), Decision::Fail(FailReason::NotIdempotent));
    let any = Classification::retry(Kind::Transient, RetryRule::new("r").any_method(), "x");
    assert_eq!(run(&any, &x).action(), Action::Retry);
}

#[test]
fn budget_is_withdrawn_only_when_everything_else_allows() {
    let p = Policy::builder().max_attempts(2).build().unwrap();
    let budget = RatioBudget::new(BudgetConfig::new(0.0, 1, S));
    let c = Classification::retry(Kind::Transient, RetryRule::new("r"), "x");
    let now = Instant::now();
    let mut rng = SplitMix64::seeded(1);
    // Refused for attempts: the budget is untouched.
    assert_eq!(decide(&c, &ctx(&p, &retried("r", 1), S), Some(&budget), now, &mut rng).action(), Action::Fail);
    assert_eq!(budget.available(now), 1.0);
    assert_eq!(decide(&c, &ctx(&p, &[], S), Some(&budget), now, &mut rng).action(), Action::Retry);
    assert_eq!(decide(&c, &ctx(&p, &[], S), Some(&budget), now, &mut rng), Decision::Fail(FailReason::BudgetExhausted));
}

#[test]
fn refresh_rewrite_reconcile_limits() {
    let p = Policy::builder().max_attempts(10).max_auth_refreshes(2).build().unwrap();
    let refresh = Classification::new(Kind::AuthExpired, Advice::RefreshAuth, "x");
    let mk = |c: &Classification, d: Decision, n| Attempt::new(n, None, None, c, &d, S);
    let h1 = [mk(&refresh, Decision::RefreshAuth, 1)];
    let h2 = [mk(&refresh, Decision::RefreshAuth, 1), mk(&refresh, Decision::RefreshAuth, 2)];
    assert_eq!(run(&refresh, &ctx(&p, &h1, S)), Decision::RefreshAuth);
    assert_eq!(run(&refresh, &ctx(&p, &h2, S)), Decision::Fail(FailReason::AuthRefreshExhausted { max: 2 }));

    let rw = Classification::new(Kind::Transient, Advice::Rewrite(Rewrite::MethodOverridePost), "x");
    assert_eq!(run(&rw, &ctx(&p, &[], S)), Decision::Rewrite(Rewrite::MethodOverridePost));
    let h = [mk(&rw, Decision::Rewrite(Rewrite::MethodOverridePost), 1)];
    assert_eq!(run(&rw, &ctx(&p, &h, S)), Decision::Fail(FailReason::RewriteExhausted));

    let rc = Classification::new(Kind::Transient, Advice::Reconcile, "x");
    assert_eq!(run(&rc, &ctx(&p, &[], S)), Decision::Fail(FailReason::NoReconcileHook));
    let mut x = ctx(&p, &[], S);
    x.can_reconcile = true;
    assert_eq!(run(&rc, &x), Decision::Reconcile);
}

/// A reconcile asks the hook about the request as it was sent and may send it again: a body
/// that is gone cannot be asked about or sent, and the attempt limit holds as for a retry.
#[test]
fn reconcile_needs_the_body_and_an_attempt_left() {
    let rc = Classification::new(Kind::Transient, Advice::Reconcile, "x");
    let p = Policy::builder().max_attempts(2).build().unwrap();
    let hooked = |attempt, replayable| Context { attempt, can_reconcile: true, replayable, ..ctx(&p, &[], S) };
    assert_eq!(run(&rc, &hooked(1, Ok(()))), Decision::Reconcile);
    assert_eq!(
        run(&rc, &hooked(1, Err(NotReplayable::Streaming))),
        Decision::Fail(FailReason::NotReplayable(NotReplayable::Streaming))
    );
    assert_eq!(run(&rc, &hooked(2, Ok(()))), Decision::Fail(FailReason::AttemptsExhausted { max: 2 }));
}

/// Once the deadline has passed nothing more is sent: not a retry (for any method: an attempt
/// cut by the deadline failed for want of time), not a token refresh, a rewrite or a reconcile,
/// whose attempt would have no time at all.
#[test]
fn nothing_is_sent_again_once_the_deadline_has_passed() {
    let p = Policy::builder().deadline(10 * S).build().unwrap();
    let passed = Decision::Fail(FailReason::DeadlineExceeded { wait: Duration::ZERO, remaining: Duration::ZERO });
    let timeout = Classification::retry(Kind::Transient, RetryRule::new("timeout"), "x");
    let refresh = Classification::new(Kind::AuthExpired, Advice::RefreshAuth, "x");
    let rewrite = Classification::new(Kind::Transient, Advice::Rewrite(Rewrite::MethodOverridePost), "x");
    let reconcile = Classification::new(Kind::Transient, Advice::Reconcile, "x");
    for elapsed in [10 * S, 11 * S] {
        let post = Context { idempotent: false, ..ctx(&p, &[], elapsed) };
        assert_eq!(run(&timeout, &post), passed, "a POST cut by the deadline");
        assert_eq!(run(&timeout, &ctx(&p, &[], elapsed)), passed);
        assert_eq!(run(&refresh, &ctx(&p, &[], elapsed)), passed);
        assert_eq!(run(&rewrite, &ctx(&p, &[], elapsed)), passed);
        let hooked = Context { can_reconcile: true, idempotent: false, ..ctx(&p, &[], elapsed) };
        assert_eq!(run(&reconcile, &hooked), passed);
    }
    // A moment before it, each is carried out.
    let before = 10 * S - Duration::from_millis(1);
    assert_eq!(run(&refresh, &ctx(&p, &[], before)), Decision::RefreshAuth);
    assert_eq!(run(&rewrite, &ctx(&p, &[], before)), Decision::Rewrite(Rewrite::MethodOverridePost));
    let hooked = Context { can_reconcile: true, idempotent: false, ..ctx(&p, &[], before) };
    assert_eq!(run(&reconcile, &hooked), Decision::Reconcile);
    // Without a deadline, time does not matter.
    let open = Policy::builder().no_deadline().build().unwrap();
    assert_eq!(run(&refresh, &ctx(&open, &[], 3600 * S)), Decision::RefreshAuth);
}

proptest! {
    /// Whatever the backoff, hint, history and elapsed time, a retry never waits past the
    /// deadline, never past the cap, and never beyond the attempt limit.
    #[test]
    fn no_retry_ends_past_the_deadline(
        deadline_s in 1u64..600,
        elapsed_ms in 0u64..700_000,
        hint_s in proptest::option::of(0u64..1000),
        retries in 0u32..8,
        max_attempts in 1u32..10,
        base_ms in 1u64..5000,
        seed: u64,
    ) {
        let p = Policy::builder()
            .max_attempts(max_attempts)
            .deadline(Duration::from_secs(deadline_s))
            .retry_after_cap(S * 300)
            .backoff(Backoff::decorrelated(Duration::from_millis(base_ms), S * 60).unwrap())
            .build()
            .unwrap();
        let c = Classification::retry(Kind::Transient, RetryRule::new("r"), "x")
            .with_hint(hint_s.map(|s| ServerHint { delay: Duration::from_secs(s), source: HintSource::RetryAfter }));
        let history = retried("r", retries);
        let elapsed = Duration::from_millis(elapsed_ms);
        let d = decide(&c, &ctx(&p, &history, elapsed), None, Instant::now(), &mut SplitMix64::seeded(seed));
        if let Decision::Retry { after, range } = d {
            prop_assert!(elapsed + after < Duration::from_secs(deadline_s));
            prop_assert!(after <= S * 300 || hint_s.is_none());
            prop_assert!(range.0 <= after && after <= range.1);
            prop_assert!(elapsed + range.1 < Duration::from_secs(deadline_s));
            prop_assert!(retries + 1 < max_attempts);
        }
    }
}

/// A request's own limits tighten its host's policy and never loosen it; an attempt timeout
/// longer than the request's deadline is cut to it, and a host without a deadline gets the
/// request's.
#[test]
fn request_limits_only_tighten() {
    let host = Policy::builder().max_attempts(5).deadline(S * 60).attempt_timeout(S * 30).build().unwrap();
    let tight = RequestLimits::new().max_attempts(2).deadline(S * 10).apply(&host);
    assert_eq!((tight.max_attempts(), tight.deadline(), tight.attempt_timeout()), (2, Some(S * 10), Some(S * 10)));
    let loose = RequestLimits::new().max_attempts(50).deadline(S * 600).apply(&host);
    assert_eq!((loose.max_attempts(), loose.deadline(), loose.attempt_timeout()), (5, Some(S * 60), Some(S * 30)));
    assert_eq!(RequestLimits::new().apply(&host), host);
    assert_eq!(RequestLimits::new().max_attempts(0).apply(&host).max_attempts(), 1, "at least one attempt");
    let open = Policy::builder().no_deadline().build().unwrap();
    assert_eq!(RequestLimits::new().deadline(S * 3).apply(&open).deadline(), Some(S * 3));
    assert_eq!(RequestLimits::new().deadline(Duration::ZERO).apply(&open).deadline(), Some(Duration::from_millis(1)));
    // The rest of the policy is the host's.
    assert_eq!(tight.replay_limit(), host.replay_limit());
    assert_eq!(tight.retry_after_cap(), host.retry_after_cap());
}

/// The time each attempt waited to be sent beyond its decided delay, and their total: a login
/// held the first 2 s; the second was sent 7 s after its 1 s backoff ended (a rate limiter);
/// the third went as soon as its wait ended; an attempt without its send time counts nothing.
#[test]
fn the_report_tells_the_time_attempts_were_held_apart_from_their_delays() {
    let c = Classification::retry(Kind::Transient, RetryRule::new("r"), "x");
    let retry = Decision::Retry { after: S, range: (S, S) };
    let attempts = vec![
        Attempt::new(1, None, None, &c, &retry, 3 * S).with_sent(2 * S),
        Attempt::new(2, None, None, &c, &retry, 12 * S).with_sent(11 * S),
        Attempt::new(3, None, None, &c, &retry, 14 * S).with_sent(13 * S),
        Attempt::new(4, None, None, &c, &Decision::Return, 20 * S),
    ];
    let held: Vec<_> =
        attempts.iter().enumerate().map(|(i, a)| a.held(i.checked_sub(1).map(|p| &attempts[p]))).collect();
    assert_eq!(held, [Some(2 * S), Some(7 * S), Some(Duration::ZERO), None]);
    let mut report = Report::new();
    report.attempts = attempts;
    assert_eq!(report.total_held(), 9 * S);
    assert_eq!(report.total_delay(), 3 * S);
}

/// Why a request failed reads in milliseconds: a deadline's wait and what was left of it come
/// from clock readings (`10.09999301s`), and nobody reads nanoseconds.
#[test]
fn a_reason_tells_its_durations_to_the_millisecond() {
    let ns = Duration::from_nanos;
    let cases = [
        (
            FailReason::DeadlineExceeded { wait: ns(10_099_993_010), remaining: ns(1_998_100_578) },
            "waiting 10.1s would pass the deadline (1.998s left)",
        ),
        (
            FailReason::DeadlineExceeded { wait: ns(1_500), remaining: ns(999_999) },
            "waiting 1.5µs would pass the deadline (999.999µs left)",
        ),
        (FailReason::DeadlineExceeded { wait: S, remaining: Duration::ZERO }, "the deadline has passed"),
    ];
    for (reason, want) in cases {
        assert_eq!(reason.to_string(), want);
    }
}

/// The error a caller reads says why the body could not be sent again, and the limit it passed.
#[test]
fn a_body_that_cannot_be_sent_again_says_why() {
    let cases = [
        (
            NotReplayable::Streaming,
            "not retried: the request body is a stream of unknown length, sent once and not kept",
        ),
        (
            NotReplayable::TooLarge { limit: 65_536 },
            "not retried: the request body is larger than the replay limit (65536 bytes)",
        ),
    ];
    for (why, want) in cases {
        assert_eq!(FailReason::NotReplayable(why).to_string(), want);
    }
}
