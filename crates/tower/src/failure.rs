//! Reading an inner service's error: did the request leave?

use std::error::Error as StdError;
use std::fmt;
use std::io;

use redial_core::Failure;

use crate::BoxError;

/// The default [`FailureClassifier`](crate::FailureClassifier): walks the error's sources for an
/// `io::Error` that proves the request never left (`ConnectionRefused`, `AddrNotAvailable`) or
/// that timed out, and for the errors of tower's own middleware below redial: a `Timeout`'s
/// `Elapsed` is a timeout, and a `LoadShed`'s `Overloaded` a refusal on this side, before the
/// request was sent ([`Failure::Local`]: final).
/// Anything else may have reached the server.
///
/// hyper-util's and reqwest's connect errors wrap the `io::Error` of the failed connect, so
/// both are recognised.
///
/// ```
/// use redial_tower::{classify_error, core::Failure};
///
/// let elapsed = tower::timeout::error::Elapsed::new();
/// assert_eq!(classify_error(&elapsed), Failure::Timeout);
/// ```
pub fn classify_error(error: &(dyn StdError + 'static)) -> Failure {
    let mut next = Some(error);
    while let Some(e) = next {
        // A per-attempt timeout (`ServiceBuilder::timeout` inside redial) is one, not a broken
        // connection; a shed call was never sent, and is not "ambiguous" for a POST.
        if e.is::<tower::timeout::error::Elapsed>() {
            return Failure::Timeout;
        }
        if e.is::<tower::load_shed::error::Overloaded>() {
            return Failure::Local;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable => return Failure::Connect,
                io::ErrorKind::TimedOut => return Failure::Timeout,
                _ => {}
            }
        }
        next = e.source();
    }
    Failure::Io
}

/// An inner service's error that says itself what it means, over the layer's
/// [`FailureClassifier`](crate::FailureClassifier): how far the request got, or that the error
/// is final (not the vendor's or the network's: a middleware below refused the call, a signing
/// key is missing). The engine unwraps it: the caller's error has `source` as its source.
///
/// A front door that knows its transport's errors returns these (the reqwest middleware does,
/// for reqwest's connect errors and timeouts, and for the errors of the middlewares after it).
///
/// ```
/// use redial_tower::AttemptError;
/// use redial_tower::core::Failure;
///
/// let e = AttemptError::new(Failure::Connect, "dns lookup failed".into());
/// assert_eq!(e.failure(), Failure::Connect);
/// let e = AttemptError::final_error("no signing key".into());
/// assert_eq!(e.failure(), Failure::Local);
/// ```
#[derive(Debug)]
pub struct AttemptError {
    failure: Failure,
    source: BoxError,
}

impl AttemptError {
    /// The attempt ended without a response, in this way.
    pub fn new(failure: Failure, source: BoxError) -> Self {
        AttemptError { failure, source }
    }

    /// The error is final: the request is not sent again, whatever the vendor's rules
    /// ([`Failure::Local`]).
    pub fn final_error(source: BoxError) -> Self {
        AttemptError { failure: Failure::Local, source }
    }

    /// How the attempt ended.
    pub fn failure(&self) -> Failure {
        self.failure
    }

    /// The error itself.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl StdError for AttemptError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's error that wraps the `io::Error` it failed on, as hyper-util's and reqwest's do.
    #[derive(Debug)]
    struct Wrapped(io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    /// The default classifier's docs: a refused connection or an address not available never
    /// left, a timeout is a timeout, anything else may have reached the server; read from the
    /// error itself or from any error below it.
    #[test]
    fn the_default_classifier_reads_the_io_error_at_any_depth() {
        use io::ErrorKind::*;
        for (kind, want) in [
            (ConnectionRefused, Failure::Connect),
            (AddrNotAvailable, Failure::Connect),
            (TimedOut, Failure::Timeout),
            (ConnectionReset, Failure::Io),
            (BrokenPipe, Failure::Io),
            (Other, Failure::Io),
        ] {
            assert_eq!(classify_error(&io::Error::from(kind)), want, "{kind:?}");
            let wrapped = Wrapped(io::Error::from(kind));
            assert_eq!(classify_error(&Wrapped(io::Error::other(wrapped))), want, "{kind:?}, wrapped twice");
        }
        let not_io: BoxError = "no such host".into();
        assert_eq!(classify_error(&*not_io), Failure::Io);
    }
}
