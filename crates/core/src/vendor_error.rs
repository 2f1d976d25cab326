//! Vendor errors as the caller receives them: the vendor's own code and message, never lost.

use std::borrow::Cow;
use std::fmt;

/// Where in a response a vendor error was found.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorScope {
    /// An error about the whole request (Marketo `errors[]`, a Responsys envelope, a problem body).
    Response,
    /// An error about one record of a batch, at this index of the input (Marketo `result[i].reasons`).
    Record(usize),
    /// A non-fatal error embedded in an otherwise successful response (Adobe 207 `errors[]`).
    NonFatal,
    /// A warning (Adobe `warnings[]`).
    Warning,
}

impl ErrorScope {
    /// A short word for logs and JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorScope::Response => "response",
            ErrorScope::Record(_) => "record",
            ErrorScope::NonFatal => "non_fatal",
            ErrorScope::Warning => "warning",
        }
    }
}

/// One error as the vendor reported it.
///
/// The `code` is always the vendor's own string (`"606"`, `"INVALID_TOKEN"`, `"EXEG-0104-422"`),
/// whatever type it had on the wire. Vendor-specific fields (Genesys `argumentIndex`, an Adobe
/// `requestId`) are kept in [`attributes`](VendorError::attributes).
///
/// ```
/// use redial_core::{VendorError, ErrorScope};
/// let e = VendorError::new("606", "Max rate limit '100' exceeded with in '20' secs");
/// assert_eq!(e.code, "606");
/// assert_eq!(e.scope, ErrorScope::Response);
/// let r = VendorError::new("1005", "Lead already exists").with_scope(ErrorScope::Record(2));
/// assert_eq!(r.scope, ErrorScope::Record(2));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorError {
    /// The vendor's code, as a string.
    pub code: String,
    /// The vendor's message, if it sent one.
    pub message: Option<String>,
    /// Where in the response it was found.
    pub scope: ErrorScope,
    /// Further named fields the vendor attached to this error, in the order they were found.
    pub attributes: Vec<(Cow<'static, str>, String)>,
}

impl VendorError {
    /// An error with a code and a message, scoped to the whole response.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        VendorError {
            code: code.into(),
            message: (!message.is_empty()).then_some(message),
            scope: ErrorScope::Response,
            attributes: Vec::new(),
        }
    }

    /// An error with a code and no message.
    pub fn code_only(code: impl Into<String>) -> Self {
        VendorError { code: code.into(), message: None, scope: ErrorScope::Response, attributes: Vec::new() }
    }

    /// Set where the error was found.
    pub fn with_scope(mut self, scope: ErrorScope) -> Self {
        self.scope = scope;
        self
    }

    /// Attach a named field.
    pub fn with_attribute(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    /// The value of a named attribute, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for VendorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{}: {}", self.code, m),
            None => f.write_str(&self.code),
        }
    }
}
