//! Reading an inner service's error: did the request leave?

use std::error::Error as StdError;
use std::io;

use redial_core::Failure;

/// The default [`FailureClassifier`](crate::FailureClassifier): walks the error's sources for an
/// `io::Error` that proves the request never left (`ConnectionRefused`) or that timed out.
/// Anything else may have reached the server.
///
/// hyper-util's and reqwest's connect errors wrap the `io::Error` of the failed connect, so
/// both are recognised.
pub fn classify_error(error: &(dyn StdError + 'static)) -> Failure {
    let mut next = Some(error);
    while let Some(e) = next {
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
