//! Generic OAuth 2.0 client credentials (RFC 6749 §4.4), and the pieces the built-in vendor
//! logins share: form encoding, the token endpoint's answer read tolerantly, and the failure
//! table.
//!
//! [`ClientCredentials`] `POST`s `grant_type=client_credentials` (and `scope`, when set) to a
//! token URL, authenticating the client with HTTP Basic (`client_secret_basic`, the RFC's
//! default, §2.3.1) or in the form body (`client_secret_post`). Secrets are never put in the
//! URL, and never shown by `Debug` or by a [`LoginError`].
//!
//! It reads `{"access_token","token_type","expires_in"}` (`expires_in` a number or a numeric
//! string; absent → no lifetime) and the RFC 6749 §5.2 errors
//! `{"error":"invalid_client","error_description":…}`. The body is read as JSON whatever its
//! `Content-Type` says; an error code, when there is one, decides before the status.
//!
//! | answer | kind |
//! |---|---|
//! | 2xx with a usable `access_token` | success |
//! | 2xx whose `token_type` is not `bearer`, for a token sent as `Authorization: Bearer` (the default) | fatal |
//! | `error`: `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, `access_denied` | fatal |
//! | `error`: `server_error`, `temporarily_unavailable`, `slow_down` | transient |
//! | `error`: any other code | by the status, as below |
//! | HTTP 5xx, 429, 408 | transient |
//! | HTTP 401, 403 | fatal (bad client id or secret) |
//! | HTTP 404, 405, 410 **\[I\]** | fatal (no token endpoint at this URL) |
//! | HTTP 3xx **\[I\]** | fatal (configure the URL the endpoint redirects to) |
//! | other 4xx with a JSON body | fatal |
//! | other 4xx, or a 2xx, whose body is not JSON (a gateway page, empty, truncated) | transient |
//! | 2xx without a usable `access_token` | transient |
//!
//! The body of a failed login is kept on the [`LoginError`] except when the status is 2xx (a
//! 2xx body may hold a token even when it is not usable).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use redial_core::auth::{Attach, Credential, Login, LoginError, LoginFailureKind, Secret};
use redial_core::ResponseHead;
use serde_json::{Map, Value};

use LoginFailureKind::{Fatal, Transient};

/// The media type of a login's form body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Encode one name or value for an `application/x-www-form-urlencoded` body: the RFC 3986
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) are kept, a space becomes `+`, every other
/// byte of the UTF-8 text becomes `%XX` (upper-case hex).
///
/// ```
/// use redial_vendors::oauth2::form_urlencode;
/// assert_eq!(form_urlencode("a b&c=d/é~"), "a+b%26c%3Dd%2F%C3%A9~");
/// assert_eq!(form_urlencode("p@ss:w+rd"), "p%40ss%3Aw%2Brd");
/// ```
pub fn form_urlencode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out
}

/// A form body of `name=value` pairs, each encoded with [`form_urlencode`].
pub(crate) fn form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&form_urlencode(name));
        out.push('=');
        out.push_str(&form_urlencode(value));
    }
    out
}

/// Standard base64 (RFC 4648 §4), with padding.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A login request: `POST url`, a form body, and the usual headers.
pub(crate) fn form_request(url: &Uri, body: String) -> Request<Bytes> {
    let mut req = Request::new(Bytes::from(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = url.clone();
    let headers = req.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    req
}

// ---------------------------------------------------------------------------------------------
// URLs.

/// A login URL that cannot be used; the message says why (it never repeats the URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLoginUrl(&'static str);

impl fmt::Display for InvalidLoginUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid login URL: {}", self.0)
    }
}

impl std::error::Error for InvalidLoginUrl {}

/// An absolute `http` or `https` URI, without credentials or a fragment.
pub(crate) fn absolute_url(url: &str) -> Result<Uri, InvalidLoginUrl> {
    let url = url.trim();
    if url.contains('#') {
        return Err(InvalidLoginUrl("a login URL has no fragment"));
    }
    let uri = Uri::try_from(url).map_err(|_| InvalidLoginUrl("not a URI"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Err(InvalidLoginUrl("not an absolute http(s) URL"));
    }
    match uri.authority() {
        None => Err(InvalidLoginUrl("no host")),
        Some(a) if a.as_str().contains('@') => {
            Err(InvalidLoginUrl("credentials in the URL are not accepted: pass them to the login"))
        }
        Some(a) if a.host().is_empty() => Err(InvalidLoginUrl("no host")),
        Some(_) => Ok(uri),
    }
}

/// `base` with `suffix` appended to its path, unless the path already ends with it; the query,
/// if any, is kept.
pub(crate) fn join_path(base: &str, suffix: &str) -> Result<Uri, InvalidLoginUrl> {
    let uri = absolute_url(base)?;
    let path = uri.path().trim_end_matches('/');
    let path = if path.ends_with(suffix) { path.to_owned() } else { format!("{path}{suffix}") };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| InvalidLoginUrl("not a URI path"))?);
    Uri::from_parts(parts).map_err(|_| InvalidLoginUrl("not a URI"))
}

// ---------------------------------------------------------------------------------------------
// Reading an answer.

/// The body as a JSON object, or why it is not one.
pub(crate) fn read_json(body: &[u8]) -> Result<Map<String, Value>, &'static str> {
    let body = redial_core::without_bom(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("empty body");
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object"),
        Err(e) if e.is_eof() => Err("truncated JSON"),
        Err(_) => Err("not JSON"),
    }
}

/// A non-empty string member, trimmed.
pub(crate) fn text<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    match map.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim()),
        _ => None,
    }
}

/// Lifetimes beyond this are read as this (ten years).
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A number of seconds: a JSON number, or a string holding one. Negative means 0; values
/// that are not numbers mean `None`.
pub(crate) fn seconds(v: &Value) -> Option<Duration> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if n.is_nan() {
        return None;
    }
    Some(Duration::try_from_secs_f64(n.max(0.0)).map_or(MAX_LIFETIME, |d| d.min(MAX_LIFETIME)))
}

/// A token that can be sent in a header as it is.
pub(crate) fn usable_token(token: &str) -> bool {
    HeaderValue::from_str(token).is_ok()
}

/// What a vendor's own error envelope says about a login.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: String,
    pub(crate) kind: LoginFailureKind,
    pub(crate) what: &'static str,
    pub(crate) detail: Option<String>,
    /// The least wait before the next login that the vendor's rule for this code names (a
    /// throttled login waits for its limit's window), whatever the token source's backoff.
    pub(crate) retry_after: Option<Duration>,
}

/// A vendor's reading of its own error envelope, for the answers that have no `error`.
pub(crate) type Envelope = fn(&Map<String, Value>) -> Option<Refusal>;

/// The longest vendor text put in a message.
const MAX_DETAIL: usize = 200;

/// A login answer being read: who answered, with what, and the secrets no message may show.
pub(crate) struct Answer<'a> {
    pub(crate) who: &'static str,
    pub(crate) status: StatusCode,
    pub(crate) body: &'a [u8],
    pub(crate) secrets: &'a [&'a str],
}

/// `text` with `%XX` escapes and `+` decoded (lossily: it is only searched).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Answer<'_> {
    /// Vendor text made safe for a message: control characters dropped, every secret (as is
    /// and form-encoded) replaced by `***`, and shortened.
    pub(crate) fn clean(&self, text: &str) -> String {
        let mut out: String = text.chars().filter(|c| !c.is_control()).collect();
        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            // As sent, and as the form body carried it.
            out = out.replace(secret, "***").replace(&form_urlencode(secret), "***");
            // Echoed in another encoding (`%20` for a space, lower-case hex): withheld whole.
            if percent_decode(&out).contains(secret) {
                return "(withheld: the vendor's text echoes a credential)".to_owned();
            }
        }
        if let Some((i, _)) = out.char_indices().nth(MAX_DETAIL) {
            out.truncate(i);
            out.push('…');
        }
        out.trim().to_owned()
    }

    /// A failure, with the status and (unless 2xx, or unless it echoes a credential) the body.
    pub(crate) fn fail(&self, kind: LoginFailureKind, what: &str) -> LoginError {
        let keep = !self.status.is_success() && !self.echoes_a_secret();
        let body = if keep { Bytes::copy_from_slice(self.body) } else { Bytes::new() };
        LoginError::new(kind, format!("{}: {what}", self.who)).with_response(self.status, body)
    }

    /// Whether the body holds one of the secrets, in any of the encodings `clean` looks for.
    fn echoes_a_secret(&self) -> bool {
        let text = String::from_utf8_lossy(self.body);
        let decoded = percent_decode(&text);
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .any(|secret| text.contains(secret) || text.contains(&form_urlencode(secret)) || decoded.contains(secret))
    }

    /// A failure the vendor named with a code.
    pub(crate) fn refused(&self, kind: LoginFailureKind, code: &str, what: &str, detail: Option<&str>) -> LoginError {
        let detail = detail.map(|d| self.clean(d)).filter(|d| !d.is_empty());
        let what = match detail {
            Some(d) => format!("{what}: {d}"),
            None => what.to_owned(),
        };
        self.fail(kind, &what).with_code(self.clean(code))
    }

    /// The status rules, for an answer without a recognisable error body; `not_json` says why
    /// the body was not JSON, if it was not.
    pub(crate) fn by_status(&self, not_json: Option<&str>) -> LoginError {
        let status = self.status;
        let code = status.as_u16();
        let (kind, what) = match code {
            408 | 429 | 500..=599 => (Transient, "the login endpoint is unavailable or throttled".to_owned()),
            401 | 403 => (Fatal, "the credentials were refused (bad client id or secret)".to_owned()),
            404 | 405 | 410 => (Fatal, "no login endpoint at this URL".to_owned()),
            300..=399 => (Fatal, "the login endpoint redirects: configure the URL it redirects to".to_owned()),
            _ => match not_json {
                Some(why) if status.is_success() => (Transient, format!("the answer is not a token ({why})")),
                Some(why) => (Transient, format!("the answer is not JSON ({why})")),
                None if status.is_success() => (Transient, "the answer has no usable token".to_owned()),
                None if status.is_client_error() => (Fatal, "the login request was refused".to_owned()),
                None => (Transient, "unexpected answer".to_owned()),
            },
        };
        self.fail(kind, &what)
    }
}

/// A failed login's error with the wait the answer's `Retry-After` names, unless it is fatal: a
/// login endpoint that throttles (429, 503) may say when to come back; with a wait of the
/// vendor's rule too, the longer one holds.
pub(crate) fn with_server_wait(e: LoginError, res: &ResponseHead<'_>) -> LoginError {
    match redial_core::hint::retry_after(res.headers, res.received_at) {
        Some(wait) if !e.is_fatal() => {
            let wait = e.retry_after().map_or(wait, |rule| rule.max(wait));
            e.with_retry_after(wait)
        }
        _ => e,
    }
}

/// RFC 6749 §5.2 error codes (and those of §4.1.2.1 and RFC 8628 that token endpoints also
/// send), with their kind. Other codes are judged by the status.
#[rustfmt::skip]
static OAUTH_ERRORS: &[(&str, LoginFailureKind, &str)] = &[
    ("invalid_request", Fatal, "the token request is malformed or misses a parameter"),
    ("invalid_client", Fatal, "client authentication failed (bad client id or secret)"),
    ("invalid_grant", Fatal, "the grant is invalid, expired or revoked"),
    ("unauthorized_client", Fatal, "the client may not use the client-credentials grant"),
    ("unsupported_grant_type", Fatal, "the endpoint does not support the client-credentials grant"),
    ("invalid_scope", Fatal, "the scope is invalid or beyond what the client was granted"),
    ("access_denied", Fatal, "access denied"),
    ("server_error", Transient, "the authorization server failed"),
    ("temporarily_unavailable", Transient, "the authorization server is temporarily unavailable"),
    ("slow_down", Transient, "the authorization server asks to slow down"),
];

/// The `error` of an OAuth error body: `{"error":"code","error_description":…}`, or the
/// `{"error":{"code":…,"message":…}}` some gateways send.
fn oauth_error(map: &Map<String, Value>) -> Option<(&str, Option<&str>)> {
    match map.get("error")? {
        Value::String(code) if !code.trim().is_empty() => Some((code.trim(), text(map, "error_description"))),
        Value::Object(inner) => Some((text(inner, "code").or(text(inner, "error"))?, text(inner, "message"))),
        _ => None,
    }
}

/// Read a token endpoint's answer: the OAuth error codes first, then the vendor's own
/// envelope, then the token, then the status rules.
/// `bearer`: the token is sent as `Authorization: Bearer`, so a `token_type` other than
/// `bearer` is refused (RFC 6749 §7.1: a client must not use a token type it does not
/// understand).
pub(crate) fn read_token(
    answer: &Answer<'_>,
    envelope: Option<Envelope>,
    bearer: bool,
) -> Result<Credential, LoginError> {
    let map = match read_json(answer.body) {
        Ok(map) => map,
        Err(why) => return Err(answer.by_status(Some(why))),
    };
    if let Some((code, description)) = oauth_error(&map) {
        let known = OAUTH_ERRORS.iter().find(|(c, _, _)| c.eq_ignore_ascii_case(code));
        return Err(match known {
            Some(&(_, kind, what)) => answer.refused(kind, code, what, description),
            None => {
                let by_status = answer.by_status(None);
                answer.refused(by_status.kind(), code, "the login was refused", description)
            }
        });
    }
    if let Some(r) = envelope.and_then(|read| read(&map)) {
        let refused = answer.refused(r.kind, &r.code, r.what, r.detail.as_deref());
        return Err(match r.retry_after {
            Some(wait) => refused.with_retry_after(wait),
            None => refused,
        });
    }
    if !answer.status.is_success() {
        return Err(answer.by_status(None));
    }
    let token = match text(&map, "access_token") {
        Some(t) if usable_token(t) => t,
        Some(_) => return Err(answer.fail(Transient, "the access token cannot be sent in a header")),
        None => return Err(answer.fail(Transient, "the answer has no access_token")),
    };
    if bearer && text(&map, "token_type").is_some_and(|t| !t.trim().eq_ignore_ascii_case("bearer")) {
        return Err(answer.fail(Fatal, "the token is not a bearer token (token_type), and is sent as one"));
    }
    let lifetime = map.get("expires_in").and_then(seconds);
    Ok(Credential::new(token, lifetime))
}

// ---------------------------------------------------------------------------------------------
// The login.

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthStyle {
    /// `client_secret_basic`: `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
    /// The RFC's default, which every server must support.
    #[default]
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

/// Form parameters a caller cannot add with [`ClientCredentials::param`]: the login sets them.
const RESERVED: [&str; 4] = ["grant_type", "scope", "client_id", "client_secret"];

/// OAuth 2.0 client credentials (RFC 6749 §4.4) against any token endpoint.
///
/// `Debug` shows the token URL, the client id, the auth style and the names of the extra
/// parameters, never the secret or the parameters' values.
///
/// ```
/// use std::time::SystemTime;
/// use http::{header, HeaderMap, Method, StatusCode};
/// use redial_core::auth::Login;
/// use redial_core::ResponseHead;
/// use redial_vendors::oauth2::{AuthStyle, ClientCredentials};
///
/// let login = ClientCredentials::new("https://auth.example.com/oauth2/token", "s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw")?
///     .scope("read write")
///     .param("audience", "https://api.example.com");
/// let req = login.request();
/// assert_eq!(req.method(), Method::POST);
/// assert_eq!(req.uri(), "https://auth.example.com/oauth2/token");
/// assert_eq!(req.headers()[header::AUTHORIZATION], "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3");
/// assert_eq!(&req.body()[..], b"grant_type=client_credentials&scope=read+write&audience=https%3A%2F%2Fapi.example.com");
/// assert!(!format!("{login:?}").contains("7Fjfp0ZBr1KtDRbnfVdmIw"));
///
/// let body = br#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"Bearer","expires_in":3600}"#;
/// let credential = login.parse(&ResponseHead::new(StatusCode::OK, &HeaderMap::new(), SystemTime::now()), body)?;
/// assert_eq!(credential.token.expose(), "2YotnFZFEjr1zCsicMWpAA");
/// assert_eq!(credential.lifetime, Some(std::time::Duration::from_secs(3600)));
///
/// let refused = login
///     .clone()
///     .auth_style(AuthStyle::Post)
///     .parse(&ResponseHead::new(StatusCode::BAD_REQUEST, &HeaderMap::new(), SystemTime::now()), br#"{"error":"invalid_client"}"#)
///     .unwrap_err();
/// assert!(refused.is_fatal());
/// assert_eq!(refused.code(), Some("invalid_client"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    token_url: Uri,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    style: AuthStyle,
    params: Vec<(String, String)>,
    attach: Attach,
    /// The name in messages.
    who: &'static str,
    /// The vendor's own error envelope, when it has one.
    envelope: Option<Envelope>,
}

impl ClientCredentials {
    /// A login at `token_url` (an absolute `http(s)` URL, without credentials in it), with
    /// HTTP Basic client authentication, no scope, and `Authorization: Bearer` on requests.
    pub fn new(
        token_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Result<Self, InvalidLoginUrl> {
        Ok(Self::with_url(absolute_url(token_url)?, client_id, client_secret))
    }

    pub(crate) fn with_url(token_url: Uri, client_id: impl Into<String>, client_secret: impl Into<Secret>) -> Self {
        ClientCredentials {
            token_url,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: None,
            style: AuthStyle::Basic,
            params: Vec::new(),
            attach: Attach::Bearer,
            who: "oauth2 login",
            envelope: None,
        }
    }

    /// Name the vendor in messages, and read its own error envelope.
    pub(crate) fn vendor(mut self, who: &'static str, envelope: Option<Envelope>) -> Self {
        self.who = who;
        self.envelope = envelope;
        self
    }

    /// The `scope` parameter, as the server spells it (RFC 6749 §3.3: space-separated). An
    /// empty scope sends none.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.scope = (!scope.trim().is_empty()).then_some(scope);
        self
    }

    /// The `scope` parameter from several scopes, space-separated (RFC 6749 §3.3).
    pub fn scopes<S: Into<String>>(self, scopes: impl IntoIterator<Item = S>) -> Self {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.scope(scopes.join(" "))
    }

    /// How the client authenticates (default [`AuthStyle::Basic`]).
    pub fn auth_style(mut self, style: AuthStyle) -> Self {
        self.style = style;
        self
    }

    /// An extra form parameter (`audience`, `resource`, …), sent after the standard ones.
    /// The names the login sets itself (`grant_type`, `scope`, `client_id`, `client_secret`)
    /// are ignored here.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        if !RESERVED.contains(&name.as_str()) {
            self.params.push((name, value.into()));
        }
        self
    }

    /// How the token is put on requests (default `Authorization: Bearer`). Named apart from
    /// [`Login::attach`], which reads it.
    pub fn with_attach(mut self, attach: Attach) -> Self {
        self.attach = attach;
        self
    }

    /// The token URL.
    pub fn token_url(&self) -> &Uri {
        &self.token_url
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) fn set_token_url(&mut self, url: Uri) {
        self.token_url = url;
    }

    pub(crate) fn scope_value(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<&str> = self.params.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ClientCredentials")
            .field("token_url", &redial_core::auth::redact_urls(&self.token_url.to_string()))
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scope", &self.scope)
            .field("auth_style", &self.style)
            .field("params", &params)
            .field("attach", &self.attach)
            .finish()
    }
}

impl Login for ClientCredentials {
    fn request(&self) -> Request<Bytes> {
        let secret = self.client_secret.expose();
        let mut pairs = vec![("grant_type", "client_credentials")];
        if self.style == AuthStyle::Post {
            pairs.push(("client_id", self.client_id.as_str()));
            pairs.push(("client_secret", secret));
        }
        if let Some(scope) = &self.scope {
            pairs.push(("scope", scope.as_str()));
        }
        pairs.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut req = form_request(&self.token_url, form(pairs));
        if self.style == AuthStyle::Basic {
            let user_pass = format!("{}:{}", form_urlencode(&self.client_id), form_urlencode(secret));
            // base64 is always a valid header value.
            if let Ok(mut value) = HeaderValue::from_str(&format!("Basic {}", base64(user_pass.as_bytes()))) {
                value.set_sensitive(true);
                req.headers_mut().insert(AUTHORIZATION, value);
            }
        }
        req
    }

    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        let answer = Answer { who: self.who, status: res.status, body, secrets: &[self.client_secret.expose()] };
        read_token(&answer, self.envelope, matches!(self.attach, Attach::Bearer)).map_err(|e| with_server_wait(e, res))
    }

    fn attach(&self) -> Attach {
        self.attach.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        // RFC 4648 §10.
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn urls() {
        let u = join_path("https://123-ABC-456.mktorest.com/identity/", "/oauth/token").unwrap();
        assert_eq!(u, "https://123-ABC-456.mktorest.com/identity/oauth/token");
        let u = join_path("https://h.example/identity/oauth/token", "/oauth/token").unwrap();
        assert_eq!(u, "https://h.example/identity/oauth/token");
        let u = join_path("https://h.example?x=1", "/a").unwrap();
        assert_eq!(u, "https://h.example/a?x=1");
        assert!(absolute_url("ftp://h.example/").is_err());
        assert!(absolute_url("/relative").is_err());
        assert!(absolute_url("https://user:pw@h.example/").is_err());
        assert!(absolute_url("https://h.example/#x").is_err());
        assert!(absolute_url("not a url").is_err());
    }

    #[test]
    fn lifetimes() {
        assert_eq!(seconds(&Value::from(3599)), Some(Duration::from_secs(3599)));
        assert_eq!(seconds(&Value::from(" 86399 ")), Some(Duration::from_secs(86399)));
        assert_eq!(seconds(&Value::from(-5)), Some(Duration::ZERO));
        assert_eq!(seconds(&Value::from(1e300)), Some(MAX_LIFETIME));
        assert_eq!(seconds(&Value::from("soon")), None);
        assert_eq!(seconds(&Value::Null), None);
    }
}
