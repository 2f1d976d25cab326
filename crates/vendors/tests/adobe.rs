//! Adobe Edge Network Server API: the table of VENDORS.md walked row by row, its documented
//! scenarios, the parser's tolerance, and a property test that no body can make it panic.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use proptest::prelude::*;
use redial_core::backoff::SplitMix64;
use redial_core::hint::HintSource;
use redial_core::*;
use redial_vendors::adobe::{self, error_code, parse, parse_problem, AdobeEdge};

const PROBLEM: &str = "application/problem+json;charset=utf-8";
const JSON: &str = "application/json;charset=utf-8";
const SECOND: Duration = Duration::from_secs(1);

/// Verbatim from VENDORS.md (Adobe fixtures): a fatal 422.
const FIXTURE_422: &str = r#"{"type":"https://ns.adobe.com/aep/errors/EXEG-0104-422","status":422,"title":"Unprocessable entity","detail":"Invalid request (report attached). Please check your input and try again.","report":{"errors":["Allowed Adobe version is 1.0 for standard 'Adobe' at index 0"],"requestId":"0f8821e5-ed1a-4301-b445-5f336fb50ee8","orgId":"53A16ACB5CC1D3760A495C99@AdobeOrg"}}"#;
/// Verbatim from VENDORS.md (Adobe fixtures): the 207 with an error and a warning.
const FIXTURE_207: &str = r#"{"requestId":"72eaa048-207e-4dde-bf16-0cb2b21336d5","handle":[],"errors":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0201-503","status":503,"title":"The 'com.adobe.experience.platform.ode' service is temporarily unable to serve this request. Please try again later."}],"warnings":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0204-200","status":200,"title":"A warning occurred while calling the 'com.adobe.audiencemanager' service for this request.","report":{"cause":{"message":"Cannot read related customer for device id: ...","code":202}}}]}"#;

fn problem(code: &str, status: u16) -> String {
    format!(
        r#"{{"type":"https://ns.adobe.com/aep/errors/{code}","status":{status},"title":"t","detail":"d","report":{{"requestId":"r-1","orgId":"o@AdobeOrg"}}}}"#
    )
}

/// Header name/value pairs.
type Pairs<'a> = &'a [(&'static str, &'a str)];

fn headers(pairs: Pairs<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn run_at(
    method: &Method,
    status: u16,
    headers: &HeaderMap,
    body: Body<'_>,
    received_at: SystemTime,
) -> (Classification, Decision) {
    let uri: Uri = "https://server.adobedc.net/ee/v2/interact?dataStreamId=abc".parse().unwrap();
    let req_headers = HeaderMap::new();
    let req = RequestHead { method, uri: &uri, headers: &req_headers, body: None };
    let head = ResponseHead { status: StatusCode::from_u16(status).unwrap(), headers, received_at };
    let c = AdobeEdge::new().classify(&req, &Outcome::Response(head, body));
    let d = decide_with(&c, method, &[]);
    (c, d)
}

fn decide_with(c: &Classification, method: &Method, history: &[Attempt]) -> Decision {
    let policy = adobe::policy();
    let ctx = Context {
        attempt: history.len() as u32 + 1,
        history,
        policy: &policy,
        idempotent: policy.idempotent_methods().contains(method),
        replayable: Ok(()),
        elapsed: Duration::ZERO,
        can_reconcile: false,
        can_refresh_auth: true,
    };
    decide(c, &ctx, None, Instant::now(), &mut SplitMix64::seeded(7))
}

fn run(method: &Method, status: u16, h: Pairs<'_>, body: &str) -> (Classification, Decision) {
    run_at(method, status, &headers(h), Body::Complete(body.as_bytes()), UNIX_EPOCH)
}

fn min_delay(d: &Decision) -> Option<Duration> {
    match d {
        Decision::Retry { range, .. } => Some(range.0),
        _ => None,
    }
}

#[test]
fn every_row_of_the_adobe_table() {
    use Action::*;
    use Kind::*;
    let ct = [("content-type", PROBLEM)];
    let json = [("content-type", JSON)];
    let p = problem;
    let warnings = r#"{"requestId":"r","handle":[],"warnings":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0204-200","status":200,"title":"w"}]}"#;
    // (signal, status, headers, body, kind, action for GET, action for POST, shortest wait)
    #[rustfmt::skip]
    type Row<'a> = (&'a str, u16, Pairs<'a>, String, Kind, Action, Action, Option<Duration>);
    let table: Vec<Row<'_>> = vec![
        (
            "2xx without errors",
            200,
            &json,
            r#"{"requestId":"r","handle":[{"type":"state:store","payload":[]}]}"#.into(),
            Success,
            Return,
            Return,
            None,
        ),
        ("204", 204, &[], String::new(), Success, Return, Return, None),
        ("207", 207, &json, FIXTURE_207.into(), Partial, Return, Return, None),
        ("200 with warnings", 200, &json, warnings.into(), Partial, Return, Return, None),
        (
            "429 Retry-After: 5",
            429,
            &[("content-type", PROBLEM), ("retry-after", "5")],
            p("EXEG-0000-429", 429),
            Throttled,
            Retry,
            Retry,
            Some(Duration::from_secs(5)),
        ),
        (
            "429 without Retry-After",
            429,
            &ct,
            p("EXEG-0000-429", 429),
            Throttled,
            Retry,
            Retry,
            Some(adobe::THROTTLE_DEFAULT),
        ),
        (
            "503 Retry-After: 7",
            503,
            &[("content-type", PROBLEM), ("retry-after", "7")],
            p("EXEG-0000-503", 503),
            Transient,
            Retry,
            Retry,
            Some(Duration::from_secs(7)),
        ),
        ("503 EXEG-0201-503", 503, &ct, p("EXEG-0201-503", 503), Transient, Retry, Retry, Some(SECOND)),
        ("503 plain", 503, &[], String::new(), Transient, Retry, Retry, Some(SECOND)),
        // "503 | transient": whatever EXEG code the body names.
        ("503 EXEG-0999-503", 503, &ct, p("EXEG-0999-503", 503), Transient, Retry, Retry, Some(SECOND)),
        ("504 EXEG-0200-504", 504, &ct, p("EXEG-0200-504", 504), Transient, Retry, Retry, Some(SECOND)),
        ("502 EXEG-0203-502", 502, &ct, p("EXEG-0203-502", 502), Transient, Retry, Retry, Some(SECOND)),
        ("502 EXEG-0300-502", 502, &ct, p("EXEG-0300-502", 502), Transient, Retry, Retry, Some(SECOND)),
        ("502 EXEG-0307-502", 502, &ct, p("EXEG-0307-502", 502), Transient, Retry, Retry, Some(SECOND)),
        (
            "502 plain",
            502,
            &[("content-type", "text/html")],
            "<html>Bad Gateway</html>".into(),
            Transient,
            Retry,
            Retry,
            Some(SECOND),
        ),
        ("504 plain", 504, &[], String::new(), Transient, Retry, Retry, Some(SECOND)),
        ("EXEG-0202-502", 502, &ct, p("EXEG-0202-502", 502), Fatal, Fail, Fail, None),
        ("EXEG-0205-502", 502, &ct, p("EXEG-0205-502", 502), Fatal, Fail, Fail, None),
        // On a 504 as on a 502, an EXEG code not in the table is final [I].
        ("EXEG-0999-504", 504, &ct, p("EXEG-0999-504", 504), Fatal, Fail, Fail, None),
        ("401 EXEG-0503-401", 401, &ct, p("EXEG-0503-401", 401), AuthExpired, RefreshAuth, RefreshAuth, None),
        ("500 EXEG-0001-500", 500, &ct, p("EXEG-0001-500", 500), Fatal, Fail, Fail, None),
        ("500 EXEG-0100-500", 500, &ct, p("EXEG-0100-500", 500), Fatal, Fail, Fail, None),
        ("500 plain", 500, &[], String::new(), Fatal, Fail, Fail, None),
        ("400 EXEG-0101-400", 400, &ct, p("EXEG-0101-400", 400), Fatal, Fail, Fail, None),
        ("401 EXEG-0500-401", 401, &ct, p("EXEG-0500-401", 401), Fatal, Fail, Fail, None),
        ("403 EXEG-0400-403", 403, &ct, p("EXEG-0400-403", 403), Fatal, Fail, Fail, None),
        ("404", 404, &[], String::new(), Fatal, Fail, Fail, None),
        ("408 EXEG-0109-408", 408, &ct, p("EXEG-0109-408", 408), Fatal, Fail, Fail, None),
        ("409 EXEG-0302-409", 409, &ct, p("EXEG-0302-409", 409), Fatal, Fail, Fail, None),
        ("413 EXEG-0112-413", 413, &ct, p("EXEG-0112-413", 413), Fatal, Fail, Fail, None),
        ("415 EXEG-0111-415", 415, &ct, p("EXEG-0111-415", 415), Fatal, Fail, Fail, None),
        ("422 EXEG-0104-422", 422, &ct, FIXTURE_422.into(), Fatal, Fail, Fail, None),
        ("422 EXEG-0004-422", 422, &ct, p("EXEG-0004-422", 422), Fatal, Fail, Fail, None),
    ];
    for (signal, status, h, body, kind, get, post, wait) in table {
        for (method, want) in [(Method::GET, get), (Method::POST, post)] {
            let (c, d) = run(&method, status, h, &body);
            assert_eq!(c.kind, kind, "{signal} {method}: {c:?}");
            assert_eq!(d.action(), want, "{signal} {method}: {d:?}");
            assert_eq!(min_delay(&d), wait, "{signal} {method}: {d:?}");
            if let Some(code) = signal.split(' ').find(|w| w.starts_with("EXEG-")) {
                assert_eq!(c.code(), Some(code), "{signal}");
                assert_eq!(c.body, BodyUse::Parsed, "{signal}");
            }
        }
    }
}

#[test]
fn rule_names_are_adobe_code() {
    let ct = [("content-type", PROBLEM)];
    for (status, code, rule) in [
        (503, "EXEG-0000-503", "adobe.exeg-0000-503"),
        (504, "EXEG-0200-504", "adobe.exeg-0200-504"),
        (503, "EXEG-0201-503", "adobe.exeg-0201-503"),
        (502, "EXEG-0203-502", "adobe.exeg-0203-502"),
        (502, "EXEG-0300-502", "adobe.exeg-0300-502"),
        (502, "EXEG-0307-502", "adobe.exeg-0307-502"),
        (429, "EXEG-0000-429", "adobe.429"),
        (503, "EXEG-0999-503", "adobe.503"),
    ] {
        let (c, _) = run(&Method::POST, status, &ct, &problem(code, status));
        let Advice::Retry(r) = c.advice else { panic!("{code}") };
        assert_eq!(r.name(), rule);
        assert_eq!(r.safety(), Safety::AnyMethod);
    }
}

#[test]
fn adobe_207_exposes_errors_and_warnings() {
    for method in [Method::POST, Method::GET] {
        let (c, d) = run(&method, 207, &[("content-type", "application/json")], FIXTURE_207);
        assert_eq!((c.kind, &c.advice, d), (Kind::Partial, &Advice::Return, Decision::Return));
        assert_eq!(c.body, BodyUse::Parsed);
        let [error, warning] = &c.errors[..] else { panic!("{:?}", c.errors) };
        assert_eq!(error.code, "EXEG-0201-503");
        assert_eq!(error.scope, ErrorScope::NonFatal);
        assert!(error.message.as_deref().unwrap().starts_with("The 'com.adobe.experience.platform.ode' service"));
        assert_eq!(error.attribute("status"), Some("503"));
        assert_eq!(error.attribute("requestId"), Some("72eaa048-207e-4dde-bf16-0cb2b21336d5"));
        assert_eq!(warning.code, "EXEG-0204-200");
        assert_eq!(warning.scope, ErrorScope::Warning);
        let report: serde_json::Value = serde_json::from_str(warning.attribute("report").unwrap()).unwrap();
        assert_eq!(report["cause"]["code"], 202);
        assert_eq!(report["cause"]["message"], "Cannot read related customer for device id: ...");
    }
    // Never retried, even once the 207's upstream error says "try again later".
    let (c, _) = run(&Method::GET, 207, &[("content-type", JSON), ("retry-after", "1")], FIXTURE_207);
    assert_eq!(c.advice, Advice::Return);
}

#[test]
fn adobe_429_with_and_without_retry_after() {
    let body = problem("EXEG-0000-429", 429);
    let received = httpdate::parse_http_date("Mon, 15 Jan 2024 15:30:00 GMT").unwrap();
    let cases: [(Pairs<'_>, Duration, Option<HintSource>); 4] = [
        (&[("retry-after", "5")], Duration::from_secs(5), Some(HintSource::RetryAfter)),
        (&[("retry-after", "30")], Duration::from_secs(30), Some(HintSource::RetryAfter)),
        (&[("retry-after", "Mon, 15 Jan 2024 15:30:12 GMT")], Duration::from_secs(12), Some(HintSource::RetryAfter)),
        (&[], adobe::THROTTLE_DEFAULT, None),
    ];
    for (h, wait, source) in cases {
        let mut h = headers(h);
        h.insert("content-type", HeaderValue::from_static(PROBLEM));
        let (c, d) = run_at(&Method::POST, 429, &h, Body::Complete(body.as_bytes()), received);
        assert_eq!(c.kind, Kind::Throttled);
        assert_eq!(c.hint.map(|h| h.source), source);
        assert_eq!(d, Decision::Retry { after: wait, range: (wait, wait) }, "{h:?}");
    }
    assert_eq!(adobe::THROTTLE_DEFAULT, Duration::from_secs(5));
}

#[test]
fn adobe_500_is_not_retried() {
    let body = problem("EXEG-0001-500", 500);
    for method in [Method::GET, Method::PUT, Method::POST] {
        let (c, d) = run(&method, 500, &[("content-type", PROBLEM)], &body);
        assert_eq!((c.kind, d), (Kind::Fatal, Decision::Fail(FailReason::Final)), "{method}");
        assert_eq!(c.code(), Some("EXEG-0001-500"));
    }
    let (c, d) = run(&Method::GET, 500, &[("content-type", "text/html")], "<html>oops</html>");
    assert_eq!((c.kind, c.body, d), (Kind::Fatal, BodyUse::Fallback, Decision::Fail(FailReason::Final)));
}

#[test]
fn adobe_503_honours_retry_after() {
    for (h, body) in [
        (vec![("content-type", PROBLEM), ("retry-after", "7")], problem("EXEG-0201-503", 503)),
        (vec![("content-type", PROBLEM), ("retry-after", "7")], problem("EXEG-0000-503", 503)),
        (vec![("retry-after", "7")], String::new()),
    ] {
        let (c, d) = run(&Method::POST, 503, &h, &body);
        assert_eq!(c.kind, Kind::Transient);
        assert_eq!(c.hint.unwrap().delay, Duration::from_secs(7));
        let seven = Duration::from_secs(7);
        assert_eq!(d, Decision::Retry { after: seven, range: (seven, seven) }, "{body}");
    }
    // A Retry-After past the deadline fails at once, with the hint.
    let (_, d) = run(&Method::POST, 503, &[("retry-after", "3600")], "");
    assert!(matches!(d, Decision::Fail(FailReason::HintExceedsLimit { .. })), "{d:?}");
}

#[test]
fn adobe_expired_token_is_refreshed_once() {
    let (c, d) = run(&Method::POST, 401, &[("content-type", PROBLEM)], &problem("EXEG-0503-401", 401));
    assert_eq!((c.kind, &d), (Kind::AuthExpired, &Decision::RefreshAuth));
    let first = Attempt::new(1, Some(StatusCode::UNAUTHORIZED), None, &c, &d, Duration::ZERO);
    let again = decide_with(&c, &Method::POST, &[first]);
    assert_eq!(again, Decision::Fail(FailReason::AuthRefreshExhausted { max: 1 }));
}

#[test]
fn adobe_fatal_problem_keeps_its_report() {
    let (c, d) = run(&Method::POST, 422, &[("content-type", "application/problem+json")], FIXTURE_422);
    assert_eq!((c.kind, d), (Kind::Fatal, Decision::Fail(FailReason::Final)));
    let e = &c.errors[0];
    assert_eq!(e.code, "EXEG-0104-422");
    assert_eq!(e.scope, ErrorScope::Response);
    assert_eq!(e.message.as_deref(), Some("Unprocessable entity"));
    assert_eq!(
        e.attribute("detail"),
        Some("Invalid request (report attached). Please check your input and try again.")
    );
    assert_eq!(e.attribute("requestId"), Some("0f8821e5-ed1a-4301-b445-5f336fb50ee8"));
    assert_eq!(e.attribute("orgId"), Some("53A16ACB5CC1D3760A495C99@AdobeOrg"));
    assert_eq!(e.attribute("report.errors"), Some("Allowed Adobe version is 1.0 for standard 'Adobe' at index 0"));
    let p = c.problem.as_ref().unwrap();
    assert_eq!((p.status, p.title.as_deref()), (Some(422), Some("Unprocessable entity")));
    assert!(p.extensions.contains_key("report"));
}

// ---------------------------------------------------------------------------------------------
// Tolerance.

#[test]
fn media_types_and_shapes_are_read_tolerantly() {
    // A problem served as plain JSON, with parameters, or without a Content-Type.
    for h in [
        vec![("content-type", "application/json")],
        vec![("content-type", "Application/Problem+JSON; charset=UTF-8")],
        vec![],
    ] {
        let (c, _) = run(&Method::POST, 401, &h, &problem("EXEG-0503-401", 401));
        assert_eq!((c.kind, c.body), (Kind::AuthExpired, BodyUse::Parsed), "{h:?}");
    }
    // Lower-case codes, codes after a trailing slash or with a query, non-EXEG types.
    assert_eq!(error_code("https://ns.adobe.com/aep/errors/exeg-0202-502/").as_deref(), Some("EXEG-0202-502"));
    assert_eq!(error_code("EXEG-12-502"), None);
    assert_eq!(error_code(""), None);
    let (c, _) = run(
        &Method::POST,
        502,
        &[("content-type", PROBLEM)],
        r#"{"type":"https://example.com/probs/upstream","status":502}"#,
    );
    assert_eq!((c.kind, c.code()), (Kind::Transient, Some("upstream")));
    // Errors as a lone object or as strings; unknown members ignored; odd types dropped.
    let r = parse(br#"{"requestId":5,"handle":{},"errors":{"type":"https://ns.adobe.com/aep/errors/EXEG-0201-503","status":"503"},"warnings":["just text",7,null],"extra":true}"#).unwrap();
    assert_eq!(r.request_id, None);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].status, None);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].title.as_deref(), Some("just text"));
    let errors = r.vendor_errors();
    assert_eq!(errors[0].code, "EXEG-0201-503");
    assert_eq!((errors[1].code.as_str(), errors[1].scope), ("about:blank", ErrorScope::Warning));
    // A 2xx that is not JSON is not read.
    let (c, _) = run(&Method::GET, 200, &[("content-type", "text/html")], FIXTURE_207);
    assert_eq!((c.kind, c.body), (Kind::Success, BodyUse::NotRead));
}

#[test]
fn bodies_that_do_not_parse_fall_back_to_the_status_rules() {
    let truncated = &FIXTURE_207[..FIXTURE_207.len() / 2];
    let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let cases = [
        (207, vec![("content-type", JSON)], truncated, Kind::Partial, "truncated JSON"),
        (200, vec![("content-type", JSON)], "", Kind::Success, "empty body"),
        (200, vec![("content-type", JSON)], "[]", Kind::Success, "not a JSON object"),
        (502, vec![("content-type", "text/html")], html, Kind::Transient, "Content-Type"),
        (502, vec![], html, Kind::Transient, "not JSON"),
        (429, vec![("content-type", PROBLEM)], "", Kind::Throttled, "empty body"),
        (401, vec![("content-type", PROBLEM)], &FIXTURE_422[..30], Kind::Fatal, "truncated JSON"),
    ];
    for (status, h, body, kind, why) in cases {
        let (c, _) = run(&Method::POST, status, &h, body);
        assert_eq!((c.kind, c.body), (kind, BodyUse::Fallback), "{status} {body:?}");
        assert!(c.reason.contains(why), "{status}: {}", c.reason);
        assert!(c.errors.is_empty());
    }
    for (body, why) in [
        (&b" "[..], "empty body"),
        (b"{\"type\":", "truncated JSON"),
        (b"<html>", "not JSON"),
        (b"\"x\"", "not a JSON object"),
    ] {
        assert_eq!(parse_problem(body).unwrap_err().to_string(), why);
        assert_eq!(parse(body).unwrap_err().to_string(), why);
    }
}

#[test]
fn a_body_over_the_inspect_limit_is_judged_by_its_status() {
    let h = headers(&[("content-type", JSON)]);
    let prefix = Body::Prefix(&FIXTURE_207.as_bytes()[..64]);
    for (status, kind) in [(207, Kind::Partial), (200, Kind::Success), (504, Kind::Transient), (500, Kind::Fatal)] {
        let (c, _) = run_at(&Method::POST, status, &h, prefix, UNIX_EPOCH);
        assert_eq!((c.kind, c.body), (kind, BodyUse::TooLarge), "{status}");
    }
    let uri: Uri = "https://edge.adobedc.net/ee/v2/collect".parse().unwrap();
    let rh = HeaderMap::new();
    let req = RequestHead { method: &Method::POST, uri: &uri, headers: &rh, body: None };
    let head = ResponseHead { status: StatusCode::OK, headers: &h, received_at: UNIX_EPOCH };
    assert!(AdobeEdge::new().inspect(&req, &head));
    assert!(!AdobeEdge::new().inspect(&req, &ResponseHead { status: StatusCode::NO_CONTENT, ..head }));
    let html = headers(&[("content-type", "text/html")]);
    assert!(!AdobeEdge::new().inspect(&req, &ResponseHead { headers: &html, ..head }));
    assert!(AdobeEdge::new().inspect(&req, &ResponseHead { status: StatusCode::BAD_GATEWAY, headers: &html, ..head }));
}

#[test]
fn failures_follow_the_generic_rules() {
    let uri: Uri = "https://server.adobedc.net/ee/v2/interact".parse().unwrap();
    let rh = HeaderMap::new();
    let req = RequestHead { method: &Method::POST, uri: &uri, headers: &rh, body: None };
    let c = AdobeEdge::new().classify(&req, &Outcome::Failure(Failure::Connect));
    assert_eq!(decide_with(&c, &Method::POST, &[]).action(), Action::Retry);
    let c = AdobeEdge::new().classify(&req, &Outcome::Failure(Failure::Io));
    assert_eq!(decide_with(&c, &Method::POST, &[]), Decision::Fail(FailReason::NotIdempotent));
}

#[test]
fn policy_and_hosts() {
    let p = adobe::policy();
    assert_eq!(p.max_auth_refreshes(), 1);
    assert!(p.deadline().unwrap() > adobe::THROTTLE_DEFAULT * 4);
    assert_eq!(adobe::HOSTS, ["server.adobedc.net", "edge.adobedc.net"]);
    // 2xx bodies are read for their errors and warnings, behind personalization handles that
    // can be large: a 207 carrying 64 KiB of handle payload is still read whole.
    let payload = "x".repeat(64 * 1024);
    let body = FIXTURE_207.replacen(
        r#""handle":[]"#,
        &format!(r#""handle":[{{"type":"personalization:decisions","payload":[{{"data":"{payload}"}}]}}]"#),
        1,
    );
    assert!(body.len() > 64 * 1024 && body.len() <= p.inspect_limit(), "{} > {}", body.len(), p.inspect_limit());
}

proptest! {
    #[test]
    fn no_body_makes_it_panic(
        status in 100u16..600,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        ct in prop_oneof![Just(None), Just(Some(JSON)), Just(Some(PROBLEM)), Just(Some("text/xml")), Just(Some("text/html"))],
        retry_after in prop_oneof![Just(None), Just(Some("5")), Just(Some("Mon, 15 Jan 2024 15:30:12 GMT")), Just(Some("soon"))],
        variant in 0u8..3,
        post: bool,
    ) {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct { h.insert("content-type", HeaderValue::from_static(ct)); }
        if let Some(ra) = retry_after { h.insert("retry-after", HeaderValue::from_static(ra)); }
        let body = match variant { 0 => Body::Complete(&body), 1 => Body::Prefix(&body), _ => Body::NotRead };
        let method = if post { Method::POST } else { Method::GET };
        let (c, d) = run_at(&method, status, &h, body, UNIX_EPOCH);
        if c.kind.is_success() {
            prop_assert_eq!(d, Decision::Return);
        }
    }

    #[test]
    fn problem_shaped_bodies_never_panic(
        ty in prop_oneof![Just("https://ns.adobe.com/aep/errors/EXEG-0503-401".to_string()), ".{0,40}"],
        status in 100u16..600,
        report in prop_oneof![Just("null"), Just("[]"), Just(r#"{"errors":[1,"x",{}],"requestId":3}"#), Just(r#"{"cause":{}}"#)],
        cut in 0usize..120,
    ) {
        let body = format!(r#"{{"type":{ty:?},"status":{status},"report":{report},"errors":[{{"type":{ty:?}}}],"warnings":[{{"report":{report}}}]}}"#);
        let body = &body.as_bytes()[..body.len().saturating_sub(cut)];
        let h = headers(&[("content-type", PROBLEM)]);
        let _ = run_at(&Method::POST, status, &h, Body::Complete(body), UNIX_EPOCH);
    }
}
