//! [`RedialMiddleware`], and the driver that runs the engine inside one middleware call.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::Extensions;
use redial_tower::core::AddIdempotencyKey;
use redial_tower::{ResponseBody, Retry, RetryLayer, RetrySafe};
use reqwest_middleware::{Middleware, Next};
use tower_layer::Layer;
use tower_service::Service;

use crate::convert::{request_to_http, response_from_http, Inbound, RequestBody};
use crate::service::{Attempts, Background, Call, Job, Mailbox, Replier};

/// redial's retry engine as a [`reqwest_middleware::Middleware`].
///
/// It drives the same engine as the tower layer it is made from: the same hosts, profiles,
/// policies, budgets, limiters and token sources (they are shared with every other user of the
/// [`RetryLayer`]). Each attempt goes through the middlewares added after this one, then the
/// client.
///
/// ```
/// use redial_reqwest::RedialMiddleware;
/// use redial_tower::{Policy, RetryLayer};
///
/// let layer = RetryLayer::new(redial_tower::core::generic::Generic, Policy::builder().max_attempts(5).build()?);
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(RedialMiddleware::new(layer))
///     .build();
/// # let _ = client;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RedialMiddleware {
    layer: RetryLayer,
    background: Background,
}

impl RedialMiddleware {
    /// Retry by the rules of `layer` (from `redial::builder()` or [`RetryLayer::builder`]).
    pub fn new(layer: RetryLayer) -> Self {
        RedialMiddleware { layer, background: Background::default() }
    }

    /// The client for what the engine sends on its own and may outlive the call that started
    /// it: a login (when a token source is configured) or a failover probe. Such a request goes
    /// through the rest of the chain of the call that started it while that call lasts; once it
    /// has ended (cancelled, or out of time), it is sent through this client directly.
    ///
    /// Without one, a login whose call has ended fails, and the token source logs in again for
    /// the next call (after its login backoff). A failover probe is sent through a default
    /// `reqwest::Client` instead: the call that put the host in failover mode ends at once, and
    /// a probe that could never be sent would keep the host there for good.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.background.given = Some(client);
        self
    }

    /// The layer this middleware runs: to read its hosts' failover mode or rate limit.
    pub fn layer(&self) -> &RetryLayer {
        &self.layer
    }
}

impl From<RetryLayer> for RedialMiddleware {
    fn from(layer: RetryLayer) -> Self {
        RedialMiddleware::new(layer)
    }
}

impl fmt::Debug for RedialMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedialMiddleware")
            .field("layer", &self.layer)
            .field("background_client", &self.background.given.is_some())
            .finish()
    }
}

#[async_trait::async_trait]
impl Middleware for RedialMiddleware {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let (mut req, template) = request_to_http(req)?;
        // The per-request markers the engine reads, set with `RequestBuilder::with_extension`
        // (a `reqwest::Request` has no public extensions of its own).
        if let Some(mark) = extensions.get::<RetrySafe>() {
            req.extensions_mut().insert(*mark);
        }
        if let Some(mark) = extensions.get::<AddIdempotencyKey>() {
            req.extensions_mut().insert(*mark);
        }
        let call = Arc::new(Call { mailbox: Mailbox::default(), template });
        let svc = self.layer.layer(Attempts::new(call.clone(), self.background.clone()));
        let _closed = Closed(&call.mailbox);
        match drive(svc, req, &call.mailbox, extensions, next).await {
            Ok(res) => Ok(response_from_http(res, call.template.url())),
            Err(e) => Err(reqwest_middleware::Error::Middleware(e.into())),
        }
    }
}

/// Closes the mailbox when the call ends, however it ends (cancelled included).
struct Closed<'a>(&'a Mailbox);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

type Sending<'n> =
    Pin<Box<dyn Future<Output = (reqwest_middleware::Result<reqwest::Response>, Extensions)> + Send + 'n>>;

/// One attempt in flight through the rest of the chain.
struct InFlight<'n> {
    fut: Sending<'n>,
    reply: Replier,
    /// A login or a probe: its extensions are not the caller's.
    detached: bool,
}

/// Polls the engine, and sends each attempt it leaves in the mailbox through `next`, in this
/// task.
///
/// Every attempt starts from the caller's extensions; those of the last attempt answered are
/// the caller's afterwards, as if there had been one.
async fn drive(
    mut svc: Retry<Attempts>,
    req: http::Request<RequestBody>,
    mailbox: &Mailbox,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> Result<http::Response<ResponseBody<Inbound>>, redial_tower::Error> {
    // `Attempts` is always ready, and so is the layer over it: no await holds the request.
    if let Poll::Ready(Err(e)) = svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        return Err(e);
    }
    // On the heap, apart: the call's future stays small enough for the allocator's fast path
    // (glibc consolidates its free lists for every allocation of 1 KiB or more).
    let mut engine = Box::pin(svc.call(req));
    let mut in_flight: Vec<InFlight<'_>> = Vec::new();
    let mut jobs = Vec::new();
    let mut last = None;
    let out = poll_fn(|cx| {
        mailbox.polling();
        loop {
            mailbox.take(&mut jobs);
            for Job { req, reply, detached } in jobs.drain(..) {
                let next = next.clone();
                let mut ext = extensions.clone();
                let fut: Sending<'_> = Box::pin(async move {
                    let res = next.run(req, &mut ext).await;
                    (res, ext)
                });
                in_flight.push(InFlight { fut, reply, detached });
            }
            let mut i = 0;
            while i < in_flight.len() {
                let f = &mut in_flight[i];
                // Nobody waits for it any more (the attempt timed out): drop it, which cancels it.
                let answer = if f.reply.is_cancelled() {
                    None
                } else {
                    match f.fut.as_mut().poll(cx) {
                        Poll::Ready(answer) => Some(answer),
                        Poll::Pending => {
                            i += 1;
                            continue;
                        }
                    }
                };
                let f = in_flight.swap_remove(i);
                if let Some((res, ext)) = answer {
                    if !f.detached {
                        last = Some(ext);
                    }
                    f.reply.send(res, cx.waker());
                }
            }
            if let Poll::Ready(out) = engine.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            // An attempt the engine just gave up on (its time ran out) is cancelled now, not at
            // the next wake-up: it holds a connection.
            let gave_up = in_flight.iter().any(|f| f.reply.is_cancelled());
            // The engine may have left a new attempt (a retry with no wait): send it now.
            if !gave_up && !mailbox.idle(cx.waker()) {
                return Poll::Pending;
            }
        }
    })
    .await;
    if let Some(ext) = last {
        *extensions = ext;
    }
    out
}
