//! Marketo Engage REST (`*.mktorest.com`).
//!
//! Marketo reports almost every error with HTTP 200: `{"success":false,"errors":[{"code":"606",
//! "message":…}]}` (the code is a string or a number), and per-record failures inside a
//! success: `result[i].status == "skipped"` with `reasons[{code:"1xxx",message}]`, in input
//! order. So the profile reads every 2xx JSON body, and every 4xx/5xx body.
//!
//! | signal | kind | action | re-sent for |
//! |---|---|---|---|
//! | 601, 602 | auth_expired | refresh_auth, replay | |
//! | 606 (100 calls / 20 s) | throttled | retry, [`RATE_RETRY_MIN`] to [`RATE_WINDOW`] | any method (6xx: not executed) |
//! | 615 (10 concurrent) | throttled | retry, [`CONCURRENCY_RETRY_MIN`] to [`CONCURRENCY_RETRY_MAX`] | any method |
//! | 604, 608, 611, 614 | transient | retry, the policy's backoff (exponential, jittered) | any method |
//! | 713 ("wait, then retry"), 719 (lock wait timeout: not carried out) | transient | retry, the policy's backoff | any method |
//! | 500 **\[I\]**, HTTP 502 / code 502 | transient | retry, the policy's backoff | idempotent only |
//! | 1016, 1019, 1022, 1029 at response level **\[I\]** | throttled | retry, [`QUEUE_RETRY_MIN`] to [`QUEUE_RETRY_MAX`] | any method |
//! | 607 daily quota | quota_exhausted | fail; the reset (next 00:00 US Central) is the hint and the `resets_at` attribute | |
//! | HTTP 414 on a GET | transient | rewrite to `POST` + `_method=GET`, replay | |
//! | HTTP 413, 414 on another method | fatal | fail | |
//! | 603, 605, 609, 610, 612, 613, 616, other 6xx/7xx, any other code | fatal | fail | |
//! | `success:true`, a `skipped` record | partial | return; one error per reason, scope `Record(i)` | |
//! | any other status, or a body that is not Marketo's | the [generic](Generic) status rules | | |
//!
//! When `errors[]` holds several codes, the most forbidding decides (quota, then fatal, then
//! auth, then throttled, then transient); every error is kept.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method};
use redial_core::backoff::Backoff;
use redial_core::generic::Generic;
use redial_core::hint::{server_hint, HintSource, ServerHint};
use redial_core::{
    is_json_media_type, Advice, Body, BodyUse, Classification, ErrorScope, Kind, Outcome, Policy, Profile, RequestHead,
    ResponseHead, RetryRule, Rewrite, Throttle, VendorError,
};
use serde_json::{Map, Value};

/// The hosts Marketo's REST API is served from (`<munchkin-id>.mktorest.com`).
pub const HOSTS: &[&str] = &["*.mktorest.com"];

/// Marketo's rate window: 100 calls per 20 s per instance (VENDORS.md). A 606 retry waits at
/// most this long; the host limiter (a later layer) holds requests more precisely.
pub const RATE_WINDOW: Duration = Duration::from_secs(20);
/// The shortest wait after a 606 **\[I\]**: the window is full, an immediate retry is wasted.
pub const RATE_RETRY_MIN: Duration = Duration::from_secs(2);
/// The shortest wait after a 615 (10 concurrent calls per instance) **\[I\]**.
pub const CONCURRENCY_RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait after a 615 **\[I\]**: in-flight calls finish within a rate window.
pub const CONCURRENCY_RETRY_MAX: Duration = RATE_WINDOW;
/// The shortest wait after a response-level 1016/1019/1022/1029 (import or export queues full,
/// object in use) **\[I\]**: "a long backoff, tens of seconds".
pub const QUEUE_RETRY_MIN: Duration = Duration::from_secs(20);
/// The longest wait after a response-level 1016/1019/1022/1029 **\[I\]**.
pub const QUEUE_RETRY_MAX: Duration = Duration::from_secs(60);

/// Marketo's default host policy.
///
/// ```
/// let p = redial_vendors::marketo::policy();
/// assert_eq!(p.max_attempts(), 4);
/// ```
pub fn policy() -> Policy {
    Policy::builder()
        // Three retries: enough for a 606 to find room in the 20 s window, or for a 601 to be
        // refreshed and the call to meet a 606 after it (VENDORS.md, Marketo table).
        .max_attempts(4)
        // Three queue waits of up to QUEUE_RETRY_MAX (60 s) plus the calls themselves; also
        // covers three 606 waits of up to 20 s.
        .deadline(Duration::from_secs(300))
        // 604/608/611/614/713/719/502: "exponential backoff with jitter" (VENDORS.md); the
        // decorrelated form never retries sooner than 1 s.
        .backoff(backoff(Duration::from_secs(1), Duration::from_secs(30)))
        // Every 2xx JSON body is read: a batch of 300 records with reasons fits easily.
        .inspect_limit(256 * 1024)
        // The replay limit stays at 1 MiB: Marketo refuses bodies over 1 MB (HTTP 413).
        // Two refreshes (the default): a token may expire between its refresh and its use, as
        // `expires_in` is the remaining lifetime (VENDORS.md, Auth).
        // The instance's limits, enforced before sending so that 606 and 615 are not met:
        // 100 calls per sliding 20 s and 10 concurrent (VENDORS.md, Limits). They are shared by
        // every client of the instance: several services on one instance should lower them
        // (Marketo advises 50 per 20 s and 5 concurrent).
        .rate_limit(100, Duration::from_secs(20))
        .max_concurrency(10)
        .build()
        .expect("Marketo's default policy is valid")
}

fn backoff(min: Duration, max: Duration) -> Backoff {
    Backoff::decorrelated(min, max).unwrap_or(Backoff::constant(max))
}

/// The Marketo profile (see the [module docs](self) for its table).
///
/// ```
/// use redial_core::Profile;
/// assert_eq!(redial_vendors::marketo::Marketo::new().name(), "marketo");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Marketo {
    _private: (),
}

impl Marketo {
    /// The profile with the defaults of `VENDORS.md`.
    pub const fn new() -> Self {
        Marketo { _private: () }
    }
}

// ---------------------------------------------------------------------------------------------
// The code table.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The policy's backoff.
    Policy,
    /// 606: within the 20 s window.
    RateWindow,
    /// 615: until in-flight calls drop.
    Concurrency,
    /// 1016/1019/1022/1029: tens of seconds.
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    RefreshAuth,
    /// Retry; `true` when any method may be re-sent (the request was not executed).
    Retry(Wait, bool),
    Fail,
    /// 607: fail, with the next 00:00 US Central as the hint.
    FailUntilReset,
}

#[derive(Debug)]
struct Row {
    code: &'static str,
    rule: &'static str,
    kind: Kind,
    then: Then,
    what: &'static str,
}

macro_rules! row {
    ($code:literal, $kind:ident, $then:expr, $what:literal) => {
        Row { code: $code, rule: concat!("marketo.", $code), kind: Kind::$kind, then: $then, what: $what }
    };
}

const ANY: bool = true;
const IDEMPOTENT: bool = false;

/// Response-level codes (`errors[]`), from VENDORS.md's Marketo table and research notes.
#[rustfmt::skip]
static CODES: &[Row] = &[
    row!("601", AuthExpired, Then::RefreshAuth, "access token invalid"),
    row!("602", AuthExpired, Then::RefreshAuth, "access token expired"),
    row!("603", Fatal, Then::Fail, "access denied"),
    row!("604", Transient, Then::Retry(Wait::Policy, ANY), "request timed out"),
    row!("605", Fatal, Then::Fail, "HTTP method not supported"),
    row!("606", Throttled, Then::Retry(Wait::RateWindow, ANY), "rate limit exceeded (100 calls / 20 s)"),
    row!("607", QuotaExhausted, Then::FailUntilReset, "daily quota reached"),
    row!("608", Transient, Then::Retry(Wait::Policy, ANY), "API temporarily unavailable"),
    row!("609", Fatal, Then::Fail, "invalid JSON"),
    row!("610", Fatal, Then::Fail, "requested resource not found"),
    row!("611", Transient, Then::Retry(Wait::Policy, ANY), "system error"),
    row!("612", Fatal, Then::Fail, "invalid content type"),
    row!("613", Fatal, Then::Fail, "invalid multipart request"),
    row!("614", Transient, Then::Retry(Wait::Policy, ANY), "invalid subscription (temporarily inaccessible)"),
    row!("615", Throttled, Then::Retry(Wait::Concurrency, ANY), "concurrent access limit reached (10)"),
    row!("616", Fatal, Then::Fail, "invalid subscription type"),
    row!("713", Transient, Then::Retry(Wait::Policy, ANY), "transient error"),
    // A lock wait timeout: the operation (Clone Program, a POST) was not carried out.
    row!("719", Transient, Then::Retry(Wait::Policy, ANY), "lock wait timeout"),
    // A server error or a gateway's ("likely a timeout"): the call may have been carried out
    // behind it, so a non-idempotent one is re-sent only with an idempotency key or `RetrySafe`.
    row!("500", Transient, Then::Retry(Wait::Policy, IDEMPOTENT), "internal server error"),
    row!("502", Transient, Then::Retry(Wait::Policy, IDEMPOTENT), "bad gateway"),
    row!("1016", Throttled, Then::Retry(Wait::Queue, ANY), "too many imports queued"),
    row!("1019", Throttled, Then::Retry(Wait::Queue, ANY), "import in progress"),
    row!("1022", Throttled, Then::Retry(Wait::Queue, ANY), "object in use"),
    row!("1029", Throttled, Then::Retry(Wait::Queue, ANY), "too many jobs in queue"),
];

/// Any response-level code not in [`CODES`] (other 6xx and 7xx included) is final.
static OTHER: Row = row!("other", Fatal, Then::Fail, "not a retryable Marketo code");

fn lookup(code: &str) -> &'static Row {
    CODES.iter().find(|r| r.code == code).unwrap_or(&OTHER)
}

/// Which of several response-level errors decides: the most forbidding.
fn severity(row: &Row) -> u8 {
    match row.kind {
        Kind::QuotaExhausted => 0,
        Kind::Fatal => 1,
        Kind::AuthExpired => 2,
        Kind::Throttled => 3,
        _ => 4,
    }
}

/// Which limit a throttled code is about: 606 the instance's call rate ("the host limiter also
/// holds other requests"), 615 its calls in flight ("limiter lowers concurrency"); a full job
/// queue or an object in use holds only the request that met it.
fn throttle(wait: Wait) -> Throttle {
    match wait {
        Wait::Concurrency => Throttle::Concurrency,
        Wait::Queue => Throttle::Request,
        Wait::Policy | Wait::RateWindow => Throttle::Rate,
    }
}

/// The least wait before the next login after the identity endpoint answered a retryable
/// code (the login's column of the table; `None`: the token source's login backoff, from 1 s
/// doubling). A request's 606 retry waits inside the 20 s window and the host limiter holds it
/// until the window has room; a login is sent past the limiter (straight to the inner
/// service), so after a 606 it waits the whole window. A 615 clears as calls end, which the
/// login backoff already waits for; 604/608/611/614/713/719/502 are the backoff's own case;
/// 1016/1019/1022/1029 are bulk-job codes the identity service has no reason to send.
fn login_wait(wait: Wait) -> Option<Duration> {
    match wait {
        Wait::RateWindow => Some(RATE_WINDOW),
        Wait::Policy | Wait::Concurrency | Wait::Queue => None,
    }
}

fn retry_rule(name: &'static str, wait: Wait, any_method: bool) -> RetryRule {
    let rule = RetryRule::new(name);
    let rule = if any_method { rule.any_method() } else { rule };
    match wait {
        Wait::Policy => rule,
        Wait::RateWindow => rule.backoff(backoff(RATE_RETRY_MIN, RATE_WINDOW)),
        Wait::Concurrency => rule.backoff(backoff(CONCURRENCY_RETRY_MIN, CONCURRENCY_RETRY_MAX)),
        Wait::Queue => rule.backoff(backoff(QUEUE_RETRY_MIN, QUEUE_RETRY_MAX)),
    }
}

// ---------------------------------------------------------------------------------------------
// Typed bodies.

/// A Marketo response body, as far as redial reads it.
///
/// ```
/// let body = br#"{"requestId":"e42b#14272d07d78","success":false,"errors":[{"code":606,"message":"Max rate limit '100' exceeded with in '20' secs"}]}"#;
/// let r = redial_vendors::marketo::parse(body).unwrap();
/// assert_eq!(r.success, Some(false));
/// assert_eq!(r.errors[0].code, "606");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketoResponse {
    /// `requestId`.
    pub request_id: Option<String>,
    /// `success` (`None` when absent or not a boolean).
    pub success: Option<bool>,
    /// Response-level `errors[]`.
    pub errors: Vec<ErrorEntry>,
    /// `warnings[]`, as text.
    pub warnings: Vec<String>,
    /// `result[]`: one status per input record, in input order (for the calls that report one).
    pub result: Vec<RecordStatus>,
}

impl MarketoResponse {
    /// Whether the request failed as a whole (`success:false`, or any `errors[]`).
    pub fn is_failure(&self) -> bool {
        self.success == Some(false) || !self.errors.is_empty()
    }

    /// The skipped records' reasons, with the record's index in the input.
    pub fn record_errors(&self) -> impl Iterator<Item = (usize, &ErrorEntry)> {
        self.result
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_skipped())
            .flat_map(|(i, r)| r.reasons.iter().map(move |e| (i, e)))
    }

    /// Every error of the body as [`VendorError`]s: response-level ones (scope `Response`),
    /// then one per reason of each skipped record (scope `Record(i)`), in input order.
    ///
    /// At most [`MAX_ERRORS`](crate::MAX_ERRORS) are kept, and a `requestId` or record `id`
    /// longer than [`MAX_SHARED_ATTRIBUTE`](crate::MAX_SHARED_ATTRIBUTE) goes on the first error
    /// it applies to only: what the errors hold stays linear in the body.
    pub fn vendor_errors(&self) -> Vec<VendorError> {
        let tag = |e: VendorError, n: usize| match &self.request_id {
            Some(id) if crate::shares(id, n) => e.with_attribute("requestId", id.clone()),
            _ => e,
        };
        let mut out: Vec<VendorError> = Vec::new();
        for e in self.errors.iter().take(crate::MAX_ERRORS) {
            out.push(tag(e.to_vendor_error(), out.len()));
        }
        for (i, record) in self.result.iter().enumerate().filter(|(_, r)| r.is_skipped()) {
            let reasons = record.reasons.len().max(1);
            for k in 0..reasons {
                if out.len() >= crate::MAX_ERRORS {
                    return out;
                }
                // Skipped without a reason: the status is all Marketo said.
                let e =
                    record.reasons.get(k).map_or_else(|| VendorError::code_only("skipped"), |r| r.to_vendor_error());
                let mut e = tag(e.with_scope(ErrorScope::Record(i)), out.len());
                if let Some(id) = record.id.as_ref().filter(|id| crate::shares(id, k)) {
                    e = e.with_attribute("id", id.clone());
                }
                if let Some(seq) = record.seq {
                    e = e.with_attribute("seq", seq.to_string());
                }
                out.push(e);
            }
        }
        out
    }
}

/// One `{code, message}` entry of `errors[]` or of a record's `reasons[]`.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorEntry {
    /// The code as a string, whatever its type on the wire (`"606"`; empty when absent).
    pub code: String,
    /// The message.
    pub message: Option<String>,
}

impl ErrorEntry {
    /// The entry as a [`VendorError`] scoped to the response.
    pub fn to_vendor_error(&self) -> VendorError {
        VendorError::new(self.code.clone(), self.message.clone().unwrap_or_default())
    }
}

/// One entry of `result[]`: a record's outcome.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordStatus {
    /// `id` (a number or a string on the wire).
    pub id: Option<String>,
    /// `seq`: the record's index in the input, when the call reports it (custom objects).
    pub seq: Option<u64>,
    /// `status`: `created`, `updated`, `deleted`, `skipped`, …
    pub status: Option<String>,
    /// `reasons[]`.
    pub reasons: Vec<ErrorEntry>,
}

impl RecordStatus {
    /// Whether Marketo skipped this record.
    pub fn is_skipped(&self) -> bool {
        self.status.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case("skipped"))
    }
}

/// A body is not a Marketo response; the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(&'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ParseError {}

/// Parse a Marketo response body: a JSON object with at least one of `success`, `errors`,
/// `requestId`. Members of unexpected types are ignored; codes may be strings or numbers.
pub fn parse(body: &[u8]) -> Result<MarketoResponse, ParseError> {
    let body = redial_core::without_bom(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError("empty body"));
    }
    // Straight into the typed response (no `Value` tree: this runs on every 2xx JSON body).
    match serde_json::from_slice::<wire::Read<(MarketoResponse, bool)>>(body) {
        Ok(wire::Read(Some((response, true)))) => Ok(response),
        Ok(wire::Read(Some(_))) => Err(ParseError("not a Marketo response (no success, errors or requestId)")),
        Ok(wire::Read(None)) => Err(ParseError("not a JSON object")),
        // serde_json reports a number cut short in a skipped member as invalid, not as the end.
        Err(e) if e.is_eof() || ends_at(body, &e) => Err(ParseError("truncated JSON")),
        Err(_) => Err(ParseError("not JSON")),
    }
}

/// Whether a body is a plain Marketo success, as [`parse`] would read it: a Marketo response
/// whose `success` is not false, with no `errors[]` and no skipped record. It is read in the
/// same pass [`parse`] makes, but keeps nothing (no strings, no lists): the common case of
/// every 2xx body, which classification then need not build. `false` means only "parse it".
fn is_plain_success(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<wire::Read<wire::Summary>>(redial_core::without_bom(body)),
        Ok(wire::Read(Some(s))) if s.known && s.success != Some(false) && s.errors == 0 && s.skipped == 0
    )
}

/// Whether a syntax error is a number cut short by the end of `body`.
fn ends_at(body: &[u8], e: &serde_json::Error) -> bool {
    let in_number = body.last().is_some_and(|b| b"0123456789.eE+-".contains(b));
    let last_line = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = body.iter().filter(|&&b| b == b'\n').count() + 1;
    in_number
        && e.is_syntax()
        && e.line() == lines
        && e.column() >= body.len() - last_line
        && e.to_string().starts_with("invalid number")
}

/// The tolerant wire format of [`parse`], read in one pass with serde: a member of an
/// unexpected type reads as absent, a lone object where an array belongs as a one-item array,
/// a repeated member as its last value, and unknown members are skipped unread.
mod wire {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{ErrorEntry, MarketoResponse, RecordStatus};

    /// What a value means for each JSON type it may have; every other type reads as `None`
    /// (arrays and objects are skipped to their end).
    trait Shape: Sized {
        const EXPECTING: &'static str;
        fn str(_: &str) -> Option<Self> {
            None
        }
        fn int(_: i128) -> Option<Self> {
            None
        }
        fn float(_: f64) -> Option<Self> {
            None
        }
        fn bool(_: bool) -> Option<Self> {
            None
        }
        fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    /// A value of shape `T`, or `None`.
    pub(super) struct Read<T>(pub(super) Option<T>);

    impl<'de, T: Shape> Deserialize<'de> for Read<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ShapeVisitor(PhantomData)).map(Read)
        }
    }

    struct ShapeVisitor<T>(PhantomData<T>);

    impl<'de, T: Shape> Visitor<'de> for ShapeVisitor<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(T::EXPECTING)
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Option<T>, E> {
            Ok(T::str(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Option<T>, E> {
            Ok(T::int(v.into()))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Option<T>, E> {
            Ok(T::int(v.into()))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Option<T>, E> {
            Ok(T::float(v))
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<Option<T>, E> {
            Ok(T::bool(v))
        }
        fn visit_unit<E: Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
            T::seq(seq)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
            T::map(map)
        }
    }

    /// A string (trimmed), or a number written as an integer when it is one (`606`, `606.0`
    /// → `"606"`).
    impl Shape for String {
        const EXPECTING: &'static str = "a string or a number";
        fn str(v: &str) -> Option<Self> {
            Some(v.trim().to_owned())
        }
        fn int(v: i128) -> Option<Self> {
            // Every JSON integer serde_json reads fits an i64 or a u64.
            Some(match i64::try_from(v) {
                Ok(v) => v.to_string(),
                Err(_) => u64::try_from(v).map_or_else(|_| v.to_string(), |v| v.to_string()),
            })
        }
        fn float(v: f64) -> Option<Self> {
            Some(if v.fract() == 0.0 && v.abs() < 1e15 {
                (v as i64).to_string()
            } else {
                // As serde_json writes the number.
                serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string())
            })
        }
    }

    /// `true`/`false`, as a boolean or as a string in any case.
    impl Shape for bool {
        const EXPECTING: &'static str = "a boolean";
        fn bool(v: bool) -> Option<Self> {
            Some(v)
        }
        fn str(v: &str) -> Option<Self> {
            match v {
                _ if v.eq_ignore_ascii_case("true") => Some(true),
                _ if v.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            }
        }
    }

    /// `seq`: an unsigned integer.
    impl Shape for u64 {
        const EXPECTING: &'static str = "an unsigned integer";
        fn int(v: i128) -> Option<Self> {
            u64::try_from(v).ok()
        }
    }

    /// A list: an array's items of the expected shape, or a lone object as a one-item list.
    struct List<T>(Vec<T>);

    impl<T> Default for List<T> {
        fn default() -> Self {
            List(Vec::new())
        }
    }

    impl<T: Shape> Shape for List<T> {
        const EXPECTING: &'static str = "an array";
        fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
            let mut items = Vec::new();
            while let Some(Read(item)) = seq.next_element::<Read<T>>()? {
                items.extend(item);
            }
            Ok(Some(List(items)))
        }
        fn map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
            Ok(Some(List(T::map(map)?.into_iter().collect())))
        }
    }

    /// The members that are read; any other is skipped.
    enum Key {
        RequestId,
        Success,
        Errors,
        Warnings,
        Result,
        Code,
        Message,
        Id,
        Seq,
        Status,
        Reasons,
        Other,
    }

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_str<E: Error>(self, v: &str) -> Result<Key, E> {
                    Ok(match v {
                        "requestId" => Key::RequestId,
                        "success" => Key::Success,
                        "errors" => Key::Errors,
                        "warnings" => Key::Warnings,
                        "result" => Key::Result,
                        "code" => Key::Code,
                        "message" => Key::Message,
                        "id" => Key::Id,
                        "seq" => Key::Seq,
                        "status" => Key::Status,
                        "reasons" => Key::Reasons,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_identifier(V)
        }
    }

    /// The value of the member just read, as shape `T`.
    fn value<'de, A: MapAccess<'de>, T: Shape>(map: &mut A) -> Result<Option<T>, A::Error> {
        map.next_value::<Read<T>>().map(|r| r.0)
    }

    /// `{code, message}`.
    impl Shape for ErrorEntry {
        const EXPECTING: &'static str = "an object";
        fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            let mut e = ErrorEntry::default();
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Code => e.code = value(&mut map)?.unwrap_or_default(),
                    Key::Message => e.message = value(&mut map)?,
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            Ok(Some(e))
        }
    }

    /// `{id, seq, status, reasons}`.
    impl Shape for RecordStatus {
        const EXPECTING: &'static str = "an object";
        fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            let mut r = RecordStatus::default();
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Id => r.id = value(&mut map)?,
                    Key::Seq => r.seq = value(&mut map)?,
                    Key::Status => r.status = value(&mut map)?,
                    Key::Reasons => r.reasons = value::<_, List<ErrorEntry>>(&mut map)?.unwrap_or_default().0,
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            Ok(Some(r))
        }
    }

    /// The body: an object, with whether it has `success`, `errors` or `requestId`.
    impl Shape for (MarketoResponse, bool) {
        const EXPECTING: &'static str = "a JSON object";
        fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            let (mut r, mut known) = (MarketoResponse::default(), false);
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::RequestId => (r.request_id, known) = (value(&mut map)?, true),
                    Key::Success => (r.success, known) = (value(&mut map)?, true),
                    Key::Errors => {
                        r.errors = value::<_, List<ErrorEntry>>(&mut map)?.unwrap_or_default().0;
                        known = true;
                    }
                    Key::Warnings => r.warnings = value::<_, List<String>>(&mut map)?.unwrap_or_default().0,
                    Key::Result => r.result = value::<_, List<RecordStatus>>(&mut map)?.unwrap_or_default().0,
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            Ok(Some((r, known)))
        }
    }

    // What classifying needs of a 2xx body on its common path, read as the shapes above read
    // it (the same members through the same shapes, so the same bytes are checked: strings
    // and numbers where the full read keeps them, nothing where it skips), keeping nothing.

    /// Read the value of the member just read as shape `T`, keeping nothing of it.
    fn check<'de, A: MapAccess<'de>, T: Shape>(map: &mut A) -> Result<(), A::Error> {
        value::<A, T>(map).map(|_| ())
    }

    /// A value only checked, as the full read checks the member it stands for.
    struct Seen;

    impl Shape for Seen {
        const EXPECTING: &'static str = "any value";
    }

    /// What an item counts for in a [`Count`].
    trait Tally: Shape {
        fn tally(&self) -> usize {
            1
        }
    }

    impl Tally for Seen {}

    /// How many items a list has, as [`List`] reads it, summed by [`Tally`].
    struct Count<T>(usize, PhantomData<T>);

    impl<T: Tally> Shape for Count<T> {
        const EXPECTING: &'static str = "an array";
        fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
            let mut n = 0;
            while let Some(Read(item)) = seq.next_element::<Read<T>>()? {
                n += item.map_or(0, |t| t.tally());
            }
            Ok(Some(Count(n, PhantomData)))
        }
        fn map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
            Ok(Some(Count(T::map(map)?.map_or(0, |t| t.tally()), PhantomData)))
        }
    }

    /// An entry of `errors[]` or `reasons[]`, as [`ErrorEntry`] reads it.
    struct EntrySeen;

    impl Shape for EntrySeen {
        const EXPECTING: &'static str = "an object";
        fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Code | Key::Message => check::<_, Seen>(&mut map)?,
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            Ok(Some(EntrySeen))
        }
    }

    impl Tally for EntrySeen {}

    /// A `status` that says `skipped`, as [`RecordStatus::is_skipped`] reads it.
    struct SkippedStatus(bool);

    impl Shape for SkippedStatus {
        const EXPECTING: &'static str = "a string or a number";
        fn str(v: &str) -> Option<Self> {
            Some(SkippedStatus(v.trim().eq_ignore_ascii_case("skipped")))
        }
        fn int(_: i128) -> Option<Self> {
            Some(SkippedStatus(false))
        }
        fn float(_: f64) -> Option<Self> {
            Some(SkippedStatus(false))
        }
    }

    /// A record of `result[]`, as [`RecordStatus`] reads it: whether it was skipped.
    struct RecordSeen(bool);

    impl Shape for RecordSeen {
        const EXPECTING: &'static str = "an object";
        fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            let mut skipped = false;
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Id | Key::Seq => check::<_, Seen>(&mut map)?,
                    Key::Status => skipped = value::<_, SkippedStatus>(&mut map)?.is_some_and(|s| s.0),
                    Key::Reasons => check::<_, Count<EntrySeen>>(&mut map)?,
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            Ok(Some(RecordSeen(skipped)))
        }
    }

    impl Tally for RecordSeen {
        fn tally(&self) -> usize {
            usize::from(self.0)
        }
    }

    /// The body as `(MarketoResponse, bool)` reads it, reduced to what says "a plain success".
    #[derive(Default)]
    pub(super) struct Summary {
        /// It has `success`, `errors` or `requestId`.
        pub(super) known: bool,
        pub(super) success: Option<bool>,
        /// Entries of `errors[]`.
        pub(super) errors: usize,
        /// Skipped records of `result[]`.
        pub(super) skipped: usize,
    }

    impl Shape for Summary {
        const EXPECTING: &'static str = "a JSON object";
        fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            let mut s = Summary::default();
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::RequestId => {
                        check::<_, Seen>(&mut map)?;
                        s.known = true;
                    }
                    Key::Success => (s.success, s.known) = (value(&mut map)?, true),
                    Key::Errors => {
                        s.errors = value::<_, Count<EntrySeen>>(&mut map)?.map_or(0, |c| c.0);
                        s.known = true;
                    }
                    Key::Warnings => check::<_, Count<Seen>>(&mut map)?,
                    Key::Result => s.skipped = value::<_, Count<RecordSeen>>(&mut map)?.map_or(0, |c| c.0),
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            Ok(Some(s))
        }
    }
}

/// The parser [`parse`] replaced, over a `serde_json::Value` tree: the oracle of its tests.
#[cfg(test)]
pub fn parse_value(body: &[u8]) -> Result<MarketoResponse, ParseError> {
    let map = json_object(body)?;
    if !["success", "errors", "requestId"].iter().any(|k| map.contains_key(*k)) {
        return Err(ParseError("not a Marketo response (no success, errors or requestId)"));
    }
    Ok(MarketoResponse {
        request_id: map.get("requestId").and_then(text),
        success: map.get("success").and_then(boolean),
        errors: entries(map.get("errors")),
        warnings: list(map.get("warnings")).iter().filter_map(text).collect(),
        result: list(map.get("result"))
            .iter()
            .filter_map(Value::as_object)
            .map(|r| RecordStatus {
                id: r.get("id").and_then(text),
                seq: r.get("seq").and_then(Value::as_u64),
                status: r.get("status").and_then(text),
                reasons: entries(r.get("reasons")),
            })
            .collect(),
    })
}

#[cfg(test)]
fn json_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError("empty body"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError("not a JSON object")),
        Err(e) if e.is_eof() => Err(ParseError("truncated JSON")),
        Err(_) => Err(ParseError("not JSON")),
    }
}

/// An array's items; a lone object counts as a one-item array.
fn list(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(items)) => items,
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        _ => &[],
    }
}

fn entries(v: Option<&Value>) -> Vec<ErrorEntry> {
    list(v)
        .iter()
        .filter_map(Value::as_object)
        .map(|e| ErrorEntry {
            code: e.get("code").and_then(text).unwrap_or_default(),
            message: e.get("message").and_then(text),
        })
        .collect()
}

/// A string, or a number written as an integer when it is one (`606`, `606.0` → `"606"`).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => (f as i64).to_string(),
            _ => n.to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The daily quota reset: 00:00 US Central.

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// When Marketo's daily quota (code 607) resets after `received_at`: the next 00:00 in US
/// Central time, CST (UTC−6) or CDT (UTC−5) by the US rule (DST from the second Sunday of March,
/// 02:00, to the first Sunday of November, 02:00). `None` for times tens of thousands of years
/// away from 1970.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use redial_vendors::marketo::quota_reset;
/// // Mon, 15 Jan 2024 15:30 UTC = 09:30 CST → Tue, 16 Jan 2024 00:00 CST = 06:00 UTC
/// let at = UNIX_EPOCH + Duration::from_secs(1_705_332_600);
/// assert_eq!(quota_reset(at), Some(UNIX_EPOCH + Duration::from_secs(1_705_384_800)));
/// ```
pub fn quota_reset(received_at: SystemTime) -> Option<SystemTime> {
    let t = match received_at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_secs()).ok()?,
    };
    if t.unsigned_abs() > 1 << 40 {
        return None;
    }
    let local = t + central_offset(t);
    let midnight = (local.div_euclid(DAY) + 1) * DAY; // on the local wall clock
                                                      // Midnight is never inside a DST change (they happen at 02:00): one offset fits.
    let reset = [5 * HOUR, 6 * HOUR]
        .into_iter()
        .map(|behind| midnight + behind)
        .find(|&utc| central_offset(utc) == midnight - utc)
        .unwrap_or(midnight + 6 * HOUR);
    let secs = u64::try_from(reset).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// The UTC offset of US Central time at `t` (seconds since the epoch), in seconds.
fn central_offset(t: i64) -> i64 {
    let year = year_of_day(t.div_euclid(DAY));
    let start = nth_sunday(year, 3, 2) * DAY + 8 * HOUR; // 02:00 CST
    let end = nth_sunday(year, 11, 1) * DAY + 7 * HOUR; // 02:00 CDT
    if (start..end).contains(&t) {
        -5 * HOUR
    } else {
        -6 * HOUR
    }
}

/// The `n`-th Sunday of a month, in days since 1970-01-01 (a Thursday).
fn nth_sunday(year: i64, month: i64, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    let weekday = (first + 4).rem_euclid(7); // 0 = Sunday
    first + (7 - weekday) % 7 + 7 * (n - 1)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year of a day since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn year_of_day(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153; // March = 0
    yoe + era * 400 + i64::from(mp >= 10)
}

/// An IMF-fixdate, when `t` is one httpdate can write (years 1970 to 9999).
fn http_date(t: SystemTime) -> Option<String> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    (secs < 253_402_300_800).then(|| httpdate::fmt_http_date(t))
}

// ---------------------------------------------------------------------------------------------
// The profile.

/// Whether a body of this response is worth parsing: every 2xx JSON (or unlabelled) body except
/// the empty statuses, every 4xx/5xx body.
fn wants_body(headers: &HeaderMap, status: http::StatusCode) -> bool {
    if status.is_client_error() || status.is_server_error() {
        return true;
    }
    status.is_success()
        && !matches!(status.as_u16(), 204 | 205)
        && headers.get(CONTENT_TYPE).is_none_or(|v| v.to_str().is_ok_and(is_json_media_type))
}

impl Profile for Marketo {
    fn name(&self) -> &str {
        "marketo"
    }

    fn inspect(&self, _req: &RequestHead<'_>, res: &ResponseHead<'_>) -> bool {
        wants_body(res.headers, res.status)
    }

    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        let (head, body) = match outcome {
            Outcome::Failure(f) => return Generic::classify_failure(*f),
            Outcome::Response(head, body) => (head, body),
            // An outcome this profile does not know yet: the generic rules.
            other => return Generic.classify(req, other),
        };
        match body {
            // The common case, read without building the response (`classify_parsed` would
            // say the same of it: a success, no errors).
            Body::Complete(bytes)
                if head.status.is_success() && wants_body(head.headers, head.status) && is_plain_success(bytes) =>
            {
                Classification::success("marketo: success").with_body(BodyUse::Parsed)
            }
            Body::Complete(bytes) if wants_body(head.headers, head.status) => match parse(bytes) {
                Ok(parsed) => classify_parsed(req, head, &parsed).with_body(BodyUse::Parsed),
                Err(why) => {
                    let mut c = status_rules(req, head).with_body(BodyUse::Fallback);
                    c.reason = format!("{} (body not used: {why})", c.reason).into();
                    c
                }
            },
            Body::Prefix(_) => status_rules(req, head).with_body(BodyUse::TooLarge),
            // Not read, not wanted, or read in a way this profile does not know yet.
            _ => status_rules(req, head),
        }
    }
}

/// The HTTP-level rows: 413, 414, 502, then the generic rules.
fn status_rules(req: &RequestHead<'_>, head: &ResponseHead<'_>) -> Classification {
    match head.status.as_u16() {
        414 if *req.method == Method::GET => Classification::new(
            Kind::Transient,
            Advice::Rewrite(Rewrite::MethodOverridePost),
            "marketo: HTTP 414, the URI is over 8 KB: re-send as POST with _method=GET",
        ),
        414 => Classification::fail(Kind::Fatal, "marketo: HTTP 414, the URI is over 8 KB"),
        413 => Classification::fail(
            Kind::Fatal,
            "marketo: HTTP 413, the body is over 1 MB (10 MB for bulk import): split it",
        ),
        502 => Classification::retry(
            Kind::Transient,
            retry_rule("marketo.502", Wait::Policy, IDEMPOTENT),
            "marketo: HTTP 502 bad gateway",
        )
        .with_hint(server_hint(head.headers, head.received_at)),
        _ => Generic::classify_status(head),
    }
}

fn classify_parsed(req: &RequestHead<'_>, head: &ResponseHead<'_>, body: &MarketoResponse) -> Classification {
    let errors = body.vendor_errors();
    let status = head.status.as_u16();
    if body.is_failure() && !matches!(status, 413 | 414) {
        return response_error(head, body, errors);
    }
    if head.status.is_success() {
        let skipped = body.result.iter().filter(|r| r.is_skipped()).count();
        if skipped > 0 {
            let reason = format!("marketo: {skipped} of {} records skipped (record-level errors)", body.result.len());
            return Classification::new(Kind::Partial, Advice::Return, reason).with_errors(errors);
        }
        return Classification::success("marketo: success").with_errors(errors);
    }
    status_rules(req, head).with_errors(errors)
}

fn response_error(head: &ResponseHead<'_>, body: &MarketoResponse, errors: Vec<VendorError>) -> Classification {
    let Some((entry, row)) = body.errors.iter().map(|e| (e, lookup(&e.code))).min_by_key(|(_, row)| severity(row))
    else {
        return Classification::fail(Kind::Fatal, "marketo: success:false without errors[]").with_errors(errors);
    };
    let mut reason = format!("marketo {}: {}", entry.code, row.what);
    let c = match row.then {
        Then::RefreshAuth => Classification::new(row.kind, Advice::RefreshAuth, reason),
        Then::Retry(wait, any_method) => {
            Classification::retry(row.kind, retry_rule(row.rule, wait, any_method), reason)
                .with_hint(server_hint(head.headers, head.received_at))
                .with_throttle(throttle(wait))
        }
        Then::Fail => Classification::fail(row.kind, reason),
        Then::FailUntilReset => {
            let reset = quota_reset(head.received_at);
            let hint = reset.map(|at| ServerHint {
                delay: at.duration_since(head.received_at).unwrap_or_default(),
                source: HintSource::Vendor,
            });
            let resets_at = reset.and_then(http_date);
            if let Some(date) = &resets_at {
                reason = format!("{reason}; it resets at {date} (00:00 US Central)");
            }
            // The reset time reaches the caller on the 607 error itself.
            let errors = errors.into_iter().map(|e| match &resets_at {
                Some(date) if e.code == "607" => e.with_attribute("resets_at", date.clone()),
                _ => e,
            });
            return Classification::fail(row.kind, reason).with_hint(hint).with_errors(errors);
        }
    };
    c.with_errors(errors)
}

// ---------------------------------------------------------------------------------------------
// The login: Marketo's identity service.

/// The path of the token endpoint under the identity URL.
pub const IDENTITY_TOKEN_PATH: &str = "/oauth/token";

/// Marketo's identity login: OAuth 2.0 client credentials of a LaunchPoint custom service
/// (VENDORS.md, Marketo, Auth).
///
/// It sends `POST <identity>/oauth/token` with the form body
/// `grant_type=client_credentials&client_id=…&client_secret=…`. VENDORS.md shows the
/// credentials in the query string, as Marketo's older examples do; the identity service
/// accepts them in a form body, which keeps the secret out of URLs and access logs.
///
/// The answer `{"access_token","token_type":"bearer","expires_in":3599,"scope"}` gives the
/// token and its *remaining* lifetime (`expires_in`, a number or a numeric string): the same
/// token comes back until it expires. The token goes on requests as `Authorization: Bearer`.
///
/// | answer | kind |
/// |---|---|
/// | HTTP 401 (bad client id or secret), `{"error":"invalid_client","error_description":"Bad client credentials"}` and the other RFC 6749 §5.2 codes | fatal |
/// | `errors[]` with 606 (100 calls / 20 s) | transient; the next login comes [`RATE_WINDOW`] (20 s) later at the earliest: a request's 606 retry is held by the host limiter until the window has room, a login is not, so it waits the window out |
/// | `errors[]` with another retryable Marketo code (604, 608, 611, 615, 713, …, see the [module table](self)) | transient (the token source's login backoff) |
/// | `errors[]` with any other Marketo code | fatal |
/// | HTTP 5xx, 429, 408, a body that is not JSON (a gateway page, empty, truncated) | transient |
///
/// The full status rules are those of [`oauth2`](crate::oauth2). `Debug` never shows the
/// client secret; neither does any [`LoginError`](redial_core::auth::LoginError).
///
/// ```
/// use std::time::SystemTime;
/// use http::{header, HeaderMap, StatusCode};
/// use redial_core::auth::{Attach, Login};
/// use redial_core::ResponseHead;
/// use redial_vendors::marketo::IdentityLogin;
///
/// let login = IdentityLogin::new("https://123-ABC-456.mktorest.com/identity", "my-client-id", "my-client-secret")?;
/// let req = login.request();
/// assert_eq!(req.uri(), "https://123-ABC-456.mktorest.com/identity/oauth/token");
/// assert_eq!(req.headers()[header::CONTENT_TYPE], "application/x-www-form-urlencoded");
/// assert_eq!(&req.body()[..], b"grant_type=client_credentials&client_id=my-client-id&client_secret=my-client-secret");
/// assert_eq!(login.attach(), Attach::Bearer);
///
/// let body = br#"{"access_token":"cdf01657-110d-4155-99a7-f986b2ff13a0:int","token_type":"bearer","expires_in":3599,"scope":"apis@acmeinc.com"}"#;
/// let credential = login.parse(&ResponseHead::new(StatusCode::OK, &HeaderMap::new(), SystemTime::now()), body)?;
/// assert_eq!(credential.lifetime, Some(std::time::Duration::from_secs(3599)));
///
/// let bad = br#"{"error":"invalid_client","error_description":"Bad client credentials"}"#;
/// let err = login.parse(&ResponseHead::new(StatusCode::UNAUTHORIZED, &HeaderMap::new(), SystemTime::now()), bad).unwrap_err();
/// assert!(err.is_fatal());
/// assert_eq!(err.code(), Some("invalid_client"));
/// assert!(!format!("{login:?} {err} {err:?}").contains("my-client-secret"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct IdentityLogin {
    inner: crate::oauth2::ClientCredentials,
}

impl IdentityLogin {
    /// A login at `identity_url` (the instance's identity URL, as the Admin > Web Services
    /// page shows it: `https://<munchkin-id>.mktorest.com/identity`; a URL that already ends
    /// in `/oauth/token` is used as it is).
    pub fn new(
        identity_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<redial_core::auth::Secret>,
    ) -> Result<Self, crate::oauth2::InvalidLoginUrl> {
        let url = crate::oauth2::join_path(identity_url, IDENTITY_TOKEN_PATH)?;
        let inner = crate::oauth2::ClientCredentials::with_url(url, client_id, client_secret)
            .auth_style(crate::oauth2::AuthStyle::Post)
            .vendor("marketo identity", Some(identity_envelope));
        Ok(IdentityLogin { inner })
    }

    /// The token URL (`<identity>/oauth/token`).
    pub fn token_url(&self) -> &http::Uri {
        self.inner.token_url()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.inner.client_id()
    }
}

impl fmt::Debug for IdentityLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityLogin")
            .field("token_url", &redial_core::auth::redact_urls(&self.inner.token_url().to_string()))
            .field("client_id", &self.inner.client_id())
            .field("client_secret", &"***")
            .finish()
    }
}

impl redial_core::auth::Login for IdentityLogin {
    fn request(&self) -> http::Request<bytes::Bytes> {
        self.inner.request()
    }

    fn parse(
        &self,
        res: &ResponseHead<'_>,
        body: &[u8],
    ) -> Result<redial_core::auth::Credential, redial_core::auth::LoginError> {
        self.inner.parse(res, body)
    }

    fn attach(&self) -> redial_core::auth::Attach {
        redial_core::auth::Attach::Bearer
    }
}

/// A Marketo envelope (`errors[]`) in the identity's answer: the most forbidding code decides;
/// the retryable ones of [`CODES`] are transient, with their [`login_wait`], every other code
/// fatal.
fn identity_envelope(map: &Map<String, Value>) -> Option<crate::oauth2::Refusal> {
    use redial_core::auth::LoginFailureKind;
    let errors = entries(map.get("errors"));
    let (entry, row) = errors.iter().map(|e| (e, lookup(&e.code))).min_by_key(|(_, row)| severity(row))?;
    let (kind, retry_after) = match (row.kind, row.then) {
        (Kind::Transient | Kind::Throttled, Then::Retry(wait, _)) => (LoginFailureKind::Transient, login_wait(wait)),
        (Kind::Transient | Kind::Throttled, _) => (LoginFailureKind::Transient, None),
        _ => (LoginFailureKind::Fatal, None),
    };
    let code = if entry.code.is_empty() { "unknown" } else { &entry.code };
    Some(crate::oauth2::Refusal {
        code: code.to_owned(),
        kind,
        what: row.what,
        detail: entry.message.clone(),
        retry_after,
    })
}

#[cfg(test)]
mod wire_tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::{parse, parse_value};

    /// JSON values shaped like Marketo's, with every member of every type now and then.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            prop_oneof![Just(606.0), Just(1e15), Just(-2.5)].prop_map(Value::from),
            prop_oneof![" 606 ", "true", "FALSE", "skipped", " Skipped ", "updated", "é", ""].prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("requestId"),
                Just("success"),
                Just("errors"),
                Just("warnings"),
                Just("result"),
                Just("code"),
                Just("message"),
                Just("id"),
                Just("seq"),
                Just("status"),
                Just("reasons"),
                Just("other"),
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key, inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The one-pass parser reads every body exactly as the `Value` tree did.
        #[test]
        fn the_typed_parser_agrees_with_the_value_tree(v in value(), cut in any::<prop::sample::Index>()) {
            let body = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(parse(&body), parse_value(&body));
            // And on every truncation of it.
            let cut = cut.index(body.len() + 1);
            prop_assert_eq!(parse(&body[..cut]), parse_value(&body[..cut]));
        }
    }

    /// Bodies shaped like Marketo's own, where a plain success and its near misses are common.
    fn marketo_body() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            Just(json!("updated")),
            Just(json!("skipped")),
            Just(json!(" Skipped ")),
            Just(json!(5)),
            Just(json!(null))
        ];
        let entry =
            prop_oneof![Just(json!({"code": "1004", "message": "Lead not found"})), Just(json!(7)), Just(json!({}))];
        let record = (text.clone(), prop::collection::vec(entry.clone(), 0..2), any::<bool>()).prop_map(
            |(status, reasons, with_id)| {
                let mut r = json!({"status": status, "reasons": reasons});
                if with_id {
                    r["id"] = json!(50);
                }
                r
            },
        );
        let success = prop_oneof![Just(json!(true)), Just(json!(false)), Just(json!("TRUE")), Just(json!(null))];
        let errors = prop_oneof![Just(None), Just(Some(json!([]))), entry.prop_map(|e| Some(json!([e])))];
        let result = prop_oneof![
            prop::collection::vec(record.clone(), 0..3).prop_map(Value::from),
            record,
            Just(json!("none")),
        ];
        (prop::option::of(success), errors, prop::option::of(result), any::<bool>()).prop_map(
            |(success, errors, result, id)| {
                let mut body = serde_json::Map::new();
                if id {
                    body.insert("requestId".into(), json!("e42b#1"));
                }
                if let Some(v) = success {
                    body.insert("success".into(), v);
                }
                if let Some(v) = errors {
                    body.insert("errors".into(), v);
                }
                if let Some(v) = result {
                    body.insert("result".into(), v);
                }
                Value::Object(body)
            },
        )
    }

    /// What the full read says of a plain success.
    fn plain(body: &[u8]) -> bool {
        parse(body).is_ok_and(|r| !r.is_failure() && !r.result.iter().any(|s| s.is_skipped()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The summary says "plain success" of exactly the bodies the full read does: every
        /// generated body, every truncation of it, and each with one byte made invalid UTF-8.
        #[test]
        fn the_summary_agrees_with_the_full_read(
            v in prop_oneof![value(), marketo_body()],
            cut in any::<prop::sample::Index>(),
            bad in any::<prop::sample::Index>(),
        ) {
            let body = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(super::is_plain_success(&body), plain(&body));
            let cut = cut.index(body.len() + 1);
            prop_assert_eq!(super::is_plain_success(&body[..cut]), plain(&body[..cut]));
            if !body.is_empty() {
                let mut broken = body.clone();
                broken[bad.index(body.len())] = 0xFF;
                prop_assert_eq!(super::is_plain_success(&broken), plain(&broken));
            }
        }
    }

    #[test]
    fn the_summary_reads_the_members_the_full_read_checks() {
        for (body, plain_success) in [
            (&br#"{"requestId":"e42b#1","success":true,"result":[{"id":50,"status":"updated"}]}"#[..], true),
            (br#"{"success":true}"#, true),
            (br#"{"requestId":"x"}"#, true),
            (br#"{"result":[]}"#, false),
            (br#"{"success":false,"errors":[{"code":"606"}]}"#, false),
            (br#"{"success":true,"errors":{"code":"601"}}"#, false),
            (br#"{"success":true,"result":[{"status":" Skipped "}]}"#, false),
            (br#"{"success":true,"result":{"status":"skipped"}}"#, false),
            (br#"{"success":true,"result":[{"status":"skipped","status":null}]}"#, true),
            (br#"{"success":true,"errors":[1,"x",[]]}"#, true),
            (b"{\"requestId\":\"\xff\",\"success\":true}", false),
            (b"{\"other\":\"\xff\",\"success\":true}", true),
            (b"{\"success\":true,\"result\":[{\"id\":\"\xff\"}]}", false),
            (b"{\"success\":true,\"result\":[{\"note\":\"\xff\"}]}", true),
            (b"  ", false),
        ] {
            assert_eq!(super::is_plain_success(body), plain_success, "{}", String::from_utf8_lossy(body));
            assert_eq!(plain(body), plain_success, "the full read: {}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn the_typed_parser_agrees_on_the_documented_shapes() {
        let bodies = [
            json!({"requestId": "e42b#1", "success": true, "result": [{"id": 50, "status": "updated"}]}),
            json!({"requestId": 7, "success": false, "errors": [{"code": 606, "message": "Max rate limit '100' exceeded with in '20' secs"}]}),
            json!({"success": "TRUE", "errors": {"code": "601.0", "message": "Access token invalid"}}),
            json!({"success": true, "result": [{"seq": 0, "status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]}, 3, "x"]}),
            json!({"success": true, "warnings": ["a", 1, {"no": 1}], "result": {"id": 1.0, "seq": -1}}),
            json!({"errors": [], "errors": [{"code": 1.5e20}]}),
            json!([1, 2]),
            json!({"unrelated": true}),
        ];
        for v in bodies {
            let body = serde_json::to_vec(&v).unwrap();
            assert_eq!(parse(&body), parse_value(&body), "{v}");
        }
        for raw in [
            &b"  "[..],
            b"{\"success\":tru",
            b"<html>502</html>",
            b"{\"success\":true} x",
            b"{\"success\":true} 5",
            b"[1, 2.",
            b"{\"succ\\u0065ss\":false}",
        ] {
            assert_eq!(parse(raw), parse_value(raw), "{}", String::from_utf8_lossy(raw));
        }
    }
}
