//! Adobe Experience Platform Edge Network Server API (`server.adobedc.net`, `edge.adobedc.net`).
//!
//! Fatal errors are RFC 9457 problems (`application/problem+json`) whose `type` ends in the
//! error code, `https://ns.adobe.com/aep/errors/EXEG-<NNNN>-<status>`, with a `report`
//! (`errors[]`, `requestId`, `orgId`). Non-fatal errors and warnings are problem objects inside
//! the gateway's ordinary `application/json` body, under `errors[]` (the status becomes 207)
//! and `warnings[]` (the status is unchanged).
//!
//! | signal | kind | action | re-sent for |
//! |---|---|---|---|
//! | 2xx, no `errors[]` or `warnings[]` | success | return | |
//! | 207, or any 2xx with `errors[]` or `warnings[]` | partial | return (errors scope `NonFatal`, warnings scope `Warning`); never retried | |
//! | 429 | throttled | retry after `Retry-After` (seconds or HTTP-date), [`THROTTLE_DEFAULT`] when absent | any method |
//! | 503 (EXEG-0000-503, EXEG-0201-503, or any other) | transient | retry after `Retry-After`, else the policy's backoff | any method |
//! | 502, 504 with EXEG-0200-504, 0203-502, 0300-502, 0307-502, or with no EXEG code | transient | retry, the policy's backoff | any method |
//! | EXEG-0202-502 **\[I\]**, any other EXEG code on a 502/504 **\[I\]** | fatal | fail | |
//! | 401 EXEG-0503-401 (token expired) | auth_expired | refresh_auth, replay once **\[I\]** | |
//! | 500, every other 4xx, every other 5xx | fatal | fail | |
//!
//! Retries re-send any method: the Edge endpoints are all `POST`, Adobe's page says 502, 503
//! and 504 may be retried, and Adobe's own Edge SDK does so.

use std::fmt;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use redial_core::backoff::Backoff;
use redial_core::generic::Generic;
use redial_core::hint::server_hint;
use redial_core::{
    is_json_media_type, Advice, Body, BodyUse, Classification, ErrorScope, Kind, Outcome, Policy, Problem, Profile,
    RequestHead, ResponseHead, RetryRule, VendorError,
};
use serde_json::Value;

/// The Edge Network Server API hosts.
pub const HOSTS: &[&str] = &["server.adobedc.net", "edge.adobedc.net"];

/// The wait after a 429 without `Retry-After`: Adobe's Edge SDK falls back to 5 s
/// (VENDORS.md, Adobe research notes).
pub const THROTTLE_DEFAULT: Duration = Duration::from_secs(5);

/// Adobe Edge's default host policy.
///
/// ```
/// let p = redial_vendors::adobe::policy();
/// assert_eq!(p.max_auth_refreshes(), 1);
/// ```
pub fn policy() -> Policy {
    Policy::builder()
        // Two retries: Adobe documents "may retry" for 502/503/504 and "respect Retry-After"
        // for 429, with no count; 207 and 500 are never retried (VENDORS.md, Adobe table).
        .max_attempts(3)
        // Room for two 429 waits of a few seconds or one long Retry-After; a hint past the
        // deadline fails at once with the hint (VENDORS.md, Retry-After).
        .deadline(Duration::from_secs(120))
        // "502 may retry after some time" / 504 "retry may solve it": exponential backoff with
        // jitter, never sooner than 1 s.
        .backoff(
            Backoff::decorrelated(Duration::from_secs(1), Duration::from_secs(30))
                .unwrap_or(Backoff::constant(THROTTLE_DEFAULT)),
        )
        // EXEG-0503-401: refresh the token, then retry once [I].
        .max_auth_refreshes(1)
        // 2xx bodies are read for warnings; personalization handles can be large.
        .inspect_limit(256 * 1024)
        .build()
        .expect("Adobe Edge's default policy is valid")
}

/// The Adobe Edge profile (see the [module docs](self) for its table).
///
/// ```
/// use redial_core::Profile;
/// assert_eq!(redial_vendors::adobe::AdobeEdge::new().name(), "adobe-edge");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AdobeEdge {
    _private: (),
}

impl AdobeEdge {
    /// The profile with the defaults of `VENDORS.md`.
    pub const fn new() -> Self {
        AdobeEdge { _private: () }
    }
}

// ---------------------------------------------------------------------------------------------
// The tables.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Retry, re-sending any method, after the server's hint or the policy's backoff.
    Retry,
    /// Retry after the server's hint or [`THROTTLE_DEFAULT`].
    RetryThrottled,
    RefreshAuth,
    Return,
    Fail,
}

#[derive(Debug)]
struct Row {
    signal: &'static str,
    rule: &'static str,
    kind: Kind,
    then: Then,
    what: &'static str,
}

macro_rules! row {
    ($signal:literal, $rule:literal, $kind:ident, $then:ident, $what:literal) => {
        Row { signal: $signal, rule: concat!("adobe.", $rule), kind: Kind::$kind, then: Then::$then, what: $what }
    };
}

/// EXEG codes of fatal (non-2xx) responses with their own rule; they win over the status.
#[rustfmt::skip]
static CODES: &[Row] = &[
    row!("EXEG-0503-401", "exeg-0503-401", AuthExpired, RefreshAuth, "token expired"),
    row!("EXEG-0202-502", "exeg-0202-502", Fatal, Fail, "upstream service failed: check the input or configuration"),
    row!("EXEG-0000-503", "exeg-0000-503", Transient, Retry, "service unavailable"),
    row!("EXEG-0200-504", "exeg-0200-504", Transient, Retry, "upstream service timed out"),
    row!("EXEG-0201-503", "exeg-0201-503", Transient, Retry, "upstream service unavailable"),
    row!("EXEG-0203-502", "exeg-0203-502", Transient, Retry, "upstream call failed"),
    row!("EXEG-0300-502", "exeg-0300-502", Transient, Retry, "consent check failed"),
    row!("EXEG-0307-502", "exeg-0307-502", Transient, Retry, "consent update failed"),
];

/// Statuses with their own rule. `plain_only` rows apply only when the body has no EXEG code
/// (or one of [`CODES`]): on a 502/504 any other code is final **\[I\]**.
#[rustfmt::skip]
static STATUSES: &[(u16, bool, Row)] = &[
    (207, false, row!("207", "207", Partial, Return, "multi-status: non-fatal errors")),
    (429, false, row!("429", "429", Throttled, RetryThrottled, "too many requests")),
    (503, false, row!("503", "503", Transient, Retry, "service unavailable")),
    (502, true, row!("502", "502", Transient, Retry, "bad gateway")),
    (504, true, row!("504", "504", Transient, Retry, "gateway timeout")),
];

/// The rule for a non-2xx response, given the EXEG code of its body, if any.
fn lookup(status: StatusCode, code: Option<&str>) -> Option<&'static Row> {
    if let Some(row) = code.and_then(|c| CODES.iter().find(|r| r.signal == c)) {
        return Some(row);
    }
    STATUSES
        .iter()
        .find(|(s, plain_only, _)| *s == status.as_u16() && !(*plain_only && code.is_some()))
        .map(|(_, _, row)| row)
}

fn classification(row: &Row, head: &ResponseHead<'_>, code: &str) -> Classification {
    let reason = format!("adobe {code}: {}", row.what);
    let hint = || server_hint(head.headers, head.received_at);
    match row.then {
        Then::Retry => Classification::retry(row.kind, RetryRule::new(row.rule).any_method(), reason).with_hint(hint()),
        Then::RetryThrottled => Classification::retry(
            row.kind,
            RetryRule::new(row.rule).any_method().backoff(Backoff::constant(THROTTLE_DEFAULT)),
            reason,
        )
        .with_hint(hint()),
        Then::RefreshAuth => Classification::new(row.kind, Advice::RefreshAuth, reason),
        Then::Return => Classification::new(row.kind, Advice::Return, reason),
        Then::Fail => Classification::fail(row.kind, reason),
    }
}

/// The status rules: the rows of [`STATUSES`], 2xx success, everything else final.
fn status_rules(head: &ResponseHead<'_>, code: Option<&str>) -> Classification {
    let status = head.status;
    if let Some(row) = lookup(status, code) {
        return classification(row, head, code.unwrap_or(row.signal));
    }
    let reason = match code {
        Some(code) => format!("adobe {code}: HTTP {} is final", status.as_u16()),
        None => format!("adobe: HTTP {} is final", status.as_u16()),
    };
    match status.as_u16() {
        100..=399 => Generic::classify_status(head),
        _ => Classification::fail(Kind::Fatal, reason),
    }
}

// ---------------------------------------------------------------------------------------------
// Typed bodies.

/// The Edge gateway's response body (`application/json`), as far as redial reads it.
///
/// ```
/// let body = br#"{"requestId":"72ea","handle":[],"errors":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0201-503","status":503,"title":"unavailable"}]}"#;
/// let r = redial_vendors::adobe::parse(body).unwrap();
/// assert_eq!(r.request_id.as_deref(), Some("72ea"));
/// assert_eq!(r.errors[0].status, Some(503));
/// assert!(r.warnings.is_empty());
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeResponse {
    /// `requestId`.
    pub request_id: Option<String>,
    /// `errors[]`: non-fatal errors (the response is a 207).
    pub errors: Vec<Problem>,
    /// `warnings[]`.
    pub warnings: Vec<Problem>,
}

impl EdgeResponse {
    /// The errors then the warnings as [`VendorError`]s (scopes `NonFatal` and `Warning`).
    ///
    /// At most [`MAX_ERRORS`](crate::MAX_ERRORS) are kept, and a `requestId` longer than
    /// [`MAX_SHARED_ATTRIBUTE`](crate::MAX_SHARED_ATTRIBUTE) goes on the first one only.
    pub fn vendor_errors(&self) -> Vec<VendorError> {
        let id = self.request_id.as_deref();
        let errors = self.errors.iter().map(|p| (p, ErrorScope::NonFatal));
        let warnings = self.warnings.iter().map(|p| (p, ErrorScope::Warning));
        errors
            .chain(warnings)
            .take(crate::MAX_ERRORS)
            .enumerate()
            .map(|(n, (p, scope))| to_vendor_error(p, scope, id.filter(|id| crate::shares(id, n))))
            .collect()
    }
}

/// A body is not what Adobe sends; the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(&'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ParseError {}

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ParseError> {
    let body = redial_core::without_bom(body);
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

/// Parse the gateway's response body. Entries of `errors[]`/`warnings[]` that are not objects
/// are kept as problems with that text as their title; members of other types are ignored.
pub fn parse(body: &[u8]) -> Result<EdgeResponse, ParseError> {
    let mut map = json_object(body)?;
    let problems = |v: Option<Value>| -> Vec<Problem> {
        let items = match v {
            Some(Value::Array(items)) => items,
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        };
        items
            .into_iter()
            .filter_map(|item| match item {
                Value::Object(m) => Some(Problem::from_map(m)),
                Value::String(s) => {
                    let mut p = Problem::default();
                    p.title = Some(s);
                    Some(p)
                }
                _ => None,
            })
            .collect()
    };
    Ok(EdgeResponse {
        request_id: match map.remove("requestId") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        errors: problems(map.remove("errors")),
        warnings: problems(map.remove("warnings")),
    })
}

/// Parse a fatal error body (`application/problem+json`).
///
/// ```
/// let body = br#"{"type":"https://ns.adobe.com/aep/errors/EXEG-0104-422","status":422,"title":"Unprocessable entity"}"#;
/// let p = redial_vendors::adobe::parse_problem(body).unwrap();
/// assert_eq!(redial_vendors::adobe::error_code(p.type_uri()).as_deref(), Some("EXEG-0104-422"));
/// ```
pub fn parse_problem(body: &[u8]) -> Result<Problem, ParseError> {
    json_object(body).map(Problem::from_map)
}

/// The `EXEG-NNNN-SSS` code in a problem type URI, upper-cased (`None` when there is none).
///
/// ```
/// use redial_vendors::adobe::error_code;
/// assert_eq!(error_code("https://ns.adobe.com/aep/errors/EXEG-0503-401").as_deref(), Some("EXEG-0503-401"));
/// assert_eq!(error_code("https://ns.adobe.com/aep/errors/exeg-0201-503?x=1").as_deref(), Some("EXEG-0201-503"));
/// assert_eq!(error_code("about:blank"), None);
/// ```
pub fn error_code(type_uri: &str) -> Option<String> {
    let b = type_uri.as_bytes();
    (0..b.len()).find_map(|i| {
        let w = b.get(i..i + 13)?;
        let shape = w[..5].eq_ignore_ascii_case(b"EXEG-")
            && w[5..9].iter().all(u8::is_ascii_digit)
            && w[9] == b'-'
            && w[10..].iter().all(u8::is_ascii_digit);
        shape.then(|| String::from_utf8_lossy(w).to_ascii_uppercase())
    })
}

fn to_vendor_error(p: &Problem, scope: ErrorScope, request_id: Option<&str>) -> VendorError {
    let mut e = p.to_vendor_error().with_scope(scope);
    if let Some(code) = p.type_.as_deref().and_then(error_code) {
        e.code = code;
    }
    if let Some(status) = p.status {
        e = e.with_attribute("status", status.to_string());
    }
    let report = p.extensions.get("report").and_then(Value::as_object);
    let field = |name: &str| match report.and_then(|r| r.get(name)) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    if let Some(id) = field("requestId").or_else(|| request_id.map(str::to_owned)) {
        e = e.with_attribute("requestId", id);
    }
    if let Some(org) = field("orgId") {
        e = e.with_attribute("orgId", org);
    }
    if let Some(report) = report {
        for item in report.get("errors").and_then(Value::as_array).into_iter().flatten() {
            let text = match item {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            e = e.with_attribute("report.errors", text);
        }
        if report.keys().any(|k| !matches!(k.as_str(), "errors" | "requestId" | "orgId")) {
            e = e.with_attribute("report", Value::Object(report.clone()).to_string());
        }
    }
    e
}

// ---------------------------------------------------------------------------------------------
// The profile.

/// Whether a body is worth parsing: 2xx JSON (or unlabelled) bodies for their warnings, except
/// the empty statuses; every 4xx/5xx body.
fn wants_body(headers: &HeaderMap, status: StatusCode) -> bool {
    if status.is_client_error() || status.is_server_error() {
        return true;
    }
    status.is_success() && !matches!(status.as_u16(), 204 | 205) && json_or_unlabelled(headers)
}

fn json_or_unlabelled(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_none_or(|v| v.to_str().is_ok_and(is_json_media_type))
}

impl Profile for AdobeEdge {
    fn name(&self) -> &str {
        "adobe-edge"
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
        let bytes = match body {
            Body::Complete(bytes) if wants_body(head.headers, head.status) => bytes,
            Body::Prefix(_) => return status_rules(head, None).with_body(BodyUse::TooLarge),
            // Not read, not wanted, or read in a way this profile does not know yet.
            _ => return status_rules(head, None),
        };
        let parsed = if !json_or_unlabelled(head.headers) {
            Err(ParseError("not JSON by its Content-Type"))
        } else if head.status.is_success() {
            parse(bytes).map(|r| classify_success(head, &r))
        } else {
            parse_problem(bytes).map(|p| classify_problem(head, p))
        };
        match parsed {
            Ok(c) => c.with_body(BodyUse::Parsed),
            Err(why) => {
                let mut c = status_rules(head, None).with_body(BodyUse::Fallback);
                c.reason = format!("{} (body not used: {why})", c.reason).into();
                c
            }
        }
    }
}

fn classify_success(head: &ResponseHead<'_>, body: &EdgeResponse) -> Classification {
    let errors = body.vendor_errors();
    let c = if head.status == StatusCode::MULTI_STATUS || !errors.is_empty() {
        let reason = format!(
            "adobe: HTTP {}: {} non-fatal errors, {} warnings; the request succeeded",
            head.status.as_u16(),
            body.errors.len(),
            body.warnings.len()
        );
        Classification::new(Kind::Partial, Advice::Return, reason)
    } else {
        Classification::success("adobe: success")
    };
    c.with_errors(errors)
}

fn classify_problem(head: &ResponseHead<'_>, problem: Problem) -> Classification {
    let code = problem.type_.as_deref().and_then(error_code);
    let error = to_vendor_error(&problem, ErrorScope::Response, None);
    status_rules(head, code.as_deref()).with_errors([error]).with_problem(Some(problem))
}

// ---------------------------------------------------------------------------------------------
// The login: Adobe IMS, OAuth server-to-server.

/// Adobe IMS's token endpoint for OAuth server-to-server credentials (North America; use
/// [`ImsLogin::token_url`] for another region or a test server).
pub const IMS_TOKEN_URL: &str = "https://ims-na1.adobelogin.com/ims/token/v3";

/// Adobe IMS OAuth server-to-server login: client credentials of a Developer Console project.
///
/// It sends `POST https://ims-na1.adobelogin.com/ims/token/v3` with the form body
/// `grant_type=client_credentials&client_id=…&client_secret=…&scope=a,b,c` (the scopes
/// comma-separated, as IMS expects), and reads `{"access_token","token_type":"bearer",
/// "expires_in":86399}` (AEP tokens last 24 h). The token goes on requests as
/// `Authorization: Bearer`.
///
/// Edge and the other Experience Platform APIs also require the static headers
/// `x-api-key: <client id>` and `x-gw-ims-org-id: <org id>@AdobeOrg` (and `x-sandbox-name`
/// for some APIs): the caller sets them on its requests; this login only supplies the token.
///
/// | answer | kind |
/// |---|---|
/// | `{"error":"invalid_client","error_description":…}`, `invalid_scope`, `unauthorized_client` and the other RFC 6749 §5.2 codes | fatal |
/// | HTTP 401, 403 | fatal |
/// | HTTP 5xx, 429, 408, a body that is not JSON (a gateway page, empty, truncated) | transient |
///
/// The full status rules are those of [`oauth2`](crate::oauth2). `Debug` never shows the
/// client secret; neither does any [`LoginError`](redial_core::auth::LoginError).
///
/// ```
/// use std::time::SystemTime;
/// use http::{HeaderMap, StatusCode};
/// use redial_core::auth::Login;
/// use redial_core::ResponseHead;
/// use redial_vendors::adobe::ImsLogin;
///
/// let login = ImsLogin::new("my-client-id", "p8e-my-client-secret", ["openid", "AdobeID", "read_organizations"]);
/// let req = login.request();
/// assert_eq!(req.uri(), "https://ims-na1.adobelogin.com/ims/token/v3");
/// assert_eq!(
///     &req.body()[..],
///     &b"grant_type=client_credentials&client_id=my-client-id&client_secret=p8e-my-client-secret&scope=openid%2CAdobeID%2Cread_organizations"[..]
/// );
///
/// let body = br#"{"access_token":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln","token_type":"bearer","expires_in":86399}"#;
/// let credential = login.parse(&ResponseHead::new(StatusCode::OK, &HeaderMap::new(), SystemTime::now()), body)?;
/// assert_eq!(credential.lifetime, Some(std::time::Duration::from_secs(86399)));
///
/// let test = login.clone().token_url("http://127.0.0.1:8080/ims/token/v3")?;
/// assert_eq!(test.request().uri(), "http://127.0.0.1:8080/ims/token/v3");
/// assert!(!format!("{test:?}").contains("p8e-my-client-secret"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ImsLogin {
    inner: crate::oauth2::ClientCredentials,
}

impl ImsLogin {
    /// A login with the project's client id, client secret and scopes (sent comma-separated;
    /// no scope parameter when there are none).
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<redial_core::auth::Secret>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let scopes: Vec<String> =
            scopes.into_iter().map(Into::into).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        let inner =
            crate::oauth2::ClientCredentials::with_url(http::Uri::from_static(IMS_TOKEN_URL), client_id, client_secret)
                .auth_style(crate::oauth2::AuthStyle::Post)
                .scope(scopes.join(","))
                .vendor("adobe ims", None);
        ImsLogin { inner }
    }

    /// Use another token URL (another IMS region, or a test server).
    pub fn token_url(mut self, url: &str) -> Result<Self, crate::oauth2::InvalidLoginUrl> {
        self.inner.set_token_url(crate::oauth2::absolute_url(url)?);
        Ok(self)
    }

    /// The client id (also the `x-api-key` the APIs expect).
    pub fn client_id(&self) -> &str {
        self.inner.client_id()
    }

    /// The scopes, comma-separated as sent.
    pub fn scope(&self) -> Option<&str> {
        self.inner.scope_value()
    }
}

impl fmt::Debug for ImsLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImsLogin")
            .field("token_url", &redial_core::auth::redact_urls(&self.inner.token_url().to_string()))
            .field("client_id", &self.inner.client_id())
            .field("client_secret", &"***")
            .field("scope", &self.inner.scope_value())
            .finish()
    }
}

impl redial_core::auth::Login for ImsLogin {
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
