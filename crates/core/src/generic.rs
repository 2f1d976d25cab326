//! The generic profile: plain HTTP semantics and RFC 9457 problem details, for any host
//! without a vendor profile, and the fallback every vendor profile uses when a body does not
//! parse.
//!
//! | signal | kind | action | re-sent for |
//! |---|---|---|---|
//! | 1xx, 2xx, 3xx | success | return | |
//! | 408 Request Timeout | transient | retry, backoff | any method: the server did not receive the request |
//! | 429 Too Many Requests | throttled | retry after `Retry-After`, else backoff | any method: rejected unprocessed |
//! | 503 Service Unavailable | transient | retry after `Retry-After`, else backoff | any method: rejected unprocessed |
//! | 502, 504 | transient | retry, backoff | idempotent only: an upstream may have acted |
//! | 500 | transient | retry, backoff | idempotent only |
//! | other 4xx and 5xx | fatal | fail | |
//! | connection failed before sending | transient | retry, backoff | any method |
//! | reset, timeout, broken body after sending | transient | retry, backoff | idempotent only |
//!
//! "Idempotent" means a method of the policy's idempotent set, a request with an
//! `Idempotency-Key` header, or one the caller marked safe. `application/problem+json` bodies
//! are parsed whatever the decision and reach the caller.

use crate::classify::{Body, BodyUse, Classification, Failure, Outcome, Profile, RequestHead, ResponseHead, RetryRule};
use crate::hint::server_hint;
use crate::problem::{is_problem_media_type, Problem};
use crate::Kind;
use http::{header::CONTENT_TYPE, StatusCode};

/// The generic profile (see the [module docs](self) for its table).
#[derive(Debug, Clone, Copy, Default)]
pub struct Generic;

impl Generic {
    /// The status rules alone: what a response means when its body says nothing usable.
    pub fn classify_status(head: &ResponseHead<'_>) -> Classification {
        let status = head.status;
        let hint = || server_hint(head.headers, head.received_at);
        match status.as_u16() {
            100..=399 => Classification::success("generic: not an error status"),
            408 => Classification::retry(
                Kind::Transient,
                RetryRule::new("generic.408").any_method(),
                "generic: 408 request timeout",
            )
            .with_hint(hint()),
            429 => Classification::retry(
                Kind::Throttled,
                RetryRule::new("generic.429").any_method(),
                "generic: 429 too many requests",
            )
            .with_hint(hint()),
            503 => Classification::retry(
                Kind::Transient,
                RetryRule::new("generic.503").any_method(),
                "generic: 503 service unavailable",
            )
            .with_hint(hint()),
            502 => Classification::retry(Kind::Transient, RetryRule::new("generic.502"), "generic: 502 bad gateway")
                .with_hint(hint()),
            504 => {
                Classification::retry(Kind::Transient, RetryRule::new("generic.504"), "generic: 504 gateway timeout")
                    .with_hint(hint())
            }
            500 => Classification::retry(
                Kind::Transient,
                RetryRule::new("generic.500"),
                "generic: 500 internal server error",
            ),
            _ => Classification::fail(Kind::Fatal, reason_for(status)),
        }
    }

    /// The rules for an attempt that produced no response.
    pub fn classify_failure(failure: Failure) -> Classification {
        match failure {
            Failure::Connect => Classification::retry(
                Kind::Transient,
                RetryRule::new("generic.connect").any_method(),
                "generic: connection failed before the request was sent",
            ),
            Failure::Timeout => Classification::retry(
                Kind::Transient,
                RetryRule::new("generic.timeout"),
                "generic: the attempt timed out; the request may have reached the server",
            ),
            Failure::Local => Classification::fail(Kind::Fatal, "generic: refused on this side before it was sent"),
            _ => Classification::retry(
                Kind::Transient,
                RetryRule::new("generic.no_response"),
                "generic: the connection failed after the request may have been sent",
            ),
        }
    }
}

fn reason_for(status: StatusCode) -> String {
    format!("generic: {} is final", status.as_u16())
}

impl Profile for Generic {
    fn name(&self) -> &str {
        "generic"
    }

    fn inspect(&self, _req: &RequestHead<'_>, res: &ResponseHead<'_>) -> bool {
        (res.status.is_client_error() || res.status.is_server_error())
            && res.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_problem_media_type)
    }

    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        match outcome {
            Outcome::Failure(f) => Self::classify_failure(*f),
            Outcome::Response(head, body) => {
                let c = Self::classify_status(head);
                match body {
                    Body::NotRead => c,
                    Body::Prefix(_) => c.with_body(BodyUse::TooLarge),
                    Body::Complete(bytes) if self.inspect(req, head) => match Problem::parse(bytes) {
                        Some(p) => {
                            let e = p.to_vendor_error();
                            c.with_errors([e]).with_problem(Some(p)).with_body(BodyUse::Parsed)
                        }
                        None => c.with_body(BodyUse::Fallback),
                    },
                    Body::Complete(_) => c,
                }
            }
        }
    }
}
