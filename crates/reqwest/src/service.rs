//! The two inner services the engine drives for one middleware call.
//!
//! [`Direct`] sends the call's own attempts: each one through the rest of the middleware chain
//! (`reqwest_middleware::Next`), from the engine's own poll, with nothing in between. It borrows
//! the call, so it is neither `'static` nor `Clone`.
//!
//! [`Attempts`] is for what the engine sends on its own, a login or a failover probe: those run
//! in tasks of their own and may outlive the call, so their service is `'static` and `Clone`.
//! Such a request is not sent here: it is left, with a reply slot, in the [`Mailbox`] of the
//! call that owns the `Next` (see `middleware::drive`), and this service's future waits for
//! the reply. Once the call has ended, it goes through the client given with `with_client`.
//!
//! The mailbox hand-off is made for the case where the engine and the call that owns the
//! `Next` are polled by the same task: nothing is woken then (a task that wakes itself is
//! re-queued, and on a multi-threaded runtime that wakes another worker). A login or a probe
//! running in its own task is woken as usual.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use http::Extensions;
use redial_tower::core::Failure;
use redial_tower::{AttemptError, BoxError, Detach, RetryBody};
use reqwest_middleware::Next;
use tower_service::Service;

use crate::convert::{detached_request, response_to_http, Inbound, RequestBody, Template};

type Reply = reqwest_middleware::Result<reqwest::Response>;

/// Lock a mutex that a panic elsewhere may have poisoned: the data is a queue of plain values,
/// still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keep `waker` to be woken (no clone when the one kept already wakes the same task).
fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(kept) => kept.clone_from(waker),
        none => *none = Some(waker.clone()),
    }
}

/// An attempt for the call that owns the rest of the chain.
pub(crate) struct Job {
    pub(crate) req: reqwest::Request,
    pub(crate) reply: Replier,
}

/// Where the engine leaves its attempts for the call that owns the rest of the chain.
#[derive(Default)]
pub(crate) struct Mailbox(Mutex<MailboxState>);

#[derive(Default)]
struct MailboxState {
    jobs: Vec<Job>,
    /// The driver's waker, registered only while it is not polling (it looks at the mailbox
    /// again before it returns, so a job left while it polls needs no wake).
    waker: Option<Waker>,
    /// The call has ended: jobs are no longer taken.
    closed: bool,
}

impl Mailbox {
    /// Leave a job; it is given back if the call has ended.
    fn post(&self, job: Job) -> Option<Job> {
        let mut state = lock(&self.0);
        if state.closed {
            return Some(job);
        }
        // One job is the common case: room for one (a `Vec`'s first growth would make room for
        // four, a kilobyte, past the allocator's fast path).
        state.jobs.reserve_exact(1);
        state.jobs.push(job);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        None
    }

    /// The driver starts polling: jobs left from now on wake nobody.
    pub(crate) fn polling(&self) {
        lock(&self.0).waker = None;
    }

    /// Take the jobs left so far into `into` (an empty one: the two buffers trade places).
    pub(crate) fn take(&self, into: &mut Vec<Job>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut lock(&self.0).jobs, into);
    }

    /// Wake the driver if it sleeps (an attempt of another task gave up: its request is to be
    /// dropped). While the driver polls, it has no waker here, and looks again before it sleeps.
    fn nudge(&self) {
        let waker = lock(&self.0).waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The driver is done polling: true if jobs came meanwhile (poll again), else it is woken
    /// by the next one.
    pub(crate) fn idle(&self, waker: &Waker) -> bool {
        let mut state = lock(&self.0);
        if !state.jobs.is_empty() {
            return true;
        }
        register(&mut state.waker, waker);
        false
    }

    /// The call has ended: refuse new jobs, and drop the ones not taken (their attempts see
    /// the call ended).
    pub(crate) fn close(&self) {
        let jobs = {
            let mut state = lock(&self.0);
            state.closed = true;
            state.waker = None;
            std::mem::take(&mut state.jobs)
        };
        drop(jobs);
    }
}

/// One attempt's reply, from the driver to the attempt's future.
#[derive(Default)]
struct Slot(Mutex<SlotState>);

#[derive(Default)]
struct SlotState {
    reply: Option<Reply>,
    answered: bool,
    /// The attempt's future, waiting.
    waker: Option<Waker>,
    /// The driver dropped the job unanswered (the call ended).
    abandoned: bool,
    /// The attempt's future is gone (it timed out): its request need not go on.
    cancelled: bool,
}

/// The driver's end of a [`Slot`]. Dropped unanswered, it tells the attempt the call ended.
pub(crate) struct Replier(Arc<Slot>);

impl Replier {
    /// Whether the attempt's future is gone.
    pub(crate) fn is_cancelled(&self) -> bool {
        lock(&(self.0).0).cancelled
    }

    /// Answer the attempt. `current` is the driver's waker: the attempt's future is not woken
    /// when the same task polls both (the driver polls the engine next).
    pub(crate) fn send(self, reply: Reply, current: &Waker) {
        let waker = {
            let mut state = lock(&(self.0).0);
            state.reply = Some(reply);
            state.answered = true;
            state.waker.take()
        };
        if let Some(waker) = waker.filter(|w| !w.will_wake(current)) {
            waker.wake();
        }
    }
}

impl Drop for Replier {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&(self.0).0);
            if state.answered || state.cancelled {
                return;
            }
            state.abandoned = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[derive(Clone)]
pub(crate) struct Attempts {
    mailbox: Arc<Mailbox>,
    background: Background,
}

/// The clients for what the engine sends on its own once the call that started it has ended.
#[derive(Clone, Default)]
pub(crate) struct Background {
    /// The client given with `RedialMiddleware::with_client`.
    pub(crate) given: Option<reqwest::Client>,
    /// Without one, a default client, made at the first need: a login dropped with its call
    /// would fail and hold every caller to the login backoff (a background renewal is started
    /// by a call that does not wait for it), and a probe that could not be sent would leave
    /// the host in failover mode for good.
    pub(crate) default: Arc<std::sync::OnceLock<Option<reqwest::Client>>>,
}

impl Background {
    fn client(&self, detached: Option<redial_tower::Detached>) -> Option<reqwest::Client> {
        detached?;
        match &self.given {
            Some(client) => Some(client.clone()),
            None => self.default.get_or_init(|| reqwest::Client::builder().build().ok()).clone(),
        }
    }
}

impl Attempts {
    pub(crate) fn new(mailbox: Arc<Mailbox>, background: Background) -> Self {
        Attempts { mailbox, background }
    }
}

impl Service<http::Request<RetryBody<RequestBody>>> for Attempts {
    type Response = http::Response<Inbound>;
    type Error = BoxError;
    type Future = AttemptFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<RetryBody<RequestBody>>) -> AttemptFuture {
        let detached = req.extensions().get::<redial_tower::Detached>().copied();
        let req = match detached_request(req) {
            Ok(req) => req,
            Err(e) => return AttemptFuture(State::Failed(Some(e.into()))),
        };
        // Only a login or a probe can outlive the call that drives it; with a background
        // client, keep what is needed to send it on its own (their bodies are bytes).
        let background = self.background.client(detached);
        // A renewal outlives its call as a rule (the call does not wait for it): sent through
        // the chain, it would be cut off when the call ends and sent again from the spare.
        if detached == Some(redial_tower::Detached::Renewal) {
            if let Some(client) = background {
                return AttemptFuture(State::Background(Box::pin(client.execute(req))));
            }
        }
        let spare = background.as_ref().and_then(|client| Some(Box::new((req.try_clone()?, client.clone()))));
        let slot = Arc::new(Slot::default());
        let job = Job { req, reply: Replier(slot.clone()) };
        match self.mailbox.post(job) {
            None => AttemptFuture(State::Waiting { slot, spare, mailbox: self.mailbox.clone() }),
            // The call has ended (nobody waits on the slot: dropping its replier wakes nobody).
            Some(Job { req, .. }) => match background {
                Some(client) => AttemptFuture(State::Background(Box::pin(client.execute(req)))),
                None => AttemptFuture(State::Failed(Some(Box::new(CallEnded)))),
            },
        }
    }
}

/// The future of one attempt.
pub(crate) struct AttemptFuture(State);

enum State {
    Failed(Option<BoxError>),
    Waiting { slot: Arc<Slot>, spare: Option<Box<(reqwest::Request, reqwest::Client)>>, mailbox: Arc<Mailbox> },
    Background(Pin<Box<dyn Future<Output = reqwest::Result<reqwest::Response>> + Send>>),
}

impl Future for AttemptFuture {
    type Output = Result<http::Response<Inbound>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let state = &mut self.get_mut().0;
        loop {
            match state {
                State::Failed(e) => return Poll::Ready(Err(e.take().expect("AttemptFuture polled after completion"))),
                State::Waiting { slot, spare, .. } => {
                    let mut s = lock(&slot.0);
                    match s.reply.take() {
                        Some(Ok(res)) => return Poll::Ready(Ok(response_to_http(res))),
                        Some(Err(e)) => return Poll::Ready(Err(unwrap_error(e))),
                        None if !s.abandoned => {
                            register(&mut s.waker, cx.waker());
                            return Poll::Pending;
                        }
                        None => {}
                    }
                    drop(s);
                    match spare.take().map(|spare| *spare) {
                        Some((req, client)) => *state = State::Background(Box::pin(client.execute(req))),
                        None => return Poll::Ready(Err(Box::new(CallEnded))),
                    }
                }
                State::Background(fut) => {
                    return fut.as_mut().poll(cx).map(|r| r.map(response_to_http).map_err(Into::into));
                }
            }
        }
    }
}

impl Drop for AttemptFuture {
    fn drop(&mut self) {
        if let State::Waiting { slot, mailbox, .. } = &self.0 {
            {
                let mut s = lock(&slot.0);
                if s.answered || s.abandoned {
                    return;
                }
                s.cancelled = true;
                s.waker = None;
            }
            // The driver drops the request (and frees its connection) at once, even when this
            // attempt belonged to a login or a probe in a task of its own.
            mailbox.nudge();
        }
    }
}

/// The call's own attempts, each sent through the rest of the chain as the engine makes it.
///
/// Every attempt starts from the caller's extensions; those of the last attempt answered are
/// left in `last`, to be the caller's afterwards (as if there had been one attempt), with the
/// response's URL when it is not the caller's.
pub(crate) struct Direct<'a> {
    pub(crate) next: Next<'a>,
    pub(crate) extensions: &'a Extensions,
    pub(crate) template: &'a Template,
    pub(crate) last: &'a Mutex<Option<Answered>>,
}

/// What the last attempt answered left for the call.
pub(crate) struct Answered {
    pub(crate) extensions: Extensions,
    /// The response's URL, when it is not the caller's (reqwest followed a redirect, or the
    /// attempt went to another endpoint). Boxed: it is rare, and the call's future holds it.
    pub(crate) final_url: Option<Box<reqwest::Url>>,
    /// Whether reqwest knew the response body's exact length (`content_length`): a body read
    /// by the engine knows it once read, and must not show one the caller would not have had.
    pub(crate) length_known: bool,
}

/// The future of one of the call's own attempts.
pub(crate) type DirectFuture<'a> = Pin<Box<dyn Future<Output = Result<http::Response<Inbound>, BoxError>> + Send + 'a>>;

impl<'a> Service<http::Request<RetryBody<RequestBody>>> for Direct<'a> {
    type Response = http::Response<Inbound>;
    type Error = BoxError;
    type Future = DirectFuture<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<RetryBody<RequestBody>>) -> DirectFuture<'a> {
        let (next, mut extensions, template, last) =
            (self.next.clone(), self.extensions.clone(), self.template, self.last);
        // An attempt reqwest cannot take (a login named an endpoint it refuses) never left:
        // read as reqwest's builder error is, final.
        let attempt = template.request(req).map_err(|e| unwrap_error(reqwest_middleware::Error::Reqwest(e)));
        Box::pin(async move {
            let res = next.run(attempt?, &mut extensions).await;
            // Not the caller's URL: redirected, or sent to another endpoint.
            let final_url =
                res.as_ref().ok().filter(|res| res.url() != template.url()).map(|res| Box::new(res.url().clone()));
            let length_known = res.as_ref().is_ok_and(|res| res.content_length().is_some());
            *lock(last) = Some(Answered { extensions, final_url, length_known });
            match res {
                Ok(res) => Ok(response_to_http(res)),
                Err(e) => Err(unwrap_error(e)),
            }
        })
    }
}

/// Where a call's logins and probes go: the call's mailbox (made at the first one), then the
/// background client once the call has ended.
pub(crate) struct Detacher<'a> {
    pub(crate) mailbox: &'a OnceLock<Arc<Mailbox>>,
    pub(crate) background: &'a Background,
}

impl<'a, 'n> Detach<Direct<'n>, RequestBody> for Detacher<'a> {
    type Body = RequestBody;
    type ResponseBody = Inbound;
    type Service = Attempts;

    fn detach(&self, _: &Direct<'n>) -> Option<Attempts> {
        let mailbox = self.mailbox.get_or_init(Default::default).clone();
        Some(Attempts::new(mailbox, self.background.clone()))
    }
}

/// The engine sees the transport's own error, not the middleware wrapper around it, and is told
/// what reqwest knows of it: a connect error never left, a timeout is a timeout (anything else
/// goes to the layer's failure classifier). A middleware's own error (after this one in the
/// chain: signing, a local check) is final, as reqwest-retry has it: sending the call again
/// would meet it again.
fn unwrap_error(e: reqwest_middleware::Error) -> BoxError {
    let e = match e {
        reqwest_middleware::Error::Reqwest(e) => reqwest_middleware::Error::Reqwest(without_userinfo(e)),
        other => other,
    };
    match e {
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => {
            Box::new(AttemptError::new(Failure::Connect, e.into()))
        }
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => {
            Box::new(AttemptError::new(Failure::Timeout, e.into()))
        }
        // A request reqwest could not build never left, and one its redirect policy stopped
        // (a loop, too many, refused) would stop the same way again: neither is sent again.
        reqwest_middleware::Error::Reqwest(e) if e.is_builder() || e.is_redirect() => {
            Box::new(AttemptError::final_error(e.into()))
        }
        reqwest_middleware::Error::Reqwest(e) => Box::new(e),
        reqwest_middleware::Error::Middleware(e) => Box::new(AttemptError::final_error(e.into())),
    }
}

/// `e` without the user name and password of its URL: a reqwest error shows its URL in its
/// text and `Debug`, and the redial error that keeps it as its source would show them too.
fn without_userinfo(mut e: reqwest::Error) -> reqwest::Error {
    if let Some(url) = e.url_mut() {
        if url.password().is_some() {
            let _ = url.set_password(None);
        }
        if !url.username().is_empty() {
            let _ = url.set_username("");
        }
    }
    e
}

/// A login or a failover probe outlived the call that started it, and there was no client to
/// send it on its own (the default one could not be built).
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    fn job() -> (Job, Arc<Slot>) {
        let slot = Arc::new(Slot::default());
        let req = reqwest::Request::new(http::Method::GET, "http://127.0.0.1/".parse().unwrap());
        (Job { req, reply: Replier(slot.clone()) }, slot)
    }

    fn mailbox() -> Arc<Mailbox> {
        Arc::default()
    }

    #[test]
    fn a_job_left_while_the_driver_polls_wakes_nobody_and_is_seen_before_it_sleeps() {
        let mailbox = Mailbox::default();
        let (count, w) = waker();
        assert!(!mailbox.idle(&w), "nothing to do: the driver sleeps");
        mailbox.polling();
        assert!(mailbox.post(job().0).is_none());
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "no wake while the driver polls");
        assert!(mailbox.idle(&w), "the driver sees the job before it sleeps");
        let mut jobs = Vec::new();
        mailbox.take(&mut jobs);
        assert_eq!(jobs.len(), 1);
    }

    #[test]
    fn a_job_left_by_another_task_wakes_the_sleeping_driver() {
        let mailbox = Mailbox::default();
        let (count, w) = waker();
        assert!(!mailbox.idle(&w));
        assert!(mailbox.post(job().0).is_none());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_closed_mailbox_gives_the_job_back_and_drops_those_not_taken() {
        let mailbox = Mailbox::default();
        let (j, slot) = job();
        assert!(mailbox.post(j).is_none());
        mailbox.close();
        assert!(lock(&slot.0).abandoned, "the attempt learns the call ended");
        assert!(mailbox.post(job().0).is_some());
    }

    #[test]
    fn a_reply_wakes_an_attempt_of_another_task_only() {
        let (same_count, same) = waker();
        let (j, slot) = job();
        lock(&slot.0).waker = Some(same.clone());
        j.reply.send(Err(reqwest_middleware::Error::middleware(std::io::Error::other("x"))), &same);
        assert_eq!(same_count.0.load(Ordering::SeqCst), 0, "the driver polls the engine next");
        assert!(lock(&slot.0).reply.is_some() && !lock(&slot.0).abandoned);

        let (other_count, other) = waker();
        let (j, slot) = job();
        lock(&slot.0).waker = Some(other);
        j.reply.send(Err(reqwest_middleware::Error::middleware(std::io::Error::other("x"))), &same);
        assert_eq!(other_count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_attempt_dropped_unanswered_is_cancelled_and_wakes_a_sleeping_driver_only() {
        let mailbox = mailbox();
        let (count, w) = waker();

        // Dropped while the driver polls (the engine timed it out): nobody is woken.
        mailbox.polling();
        let (j, slot) = job();
        drop(AttemptFuture(State::Waiting { slot, spare: None, mailbox: mailbox.clone() }));
        assert!(j.reply.is_cancelled());
        drop(j);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);

        // Dropped by another task (a login's timeout) while the driver sleeps: it is woken, to
        // drop the request and free its connection.
        assert!(!mailbox.idle(&w));
        let (j, slot) = job();
        drop(AttemptFuture(State::Waiting { slot, spare: None, mailbox: mailbox.clone() }));
        assert!(j.reply.is_cancelled());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn without_a_given_client_logins_and_probes_get_a_default_one() {
        let background = Background::default();
        assert!(background.client(None).is_none());
        assert!(background.client(Some(redial_tower::Detached::Login)).is_some());
        assert!(background.client(Some(redial_tower::Detached::Probe)).is_some());
        let given = Background { given: Some(reqwest::Client::new()), ..Background::default() };
        assert!(given.client(Some(redial_tower::Detached::Login)).is_some());
        assert!(given.client(None).is_none(), "the call's own attempts never go around the chain");
    }

    #[tokio::test]
    async fn an_abandoned_attempt_without_a_spare_says_the_call_ended() {
        let (j, slot) = job();
        drop(j);
        let err = AttemptFuture(State::Waiting { slot, spare: None, mailbox: mailbox() }).await.unwrap_err();
        assert!(err.to_string().contains("has ended"), "{err}");
    }
}
