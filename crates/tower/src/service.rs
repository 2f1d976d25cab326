//! [`Retry`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::detach::Inner;
use crate::error::{Error, ErrorKind};
use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::{BoxError, ResponseBody, RetryBody};

/// Retries requests to `S` by the rules of each host's vendor profile. Made by [`RetryLayer`](crate::RetryLayer).
///
/// A request's deadline runs from its future's first poll: the wait for `S` to be ready before
/// the first attempt ([`poll_ready`](Service::poll_ready), as `ServiceExt::oneshot` does it) is
/// the caller's, as with any tower service; readiness before each retry is within the deadline.
/// To bound the first wait too, bound the whole call (`tokio::time::timeout` around
/// `oneshot`): tower's `Timeout` layer times the response future, not readiness.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Retry<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Retry { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
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
    type Response = Response<ResponseBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<S, B, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(|e| Error::new(ErrorKind::NotReady, Default::default()).with_source(e.into()))
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes with the request; this one takes its clone's place
        // (tower-service: "be careful when cloning inner services").
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(ready, Inner, self.shared.clone(), req)
    }
}
