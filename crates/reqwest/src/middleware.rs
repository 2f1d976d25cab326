//! [`RedialMiddleware`], and the driver that runs the engine inside one middleware call.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;

use http::Extensions;
use redial_tower::core::{AddIdempotencyKey, RequestLimits};
use redial_tower::{ResponseBody, ResponseFuture, RetryLayer, RetrySafe};
use reqwest_middleware::{Middleware, Next};

use crate::convert::{request_to_http, response_from_http, Inbound, RequestBody};
use crate::service::{Answered, Background, Detacher, Direct, Job, Mailbox, Replier};

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
    /// it: a login (when a token source is configured) or a failover probe. A login that a call
    /// waits for goes through the rest of that call's chain while the call lasts; once the call
    /// has ended (cancelled, out of time) it is sent through this client directly. A background
    /// token renewal, started by a call that does not wait for it, goes through this client
    /// from the start, not through the middlewares after this one; so, in practice, does a
    /// failover probe (the call that met the failover ends at once).
    ///
    /// Without one, a default `reqwest::Client` is made for them at the first need. Give yours
    /// when logins need its settings (proxy, TLS roots, timeouts, default headers).
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

// Written out (it is what `#[async_trait]` makes), so that a URL the engine cannot take goes
// straight on without a state of its own in the call's future.
impl Middleware for RedialMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: reqwest::Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        match http::Uri::try_from(req.url().as_str()) {
            Ok(uri) => Box::pin(self.call(req, uri, extensions, next)),
            // A URL reqwest accepts and `http::Uri` does not: reqwest refuses it itself, with
            // its own builder error (and the URL), as it would without redial.
            Err(_) => next.run(req, extensions),
        }
    }
}

impl RedialMiddleware {
    async fn call(
        &self,
        req: reqwest::Request,
        uri: http::Uri,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let (mut req, template) = request_to_http(req, uri);
        // The per-request markers the engine reads, set with `RequestBuilder::with_extension`
        // (a `reqwest::Request` has no public extensions of its own).
        if let Some(mark) = extensions.get::<RetrySafe>() {
            req.extensions_mut().insert(*mark);
        }
        if let Some(mark) = extensions.get::<AddIdempotencyKey>() {
            req.extensions_mut().insert(*mark);
        }
        if let Some(limits) = extensions.get::<RequestLimits>() {
            req.extensions_mut().insert(*limits);
        }
        // The mailbox for the logins and probes the engine makes while this call lasts, made
        // at the first one (most calls have none).
        let detached = OnceLock::new();
        let _closed = Closed(&detached);
        let last = Mutex::new(None);
        let out = {
            let direct = Direct { next: next.clone(), extensions: &*extensions, template: &template, last: &last };
            let detach = Detacher { mailbox: &detached, background: &self.background };
            // On the heap, apart, made there (not moved through the call's future): the call's
            // future stays small enough for the allocator's fast path (glibc consolidates its
            // free lists for every allocation of 1 KiB or more).
            let engine = Box::pin(self.layer.drive(direct, detach, req));
            drive(engine, &detached, extensions, next).await
        };
        let (final_url, length_known) = match last.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Answered { extensions: ext, final_url, length_known }) => {
                *extensions = ext;
                (final_url, length_known)
            }
            None => (None, true),
        };
        match out {
            Ok(res) => Ok(response_from_http(res, final_url, length_known, template.url())),
            Err(e) => Err(reqwest_middleware::Error::Middleware(e.into())),
        }
    }
}

/// Closes the mailbox, if there is one, when the call ends, however it ends (cancelled
/// included): the logins and probes still waiting go through the background client.
struct Closed<'a>(&'a OnceLock<Arc<Mailbox>>);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        if let Some(mailbox) = self.0.get() {
            mailbox.close();
        }
    }
}

type Sending<'n> = Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'n>>;

/// A login or a probe in flight through the rest of the chain.
struct InFlight<'n> {
    fut: Sending<'n>,
    reply: Replier,
}

/// The engine's future for one call.
type Engine<'a> = ResponseFuture<Direct<'a>, RequestBody, Inbound, Detacher<'a>>;

/// Polls the engine, which sends the call's own attempts itself; and sends each login or probe
/// it leaves in the call's mailbox through `next`, in this task.
fn drive<'a>(
    mut engine: Pin<Box<Engine<'a>>>,
    detached: &'a OnceLock<Arc<Mailbox>>,
    extensions: &'a Extensions,
    next: Next<'a>,
) -> impl Future<Output = Result<http::Response<ResponseBody<Inbound>>, redial_tower::Error>> + Send + 'a {
    let mut in_flight: Vec<InFlight<'a>> = Vec::new();
    let mut jobs = Vec::new();
    poll_fn(move |cx| {
        if let Some(mailbox) = detached.get() {
            mailbox.polling();
        }
        loop {
            if let Some(mailbox) = detached.get() {
                mailbox.take(&mut jobs);
                for Job { req, reply } in jobs.drain(..) {
                    // Logins and probes start from the caller's extensions, and keep theirs.
                    let next = next.clone();
                    let mut ext = extensions.clone();
                    let fut: Sending<'_> = Box::pin(async move { next.run(req, &mut ext).await });
                    in_flight.push(InFlight { fut, reply });
                }
                let mut i = 0;
                while i < in_flight.len() {
                    let f = &mut in_flight[i];
                    // Nobody waits for it any more (its time ran out): drop it, which cancels it.
                    let answer = if f.reply.is_cancelled() {
                        None
                    } else {
                        match f.fut.as_mut().poll(cx) {
                            Poll::Ready(res) => Some(res),
                            Poll::Pending => {
                                i += 1;
                                continue;
                            }
                        }
                    };
                    let f = in_flight.swap_remove(i);
                    if let Some(res) = answer {
                        f.reply.send(res, cx.waker());
                    }
                }
            }
            if let Poll::Ready(out) = engine.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            let Some(mailbox) = detached.get() else { return Poll::Pending };
            // A login or probe that gave up (its time ran out) is cancelled now, not at the
            // next wake-up: it holds a connection.
            let gave_up = in_flight.iter().any(|f| f.reply.is_cancelled());
            // The engine may have left a new login or probe: send it now.
            if !gave_up && !mailbox.idle(cx.waker()) {
                return Poll::Pending;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Measures the future `RedialMiddleware::handle` returns, and drops it unpolled.
    struct Measure(RedialMiddleware, Arc<Mutex<usize>>);

    #[async_trait::async_trait]
    impl Middleware for Measure {
        async fn handle(
            &self,
            req: reqwest::Request,
            extensions: &mut Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            let fut = self.0.handle(req, extensions, next);
            *self.1.lock().unwrap() = std::mem::size_of_val(&*fut);
            Err(reqwest_middleware::Error::middleware(std::io::Error::other("measured")))
        }
    }

    /// Every call allocates this future. glibc serves allocations up to 1,032 bytes from its
    /// per-thread cache; a larger one takes the slow path (and consolidates the free lists),
    /// about a thousand instructions more per call over loopback.
    #[tokio::test]
    async fn the_call_future_fits_the_allocators_fast_path() {
        let size = Arc::new(Mutex::new(0));
        let mw = Measure(RedialMiddleware::new(RetryLayer::generic()), size.clone());
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(mw).build();
        assert!(client.get("http://127.0.0.1:9/").send().await.is_err());
        let size = *size.lock().unwrap();
        assert!(size > 0 && size <= 1000, "the call's future is {size} bytes");
    }
}
