//! [`Detach`]: where the engine sends what it sends on its own.

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::{BoxError, RetryBody};

/// Where the engine sends the requests it makes on its own, a token source's login or a
/// failover probe: they run in tasks of their own and may outlive the call that started them,
/// so they need a `'static` service.
///
/// The tower layer sends them through a clone of its inner service ([`Inner`]). A front door
/// whose inner service borrows from one call (the reqwest middleware's, which sends each
/// attempt through that call's rest of the middleware chain) gives one of its own, with
/// [`RetryLayer::drive`](crate::RetryLayer::drive).
pub trait Detach<S, B> {
    /// The request body type of [`Self::Service`] (detached requests are always buffered).
    type Body: Body<Error: Into<BoxError>> + Send + 'static;
    /// The response body type of [`Self::Service`].
    type ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
    /// The service detached requests go through.
    type Service: Service<
            Request<RetryBody<Self::Body>>,
            Response = Response<Self::ResponseBody>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static;

    /// The service for one detached request, or `None` if there is none (a login then fails
    /// as fatal, so it is not tried again before the token source's longest backoff; a
    /// failover probe is not sent).
    fn detach(&self, inner: &S) -> Option<Self::Service>;

    /// Give back what `inner`'s readiness holds, before the engine waits for something that
    /// may need it: a login sent through a clone of `inner` waits for the same capacity (a
    /// `ConcurrencyLimit`'s permit, a `Buffer`'s slot) that the waiting request's ready
    /// service holds. The engine polls `inner` for readiness again before it sends.
    ///
    /// The default does nothing: for a service whose readiness holds nothing.
    fn unready(&self, inner: &mut S) {
        let _ = inner;
    }
}

/// Detached requests go through a clone of the inner service, as every other request does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inner;

impl<S, B, RB> Detach<S, B> for Inner
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    type Body = B;
    type ResponseBody = RB;
    type Service = S;

    fn detach(&self, inner: &S) -> Option<S> {
        Some(inner.clone())
    }

    /// A clone in place of the ready service: tower's services hold their readiness (a
    /// permit) in the instance that was polled, and a clone starts without it.
    fn unready(&self, inner: &mut S) {
        *inner = inner.clone();
    }
}
