//! The generic profile's table ("Any other host" in VENDORS.md), walked row by row for an
//! idempotent and a non-idempotent method.

use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use redial_core::backoff::SplitMix64;
use redial_core::generic::Generic;
use redial_core::*;

fn decide_for(method: &Method, outcome: Outcome<'_>) -> (Classification, Decision) {
    let uri: Uri = "https://api.example.com/things".parse().unwrap();
    let headers = HeaderMap::new();
    let req = RequestHead { method, uri: &uri, headers: &headers, body: None };
    let c = Generic.classify(&req, &outcome);
    let policy = Policy::default();
    let ctx = Context {
        attempt: 1,
        history: &[],
        policy: &policy,
        idempotent: policy.idempotent_methods().contains(method),
        replayable: Ok(()),
        elapsed: Duration::ZERO,
        can_reconcile: false,
        can_refresh_auth: true,
    };
    let d = decide(&c, &ctx, None, Instant::now(), &mut SplitMix64::seeded(3));
    (c, d)
}

fn response(status: u16, headers: &HeaderMap) -> Outcome<'_> {
    Outcome::Response(
        ResponseHead { status: StatusCode::from_u16(status).unwrap(), headers, received_at: SystemTime::UNIX_EPOCH },
        Body::NotRead,
    )
}

#[test]
fn status_table_for_get_and_post() {
    use Action::*;
    use Kind::*;
    // status, kind, action for GET, action for POST
    let table = [
        (200, Success, Return, Return),
        (201, Success, Return, Return),
        (204, Success, Return, Return),
        (301, Success, Return, Return),
        (400, Fatal, Fail, Fail),
        (401, Fatal, Fail, Fail),
        (403, Fatal, Fail, Fail),
        (404, Fatal, Fail, Fail),
        (408, Transient, Retry, Retry),
        (409, Fatal, Fail, Fail),
        (413, Fatal, Fail, Fail),
        (422, Fatal, Fail, Fail),
        (429, Throttled, Retry, Retry),
        (500, Transient, Retry, Fail),
        (501, Fatal, Fail, Fail),
        (502, Transient, Retry, Fail),
        (503, Transient, Retry, Retry),
        (504, Transient, Retry, Fail),
        (505, Fatal, Fail, Fail),
    ];
    let headers = HeaderMap::new();
    for (status, kind, get, post) in table {
        for (method, want) in [(Method::GET, get), (Method::POST, post)] {
            let (c, d) = decide_for(&method, response(status, &headers));
            assert_eq!(c.kind, kind, "{status} {method}");
            assert_eq!(d.action(), want, "{status} {method}: {d:?}");
            if want == Fail && c.advice.action() == Retry {
                assert_eq!(d, Decision::Fail(FailReason::NotIdempotent), "{status} {method}");
            }
        }
    }
}

#[test]
fn put_delete_options_trace_head_are_idempotent_patch_is_not() {
    let headers = HeaderMap::new();
    for m in ["PUT", "DELETE", "OPTIONS", "TRACE", "HEAD"] {
        let (_, d) = decide_for(&m.parse().unwrap(), response(502, &headers));
        assert_eq!(d.action(), Action::Retry, "{m}");
    }
    let (_, d) = decide_for(&Method::PATCH, response(502, &headers));
    assert_eq!(d, Decision::Fail(FailReason::NotIdempotent));
}

#[test]
fn failures_before_and_after_sending() {
    use Action::*;
    let table = [
        (Failure::Connect, Retry, Retry),
        (Failure::Timeout, Retry, Fail),
        (Failure::Io, Retry, Fail),
        (Failure::BodyRead, Retry, Fail),
    ];
    for (failure, get, post) in table {
        for (method, want) in [(Method::GET, get), (Method::POST, post)] {
            let (c, d) = decide_for(&method, Outcome::Failure(failure));
            assert_eq!(c.kind, Kind::Transient);
            assert_eq!(d.action(), want, "{failure:?} {method}");
        }
    }
    // Refused on this side before it was sent (a failover gate, a full limiter): nothing to
    // retry, for any method.
    for method in [Method::GET, Method::POST] {
        let (c, d) = decide_for(&method, Outcome::Failure(Failure::Local));
        assert_eq!((c.kind, d), (Kind::Fatal, Decision::Fail(FailReason::Final)), "{method}");
    }
}

/// Each row is its own rule, named after it: a timeout is not counted as a reset.
#[test]
fn rule_names_are_generic_row() {
    let headers = HeaderMap::new();
    let name = |c: &Classification| match &c.advice {
        Advice::Retry(rule) => rule.name(),
        other => panic!("{other:?}"),
    };
    for (failure, rule) in [
        (Failure::Connect, "generic.connect"),
        (Failure::Timeout, "generic.timeout"),
        (Failure::Io, "generic.no_response"),
        (Failure::BodyRead, "generic.no_response"),
    ] {
        assert_eq!(name(&decide_for(&Method::GET, Outcome::Failure(failure)).0), rule, "{failure:?}");
    }
    for status in [408, 429, 500, 502, 503, 504] {
        assert_eq!(name(&decide_for(&Method::GET, response(status, &headers)).0), format!("generic.{status}"));
    }
    // A final status says which it was.
    let (c, _) = decide_for(&Method::GET, response(404, &headers));
    assert_eq!(c.reason, "generic: 404 is final");
    assert_eq!(Generic.name(), "generic");
}

/// Only a 4xx/5xx labelled `application/problem+json` is read: a success, or an error body of
/// another type, is not.
#[test]
fn only_problem_bodies_of_error_statuses_are_read() {
    let uri: Uri = "https://api.example.com/x".parse().unwrap();
    let req_headers = HeaderMap::new();
    let req = RequestHead { method: &Method::GET, uri: &uri, headers: &req_headers, body: None };
    let body =
        br#"{"type":"https://example.com/probs/out-of-credit","title":"You do not have enough credit.","status":404}"#;
    for (status, ct, read) in [
        (404, "application/problem+json", true),
        (503, "application/problem+json", true),
        (200, "application/problem+json", false),
        (404, "application/json", false),
        (404, "text/html", false),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(ct));
        let status = StatusCode::from_u16(status).unwrap();
        let head = ResponseHead { status, headers: &headers, received_at: SystemTime::UNIX_EPOCH };
        assert_eq!(Generic.inspect(&req, &head), read, "{status} {ct}");
        let c = Generic.classify(&req, &Outcome::Response(head, Body::Complete(body)));
        let want = if read { BodyUse::Parsed } else { BodyUse::NotRead };
        assert_eq!((c.body, c.problem.is_some()), (want, read), "{status} {ct}");
    }
}

#[test]
fn retry_after_is_honoured_on_429_and_503() {
    for status in [429, 503] {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        let (c, d) = decide_for(&Method::POST, response(status, &headers));
        assert_eq!(c.hint.unwrap().delay, Duration::from_secs(7));
        assert_eq!(
            d,
            Decision::Retry { after: Duration::from_secs(7), range: (Duration::from_secs(7), Duration::from_secs(7)) }
        );
    }
}

#[test]
fn problem_bodies_are_parsed_whatever_the_decision() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/problem+json; charset=utf-8"));
    let uri: Uri = "https://api.example.com/x".parse().unwrap();
    let req_headers = HeaderMap::new();
    let req = RequestHead { method: &Method::GET, uri: &uri, headers: &req_headers, body: None };
    let head = ResponseHead { status: StatusCode::NOT_FOUND, headers: &headers, received_at: SystemTime::UNIX_EPOCH };
    assert!(Generic.inspect(&req, &head));
    let body = br#"{"type":"https://example.com/probs/out-of-credit","title":"You do not have enough credit.","status":404,"detail":"Your balance is 30","balance":30}"#;
    let c = Generic.classify(&req, &Outcome::Response(head, Body::Complete(body)));
    assert_eq!(c.kind, Kind::Fatal);
    assert_eq!(c.body, BodyUse::Parsed);
    assert_eq!(c.code(), Some("out-of-credit"));
    let p = *c.problem.unwrap();
    assert_eq!(p.detail.as_deref(), Some("Your balance is 30"));
    assert_eq!(p.extensions["balance"], 30);

    // Garbage where a problem was promised: the status rules decide, and the report says so.
    let c = Generic.classify(&req, &Outcome::Response(head, Body::Complete(b"<html>oops")));
    assert_eq!((c.kind, c.body), (Kind::Fatal, BodyUse::Fallback));
    assert!(c.errors.is_empty());
}
