//! [`ResponseFuture`]: the engine. One pinned state machine drives every logical request:
//!
//! ```text
//! Buffer ─▶ Ready ─▶ Call ─▶ (Inspect) ─▶ decide ─┬─▶ Return
//!             ▲                                   ├─▶ Sleep ─▶ Ready   (retry)
//!             └────────────── rewrite ◀───────────┤
//!                                                 └─▶ Fail
//! ```
//!
//! Deciding is the pure [`redial_core::decide`]; this file only carries its result out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::{request, response, HeaderMap, Request, Response, StatusCode, Uri};
use http_body::Body;
use pin_project_lite::pin_project;
use redial_core::auth::{LoginError, LoginFailureKind};
use redial_core::backoff::SplitMix64;
use redial_core::rate::Reservation;
use redial_core::{
    decide, AddIdempotencyKey, Advice, Attempt, Body as BodyView, Classification, Decision, FailReason, Failure, Kind,
    NotReplayable, Outcome, Policy, Report, RequestHead, RequestLimits, ResponseHead, RetrySafe, Rewrite, Safety,
    Throttle, VendorError,
};
use tokio::sync::{AcquireError, OwnedSemaphorePermit};
use tokio::time::{sleep_until, Instant, Sleep};
use tower_service::Service;
use tracing::Span;

use crate::auth::{self, BoxFuture, Lease, Token};
use crate::body::{ResponseBody, RetryBody};
use crate::detach::{Detach, Inner};
use crate::error::{Error, ErrorKind};
use crate::failure::AttemptError;
use crate::hooks::{FailoverMode, ReconcileRequest, Verdict};
use crate::hosts::{Host, HostId};
use crate::layer::Shared;
use crate::BoxError;

pin_project! {
    /// The future of a [`Retry`](crate::Retry) call: every attempt of one logical request.
    pub struct ResponseFuture<S, B, RB, D = Inner>
    where
        S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
    {
        #[pin]
        state: State<S::Future, B, RB>,
        #[pin]
        timer: Option<Sleep>,
        svc: S,
        detach: D,
        span: Span,
        engine: Engine<B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, RB> {
        /// Reading the request body into memory so it can be replayed.
        Buffer { #[pin] body: B, first: Option<Bytes>, rest: BytesMut, trailers: Option<Box<HeaderMap>> },
        /// Waiting for the inner service to be ready for an attempt.
        Ready,
        /// An attempt is in flight.
        Call { #[pin] fut: F },
        /// Reading (at most the inspect limit of) the response body.
        Inspect { read: Option<Box<Reading<RB>>> },
        /// Waiting for a login to give a token.
        AuthWait { wait: BoxFuture<()> },
        /// Waiting for a concurrency permit.
        Acquire { wait: BoxFuture<Result<OwnedSemaphorePermit, AcquireError>> },
        /// Waiting for a rate limiter's store to reserve a slot.
        Reserve { slot: BoxFuture<std::time::Instant> },
        /// Waiting for a rate-limit slot (the timer holds the slot's time).
        Pace,
        /// Waiting for the reconcile hook's verdict.
        Reconcile { verdict: BoxFuture<Verdict> },
        /// Waiting before the next attempt.
        Sleep,
        Done,
    }
}

struct Reading<RB> {
    body: Pin<Box<RB>>,
    head: response::Parts,
    received_at: SystemTime,
    first: Option<Bytes>,
    rest: BytesMut,
    /// What the last frame brought beyond `limit`: kept as it came, never copied.
    over: Option<Bytes>,
    trailers: Option<Box<HeaderMap>>,
}

impl<RB> Reading<RB> {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.len() + self.over.as_ref().map_or(0, Bytes::len)
    }

    /// Add a frame's data: the first as it is (no copy); then up to `limit` bytes in all are
    /// copied together, and what a frame brings beyond that is kept apart, as it came (a
    /// 64 MiB frame after a small one is not copied).
    fn push(&mut self, data: Bytes, limit: usize) {
        if self.len() >= limit {
            // Read at the limit to see whether the body ends there: it goes on.
            if !data.is_empty() {
                self.over = Some(data);
            }
            return;
        }
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(data);
            return;
        }
        if let Some(first) = self.first.take() {
            self.rest.extend_from_slice(&first);
        }
        let room = limit.saturating_sub(self.rest.len());
        if data.len() > room {
            self.rest.extend_from_slice(&data[..room]);
            self.over = Some(data.slice(room..));
        } else {
            self.rest.extend_from_slice(&data);
        }
    }

    fn bytes(&mut self) -> Bytes {
        match self.first.take() {
            Some(b) if self.rest.is_empty() => b,
            first => {
                debug_assert!(first.is_none());
                self.rest.split().freeze()
            }
        }
    }
}

/// What an attempt produced, in the form the decision's outcome is acted on.
enum Got<RB> {
    /// A response whose body was not read (whole: it is returned as it came, not taken apart).
    Head(Response<RB>),
    /// A response and the bytes read of its body (`over`: what the last frame brought beyond
    /// the limit); `rest` is what was not read.
    Read {
        head: response::Parts,
        bytes: Bytes,
        over: Option<Bytes>,
        trailers: Option<Box<HeaderMap>>,
        rest: Option<Pin<Box<RB>>>,
    },
    /// A response whose body failed (or stalled) before its end: the outcome is the failure,
    /// and the head and the bytes read go with it (nothing lost).
    Broken { head: response::Parts, bytes: Bytes, failure: Failure, source: Option<BoxError> },
    /// No response.
    Nothing(Failure, Option<BoxError>),
}

/// The body to send on every attempt (and its trailers), or why there is none to send again.
type Replay = Result<(Bytes, Option<Box<HeaderMap>>), NotReplayable>;

/// A response's head, the bytes read of its body, and whether they are the whole body.
type LastResponse = (response::Parts, Bytes, bool);

/// What the last attempt before a retry got, and what it meant.
struct Last {
    classification: Classification,
    response: Option<LastResponse>,
    /// The transport (or body) error, if the attempt ended in one.
    source: Option<BoxError>,
}

/// Everything about the logical request that outlives one attempt.
struct Engine<B> {
    shared: Arc<Shared>,
    host: HostId,
    parts: request::Parts,
    /// The body to send on every attempt, or why there is none to send again.
    replay: Replay,
    /// A body that is sent once, until it is.
    once: Option<B>,
    attempt: u32,
    history: Vec<Attempt>,
    errors: Vec<(u32, VendorError)>,
    /// When the request started: its first poll (a future not yet polled has not started,
    /// and its deadline does not run).
    start: Option<Instant>,
    /// When the attempt in flight (or the last one) was sent, since `start`.
    sent: Duration,
    idempotent: bool,
    /// Whether `svc` is ready for the next call without polling (true for the first attempt).
    ready: bool,
    /// When the attempt in flight must end.
    attempt_until: Option<Instant>,
    /// The token for the next attempt.
    token: Option<Arc<Token>>,
    /// The version of the token the attempt in flight carries.
    used_token: Option<u64>,
    /// The token version the vendor last refused for this request: only a newer one will do.
    stale: Option<u64>,
    /// The host's concurrency permit, held for the attempt in flight.
    permit: Option<OwnedSemaphorePermit>,
    /// Whether the attempt holding `permit` was sent (it counts as one at the vendor).
    permit_sent: bool,
    /// Whether the attempt in flight has its rate-limit slot.
    paced: bool,
    /// A rate-limit slot reserved and not yet used: given back if the request ends first.
    slot: Option<Instant>,
    /// The host's throttle generation the slot was reserved under.
    slot_generation: u64,
    /// What the last attempt got, when the request goes on after it (a retry, a rewrite, a
    /// token refresh, a reconcile): owned by any error that happens before the next attempt
    /// has an outcome of its own (nothing lost).
    last: Option<Box<Last>>,
    /// A failover probe passes the failover gate.
    probe: bool,
    /// This request is the trial (by its number) that finds out whether a failed-over host
    /// (one without a running probe) is back.
    trial: Option<u64>,
    /// Whether this future has been polled (a poll after the first follows a wait).
    polled: bool,
    rng: Option<SplitMix64>,
    /// The host's policy tightened by the request's [`RequestLimits`], if it had any.
    own_policy: Option<Box<Policy>>,
}

impl<S, B, RB, D> ResponseFuture<S, B, RB, D>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
    B: Body,
{
    #[inline]
    pub(crate) fn new(svc: S, detach: D, shared: Arc<Shared>, req: Request<B>) -> Self {
        let (parts, body) = req.into_parts();
        Self::start(svc, detach, shared, parts, false, move |policy| {
            let size = body.size_hint();
            match size.exact() {
                _ if body.is_end_stream() => (State::Ready, Ok((Bytes::new(), None)), None),
                Some(n) if n <= policy.replay_limit() as u64 => {
                    let buffer = State::Buffer { body, first: None, rest: BytesMut::new(), trailers: None };
                    (buffer, Ok((Bytes::new(), None)), None)
                }
                exact => {
                    let limit = policy.replay_limit();
                    let why = if exact.is_some() || size.lower() > limit as u64 {
                        NotReplayable::TooLarge { limit }
                    } else {
                        NotReplayable::Streaming
                    };
                    (State::Ready, Err(why), Some(body))
                }
            }
        })
    }

    /// A failover probe: a request whose body is already in memory, sent through the whole
    /// engine (token, limits) but past the failover gate.
    pub(crate) fn probe(svc: S, detach: D, shared: Arc<Shared>, req: Request<Bytes>) -> Self {
        let (parts, body) = req.into_parts();
        Self::start(svc, detach, shared, parts, true, |_| (State::Ready, Ok((body, None)), None))
    }

    /// The future, made in one piece (it is large: no copy of it on the way out). `body`
    /// decides, by the host's policy, the first state, the replay buffer and the body sent once.
    #[inline]
    fn start(
        svc: S,
        detach: D,
        shared: Arc<Shared>,
        mut parts: request::Parts,
        probe: bool,
        body: impl FnOnce(&Policy) -> (State<S::Future, B, RB>, Replay, Option<B>),
    ) -> Self {
        let host_id = shared.hosts.lookup(&parts.uri);
        let host = shared.hosts.get(host_id);
        let policy = &host.policy;
        if (policy.add_idempotency_key() || parts.extensions.get::<AddIdempotencyKey>().is_some())
            && !parts.headers.contains_key(IDEMPOTENCY_KEY)
        {
            let key = uuid::Uuid::new_v4().hyphenated().to_string();
            if let Ok(value) = http::HeaderValue::from_str(&key) {
                parts.headers.insert(IDEMPOTENCY_KEY, value);
            }
        }
        let idempotent = policy.idempotent_methods().contains(&parts.method)
            || (policy.honor_idempotency_key() && parts.headers.contains_key(IDEMPOTENCY_KEY))
            || parts.extensions.get::<RetrySafe>().is_some();
        let span = tracing::debug_span!(
            "redial",
            vendor = host.profile.name(),
            method = %parts.method,
            host = parts.uri.host().unwrap_or(""),
            path = parts.uri.path(),
        );
        let own_policy = parts.extensions.get::<RequestLimits>().map(|limits| Box::new(limits.apply(policy)));
        let (state, replay, once) = body(policy);
        ResponseFuture {
            state,
            timer: None,
            svc,
            detach,
            span,
            engine: Engine {
                shared,
                host: host_id,
                parts,
                replay,
                once,
                attempt: 1,
                history: Vec::new(),
                errors: Vec::new(),
                start: None,
                idempotent,
                // A probe is sent by a task of its own, through a service not yet polled.
                ready: !probe,
                attempt_until: None,
                token: None,
                used_token: None,
                stale: None,
                permit: None,
                permit_sent: false,
                paced: false,
                slot: None,
                slot_generation: 0,
                sent: Duration::ZERO,
                last: None,
                probe,
                trial: None,
                polled: false,
                rng: None,
                own_policy,
            },
        }
    }
}

/// The most body frames one poll takes before it yields (tokio's own tasks yield after a
/// budget of operations, for the same reason).
const FRAMES_PER_POLL: u32 = 64;

const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

impl<S, B, RB, D> std::fmt::Debug for ResponseFuture<S, B, RB, D>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
{
    /// The state and the attempt, never the request (its headers may carry credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Buffer { .. } => "buffering the request body",
            State::Ready => "ready to send",
            State::Call { .. } => "attempt in flight",
            State::Inspect { .. } => "reading the response body",
            State::AuthWait { .. } => "waiting for a login",
            State::Acquire { .. } => "waiting for a concurrency permit",
            State::Reserve { .. } => "waiting for the rate limiter's store to reserve a slot",
            State::Pace => "waiting for a rate-limit slot",
            State::Reconcile { .. } => "waiting for the reconcile hook",
            State::Sleep => "waiting before a retry",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempt", &self.engine.attempt)
            .field("method", &self.engine.parts.method)
            .field("path", &self.engine.parts.uri.path())
            .finish_non_exhaustive()
    }
}

impl<S, B, RB, D> Future for ResponseFuture<S, B, RB, D>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
    D: Detach<S, B>,
{
    type Output = Result<Response<ResponseBody<RB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let eng = this.engine;
        let first_poll = !std::mem::replace(&mut eng.polled, true);
        if first_poll {
            // The request starts now: its deadline runs from here, and it counts toward the
            // host's retry budget.
            let now = Instant::now();
            eng.start = Some(now);
            if let Some(budget) = &eng.host().budget {
                budget.deposit(now.into_std());
            }
        }
        // A wait bounded by the deadline: pending until the timer fires, then the request fails.
        macro_rules! until_deadline {
            () => {{
                if !timer_fired(this.timer.as_mut(), eng.attempt_until, cx) {
                    return Poll::Pending;
                }
                this.state.set(State::Done);
                return Poll::Ready(Err(eng.deadline_error()));
            }};
        }
        // Body frames taken in this poll: a body that always has one more ready (empty frames,
        // trailers) must not hold the thread, nor keep the deadline's timer from firing.
        let mut frames = 0u32;
        loop {
            // What the attempt meant, set by each arm that ends an attempt (no tuple to move).
            let c: Classification;
            let got = match this.state.as_mut().project() {
                StateProj::Buffer { body, first, rest, trailers } => {
                    frames += 1;
                    if frames > FRAMES_PER_POLL {
                        // Yield (to be polled again at once), still bounded by the deadline.
                        cx.waker().wake_by_ref();
                        eng.arm_deadline();
                        until_deadline!()
                    }
                    let frame = match body.poll_frame(cx) {
                        Poll::Ready(frame) => frame,
                        Poll::Pending => {
                            // The caller's own body, but a stalled one must not hang the request.
                            eng.arm_deadline();
                            until_deadline!()
                        }
                    };
                    match frame {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(mut data) => {
                                let data = data.copy_to_bytes(data.remaining());
                                if first.is_none() && rest.is_empty() {
                                    *first = Some(data);
                                } else {
                                    rest.extend_from_slice(&first.take().unwrap_or_default());
                                    rest.extend_from_slice(&data);
                                }
                                let len = first.as_ref().map_or(0, Bytes::len) + rest.len();
                                if len > eng.policy().replay_limit() {
                                    this.state.set(State::Done);
                                    let e = eng
                                        .error(ErrorKind::RequestBody)
                                        .with_source("the request body is longer than its declared size".into());
                                    return Poll::Ready(Err(e));
                                }
                            }
                            Err(frame) => {
                                if let Ok(t) = frame.into_trailers() {
                                    add_trailers(trailers, t);
                                }
                            }
                        },
                        Some(Err(e)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(eng.error(ErrorKind::RequestBody).with_source(e.into())));
                        }
                        None => {
                            let data = match first.take() {
                                Some(b) if rest.is_empty() => b,
                                _ => rest.split().freeze(),
                            };
                            eng.replay = Ok((data, trailers.take()));
                            this.state.set(State::Ready);
                        }
                    }
                    continue;
                }
                StateProj::Ready => {
                    // A body sent once is gone: no path may send the request again without it.
                    if eng.once.is_none() {
                        if let Err(why) = eng.replay {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(eng.error(ErrorKind::Decided(FailReason::NotReplayable(why)))));
                        }
                    }
                    // Failover: only what the vendor still serves is sent (and, without a probe, one
                    // trial request now and then).
                    if !eng.probe && eng.trial.is_none() && eng.failover_forbids() {
                        if let Some(trial) = eng.host().failover.take_trial(&eng.host().pattern) {
                            eng.trial = Some(trial);
                        } else {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(eng.error(ErrorKind::FailoverActive)));
                        }
                    }
                    if eng.token.is_none() {
                        if let Some(source) = eng.host().auth.clone() {
                            let (svc, detach, clock) = (&*this.svc, &*this.detach, eng.shared.wall_clock);
                            let classify = eng.shared.classify_error;
                            let (lease, wait) = source.lease_or_wait(eng.stale, clock, || {
                                detach.detach(svc).map(|svc| auth::transport(svc, clock, classify))
                            });
                            match lease {
                                Lease::Ready(token) => {
                                    if let Err(e) = eng.check_endpoint(&token) {
                                        this.state.set(State::Done);
                                        return Poll::Ready(Err(eng.error(ErrorKind::AuthFailed(e))));
                                    }
                                    eng.token = Some(token);
                                }
                                Lease::Refused(e) => {
                                    this.state.set(State::Done);
                                    return Poll::Ready(Err(eng.error(ErrorKind::AuthFailed(e))));
                                }
                                Lease::Wait(_) => {
                                    let wait = wait.expect("a wait comes with Lease::Wait");
                                    // The login may need what the ready service holds.
                                    if std::mem::take(&mut eng.ready) {
                                        this.detach.unready(this.svc);
                                    }
                                    eng.arm_deadline();
                                    this.timer.set(None);
                                    this.state.set(State::AuthWait { wait });
                                    continue;
                                }
                            }
                        }
                    }
                    // Admission: a concurrency permit, then a rate slot, then send at once (a slot
                    // taken before a wait would be spent by the time the call goes).
                    if eng.permit.is_none() {
                        if let Some(sem) = eng.host().limits.concurrency.as_ref().map(|c| c.semaphore().clone()) {
                            match sem.clone().try_acquire_owned() {
                                Ok(permit) => eng.permit = Some(permit),
                                Err(_) => {
                                    // Waiting holds nothing of the inner service's.
                                    if std::mem::take(&mut eng.ready) {
                                        this.detach.unready(this.svc);
                                    }
                                    eng.arm_deadline();
                                    this.timer.set(None);
                                    this.state.set(State::Acquire { wait: Box::pin(sem.acquire_owned()) });
                                    continue;
                                }
                            }
                        }
                    }
                    if !eng.paced {
                        if let Some((reservation, now, generation)) = eng.host().limits.reserve() {
                            eng.paced = true;
                            eng.slot_generation = generation;
                            match reservation {
                                Reservation::At(at) => {
                                    let at = Instant::from_std(at);
                                    if let Some(out) = pace(eng, this.timer.as_mut(), this.state.as_mut(), at, now) {
                                        return Poll::Ready(out);
                                    }
                                    if matches!(*this.state, State::Pace) && std::mem::take(&mut eng.ready) {
                                        this.detach.unready(this.svc);
                                    }
                                }
                                Reservation::Pending(slot) => {
                                    // The store's answer may take a while: the wait holds nothing
                                    // of the inner service's, and is bounded by the deadline.
                                    if std::mem::take(&mut eng.ready) {
                                        this.detach.unready(this.svc);
                                    }
                                    eng.arm_deadline();
                                    this.timer.set(None);
                                    this.state.set(State::Reserve { slot });
                                }
                            }
                            if !matches!(*this.state, State::Ready) {
                                continue;
                            }
                        }
                    }
                    if !eng.ready {
                        let ready = match this.svc.poll_ready(cx) {
                            Poll::Ready(r) => r,
                            Poll::Pending => {
                                // The rate slot is for a send now: while the service is not
                                // ready it is given back, and taken again when it is.
                                if eng.paced {
                                    eng.release_slot();
                                    eng.paced = false;
                                }
                                // A service that never gets ready is still bounded by the deadline.
                                eng.arm_deadline();
                                until_deadline!()
                            }
                        };
                        if let Err(e) = ready {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(eng.error(ErrorKind::NotReady).with_source(e.into())));
                        }
                    }
                    // Nothing is sent once the deadline has passed: a login, a reconcile hook or
                    // a wait for readiness may have taken the rest of it, and the attempt would
                    // have no time at all (a create would end ambiguous). The first attempt of
                    // the first poll started in this poll: its clock is not read again.
                    if !(first_poll && eng.attempt == 1) && eng.deadline().is_some_and(|d| Instant::now() >= d) {
                        eng.release_slot();
                        eng.paced = false;
                        eng.release_permit();
                        this.state.set(State::Done);
                        return Poll::Ready(Err(eng.deadline_error()));
                    }
                    // A token leased before the waits for a permit, a slot or readiness may have
                    // expired since: never send one past its expiry; lease again.
                    if eng.token.as_ref().is_some_and(|t| t.expires_at.is_some_and(|at| at <= Instant::now())) {
                        eng.token = None;
                        // The wait for a login must not hold the rate slot (the send would be
                        // logged earlier than it goes) nor the host's permit.
                        eng.release_slot();
                        eng.paced = false;
                        eng.release_permit();
                        // The service is ready: it stays so unless the lease must wait for a
                        // login (which gives its readiness back first).
                        eng.ready = true;
                        continue;
                    }
                    // A throttle since the slot was reserved: its pause and lowered limit apply
                    // to this call too (reserved again); a permit held from before the
                    // concurrency limit dropped pays its debt, and the request waits for another.
                    if eng.paced && eng.host().limits.throttled_since(eng.slot_generation) {
                        eng.release_slot();
                        eng.paced = false;
                        eng.ready = true;
                        continue;
                    }
                    if let Some(permit) = eng.permit.take() {
                        let kept = match &eng.host().limits.concurrency {
                            Some(concurrency) => concurrency.keep_for_send(permit),
                            None => Some(permit),
                        };
                        match kept {
                            Some(permit) => eng.permit = Some(permit),
                            None => {
                                eng.release_slot();
                                eng.paced = false;
                                eng.ready = true;
                                continue;
                            }
                        }
                    }
                    eng.ready = false;
                    eng.slot = None; // used
                    if eng.permit.is_some() {
                        if let Some(concurrency) = &eng.host().limits.concurrency {
                            concurrency.sending();
                            eng.permit_sent = true;
                        }
                    }
                    let req = eng.next_request();
                    // The first attempt of the first poll is sent at the start, read in this
                    // poll: the clock is not read again for it.
                    let sent = (!(first_poll && eng.attempt == 1)).then(Instant::now);
                    eng.sent = sent.map_or(Duration::ZERO, |at| at.duration_since(eng.start()));
                    // Armed lazily: an attempt that completes on its first poll never touches
                    // the timer wheel.
                    eng.attempt_until = eng.attempt_deadline(sent);
                    this.timer.set(None);
                    let fut = this.svc.call(req);
                    this.state.set(State::Call { fut });
                    continue;
                }
                StateProj::Call { fut } => match fut.poll(cx) {
                    Poll::Ready(Ok(res)) => {
                        let received_at = (eng.shared.wall_clock)();
                        if eng.wants_body(res.status(), res.headers(), received_at) {
                            let (head, body) = res.into_parts();
                            let read = Reading {
                                body: Box::pin(body),
                                head,
                                received_at,
                                first: None,
                                rest: BytesMut::new(),
                                over: None,
                                trailers: None,
                            };
                            this.state.set(State::Inspect { read: Some(Box::new(read)) });
                            continue;
                        }
                        c = eng.classify_response(res.status(), res.headers(), received_at, BodyView::NotRead);
                        if eng.plain_success(&c) {
                            // What the general path below does for this outcome, without its
                            // steps that do nothing here: decide() returns Return at once for
                            // this advice, and there is no permit, trial, throttle or report.
                            eng.trace(&c, &Decision::Return, Some(res.status()), None);
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(res.map(ResponseBody::passthrough)));
                        }
                        Got::Head(res)
                    }
                    Poll::Ready(Err(e)) => {
                        let e: BoxError = e.into();
                        // An error that says itself what it means is taken at its word.
                        let (failure, e) = match e.downcast::<AttemptError>() {
                            Ok(e) => (e.failure(), e.into_source()),
                            Err(e) => ((eng.shared.classify_error)(&*e), e),
                        };
                        c = eng.classify_failure(failure);
                        Got::Nothing(failure, Some(e))
                    }
                    Poll::Pending => {
                        if !timer_fired(this.timer.as_mut(), eng.attempt_until, cx) {
                            return Poll::Pending;
                        }
                        c = eng.classify_failure(Failure::Timeout);
                        Got::Nothing(Failure::Timeout, None)
                    }
                },
                StateProj::Inspect { read } => {
                    let Some(r) = read.as_mut() else { unreachable!("inspecting without a response") };
                    let limit = eng.policy().inspect_limit();
                    let end = loop {
                        if r.len() > limit {
                            break ReadEnd::Limit;
                        }
                        frames += 1;
                        if frames > FRAMES_PER_POLL {
                            // Yield (to be polled again at once), still bounded by the attempt's end.
                            cx.waker().wake_by_ref();
                            if !timer_fired(this.timer.as_mut(), eng.attempt_until, cx) {
                                return Poll::Pending;
                            }
                            break ReadEnd::Failed(Failure::Timeout, None);
                        }
                        // Exactly at the limit, the body may be whole: a frame there now says
                        // whether it ends (its end, or more), and none is not waited for.
                        let full = r.len() == limit;
                        match r.body.as_mut().poll_frame(cx) {
                            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                                Ok(mut data) => r.push(data.copy_to_bytes(data.remaining()), limit),
                                Err(frame) => {
                                    if let Ok(t) = frame.into_trailers() {
                                        add_trailers(&mut r.trailers, t);
                                    }
                                }
                            },
                            Poll::Ready(Some(Err(e))) => break ReadEnd::Failed(Failure::BodyRead, Some(e.into())),
                            Poll::Ready(None) => break ReadEnd::Complete,
                            Poll::Pending if full => break ReadEnd::Limit,
                            Poll::Pending => {
                                if !timer_fired(this.timer.as_mut(), eng.attempt_until, cx) {
                                    return Poll::Pending;
                                }
                                break ReadEnd::Failed(Failure::Timeout, None);
                            }
                        }
                    };
                    let Some(r) = read.take() else { unreachable!() };
                    let mut r = *r;
                    match end {
                        ReadEnd::Failed(failure, source) => {
                            // The vendor answered: it had the request, and its head says what it
                            // made of it. A refusal the profile re-sends for any method (a 429,
                            // Responsys's 503) is the outcome whatever became of its body: its
                            // wait, its throttle. Behind any other head (a 2xx carried out, a
                            // gateway's 502 that may have passed the call on) a rule for "no
                            // response" that re-sends any method is for idempotent ones only.
                            let bytes = r.bytes();
                            let view = BodyView::Prefix(&bytes[..bytes.len().min(limit)]);
                            let answer = eng.classify_response(r.head.status, &r.head.headers, r.received_at, view);
                            c = if matches!(&answer.advice, Advice::Retry(a) if a.safety() == Safety::AnyMethod) {
                                answer
                            } else {
                                let mut broken = eng.classify_failure(failure);
                                if let Advice::Retry(rule) = &mut broken.advice {
                                    *rule = rule.clone().idempotent_only();
                                }
                                broken
                            };
                            Got::Broken { head: r.head, bytes, failure, source }
                        }
                        ReadEnd::Complete | ReadEnd::Limit => {
                            let complete = matches!(end, ReadEnd::Complete);
                            let bytes = r.bytes();
                            // The last frame may overshoot the limit: classification sees at most the
                            // limit; the caller still gets every byte.
                            let view = if complete {
                                BodyView::Complete(&bytes)
                            } else {
                                BodyView::Prefix(&bytes[..bytes.len().min(limit)])
                            };
                            c = eng.classify_response(r.head.status, &r.head.headers, r.received_at, view);
                            let rest = (!complete).then_some(r.body);
                            Got::Read { head: r.head, bytes, over: r.over, trailers: r.trailers, rest }
                        }
                    }
                }
                StateProj::AuthWait { wait } => {
                    if wait.as_mut().poll(cx).is_ready() {
                        // A wait that ends at or past the deadline (the backoff window opening
                        // then) leases nothing: the lease would start a login for no one.
                        if eng.deadline().is_none_or(|d| Instant::now() < d) {
                            this.state.set(State::Ready);
                            continue;
                        }
                    } else if !timer_fired(this.timer.as_mut(), eng.attempt_until, cx) {
                        return Poll::Pending;
                    }
                    // The deadline passed while waiting for a credential: a failed login is why
                    // only if no login is running (an older failure is not this request's). A
                    // login still running after one that failed: the deadline is why, and the
                    // failed login is its source (what kept the request waiting).
                    this.state.set(State::Done);
                    let (running, last) = eng.host().auth.as_ref().map_or((false, None), |s| s.login_state());
                    let err = match last {
                        Some(e) if !running => eng.error(ErrorKind::AuthFailed(e)),
                        earlier => {
                            let reason =
                                FailReason::DeadlineExceeded { wait: Duration::ZERO, remaining: Duration::ZERO };
                            let err = eng.error(ErrorKind::Decided(reason));
                            // What the last attempt got comes first: its transport error, if it
                            // got no response, stays the source (the failed login is the token
                            // source's last_error()).
                            match earlier {
                                Some(e) if std::error::Error::source(&err).is_none() => err.with_source(Box::new(e)),
                                _ => err,
                            }
                        }
                    };
                    return Poll::Ready(Err(err));
                }
                StateProj::Acquire { wait } => {
                    if let Poll::Ready(permit) = wait.as_mut().poll(cx) {
                        // The semaphore is never closed; an error would only mean no limit.
                        eng.permit = permit.ok();
                        this.state.set(State::Ready);
                        continue;
                    }
                    until_deadline!()
                }
                StateProj::Reserve { slot } => {
                    let Poll::Ready(at) = slot.as_mut().poll(cx) else { until_deadline!() };
                    this.timer.set(None);
                    this.state.set(State::Ready);
                    if let Some(out) =
                        pace(eng, this.timer.as_mut(), this.state.as_mut(), Instant::from_std(at), Instant::now())
                    {
                        return Poll::Ready(out);
                    }
                    continue;
                }
                StateProj::Pace => {
                    if let Some(sleep) = this.timer.as_mut().as_pin_mut() {
                        ready!(sleep.poll(cx));
                    }
                    this.timer.set(None);
                    this.state.set(State::Ready);
                    continue;
                }
                StateProj::Reconcile { verdict } => {
                    let verdict = match verdict.as_mut().poll(cx) {
                        Poll::Ready(v) => v,
                        Poll::Pending => until_deadline!(),
                    };
                    match verdict {
                        Verdict::Applied(res) => {
                            tracing::info!(
                                attempt = eng.attempt,
                                "reconcile: the call had taken effect; returning its result"
                            );
                            this.state.set(State::Done);
                            let (mut head, body) = res.into_parts();
                            let mut report = eng.take_report();
                            report.reconciled = true;
                            head.extensions.insert(report);
                            return Poll::Ready(Ok(Response::from_parts(
                                head,
                                ResponseBody::prefixed(body, None, None),
                            )));
                        }
                        // Not applied, or undone by the hook: send it once more.
                        _ => {
                            tracing::info!(
                                attempt = eng.attempt,
                                "reconcile: the call had not taken effect; sending it again"
                            );
                            eng.attempt += 1;
                            this.state.set(State::Ready);
                            continue;
                        }
                    }
                }
                StateProj::Sleep => {
                    if let Some(sleep) = this.timer.as_mut().as_pin_mut() {
                        ready!(sleep.poll(cx));
                    }
                    eng.attempt += 1;
                    this.timer.set(None);
                    this.state.set(State::Ready);
                    continue;
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };

            // An attempt is over: decide, then act.
            let status = got.status();
            let failure = got.failure();
            let decision = eng.decide(&c);
            eng.trace(&c, &decision, status, failure);
            eng.paced = false;
            let permit = eng.permit.take();
            let sent = std::mem::take(&mut eng.permit_sent);
            let throttle = (c.kind == Kind::Throttled).then_some(c.throttle);
            let limits = &eng.host().limits;
            if let (Some(concurrency), Some(permit)) = (&limits.concurrency, permit) {
                if throttle == Some(Throttle::Concurrency) && sent {
                    concurrency.throttled(Instant::now(), permit);
                } else {
                    concurrency.release(permit, sent);
                }
            }
            if throttle == Some(Throttle::Rate) {
                // Pause for the wait the decision chose (the host's policy's, when the request's
                // own limits refused it); a refused hint (over the cap or the deadline) must not
                // stop the host for its whole length.
                let pause = match &decision {
                    Decision::Retry { after, .. } => *after,
                    // The host's budget refused it, not the request's limits: as for any request.
                    Decision::Fail(FailReason::BudgetExhausted) => Duration::ZERO,
                    _ => eng.host_pause(&c),
                };
                let limits = &eng.host().limits;
                limits.throttled(Instant::now(), pause);
            }
            // The trial goes on through a token refresh or a rewrite (the vendor has not said
            // whether it is back); otherwise it ends: served as in primary mode (a success) or not.
            if !matches!(decision, Decision::RefreshAuth | Decision::Rewrite(_)) {
                if let Some(trial) = eng.trial.take() {
                    // Any answer of the primary's (a success, or its own refusal of the call) but
                    // a failover refusal or a server error.
                    let served = c.kind != Kind::Failover && status.is_some_and(|s| !s.is_server_error());
                    eng.host().failover.trial_ended(&eng.host().pattern, trial, served);
                }
            }
            if let Some(probe) =
                (c.kind == Kind::Failover).then(|| eng.host().failover.enter(&eng.host().pattern)).flatten()
            {
                match this.detach.detach(this.svc) {
                    Some(svc) => spawn_probe::<S, B, D>(svc, eng.shared.clone(), eng.host, probe),
                    None => {
                        tracing::warn!(host = &*eng.host().pattern, "failover: no service to send the probe through");
                        eng.host().failover.probe_ended(probe);
                    }
                }
            }
            match decision {
                Decision::Return if failure.is_none() => {
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(eng.respond(&c, &decision, got)));
                }
                Decision::Return => {
                    // A profile advised returning an outcome that has no response to return.
                    let reason = FailReason::Final;
                    eng.record(&c, &Decision::Fail(reason.clone()), status, failure);
                    this.state.set(State::Done);
                    return Poll::Ready(Err(eng.fail(ErrorKind::Decided(reason), c, got)));
                }
                Decision::Retry { after, .. } => {
                    eng.record(&c, &decision, status, failure);
                    eng.keep_last(c, got);
                    this.timer.set(Some(tokio::time::sleep(after)));
                    this.state.set(State::Sleep);
                }
                Decision::Rewrite(rewrite) => {
                    eng.record(&c, &decision, status, failure);
                    eng.keep_last(c, got);
                    eng.rewrite(rewrite);
                    eng.attempt += 1;
                    eng.ready = false;
                    this.timer.set(None);
                    this.state.set(State::Ready);
                }
                Decision::RefreshAuth => {
                    eng.record(&c, &decision, status, failure);
                    match (eng.host().auth.clone(), eng.used_token.take()) {
                        (Some(source), Some(version)) => {
                            source.invalidate(version);
                            eng.stale = Some(version);
                            eng.keep_last(c, got);
                            eng.attempt += 1;
                            this.timer.set(None);
                            this.state.set(State::Ready);
                        }
                        // Decided as a failure (`can_refresh_auth`): never reached.
                        _ => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(eng.fail(ErrorKind::NoTokenSource, c, got)));
                        }
                    }
                }
                Decision::Fail(reason) => {
                    eng.record(&c, &Decision::Fail(reason.clone()), status, failure);
                    this.state.set(State::Done);
                    // A configuration the vendor's answer found wanting: an error, whatever the
                    // response.
                    if reason == FailReason::NoTokenSource {
                        return Poll::Ready(Err(eng.fail(ErrorKind::NoTokenSource, c, got)));
                    }
                    if eng.shared.final_responses_as_ok && got.is_response() {
                        let mut report = eng.take_report();
                        report.gave_up = Some(reason);
                        return Poll::Ready(Ok(got.into_response(Some(report))));
                    }
                    return Poll::Ready(Err(eng.fail(ErrorKind::Decided(reason), c, got)));
                }
                Decision::Reconcile => {
                    eng.record(&c, &decision, status, failure);
                    match eng.host().reconcile.clone() {
                        Some(hook) => {
                            let request = ReconcileRequest {
                                request: eng.original_request(),
                                status,
                                failure,
                                errors: c.errors.clone(),
                            };
                            eng.keep_last(c, got);
                            eng.ready = false;
                            eng.arm_deadline();
                            this.timer.set(None);
                            this.state.set(State::Reconcile { verdict: hook.reconcile(request) });
                        }
                        None => {
                            this.state.set(State::Done);
                            let reason = FailReason::NoReconcileHook;
                            return Poll::Ready(Err(eng.fail(ErrorKind::Decided(reason), c, got)));
                        }
                    }
                }
                other => {
                    // A decision this engine does not know yet is a failure, never a loop.
                    let reason = FailReason::Final;
                    debug_assert!(false, "unknown decision {other:?}");
                    eng.record(&c, &Decision::Fail(reason.clone()), status, failure);
                    this.state.set(State::Done);
                    return Poll::Ready(Err(eng.fail(ErrorKind::Decided(reason), c, got)));
                }
            }
        }
    }
}

enum ReadEnd {
    Complete,
    Limit,
    Failed(Failure, Option<BoxError>),
}

/// A rate-limit slot at `at`, reserved at `now`, is the request's: it goes at once (the state
/// stays `Ready`), or waits in `Pace` for it; a slot at or past the deadline fails the request
/// (the error is returned).
fn pace<F, B, RB>(
    eng: &mut Engine<B>,
    mut timer: Pin<&mut Option<Sleep>>,
    mut state: Pin<&mut State<F, B, RB>>,
    at: Instant,
    now: Instant,
) -> Option<Result<Response<ResponseBody<RB>>, Error>> {
    eng.slot = Some(at);
    if at <= now {
        return None;
    }
    if let Some(deadline) = eng.deadline() {
        if at >= deadline {
            eng.release_slot();
            state.set(State::Done);
            let reason = FailReason::DeadlineExceeded { wait: at - now, remaining: deadline - now };
            return Some(Err(eng.error(ErrorKind::Decided(reason))));
        }
    }
    timer.set(Some(sleep_until(at)));
    state.set(State::Pace);
    None
}

/// Poll the timer for `until`, the time limit of the wait in progress: armed at the first wait
/// (lazily), and moved if it was left armed for another instant. True if it fired; never, if
/// the wait has no limit.
fn timer_fired(mut timer: Pin<&mut Option<Sleep>>, until: Option<Instant>, cx: &mut Context<'_>) -> bool {
    let Some(until) = until else { return false };
    match timer.as_mut().as_pin_mut() {
        Some(mut sleep) => {
            if sleep.deadline() != until {
                sleep.as_mut().reset(until);
            }
            sleep.poll(cx).is_ready()
        }
        None => {
            timer.set(Some(sleep_until(until)));
            timer.as_pin_mut().is_some_and(|t| t.poll(cx).is_ready())
        }
    }
}

impl<B> Drop for Engine<B> {
    fn drop(&mut self) {
        self.release_slot();
        self.release_permit();
        if let Some(trial) = self.trial {
            // Cancelled, or failed before it was sent: the next trial waits an interval.
            let host = self.host();
            host.failover.trial_ended(&host.pattern, trial, false);
        }
    }
}

impl<B> Engine<B> {
    /// An error between attempts: it owns the report, and the last response and its
    /// classification if an earlier attempt had one.
    fn error(&mut self, kind: ErrorKind) -> Error {
        let error = Error::new(kind, self.report());
        let Some(last) = self.last.take() else { return error };
        let Last { classification, response, source } = *last;
        let error = match response {
            Some((head, body, complete)) => error.with_response(head, body, complete),
            None => error,
        };
        let error = match source {
            Some(source) => error.with_source(source),
            None => error,
        };
        error.with_classification(classification)
    }

    /// The request's policy: its host's, tightened by its [`RequestLimits`].
    fn policy(&self) -> &Policy {
        self.own_policy.as_deref().unwrap_or(&self.host().policy)
    }

    /// When the request must be over, if it has a deadline.
    fn deadline(&self) -> Option<Instant> {
        self.policy().deadline().map(|d| self.start() + d)
    }

    /// Bound the wait in progress by the request's deadline (the timer is armed lazily).
    fn arm_deadline(&mut self) {
        self.attempt_until = self.deadline();
    }

    /// The deadline passed while waiting between attempts.
    fn deadline_error(&mut self) -> Error {
        self.error(ErrorKind::Decided(FailReason::DeadlineExceeded { wait: Duration::ZERO, remaining: Duration::ZERO }))
    }

    /// Keep what a retried attempt got, for an error that may come before the next response.
    fn keep_last<RB>(&mut self, c: Classification, got: Got<RB>) {
        let (response, source) = self.owned(got);
        self.last = Some(Box::new(Last { classification: c, response, source }));
    }

    /// What an error keeps of an attempt's outcome: the response's head and the bytes read
    /// (at most the inspect limit, unless they are the whole body), or the transport error.
    fn owned<RB>(&self, got: Got<RB>) -> (Option<LastResponse>, Option<BoxError>) {
        let limit = self.policy().inspect_limit();
        // Copied when cut: a slice would keep the whole buffer (a 64 MiB first frame) alive.
        let prefix = |bytes: Bytes| if bytes.len() > limit { Bytes::copy_from_slice(&bytes[..limit]) } else { bytes };
        match got {
            Got::Head(res) => (Some((res.into_parts().0, Bytes::new(), false)), None),
            Got::Read { head, bytes, rest: None, over: None, .. } => (Some((head, bytes, true)), None),
            Got::Read { head, bytes, .. } => (Some((head, prefix(bytes), false)), None),
            Got::Broken { head, bytes, source, .. } => (Some((head, prefix(bytes), false)), source),
            Got::Nothing(_, source) => (None, source),
        }
    }

    /// Give back the concurrency permit of the attempt that ended.
    fn release_permit(&mut self) {
        let sent = std::mem::take(&mut self.permit_sent);
        if let Some(permit) = self.permit.take() {
            if let Some(concurrency) = &self.shared.hosts.get(self.host).limits.concurrency {
                concurrency.release(permit, sent);
            }
        }
    }

    /// Give back a reserved rate slot that was not used.
    fn release_slot(&mut self) {
        if let Some(at) = self.slot.take() {
            self.shared.hosts.get(self.host).limits.release(at);
        }
    }

    fn host(&self) -> &Host {
        self.shared.hosts.get(self.host)
    }

    /// When the request started (set at the first poll, before anything reads it).
    fn start(&self) -> Instant {
        self.start.unwrap_or_else(Instant::now)
    }

    fn request_head(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.parts.method,
            uri: &self.parts.uri,
            headers: &self.parts.headers,
            body: self.replay.as_ref().ok().map(|(b, _)| &b[..]),
        }
    }

    /// The body is read when the profile needs it to classify, and for error statuses, so that
    /// an error owns what the vendor said.
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap, received_at: SystemTime) -> bool {
        let res = ResponseHead { status, headers, received_at };
        let error = status.as_u16() >= 400;
        if !error && !self.host().profile.inspect(&self.request_head(), &res) {
            return false;
        }
        // A body still encoded (a decompression layer outside redial, or none) cannot be read:
        // a vendor error in a 2xx (Marketo's 606) would pass as a success. Said once per host;
        // a 2xx goes through unread, an error's bytes are still kept for the caller.
        if let Some(encoding) = headers.get(http::header::CONTENT_ENCODING) {
            if !encoding.as_bytes().eq_ignore_ascii_case(b"identity") {
                let host = self.host();
                if !host.warned_encoded.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        host = &*host.pattern,
                        content_encoding = ?encoding,
                        "a response body redial reads for the vendor's errors came encoded: put the \
                         decompression layer inside redial (the README's stacking order)"
                    );
                }
                return error;
            }
        }
        true
    }

    fn classify_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        received_at: SystemTime,
        body: BodyView<'_>,
    ) -> Classification {
        let res = ResponseHead { status, headers, received_at };
        self.host().profile.classify(&self.request_head(), &Outcome::Response(res, body))
    }

    fn classify_failure(&self, failure: Failure) -> Classification {
        if failure == Failure::Local {
            // Stopped on this side: no vendor rule applies.
            return Classification::fail(Kind::Fatal, "refused on this side before it was sent: final");
        }
        self.host().profile.classify(&self.request_head(), &Outcome::Failure(failure))
    }

    /// A first-attempt success with nothing to report and nothing held (no concurrency
    /// permit, no failover trial): returned as it came.
    fn plain_success(&self, c: &Classification) -> bool {
        c.advice == Advice::Return
            && c.kind == Kind::Success
            && c.errors.is_empty()
            && self.history.is_empty()
            && self.permit.is_none()
            && self.trial.is_none()
    }

    fn decide(&mut self, c: &Classification) -> Decision {
        if c.advice == Advice::Return {
            // decide() returns at once for this advice; the clock and the rng are not needed.
            return Decision::Return;
        }
        self.decide_under(c, false)
    }

    /// The host's pause for a rate throttle this request gives up on: none, unless the
    /// request's own limits are why it gives up. A request's limits are its own: the host
    /// then pauses for the wait its own policy would have chosen, as for any other request.
    fn host_pause(&mut self, c: &Classification) -> Duration {
        if self.own_policy.is_none() {
            return Duration::ZERO;
        }
        match self.decide_under(c, true) {
            Decision::Retry { after, .. } => after,
            _ => Duration::ZERO,
        }
    }

    /// [`decide`] now: under the request's policy (its host's, tightened by its limits) and
    /// the host's budget; or, `host_only`, under the host's policy alone and no budget
    /// (nothing is withdrawn for a retry that is not made).
    fn decide_under(&mut self, c: &Classification, host_only: bool) -> Decision {
        let now = Instant::now();
        let shared = &*self.shared;
        let host = shared.hosts.get(self.host);
        let policy = if host_only { &host.policy } else { self.own_policy.as_deref().unwrap_or(&host.policy) };
        let ctx = redial_core::Context {
            attempt: self.attempt,
            history: &self.history,
            policy,
            idempotent: self.idempotent,
            replayable: self.replay.as_ref().map(|_| ()).map_err(|e| *e),
            elapsed: now.duration_since(self.start()),
            can_reconcile: host.reconcile.is_some(),
            can_refresh_auth: host.auth.is_some() && self.used_token.is_some(),
        };
        let budget = if host_only { None } else { host.budget.as_deref() };
        let rng = self.rng.get_or_insert_with(|| shared.rng());
        decide(c, &ctx, budget, now.into_std(), rng)
    }

    /// When the current attempt, sent at `sent`, must end: the attempt timeout or the deadline,
    /// whichever first. `None`: the first attempt, sent in the future's first poll, is timed
    /// from the request's start, read in that same poll (the clock is read once per request on
    /// the path that never waits).
    fn attempt_deadline(&self, sent: Option<Instant>) -> Option<Instant> {
        let policy = self.policy();
        let attempt = policy.attempt_timeout().map(|t| sent.unwrap_or_else(|| self.start()) + t);
        let total = policy.deadline().map(|d| self.start() + d);
        match (attempt, total) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    fn next_request(&mut self) -> Request<RetryBody<B>> {
        let body = match (&self.replay, self.once.take()) {
            (_, Some(body)) => RetryBody::streaming(body),
            (Ok((data, trailers)), None) => RetryBody::buffered(data.clone(), trailers.clone()),
            // decide() never retries a request that cannot be replayed.
            (Err(_), None) => RetryBody::buffered(Bytes::new(), None),
        };
        let mut req = Request::from_parts(self.parts.clone(), body);
        self.used_token = None;
        if let Some(token) = self.token.take() {
            if let Some(source) = &self.host().auth {
                source.attach().apply(req.headers_mut(), &token.secret);
            }
            if let Some(endpoint) = &token.endpoint {
                let mut uri = req.uri().clone().into_parts();
                let endpoint = endpoint.clone().into_parts();
                uri.scheme = endpoint.scheme;
                uri.authority = endpoint.authority;
                if let Ok(uri) = Uri::from_parts(uri) {
                    *req.uri_mut() = uri;
                }
            }
            self.used_token = Some(token.version);
        }
        req
    }

    /// Whether failover mode forbids sending this request.
    fn failover_forbids(&self) -> bool {
        let host = self.host();
        matches!(host.failover.mode(&host.pattern), FailoverMode::Secondary { .. })
            && !host.profile.allowed_in_failover(&self.request_head())
    }

    /// The request as the caller sent it (before any token), body included.
    fn original_request(&self) -> Request<Bytes> {
        let body = self.replay.as_ref().map(|(b, _)| b.clone()).unwrap_or_default();
        Request::from_parts(self.parts.clone(), body)
    }

    /// A credential's endpoint (Responsys's `endPoint`) must be a host this credential is for:
    /// a token is never sent anywhere else.
    fn check_endpoint(&self, token: &Token) -> Result<(), LoginError> {
        match &token.endpoint {
            // The host and port only: an authority's userinfo is a credential.
            Some(endpoint) if self.shared.hosts.lookup(endpoint) != self.host => Err(LoginError::new(
                LoginFailureKind::Fatal,
                format!(
                    "the login named an endpoint on {}{}, a host this credential is not configured for",
                    endpoint.host().unwrap_or("no host"),
                    endpoint.port().map(|p| format!(":{p}")).unwrap_or_default(),
                ),
            )),
            _ => Ok(()),
        }
    }

    fn rewrite(&mut self, rewrite: Rewrite) {
        if let (Rewrite::MethodOverridePost, Ok(replay)) = (rewrite, &mut self.replay) {
            crate::rewrite::method_override_post(&mut self.parts, replay);
        }
    }

    fn record(&mut self, c: &Classification, d: &Decision, status: Option<StatusCode>, failure: Option<Failure>) {
        let elapsed = Instant::now().duration_since(self.start());
        self.history.push(Attempt::new(self.attempt, status, failure, c, d, elapsed).with_sent(self.sent));
        self.errors.extend(c.errors.iter().cloned().map(|e| (self.attempt, e)));
    }

    fn report(&self) -> Report {
        let mut r = Report::new();
        r.attempts = self.history.clone();
        r.errors = self.errors.clone();
        r
    }

    fn take_report(&mut self) -> Report {
        let mut r = Report::new();
        r.attempts = std::mem::take(&mut self.history);
        r.errors = std::mem::take(&mut self.errors);
        r
    }

    fn trace(&self, c: &Classification, d: &Decision, status: Option<StatusCode>, failure: Option<Failure>) {
        let delay_ms = match d {
            Decision::Retry { after, .. } => Some(after.as_millis() as u64),
            _ => None,
        };
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    attempt = self.attempt,
                    status = status.map(|s| s.as_u16()),
                    failure = failure.map(Failure::as_str),
                    code = c.code(),
                    kind = c.kind.as_str(),
                    action = d.action().as_str(),
                    delay_ms,
                    sent_ms = self.sent.as_millis() as u64,
                    reason = %c.reason,
                    "attempt"
                )
            };
        }
        match d {
            Decision::Return => event!(tracing::Level::DEBUG),
            _ => event!(tracing::Level::INFO),
        }
    }

    fn respond<RB: Body>(&mut self, c: &Classification, d: &Decision, got: Got<RB>) -> Response<ResponseBody<RB>> {
        let worth_reporting = !self.history.is_empty() || !c.errors.is_empty() || c.kind != Kind::Success;
        let report = worth_reporting.then(|| {
            self.record(c, d, got.status(), None);
            self.take_report()
        });
        got.into_response(report)
    }

    fn fail<RB>(&mut self, kind: ErrorKind, c: Classification, got: Got<RB>) -> Error {
        let error = Error::new(kind, self.take_report());
        let error = match self.owned(got) {
            (Some((head, body, complete)), source) => {
                let error = error.with_response(head, body, complete);
                match source {
                    Some(source) => error.with_source(source),
                    None => error,
                }
            }
            (None, Some(source)) => error.with_source(source),
            (None, None) => error,
        };
        error.with_classification(c)
    }
}

impl<RB> Got<RB> {
    fn status(&self) -> Option<StatusCode> {
        match self {
            Got::Head(res) => Some(res.status()),
            Got::Read { head: h, .. } | Got::Broken { head: h, .. } => Some(h.status),
            Got::Nothing(..) => None,
        }
    }

    /// Why the attempt has no (whole) response, if so.
    fn failure(&self) -> Option<Failure> {
        match self {
            Got::Broken { failure, .. } | Got::Nothing(failure, _) => Some(*failure),
            Got::Head(..) | Got::Read { .. } => None,
        }
    }

    /// Whether the attempt got a whole response, one that can be handed to the caller.
    fn is_response(&self) -> bool {
        self.failure().is_none()
    }

    /// The response, as the caller gets it: its body is what was read of it, then the rest
    /// (a head whose body was not read goes back as it came), with `report` if there is one.
    fn into_response(self, report: Option<Report>) -> Response<ResponseBody<RB>>
    where
        RB: Body,
    {
        let (mut head, body) = match self {
            Got::Head(res) => {
                let mut res = res.map(ResponseBody::passthrough);
                if let Some(report) = report {
                    res.extensions_mut().insert(report);
                }
                return res;
            }
            Got::Read { head, bytes, over, trailers, rest } => {
                (head, ResponseBody::prefixed(bytes, trailers, rest).with_overshoot(over))
            }
            Got::Broken { .. } | Got::Nothing(..) => unreachable!("an outcome without a response is never returned"),
        };
        if let Some(report) = report {
            head.extensions.insert(report);
        }
        Response::from_parts(head, body)
    }
}

/// Trailer fields kept at most, from every trailers frame of one body together.
const MAX_TRAILER_FIELDS: usize = 1024;

/// Keep a body's trailers. A body sends one trailers frame, bounded by its client's header
/// limits; one that breaks that contract, frame after frame, must grow no memory without
/// bound (nor reach `HeaderMap`'s own limit, where `extend` panics): past
/// [`MAX_TRAILER_FIELDS`], the rest are dropped.
fn add_trailers(into: &mut Option<Box<HeaderMap>>, trailers: HeaderMap) {
    match into {
        None if trailers.len() <= MAX_TRAILER_FIELDS => *into = Some(Box::new(trailers)),
        _ => {
            let kept = into.get_or_insert_with(Default::default);
            let mut name = None;
            for (next, value) in trailers {
                if kept.len() >= MAX_TRAILER_FIELDS {
                    break;
                }
                // A name is given once for all its values.
                name = next.or(name);
                if let Some(name) = &name {
                    let _ = kept.try_append(name.clone(), value);
                }
            }
        }
    }
}

/// How long a probe request may go without an outcome before it is given up and the probe goes
/// on to its next turn: as long as a trial in flight blocks the next one.
const PROBE_GIVEN_UP_AFTER: Duration = crate::hooks::FAILOVER_TRIAL_INTERVAL.saturating_mul(10);

/// While a host is in failover mode, send its probe on the probe's interval; the first success
/// returns the host to primary.
///
/// `svc` is `D`'s service, whose bounds (`'static`, `Send`, `Clone`) the spawned task needs.
fn spawn_probe<S, B, D: Detach<S, B>>(svc: D::Service, shared: Arc<Shared>, host: HostId, number: u64) {
    /// Ends probe number `.2` however its task ends: by returning, because the probe's request
    /// closure (the user's) panicked, or because the task was dropped. The host then takes
    /// trials instead, as without a probe: it is never left failed over with nothing to find
    /// out.
    struct Running(Arc<Shared>, HostId, u64);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.hosts.get(self.1).failover.probe_ended(self.2);
        }
    }
    tokio::spawn(async move {
        let _running = Running(shared.clone(), host, number);
        let probing = async move {
            loop {
                let h = shared.hosts.get(host);
                let Some(probe) = h.failover.probe.clone() else { return };
                // Back to primary (a trial, or the failover store, said so), or superseded by
                // the probe of a failover since.
                if h.failover.mode(&h.pattern) == FailoverMode::Primary || !h.failover.probe_is_current(number) {
                    return;
                }
                tokio::time::sleep(probe.interval).await;
                let mut req = (probe.request)();
                req.extensions_mut().insert(crate::Detached::Probe);
                let fut = ResponseFuture::<_, D::Body, D::ResponseBody>::probe(svc.clone(), Inner, shared.clone(), req);
                // A response redial gave up on (`final_responses_as_ok`) is no success, whatever its status.
                // One that never ends (a host with no deadline nor attempt timeout) is given up
                // as a trial is: while it runs, no trial goes and no other probe starts.
                let ok = tokio::time::timeout(PROBE_GIVEN_UP_AFTER, fut).await.is_ok_and(|res| {
                    res.is_ok_and(|res| {
                        res.status().is_success()
                            && res.extensions().get::<Report>().is_none_or(|r| r.gave_up.is_none())
                    })
                });
                tracing::info!(host = &*h.pattern, ok, "failover probe");
                if ok {
                    h.failover.recovered(&h.pattern);
                    return;
                }
            }
        };
        probing.await;
    });
}
