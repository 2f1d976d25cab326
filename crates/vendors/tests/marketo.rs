//! Marketo Engage REST: the table of VENDORS.md walked row by row, its documented scenarios,
//! the parser's tolerance, and a property test that no body can make it panic.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use proptest::prelude::*;
use redial_core::backoff::SplitMix64;
use redial_core::hint::HintSource;
use redial_core::*;
use redial_vendors::marketo::{self, parse, quota_reset, Marketo};

const JSON: &str = "application/json;charset=UTF-8";
const SECOND: Duration = Duration::from_secs(1);

/// Verbatim from VENDORS.md (Marketo fixtures).
const FIXTURE_606: &str = r#"{"requestId":"e42b#14272d07d78","success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"}]}"#;
/// Verbatim from the seed page (Marketo error codes, record level): two created, one skipped.
const FIXTURE_1005: &str = r#"{
"requestId":"e42b#14272d07d78",
"success":true,
"result":[
{
"id":50,
"status":"created"
},
{
"id":51,
"status":"created"
},
{
"status":"skipped",
"reasons":[
{
"code":"1005",
"message":"Lead already exists"
}
]
}
]
}"#;

fn error_body(code: &str) -> String {
    format!(r#"{{"requestId":"e42b#14272d07d78","success":false,"errors":[{{"code":"{code}","message":"m"}}]}}"#)
}

fn headers(content_type: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(ct) = content_type {
        h.insert("content-type", HeaderValue::from_str(ct).unwrap());
    }
    h
}

/// Classify one response and decide its first attempt under Marketo's policy.
fn run_at(
    method: &Method,
    status: u16,
    headers: &HeaderMap,
    body: Body<'_>,
    received_at: SystemTime,
) -> (Classification, Decision) {
    let uri: Uri = "https://123-ABC-456.mktorest.com/rest/v1/leads.json".parse().unwrap();
    let req_headers = HeaderMap::new();
    let req = RequestHead { method, uri: &uri, headers: &req_headers, body: None };
    let head = ResponseHead { status: StatusCode::from_u16(status).unwrap(), headers, received_at };
    let c = Marketo::new().classify(&req, &Outcome::Response(head, body));
    let d = first_decision(&c, method);
    (c, d)
}

fn first_decision(c: &Classification, method: &Method) -> Decision {
    let policy = marketo::policy();
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
    decide(c, &ctx, None, Instant::now(), &mut SplitMix64::seeded(7))
}

fn run(method: &Method, status: u16, content_type: Option<&str>, body: &str) -> (Classification, Decision) {
    let h = headers(content_type);
    run_at(method, status, &h, Body::Complete(body.as_bytes()), UNIX_EPOCH)
}

fn min_delay(d: &Decision) -> Option<Duration> {
    match d {
        Decision::Retry { range, .. } => Some(range.0),
        _ => None,
    }
}

#[test]
fn every_row_of_the_marketo_table() {
    use Action::*;
    use Kind::*;
    let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let codes = |codes: &[&'static str]| codes.iter().map(|c| (*c, 200, Some(JSON), error_body(c))).collect::<Vec<_>>();
    // (signal, kind, action for GET, action for POST, shortest wait)
    type Row = (Vec<(&'static str, u16, Option<&'static str>, String)>, Kind, Action, Action, Option<Duration>);
    let table: Vec<Row> = vec![
        (codes(&["601", "602"]), AuthExpired, RefreshAuth, RefreshAuth, None),
        // 606: inside the 20 s window, from 2 s; 615: once in-flight calls drop, from 1 s.
        (vec![("606", 200, Some(JSON), FIXTURE_606.into())], Throttled, Retry, Retry, Some(2 * SECOND)),
        (codes(&["615"]), Throttled, Retry, Retry, Some(SECOND)),
        (codes(&["604", "608", "611", "614", "713", "719"]), Transient, Retry, Retry, Some(SECOND)),
        (vec![("HTTP 502", 502, Some("text/html"), html.into())], Transient, Retry, Fail, Some(SECOND)),
        // 500 and 502 as response-level codes: the call may have been carried out behind them.
        (codes(&["500", "502"]), Transient, Retry, Fail, Some(SECOND)),
        // "A long backoff (tens of seconds)": from 20 s.
        (codes(&["1016", "1019", "1022", "1029"]), Throttled, Retry, Retry, Some(20 * SECOND)),
        (codes(&["607"]), QuotaExhausted, Fail, Fail, None),
        (vec![("HTTP 413", 413, Some("text/html"), "<html>413</html>".into())], Fatal, Fail, Fail, None),
        (
            codes(&[
                "603", "605", "609", "610", "612", "613", "616", "701", "702", "703", "704", "709", "710", "711",
                "712", "714", "718", "799", "6xx",
            ]),
            Fatal,
            Fail,
            Fail,
            None,
        ),
        (vec![("record-level 1005", 200, Some(JSON), FIXTURE_1005.into())], Partial, Return, Return, None),
        (
            vec![(
                "success",
                200,
                Some(JSON),
                r#"{"requestId":"a#1","success":true,"result":[{"id":1,"status":"updated"}]}"#.into(),
            )],
            Success,
            Return,
            Return,
            None,
        ),
    ];
    for (signals, kind, get, post, wait) in table {
        for (signal, status, ct, body) in signals {
            for (method, want) in [(Method::GET, get), (Method::POST, post)] {
                let (c, d) = run(&method, status, ct, &body);
                assert_eq!(c.kind, kind, "{signal} {method}: {c:?}");
                assert_eq!(d.action(), want, "{signal} {method}: {d:?}");
                if want == Retry {
                    assert_eq!(min_delay(&d), wait, "{signal} {method}: {d:?}");
                }
                if want == Fail && c.advice.action() == Retry {
                    assert_eq!(d, Decision::Fail(FailReason::NotIdempotent), "{signal} {method}");
                }
                if status == 200 && signal.len() <= 4 {
                    assert_eq!(c.code(), Some(signal), "{signal}");
                    assert_eq!(c.body, BodyUse::Parsed);
                }
            }
        }
    }
    // HTTP 414: a GET is rewritten, any other method fails.
    let (c, d) = run(&Method::GET, 414, Some("text/html"), "<html>414</html>");
    assert_eq!((c.kind, d), (Transient, Decision::Rewrite(redial_core::Rewrite::MethodOverridePost)));
    let (c, d) = run(&Method::POST, 414, Some("text/html"), "<html>414</html>");
    assert_eq!((c.kind, d.action()), (Fatal, Fail));
}

/// 606 "the host limiter also holds other requests"; 615 "limiter lowers concurrency"; a full
/// job queue or an object in use holds only the request that met it.
#[test]
fn throttled_codes_name_the_limit_they_are_about() {
    let table = [
        ("606", Throttle::Rate),
        ("615", Throttle::Concurrency),
        ("1016", Throttle::Request),
        ("1019", Throttle::Request),
        ("1022", Throttle::Request),
        ("1029", Throttle::Request),
    ];
    for (code, throttle) in table {
        let (c, _) = run(&Method::POST, 200, Some(JSON), &error_body(code));
        assert_eq!((c.kind, c.throttle), (Kind::Throttled, throttle), "{code}");
    }
}

#[test]
fn rule_names_are_marketo_code() {
    for code in ["606", "615", "604", "713", "719", "1016", "1029"] {
        let (c, _) = run(&Method::GET, 200, Some(JSON), &error_body(code));
        match c.advice {
            Advice::Retry(rule) => assert_eq!(rule.name(), format!("marketo.{code}")),
            other => panic!("{code}: {other:?}"),
        }
    }
    // HTTP 502 is Marketo's own row too, not the generic one.
    let (c, _) = run(&Method::GET, 502, Some("text/html"), "<html><h1>502 Bad Gateway</h1></html>");
    match c.advice {
        Advice::Retry(rule) => assert_eq!(rule.name(), "marketo.502"),
        other => panic!("HTTP 502: {other:?}"),
    }
}

#[test]
fn marketo_200_with_606() {
    let (c, d) = run(&Method::POST, 200, Some(JSON), FIXTURE_606);
    assert_eq!(c.kind, Kind::Throttled);
    let e = &c.errors[0];
    assert_eq!(e.code, "606");
    assert_eq!(e.message.as_deref(), Some("Max rate limit '100' exceeded with in '20' secs"));
    assert_eq!(e.scope, ErrorScope::Response);
    assert_eq!(e.attribute("requestId"), Some("e42b#14272d07d78"));
    let Advice::Retry(rule) = &c.advice else { panic!("{c:?}") };
    assert_eq!(rule.safety(), Safety::AnyMethod, "6xx: the request was not executed");
    // Every wait lies within the 20 s window, however many retries came before.
    let Decision::Retry { after, range } = d else { panic!("{d:?}") };
    assert!(
        range.0 >= marketo::RATE_RETRY_MIN && range.1 <= marketo::RATE_WINDOW && range.0 <= after && after <= range.1
    );
    let backoff = rule.backoff_ref().unwrap();
    let mut previous = None;
    let mut rng = SplitMix64::seeded(1);
    for n in 0..20 {
        let (lo, hi) = backoff.bounds(n, previous).unwrap();
        assert!(marketo::RATE_RETRY_MIN <= lo && hi <= marketo::RATE_WINDOW, "retry {n}");
        previous = backoff.delay(n, previous, &mut rng);
    }
    // The code as a number means the same.
    let (c, _) = run(&Method::POST, 200, Some(JSON), &FIXTURE_606.replace(r#""606""#, "606"));
    assert_eq!((c.kind, c.code()), (Kind::Throttled, Some("606")));
}

#[test]
fn marketo_601_refreshes_the_token() {
    let body = r#"{"requestId":"e42b#14272d07d78","success":false,"errors":[{"code":"601","message":"Unauthorized"}]}"#;
    let (c, d) = run(&Method::POST, 200, Some(JSON), body);
    assert_eq!((c.kind, &c.advice), (Kind::AuthExpired, &Advice::RefreshAuth));
    assert_eq!(d, Decision::RefreshAuth);
    assert_eq!(c.code(), Some("601"));
    assert_eq!(c.errors[0].message.as_deref(), Some("Unauthorized"));
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn date(s: &str) -> SystemTime {
    httpdate::parse_http_date(s).unwrap()
}

#[test]
fn marketo_607_fails_with_its_reset_time() {
    // (received, reset): a CST date and a CDT date.
    let cases = [
        // Mon 15 Jan 2024 15:30 UTC = 09:30 CST → 00:00 CST = 06:00 UTC.
        ("Mon, 15 Jan 2024 15:30:00 GMT", "Tue, 16 Jan 2024 06:00:00 GMT"),
        // Thu 04 Jul 2024 12:00 UTC = 07:00 CDT → 00:00 CDT = 05:00 UTC.
        ("Thu, 04 Jul 2024 12:00:00 GMT", "Fri, 05 Jul 2024 05:00:00 GMT"),
    ];
    let h = headers(Some(JSON));
    let body = r#"{"requestId":"1#2","success":false,"errors":[{"code":"607","message":"Daily quota reached"}]}"#;
    for (received, reset) in cases {
        let (c, d) = run_at(&Method::GET, 200, &h, Body::Complete(body.as_bytes()), date(received));
        assert_eq!((c.kind, d), (Kind::QuotaExhausted, Decision::Fail(FailReason::Final)));
        let hint = c.hint.expect("the reset time is the hint");
        assert_eq!(hint.source, HintSource::Vendor);
        assert_eq!(date(received) + hint.delay, date(reset), "{received}");
        assert_eq!(c.errors[0].attribute("resets_at"), Some(reset));
        assert!(c.reason.contains(reset), "{}", c.reason);
    }
}

/// The reset time belongs to the 607 error: another error of the same response does not carry it.
#[test]
fn marketo_607_beside_another_error_puts_the_reset_on_the_607_only() {
    let h = headers(Some(JSON));
    let body =
        r#"{"success":false,"errors":[{"code":"606","message":"a"},{"code":"607","message":"Daily quota reached"}]}"#;
    let received = "Mon, 15 Jan 2024 15:30:00 GMT";
    let (c, d) = run_at(&Method::GET, 200, &h, Body::Complete(body.as_bytes()), date(received));
    assert_eq!((c.kind, d), (Kind::QuotaExhausted, Decision::Fail(FailReason::Final)));
    let got: Vec<_> = c.errors.iter().map(|e| (e.code.as_str(), e.attribute("resets_at"))).collect();
    assert_eq!(got, [("606", None), ("607", Some("Tue, 16 Jan 2024 06:00:00 GMT"))]);
}

/// Every day from 2007 (when the rule took its present form) to 2100 against the US rule
/// worked out independently, from the calendar httpdate prints: the reset after noon UTC is the next local midnight, 05:00 UTC
/// when that midnight is in daylight time (after the second Sunday of March, up to and
/// including the first Sunday of November), 06:00 UTC otherwise.
#[test]
fn quota_reset_follows_the_us_rule_every_day_to_2100() {
    const DAY: u64 = 86_400;
    // (weekday, day of the month, month) of a day since 1970, as httpdate writes it.
    let calendar = |day: u64| {
        let text = httpdate::fmt_http_date(at(day * DAY));
        let mut words = text.split([' ', ',']).filter(|w| !w.is_empty());
        let weekday = words.next().unwrap().to_owned();
        let dom: u32 = words.next().unwrap().parse().unwrap();
        let name = words.next().unwrap();
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let month = months.iter().position(|m| *m == name).unwrap() as u32 + 1;
        (weekday, dom, month)
    };
    // 1 Jan 2007 to 31 Dec 2100.
    let (first, last) = (13_514, 47_846);
    assert_eq!(httpdate::fmt_http_date(at(first * DAY)), "Mon, 01 Jan 2007 00:00:00 GMT");
    assert_eq!(httpdate::fmt_http_date(at(last * DAY)), "Fri, 31 Dec 2100 00:00:00 GMT");
    let mut sundays_this_month = 0;
    let mut daylight = false; // whether the midnight that starts the next day is in daylight time
    let mut checked = 0;
    for day in first..=last {
        let (weekday, dom, month) = calendar(day);
        if dom == 1 {
            sundays_this_month = 0;
        }
        if weekday == "Sun" {
            sundays_this_month += 1;
            // The change at 02:00 on these Sundays: the midnight that ends the day is the other side.
            if month == 3 && sundays_this_month == 2 {
                daylight = true;
            }
            if month == 11 && sundays_this_month == 1 {
                daylight = false;
            }
        }
        let want = (day + 1) * DAY + if daylight { 5 } else { 6 } * 3600;
        assert_eq!(
            quota_reset(at(day * DAY + 12 * 3600)),
            Some(at(want)),
            "{}",
            httpdate::fmt_http_date(at(day * DAY))
        );
        checked += 1;
    }
    assert_eq!(checked, 34_333);
}

#[test]
fn quota_reset_follows_us_central_daylight_saving() {
    // (received, reset), around the 2024 changes: 10 Mar and 3 Nov.
    let cases = [
        ("Sat, 09 Mar 2024 12:00:00 GMT", "Sun, 10 Mar 2024 06:00:00 GMT"), // CST, the night before
        ("Sun, 10 Mar 2024 07:59:59 GMT", "Mon, 11 Mar 2024 05:00:00 GMT"), // 01:59:59 CST on the day
        ("Sun, 10 Mar 2024 08:00:00 GMT", "Mon, 11 Mar 2024 05:00:00 GMT"), // 03:00 CDT
        ("Sat, 02 Nov 2024 12:00:00 GMT", "Sun, 03 Nov 2024 05:00:00 GMT"), // CDT, the night before
        ("Sun, 03 Nov 2024 06:59:59 GMT", "Mon, 04 Nov 2024 06:00:00 GMT"), // 01:59:59 CDT
        ("Sun, 03 Nov 2024 07:00:00 GMT", "Mon, 04 Nov 2024 06:00:00 GMT"), // 01:00 CST again
        ("Fri, 05 Jul 2024 04:59:59 GMT", "Fri, 05 Jul 2024 05:00:00 GMT"), // 23:59:59 CDT
        ("Fri, 05 Jul 2024 05:00:00 GMT", "Sat, 06 Jul 2024 05:00:00 GMT"), // midnight itself
        ("Tue, 31 Dec 2024 23:00:00 GMT", "Wed, 01 Jan 2025 06:00:00 GMT"), // 17:00 CST
        ("Thu, 29 Feb 2024 10:00:00 GMT", "Fri, 01 Mar 2024 06:00:00 GMT"), // leap day
        ("Sun, 08 Mar 2026 09:00:00 GMT", "Mon, 09 Mar 2026 05:00:00 GMT"), // 2026: 8 Mar
        ("Sun, 01 Nov 2026 04:00:00 GMT", "Sun, 01 Nov 2026 05:00:00 GMT"), // 2026: 1 Nov
    ];
    for (received, reset) in cases {
        assert_eq!(quota_reset(date(received)), Some(date(reset)), "{received}");
    }
    assert_eq!(quota_reset(at(0)), Some(at(6 * 3600)), "1 Jan 1970 was CST");
    // "None for times tens of thousands of years away from 1970" (2^40 s is about 34,800 years).
    assert_eq!(quota_reset(at(1 << 41)), None);
    assert_eq!(quota_reset(UNIX_EPOCH - Duration::from_secs(1 << 41)), None);
}

#[test]
fn marketo_414_on_a_get_is_rewritten_once() {
    let (c, d) = run(&Method::GET, 414, None, "");
    assert_eq!(c.advice, Advice::Rewrite(Rewrite::MethodOverridePost));
    assert_eq!(d, Decision::Rewrite(Rewrite::MethodOverridePost));
    // A second 414 after the rewrite is not rewritten again.
    let policy = marketo::policy();
    let first = Attempt::new(1, Some(StatusCode::URI_TOO_LONG), None, &c, &d, Duration::ZERO);
    let ctx = Context {
        attempt: 2,
        history: &[first],
        policy: &policy,
        idempotent: true,
        replayable: Ok(()),
        elapsed: Duration::ZERO,
        can_reconcile: false,
        can_refresh_auth: true,
    };
    let d = decide(&c, &ctx, None, Instant::now(), &mut SplitMix64::seeded(1));
    assert_eq!(d, Decision::Fail(FailReason::RewriteExhausted));
}

#[test]
fn marketo_413_is_fatal() {
    for method in [Method::POST, Method::GET] {
        let (c, d) = run(&method, 413, Some("text/html"), "<html><body>Request Entity Too Large</body></html>");
        assert_eq!((c.kind, d), (Kind::Fatal, Decision::Fail(FailReason::Final)));
        assert!(c.reason.contains("413"), "{}", c.reason);
        // Marketo's row, not the generic one: it names the limit and the fix.
        assert!(c.reason.contains("over 1 MB") && c.reason.contains("split it"), "{}", c.reason);
    }
    // HTTP 414 on another method than GET is Marketo's row too: the URI is over 8 KB.
    let (c, d) = run(&Method::POST, 414, Some("text/html"), "<html>414</html>");
    assert_eq!((c.kind, d), (Kind::Fatal, Decision::Fail(FailReason::Final)));
    assert!(c.reason.starts_with("marketo: HTTP 414") && c.reason.contains("8 KB"), "{}", c.reason);
}

#[test]
fn marketo_record_level_1005_is_partial() {
    let (c, d) = run(&Method::POST, 200, Some(JSON), FIXTURE_1005);
    assert_eq!((c.kind, &c.advice, d), (Kind::Partial, &Advice::Return, Decision::Return));
    assert_eq!(c.errors.len(), 1);
    let e = &c.errors[0];
    assert_eq!((e.code.as_str(), e.message.as_deref()), ("1005", Some("Lead already exists")));
    assert_eq!(e.scope, ErrorScope::Record(2));
    // Several skipped records keep their input order.
    let body = r#"{"requestId":"r","success":true,"result":[
        {"status":"skipped","reasons":[{"code":"1004","message":"Lead not found"},{"code":1006,"message":"Field not found"}]},
        {"id":7,"status":"updated"},
        {"seq":2,"status":"skipped","reasons":[{"code":"1003","message":"Invalid data"}]},
        {"status":"skipped"}]}"#;
    let (c, _) = run(&Method::POST, 200, Some(JSON), body);
    let got: Vec<_> = c.errors.iter().map(|e| (e.code.as_str(), e.scope)).collect();
    use ErrorScope::Record;
    assert_eq!(got, [("1004", Record(0)), ("1006", Record(0)), ("1003", Record(2)), ("skipped", Record(3))]);
    assert_eq!(c.errors[2].attribute("seq"), Some("2"));
    // Record-level queue codes are partial too: only the response-level ones are retried.
    let (c, d) = run(&Method::POST, 200, Some(JSON), &FIXTURE_1005.replace("1005", "1029"));
    assert_eq!((c.kind, d), (Kind::Partial, Decision::Return));
}

#[test]
fn the_most_forbidding_error_decides_and_all_are_kept() {
    let body =
        r#"{"success":false,"errors":[{"code":"606","message":"a"},{"code":"610","message":"b"},{"code":"601"}]}"#;
    let (c, d) = run(&Method::GET, 200, Some(JSON), body);
    assert_eq!((c.kind, d.action()), (Kind::Fatal, Action::Fail));
    assert_eq!(c.errors.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(), ["606", "610", "601"]);
    let body = r#"{"success":false,"errors":[{"code":"606"},{"code":"601"}]}"#;
    assert_eq!(run(&Method::GET, 200, Some(JSON), body).0.kind, Kind::AuthExpired);
    // The rank, from the most forbidding down: quota over fatal, throttled over transient; the
    // order of the errors in the body does not matter.
    for (codes, kind) in [
        (["610", "607"], Kind::QuotaExhausted),
        (["607", "610"], Kind::QuotaExhausted),
        (["604", "606"], Kind::Throttled),
        (["606", "604"], Kind::Throttled),
    ] {
        let body = format!(r#"{{"success":false,"errors":[{{"code":"{}"}},{{"code":"{}"}}]}}"#, codes[0], codes[1]);
        assert_eq!(run(&Method::GET, 200, Some(JSON), &body).0.kind, kind, "{codes:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tolerance.

#[test]
fn content_types_with_parameters_and_json_suffixes_are_read() {
    for ct in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON;charset=UTF-8"),
        Some("application/vnd.marketo+json"),
        None,
    ] {
        let (c, _) = run(&Method::GET, 200, ct, FIXTURE_606);
        assert_eq!((c.kind, c.body), (Kind::Throttled, BodyUse::Parsed), "{ct:?}");
    }
    // A 2xx that is not JSON (a bulk export file) is not read, whatever it contains.
    let (c, _) = run(&Method::GET, 200, Some("text/csv"), FIXTURE_606);
    assert_eq!((c.kind, c.body), (Kind::Success, BodyUse::NotRead));
    let uri: Uri = "https://x.mktorest.com/bulk/v1/leads/export/1/file.json".parse().unwrap();
    let (h, rh) = (headers(Some("text/csv")), HeaderMap::new());
    let req = RequestHead { method: &Method::GET, uri: &uri, headers: &rh, body: None };
    let head = ResponseHead { status: StatusCode::OK, headers: &h, received_at: UNIX_EPOCH };
    assert!(!Marketo::new().inspect(&req, &head));
    let h = headers(Some(JSON));
    assert!(Marketo::new().inspect(&req, &ResponseHead { headers: &h, ..head }));
    let h = headers(Some("text/html"));
    assert!(Marketo::new().inspect(&req, &ResponseHead { status: StatusCode::BAD_GATEWAY, headers: &h, ..head }));
}

#[test]
fn bodies_that_do_not_parse_fall_back_to_the_status_rules() {
    let truncated = &FIXTURE_606[..FIXTURE_606.len() / 2];
    let cases = [
        (200, "", Kind::Success, "empty body"),
        (200, "   ", Kind::Success, "empty body"),
        (200, truncated, Kind::Success, "truncated JSON"),
        (200, "<html><body>Service Unavailable</body></html>", Kind::Success, "not JSON"),
        (200, "[1,2,3]", Kind::Success, "not a JSON object"),
        (200, r#"{"access_token":"secret","expires_in":3599}"#, Kind::Success, "not a Marketo response"),
        (502, "<html><h1>502 Bad Gateway</h1></html>", Kind::Transient, "not JSON"),
        (503, truncated, Kind::Transient, "truncated JSON"),
        (500, "", Kind::Transient, "empty body"),
        (
            401,
            r#"{"error":"invalid_client","error_description":"Bad client credentials"}"#,
            Kind::Fatal,
            "not a Marketo response",
        ),
    ];
    for (status, body, kind, why) in cases {
        let (c, _) = run(&Method::GET, status, Some(JSON), body);
        assert_eq!((c.kind, c.body), (kind, BodyUse::Fallback), "{status} {body:?}");
        assert!(c.reason.contains(why), "{status} {body:?}: {}", c.reason);
        assert!(c.errors.is_empty());
    }
}

#[test]
fn a_body_over_the_inspect_limit_is_judged_by_its_status() {
    let h = headers(Some(JSON));
    let prefix = Body::Prefix(&FIXTURE_606.as_bytes()[..40]);
    let (c, _) = run_at(&Method::GET, 200, &h, prefix, UNIX_EPOCH);
    assert_eq!((c.kind, c.body), (Kind::Success, BodyUse::TooLarge));
    let (c, _) = run_at(&Method::GET, 502, &h, prefix, UNIX_EPOCH);
    assert_eq!((c.kind, c.body), (Kind::Transient, BodyUse::TooLarge));
    let (c, _) = run_at(&Method::GET, 200, &h, Body::NotRead, UNIX_EPOCH);
    assert_eq!((c.kind, c.body), (Kind::Success, BodyUse::NotRead));
}

#[test]
fn the_parser_is_tolerant() {
    // Codes as numbers (integers or integral floats), unknown members, odd types, one object.
    let r = parse(br#"{"requestId":7,"success":"false","moreResult":false,"errors":{"code":606.0,"message":"x","extra":[1]},
                      "warnings":["w1",3],"result":[{"id":"abc","status":"Skipped","reasons":[{"code":1005}]},"junk",{"marketoGUID":"g"}]}"#)
    .unwrap();
    assert_eq!(r.request_id.as_deref(), Some("7"));
    assert_eq!(r.success, Some(false));
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].code, "606");
    assert_eq!(r.warnings, ["w1", "3"]);
    assert_eq!(r.result.len(), 2);
    assert!(r.result[0].is_skipped());
    assert_eq!(r.result[0].id.as_deref(), Some("abc"));
    assert_eq!(r.result[0].reasons[0].code, "1005");
    assert_eq!(r.result[0].reasons[0].message, None);
    assert_eq!(r.record_errors().map(|(i, e)| (i, e.code.as_str())).collect::<Vec<_>>(), [(0, "1005")]);
    // Errors without a code or a message are kept, and are final.
    let (c, d) = run(&Method::GET, 200, Some(JSON), r#"{"success":false,"errors":[{"message":"no code"}]}"#);
    assert_eq!((c.kind, d.action(), c.errors.len()), (Kind::Fatal, Action::Fail, 1));
    let (c, _) = run(&Method::GET, 200, Some(JSON), r#"{"success":false}"#);
    assert_eq!((c.kind, c.body), (Kind::Fatal, BodyUse::Parsed));
    // Parse errors say why.
    for (body, why) in [
        (&b""[..], "empty body"),
        (b"{\"success\":", "truncated JSON"),
        (b"<html>", "not JSON"),
        (b"42", "not a JSON object"),
    ] {
        assert_eq!(parse(body).unwrap_err().to_string(), why);
    }
}

#[test]
fn failures_follow_the_generic_rules() {
    let c = Marketo::new().classify(
        &RequestHead {
            method: &Method::POST,
            uri: &"https://x.mktorest.com/".parse().unwrap(),
            headers: &HeaderMap::new(),
            body: None,
        },
        &Outcome::Failure(Failure::Timeout),
    );
    assert_eq!(first_decision(&c, &Method::POST), Decision::Fail(FailReason::NotIdempotent));
    assert_eq!(first_decision(&c, &Method::GET).action(), Action::Retry);
}

#[test]
fn policy_and_hosts() {
    let p = marketo::policy();
    // The documented limits themselves (VENDORS.md: 100 calls / 20 s and 10 concurrent per
    // instance), not the crate's names for them.
    assert_eq!(p.rate_limit(), Some((100, 20 * SECOND)));
    assert_eq!(p.max_concurrency(), Some(10));
    assert_eq!(marketo::RATE_WINDOW, 20 * SECOND);
    // The README's "Marketo: 4 attempts in 5 min".
    assert_eq!((p.max_attempts(), p.deadline()), (4, Some(300 * SECOND)));
    assert!(p.deadline().unwrap() >= marketo::QUEUE_RETRY_MAX * 3);
    assert!(p.replay_limit() >= 1_000_000, "Marketo accepts bodies up to 1 MB");
    // "Every 2xx JSON body is read": a batch of 300 records (the most a call takes), each
    // skipped with a reason, is read whole, so its record errors are not lost.
    let records: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"id":{i},"status":"skipped","reasons":[{{"code":"1004","message":"Lead not found"}}]}}"#))
        .collect();
    let batch = format!(r#"{{"requestId":"e42b#14272d07d78","success":true,"result":[{}]}}"#, records.join(","));
    assert!(batch.len() <= p.inspect_limit(), "{} > {}", batch.len(), p.inspect_limit());
    assert_eq!(marketo::HOSTS, ["*.mktorest.com"]);
}

proptest! {
    #[test]
    fn no_body_makes_it_panic(
        status in 100u16..600,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        ct in prop_oneof![Just(None), Just(Some(JSON)), Just(Some("application/problem+json")), Just(Some("text/xml")), Just(Some("text/html"))],
        variant in 0u8..3,
        post: bool,
        secs in 0u64..8_000_000_000,
    ) {
        let h = headers(ct);
        let body = match variant { 0 => Body::Complete(&body), 1 => Body::Prefix(&body), _ => Body::NotRead };
        let method = if post { Method::POST } else { Method::GET };
        let (c, d) = run_at(&method, status, &h, body, at(secs));
        if c.kind.is_success() {
            prop_assert_eq!(d, Decision::Return);
        }
    }

    #[test]
    fn json_shaped_bodies_never_panic(
        code in prop_oneof![Just("606".to_string()), Just("607".to_string()), "[0-9]{1,5}", ".{0,8}"],
        numeric: bool,
        success in prop_oneof![Just("true"), Just("false"), Just("\"false\""), Just("null"), Just("1")],
        cut in 0usize..200,
        secs in 0u64..8_000_000_000,
    ) {
        let code = if numeric { code.clone() } else { format!("{code:?}") };
        let body = format!(r#"{{"success":{success},"errors":[{{"code":{code}}}],"result":[{{"status":"skipped","reasons":[{{"code":{code}}}]}}]}}"#);
        let body = &body.as_bytes()[..body.len().saturating_sub(cut)];
        let h = headers(Some(JSON));
        let _ = run_at(&Method::POST, 200, &h, Body::Complete(body), at(secs));
    }

    #[test]
    fn quota_resets_at_the_next_central_midnight(secs in 0u64..8_000_000_000) {
        let t = at(secs);
        let reset = quota_reset(t).unwrap();
        let wait = reset.duration_since(t).unwrap();
        prop_assert!(wait > Duration::ZERO && wait <= Duration::from_secs(25 * 3600));
        let hour = reset.duration_since(UNIX_EPOCH).unwrap().as_secs() % 86_400;
        prop_assert!(hour == 5 * 3600 || hour == 6 * 3600, "{hour}");
    }
}
