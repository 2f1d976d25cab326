//! Oracle Responsys: the table of `VENDORS.md`, its documented scenarios, and the parser's
//! tolerance.

use std::time::{Duration, Instant, SystemTime};

use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use proptest::prelude::*;
use redial_core::backoff::SplitMix64;
use redial_core::{
    decide, Action, Attempt, Body, BodyUse, Classification, Context, Decision, ErrorScope, FailReason, Failure, Kind,
    Outcome, Policy, Profile, RequestHead, ResponseHead, Throttle,
};
use redial_vendors::responsys::{self, policy, Responsys, ResponsysError, HOSTS};

const S: Duration = Duration::from_secs(1);
const JSON: &str = "application/json";

fn envelope(code: &str) -> String {
    format!(r#"{{"type":"","title":"A title","errorCode":"{code}","detail":"Some detail","errorDetails":[]}}"#)
}

fn headers(content_type: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(ct) = content_type {
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
    }
    h
}

fn with_request<T>(f: impl FnOnce(&RequestHead<'_>) -> T) -> T {
    let method = Method::POST;
    let uri = Uri::from_static("https://acme.responsys.ocs.oraclecloud.com/rest/api/v1.3/campaigns/welcome/email");
    let h = HeaderMap::new();
    f(&RequestHead { method: &method, uri: &uri, headers: &h, body: None })
}

fn classify_body(status: u16, content_type: Option<&str>, body: Body<'_>) -> Classification {
    let h = headers(content_type);
    let head =
        ResponseHead { status: StatusCode::from_u16(status).unwrap(), headers: &h, received_at: SystemTime::now() };
    with_request(|req| Responsys::default().classify(req, &Outcome::Response(head, body)))
}

fn classify(status: u16, content_type: Option<&str>, body: &str) -> Classification {
    classify_body(status, content_type, Body::Complete(body.as_bytes()))
}

fn classify_failure(f: Failure) -> Classification {
    with_request(|req| Responsys::default().classify(req, &Outcome::Failure(f)))
}

fn decide_at(c: &Classification, attempt: u32, history: &[Attempt], idempotent: bool, elapsed: Duration) -> Decision {
    let policy = policy();
    let ctx = Context {
        attempt,
        history,
        policy: &policy,
        idempotent,
        replayable: Ok(()),
        elapsed,
        can_reconcile: false,
        can_refresh_auth: true,
    };
    decide(c, &ctx, None, Instant::now(), &mut SplitMix64::seeded(7))
}

fn min_delay(d: &Decision) -> Option<Duration> {
    match d {
        Decision::Retry { range, .. } => Some(range.0),
        _ => None,
    }
}

enum Signal {
    Json(u16, String),
    Raw(u16, &'static str, &'static str),
    NoResponse(Failure),
}

struct Row {
    signal: Signal,
    kind: Kind,
    /// The action for an idempotent request, then for one that is not.
    actions: (Action, Action),
    min_delay: Option<Duration>,
}

fn row(signal: Signal, kind: Kind, actions: (Action, Action), min_delay: Option<Duration>) -> Row {
    Row { signal, kind, actions, min_delay }
}

fn code(status: u16, code: &str) -> Signal {
    Signal::Json(status, envelope(code))
}

#[test]
fn the_vendors_md_table() {
    use Action::{Fail, Retry, Return};
    let refresh = (Action::RefreshAuth, Action::RefreshAuth);
    let fail = (Fail, Fail);
    let retry = (Retry, Retry);
    let mut rows = vec![
        // INVALID_TOKEN, TOKEN_EXPIRED → auth_expired, refresh_auth; on any status.
        row(code(401, "INVALID_TOKEN"), Kind::AuthExpired, refresh, None),
        row(code(500, "INVALID_TOKEN"), Kind::AuthExpired, refresh, None),
        row(code(401, "TOKEN_EXPIRED"), Kind::AuthExpired, refresh, None),
        // The rate-limit endpoint's bad-token answer (`Throttling.html`): a 500 whose detail says so.
        row(
            Signal::Json(
                500,
                r#"{"type":"","title":"Unexpected exception","errorCode":"UNEXPECTED_EXCEPTION","detail":"Not a valid authentication token","errorDetails":[]}"#.into(),
            ),
            Kind::AuthExpired,
            refresh,
            None,
        ),
        // API_NOT_ALLOWED_IN_SECONDARY → failover, fail.
        row(code(401, "API_NOT_ALLOWED_IN_SECONDARY"), Kind::Failover, fail, None),
        // UNRECOVERABLE_EXCEPTION → transient, resubmit once after 30 s, any method.
        row(code(500, "UNRECOVERABLE_EXCEPTION"), Kind::Transient, retry, Some(30 * S)),
        // API_LIMIT_EXCEEDED, documented under 400 and under 401 → throttled, ≥ 60 s.
        row(code(400, "API_LIMIT_EXCEEDED"), Kind::Throttled, retry, Some(60 * S)),
        row(code(401, "API_LIMIT_EXCEEDED"), Kind::Throttled, retry, Some(60 * S)),
        // INTERNAL_CAPACITY_LIMIT_EXCEEDED → throttled, long backoff from 60 s.
        row(code(429, "INTERNAL_CAPACITY_LIMIT_EXCEEDED"), Kind::Throttled, retry, Some(60 * S)),
        // 503 SERVICE_UNAVAILABLE, or a non-JSON gateway 503 → transient, backoff (from 10 s).
        row(code(503, "SERVICE_UNAVAILABLE"), Kind::Transient, retry, Some(10 * S)),
        row(
            Signal::Raw(503, "text/plain", "Transport error: 503 Error: Service Temporarily Unavailable"),
            Kind::Transient,
            retry,
            Some(10 * S),
        ),
        row(
            Signal::Raw(503, "text/html", "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"),
            Kind::Transient,
            retry,
            Some(10 * S),
        ),
        // Async and polling codes.
        row(code(500, "UNABLE_TO_SUBMIT_ASYNC_REQUEST"), Kind::Throttled, retry, Some(30 * S)),
        row(code(200, "PROCESSING_REQUEST"), Kind::Transient, (Return, Return), None),
        row(code(200, "ASYNC_REQUEST_EXPIRED"), Kind::Fatal, fail, None),
    ];
    // No response → transient, up to 3 times 2 minutes apart, any method.
    for f in [Failure::Connect, Failure::Timeout, Failure::Io, Failure::BodyRead] {
        rows.push(row(Signal::NoResponse(f), Kind::Transient, retry, Some(120 * S)));
    }
    // Stopped on this side before it was sent: no vendor rule applies, final.
    rows.push(row(Signal::NoResponse(Failure::Local), Kind::Fatal, fail, None));
    // Login lockouts, blocked APIs, bad parameters and anything else → fatal, fail.
    for c in [
        "LOGIN_BLOCKED_TEMPORARILY",
        "PASSWORD_LOCKOUT",
        "PASSWORD_EXPIRED",
        "PASSWORD_ANYTHING_NEW",
        "ACCOUNT_SUSPENDED",
        "LOGIN_BLOCKED_INVALID_IPRANGE",
        "WS_ARG_DISABLED",
        "API_BLOCKED",
        "INVALID_PARAMETER",
        "UNEXPECTED_EXCEPTION",
        "RESPONSE_PURGED",
        "INVALID_REQUEST_ID",
        "ASYNC_API_DISABLED_FOR_USER",
        "CAMPAIGN_IS_INVALID",
        "INVALID_REQUEST_CONTENT",
        "RECIPIENT_LIMIT_EXCEEDED",
        "A_CODE_NOBODY_DOCUMENTED",
    ] {
        rows.push(row(code(401, c), Kind::Fatal, fail, None));
        rows.push(row(code(500, c), Kind::Fatal, fail, None));
    }

    for (i, r) in rows.iter().enumerate() {
        let c = match &r.signal {
            Signal::Json(status, body) => classify(*status, Some(JSON), body),
            Signal::Raw(status, ct, body) => classify(*status, Some(ct), body),
            Signal::NoResponse(f) => classify_failure(*f),
        };
        let what = format!("row {i}: {}", c.reason);
        assert_eq!(c.kind, r.kind, "{what}");
        let idem = decide_at(&c, 1, &[], true, Duration::ZERO);
        let not_idem = decide_at(&c, 1, &[], false, Duration::ZERO);
        assert_eq!((idem.action(), not_idem.action()), r.actions, "{what}: {idem:?} / {not_idem:?}");
        assert_eq!(min_delay(&idem), r.min_delay, "{what}");
        if let Signal::Json(..) = r.signal {
            assert_eq!(c.body, BodyUse::Parsed, "{what}");
            assert_eq!(c.errors.len(), 1, "{what}");
        }
    }
}

/// The documented numbers themselves, not the crate's names for them: the next minute window
/// (VENDORS.md: "retry after the next minute window"), the 10-minute capacity counters, the
/// 30 s resubmit, and "3 times, 2 minutes apart".
#[test]
fn the_documented_waits_are_the_documented_numbers() {
    let range = |code_name: &str| match decide_at(
        &classify(400, Some(JSON), &envelope(code_name)),
        1,
        &[],
        true,
        Duration::ZERO,
    ) {
        Decision::Retry { range, .. } => range,
        other => panic!("{code_name}: {other:?}"),
    };
    assert_eq!(range("API_LIMIT_EXCEEDED"), (60 * S, 120 * S));
    // Decorrelated from 60 s: at most three times the last wait, never over 10 minutes.
    assert_eq!(range("INTERNAL_CAPACITY_LIMIT_EXCEEDED"), (60 * S, 180 * S));
    let capacity = classify(400, Some(JSON), &envelope("INTERNAL_CAPACITY_LIMIT_EXCEEDED"));
    // After a 250 s wait three times it is 750 s: the 10-minute cap holds it (and 650 s are left
    // of the 15-minute deadline, which would clip the range otherwise).
    let long_wait = Decision::Retry { after: 250 * S, range: (60 * S, 600 * S) };
    let history = [Attempt::new(1, Some(StatusCode::BAD_REQUEST), None, &capacity, &long_wait, S)];
    match decide_at(&capacity, 2, &history, true, 250 * S) {
        Decision::Retry { range, .. } => assert_eq!(range, (60 * S, 600 * S)),
        other => panic!("{other:?}"),
    }
    assert_eq!(range("UNRECOVERABLE_EXCEPTION"), (30 * S, 30 * S));
    assert_eq!(responsys::CAPACITY_MAX_DELAY, 600 * S);
    let no_response = classify_failure(Failure::Io);
    let mut history = Vec::new();
    for attempt in 1..=3 {
        let d = decide_at(&no_response, attempt, &history, false, Duration::ZERO);
        assert_eq!(d, Decision::Retry { after: 120 * S, range: (120 * S, 120 * S) }, "retry {attempt}");
        history.push(Attempt::new(attempt, None, Some(Failure::Io), &no_response, &d, S));
    }
    assert_eq!(decide_at(&no_response, 4, &history, false, Duration::ZERO).action(), Action::Fail);
}

#[test]
fn invalid_token_refreshes_auth() {
    let c = classify(
        401,
        Some(JSON),
        r#"{"type":"","title":"Unauthorized","errorCode":"INVALID_TOKEN","detail":"Not a valid token","errorDetails":[]}"#,
    );
    assert_eq!(c.kind, Kind::AuthExpired);
    assert_eq!(decide_at(&c, 1, &[], false, Duration::ZERO), Decision::RefreshAuth);
    let e = &c.errors[0];
    assert_eq!(e.code, "INVALID_TOKEN");
    assert_eq!(e.message.as_deref(), Some("Not a valid token"));
    // "replay once": a second INVALID_TOKEN after the re-login is final.
    let history = [Attempt::new(1, Some(StatusCode::UNAUTHORIZED), None, &c, &Decision::RefreshAuth, S)];
    assert_eq!(decide_at(&c, 2, &history, false, S), Decision::Fail(FailReason::AuthRefreshExhausted { max: 1 }));
}

#[test]
fn api_not_allowed_in_secondary_is_failover_and_fails() {
    let c = classify(
        401,
        Some(JSON),
        r#"{"type":"","title":"API not allowed in secondary","errorCode":"API_NOT_ALLOWED_IN_SECONDARY","detail":"…","errorDetails":[]}"#,
    );
    assert_eq!(c.kind, Kind::Failover);
    assert_eq!(decide_at(&c, 1, &[], true, Duration::ZERO), Decision::Fail(FailReason::Final));
    assert_eq!(c.code(), Some("API_NOT_ALLOWED_IN_SECONDARY"));
}

#[test]
fn unrecoverable_exception_is_resubmitted_once_after_30_s_then_final() {
    let body = envelope("UNRECOVERABLE_EXCEPTION");
    let c = classify(500, Some(JSON), &body);
    // A POST (merge trigger) is resubmitted: the vendor asks for it.
    let first = decide_at(&c, 1, &[], false, S);
    assert_eq!(first, Decision::Retry { after: 30 * S, range: (30 * S, 30 * S) });
    let history = [Attempt::new(1, Some(StatusCode::INTERNAL_SERVER_ERROR), None, &c, &first, S)];
    let second = decide_at(&c, 2, &history, false, 32 * S);
    assert_eq!(
        second,
        Decision::Fail(FailReason::RuleExhausted { rule: "responsys.unrecoverable_exception", retries: 1 })
    );
}

#[test]
fn no_response_is_retried_three_times_two_minutes_apart_then_final() {
    let timeout = policy().attempt_timeout().unwrap();
    let mut history = Vec::new();
    let mut elapsed = Duration::ZERO;
    for n in 1..=4u32 {
        let f = [Failure::Timeout, Failure::Io, Failure::Connect, Failure::Timeout][n as usize - 1];
        let c = classify_failure(f);
        elapsed += timeout; // every attempt runs to its timeout
        let d = decide_at(&c, n, &history, false, elapsed);
        if n <= 3 {
            assert_eq!(d, Decision::Retry { after: 120 * S, range: (120 * S, 120 * S) }, "attempt {n}");
            elapsed += 120 * S;
        } else {
            assert_eq!(d, Decision::Fail(FailReason::RuleExhausted { rule: "responsys.no_response", retries: 3 }));
        }
        history.push(Attempt::new(n, None, Some(f), &c, &d, elapsed));
    }
    // The walk fits the policy's deadline.
    assert!(elapsed < policy().deadline().unwrap(), "{elapsed:?}");
}

#[test]
fn seed_invalid_parameter_is_fatal() {
    // The seed page's fixture, verbatim.
    let body = r#"{
   "type": "",
   "title": "Invalid request parameters",
   "errorCode": "INVALID_PARAMETER",
   "detail": " <Campaign Name> must be Transactional campaign",
   "errorDetails": []
}"#;
    let c = classify(400, Some(JSON), body);
    assert_eq!(c.kind, Kind::Fatal);
    assert_eq!(decide_at(&c, 1, &[], true, Duration::ZERO), Decision::Fail(FailReason::Final));
    let e = &c.errors[0];
    assert_eq!(e.code, "INVALID_PARAMETER");
    assert_eq!(e.message.as_deref(), Some("<Campaign Name> must be Transactional campaign"));
    assert_eq!(e.attribute("title"), Some("Invalid request parameters"));
}

#[test]
fn polling_fixture_with_string_error_details() {
    // Verbatim from the research notes: wrapped in `responseMessage`, errorDetails the string "[]".
    let body = r#"{"responseMessage":{"errorCode":"ASYNC_REQUEST_EXPIRED","detail":"Async request expired while processing.","type":"","title":"Async API request expired","errorDetails":"[]"},
 "requestId":"WGlJSWhsOjoxNTIxMzU5OTI1","apiName":"asyncMergeTriggerEmail","requestTime":"2018-03-18 13:28:45.809","requestProcessedTime":"2018-03-18 13:30:20","status":"ERROR"}"#;
    let e = ResponsysError::parse(body.as_bytes()).unwrap();
    assert_eq!(e.error_code, "ASYNC_REQUEST_EXPIRED");
    assert!(e.error_details.is_empty());
    let c = classify(200, Some(JSON), body);
    assert_eq!(c.kind, Kind::Fatal);
    assert_eq!(c.body, BodyUse::Parsed);
    let v = &c.errors[0];
    assert_eq!(v.attribute("requestId"), Some("WGlJSWhsOjoxNTIxMzU5OTI1"));
    assert_eq!(v.attribute("apiName"), Some("asyncMergeTriggerEmail"));
    assert_eq!(v.attribute("status"), Some("ERROR"));
    // A wrapper field sent as a number is kept as its digits.
    let numeric = body.replace(r#""WGlJSWhsOjoxNTIxMzU5OTI1""#, "1521359925");
    let c = classify(200, Some(JSON), &numeric);
    assert_eq!(c.errors[0].attribute("requestId"), Some("1521359925"));
}

/// The message is `detail`, else `title`: a blank `detail` is no detail, a blank `title` no title.
#[test]
fn a_blank_detail_gives_way_to_the_title() {
    let body = r#"{"type":"","title":"Invalid request parameters","errorCode":"INVALID_PARAMETER","detail":"  ","errorDetails":[]}"#;
    let e = ResponsysError::parse(body.as_bytes()).unwrap();
    assert_eq!((e.title.as_deref(), e.detail.as_deref()), (Some("Invalid request parameters"), None));
    assert_eq!(e.to_vendor_error().message.as_deref(), Some("Invalid request parameters"));
    let body =
        r#"{"type":"","title":" ","errorCode":"INVALID_PARAMETER","detail":"must be Transactional","errorDetails":[]}"#;
    let e = ResponsysError::parse(body.as_bytes()).unwrap();
    assert_eq!(e.title, None);
    assert_eq!(e.to_vendor_error().attribute("title"), None);
}

#[test]
fn record_failures_in_a_2xx_batch_are_partial() {
    let body = r#"[{"errorMessage":null,"success":true,"recipientId":101},
                   {"errorMessage":"RECIPIENT_STATUS_UNDELIVERABLE: email address is bad","success":false,"recipientId":null},
                   {"errorMessage":"something odd","success":false,"recipientId":103}]"#;
    let c = classify(200, Some("application/json;charset=UTF-8"), body);
    assert_eq!(c.kind, Kind::Partial);
    assert_eq!(decide_at(&c, 1, &[], false, Duration::ZERO), Decision::Return);
    assert_eq!(c.errors.len(), 2);
    assert_eq!(c.errors[0].code, "RECIPIENT_STATUS_UNDELIVERABLE");
    assert_eq!(c.errors[0].message.as_deref(), Some("email address is bad"));
    assert_eq!(c.errors[0].scope, ErrorScope::Record(1));
    assert_eq!(c.errors[1].code, "RECORD_FAILED");
    assert_eq!(c.errors[1].scope, ErrorScope::Record(2));
    assert_eq!(c.errors[1].attribute("recipientId"), Some("103"));
    let ok = classify(200, Some(JSON), r#"[{"errorMessage":null,"success":true,"recipientId":101}]"#);
    assert_eq!(ok.kind, Kind::Success);
}

/// "The code is the leading UPPER_SNAKE word": a message that is a code alone is that code; a
/// message whose text before the colon is not a code is kept whole under `RECORD_FAILED`.
#[test]
fn a_record_error_message_is_split_only_at_a_leading_code() {
    let body = r#"[{"errorMessage":"RECIPIENT_STATUS_UNDELIVERABLE","success":false,"recipientId":1},
                   {"errorMessage":"Email address is bad: no MX record","success":false,"recipientId":2}]"#;
    let c = classify(200, Some(JSON), body);
    assert_eq!(c.kind, Kind::Partial);
    let got: Vec<_> = c.errors.iter().map(|e| (e.code.as_str(), e.message.as_deref(), e.scope)).collect();
    assert_eq!(
        got,
        [
            ("RECIPIENT_STATUS_UNDELIVERABLE", None, ErrorScope::Record(0)),
            ("RECORD_FAILED", Some("Email address is bad: no MX record"), ErrorScope::Record(1)),
        ]
    );
}

/// A poll's records sit under `response` ("an array, at the top level or under `response` of
/// a poll"): their failures make the response partial too.
#[test]
fn record_failures_under_a_polls_response_are_partial() {
    let body = r#"{"requestId":"WGlJSWhsOjoxNTIxMzU5OTI1","status":"SUCCESS","response":[
                   {"errorMessage":null,"success":true,"recipientId":101},
                   {"errorMessage":"RECIPIENT_STATUS_UNDELIVERABLE: email address is bad","success":false,"recipientId":102}]}"#;
    let c = classify(200, Some(JSON), body);
    assert_eq!((c.kind, decide_at(&c, 1, &[], false, Duration::ZERO)), (Kind::Partial, Decision::Return));
    assert_eq!(c.errors.len(), 1);
    assert_eq!(
        (c.errors[0].code.as_str(), c.errors[0].scope),
        ("RECIPIENT_STATUS_UNDELIVERABLE", ErrorScope::Record(1))
    );
    assert_eq!(c.errors[0].attribute("recipientId"), Some("102"));
}

/// At most `MAX_ERRORS` vendor errors are kept from one response, as for every vendor: a
/// batch with more failed records keeps the first ones, and the reason counts them all.
#[test]
fn record_failures_are_kept_up_to_the_cap() {
    let max = redial_vendors::MAX_ERRORS;
    let record = r#"{"errorMessage":"RECIPIENT_STATUS_UNDELIVERABLE: bad","success":false,"recipientId":7}"#;
    for n in [max - 1, max, max + 1, max + 500] {
        let body = format!("[{}]", vec![record; n].join(","));
        let c = classify(200, Some(JSON), &body);
        assert_eq!((c.kind, c.errors.len()), (Kind::Partial, n.min(max)), "{n} failed records");
        assert_eq!(c.errors.last().map(|e| e.scope), Some(ErrorScope::Record(n.min(max) - 1)), "{n}");
        assert!(c.reason.contains(&format!("{n} record(s) failed")), "{n}: {}", c.reason);
    }
}

#[test]
fn aftm_allow_list() {
    let r = Responsys::default();
    for p in [
        "/rest/haApi/v1.3/campaigns/welcome/email",
        "/rest/haApi/v1.3/campaigns/welcome/sms",
        "/rest/haApi/v1.3/campaigns/welcome/push",
        "/rest/haApi/v1.3/lists/master/members?qa=r&id=1",
        "/rest/haAsyncApi/v1.3/campaigns/welcome/email",
    ] {
        assert!(r.is_aftm_path(p), "{p}");
    }
    for p in ["/rest/api/v1.3/campaigns/welcome/email", "/rest/api/v1.3/lists", "/", ""] {
        assert!(!r.is_aftm_path(p), "{p}");
    }
    let only = Responsys::default().with_aftm_paths(["/rest/haApi/*/campaigns/*/email"]);
    assert!(only.is_aftm_path("/rest/haApi/v1.3/campaigns/x/email"));
    assert!(!only.is_aftm_path("/rest/haApi/v1.3/lists/x/members"));
    assert_eq!(only.aftm_paths(), ["/rest/haApi/*/campaigns/*/email"]);
    assert_eq!(Responsys::default().aftm_paths(), responsys::AFTM_PATHS);
}

/// API_NOT_ALLOWED_IN_SECONDARY: "only AFTM endpoints are sent, others fail fast locally". The
/// profile's failover gate is the AFTM allow-list.
#[test]
fn in_failover_only_aftm_endpoints_are_allowed() {
    let r = Responsys::default();
    assert_eq!(r.name(), "responsys");
    let allowed = |uri: &str| {
        let (uri, headers): (Uri, _) = (uri.parse().unwrap(), HeaderMap::new());
        r.allowed_in_failover(&RequestHead { method: &Method::POST, uri: &uri, headers: &headers, body: None })
    };
    assert!(allowed("https://acct-aftm.responsys.ocs.oraclecloud.com/rest/haApi/v1.3/campaigns/welcome/email"));
    assert!(allowed("https://acct-aftm.responsys.ocs.oraclecloud.com/rest/haAsyncApi/v1.3/campaigns/welcome/sms"));
    assert!(!allowed("https://acct-aftm.responsys.ocs.oraclecloud.com/rest/api/v1.3/campaigns/welcome/email"));
    assert!(!allowed("https://acct-aftm.responsys.ocs.oraclecloud.com/rest/api/v1.3/lists/master/members"));
}

#[test]
fn policy_fits_the_documented_waits() {
    let p = policy();
    // "Retry up to 3 times" without a response, plus the replay after one re-login: 5 in all,
    // which also bounds how often a 503 is retried.
    assert_eq!(p.max_attempts(), 1 + responsys::NO_RESPONSE_RETRIES as u32 + 1);
    assert_eq!(responsys::NO_RESPONSE_RETRIES, 3);
    let deadline = p.deadline().unwrap();
    let attempt = p.attempt_timeout().unwrap();
    assert!(deadline >= 6 * 60 * S + 4 * attempt);
    // The README's "Responsys: 5 in 15 min, for its 2-minute waits".
    assert_eq!((p.max_attempts(), deadline), (5, 15 * 60 * S));
    assert!(p.retry_after_cap() >= responsys::CAPACITY_MAX_DELAY);
    assert_eq!(HOSTS, ["*.responsys.ocs.oraclecloud.com", "*.responsys.net"]);
}

#[test]
fn inspects_errors_and_json_successes() {
    let h_json = headers(Some("application/json; charset=utf-8"));
    let h_none = headers(None);
    let p = Responsys::default();
    let now = SystemTime::now();
    with_request(|req| {
        let res = |status: u16, h| ResponseHead {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            received_at: now,
        };
        assert!(p.inspect(req, &res(200, &h_json)));
        assert!(!p.inspect(req, &res(200, &h_none)));
        assert!(p.inspect(req, &res(401, &h_none)));
        assert!(p.inspect(req, &res(503, &h_none)));
        assert!(!p.inspect(req, &res(302, &h_json)));
    });
}

// ---------------------------------------------------------------------------------------------
// Parser tolerance.

/// `API_LIMIT_EXCEEDED` is a limit per API function, and a full async queue refuses one request:
/// other calls to the account go on. `INTERNAL_CAPACITY_LIMIT_EXCEEDED` is the account's.
#[test]
fn throttled_codes_name_the_limit_they_are_about() {
    let table = [
        (400, "API_LIMIT_EXCEEDED", Throttle::Request),
        (401, "API_LIMIT_EXCEEDED", Throttle::Request),
        (500, "UNABLE_TO_SUBMIT_ASYNC_REQUEST", Throttle::Request),
        (429, "INTERNAL_CAPACITY_LIMIT_EXCEEDED", Throttle::Rate),
    ];
    for (status, code, throttle) in table {
        let c = classify(status, Some(JSON), &envelope(code));
        assert_eq!((c.kind, c.throttle), (Kind::Throttled, throttle), "{code}");
    }
}

#[test]
fn code_as_a_number_and_unknown_fields() {
    let e = ResponsysError::parse(br#"{"errorCode":503,"extra":{"a":[1,2]},"title":7}"#).unwrap();
    assert_eq!(e.error_code, "503");
    assert_eq!(e.title, None);
    let c = classify(503, Some(JSON), r#"{"errorCode":503,"extra":true}"#);
    assert_eq!(c.kind, Kind::Fatal, "an undocumented code is final whatever the status");
}

#[test]
fn media_types_with_parameters_and_suffixes() {
    for ct in ["application/json;charset=UTF-8", "application/problem+json", "text/plain", "bogus"] {
        let c = classify(401, Some(ct), &envelope("TOKEN_EXPIRED"));
        assert_eq!(c.kind, Kind::AuthExpired, "{ct}");
    }
    let c = classify(401, None, &envelope("TOKEN_EXPIRED"));
    assert_eq!(c.kind, Kind::AuthExpired);
}

#[test]
fn error_details_shapes() {
    let parse = |details: &str| {
        ResponsysError::parse(format!(r#"{{"errorCode":"X","errorDetails":{details}}}"#).as_bytes())
            .unwrap()
            .error_details
    };
    assert!(parse("[]").is_empty());
    assert!(parse(r#""[]""#).is_empty());
    assert!(parse(r#""""#).is_empty());
    assert!(parse("null").is_empty());
    assert_eq!(parse(r#"["a",{"b":1}]"#), ["a", r#"{"b":1}"#]);
    assert_eq!(parse(r#""[\"a\"]""#), ["a"]);
    assert_eq!(parse(r#""free text""#), ["free text"]);
}

#[test]
fn bodies_that_do_not_parse_fall_back_to_the_status() {
    let cases = [
        (502, Some("text/html"), "<html><body>Bad gateway</body></html>"),
        (500, Some(JSON), r#"{"type":"","title":"x","errorCode":"UNRECOV"#),
        (400, Some(JSON), ""),
        (401, Some(JSON), "[1,2,3]"),
        (401, Some(JSON), r#"{"errorCode":""}"#),
        (401, Some(JSON), r#"{"errorCode":null,"title":"x"}"#),
        (503, None, "\u{feff}"),
    ];
    for (status, ct, body) in cases {
        let c = classify(status, ct, body);
        let generic = redial_core::generic::Generic::classify_status(&ResponseHead {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &HeaderMap::new(),
            received_at: SystemTime::now(),
        });
        assert_eq!(c.body, BodyUse::Fallback, "{body}");
        assert_eq!((c.kind, c.advice.action()), (generic.kind, generic.advice.action()), "{body}");
        assert!(c.reason.starts_with("responsys: "), "{}", c.reason);
        assert!(c.errors.is_empty());
    }
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let c = classify(401, Some(JSON), &format!("\u{feff}{}", envelope("INVALID_TOKEN")));
    assert_eq!(c.kind, Kind::AuthExpired);
}

#[test]
fn a_body_past_the_inspect_limit_uses_the_status() {
    let body = envelope("INVALID_TOKEN");
    let c = classify_body(401, Some(JSON), Body::Prefix(&body.as_bytes()[..10]));
    assert_eq!(c.body, BodyUse::TooLarge);
    assert_eq!(c.kind, Kind::Fatal);
    let c = classify_body(503, Some(JSON), Body::Prefix(body.as_bytes()));
    assert_eq!(c.body, BodyUse::TooLarge);
    assert_eq!(c.kind, Kind::Transient);
    let c = classify_body(200, Some(JSON), Body::NotRead);
    assert_eq!(c.kind, Kind::Success);
}

#[test]
fn the_default_policy_is_valid_and_builds_on() {
    let p: Policy = policy().to_builder().max_attempts(2).build().unwrap();
    assert_eq!(p.max_attempts(), 2);
}

proptest! {
    #[test]
    fn any_body_any_status_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        status in 100u16..600,
        ct in 0usize..4,
        prefix: bool,
        idempotent: bool,
    ) {
        let ct = [None, Some(JSON), Some("application/problem+json; charset=utf-8"), Some("text/html")][ct];
        let body = if prefix { Body::Prefix(&body) } else { Body::Complete(&body) };
        let c = classify_body(status, ct, body);
        let d = decide_at(&c, 1, &[], idempotent, Duration::ZERO);
        prop_assert!(matches!(d.action(), Action::Return | Action::Retry | Action::RefreshAuth | Action::Fail));
    }

    #[test]
    fn json_shaped_bodies_never_panic(
        code in "[A-Z_]{0,30}",
        title in any::<String>(),
        details in prop_oneof![Just("[]".to_owned()), Just("\"[]\"".to_owned()), any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap())],
        wrap: bool,
        status in 100u16..600,
    ) {
        let inner = format!(r#"{{"type":"","title":{},"errorCode":"{code}","detail":null,"errorDetails":{details}}}"#, serde_json::to_string(&title).unwrap());
        let body = if wrap { format!(r#"{{"responseMessage":{inner},"status":"ERROR"}}"#) } else { inner };
        let c = classify(status, Some(JSON), &body);
        let _ = decide_at(&c, 1, &[], false, Duration::ZERO);
        if !code.is_empty() {
            prop_assert_eq!(c.code(), Some(code.as_str()));
        }
    }
}
