//! Genesys Engage (formerly SoundBite) Service API, over SOAP 1.1 and 1.2.
//!
//! A failure carries one **or several** errors, each with a `code`, a `message` (localised and
//! unstable: the rules branch on `code` only), an `argumentIndex` (`ARG_*`), an
//! `argumentIndex` and `attributeName` (`ATTRIBUTE_*`), and an optional `context`. They arrive
//! in the `detail` of a SOAP fault (usually with HTTP 500), or in an ordinary response body;
//! either way they are classified by code, whatever the status. Every error of the set is kept.
//!
//! | signal | kind | action |
//! |---|---|---|
//! | `INTERNAL_ERROR`, or no response (timeout, reset, connection failure), or a gateway's 504 without a Genesys error | transient | re-invoke once after 30 s, any method |
//! | the same, on a reconcile operation (default `createSubCampaign`) | transient | reconcile: the user's hook checks `showSubCampaignState` (a connection that failed before sending is simply retried) |
//! | `NO_SESSION` | auth_expired | refresh_auth (re-establish the session), replay once **\[I\]** |
//! | `SYSTEM_LIMIT_EXCEEDED` | throttled | fail, kept distinct so that users can alert (it may be the call-rate limit) |
//! | every other code (`AUTHENTICATION_FAILURE`, `ARG_*`, `ATTRIBUTE_*`, `OBJECT_EXISTS`, …) | fatal | fail |
//!
//! When a set mixes codes, the most final one decides: any fatal code, then
//! `SYSTEM_LIMIT_EXCEEDED`, then `NO_SESSION`, then `INTERNAL_ERROR`. A fault without Genesys
//! errors is decided by its fault code when that is a Genesys code, else by the status. A body
//! that is not well-formed XML, or that declares a `DOCTYPE`, falls back to the
//! [generic status rules](Generic::classify_status).
//!
//! # Security
//!
//! The SOAP parser never expands entities: a body with a `DOCTYPE` is refused outright (no
//! billion-laughs growth, no external entities), only the five predefined entities and
//! character references are decoded, nesting deeper than [`MAX_DEPTH`] is refused, and at most
//! [`MAX_ERRORS`] errors are kept. Time and memory stay linear in the (inspect-limited) body.
//!
//! ```
//! use redial_vendors::genesys::parse_fault;
//! let body = br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
//!   <soap:Fault><faultcode>soap:Server</faultcode><faultstring>Internal error</faultstring>
//!     <detail><error><code>INTERNAL_ERROR</code><message>Internal error</message></error></detail>
//!   </soap:Fault></soap:Body></soap:Envelope>"#;
//! let fault = parse_fault(body).unwrap();
//! assert_eq!(fault.code.as_deref(), Some("soap:Server"));
//! assert_eq!(fault.errors[0].code, "INTERNAL_ERROR");
//! ```

use std::borrow::Cow;
use std::time::Duration;

use http::header::{HeaderName, CONTENT_TYPE};
use quick_xml::events::{BytesRef, Event};
use quick_xml::Reader;
use redial_core::backoff::Backoff;
use redial_core::generic::Generic;
use redial_core::hint::server_hint;
use redial_core::{
    Advice, Body, BodyUse, Classification, Failure, Kind, Outcome, Policy, Profile, RequestHead, ResponseHead,
    RetryRule, VendorError,
};

/// Genesys Engage has no fixed public host: every deployment has its own Service API host.
/// Register yours with this profile and [`policy()`].
pub const HOSTS: &[&str] = &[];

/// The operations whose re-invocation must be reconciled first, by default.
pub const RECONCILE_OPERATIONS: &[&str] = &["createSubCampaign"];

/// The wait before the one re-invocation after `INTERNAL_ERROR` or a timeout ("ideally after a
/// reasonable back off period (for instance, 30 seconds)", the Errors page).
pub const REINVOKE_DELAY: Duration = Duration::from_secs(30);

/// The time one attempt may take **\[I\]**: the Service API documents none.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The total time of a logical request: three attempts of [`ATTEMPT_TIMEOUT`] and one
/// [`REINVOKE_DELAY`], with a margin.
pub const DEADLINE: Duration = Duration::from_secs(4 * 60);

/// The deepest element nesting the parser accepts; a deeper body is refused (status rules).
pub const MAX_DEPTH: usize = 128;

/// The most errors kept from one body; further errors are dropped.
pub const MAX_ERRORS: usize = crate::MAX_ERRORS;

/// The default host policy for Genesys Engage (values from `VENDORS.md`, Genesys Engage).
///
/// ```
/// let p = redial_vendors::genesys::policy();
/// assert_eq!(p.max_attempts(), 3);
/// assert_eq!(p.max_auth_refreshes(), 1);
/// ```
pub fn policy() -> Policy {
    Policy::builder()
        // One re-invocation after INTERNAL_ERROR or a timeout, plus the replay after
        // re-establishing a session (NO_SESSION).
        .max_attempts(3)
        .attempt_timeout(ATTEMPT_TIMEOUT)
        // Three attempts and the 30 s back-off fit.
        .deadline(DEADLINE)
        // NO_SESSION: re-establish the session, replay once [I].
        .max_auth_refreshes(1)
        .build()
        .expect("the Genesys policy is valid")
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/// One Genesys error (or warning) object.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesysError {
    /// `code`: what the rules branch on (`INTERNAL_ERROR`, `ATTRIBUTE_NULL`).
    pub code: String,
    /// `message`: localised, for people only.
    pub message: Option<String>,
    /// `argumentIndex`: the argument in error (`ARG_*`, `ATTRIBUTE_*`).
    pub argument_index: Option<u32>,
    /// `attributeName`: the attribute of that argument in error (`ATTRIBUTE_*`).
    pub attribute_name: Option<String>,
    /// `context`: further context, if any.
    pub context: Option<String>,
}

impl GenesysError {
    /// The error as a [`VendorError`], with `argumentIndex`, `attributeName` and `context`
    /// as attributes.
    pub fn to_vendor_error(&self) -> VendorError {
        let mut e = VendorError::new(self.code.clone(), self.message.clone().unwrap_or_default());
        if let Some(i) = self.argument_index {
            e = e.with_attribute("argumentIndex", i.to_string());
        }
        if let Some(a) = &self.attribute_name {
            e = e.with_attribute("attributeName", a.clone());
        }
        if let Some(c) = &self.context {
            e = e.with_attribute("context", c.clone());
        }
        e
    }
}

/// A SOAP fault, or a response body that carries Genesys errors.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SoapFault {
    /// SOAP 1.1 `faultcode`, or SOAP 1.2 `Code/Value`, as written (`soap:Server`).
    pub code: Option<String>,
    /// SOAP 1.1 `faultstring`, or the first SOAP 1.2 `Reason/Text`.
    pub reason: Option<String>,
    /// Every Genesys error found, in document order (at most [`MAX_ERRORS`]).
    pub errors: Vec<GenesysError>,
}

/// Parse a SOAP 1.1 or 1.2 fault, or a response body with Genesys errors in it, whatever the
/// namespace prefixes. Errors are elements named `error`, `Error` or `errors` with a `code`
/// child, wherever they sit (in the fault's `detail`, or in an ordinary body).
///
/// `None` when the body is not well-formed XML (UTF-8, UTF-16 with its byte order mark, or ISO-8859-1 by its declaration), declares a `DOCTYPE`, nests deeper than
/// [`MAX_DEPTH`], or holds neither a fault nor an error.
pub fn parse_fault(body: &[u8]) -> Option<SoapFault> {
    let scan = scan(body)?;
    (scan.is_fault || !scan.fault.errors.is_empty()).then_some(scan.fault)
}

/// What one pass over a body found.
#[derive(Debug, Default)]
struct Scan {
    is_fault: bool,
    fault: SoapFault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Code,
    Message,
    ArgumentIndex,
    AttributeName,
    Context,
    FaultCode,
    FaultReason,
}

const ERROR_FIELDS: [(&str, Field); 5] = [
    ("code", Field::Code),
    ("message", Field::Message),
    ("argumentIndex", Field::ArgumentIndex),
    ("attributeName", Field::AttributeName),
    ("context", Field::Context),
];

const ERROR_ELEMENTS: [&str; 2] = ["error", "errors"];

#[derive(Debug, Default)]
struct Partial {
    depth: usize,
    fields: [Option<String>; 5],
}

impl Partial {
    fn finish(self) -> Option<GenesysError> {
        let [code, message, argument_index, attribute_name, context] = self.fields;
        let code = code.filter(|c| !c.is_empty())?;
        Some(GenesysError {
            code,
            message,
            argument_index: argument_index.and_then(|i| i.parse().ok()),
            attribute_name,
            context,
        })
    }
}

/// The body as text, by the XML rules for telling an entity's encoding (XML 1.0 §4.3.3 and
/// Appendix F): UTF-16 when it starts with a byte order mark (UTF-16 must); else UTF-8, with or
/// without its byte order mark; else ISO-8859-1 when its declaration names it. `None` for any other
/// encoding, or bytes that are not what the encoding says: the status rules then decide, and
/// nothing is guessed. The text is at most twice the (inspect-limited) body.
fn text(body: &[u8]) -> Option<Cow<'_, str>> {
    match body {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes).map(Cow::Owned),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes).map(Cow::Owned),
        // UTF-8 first: the declaration is only read for a body that is not (an ASCII-only
        // ISO-8859-1 body reads the same either way).
        _ => match std::str::from_utf8(redial_core::without_bom(body)) {
            Ok(text) => Some(Cow::Borrowed(text)),
            Err(_) if declares_latin1(body) => Some(Cow::Owned(body.iter().copied().map(char::from).collect())),
            Err(_) => None,
        },
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Option<String> {
    if bytes.len() % 2 != 0 {
        return None;
    }
    char::decode_utf16(bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]))).collect::<Result<String, _>>().ok()
}

/// Whether the XML declaration (`<?xml version="1.0" encoding="ISO-8859-1"?>`, ASCII in any
/// ASCII-compatible encoding) names ISO-8859-1 (Latin-1): each byte is then the character of
/// that number.
fn declares_latin1(body: &[u8]) -> bool {
    if !body.starts_with(b"<?xml") {
        return false;
    }
    let Ok(Event::Decl(decl)) = Reader::from_reader(body).read_event() else { return false };
    decl.encoding().and_then(Result::ok).is_some_and(|name| {
        ["ISO-8859-1", "ISO_8859-1", "latin1", "l1", "ISO-IR-100", "CP819", "IBM819"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
    })
}

fn push_ref(out: &mut String, r: &BytesRef<'_>) {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        out.push(c);
        return;
    }
    match &**r {
        "lt" => out.push('<'),
        "gt" => out.push('>'),
        "amp" => out.push('&'),
        "apos" => out.push('\''),
        "quot" => out.push('"'),
        // Never expanded: kept as written.
        other => {
            out.push('&');
            out.push_str(other);
            out.push(';');
        }
    }
}

fn scan(body: &[u8]) -> Option<Scan> {
    let text = text(body)?;
    let mut reader = Reader::from_str(&text);
    let mut path: Vec<String> = Vec::new();
    let mut open: Vec<Partial> = Vec::new();
    let mut capture: Option<(usize, Field, String)> = None;
    let mut out = Scan::default();
    let mut root = false;
    loop {
        let (start, end) = match reader.read_event().ok()? {
            Event::DocType(_) => return None,
            Event::Eof => break,
            Event::Start(e) => (Some(e.local_name().into_inner().to_owned()), false),
            Event::Empty(e) => (Some(e.local_name().into_inner().to_owned()), true),
            Event::End(_) => (None, true),
            Event::Text(t) => {
                if let Some((_, _, s)) = &mut capture {
                    s.push_str(&t.xml10_content());
                }
                continue;
            }
            Event::CData(t) => {
                if let Some((_, _, s)) = &mut capture {
                    s.push_str(&t.xml10_content());
                }
                continue;
            }
            Event::GeneralRef(r) => {
                if let Some((_, _, s)) = &mut capture {
                    push_ref(s, &r);
                }
                continue;
            }
            _ => continue,
        };
        if let Some(name) = start {
            let depth = path.len();
            if depth >= MAX_DEPTH || depth == 0 && root {
                return None;
            }
            root = true;
            if capture.is_none() {
                if let Some(field) = field_of(&name, depth, &path, &open, &out) {
                    capture = Some((depth, field, String::new()));
                } else if name.eq_ignore_ascii_case("Fault") {
                    out.is_fault = true;
                } else if ERROR_ELEMENTS.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                    open.push(Partial { depth, ..Partial::default() });
                }
            }
            path.push(name);
        }
        if end {
            path.pop()?;
            let depth = path.len();
            if let Some((_, field, text)) = capture.take_if(|(d, _, _)| *d == depth) {
                store(field, text, &mut open, &mut out.fault);
            }
            if open.last().is_some_and(|p| p.depth == depth) {
                let error = open.pop().and_then(Partial::finish);
                if out.fault.errors.len() < MAX_ERRORS {
                    out.fault.errors.extend(error);
                }
            }
        }
    }
    // A truncated document is not a document.
    (root && path.is_empty()).then_some(out)
}

/// Which field a new element at `depth` (its parent chain is `path`) fills, if any.
fn field_of(name: &str, depth: usize, path: &[String], open: &[Partial], out: &Scan) -> Option<Field> {
    if let Some(p) = open.last().filter(|p| p.depth + 1 == depth) {
        let (_, field) = ERROR_FIELDS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        let i = *field as usize;
        return p.fields.get(i)?.is_none().then_some(*field);
    }
    let is = |i: usize, n: &str| {
        path.len().checked_sub(i).and_then(|j| path.get(j)).is_some_and(|p| p.eq_ignore_ascii_case(n))
    };
    let fault = &out.fault;
    let field = if is(1, "Fault") && name.eq_ignore_ascii_case("faultcode") {
        Field::FaultCode
    } else if is(1, "Fault") && name.eq_ignore_ascii_case("faultstring") {
        Field::FaultReason
    } else if is(2, "Fault") && is(1, "Code") && name.eq_ignore_ascii_case("Value") {
        Field::FaultCode
    } else if is(2, "Fault") && is(1, "Reason") && name.eq_ignore_ascii_case("Text") {
        Field::FaultReason
    } else {
        return None;
    };
    let taken = match field {
        Field::FaultCode => fault.code.is_some(),
        _ => fault.reason.is_some(),
    };
    (!taken).then_some(field)
}

fn store(field: Field, text: String, open: &mut [Partial], fault: &mut SoapFault) {
    let text = text.trim();
    let value = (!text.is_empty()).then(|| text.to_owned());
    match field {
        Field::FaultCode => fault.code = value,
        Field::FaultReason => fault.reason = value,
        _ => {
            if let Some(slot) = open.last_mut().and_then(|p| p.fields.get_mut(field as usize)) {
                *slot = value;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The operation of a request.

static SOAP_ACTION: HeaderName = HeaderName::from_static("soapaction");

/// The SOAP operation a request invokes: the local name of the first element of the
/// envelope's `Body` (when the request body was buffered), else the last segment of the
/// `SOAPAction` header (SOAP 1.1), else of the `action` parameter of `Content-Type` (SOAP 1.2).
///
/// ```
/// use redial_core::RequestHead;
/// use redial_vendors::genesys::operation;
/// let (method, uri) = (http::Method::POST, http::Uri::from_static("/ServiceAPI"));
/// let mut headers = http::HeaderMap::new();
/// headers.insert("SOAPAction", "\"http://engage.example/api/createSubCampaign\"".parse().unwrap());
/// let req = RequestHead { method: &method, uri: &uri, headers: &headers, body: None };
/// assert_eq!(operation(&req).as_deref(), Some("createSubCampaign"));
/// ```
pub fn operation(req: &RequestHead<'_>) -> Option<String> {
    operations(req).next()
}

/// Every name the request gives its operation, in the order [`operation`] prefers them: the
/// envelope's `Body` element, `SOAPAction`, the `action` parameter.
fn operations<'a>(req: &'a RequestHead<'_>) -> impl Iterator<Item = String> + 'a {
    let header = |name: &HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
    let from_body = move || req.body.and_then(body_operation);
    let from_action = move || header(&SOAP_ACTION).and_then(last_segment);
    let from_content_type = move || {
        header(&CONTENT_TYPE)?
            .split(';')
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("action"))
            .and_then(|(_, v)| last_segment(v))
    };
    std::iter::once_with(from_body)
        .chain(std::iter::once_with(from_action))
        .chain(std::iter::once_with(from_content_type))
        .flatten()
}

fn last_segment(action: &str) -> Option<String> {
    action.trim().trim_matches('"').rsplit(['/', '#', ':']).find(|s| !s.trim().is_empty()).map(|s| s.trim().to_owned())
}

fn body_operation(body: &[u8]) -> Option<String> {
    let text = text(body)?;
    let mut reader = Reader::from_str(&text);
    let mut path: Vec<bool> = Vec::new(); // whether each open element is a `Body`
    loop {
        let (name, empty) = match reader.read_event().ok()? {
            Event::DocType(_) | Event::Eof => return None,
            Event::Start(e) => (e.local_name().into_inner().to_owned(), false),
            Event::Empty(e) => (e.local_name().into_inner().to_owned(), true),
            Event::End(_) => {
                path.pop()?;
                continue;
            }
            _ => continue,
        };
        if path.last() == Some(&true) {
            return Some(name);
        }
        if path.len() >= MAX_DEPTH {
            return None;
        }
        if !empty {
            path.push(name.eq_ignore_ascii_case("Body"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

/// One row of the code table. A code ending in `*` matches every code with that prefix.
struct Row {
    code: &'static str,
    kind: Kind,
    advice: fn() -> Advice,
    /// Whether the advice becomes [`Advice::Reconcile`] on a reconcile operation.
    reconcile: bool,
    why: &'static str,
}

const fn row(code: &'static str, kind: Kind, advice: fn() -> Advice, why: &'static str) -> Row {
    Row { code, kind, advice, reconcile: false, why }
}

/// How final a row is: in a set of errors, the most final decides (fatal, then throttled, then
/// auth_expired, then transient).
fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::Transient => 0,
        Kind::AuthExpired => 1,
        Kind::Throttled => 2,
        _ => 3,
    }
}

fn fail() -> Advice {
    Advice::Fail
}
fn refresh() -> Advice {
    Advice::RefreshAuth
}
fn reinvoke() -> Advice {
    Advice::Retry(reinvoke_rule())
}
/// "`INTERNAL_ERROR`, or a timeout: re-invoke once": one rule for both, so that a timeout and
/// then an `INTERNAL_ERROR` (or the other way round) re-invoke once in all, not once each. A
/// gateway's `Retry-After` may lengthen the back-off period, never shorten it: the call may
/// have taken effect, and is re-invoked once only.
fn reinvoke_rule() -> RetryRule {
    RetryRule::new(REINVOKE_RULE).backoff(Backoff::schedule([REINVOKE_DELAY])).min_delay(REINVOKE_DELAY).any_method()
}

/// The name of the rule that re-invokes a call once after an `INTERNAL_ERROR` or a timeout.
pub const REINVOKE_RULE: &str = "genesys.reinvoke";

use Kind::{AuthExpired, Fatal, Throttled, Transient};

/// The code table of `VENDORS.md` (Genesys Engage). Codes not listed are final.
#[rustfmt::skip]
static TABLE: &[Row] = &[
    Row { reconcile: true, ..row("INTERNAL_ERROR", Transient, reinvoke, "re-invoke once after about 30 s") },
    row("NO_SESSION", AuthExpired, refresh, "no current session: re-establish it, replay once [I]"),
    row("SYSTEM_LIMIT_EXCEEDED", Throttled, fail, "a system limit (children, or the API call rate) was reached: final, alert"),
    row("AUTHENTICATION_FAILURE", Fatal, fail, "final"),
    row("AUTHORIZATION_FAILURE", Fatal, fail, "final"),
    row("INVALID_PASSWORD", Fatal, fail, "final"),
    row("ARG_*", Fatal, fail, "an argument is in error: final"),
    row("ATTRIBUTE_*", Fatal, fail, "an attribute is in error: final"),
    row("OBJECT_EXISTS", Fatal, fail, "final"),
    row("OBJECT_NOT_EXISTS", Fatal, fail, "final"),
    row("RESULT_TOO_LARGE", Fatal, fail, "final"),
    row("INVALID_STATE", Fatal, fail, "final"),
    row("INVALID_OBJECT_TYPE", Fatal, fail, "final"),
    row("NOT_SUPPORTED", Fatal, fail, "final"),
    row("NOT_IMPLEMENTED", Fatal, fail, "final"),
];

static OTHER: Row = row("*", Fatal, fail, "every other error is final");

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

// ---------------------------------------------------------------------------------------------
// The profile.

/// The Genesys Engage profile (see the [module docs](self) for its table).
///
/// ```
/// use redial_vendors::genesys::GenesysEngage;
/// let g = GenesysEngage::default().with_reconcile_operation("createCampaign");
/// assert!(g.is_reconcile_operation("createSubCampaign"));
/// assert!(g.is_reconcile_operation("createCampaign"));
/// assert!(!g.is_reconcile_operation("showSubCampaignState"));
/// ```
#[derive(Debug, Clone)]
pub struct GenesysEngage {
    reconcile: Vec<Cow<'static, str>>,
}

impl Default for GenesysEngage {
    fn default() -> Self {
        GenesysEngage { reconcile: RECONCILE_OPERATIONS.iter().map(|o| Cow::Borrowed(*o)).collect() }
    }
}

impl GenesysEngage {
    /// The profile with the default reconcile operations ([`RECONCILE_OPERATIONS`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an operation whose re-invocation after `INTERNAL_ERROR` or a timeout must be
    /// reconciled first.
    pub fn with_reconcile_operation(mut self, op: impl Into<Cow<'static, str>>) -> Self {
        self.reconcile.push(op.into());
        self
    }

    /// Replace the reconcile operations (an empty set re-invokes every operation once).
    pub fn with_reconcile_operations<I, O>(mut self, ops: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<Cow<'static, str>>,
    {
        self.reconcile = ops.into_iter().map(Into::into).collect();
        self
    }

    /// The reconcile operations.
    pub fn reconcile_operations(&self) -> &[Cow<'static, str>] {
        &self.reconcile
    }

    /// Whether `op` is a reconcile operation (ASCII case-insensitive).
    pub fn is_reconcile_operation(&self, op: &str) -> bool {
        self.reconcile.iter().any(|o| o.eq_ignore_ascii_case(op))
    }

    /// The reconcile operation this request is, if it is one by any of its names (a
    /// document-style wrapper `createSubCampaignRequest` included): a call that could duplicate
    /// is never re-invoked blindly because one of its names did not match.
    fn reconciles(&self, req: &RequestHead<'_>) -> Option<String> {
        operations(req).find(|op| self.is_reconcile_operation(op.strip_suffix("Request").unwrap_or(op)))
    }

    fn classify_failure(&self, req: &RequestHead<'_>, failure: Failure) -> Classification {
        if failure == Failure::Local {
            // Stopped on this side before it was sent: no vendor rule applies.
            return Generic::classify_failure(failure);
        }
        if failure.may_have_reached_server() {
            if let Some(op) = self.reconciles(req) {
                return Classification::new(
                    Kind::Transient,
                    Advice::Reconcile,
                    format!("genesys: no response ({}) on {op}: reconcile before re-invoking", failure.as_str()),
                );
            }
        }
        Classification::retry(
            Kind::Transient,
            reinvoke_rule(),
            format!("genesys: no response ({}): re-invoke once after about 30 s", failure.as_str()),
        )
    }

    /// The classification of a set of errors: the most final error decides. `None` for no errors.
    fn classify_errors(&self, req: &RequestHead<'_>, errors: &[GenesysError]) -> Option<Classification> {
        let mut best: Option<(&GenesysError, &Row)> = None;
        for e in errors {
            let r = lookup(&e.code).unwrap_or(&OTHER);
            if best.is_none_or(|(_, b)| rank(r.kind) > rank(b.kind)) {
                best = Some((e, r));
            }
        }
        let (first, row) = best?;
        let of = match errors.len() {
            1 => String::new(),
            n => format!(" (of {n} errors)"),
        };
        let c = self.apply(req, row, &format!("{}{of}", first.code));
        Some(c.with_errors(errors.iter().map(GenesysError::to_vendor_error)))
    }

    /// A row's classification for this request: its advice, or reconcile on a reconcile
    /// operation when the row says so.
    fn apply(&self, req: &RequestHead<'_>, row: &Row, what: &str) -> Classification {
        match row.reconcile.then(|| self.reconciles(req)).flatten() {
            Some(op) => Classification::new(
                row.kind,
                Advice::Reconcile,
                format!("genesys: {what} on {op}: reconcile before re-invoking"),
            ),
            None => Classification::new(row.kind, (row.advice)(), format!("genesys: {what}: {}", row.why)),
        }
    }
}

/// The statuses that are a timeout in Genesys's sense when no Genesys error comes with them:
/// a gateway in front of the Service API gave up waiting for it (the call may have taken
/// effect). "With the exception of a timeout or an INTERNAL_ERROR all errors should be
/// considered final": a timeout is re-invoked once, or reconciled first.
const TIMEOUT_STATUSES: &[http::StatusCode] = &[http::StatusCode::GATEWAY_TIMEOUT];

impl GenesysEngage {
    /// A response that carries no Genesys error: a gateway's timeout is the vendor's timeout
    /// rule; anything else, the generic status rules.
    fn fallback(&self, req: &RequestHead<'_>, head: &ResponseHead<'_>, body: BodyUse, why: &str) -> Classification {
        if TIMEOUT_STATUSES.contains(&head.status) {
            let mut c =
                self.classify_failure(req, Failure::Timeout).with_hint(server_hint(head.headers, head.received_at));
            let then = if c.advice == Advice::Reconcile {
                "reconcile before re-invoking"
            } else {
                "re-invoke once after about 30 s"
            };
            c.reason = format!(
                "genesys: {why}; HTTP {}, a gateway's timeout (the call may have taken effect): {then}",
                head.status.as_u16()
            )
            .into();
            return c.with_body(body);
        }
        let mut c = Generic::classify_status(head).with_body(body);
        c.reason = format!("genesys: {why}; {}", c.reason).into();
        c
    }
}

fn is_xml(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    (top.eq_ignore_ascii_case("application") || top.eq_ignore_ascii_case("text"))
        && (sub.eq_ignore_ascii_case("xml")
            || sub.len() > 4 && sub.get(sub.len() - 4..).is_some_and(|s| s.eq_ignore_ascii_case("+xml")))
}

impl Profile for GenesysEngage {
    fn name(&self) -> &str {
        "genesys-engage"
    }

    /// Error statuses, and XML 2xx bodies (errors may come in an ordinary response).
    fn inspect(&self, _req: &RequestHead<'_>, res: &ResponseHead<'_>) -> bool {
        let s = res.status;
        s.is_client_error()
            || s.is_server_error()
            || s.is_success() && res.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_xml)
    }

    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        let (head, body) = match outcome {
            Outcome::Failure(f) => return self.classify_failure(req, *f),
            Outcome::Response(head, body) => (head, body),
            // An outcome this profile does not know yet: the generic rules.
            other => return Generic.classify(req, other),
        };
        let bytes = match body {
            Body::NotRead => return Generic::classify_status(head),
            Body::Prefix(_) => {
                return self.fallback(req, head, BodyUse::TooLarge, "the body is longer than the inspect limit")
            }
            Body::Complete(bytes) => bytes,
            // Read in a way this profile does not know yet: the status rules.
            _ => return Generic::classify_status(head),
        };
        let Some(scan) = scan(bytes) else {
            return self.fallback(
                req,
                head,
                BodyUse::Fallback,
                "the body is not well-formed XML (UTF-8, UTF-16 or ISO-8859-1) without a DOCTYPE",
            );
        };
        let fault = scan.fault;
        if let Some(c) = self.classify_errors(req, &fault.errors) {
            return c.with_body(BodyUse::Parsed);
        }
        if scan.is_fault {
            // A fault without Genesys errors: its code decides if it is a Genesys code (in
            // any namespace), else the status does.
            let code = fault.code.unwrap_or_else(|| "Fault".to_owned());
            let c = match code.rsplit(':').next().and_then(lookup) {
                Some(row) => self.apply(req, row, &code),
                None => self.fallback(req, head, BodyUse::Parsed, "a SOAP fault without Genesys errors"),
            };
            let error = VendorError::new(code, fault.reason.unwrap_or_default());
            return c.with_errors([error]).with_body(BodyUse::Parsed);
        }
        if head.status.is_success() {
            return Classification::success("genesys: success").with_body(BodyUse::Parsed);
        }
        self.fallback(req, head, BodyUse::Fallback, "no SOAP fault or Genesys error in the body")
    }
}
