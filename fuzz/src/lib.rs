//! The fuzz harnesses of redial, one function per target: `fuzz_targets/<name>.rs` calls
//! `redial_fuzz::<name>(data)`. Kept in a library so that `cargo test` here replays the seed
//! corpus on the stable toolchain, without libFuzzer (see `tests/seeds.rs`).
//!
//! Every harness must never panic on any input. Beyond that, each asserts the few contract
//! properties that hold for every input (noted at each `assert!`); a failed assertion is a
//! crash like any other.
//!
//! Input formats (the seeds in `seeds/<target>/` are written in them):
//!
//! | target | input |
//! |---|---|
//! | `retry_after` | the bytes are one `Retry-After` value, and also header lines `name: value` (a line without `:` is a `Retry-After` value) |
//! | `problem`, `marketo`, `adobe`, `responsys`, `genesys_soap` | the bytes are a response body |
//! | `logins` | 2 bytes status (LE, `100 + n % 900`), then the body |
//! | `classify_decide` | a fixed-size [`Control`] (derived with `arbitrary`, 27 bytes), then response header lines, a blank line (`\n\n`), and the body; without a blank line everything is the body. Header lines starting with `>` are request headers. |

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, StatusCode, Uri};
use redial_core::auth::Login;
use redial_core::backoff::SplitMix64;
use redial_core::budget::{BudgetConfig, RatioBudget, RetryBudget};
use redial_core::hint::{self, parse_retry_after, rate_limit_reset, server_hint};
use redial_core::{
    decide, Advice, Attempt, Body, Classification, Context, Decision, FailReason, Failure, NotReplayable, Outcome,
    Problem, RequestHead, ResponseHead,
};
use redial_vendors::{adobe, genesys, marketo, responsys, Vendor};

/// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
const RFC_NOW: u64 = 784_111_777;

/// The times `Retry-After` dates are measured against: before, at and after the epoch, the
/// RFC's date, and past the year 9999.
fn nows() -> [SystemTime; 5] {
    [
        UNIX_EPOCH - Duration::from_secs(86_400),
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(RFC_NOW),
        UNIX_EPOCH + Duration::from_secs(1_705_332_600),
        UNIX_EPOCH + Duration::from_secs(253_402_300_800 + 86_400),
    ]
}

/// 50 years and a day.
const RFC850_AHEAD_MAX: Duration = Duration::from_secs((50 * 366 + 1) * 86_400);

/// Whether a value has the shape of an RFC 850 date (`Sunday, 06-Nov-94 08:49:37 GMT`).
fn is_rfc850(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    text.trim()
        .split_once(", ")
        .is_some_and(|(day, rest)| day.len() > 3 && day.ends_with("day") && rest.as_bytes().get(2) == Some(&b'-'))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Header lines `name: value` (CRLF or LF); lines that are not a valid header are skipped, a
/// line without `:` goes to `bare` when given.
fn header_lines(text: &[u8], mut bare: Option<&HeaderName>, request: Option<&mut HeaderMap>, response: &mut HeaderMap) {
    let mut request = request;
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (map, line) = match (line.strip_prefix(b">"), request.as_deref_mut()) {
            (Some(rest), Some(req)) => (req, rest),
            _ => (&mut *response, line),
        };
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            if let Some(name) = bare.as_mut() {
                if let Ok(v) = HeaderValue::from_bytes(trim_ows(line)) {
                    map.append((*name).clone(), v);
                }
            }
            continue;
        };
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
}

/// `parse_retry_after` at several clocks, then the hint headers over a map built from lines.
pub fn retry_after(data: &[u8]) {
    let nows = nows();
    let mut previous: Option<Option<Duration>> = None;
    // An RFC 850 date's two-digit year is read relative to the clock (RFC 9110 §5.6.7): its
    // meaning, and whether its weekday fits, change from one clock to another, but at a clock
    // httpdate writes (1970 to 9999) it is never read as more than 50 years ahead.
    let rfc850 = is_rfc850(data);
    for now in nows {
        let d = parse_retry_after(data, now);
        let digits = trim_ows(data);
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            // delay-seconds do not depend on the clock.
            assert!(d.is_some(), "delay-seconds not parsed");
        }
        if rfc850 {
            let writable = now.duration_since(UNIX_EPOCH).is_ok_and(|s| s.as_secs() < 253_402_300_800);
            assert!(!writable || d.is_none_or(|d| d <= RFC850_AHEAD_MAX), "RFC 850 date read {d:?} ahead");
            continue;
        }
        if let Some(Some(before)) = previous {
            // A later clock never makes the wait longer; validity does not depend on it.
            let after = d.expect("a value valid at one clock is valid at every clock");
            assert!(after <= before, "later clock, longer wait: {before:?} then {after:?}");
        } else if let Some(None) = previous {
            assert!(d.is_none(), "a value invalid at one clock is invalid at every clock");
        }
        previous = Some(d);
    }

    let mut h = HeaderMap::new();
    header_lines(data, Some(&RETRY_AFTER), None, &mut h);
    for now in nows {
        let best = hint::retry_after(&h, now);
        for v in h.get_all(RETRY_AFTER) {
            if let Some(one) = parse_retry_after(v.as_bytes(), now) {
                // The longest valid value wins.
                assert!(best >= Some(one), "retry_after {best:?} below one of its values {one:?}");
            }
        }
        let hint = server_hint(&h, now);
        match best {
            Some(d) => assert_eq!(hint.map(|h| h.delay), Some(d), "Retry-After must win"),
            None => assert_eq!(hint.map(|h| h.delay), rate_limit_reset(&h)),
        }
    }
}

/// RFC 9457 problem details, and the media-type predicates over the same bytes as text.
pub fn problem(data: &[u8]) {
    if let Some(p) = Problem::parse(data) {
        let e = p.to_vendor_error();
        assert!(!e.code.is_empty(), "a problem's vendor error has a code");
        let _ = p.type_uri();
        let _ = format!("{p:?} {e:?}");
    }
    // Lossy, so that multi-byte characters (U+FFFD) are common: the predicates are public and
    // take any `&str`, not only what `HeaderValue::to_str` yields.
    let text = String::from_utf8_lossy(data);
    let json = redial_core::is_json_media_type(&text);
    let problem = redial_core::is_problem_media_type(&text);
    assert!(!problem || json, "problem+json is JSON");
}

pub fn marketo(data: &[u8]) {
    if let Ok(r) = marketo::parse(data) {
        let errors = r.vendor_errors();
        let skipped = r.result.iter().filter(|s| s.is_skipped()).count();
        // Every error and skipped record, up to the documented cap.
        let want = (r.errors.len() + skipped).min(redial_vendors::MAX_ERRORS);
        assert!(errors.len() >= want, "every error and skipped record is reported");
        assert!(errors.len() <= redial_vendors::MAX_ERRORS, "at most MAX_ERRORS are kept");
        let _ = r.record_errors().count();
        let _ = r.is_failure();
    }
    // The daily quota reset, at a time taken from the first 8 bytes.
    if let Some(bytes) = data.get(..8) {
        let t = i64::from_le_bytes(bytes.try_into().unwrap_or_default());
        let at = if t >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(t.unsigned_abs()))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(t.unsigned_abs()))
        };
        if let Some(at) = at {
            if let Some(reset) = marketo::quota_reset(at) {
                let wait = reset.duration_since(at).expect("the reset is after the time given");
                assert!(wait > Duration::ZERO && wait <= Duration::from_secs(25 * 3600), "reset in {wait:?}");
            }
        }
    }
}

pub fn adobe(data: &[u8]) {
    if let Ok(r) = adobe::parse(data) {
        let errors = r.vendor_errors();
        // Every error and warning, up to the documented cap.
        assert_eq!(errors.len(), (r.errors.len() + r.warnings.len()).min(redial_vendors::MAX_ERRORS));
    }
    if let Ok(p) = adobe::parse_problem(data) {
        let _ = p.to_vendor_error();
        if let Some(code) = adobe::error_code(p.type_uri()) {
            assert_eq!(code.len(), 13, "EXEG-NNNN-SSS");
        }
    }
    if let Some(code) = adobe::error_code(&String::from_utf8_lossy(data)) {
        assert!(code.starts_with("EXEG-") && code.len() == 13, "{code}");
    }
}

pub fn responsys(data: &[u8]) {
    if let Some(e) = responsys::ResponsysError::parse(data) {
        assert!(!e.error_code.trim().is_empty(), "an envelope has a code");
        let v = e.to_vendor_error();
        assert_eq!(v.code, e.error_code);
    }
}

/// The SOAP fault parser, and the request-side operation reader over the same bytes. Time
/// and memory are bounded by libFuzzer's `-timeout` and `-rss_limit_mb`.
pub fn genesys_soap(data: &[u8]) {
    if let Some(f) = genesys::parse_fault(data) {
        assert!(f.errors.len() <= genesys::MAX_ERRORS);
        for e in &f.errors {
            assert!(!e.code.is_empty(), "an error without a code is not kept");
            let _ = e.to_vendor_error();
        }
    }
    let (method, uri, headers) = (Method::POST, Uri::from_static("/ServiceAPI"), HeaderMap::new());
    let req = RequestHead { method: &method, uri: &uri, headers: &headers, body: Some(data) };
    let _ = genesys::operation(&req);
}

/// A secret no constant message contains, with a byte that form-encoding changes.
pub const SECRET: &str = "Zq9!x";

/// Every built-in login, with [`SECRET`] as its secret.
pub fn all_logins() -> Vec<Box<dyn Login>> {
    use redial_vendors::oauth2::{AuthStyle, ClientCredentials};
    let oauth = || ClientCredentials::new("https://auth.example.com/oauth2/token", "client", SECRET).unwrap();
    vec![
        Box::new(marketo::IdentityLogin::new("https://123-ABC-456.mktorest.com/identity", "id", SECRET).unwrap()),
        Box::new(responsys::PasswordLogin::new("https://login2.responsys.net", "user", SECRET).unwrap()),
        Box::new(adobe::ImsLogin::new("id", SECRET, ["openid", "AdobeID"])),
        Box::new(oauth()),
        Box::new(oauth().auth_style(AuthStyle::Post)),
    ]
}

#[derive(Debug, Arbitrary)]
struct LoginControl {
    status: u16,
}

/// Every login's `parse` over an arbitrary status and body.
pub fn logins(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(control) = LoginControl::arbitrary(&mut u) else {
        return;
    };
    let body = u.take_rest();
    let status = StatusCode::from_u16(100 + control.status % 900).expect("100..=999");
    for login in all_logins() {
        login_parse(&*login, status, body);
    }
}

/// One login's answer: no panic, a credential can always be attached, and no secret shows.
pub fn login_parse(login: &dyn Login, status: StatusCode, body: &[u8]) {
    // A fixed clock: the same input reads the same way on every run.
    match login.parse(&ResponseHead::new(status, &HeaderMap::new(), UNIX_EPOCH + Duration::from_secs(RFC_NOW)), body) {
        Ok(c) => {
            let mut h = HeaderMap::new();
            assert!(login.attach().apply(&mut h, &c.token), "a parsed token cannot be attached");
            if let Some(e) = &c.endpoint {
                assert!(e.host().is_some_and(|h| !h.is_empty()), "an endpoint without a host");
            }
        }
        Err(e) => {
            let shown = format!("{e} {e:?} {}", e.code().unwrap_or(""));
            assert!(!shown.contains(SECRET), "the secret shows: {shown}");
        }
    }
}

/// The inputs of one classify → decide run, besides the headers and the body.
#[derive(Debug, Arbitrary)]
pub struct Control {
    vendor: u8,
    status: u16,
    method: u8,
    attempt: u8,
    history: u8,
    history_failures: u16,
    outcome: u8,
    body_mode: u8,
    uri: u8,
    request_body: u8,
    flags: u8,
    elapsed: u16,
    received_at: u32,
    seed: u64,
}

const METHODS: [Method; 7] =
    [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::HEAD, Method::OPTIONS];

const URIS: [&str; 6] = [
    "https://123-ABC-456.mktorest.com/rest/v1/leads.json?filterType=email&filterValues=a@b.example",
    "https://server.adobedc.net/ee/v2/interact?dataStreamId=abc",
    "https://acme.responsys.ocs.oraclecloud.com/rest/api/v1.3/campaigns/welcome/email",
    "https://acme-aftm.responsys.ocs.oraclecloud.com/rest/haApi/v1.3/campaigns/welcome/email",
    "https://engage.example/ServiceAPI",
    "/relative?x=1",
];

fn soap_request(op: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><api:{op} xmlns:api="urn:engage"><externalId>X1</externalId></api:{op}></S:Body></S:Envelope>"#
    )
    .into_bytes()
}

const FAILURES: [Failure; 4] = [Failure::Connect, Failure::Timeout, Failure::Io, Failure::BodyRead];

/// The whole path: a vendor's profile classifies an arbitrary outcome, then `decide` weighs it
/// under the vendor's policy, after a history of earlier attempts.
pub fn classify_decide(data: &[u8]) {
    let _ = run_classify_decide(data);
}

/// What [`classify_decide`] ran: the vendor, the status, the classification and the decision
/// of the last attempt (`None` when the input is too short to decode).
pub fn run_classify_decide(data: &[u8]) -> Option<(Vendor, StatusCode, Classification, Decision)> {
    let mut u = Unstructured::new(data);
    let k = Control::arbitrary(&mut u).ok()?;
    let rest = u.take_rest();
    let (head_bytes, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (&[][..], rest),
    };
    let (mut req_headers, mut res_headers) = (HeaderMap::new(), HeaderMap::new());
    header_lines(head_bytes, None, Some(&mut req_headers), &mut res_headers);

    let vendor = Vendor::ALL[usize::from(k.vendor) % Vendor::ALL.len()];
    let profile = vendor.profile();
    let policy = vendor.policy();
    let status = StatusCode::from_u16(100 + k.status % 900).expect("100..=999");
    let method = &METHODS[usize::from(k.method) % METHODS.len()];
    let uri: Uri = URIS[usize::from(k.uri) % URIS.len()].parse().expect("valid URI");
    let request_body = match k.request_body % 5 {
        0 => None,
        1 => Some(soap_request("createSubCampaign")),
        2 => Some(soap_request("showSubCampaignState")),
        3 => Some(body.to_vec()),
        _ => Some(b"_method=GET&filterType=id".to_vec()),
    };
    let req = RequestHead { method, uri: &uri, headers: &req_headers, body: request_body.as_deref() };
    let received_at = UNIX_EPOCH + Duration::from_secs(u64::from(k.received_at) * 16);
    let head = ResponseHead { status, headers: &res_headers, received_at };
    let inspect = profile.inspect(&req, &head);
    let _ = profile.allowed_in_failover(&req);
    let limit = policy.inspect_limit();
    let read = match k.body_mode % 4 {
        0 if !inspect => Body::NotRead,
        0 | 1 if body.len() > limit => Body::Prefix(&body[..limit]),
        0 | 1 => Body::Complete(body),
        2 => Body::Prefix(body),
        _ => Body::NotRead,
    };
    let outcome = if k.outcome < 16 {
        Outcome::Failure(FAILURES[usize::from(k.outcome) % 4])
    } else {
        Outcome::Response(head, read)
    };

    let marked_safe = k.flags & 4 != 0;
    let idempotent = marked_safe
        || policy.idempotent_methods().contains(method)
        || policy.honor_idempotency_key() && req_headers.contains_key("idempotency-key");
    let replayable = match (k.flags >> 3) % 4 {
        0 | 1 => Ok(()),
        2 => Err(NotReplayable::Streaming),
        _ => Err(NotReplayable::TooLarge { limit: policy.replay_limit() }),
    };
    let can_reconcile = k.flags & 1 != 0;
    // Set by default: the seeds were written before the bit meant anything.
    let can_refresh_auth = k.flags & 32 == 0;
    let budget =
        (k.flags & 2 != 0).then(|| RatioBudget::new(policy.budget().cloned().unwrap_or_else(BudgetConfig::default)));
    let budget = budget.as_ref().map(|b| b as &dyn RetryBudget);
    let now = Instant::now();
    let mut rng = SplitMix64::seeded(k.seed);

    // The history: the same outcome (or a failure, by bit) answered before, each decided.
    let mut history: Vec<Attempt> = Vec::new();
    let mut elapsed = Duration::ZERO;
    for i in 0..u32::from(k.history % 16) {
        let earlier =
            if k.history_failures >> (i % 16) & 1 != 0 { Outcome::Failure(FAILURES[i as usize % 4]) } else { outcome };
        let c = profile.classify(&req, &earlier);
        let ctx = Context {
            attempt: i + 1,
            history: &history,
            policy: &policy,
            idempotent,
            replayable,
            elapsed,
            can_reconcile,
            can_refresh_auth,
        };
        let d = decide(&c, &ctx, budget, now, &mut rng);
        let (status, failure) = match earlier {
            Outcome::Response(h, _) => (Some(h.status), None),
            Outcome::Failure(f) => (None, Some(f)),
            // `Outcome` is #[non_exhaustive]; the harness builds only the two above.
            _ => (None, None),
        };
        history.push(Attempt::new(i + 1, status, failure, &c, &d, elapsed));
        if let Decision::Retry { after, .. } = d {
            elapsed = elapsed.saturating_add(after);
        }
    }
    elapsed = elapsed.saturating_add(Duration::from_secs(u64::from(k.elapsed)));

    let c = profile.classify(&req, &outcome);
    let _ = (c.code(), format!("{c:?}"));
    let ctx = Context {
        attempt: u32::from(k.attempt),
        history: &history,
        policy: &policy,
        idempotent,
        replayable,
        elapsed,
        can_reconcile,
        can_refresh_auth,
    };
    let d = decide(&c, &ctx, budget, now, &mut rng);
    match (&c.advice, &d) {
        (Advice::Return, d) => assert_eq!(*d, Decision::Return),
        (Advice::Fail, d) => assert!(matches!(d, Decision::Fail(_)), "{d:?}"),
        (Advice::RefreshAuth, d) if !can_refresh_auth => assert_eq!(*d, Decision::Fail(FailReason::NoTokenSource)),
        _ => {}
    }
    match &d {
        Decision::Retry { after, range } => {
            assert!(range.0 <= *after && *after <= range.1, "{after:?} outside {range:?}");
            assert!(ctx.attempt < policy.max_attempts(), "retry past the attempt limit");
            assert!(replayable.is_ok(), "retry of a request that cannot be replayed");
            if let Some(deadline) = policy.deadline() {
                assert!(*after < deadline.saturating_sub(elapsed), "retry past the deadline");
            }
        }
        Decision::Fail(why) => {
            let _ = why.to_string();
        }
        _ => {}
    }
    let _ = Attempt::new(ctx.attempt, None, None, &c, &d, elapsed);
    Some((vendor, status, c, d))
}
