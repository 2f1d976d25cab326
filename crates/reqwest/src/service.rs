//! [`Attempts`]: the inner service the engine drives. It is `'static` and `Clone`, as the engine
//! needs (logins and failover probes run in tasks of their own), while `reqwest_middleware::Next`
//! borrows the client and the chain for one call only. So an attempt is not sent here: it is
//! handed, with a reply channel, to the call that owns the `Next` (see `driver`), and this
//! service's future waits for the reply.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use redial_tower::{BoxError, RetryBody};
use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

use crate::convert::{request_from_http, response_to_http, RequestBody};

type Reply = reqwest_middleware::Result<reqwest::Response>;

/// An attempt for the call that owns the rest of the chain.
pub(crate) struct Job {
    pub(crate) req: reqwest::Request,
    pub(crate) reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub(crate) struct Attempts {
    jobs: mpsc::UnboundedSender<Job>,
    background: Option<reqwest::Client>,
}

impl Attempts {
    pub(crate) fn new(jobs: mpsc::UnboundedSender<Job>, background: Option<reqwest::Client>) -> Self {
        Attempts { jobs, background }
    }
}

impl Service<http::Request<RetryBody<RequestBody>>> for Attempts {
    type Response = http::Response<reqwest::Body>;
    type Error = BoxError;
    type Future = AttemptFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<RetryBody<RequestBody>>) -> AttemptFuture {
        let req = match request_from_http(req) {
            Ok(req) => req,
            Err(e) => return AttemptFuture(State::Failed(Some(e.into()))),
        };
        // Only a login or a probe can outlive the call that drives it; with a background
        // client, keep what is needed to send it on its own (their bodies are bytes).
        let spare = self.background.as_ref().and_then(|client| Some(Box::new((req.try_clone()?, client.clone()))));
        let (reply, rx) = oneshot::channel();
        match self.jobs.send(Job { req, reply }) {
            Ok(()) => AttemptFuture(State::Waiting { rx, spare }),
            Err(mpsc::error::SendError(job)) => match &self.background {
                Some(client) => AttemptFuture(State::Background(Box::pin(client.execute(job.req)))),
                None => AttemptFuture(State::Failed(Some(Box::new(CallEnded)))),
            },
        }
    }
}

/// The future of one attempt.
pub(crate) struct AttemptFuture(State);

enum State {
    Failed(Option<BoxError>),
    Waiting { rx: oneshot::Receiver<Reply>, spare: Option<Box<(reqwest::Request, reqwest::Client)>> },
    Background(Pin<Box<dyn Future<Output = reqwest::Result<reqwest::Response>> + Send>>),
}

impl Future for AttemptFuture {
    type Output = Result<http::Response<reqwest::Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let state = &mut self.get_mut().0;
        loop {
            match state {
                State::Failed(e) => return Poll::Ready(Err(e.take().expect("AttemptFuture polled after completion"))),
                State::Waiting { rx, spare } => match ready!(Pin::new(rx).poll(cx)) {
                    Ok(Ok(res)) => return Poll::Ready(Ok(response_to_http(res))),
                    Ok(Err(e)) => return Poll::Ready(Err(unwrap_error(e))),
                    Err(_) => match spare.take().map(|spare| *spare) {
                        Some((req, client)) => *state = State::Background(Box::pin(client.execute(req))),
                        None => return Poll::Ready(Err(Box::new(CallEnded))),
                    },
                },
                State::Background(fut) => {
                    return fut.as_mut().poll(cx).map(|r| r.map(response_to_http).map_err(Into::into));
                }
            }
        }
    }
}

/// The engine sees the transport's own error (reqwest's, with its `io::Error` sources), not
/// the middleware wrapper around it.
fn unwrap_error(e: reqwest_middleware::Error) -> BoxError {
    match e {
        reqwest_middleware::Error::Reqwest(e) => Box::new(e),
        reqwest_middleware::Error::Middleware(e) => e.into(),
    }
}

/// A login or a failover probe outlived the call that started it, and no background client was
/// given to send it on its own.
#[derive(Debug)]
struct CallEnded;

impl fmt::Display for CallEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the reqwest call that carried this request has ended before it was answered \
             (give RedialMiddleware a client with `with_client` to send logins and probes on their own)",
        )
    }
}

impl std::error::Error for CallEnded {}
