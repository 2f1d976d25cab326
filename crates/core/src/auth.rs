//! Credentials, sans-io: what a login sends, how its answer is read, and how a token is put on
//! a request. The async single-flight token cell that drives these lives in `redial-tower`.
//!
//! Secrets are [`Secret`]s: their `Debug` and `Display` never show the value.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{HeaderMap, Request, StatusCode, Uri};

use crate::ResponseHead;

/// A secret string (a password, a client secret, an access token). Its `Debug` and `Display`
/// print `***`; [`expose`](Secret::expose) is the one way to read it.
///
/// ```
/// use redial_core::auth::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into_boxed_str())
    }

    /// The secret itself: only for putting it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `text` with every URL in it shown without its userinfo and its query (`https://h/p?…`):
/// for a message that quotes a URL (a transport error names the URL it failed on), whose
/// query may carry a credential (`client_secret=…`, `access_token=…`).
///
/// ```
/// use redial_core::auth::redact_urls;
/// let text = "error sending request for url (https://id:pw@x.mktorest.com/identity/oauth/token?client_secret=S)";
/// assert_eq!(redact_urls(text), "error sending request for url (https://x.mktorest.com/identity/oauth/token?…)");
/// assert_eq!(redact_urls("no URL here"), "no URL here");
/// // Commas, parentheses and brackets stand raw in queries and userinfo.
/// let marketo = "(https://u:p,w@x.mktorest.com/rest/v1/leads.json?filterValues=1,2&access_token=S).";
/// assert_eq!(redact_urls(marketo), "(https://x.mktorest.com/rest/v1/leads.json?…).");
/// ```
pub fn redact_urls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    // A URL ends where no serializer leaves a character raw; `(`, `)`, `,`, `'`, `[` and `]`
    // may all stand unescaped in a query or in userinfo. Punctuation that closes the sentence
    // around it (`(https://h/p?q)`, `… https://h/p.`) is peeled off and put back.
    let ends = |c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let len = after.find(ends).unwrap_or(after.len());
        let (token, tail) = after.split_at(len);
        let url = token.trim_end_matches([')', ']', ',', '.', ';', '\'']);
        let closing = &token[url.len()..];
        // userinfo: up to an `@` before the path.
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let url = match url[..authority_end].rfind('@') {
            Some(at) => &url[at + 1..],
            None => url,
        };
        match url.find(['?', '#']) {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?…");
            }
            None => out.push_str(url),
        }
        out.push_str(closing);
        rest = tail;
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

/// A credential obtained by a login.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The token.
    pub token: Secret,
    /// How long it stays valid, as the vendor's answer says (`expires_in`); redial-tower's
    /// token cell counts it from when the login was sent, since the vendor's clock ran while it
    /// answered. `None` when the vendor does not say (it is then used until the vendor says it
    /// expired).
    pub lifetime: Option<Duration>,
    /// Where later requests must go (Responsys's `endPoint`): scheme and authority replace the
    /// request's own.
    pub endpoint: Option<Uri>,
}

impl Credential {
    /// A token with a lifetime.
    pub fn new(token: impl Into<Secret>, lifetime: Option<Duration>) -> Self {
        Credential { token: token.into(), lifetime, endpoint: None }
    }

    /// Set the endpoint later requests go to.
    pub fn with_endpoint(mut self, endpoint: Uri) -> Self {
        self.endpoint = Some(endpoint);
        self
    }
}

/// How a token is put on a request.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: <token>` (Responsys).
    Raw,
    /// `<name>: <token>`.
    Header(HeaderName),
}

impl Attach {
    /// Put `token` on `headers`, replacing any value there. A token that is not a valid header
    /// value is not attached (and `false` returned).
    pub fn apply(&self, headers: &mut HeaderMap, token: &Secret) -> bool {
        let (name, value) = match self {
            Attach::Bearer => (AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", token.expose()))),
            Attach::Raw => (AUTHORIZATION, HeaderValue::from_str(token.expose())),
            Attach::Header(name) => (name.clone(), HeaderValue::from_str(token.expose())),
        };
        match value {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.insert(name, value);
                true
            }
            Err(_) => false,
        }
    }

    /// The header this attachment writes.
    pub fn header_name(&self) -> HeaderName {
        match self {
            Attach::Bearer | Attach::Raw => AUTHORIZATION,
            Attach::Header(name) => name.clone(),
        }
    }
}

/// Whether a failed login may succeed if tried again later.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailureKind {
    /// Bad credentials, a locked or suspended account: trying again cannot help and may make
    /// things worse (Responsys disables the API login after repeated attempts).
    Fatal,
    /// A server error, a timeout, a throttled login: try again after a backoff.
    Transient,
}

/// A login that did not yield a credential, with what the login endpoint answered.
///
/// Two login errors are equal when everything but their [`source`](std::error::Error::source)
/// is (errors have no equality of their own).
#[derive(Clone)]
pub struct LoginError {
    kind: LoginFailureKind,
    status: Option<StatusCode>,
    code: Option<String>,
    message: String,
    body: Bytes,
    retry_after: Option<Duration>,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl PartialEq for LoginError {
    fn eq(&self, other: &Self) -> bool {
        (self.kind, self.status, &self.code, &self.message, &self.body, self.retry_after)
            == (other.kind, other.status, &other.code, &other.message, &other.body, other.retry_after)
    }
}

impl Eq for LoginError {}

impl LoginError {
    /// A failure of the given kind, with a message saying why.
    pub fn new(kind: LoginFailureKind, message: impl Into<String>) -> Self {
        LoginError {
            kind,
            status: None,
            code: None,
            message: message.into(),
            body: Bytes::new(),
            retry_after: None,
            source: None,
        }
    }

    /// Keep the error the login failed on as this one's
    /// [`source`](std::error::Error::source): the token cell keeps the inner service's error
    /// when it could not get ready to send the login. Say what matters in the message too:
    /// the source is not shown by `Display`, and `Debug` shows only its text, URLs redacted
    /// ([`redact_urls`]); keep credentials out of it.
    ///
    /// ```
    /// use std::error::Error;
    /// use redial_core::auth::{LoginError, LoginFailureKind};
    /// let closed = std::io::Error::other("connection pool closed");
    /// let e = LoginError::new(LoginFailureKind::Transient, "the login was not sent").with_source(closed);
    /// let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).unwrap();
    /// assert_eq!(io.to_string(), "connection pool closed");
    /// ```
    pub fn with_source(mut self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(std::sync::Arc::from(source.into()));
        self
    }

    /// The wait the vendor named before the next login (a throttled login: Responsys's
    /// `API_LIMIT_EXCEEDED`, "try again in the next minute"): the token source waits at least
    /// this long, whatever its backoff, up to an hour (a longer wait is held to the hour, so
    /// that no answer stops the logins for good).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The wait the vendor named before the next login, if it named one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Attach the login response's status and body (the body of a *failed* login carries no
    /// token; it is kept so the caller can see what the vendor said).
    pub fn with_response(mut self, status: StatusCode, body: Bytes) -> Self {
        self.status = Some(status);
        self.body = body;
        self
    }

    /// The same failure made fatal, saying why in `message` (its status, code, body, wait and
    /// source are kept): for a vendor rule that allows no more tries, as in
    /// [`Login::failed_again`].
    ///
    /// ```
    /// use redial_core::auth::{LoginError, LoginFailureKind};
    /// let busy = LoginError::new(LoginFailureKind::Transient, "busy").with_code("BUSY");
    /// let e = busy.into_fatal("BUSY twice in a row: the vendor allows one retry");
    /// assert!(e.is_fatal());
    /// assert_eq!((e.code(), e.message()), (Some("BUSY"), "BUSY twice in a row: the vendor allows one retry"));
    /// ```
    pub fn into_fatal(mut self, message: impl Into<String>) -> Self {
        self.kind = LoginFailureKind::Fatal;
        self.message = message.into();
        self
    }

    /// Attach the vendor's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Fatal or transient.
    pub fn kind(&self) -> LoginFailureKind {
        self.kind
    }
    /// Whether trying again cannot help.
    pub fn is_fatal(&self) -> bool {
        self.kind == LoginFailureKind::Fatal
    }
    /// The login response's status, if there was a response.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }
    /// The vendor's error code (`ACCOUNT_SUSPENDED`, `invalid_client`), if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
    /// Why the login failed.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The login response's body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

impl fmt::Debug for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginError")
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("body_len", &self.body.len())
            .field("retry_after", &self.retry_after)
            .field("source", &self.source.as_ref().map(|e| redact_urls(&e.to_string()).into_owned()))
            .finish()
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            LoginFailureKind::Fatal => "login refused",
            LoginFailureKind::Transient => "login failed",
        };
        write!(f, "{kind}: {}", self.message)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if let Some(status) = self.status {
            write!(f, " [HTTP {}]", status.as_u16())?;
        }
        Ok(())
    }
}

impl std::error::Error for LoginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// A login described as data: the request that obtains a credential, and how its answer is
/// read. The engine sends the request through the same client as everything else, once for
/// all the requests waiting on it.
///
/// The request carries secrets: implementations build it on demand and never log it.
///
/// A panic in any of these methods but [`attach`](Login::attach) (a bug) fails the login it
/// was called for, as a transient failure: redial-tower's token cell wakes every request
/// waiting on that login at once, and the next login, after the token source's backoff, serves
/// those whose deadlines allow. `attach` is read once, when the token source is made, and a
/// panic there reaches its maker.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http::{Request, StatusCode};
/// use redial_core::auth::{Attach, Credential, Login, LoginError, LoginFailureKind, Secret};
/// use redial_core::ResponseHead;
///
/// #[derive(Debug)]
/// struct ApiKeyExchange { key: Secret }
///
/// impl Login for ApiKeyExchange {
///     fn request(&self) -> Request<Bytes> {
///         Request::post("https://auth.example.com/token")
///             .header("x-api-key", self.key.expose())
///             .body(Bytes::new())
///             .unwrap()
///     }
///     fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
///         match res.status.as_u16() {
///             200 => Ok(Credential::new(String::from_utf8_lossy(body).into_owned(), Some(Duration::from_secs(3600)))),
///             401 | 403 => Err(LoginError::new(LoginFailureKind::Fatal, "bad API key")),
///             _ => Err(LoginError::new(LoginFailureKind::Transient, "token endpoint unavailable")),
///         }
///     }
///     fn attach(&self) -> Attach { Attach::Bearer }
/// }
/// ```
pub trait Login: Send + Sync + fmt::Debug + 'static {
    /// The login request.
    fn request(&self) -> Request<Bytes>;

    /// Read the login's answer: its head (`res.received_at` is when it came, against which a
    /// `Retry-After` date is measured: the caller's clock, not one read here) and its body.
    /// Must not panic on any input.
    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError>;

    /// How the credential is put on requests (default `Authorization: Bearer`).
    fn attach(&self) -> Attach {
        Attach::Bearer
    }

    /// The least wait before another login after one that got no answer (a connection that
    /// broke, a reset, the login timeout), when the vendor names one (default `None`: the token
    /// source's backoff). Responsys: "retry up to three times, with two minute intervals, to
    /// prevent the API login being disabled".
    fn no_response_wait(&self) -> Option<Duration> {
        None
    }

    /// How many times a login that got no answer is tried again, when the vendor limits it
    /// (default `None`: no limit but the backoff). Once that many retries in a row got no
    /// answer either, the next unanswered login counts as fatal: its waiters fail, and no
    /// login is tried for the token source's longest backoff (and never sooner than
    /// [`no_response_wait`](Self::no_response_wait)). Any answer resets the count. A login
    /// that was never sent (the inner service failed to get ready for it, its connect failed,
    /// a layer below refused it: what the layer's failure classifier reads as
    /// [`Failure::Connect`](crate::Failure::Connect) or [`Failure::Local`](crate::Failure::Local))
    /// is neither: it is a failed login, under the token source's backoff, and the count stands.
    /// Responsys: 3 ("retry up to three times … to prevent the API login being disabled").
    fn no_response_retries(&self) -> Option<u32> {
        None
    }

    /// The failure the waiters get when a login is answered with `failure` and the last login
    /// before it that got an answer was answered with `previous`, a failure too: `failure`
    /// itself (the default), or, when the vendor allows no more tries after such a row, a
    /// fatal one ([`LoginError::into_fatal`]), so that no login is tried for the token
    /// source's longest backoff. Logins in between that got no answer or were never sent
    /// neither count nor end the row; a success ends it, and so does time: a login that starts
    /// later than the token source's longest backoff after `previous`'s backoff window opened
    /// is a new row's first (a new request's login, not a resubmission). Called in the login's
    /// task, for logins sent through the inner service.
    ///
    /// Responsys: a second `UNRECOVERABLE_EXCEPTION` in a row ("wait about 30 seconds and
    /// then resubmit the request only once").
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use bytes::Bytes;
    /// use http::{HeaderMap, Request, StatusCode};
    /// use redial_core::auth::{Credential, Login, LoginError, LoginFailureKind};
    /// use redial_core::ResponseHead;
    ///
    /// /// A vendor whose `BUSY` login answer may be retried once.
    /// #[derive(Debug)]
    /// struct OneRetryWhenBusy;
    ///
    /// impl Login for OneRetryWhenBusy {
    ///     fn request(&self) -> Request<Bytes> {
    ///         Request::post("https://auth.example.com/token").body(Bytes::new()).unwrap()
    ///     }
    ///     fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
    ///         match res.status.as_u16() {
    ///             200 => Ok(Credential::new(String::from_utf8_lossy(body).into_owned(), None)),
    ///             _ => Err(LoginError::new(LoginFailureKind::Transient, "busy").with_code("BUSY")),
    ///         }
    ///     }
    ///     fn failed_again(&self, previous: &LoginError, failure: LoginError) -> LoginError {
    ///         if previous.code() == Some("BUSY") && failure.code() == Some("BUSY") {
    ///             failure.into_fatal("BUSY twice in a row: the vendor allows one retry")
    ///         } else {
    ///             failure
    ///         }
    ///     }
    /// }
    ///
    /// let login = OneRetryWhenBusy;
    /// let headers = HeaderMap::new();
    /// let busy = || {
    ///     let res = ResponseHead::new(StatusCode::SERVICE_UNAVAILABLE, &headers, SystemTime::now());
    ///     login.parse(&res, b"").unwrap_err()
    /// };
    /// assert!(!busy().is_fatal());
    /// assert!(login.failed_again(&busy(), busy()).is_fatal());
    /// let other = LoginError::new(LoginFailureKind::Transient, "timeout");
    /// assert!(!login.failed_again(&other, busy()).is_fatal());
    /// ```
    fn failed_again(&self, previous: &LoginError, failure: LoginError) -> LoginError {
        let _ = previous;
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_writes_sensitive_headers() {
        let token = Secret::new("abc");
        let mut h = HeaderMap::new();
        assert!(Attach::Bearer.apply(&mut h, &token));
        assert_eq!(h[AUTHORIZATION], "Bearer abc");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(Attach::Raw.apply(&mut h, &token));
        assert_eq!(h[AUTHORIZATION], "abc");
        let name = HeaderName::from_static("x-token");
        assert!(Attach::Header(name.clone()).apply(&mut h, &token));
        assert_eq!(h[&name], "abc");
        assert!(!Attach::Bearer.apply(&mut h, &Secret::new("bad\nvalue")));
    }

    #[test]
    fn nothing_secret_in_debug() {
        let c = Credential::new("tok-SECRET", None);
        assert!(!format!("{c:?}").contains("SECRET"));
        let e = LoginError::new(LoginFailureKind::Fatal, "bad client")
            .with_response(StatusCode::UNAUTHORIZED, Bytes::from_static(b"{}"));
        assert_eq!(e.to_string(), "login refused: bad client [HTTP 401]");
    }
}
