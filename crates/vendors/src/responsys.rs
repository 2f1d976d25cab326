//! Oracle Responsys REST and AFTM (Automatic Failover for Transactional Messaging).
//!
//! Every error comes in one envelope, `{"type":"","title":…,"errorCode":"…","detail":…,
//! "errorDetails":[]}`, which the Polling API nests under `responseMessage` (or `response`) of
//! an HTTP 200 body. The rules branch on `errorCode`, never on the status: Responsys documents
//! the same code under different statuses.
//!
//! | signal | kind | action |
//! |---|---|---|
//! | `INVALID_TOKEN`, `TOKEN_EXPIRED` | auth_expired | refresh_auth (re-login with the same credentials at the [`PasswordLogin`]'s URL: give it the account-specific endpoint, as Oracle advises), replay once |
//! | `UNEXPECTED_EXCEPTION` "Not a valid authentication token" (the bad-token answer of `/rest/api/ratelimit`) | auth_expired | refresh_auth, replay once |
//! | `API_NOT_ALLOWED_IN_SECONDARY` | failover | fail (only AFTM endpoints work now: see [`Responsys::is_aftm_path`]) |
//! | `UNRECOVERABLE_EXCEPTION` | transient | retry once after 30 s, any method |
//! | no response (connect, timeout, reset, broken body) | transient | retry up to 3 times, 2 min apart, any method; a body that broke behind a head the vendor sent is a response: the head's own rule holds if it re-sends any method (a 503), else the request is retried only if idempotent (the engine's rule for every vendor) |
//! | `API_LIMIT_EXCEEDED` | throttled | retry in the next minute window (60–120 s), any method **\[I\]** |
//! | `INTERNAL_CAPACITY_LIMIT_EXCEEDED` | throttled | retry with a long backoff, 60 s up to 10 min, any method **\[I\]** |
//! | `SERVICE_UNAVAILABLE`, or a non-JSON 503 | transient | retry with a backoff of 10 s up to 2 min **\[I\]** within the deadline, any method |
//! | `UNABLE_TO_SUBMIT_ASYNC_REQUEST` (async queue full) | throttled | retry with a backoff of 30 s up to 2 min, any method **\[I\]** |
//! | `PROCESSING_REQUEST` (polling: still in progress) | transient | return: the caller's polling loop polls again **\[I\]** |
//! | `ASYNC_REQUEST_EXPIRED` (polling) | fatal | fail: resubmitting is a new async call, after checking for a duplicate send **\[I\]** |
//! | `RESPONSE_PURGED`, `INVALID_REQUEST_ID`, `ASYNC_API_DISABLED_FOR_USER`, `CAMPAIGN_IS_INVALID`, `INVALID_REQUEST_CONTENT`, `RECIPIENT_LIMIT_EXCEEDED` (split the batch) | fatal | fail |
//! | `LOGIN_BLOCKED_TEMPORARILY`, `PASSWORD_*`, `ACCOUNT_SUSPENDED`, `LOGIN_BLOCKED_INVALID_IPRANGE`, `WS_ARG_DISABLED`, `API_BLOCKED`, `INVALID_PARAMETER`, `UNEXPECTED_EXCEPTION` (any other detail), any other code | fatal | fail; never hammer the login |
//! | 2xx record array with `success: false` records | partial | return; each record's `errorMessage` is a [`VendorError`] scoped to its index |
//!
//! A body that is not a Responsys envelope (an HTML gateway page, truncated JSON, an empty
//! body) falls back to the [generic status rules](Generic::classify_status).
//!
//! ```
//! use redial_core::{Body, Kind, Outcome, Profile, RequestHead, ResponseHead, Action};
//! use redial_vendors::responsys::Responsys;
//! # use std::time::SystemTime;
//! # let (method, uri, headers) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
//! let req = RequestHead { method: &method, uri: &uri, headers: &headers, body: None };
//! let res = ResponseHead { status: http::StatusCode::UNAUTHORIZED, headers: &headers, received_at: SystemTime::now() };
//! let body = br#"{"type":"","title":"Invalid token","errorCode":"INVALID_TOKEN","detail":"Not a valid token","errorDetails":[]}"#;
//! let c = Responsys::default().classify(&req, &Outcome::Response(res, Body::Complete(body)));
//! assert_eq!(c.kind, Kind::AuthExpired);
//! assert_eq!(c.advice.action(), Action::RefreshAuth);
//! assert_eq!(c.code(), Some("INVALID_TOKEN"));
//! ```

use std::borrow::Cow;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use redial_core::backoff::Backoff;
use redial_core::generic::Generic;
use redial_core::hint::server_hint;
use redial_core::{
    is_json_media_type, Advice, Body, BodyUse, Classification, ErrorScope, Failure, Kind, Outcome, Policy, Profile,
    RequestHead, ResponseHead, RetryRule, Throttle, VendorError,
};
use serde_json::{Map, Value};

/// The hosts Responsys serves: account-specific and pod endpoints under Oracle Cloud
/// (`{AccountToken}-aftm.responsys.ocs.oraclecloud.com`) and the legacy pods and login hosts
/// (`wsX-company.responsys.net`, `login2.responsys.net`).
pub const HOSTS: &[&str] = &["*.responsys.ocs.oraclecloud.com", "*.responsys.net"];

/// `UNRECOVERABLE_EXCEPTION`: "wait about 30 seconds and then resubmit the request only once"
/// (the AFTM seed page).
pub const UNRECOVERABLE_RESUBMIT_DELAY: Duration = Duration::from_secs(30);

/// No response: "retry up to three times, with two minute intervals, to prevent the API login
/// being disabled" (the AFTM seed page).
pub const NO_RESPONSE_INTERVAL: Duration = Duration::from_secs(120);

/// How many times a request without a response is retried (the AFTM seed page).
pub const NO_RESPONSE_RETRIES: usize = 3;

/// `API_LIMIT_EXCEEDED` **\[I\]**: limits are per API and per minute ("Please try again in a
/// minute"), so a wait of a full minute always lands in the next window. The wait is drawn
/// from this value up to twice it, so that throttled clients do not return together.
pub const API_LIMIT_DELAY: Duration = Duration::from_secs(60);

/// `INTERNAL_CAPACITY_LIMIT_EXCEEDED` **\[I\]**: the shortest wait; the backoff grows from it
/// (decorrelated jitter) up to [`CAPACITY_MAX_DELAY`].
pub const CAPACITY_MIN_DELAY: Duration = Duration::from_secs(60);

/// `INTERNAL_CAPACITY_LIMIT_EXCEEDED` **\[I\]**: the longest wait. The capacity counters reset
/// every 10 minutes (`InternalCapacityLimits.html`).
pub const CAPACITY_MAX_DELAY: Duration = Duration::from_secs(600);

/// `UNABLE_TO_SUBMIT_ASYNC_REQUEST` **\[I\]**: the shortest wait ("the queue is full, try again
/// later"); the backoff grows from it (decorrelated jitter) up to [`ASYNC_QUEUE_MAX_DELAY`].
pub const ASYNC_QUEUE_MIN_DELAY: Duration = Duration::from_secs(30);

/// `UNABLE_TO_SUBMIT_ASYNC_REQUEST` **\[I\]**: the longest wait.
pub const ASYNC_QUEUE_MAX_DELAY: Duration = Duration::from_secs(120);

/// The shortest wait after a 503 (`SERVICE_UNAVAILABLE`, or a gateway's): an outage, often a
/// maintenance window, is not over in milliseconds **\[I\]**.
pub const SERVICE_UNAVAILABLE_MIN_DELAY: Duration = Duration::from_secs(10);

/// The longest wait after a 503: the no-response interval **\[I\]**.
pub const SERVICE_UNAVAILABLE_MAX_DELAY: Duration = NO_RESPONSE_INTERVAL;

/// The time one attempt may take **\[I\]**: Responsys documents none; a minute lets a large
/// merge-trigger batch through and still leaves the no-response schedule inside the deadline.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The total time of a logical request: four attempts of [`ATTEMPT_TIMEOUT`] and three
/// [`NO_RESPONSE_INTERVAL`]s take 10 min; five more minutes leave room for one long
/// `INTERNAL_CAPACITY_LIMIT_EXCEEDED` wait early in a request.
pub const DEADLINE: Duration = Duration::from_secs(15 * 60);

/// The default host policy for Responsys (values from `VENDORS.md`, Oracle Responsys).
///
/// ```
/// let p = redial_vendors::responsys::policy();
/// assert!(p.max_attempts() >= 4);
/// assert_eq!(p.max_auth_refreshes(), 1);
/// ```
pub fn policy() -> Policy {
    Policy::builder()
        // "retry up to three times" without a response: 1 + 3 attempts, plus the replay after
        // one re-login (INVALID_TOKEN / TOKEN_EXPIRED).
        .max_attempts(NO_RESPONSE_RETRIES as u32 + 2)
        // The 3 × 2 min no-response schedule and its attempts, with room to spare.
        .deadline(DEADLINE)
        .attempt_timeout(ATTEMPT_TIMEOUT)
        // INTERNAL_CAPACITY_LIMIT_EXCEEDED: up to 10 min [I]; a server hint that long is honoured.
        .retry_after_cap(CAPACITY_MAX_DELAY)
        // INVALID_TOKEN / TOKEN_EXPIRED: re-login, "replay once"; never hammer the login.
        .max_auth_refreshes(1)
        .build()
        .expect("the Responsys policy is valid")
}

/// A Responsys error envelope.
///
/// ```
/// use redial_vendors::responsys::ResponsysError;
/// let e = ResponsysError::parse(br#"{"type":"","title":"Invalid request parameters",
///     "errorCode":"INVALID_PARAMETER","detail":" <Campaign Name> must be Transactional campaign",
///     "errorDetails":[]}"#).unwrap();
/// assert_eq!(e.error_code, "INVALID_PARAMETER");
/// assert_eq!(e.title.as_deref(), Some("Invalid request parameters"));
/// assert!(e.error_details.is_empty());
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsysError {
    /// `title`: a short summary.
    pub title: Option<String>,
    /// `errorCode`: the code the rules branch on (a number on the wire becomes its digits).
    pub error_code: String,
    /// `detail`: what went wrong with this request.
    pub detail: Option<String>,
    /// `errorDetails`: reserved by Responsys and usually empty; an array, or a string holding
    /// one (`"[]"`). Items that are not strings are kept as their JSON text.
    pub error_details: Vec<String>,
}

impl ResponsysError {
    /// Parse an error envelope: at the top level of the body, or nested under
    /// `responseMessage` / `response` (the Polling API). `None` when the body is not JSON or
    /// holds no non-empty `errorCode`.
    pub fn parse(body: &[u8]) -> Option<ResponsysError> {
        let doc = parse_json(body)?;
        envelope(&doc).map(|(e, _)| e)
    }

    fn from_object(obj: &Map<String, Value>) -> Option<ResponsysError> {
        let error_code = match obj.get("errorCode")? {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        if error_code.is_empty() {
            return None;
        }
        let text = |key: &str| match obj.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            _ => None,
        };
        let error_details = match obj.get("errorDetails") {
            Some(Value::Array(items)) => items.iter().map(json_text).collect(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(items)) => items.iter().map(json_text).collect(),
                _ if s.trim().is_empty() => Vec::new(),
                _ => vec![s.clone()],
            },
            None | Some(Value::Null) => Vec::new(),
            Some(other) => vec![json_text(other)],
        };
        Some(ResponsysError { title: text("title"), error_code, detail: text("detail"), error_details })
    }

    /// The envelope as a [`VendorError`]: the code, the message (`detail`, else `title`), and
    /// the `title` and each `errorDetails` item as attributes.
    pub fn to_vendor_error(&self) -> VendorError {
        let message = self.detail.as_deref().or(self.title.as_deref()).unwrap_or("").trim();
        let mut e = VendorError::new(self.error_code.clone(), message);
        if let Some(title) = &self.title {
            e = e.with_attribute("title", title.clone());
        }
        for detail in &self.error_details {
            e = e.with_attribute("errorDetails", detail.clone());
        }
        e
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_json(body: &[u8]) -> Option<Value> {
    let body = redial_core::without_bom(body);
    serde_json::from_slice(body).ok()
}

/// Polling-API fields kept beside a nested envelope.
const WRAPPER_FIELDS: [&str; 4] = ["requestId", "apiName", "status", "requestTime"];

/// The envelope of a body, with the wrapper's fields when it was nested.
fn envelope(doc: &Value) -> Option<(ResponsysError, Vec<(&'static str, String)>)> {
    let obj = doc.as_object()?;
    if let Some(e) = ResponsysError::from_object(obj) {
        return Some((e, Vec::new()));
    }
    let inner =
        ["responseMessage", "response"].iter().find_map(|k| ResponsysError::from_object(obj.get(*k)?.as_object()?))?;
    let extras = WRAPPER_FIELDS
        .iter()
        .filter_map(|k| match obj.get(*k)? {
            Value::String(s) => Some((*k, s.clone())),
            Value::Number(n) => Some((*k, n.to_string())),
            _ => None,
        })
        .collect();
    Some((inner, extras))
}

/// The record errors of a successful batch response: an array (at the top level, or under
/// `response` of a poll) of `{"success":false,"errorMessage":"CODE: text","recipientId":…}`.
/// How many records failed, and the errors of the first [`MAX_ERRORS`](crate::MAX_ERRORS).
fn record_errors(doc: &Value) -> (usize, Vec<VendorError>) {
    let records = match doc {
        Value::Array(items) => items,
        Value::Object(obj) => match obj.get("response") {
            Some(Value::Array(items)) => items,
            _ => return (0, Vec::new()),
        },
        _ => return (0, Vec::new()),
    };
    fn failed(record: &Value) -> Option<&Map<String, Value>> {
        record.as_object().filter(|r| r.get("success") == Some(&Value::Bool(false)))
    }
    let errors = records
        .iter()
        .enumerate()
        .filter_map(|(i, record)| {
            let record = failed(record)?;
            let message = match record.get("errorMessage") {
                Some(Value::String(s)) => s.trim(),
                _ => "",
            };
            // "RECIPIENT_STATUS_UNDELIVERABLE: …": the code is the leading UPPER_SNAKE word.
            let (code, text) = match message.split_once(':') {
                Some((code, text)) if is_code(code.trim()) => (code.trim(), text.trim()),
                _ if is_code(message) => (message, ""),
                _ => ("RECORD_FAILED", message),
            };
            let mut e = VendorError::new(code, text).with_scope(ErrorScope::Record(i));
            if let Some(id) = record.get("recipientId").filter(|v| !v.is_null()) {
                e = e.with_attribute("recipientId", json_text(id));
            }
            Some(e)
        })
        .take(crate::MAX_ERRORS)
        .collect();
    (records.iter().filter_map(failed).count(), errors)
}

fn is_code(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

// ---------------------------------------------------------------------------------------------
// The table.

/// One row of the code table. A code ending in `*` matches every code with that prefix.
struct Row {
    code: &'static str,
    kind: Kind,
    advice: fn() -> Advice,
    why: &'static str,
    /// For a throttled code: the account's call rate, unless the limit is narrower.
    throttle: Throttle,
}

const fn row(code: &'static str, kind: Kind, advice: fn() -> Advice, why: &'static str) -> Row {
    Row { code, kind, advice, why, throttle: Throttle::Rate }
}

fn refresh() -> Advice {
    Advice::RefreshAuth
}
fn fail() -> Advice {
    Advice::Fail
}
fn ret() -> Advice {
    Advice::Return
}
fn unrecoverable() -> Advice {
    Advice::Retry(
        RetryRule::new("responsys.unrecoverable_exception")
            .backoff(Backoff::schedule([UNRECOVERABLE_RESUBMIT_DELAY]))
            .min_delay(UNRECOVERABLE_RESUBMIT_DELAY)
            .any_method(),
    )
}
fn api_limit() -> Advice {
    Advice::Retry(
        RetryRule::new("responsys.api_limit_exceeded")
            .backoff(decorrelated(API_LIMIT_DELAY, API_LIMIT_DELAY * 2))
            .min_delay(API_LIMIT_DELAY)
            .any_method(),
    )
}
fn capacity() -> Advice {
    Advice::Retry(
        RetryRule::new("responsys.internal_capacity_limit_exceeded")
            .backoff(decorrelated(CAPACITY_MIN_DELAY, CAPACITY_MAX_DELAY))
            .min_delay(CAPACITY_MIN_DELAY)
            .any_method(),
    )
}
fn async_queue_full() -> Advice {
    Advice::Retry(
        RetryRule::new("responsys.unable_to_submit_async_request")
            .backoff(decorrelated(ASYNC_QUEUE_MIN_DELAY, ASYNC_QUEUE_MAX_DELAY))
            .min_delay(ASYNC_QUEUE_MIN_DELAY)
            .any_method(),
    )
}
fn service_unavailable() -> Advice {
    Advice::Retry(
        RetryRule::new("responsys.service_unavailable")
            .backoff(decorrelated(SERVICE_UNAVAILABLE_MIN_DELAY, SERVICE_UNAVAILABLE_MAX_DELAY))
            .min_delay(SERVICE_UNAVAILABLE_MIN_DELAY)
            .any_method(),
    )
}

/// Decorrelated jitter from `min` up to `max`: every wait is at least `min`.
fn decorrelated(min: Duration, max: Duration) -> Backoff {
    Backoff::decorrelated(min, max).unwrap_or(Backoff::constant(min))
}

use Kind::{AuthExpired, Failover, Fatal, Throttled, Transient};

/// The code table of `VENDORS.md` (Oracle Responsys), with the async and polling codes of the
/// research notes. Codes not listed are final.
#[rustfmt::skip]
static TABLE: &[Row] = &[
    row("INVALID_TOKEN", AuthExpired, refresh, "the token is not valid: re-login to the account-specific endpoint, replay once"),
    row("TOKEN_EXPIRED", AuthExpired, refresh, "the token expired: re-login to the account-specific endpoint, replay once"),
    row("API_NOT_ALLOWED_IN_SECONDARY", Failover, fail, "the account failed over: only AFTM endpoints may be called until a health probe succeeds"),
    row("UNRECOVERABLE_EXCEPTION", Transient, unrecoverable, "wait about 30 s, resubmit only once"),
    // A limit per API function: calls to the account's other functions go on.
    Row { throttle: Throttle::Request, ..row("API_LIMIT_EXCEEDED", Throttled, api_limit, "per-API, per-minute limit: retry in the next minute window [I]") },
    row("INTERNAL_CAPACITY_LIMIT_EXCEEDED", Throttled, capacity, "account capacity exhausted (counters reset every 10 min): long backoff [I]"),
    row("SERVICE_UNAVAILABLE", Transient, service_unavailable, "service down or in maintenance: retry with backoff within the deadline"),
    Row { throttle: Throttle::Request, ..row("UNABLE_TO_SUBMIT_ASYNC_REQUEST", Throttled, async_queue_full, "the async queue is full, the request was not queued: try again later [I]") },
    row("PROCESSING_REQUEST", Transient, ret, "the async request is still in progress: the caller polls again [I]"),
    row("ASYNC_REQUEST_EXPIRED", Fatal, fail, "the async request expired in the queue: resubmit it as a new call, after checking for a duplicate send [I]"),
    row("RESPONSE_PURGED", Fatal, fail, "async responses are kept 24 h"),
    row("INVALID_REQUEST_ID", Fatal, fail, "final"),
    row("ASYNC_API_DISABLED_FOR_USER", Fatal, fail, "final"),
    row("CAMPAIGN_IS_INVALID", Fatal, fail, "final"),
    row("INVALID_REQUEST_CONTENT", Fatal, fail, "final"),
    row("RECIPIENT_LIMIT_EXCEEDED", Fatal, fail, "more than 200 recipients: split the batch"),
    row("LOGIN_BLOCKED_TEMPORARILY", Fatal, fail, "final; never hammer the login"),
    row("LOGIN_BLOCKED_INVALID_IPRANGE", Fatal, fail, "final; never hammer the login"),
    row("PASSWORD_*", Fatal, fail, "final; never hammer the login"),
    row("ACCOUNT_SUSPENDED", Fatal, fail, "final; never hammer the login"),
    row("WS_ARG_DISABLED", Fatal, fail, "final; open an SR if it persists"),
    row("API_BLOCKED", Fatal, fail, "the user is blocked from this function"),
    row("INVALID_PARAMETER", Fatal, fail, "final"),
    row("UNEXPECTED_EXCEPTION", Fatal, fail, "final"),
];

/// Rows that need the `detail` too: a code whose meaning depends on it, by a phrase the detail
/// holds (in any case). They come before the code table.
#[rustfmt::skip]
static DETAIL_TABLE: &[(&str, Row)] = &[
    // `Throttling.html`: the rate-limit endpoint answers a bad token with a 500.
    ("not a valid authentication token", row("UNEXPECTED_EXCEPTION", AuthExpired, refresh, "not a valid authentication token: re-login, replay once")),
];

/// The row for `e`: a detail row first, then an exact code match, then the first prefix row.
fn row_for(e: &ResponsysError) -> Option<&'static Row> {
    let code = e.error_code.trim();
    let detail = e.detail.as_deref().unwrap_or_default().to_ascii_lowercase();
    DETAIL_TABLE
        .iter()
        .find(|(phrase, r)| r.code.eq_ignore_ascii_case(code) && detail.contains(phrase))
        .map(|(_, r)| r)
        .or_else(|| lookup(code))
}

/// The row for `code`: an exact match first, then the first prefix row.
fn lookup(code: &str) -> Option<&'static Row> {
    let code = code.trim();
    TABLE.iter().find(|r| r.code.eq_ignore_ascii_case(code)).or_else(|| {
        TABLE.iter().find(|r| {
            r.code.strip_suffix('*').is_some_and(|prefix| {
                code.len() > prefix.len()
                    && code.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            })
        })
    })
}

fn classify_code(e: &ResponsysError) -> Classification {
    match row_for(e) {
        Some(r) => Classification::new(r.kind, (r.advice)(), format!("responsys: {}: {}", e.error_code, r.why))
            .with_throttle(r.throttle),
        None => Classification::fail(
            Kind::Fatal,
            format!("responsys: {}: not a retryable Responsys code, final", e.error_code),
        ),
    }
}

fn no_response(failure: Failure) -> Classification {
    Classification::retry(
        Kind::Transient,
        RetryRule::new("responsys.no_response")
            .backoff(Backoff::schedule([NO_RESPONSE_INTERVAL; NO_RESPONSE_RETRIES]))
            .any_method(),
        format!("responsys: no response ({}): retry up to 3 times, 2 minutes apart", failure.as_str()),
    )
}

fn fallback(head: &ResponseHead<'_>, body: BodyUse, why: &str) -> Classification {
    let mut c = Generic::classify_status(head).with_body(body);
    if head.status == http::StatusCode::SERVICE_UNAVAILABLE {
        // "503 SERVICE_UNAVAILABLE or a non-JSON gateway 503": the one rule, and its backoff.
        c.advice = service_unavailable();
    }
    c.reason = format!("responsys: {why}; {}", c.reason).into();
    c
}

// ---------------------------------------------------------------------------------------------
// The profile.

/// Path patterns of the AFTM endpoints, the only ones that work while the account is failed
/// over. `*` matches one path segment; a trailing `**` matches the rest of the path.
pub const AFTM_PATHS: &[&str] = &[
    // HA Merge Trigger Email / SMS / Push
    "/rest/haApi/*/campaigns/*/email",
    "/rest/haApi/*/campaigns/*/sms",
    "/rest/haApi/*/campaigns/*/push",
    // HA Retrieve List Members
    "/rest/haApi/*/lists/*/members",
    // Every other path of the HA and HA-async APIs
    "/rest/haApi/**",
    "/rest/haAsyncApi/**",
];

/// The Responsys profile (see the [module docs](self) for its table).
///
/// It also carries the AFTM allow-list, for the failover mode that follows
/// `API_NOT_ALLOWED_IN_SECONDARY`.
///
/// ```
/// use redial_vendors::responsys::Responsys;
/// let r = Responsys::default().with_aftm_path("/rest/api/v1.3/lists/*/members");
/// assert!(r.is_aftm_path("/rest/haApi/v1.3/campaigns/welcome/email"));
/// assert!(r.is_aftm_path("/rest/api/v1.3/lists/master/members?qa=r"));
/// assert!(!r.is_aftm_path("/rest/api/v1.3/campaigns/welcome/email"));
/// ```
#[derive(Debug, Clone)]
pub struct Responsys {
    aftm_paths: Vec<Cow<'static, str>>,
}

impl Default for Responsys {
    fn default() -> Self {
        Responsys { aftm_paths: AFTM_PATHS.iter().map(|p| Cow::Borrowed(*p)).collect() }
    }
}

impl Responsys {
    /// The profile with the default AFTM allow-list ([`AFTM_PATHS`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a path pattern to the AFTM allow-list.
    pub fn with_aftm_path(mut self, pattern: impl Into<Cow<'static, str>>) -> Self {
        self.aftm_paths.push(pattern.into());
        self
    }

    /// Replace the AFTM allow-list.
    pub fn with_aftm_paths<I, P>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Cow<'static, str>>,
    {
        self.aftm_paths = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// The AFTM allow-list.
    pub fn aftm_paths(&self) -> &[Cow<'static, str>] {
        &self.aftm_paths
    }

    /// Whether `path` (a query string is ignored) is an AFTM endpoint, allowed in failover mode.
    pub fn is_aftm_path(&self, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or("");
        self.aftm_paths.iter().any(|p| path_matches(p, path))
    }
}

/// Segment-wise match: `*` is one segment, a trailing `**` the rest (possibly nothing);
/// literal segments compare ASCII case-insensitively.
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut path = path.split('/').filter(|s| !s.is_empty());
    let mut pattern = pattern.split('/').filter(|s| !s.is_empty()).peekable();
    while let Some(p) = pattern.next() {
        if p == "**" && pattern.peek().is_none() {
            return true;
        }
        match path.next() {
            Some(s) if p == "*" || p.eq_ignore_ascii_case(s) => {}
            _ => return false,
        }
    }
    path.next().is_none()
}

impl Profile for Responsys {
    fn name(&self) -> &str {
        "responsys"
    }

    /// Error statuses, and JSON 2xx bodies (the Polling API answers errors with HTTP 200, and
    /// batch responses carry per-record failures).
    fn inspect(&self, _req: &RequestHead<'_>, res: &ResponseHead<'_>) -> bool {
        let s = res.status;
        s.is_client_error()
            || s.is_server_error()
            || s.is_success()
                && res.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json_media_type)
    }

    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        let (head, body) = match outcome {
            // Stopped on this side before it was sent: no vendor rule applies.
            Outcome::Failure(Failure::Local) => return Generic::classify_failure(Failure::Local),
            Outcome::Failure(f) => return no_response(*f),
            Outcome::Response(head, body) => (head, body),
            // An outcome this profile does not know yet: the generic rules.
            other => return Generic.classify(req, other),
        };
        let bytes = match body {
            Body::NotRead => return Generic::classify_status(head),
            Body::Prefix(_) => return fallback(head, BodyUse::TooLarge, "the body is longer than the inspect limit"),
            Body::Complete(bytes) => bytes,
            // Read in a way this profile does not know yet: the status rules.
            _ => return Generic::classify_status(head),
        };
        let Some(doc) = parse_json(bytes) else {
            return fallback(head, BodyUse::Fallback, "the body is not JSON");
        };
        if let Some((e, extras)) = envelope(&doc) {
            let error = extras.into_iter().fold(e.to_vendor_error(), |v, (k, val)| v.with_attribute(k, val));
            return classify_code(&e)
                .with_errors([error])
                .with_hint(server_hint(head.headers, head.received_at))
                .with_body(BodyUse::Parsed);
        }
        if head.status.is_success() {
            let (failed, records) = record_errors(&doc);
            let c = if failed == 0 {
                Classification::success("responsys: success")
            } else {
                Classification::new(Kind::Partial, Advice::Return, format!("responsys: {failed} record(s) failed"))
                    .with_errors(records)
            };
            return c.with_body(BodyUse::Parsed);
        }
        fallback(head, BodyUse::Fallback, "no Responsys error envelope (errorCode) in the body")
    }

    /// In failover mode only the AFTM endpoints work (VENDORS.md, Responsys).
    fn allowed_in_failover(&self, req: &RequestHead<'_>) -> bool {
        self.is_aftm_path(req.uri.path())
    }
}

// ---------------------------------------------------------------------------------------------
// The login: user name and password.

/// The path of the login endpoint under the login host.
pub const LOGIN_TOKEN_PATH: &str = "/rest/api/v1.3/auth/token";

/// How long a Responsys token is used: 2 hours. Responsys's pages disagree (`tips-performance`
/// says a token "expires after two hours", `OMCED/RefreshToken` "always expires after three
/// hours"); VENDORS.md says to refresh before 2 h **\[I\]**, so the shorter one is used.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// The Responsys login: user name and password (VENDORS.md, Oracle Responsys, Auth).
///
/// It sends `POST <login host>/rest/api/v1.3/auth/token` with the form body
/// `user_name=…&password=…&auth_type=password` (credentials in the body only), and reads
/// `{"authToken","issuedAt","endPoint"}`. Later requests go to `endPoint` (the credential's
/// [`endpoint`](redial_core::auth::Credential::endpoint)) with `Authorization: <authToken>`,
/// without `Bearer`. The token is used for [`TOKEN_LIFETIME`] from the login (see there
/// for the 2 h / 3 h conflict); `issuedAt` is not read.
///
/// Responsys disables the API login after repeated failed attempts, so every code that is not
/// known to be transient stops at once. The code decides before the status (Responsys
/// documents `API_LIMIT_EXCEEDED` under both 400 and 401).
///
/// | answer | kind |
/// |---|---|
/// | `LOGIN_BLOCKED_TEMPORARILY` (another attempt prolongs the block), `PASSWORD_*` (`PASSWORD_LOCKOUT`, `PASSWORD_EXPIRED`, …), `ACCOUNT_SUSPENDED`, `LOGIN_BLOCKED_INVALID_IPRANGE`, `WS_ARG_DISABLED`, `INVALID_USER_NAME_PASSWORD`, `API_BLOCKED`, `INVALID_PARAMETER`, any other code | fatal |
/// | `API_LIMIT_EXCEEDED`, `INTERNAL_CAPACITY_LIMIT_EXCEEDED` | transient; the next login comes 60 s later at the earliest |
/// | `UNRECOVERABLE_EXCEPTION` | transient; the next login comes [`UNRECOVERABLE_RESUBMIT_DELAY`] (30 s) later at the earliest, and is the only one: answered `UNRECOVERABLE_EXCEPTION` too, it is fatal ([`failed_again`](redial_core::auth::Login::failed_again); no login for the token source's longest backoff) |
/// | `SERVICE_UNAVAILABLE` | transient |
/// | HTTP 401, 403 without a code | fatal |
/// | HTTP 5xx, 429, 408, a body that is not JSON (a gateway page, empty, truncated) | transient |
/// | no answer (a connection error, a reset, the token source's login timeout) | transient; the next login comes [`NO_RESPONSE_INTERVAL`] (2 min) later at the earliest; after [`NO_RESPONSE_RETRIES`] (3) such retries in a row, the next one without an answer is fatal (no login for the token source's longest backoff, 2 min at least). A login the client never sent (its inner service failed to get ready) is not one of them |
/// | 2xx whose `endPoint` is not an absolute http(s) URI | transient ("login answered without a usable endPoint") |
/// | any transient answer with a `Retry-After` (a gateway's, in a maintenance window) | the next login comes that much later at the earliest (up to an hour), or the code's own wait if longer |
///
/// The other status rules are those of [`oauth2`](crate::oauth2). `Debug` never shows the
/// password; neither does any [`LoginError`](redial_core::auth::LoginError).
///
/// ```
/// use std::time::SystemTime;
/// use http::{header, HeaderMap, StatusCode};
/// use redial_core::auth::{Attach, Login};
/// use redial_core::ResponseHead;
/// use redial_vendors::responsys::{PasswordLogin, TOKEN_LIFETIME};
///
/// let login = PasswordLogin::new("https://login2.responsys.net", "api_user", "pa ss&word")?;
/// let req = login.request();
/// assert_eq!(req.uri(), "https://login2.responsys.net/rest/api/v1.3/auth/token");
/// assert_eq!(req.headers()[header::CONTENT_TYPE], "application/x-www-form-urlencoded");
/// assert_eq!(&req.body()[..], b"user_name=api_user&password=pa+ss%26word&auth_type=password");
/// assert_eq!(login.attach(), Attach::Raw);
///
/// let body = br#"{"authToken":"bPBY3l9Ha9C7uyDO","issuedAt":1427325074342,"endPoint":"https://rest-pod1.responsys.net"}"#;
/// let credential = login.parse(&ResponseHead::new(StatusCode::OK, &HeaderMap::new(), SystemTime::now()), body)?;
/// assert_eq!(credential.token.expose(), "bPBY3l9Ha9C7uyDO");
/// assert_eq!(credential.lifetime, Some(TOKEN_LIFETIME));
/// assert_eq!(credential.endpoint.unwrap().host(), Some("rest-pod1.responsys.net"));
///
/// let locked = br#"{"type":"","title":"Login failed","errorCode":"PASSWORD_LOCKOUT","detail":"Locked","errorDetails":[]}"#;
/// let err = login.parse(&ResponseHead::new(StatusCode::UNAUTHORIZED, &HeaderMap::new(), SystemTime::now()), locked).unwrap_err();
/// assert!(err.is_fatal());
/// assert_eq!(err.code(), Some("PASSWORD_LOCKOUT"));
/// assert!(!format!("{login:?} {err} {err:?}").contains("pa ss&word"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PasswordLogin {
    token_url: http::Uri,
    user_name: String,
    password: redial_core::auth::Secret,
    lifetime: Duration,
}

impl std::fmt::Debug for PasswordLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordLogin")
            .field("token_url", &redial_core::auth::redact_urls(&self.token_url.to_string()))
            .field("user_name", &self.user_name)
            .field("password", &self.password)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl PasswordLogin {
    /// A login at `login_url` (the login host, e.g. `https://login2.responsys.net`, or the
    /// account-specific endpoint; a URL that already ends in [`LOGIN_TOKEN_PATH`] is used as
    /// it is). Every login, the re-login after `INVALID_TOKEN` included, goes there: for an
    /// account with AFTM, give the account-specific endpoint, whose tokens stay valid after a
    /// failover (Oracle: "re-login to your account-specific endpoint").
    pub fn new(
        login_url: &str,
        user_name: impl Into<String>,
        password: impl Into<redial_core::auth::Secret>,
    ) -> Result<Self, crate::oauth2::InvalidLoginUrl> {
        Ok(PasswordLogin {
            token_url: crate::oauth2::join_path(login_url, LOGIN_TOKEN_PATH)?,
            user_name: user_name.into(),
            password: password.into(),
            lifetime: TOKEN_LIFETIME,
        })
    }

    /// Use tokens for `lifetime` instead of [`TOKEN_LIFETIME`].
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The token URL (`<login host>/rest/api/v1.3/auth/token`).
    pub fn token_url(&self) -> &http::Uri {
        &self.token_url
    }

    /// The user name.
    pub fn user_name(&self) -> &str {
        &self.user_name
    }
}

use redial_core::auth::LoginFailureKind as LoginKind;

/// What comes after a transient login answer.
#[derive(Clone, Copy)]
enum Then {
    /// The token source's backoff.
    Backoff,
    /// The next login comes this much later at the earliest.
    Wait(Duration),
    /// The next login comes this much later at the earliest, and is the only one: the same
    /// answer to it is fatal.
    Once(Duration),
}

/// What each `errorCode` means at the login, and what comes after it. A code ending in `*`
/// matches every code with that prefix. Codes not listed are fatal: never hammer the login.
#[rustfmt::skip]
static LOGIN_CODES: &[(&str, LoginKind, Then, &str)] = &[
    ("LOGIN_BLOCKED_TEMPORARILY", LoginKind::Fatal, Then::Backoff, "the login is blocked for a while: another attempt prolongs the block"),
    ("LOGIN_BLOCKED_INVALID_IPRANGE", LoginKind::Fatal, Then::Backoff, "logins from this IP address are not allowed"),
    ("PASSWORD_*", LoginKind::Fatal, Then::Backoff, "the password is locked out or expired: reset it"),
    ("ACCOUNT_SUSPENDED", LoginKind::Fatal, Then::Backoff, "the account is suspended"),
    ("WS_ARG_DISABLED", LoginKind::Fatal, Then::Backoff, "the API login is disabled: open an SR if it persists"),
    ("INVALID_USER_NAME_PASSWORD", LoginKind::Fatal, Then::Backoff, "bad user name or password"),
    ("API_BLOCKED", LoginKind::Fatal, Then::Backoff, "the user is blocked from this function"),
    ("INVALID_PARAMETER", LoginKind::Fatal, Then::Backoff, "the login request is invalid"),
    // "Please try again in a minute."
    ("API_LIMIT_EXCEEDED", LoginKind::Transient, Then::Wait(API_LIMIT_DELAY), "the login's per-minute limit: try again in the next minute"),
    ("INTERNAL_CAPACITY_LIMIT_EXCEEDED", LoginKind::Transient, Then::Wait(CAPACITY_MIN_DELAY), "account capacity exhausted (counters reset every 10 min)"),
    ("SERVICE_UNAVAILABLE", LoginKind::Transient, Then::Backoff, "the service is down or in maintenance"),
    // "Wait about 30 seconds and then resubmit the request only once" (the AFTM seed page).
    ("UNRECOVERABLE_EXCEPTION", LoginKind::Transient, Then::Once(UNRECOVERABLE_RESUBMIT_DELAY), "server error"),
];

fn login_code(code: &str) -> (LoginKind, Then, &'static str) {
    let code = code.trim();
    let matches = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => {
            code.len() > prefix.len() && code.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix))
        }
        None => pattern.eq_ignore_ascii_case(code),
    };
    LOGIN_CODES.iter().find(|(pattern, ..)| matches(pattern)).map_or(
        (LoginKind::Fatal, Then::Backoff, "not a retryable login code: never hammer the login"),
        |&(_, kind, then, what)| (kind, then, what),
    )
}

/// An `endPoint` requests can be sent to: an absolute http(s) URI.
fn endpoint(map: &Map<String, Value>) -> Option<http::Uri> {
    let raw = crate::oauth2::text(map, "endPoint")?;
    crate::oauth2::absolute_url(raw.trim_end_matches('/')).ok()
}

impl PasswordLogin {
    /// The answer, by the table of [`PasswordLogin`], before the answer's `Retry-After`.
    fn read(
        &self,
        res: &ResponseHead<'_>,
        body: &[u8],
    ) -> Result<redial_core::auth::Credential, redial_core::auth::LoginError> {
        let status = res.status;
        let answer = crate::oauth2::Answer { who: "responsys login", status, body, secrets: &[self.password.expose()] };
        let doc = match crate::oauth2::read_json(body) {
            Ok(map) => Value::Object(map),
            Err(why) => return Err(answer.by_status(Some(why))),
        };
        if let Some((e, _)) = envelope(&doc) {
            let (kind, then, what) = login_code(&e.error_code);
            let detail = e.detail.as_deref().or(e.title.as_deref());
            let refused = answer.refused(kind, &e.error_code, what, detail);
            // A throttled login waits for the limit's window, and an unrecoverable exception the
            // documented 30 s, not the login backoff's first second.
            return Err(match then {
                Then::Wait(wait) | Then::Once(wait) => refused.with_retry_after(wait),
                Then::Backoff => refused,
            });
        }
        let Some(map) = doc.as_object().filter(|_| status.is_success()) else {
            return Err(answer.by_status(None));
        };
        let token = match crate::oauth2::text(map, "authToken") {
            Some(t) if crate::oauth2::usable_token(t) => t,
            Some(_) => return Err(answer.fail(LoginKind::Transient, "the authToken cannot be sent in a header")),
            None => return Err(answer.fail(LoginKind::Transient, "login answered without an authToken")),
        };
        let Some(endpoint) = endpoint(map) else {
            return Err(answer.fail(LoginKind::Transient, "login answered without a usable endPoint"));
        };
        // The token goes to the endPoint, raw in a header: never over a weaker scheme than the
        // login's own.
        let https = |u: &http::Uri| u.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"));
        if https(&self.token_url) && !https(&endpoint) {
            return Err(answer.fail(LoginKind::Fatal, "the login named an endPoint that is not https"));
        }
        Ok(redial_core::auth::Credential::new(token, Some(self.lifetime)).with_endpoint(endpoint))
    }
}

impl redial_core::auth::Login for PasswordLogin {
    fn request(&self) -> http::Request<bytes::Bytes> {
        let body = crate::oauth2::form([
            ("user_name", self.user_name.as_str()),
            ("password", self.password.expose()),
            ("auth_type", "password"),
        ]);
        crate::oauth2::form_request(&self.token_url, body)
    }

    /// The answer as [`PasswordLogin`]'s table reads it; a failure that is not fatal waits at
    /// least the answer's `Retry-After`, when it has one.
    fn parse(
        &self,
        res: &ResponseHead<'_>,
        body: &[u8],
    ) -> Result<redial_core::auth::Credential, redial_core::auth::LoginError> {
        self.read(res, body).map_err(|e| crate::oauth2::with_server_wait(e, res))
    }

    fn attach(&self) -> redial_core::auth::Attach {
        redial_core::auth::Attach::Raw
    }

    /// No answer to a login: the next one comes [`NO_RESPONSE_INTERVAL`] later at the earliest
    /// ("retry up to three times, with two minute intervals, to prevent the API login being
    /// disabled", the AFTM seed page).
    fn no_response_wait(&self) -> Option<Duration> {
        Some(NO_RESPONSE_INTERVAL)
    }

    /// "Up to three times": after [`NO_RESPONSE_RETRIES`] more logins in a row without an
    /// answer, the next one without an answer stops the logins for the token source's
    /// longest backoff (2 min at least), so that the API login is not disabled.
    fn no_response_retries(&self) -> Option<u32> {
        Some(NO_RESPONSE_RETRIES as u32)
    }

    /// A code the vendor allows one resubmission for (`UNRECOVERABLE_EXCEPTION`: "wait about
    /// 30 seconds and then resubmit the request only once"), answered to that resubmission
    /// too, is fatal: no login for the token source's longest backoff. Until another answer
    /// comes, each later login answered so is the resubmission's again, unless it starts over
    /// the longest backoff after the window opened (a new request's login after a quiet spell:
    /// it is resubmitted once in its turn).
    fn failed_again(
        &self,
        previous: &redial_core::auth::LoginError,
        failure: redial_core::auth::LoginError,
    ) -> redial_core::auth::LoginError {
        let (Some(before), Some(now)) = (previous.code(), failure.code()) else { return failure };
        match login_code(now) {
            (_, Then::Once(wait), _) if before.trim().eq_ignore_ascii_case(now.trim()) => {
                let said = failure.message();
                let said = said.strip_prefix("responsys login: ").unwrap_or(said);
                let message = format!(
                    "responsys login: {now} to the resubmitted login too: Oracle says to wait about {} seconds \
                     and then resubmit only once ({said})",
                    wait.as_secs()
                );
                failure.into_fatal(message)
            }
            _ => failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_a_distinct_code() {
        for (i, r) in TABLE.iter().enumerate() {
            assert!(TABLE[..i].iter().all(|o| o.code != r.code), "duplicate {}", r.code);
        }
    }

    #[test]
    fn prefix_rows() {
        assert_eq!(lookup("PASSWORD_LOCKOUT").map(|r| r.code), Some("PASSWORD_*"));
        assert_eq!(lookup("password_expired").map(|r| r.code), Some("PASSWORD_*"));
        assert!(lookup("PASSWORD_").is_none());
        assert!(lookup("PASS").is_none());
        assert!(lookup("NEW_CODE").is_none());
    }

    #[test]
    fn path_patterns() {
        assert!(path_matches("/rest/haApi/**", "/rest/haApi"));
        assert!(path_matches("/rest/haApi/**", "/rest/haApi/v1.3/x/y"));
        assert!(!path_matches("/rest/haApi/**", "/rest/api/v1.3"));
        assert!(path_matches("/a/*/c", "/a/b/c/"));
        assert!(!path_matches("/a/*/c", "/a/b/c/d"));
        assert!(!path_matches("/a/*/c", "/a/c"));
    }
}
