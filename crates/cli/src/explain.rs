//! `redial explain`: what redial would do with an outcome, as one JSON object.
//!
//! [`explain`] is a pure function of its arguments (and of the vendor's built-in profile and
//! default policy): it classifies the outcome as the driver would (reading the body only when
//! the profile asks for it or the status is an error, up to the policy's inspect limit), runs
//! [`redial_core::decide`] for every attempt up to the explained one, and describes the result.
//!
//! ```
//! use std::time::SystemTime;
//! use redial_cli::args::{ExplainArgs, Observed};
//! use redial_cli::explain::explain;
//! use redial_vendors::Vendor;
//!
//! let status = http::StatusCode::NOT_FOUND;
//! let args = ExplainArgs::new(Vendor::Generic, Observed::Status(status));
//! let out = explain(&args, b"", None, SystemTime::now()).unwrap();
//! assert_eq!(out["kind"], "fatal");
//! assert_eq!(out["action"], "fail");
//! assert!(out["delay_ms"].is_null());
//! ```

use std::time::{Duration, Instant, SystemTime};

use redial_core::backoff::SplitMix64;
use redial_core::{
    decide, Advice, Attempt, Body, Classification, Context, Decision, ErrorScope, Kind, NotReplayable, Outcome,
    Problem, RequestHead, ResponseHead, VendorError,
};
use serde_json::{json, Map, Value};

use crate::args::{ExplainArgs, Observed};

/// Describe what redial would do with the outcome in `args`.
///
/// `body` is the response body as received (ignored for `--failure`); only its first
/// inspect-limit bytes are looked at, so a caller may pass just one byte more than
/// [`Policy::inspect_limit`](redial_core::Policy::inspect_limit). `request_body` is the request body, if one was given; one longer
/// than [`Policy::replay_limit`](redial_core::Policy::replay_limit) is treated as the driver treats it: not kept, so neither seen
/// by the profile nor replayable. `now` is the wall-clock time the response was received,
/// against which `Retry-After` dates are measured.
///
/// The object returned has these members:
///
/// | member | value |
/// |---|---|
/// | `vendor` | the vendor's name (`"marketo"`) |
/// | `attempt` | the explained attempt's 1-based number |
/// | `request` | `{"method","url","idempotent","replayable"}`: the request as decided on |
/// | `status` / `failure` | the response status, or why there was none (the other is null) |
/// | `kind` | what happened ([`Kind::as_str`](redial_core::Kind::as_str)) |
/// | `throttle` | for a throttled answer, the host limit it lowers: `rate`, `concurrency`, or `request` (none: only this request waits); else null |
/// | `advice` | what the vendor's rule asks for ([`Action::as_str`](redial_core::Action::as_str)) |
/// | `action` | what redial does next: the decision's action |
/// | `rule` | the retry rule's name when the advice is a retry, else null |
/// | `code`, `message` | the first vendor error's code and message, or null |
/// | `delay_ms` | `{"min","max"}` in whole milliseconds when `action` is `retry` (the max held below the deadline: a longer wait fails instead), else null |
/// | `hint_ms` | the server's hint (`Retry-After`, RateLimit, vendor reset), or null |
/// | `reason` | the classification's reason; when failing, `"<reason>; <fail reason>"` |
/// | `fail_reason` | why redial gives up, when `action` is `fail`, else null |
/// | `body` | how the body was used: `parsed`, `fallback`, `too_large`, `not_read` |
/// | `errors` | every vendor error: `{"code","message","scope","index","attributes"}` |
/// | `problem` | the RFC 9457 problem body, or null |
/// | `history` | the earlier attempts taken to have had the same outcome: `{"attempt","action","rule","after_ms","fail_reason"}` (`fail_reason` is null: none of them ended the request) |
///
/// A token refresh is explained as if the host had a login, unless
/// [`ExplainArgs::login`] is false: then it fails, as the driver fails it.
///
/// # Errors
/// [`NotReached`] when `args.attempt` is never made: with this outcome every time, an earlier
/// attempt already ends the request (its response is returned, or it fails).
pub fn explain(
    args: &ExplainArgs,
    body: &[u8],
    request_body: Option<&[u8]>,
    now: SystemTime,
) -> Result<Value, NotReached> {
    let profile = args.vendor.profile();
    let policy = args.vendor.policy();

    // The driver keeps a request body for replay only up to the replay limit.
    let (request_body, replayable) = match request_body {
        Some(b) if b.len() > policy.replay_limit() => {
            (None, Err(NotReplayable::TooLarge { limit: policy.replay_limit() }))
        }
        other => (other, Ok(())),
    };
    let req = RequestHead { method: &args.method, uri: &args.url, headers: &args.request_headers, body: request_body };
    let idempotent = policy.idempotent_methods().contains(&args.method)
        || (policy.honor_idempotency_key() && args.request_headers.contains_key("idempotency-key"));

    let (c, status, failure) = match args.observed {
        Observed::Status(status) => {
            let head = ResponseHead { status, headers: &args.headers, received_at: now };
            // Mirror the driver: the body is read for error statuses and when the profile asks.
            let view = if status.as_u16() >= 400 || profile.inspect(&req, &head) {
                inspected(body, policy.inspect_limit())
            } else {
                Body::NotRead
            };
            let c = profile.classify(&req, &Outcome::Response(head, view));
            (c, Some(status), None)
        }
        Observed::Failure(f) => (profile.classify(&req, &Outcome::Failure(f)), None, Some(f)),
    };

    // Replay the earlier attempts: each had this same outcome and the decision taken then.
    let mut rng = SplitMix64::seeded(0);
    let instant = Instant::now();
    let mut history: Vec<Attempt> = Vec::new();
    let mut earlier = Vec::new();
    let mut elapsed = Duration::ZERO;
    let mut decide_at = |attempt: u32, history: &[Attempt], elapsed: Duration| {
        let ctx = Context {
            attempt,
            history,
            policy: &policy,
            idempotent,
            replayable,
            elapsed,
            can_reconcile: args.reconcile_hook,
            can_refresh_auth: args.login,
        };
        decide(&c, &ctx, None, instant, &mut rng)
    };
    for n in 1..args.attempt {
        let d = decide_at(n, &history, elapsed);
        // An attempt that ends the request has no attempt after it to explain.
        if let Some(why) = ends(&d) {
            return Err(NotReached { attempt: args.attempt, ended_at: n, action: d.action().as_str(), why });
        }
        history.push(Attempt::new(n, status, failure, &c, &d, elapsed));
        if let Decision::Retry { after, .. } = d {
            elapsed = elapsed.saturating_add(after);
        }
        earlier.push(history_entry(n, &c, &d));
    }
    let decision = decide_at(args.attempt, &history, elapsed);

    let fail_reason = match ends(&decision) {
        Some(why) if decision != Decision::Return => Some(why),
        _ => None,
    };
    let reason = match &fail_reason {
        Some(why) => format!("{}; {why}", c.reason),
        None => c.reason.to_string(),
    };
    let delay = match &decision {
        Decision::Retry { range, .. } => json!({"min": millis(range.0), "max": millis(range.1)}),
        _ => Value::Null,
    };
    let first = c.errors.first();

    Ok(json!({
        "vendor": args.vendor.name(),
        "attempt": args.attempt,
        "request": {
            "method": args.method.as_str(),
            // Without userinfo or query: either may carry a credential.
            "url": redial_core::auth::redact_urls(&args.url.to_string()),
            "idempotent": idempotent,
            "replayable": replayable.is_ok(),
        },
        "status": status.map(|s| s.as_u16()),
        "failure": failure.map(|f| f.as_str()),
        "kind": c.kind.as_str(),
        // Which host limit a throttled answer lowers (rate, concurrency) or none (request).
        "throttle": (c.kind == Kind::Throttled).then(|| c.throttle.as_str()),
        "advice": c.advice.action().as_str(),
        "action": decision.action().as_str(),
        "rule": rule(&c),
        "code": first.map(|e| e.code.as_str()),
        "message": first.and_then(|e| e.message.as_deref()),
        "delay_ms": delay,
        "hint_ms": c.hint.map(|h| millis(h.delay)),
        "reason": reason,
        "fail_reason": fail_reason,
        "body": c.body.as_str(),
        "errors": c.errors.iter().map(error).collect::<Vec<_>>(),
        "problem": c.problem.as_ref().map(|p| problem(p)),
        "history": earlier,
    }))
}

/// What the driver reads of a body: all of it when it ends at or before the inspect limit,
/// else the first `limit` bytes (past the limit the driver stops reading).
fn inspected(body: &[u8], limit: usize) -> Body<'_> {
    if body.len() <= limit {
        Body::Complete(body)
    } else {
        Body::Prefix(&body[..limit])
    }
}

fn rule(c: &Classification) -> Option<&'static str> {
    match &c.advice {
        Advice::Retry(rule) => Some(rule.name()),
        _ => None,
    }
}

/// An earlier attempt in the history; it did not end the request (or it would be the last).
fn history_entry(n: u32, c: &Classification, d: &Decision) -> Value {
    let (rule, after) = match d {
        Decision::Retry { after, .. } => (rule(c), Some(millis(*after))),
        _ => (None, None),
    };
    json!({
        "attempt": n,
        "action": d.action().as_str(),
        "rule": rule,
        "after_ms": after,
        "fail_reason": Value::Null,
    })
}

/// Whether `d` ends the request (it is returned, or it fails), and then why.
fn ends(d: &Decision) -> Option<String> {
    match d {
        Decision::Return => Some("the response is returned".to_owned()),
        Decision::Fail(why) => Some(why.to_string()),
        _ => None,
    }
}

/// `--attempt` names an attempt the driver never makes: an earlier one ends the request.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReached {
    /// The attempt asked about.
    pub attempt: u32,
    /// The attempt that ends the request.
    pub ended_at: u32,
    /// What redial does at `ended_at`: `return` or `fail`.
    pub action: &'static str,
    /// Why: the failure's reason, or that the response is returned.
    pub why: String,
}

impl std::fmt::Display for NotReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "attempt {} is never made: with this outcome every time, attempt {} ends the request ({}: {})",
            self.attempt, self.ended_at, self.action, self.why
        )
    }
}

impl std::error::Error for NotReached {}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One vendor error. Attributes become an object; of repeated names, the first is kept.
fn error(e: &VendorError) -> Value {
    let mut attributes = Map::new();
    for (name, value) in &e.attributes {
        if !attributes.contains_key(name.as_ref()) {
            attributes.insert(name.to_string(), Value::String(value.clone()));
        }
    }
    json!({
        "code": e.code,
        "message": e.message,
        "scope": e.scope.as_str(),
        "index": match e.scope {
            ErrorScope::Record(i) => Some(i),
            _ => None,
        },
        "attributes": attributes,
    })
}

fn problem(p: &Problem) -> Value {
    json!({
        "type": p.type_,
        "title": p.title,
        "status": p.status,
        "detail": p.detail,
        "instance": p.instance,
        "extensions": p.extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Observed;
    use http::{HeaderValue, Method, StatusCode};
    use redial_core::{FailReason, Failure};
    use redial_vendors::Vendor;

    fn args(vendor: Vendor, status: u16) -> ExplainArgs {
        ExplainArgs::new(vendor, Observed::Status(StatusCode::from_u16(status).unwrap()))
    }

    #[test]
    fn generic_503_with_retry_after() {
        let mut a = args(Vendor::Generic, 503);
        a.headers.insert("retry-after", HeaderValue::from_static("2"));
        let out = explain(&a, b"", None, SystemTime::now()).unwrap();
        assert_eq!(out["kind"], "transient");
        assert_eq!(out["action"], "retry");
        assert_eq!(out["delay_ms"], json!({"min": 2000, "max": 2000}));
        assert_eq!(out["hint_ms"], 2000);
        assert_eq!(out["fail_reason"], Value::Null);
        assert_eq!(out["history"], json!([]));
    }

    #[test]
    fn history_is_replayed() {
        // A GET that keeps getting 502: retried twice, then the policy's 3 attempts are spent.
        let mut a = args(Vendor::Generic, 502);
        a.attempt = 3;
        let out = explain(&a, b"", None, SystemTime::now()).unwrap();
        assert_eq!(out["action"], "fail");
        assert_eq!(out["fail_reason"], "gave up after 3 attempts");
        assert!(out["reason"].as_str().unwrap().ends_with("; gave up after 3 attempts"));
        let history = out["history"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        assert!(history.iter().all(|h| h["action"] == "retry"));
        assert_eq!(history[0]["rule"], "generic.502");
    }

    #[test]
    fn an_attempt_after_the_one_that_ends_the_request_is_not_explained() {
        let mut a = args(Vendor::Generic, 502);
        a.attempt = 5;
        let e = explain(&a, b"", None, SystemTime::now()).unwrap_err();
        assert_eq!((e.attempt, e.ended_at, e.action), (5, 3, "fail"));
        assert_eq!(e.why, "gave up after 3 attempts");
        let mut ok = args(Vendor::Generic, 200);
        ok.attempt = 2;
        let e = explain(&ok, b"", None, SystemTime::now()).unwrap_err();
        assert_eq!((e.ended_at, e.action), (1, "return"));
    }

    /// Marketo 601 (access token invalid) asks for a new token: with a login the request goes
    /// on; without one the driver fails it, and so does the explanation.
    #[test]
    fn a_refresh_without_a_login_fails() {
        let body = br#"{"requestId":"1","success":false,"errors":[{"code":"601","message":"Access token invalid"}]}"#;
        let mut a = args(Vendor::Marketo, 200);
        a.headers.insert("content-type", HeaderValue::from_static("application/json"));
        let out = explain(&a, body, None, SystemTime::now()).unwrap();
        assert_eq!((&out["action"], &out["fail_reason"]), (&json!("refresh_auth"), &Value::Null));
        a.login = false;
        let out = explain(&a, body, None, SystemTime::now()).unwrap();
        assert_eq!(out["action"], "fail");
        assert_eq!(out["advice"], "refresh_auth");
        let no_login = FailReason::NoTokenSource.to_string();
        assert_eq!(out["fail_reason"], no_login);
        assert!(out["reason"].as_str().unwrap().ends_with(&no_login));
        a.attempt = 2;
        assert_eq!(explain(&a, body, None, SystemTime::now()).unwrap_err().why, no_login);
    }

    #[test]
    fn the_url_shown_has_no_userinfo_nor_query() {
        let mut a = ExplainArgs::new(Vendor::Generic, Observed::Failure(Failure::Io));
        a.url = "https://u:TOPSECRET@api.example.com/v1/x?access_token=TOPSECRET".parse().unwrap();
        let out = explain(&a, b"", None, SystemTime::now()).unwrap();
        assert_eq!(out["request"]["url"], "https://api.example.com/v1/x?…");
    }

    #[test]
    fn failures_and_idempotency() {
        let mut a = ExplainArgs::new(Vendor::Generic, Observed::Failure(Failure::Io));
        a.method = Method::POST;
        let out = explain(&a, b"", None, SystemTime::now()).unwrap();
        assert_eq!((&out["action"], &out["status"]), (&json!("fail"), &Value::Null));
        assert_eq!(out["failure"], "io");
        assert_eq!(out["request"]["idempotent"], false);
        a.request_headers.insert("idempotency-key", HeaderValue::from_static("k"));
        let out = explain(&a, b"", None, SystemTime::now()).unwrap();
        assert_eq!(out["action"], "retry");
        assert_eq!(out["request"]["idempotent"], true);
    }

    #[test]
    fn bodies_are_inspected_up_to_the_limit() {
        let limit = 8;
        assert_eq!(inspected(b"1234567", limit), Body::Complete(b"1234567"));
        assert_eq!(inspected(b"12345678", limit), Body::Complete(b"12345678"), "exactly the limit: whole");
        assert_eq!(inspected(b"123456789", limit), Body::Prefix(b"12345678"));

        // A problem body larger than the generic inspect limit is not parsed.
        let mut a = args(Vendor::Generic, 404);
        a.headers.insert("content-type", HeaderValue::from_static("application/problem+json"));
        let small = br#"{"type":"https://example.com/nope","title":"Not here","status":404}"#;
        let out = explain(&a, small, None, SystemTime::now()).unwrap();
        assert_eq!(out["body"], "parsed");
        assert_eq!(out["problem"]["title"], "Not here");
        assert_eq!(out["errors"].as_array().unwrap().len(), 1);
        let big = vec![b' '; a.vendor.policy().inspect_limit() + 1];
        let out = explain(&a, &big, None, SystemTime::now()).unwrap();
        assert_eq!(out["body"], "too_large");
        assert_eq!(out["problem"], Value::Null);
    }

    #[test]
    fn a_request_body_over_the_replay_limit_is_not_replayable() {
        let a = args(Vendor::Generic, 503);
        let big = vec![b'x'; a.vendor.policy().replay_limit() + 1];
        let out = explain(&a, b"", Some(&big), SystemTime::now()).unwrap();
        assert_eq!(out["request"]["replayable"], false);
        assert_eq!(out["action"], "fail");
        assert!(out["fail_reason"].as_str().unwrap().contains("replay limit"));
    }

    #[test]
    fn garbage_never_panics() {
        let bodies: [&[u8]; 5] = [b"", b"\xff\xfe", b"{", b"<a><b>", b"null"];
        let mut types = vec![None, Some("application/json"), Some("text/xml")];
        types.push(Some("application/problem+json"));
        for vendor in Vendor::ALL {
            for status in [100, 200, 207, 400, 401, 413, 414, 429, 500, 503, 999] {
                for ct in &types {
                    for body in bodies {
                        for attempt in [1, 2, 7] {
                            let mut a = args(vendor, status);
                            a.attempt = attempt;
                            if let Some(ct) = ct {
                                a.headers.insert("content-type", HeaderValue::from_static(ct));
                            }
                            match explain(&a, body, Some(body), SystemTime::now()) {
                                Ok(out) => assert!(out["action"].is_string()),
                                Err(e) => assert!(e.ended_at < attempt, "{e}"),
                            }
                        }
                    }
                }
            }
        }
    }
}
