//! Token sources and the single-flight token cell.
//!
//! A [`TokenSource`] is one credential: how to obtain it (a [`Login`] described as data, sent
//! through the same inner service as everything else, or an async closure of yours), and the
//! shared cell that caches it. Clone it to share one login between several hosts.
//!
//! The cell guarantees:
//! - **single flight**: however many requests need a token, one login runs, in a task of its
//!   own, so a caller that is dropped cancels nothing and leaves nothing locked;
//! - **versions**: a request that failed with token v1 never starts a login when v2 is in place;
//! - **proactive refresh**: a token is renewed in the background `skew` (jittered) before it
//!   expires, and a request never carries a token past its expiry;
//! - **login protection**: a failing login is retried with exponential backoff, at most once
//!   per backoff window for everyone; a fatal answer (bad credentials, a suspended account)
//!   fails every waiter with [`LoginError`] at once and no login is tried again for the
//!   longest backoff window (another attempt can lock the account or prolong its block), as
//!   is an answer the vendor allows no more tries after
//!   ([`Login::failed_again`]: Responsys's second `UNRECOVERABLE_EXCEPTION` in a row);
//! - **a login that panics is a failed login**: a panic in your [`Login`]'s methods, in your
//!   login function, or in the inner service's `Clone` when it is cloned to send the login
//!   ends that login as a transient failure, under the backoff. No request panics for it
//!   (not even the one whose poll started the login) and none waits for its deadline: every
//!   waiter is woken at once, and the next login, a backoff later, serves those whose
//!   deadlines allow; the others fail with [`is_auth_failed`](crate::Error::is_auth_failed),
//!   their [`login_error`](crate::Error::login_error) saying the login panicked;
//! - **one login for a fleet**, with a [`CredentialStore`] ([`TokenSource::store`]): before it
//!   logs in, the cell takes a credential another process (or another source) stored, if it is
//!   still good and is not the one the vendor just refused; after a login, it stores what it got.
//!   A store that implements [`CredentialStore::claim`] holds off a second process's login
//!   while the first one's is under way. While requests wait out a login backoff, the cell reads the store once a second, so a
//!   token another process got meanwhile serves them at once (a fatal answer's window is not
//!   read past: its requests fail with it).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
/// What a token source is made of, from [`redial_core::auth`], so that one `use` of this module
/// is enough to write a [`TokenSource::from_fn`] or a [`Login`] of your own.
pub use redial_core::auth::{Attach, Credential, Login, LoginError, LoginFailureKind, Secret};
use redial_core::backoff::{Rng, SplitMix64};
use redial_core::{Failure, MAX_DURATION};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{BoxError, FailureClassifier, RetryBody};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A credential as a [`CredentialStore`] keeps it: by the wall clock, the one clock the
/// processes of a fleet share. `Debug` never shows the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct StoredCredential {
    /// The token.
    pub token: Secret,
    /// When it expires (`None`: the vendor did not say; it is used until the vendor refuses it).
    pub expires_at: Option<SystemTime>,
    /// Where later requests must go (Responsys's `endPoint`).
    pub endpoint: Option<Uri>,
}

impl StoredCredential {
    /// A token that expires at `expires_at`.
    pub fn new(token: impl Into<Secret>, expires_at: Option<SystemTime>) -> Self {
        StoredCredential { token: token.into(), expires_at, endpoint: None }
    }

    /// Set the endpoint later requests go to.
    pub fn with_endpoint(mut self, endpoint: Uri) -> Self {
        self.endpoint = Some(endpoint);
        self
    }
}

impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCredential")
            .field("expires_at", &self.expires_at)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// What a [`CredentialStore`] answers with: a boxed future that may borrow the store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a [`TokenSource`] keeps its credential besides its own memory, so that the processes
/// of a fleet (or several sources of one process) share one login: a vendor's login belongs to
/// the account, and some vendors limit or lock it (Responsys disables a login that keeps
/// failing). Give it with [`TokenSource::store`]; [`InMemoryStore`] is the one-process kind.
///
/// No call is on a request's path. `load` and `claim` run in the login's task, each for at
/// most a quarter of the source's [`login_timeout`](TokenSource::login_timeout), before the
/// login's own timeout starts: past it, or panicking, the login goes on without them (`load`
/// answered `None`, `claim` answered `true`). `save` runs in a task of its own, for at most
/// the login timeout, while the waiters go on with the new token. A store's errors are its own
/// to log.
///
/// With `load` and `save` alone, a process that needs a login while another's is under way
/// (both met an expired token at once) logs in too. A store that implements `claim` makes it
/// one login for the fleet: the second process waits for the first one's save, reading the
/// store, and logs in itself only if no good credential comes within the login timeout.
pub trait CredentialStore: Send + Sync + fmt::Debug + 'static {
    /// The credential stored, if any.
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>>;
    /// Keep `credential`, which a login has just obtained, in place of the one stored; and end
    /// this process's [`claim`](Self::claim), if it holds one.
    fn save(&self, credential: StoredCredential) -> StoreFuture<'_, ()>;
    /// Claim the login about to start for the source `id` (random, its own for its life:
    /// unique across a fleet), for at most `within` (longer than the login may take): `true`
    /// when no other source holds a claim that has not lapsed, and this one now does (a claim
    /// it holds already, from a login whose save did not land, is renewed); `false` when
    /// another is logging in. A claim ends when a credential is saved, when its holder
    /// lets it go ([`unclaim`](Self::unclaim)), or after `within`. Over Redis: a script
    /// that sets `<key>:login` to `id` with `PX <within>` unless another id holds it, the key
    /// deleted by `save`.
    ///
    /// The default claims every time: each process that needs a login makes one.
    fn claim(&self, id: u64, within: Duration) -> StoreFuture<'_, bool> {
        let _ = (id, within);
        Box::pin(std::future::ready(true))
    }
    /// The login the source `id` claimed failed (it saves nothing): end its claim, so that
    /// another process need not wait for it to lapse; a claim another source holds now (this
    /// one's lapsed, and was taken) stays. Over Redis, a script that deletes the key only
    /// while it holds `id`. The default does nothing.
    fn unclaim(&self, id: u64) -> StoreFuture<'_, ()> {
        let _ = id;
        Box::pin(std::future::ready(()))
    }
}

/// A [`CredentialStore`] in this process's memory: share one with several token sources (two
/// layers, say) for one login between them.
///
/// ```
/// use std::sync::Arc;
/// use redial_tower::auth::{InMemoryStore, TokenSource};
/// # use redial_core::auth::{Attach, Credential};
///
/// let store = Arc::new(InMemoryStore::default());
/// # let login = || TokenSource::from_fn(Attach::Bearer, || async { Ok(Credential::new("t", None)) });
/// let (a, b) = (login().store(store.clone()), login().store(store));
/// # let _ = (a, b);
/// ```
#[derive(Default)]
pub struct InMemoryStore(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    stored: Option<StoredCredential>,
    /// The source whose claim on the login holds, and until when.
    claimed: Option<(u64, Instant)>,
}

impl InMemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = self.lock();
        f.debug_struct("InMemoryStore")
            .field("stored", &kept.stored)
            .field("claimed", &kept.claimed.map(|(_, until)| until))
            .finish()
    }
}

impl CredentialStore for InMemoryStore {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        let stored = self.lock().stored.clone();
        Box::pin(std::future::ready(stored))
    }

    fn save(&self, credential: StoredCredential) -> StoreFuture<'_, ()> {
        let mut kept = self.lock();
        kept.stored = Some(credential);
        kept.claimed = None;
        Box::pin(std::future::ready(()))
    }

    fn unclaim(&self, id: u64) -> StoreFuture<'_, ()> {
        let mut kept = self.lock();
        if kept.claimed.is_some_and(|(holder, _)| holder == id) {
            kept.claimed = None;
        }
        Box::pin(std::future::ready(()))
    }

    fn claim(&self, id: u64, within: Duration) -> StoreFuture<'_, bool> {
        let now = Instant::now();
        let mut kept = self.lock();
        let free = kept.claimed.is_none_or(|(holder, until)| holder == id || until <= now);
        if free {
            kept.claimed = now.checked_add(within).map(|until| (id, until));
        }
        Box::pin(std::future::ready(free))
    }
}

/// The most bytes of a login response that are read.
const LOGIN_BODY_LIMIT: usize = 64 * 1024;

/// A token as the cell hands it out.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) secret: Secret,
    pub(crate) version: u64,
    pub(crate) endpoint: Option<Uri>,
    pub(crate) expires_at: Option<Instant>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("version", &self.version).field("expires_at", &self.expires_at).finish()
    }
}

/// Sends a login request and returns its response, read into memory, with the time its head
/// came by the layer's wall clock. The engine builds one from its inner service.
pub(crate) type Transport =
    Box<dyn FnOnce(Request<Bytes>) -> BoxFuture<Result<(Response<Bytes>, SystemTime), BoxError>> + Send>;

enum Fetch {
    Login(Arc<dyn Login>),
    Closure(Arc<dyn Fn() -> BoxFuture<Result<Credential, LoginError>> + Send + Sync>),
}

/// One credential and its shared cache.
///
/// Clones share the token, the login in flight and the backoff. Configure a source
/// ([`skew`](Self::skew), [`login_backoff`](Self::login_backoff),
/// [`login_timeout`](Self::login_timeout)) before cloning it or giving it to a layer: on a
/// shared source those settings are ignored, with a warning.
///
/// ```
/// use std::time::Duration;
/// use redial_tower::auth::TokenSource;
/// use redial_tower::core::auth::{Attach, Credential};
///
/// // From your own async code (a secrets manager, a custom handshake):
/// let source = TokenSource::from_fn(Attach::Bearer, || async {
///     Ok(Credential::new("token-from-vault", Some(Duration::from_secs(900))))
/// })
/// .skew(Duration::from_secs(30));
/// # let _ = source;
/// ```
#[derive(Clone)]
pub struct TokenSource {
    cell: Arc<Cell>,
}

struct Cell {
    fetch: Fetch,
    attach: Attach,
    skew: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    login_timeout: Duration,
    store: Option<Arc<dyn CredentialStore>>,
    /// This source's own in its store's claims on the login: random, for its life.
    claim_id: u64,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    in_flight: bool,
    /// Consecutive failed logins.
    failures: u32,
    /// Consecutive logins that got no answer (a transport error, the login timeout).
    unanswered: u32,
    /// No login may start before this (the backoff window).
    not_before: Option<Instant>,
    /// The last login error; for a fatal one, requests fail with it until `not_before`.
    last_error: Option<LoginError>,
    /// The failure the last login that got an answer was answered with (`None` once one
    /// succeeds), and until when it is the `previous` of [`Login::failed_again`]: the next
    /// login is its row's only while it starts within the token source's longest backoff of
    /// the backoff window opening. Later, it is a new request's login, not a resubmission.
    last_answer: Option<(LoginError, Instant)>,
    logins: u64,
    version: u64,
    /// The token the vendor last refused: not to be taken back from the store.
    refused: Option<Secret>,
    /// During a backoff window, the store is not read again before this.
    peek_after: Option<Instant>,
    /// What is in flight is a read of the store during the backoff, not a login.
    peeking: bool,
    /// The last save to the store, which the next one waits for.
    saving: Option<tokio::task::JoinHandle<()>>,
    rng: Option<SplitMix64>,
}

struct Current {
    token: Arc<Token>,
    refresh_at: Option<Instant>,
}

/// What the cell can give a request right now.
pub(crate) enum Lease {
    /// A token to send.
    Ready(Arc<Token>),
    /// None yet: wait for a login to end, or until the backoff window opens.
    Wait(Option<Instant>),
    /// A fatal login answer is still in force.
    Refused(LoginError),
}

impl TokenSource {
    /// Obtain the credential with a [`Login`] (its request is sent through the inner service).
    pub fn login(login: impl Login) -> Self {
        let attach = login.attach();
        Self::new(Fetch::Login(Arc::new(login)), attach)
    }

    /// Obtain the credential with your own async function.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redial_tower::auth::{Attach, Credential, LoginError, LoginFailureKind, TokenSource};
    ///
    /// let source = TokenSource::from_fn(Attach::Bearer, || async {
    ///     // Ask your own token service; a refusal that retrying cannot fix is `Fatal`.
    ///     let token: Option<String> = Some("t0ken".into());
    ///     match token {
    ///         Some(t) => Ok(Credential::new(t, Some(Duration::from_secs(3600)))),
    ///         None => Err(LoginError::new(LoginFailureKind::Fatal, "the token service refused us")),
    ///     }
    /// });
    /// assert!(!format!("{source:?}").contains("t0ken"));
    /// ```
    pub fn from_fn<F, Fut>(attach: Attach, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Credential, LoginError>> + Send + 'static,
    {
        Self::new(Fetch::Closure(Arc::new(move || Box::pin(f()))), attach)
    }

    fn new(fetch: Fetch, attach: Attach) -> Self {
        TokenSource {
            cell: Arc::new(Cell {
                fetch,
                attach,
                skew: Duration::from_secs(60),
                backoff_min: Duration::from_secs(1),
                backoff_max: Duration::from_secs(300),
                login_timeout: Duration::from_secs(30),
                store: None,
                claim_id: SplitMix64::from_entropy().next_u64(),
                state: Mutex::new(State::default()),
                changed: watch::channel(0).0,
            }),
        }
    }

    /// Configuration happens before the source is shared (its clones share one token and one
    /// login): a shared one is left as it is, and says so.
    fn configure(mut self, f: impl FnOnce(&mut Cell)) -> Self {
        match Arc::get_mut(&mut self.cell) {
            Some(cell) => f(cell),
            None => tracing::warn!(
                "TokenSource configured after it was cloned or given to a layer: the setting is ignored; \
                 configure it first"
            ),
        }
        self
    }

    /// Renew a token this long before it expires (default 60 s; each renewal comes up to a
    /// quarter of it later, at random, so that fleets do not renew in step). A token whose
    /// whole lifetime is within it (Marketo's identity answers the token it already gave, with
    /// what is left of its hour) is not renewed at once, which would log in on every request:
    /// it is used until it expires, and the next login comes then.
    pub fn skew(self, skew: Duration) -> Self {
        self.configure(|c| c.skew = skew)
    }

    /// Backoff between failed logins: from `min` (at least 1 ms), doubling, at most `max`
    /// (default 1 s to 5 min). After a fatal answer the next login waits `max`. Both are held to
    /// [`MAX_DURATION`] (a year): `Duration::MAX` means "not again
    /// for as long as the clock can say".
    pub fn login_backoff(self, min: Duration, max: Duration) -> Self {
        // At least a millisecond: a zero one would never back off.
        let min = min.clamp(Duration::from_millis(1), MAX_DURATION);
        self.configure(|c| {
            c.backoff_min = min;
            c.backoff_max = max.max(min).min(MAX_DURATION);
        })
    }

    /// The longest a login may take before it counts as failed (default 30 s; at least a
    /// millisecond, at most [`MAX_DURATION`]: a zero one would fail every login).
    pub fn login_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.login_timeout = timeout.clamp(Duration::from_millis(1), MAX_DURATION))
    }

    /// Share the credential through `store` (see [`CredentialStore`]): a login first takes a
    /// stored credential that is still good (more than the [`skew`](Self::skew) from expiry by
    /// the layer's wall clock) and is not the one the vendor just refused, and stores what a
    /// login obtains. While requests wait out a login backoff, the store is read once a second
    /// (never more often, and only while requests wait), and a credential found there ends the
    /// backoff.
    pub fn store(self, store: Arc<dyn CredentialStore>) -> Self {
        self.configure(|c| c.store = Some(store))
    }

    /// How the token is put on requests.
    pub fn attach(&self) -> &Attach {
        &self.cell.attach
    }

    /// How many logins have been started (one served from a [`CredentialStore`] too).
    pub fn logins(&self) -> u64 {
        self.cell.lock().logins
    }

    /// A token for a request, starting a login when there is none to give. `stale` is the
    /// version a previous attempt of this request was refused with: only a newer one will do.
    pub(crate) fn lease(
        &self,
        stale: Option<u64>,
        wall: fn() -> SystemTime,
        transport: impl FnOnce() -> Option<Transport>,
    ) -> Lease {
        let now = Instant::now();
        let mut st = self.cell.lock();
        let usable = st
            .current
            .as_ref()
            .filter(|c| stale.is_none_or(|v| c.token.version > v) && c.token.expires_at.is_none_or(|at| now < at));
        let (lease, wants_login) = match usable {
            Some(c) => (Lease::Ready(c.token.clone()), c.refresh_at.is_some_and(|at| now >= at)),
            None => match &st.last_error {
                Some(e) if e.is_fatal() && st.not_before.is_some_and(|t| now < t) => (Lease::Refused(e.clone()), false),
                _ => (Lease::Wait(None), true),
            },
        };
        if wants_login && !st.in_flight {
            match st.not_before {
                Some(t) if now < t => {
                    // In the backoff window: nobody logs in; wake when it opens, or when the
                    // store may be read again for a credential another process got meanwhile.
                    return match lease {
                        Lease::Wait(_) => Lease::Wait(Some(self.peek(st, now, wall).map_or(t, |p| p.min(t)))),
                        other => other,
                    };
                }
                _ => {
                    st.in_flight = true;
                    st.logins += 1;
                    let previous = st.last_answer.as_ref().filter(|(_, until)| now <= *until).map(|(e, _)| e.clone());
                    drop(st);
                    // From here the login is in flight, and whatever happens it ends: its
                    // waiters are woken and the next one may start.
                    let ending = Ending { cell: self.cell.clone(), sent_at: Instant::now(), done: false };
                    // A request that has a token renews it in the background: it does not wait.
                    let renewal = matches!(lease, Lease::Ready(_));
                    // The inner service is cloned for the login here, in this request's poll: a
                    // panic in its `Clone` (or a `Detach`'s) fails the login, nothing sent, and
                    // not the request that happened to start it.
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(transport)) {
                        Ok(transport) => self.spawn_login(ending, transport, renewal, previous, wall),
                        Err(_) => ending.finish(
                            Err(LoginError::new(
                                LoginFailureKind::Transient,
                                "the login panicked: the inner service's Clone panicked when cloned to send it",
                            )),
                            None,
                            None,
                        ),
                    }
                }
            }
        }
        lease
    }

    /// A request waits out the backoff window: read the store, at most once a [`PEEK_EVERY`],
    /// for a credential another process (or source) got meanwhile. No login is sent, and a
    /// store without one leaves the backoff as it is. Returns when the next read may be, if
    /// there is a store; a read in flight counts as the login in flight, so that none starts
    /// beside it and its waiters wake when it ends.
    fn peek(
        &self,
        mut st: std::sync::MutexGuard<'_, State>,
        now: Instant,
        wall: fn() -> SystemTime,
    ) -> Option<Instant> {
        let store = self.cell.store.clone()?;
        match st.peek_after {
            Some(p) if now < p => return Some(p),
            _ => {}
        }
        let next = now + PEEK_EVERY;
        st.peek_after = Some(next);
        st.in_flight = true;
        st.peeking = true;
        let refused = st.refused.clone();
        drop(st);
        let peeking = Peeking { cell: self.cell.clone(), sent_at: now, done: false };
        tokio::spawn(async move {
            let stored = load_stored(&*store, peeking.cell.login_timeout / 4).await;
            let cred = stored.and_then(|stored| good_stored(stored, refused.as_ref(), &peeking.cell, wall));
            peeking.finish(cred);
        });
        Some(next)
    }

    /// The request that used `version` was told the token expired: unless a newer token is
    /// already in place, this one is dropped.
    pub(crate) fn invalidate(&self, version: u64) {
        let mut st = self.cell.lock();
        if st.current.as_ref().is_some_and(|c| c.token.version == version) {
            st.refused = st.current.take().map(|c| c.token.secret.clone());
        }
    }

    /// Subscribe to the cell's changes (a login ended), then ask for a lease again: no change
    /// can slip between the two. Returns the lease, and what to wait on if it says `Wait`.
    pub(crate) fn lease_or_wait(
        &self,
        stale: Option<u64>,
        wall: fn() -> SystemTime,
        transport: impl FnOnce() -> Option<Transport>,
    ) -> (Lease, Option<BoxFuture<()>>) {
        let mut rx = self.cell.changed.subscribe();
        match self.lease(stale, wall, transport) {
            Lease::Wait(wake) => {
                let wait: BoxFuture<()> = Box::pin(async move {
                    let mut changed = std::pin::pin!(rx.changed());
                    let mut sleep = std::pin::pin!(async move {
                        match wake {
                            Some(t) => tokio::time::sleep_until(t).await,
                            None => std::future::pending().await,
                        }
                    });
                    std::future::poll_fn(|cx| {
                        if changed.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                            std::task::Poll::Ready(())
                        } else {
                            std::task::Poll::Pending
                        }
                    })
                    .await
                });
                (Lease::Wait(wake), Some(wait))
            }
            other => (other, None),
        }
    }

    /// `previous`: the failure the last answered login got, if it failed.
    /// `wall`: the layer's wall clock, that a stored credential's expiry is read by.
    fn spawn_login(
        &self,
        ending: Ending,
        transport: Option<Transport>,
        renewal: bool,
        previous: Option<LoginError>,
        wall: fn() -> SystemTime,
    ) {
        let cell = self.cell.clone();
        // Everything the user wrote (the closure, the Login's methods) runs in the login's
        // task, under `ending`: a panic there fails the login, not the request that started it.
        tokio::spawn(async move {
            // The vendor's rules for a login that gets no answer: read first, so that a panic
            // in them ends this login before it is sent.
            let (wait, limit) = match &cell.fetch {
                Fetch::Login(login) => (login.no_response_wait(), login.no_response_retries()),
                Fetch::Closure(_) => (None, None),
            };
            // A login that gets no answer waits at least what the vendor says before the next one.
            let no_response = move |e: LoginError| match wait {
                Some(wait) => e.with_retry_after(wait),
                None => e,
            };
            // Another process's login, stored: taken if still good and not the one refused.
            // Read before the login's own time starts: a store that hangs costs a quarter of
            // the login timeout, not the login (whose request keeps the whole of it), and one
            // whose `load` panics is a store without a credential, not a failed login.
            let stored = match &cell.store {
                Some(store) => {
                    let refused = cell.lock().refused.clone();
                    let stored = load_stored(&**store, cell.login_timeout / 4).await;
                    stored.and_then(|stored| good_stored(stored, refused.as_ref(), &cell, wall))
                }
                None => None,
            };
            if let Some(cred) = stored {
                // Nothing was sent: the count of logins without an answer stands.
                return ending.finish(Ok(cred), None, limit);
            }
            // Another process is logging in: its credential, once saved, serves this one too.
            // A claim of ours is let go unless the login succeeds (it saves, which ends it):
            // a login that fails, or panics, saves nothing.
            let mut claimed = None;
            if let Some(store) = &cell.store {
                match wait_for_anothers_login(&cell, &**store, wall).await {
                    Claim::Served(cred) => return ending.finish(Ok(cred), None, limit),
                    Claim::Ours => {
                        claimed = Some(Unclaim {
                            store: store.clone(),
                            id: cell.claim_id,
                            within: cell.login_timeout,
                            armed: true,
                        })
                    }
                    Claim::Assumed | Claim::Lapsed => {}
                }
            }
            // The login's outcome, and whether it got no answer at all (`None`: it was not sent).
            let fetch = async {
                let sent = wall();
                let (result, unanswered) = match (&cell.fetch, transport) {
                    (Fetch::Closure(f), _) => (f().await, Some(false)),
                    (Fetch::Login(login), Some(send)) => {
                        let (result, unanswered) = send_login(&**login, send, renewal, no_response).await;
                        // A failure after a failed answer: the vendor's rule for a row of them.
                        match (result, previous) {
                            (Err(e), Some(previous)) if unanswered == Some(false) => {
                                (Err(login.failed_again(&previous, e)), unanswered)
                            }
                            (result, _) => (result, unanswered),
                        }
                    }
                    (Fetch::Login(_), None) => {
                        (Err(LoginError::new(LoginFailureKind::Fatal, "no transport for the login request")), None)
                    }
                };
                // Stored in a task of its own: the waiters have their token meanwhile. Saves go
                // in the order of the logins (each waits for the one before), and one that a
                // later login's token has overtaken is not made: the store never ends up holding
                // an older token than the cell's.
                if let (Some(store), Ok(cred)) = (&cell.store, &result) {
                    let expires_at = cred.lifetime.and_then(|l| sent.checked_add(l));
                    let stored =
                        StoredCredential { token: cred.token.clone(), expires_at, endpoint: cred.endpoint.clone() };
                    let (store, within, owner) = (store.clone(), cell.login_timeout, cell.clone());
                    let mut st = cell.lock();
                    let (before, version) = (st.saving.take(), st.version);
                    st.saving = Some(tokio::spawn(async move {
                        if let Some(before) = before {
                            let _ = before.await;
                        }
                        // This login's own success makes the version one more; a later one, more.
                        if owner.lock().version > version + 1 {
                            return;
                        }
                        let _ = tokio::time::timeout(within, store.save(stored)).await;
                    }));
                }
                (result, unanswered)
            };
            let timeout = cell.login_timeout;
            let (result, unanswered) = match tokio::time::timeout(timeout, fetch).await {
                Ok(r) => r,
                Err(_) => {
                    let e = LoginError::new(LoginFailureKind::Transient, format!("login took longer than {timeout:?}"));
                    (Err(no_response(e)), Some(true))
                }
            };
            // A failed login saves nothing: its claim is let go (`claimed` dropped), so that
            // another process's login need not wait for it to lapse.
            if result.is_ok() {
                if let Some(mut claimed) = claimed {
                    claimed.armed = false;
                }
            } else {
                drop(claimed);
            }
            ending.finish(result, unanswered, limit);
        });
    }
}

/// A credential read from a store, if it is good: more than `skew` from its expiry by the
/// `wall` clock, and not the token the vendor last refused.
fn good_stored(
    stored: StoredCredential,
    refused: Option<&Secret>,
    cell: &Cell,
    wall: fn() -> SystemTime,
) -> Option<Credential> {
    let left = stored.expires_at.map(|at| at.duration_since(wall()).unwrap_or_default());
    if left.is_some_and(|left| left <= cell.skew)
        || refused == Some(&stored.token)
        || !attaches(&cell.attach, &stored.token)
    {
        return None;
    }
    tracing::debug!(expires_in_s = left.map(|l| l.as_secs()), "login: a stored credential is taken");
    let cred = Credential::new(stored.token, left);
    Some(match stored.endpoint {
        Some(endpoint) => cred.with_endpoint(endpoint),
        None => cred,
    })
}

/// Whether `token` can be sent as the source attaches it (a header value).
fn attaches(attach: &Attach, token: &Secret) -> bool {
    attach.apply(&mut http::HeaderMap::new(), token)
}

/// How often a source waiting out its login backoff reads its store, while requests wait.
const PEEK_EVERY: Duration = Duration::from_secs(1);

/// A read of the store during the backoff window, ended exactly once: with the credential
/// it found, or without one (the store had none, or the read panicked or was dropped).
struct Peeking {
    cell: Arc<Cell>,
    sent_at: Instant,
    done: bool,
}

impl Peeking {
    fn finish(mut self, cred: Option<Credential>) {
        self.done = true;
        match cred {
            Some(cred) => {
                self.cell.lock().logins += 1;
                // Nothing was sent: the count of logins without an answer stands.
                self.cell.finish(Ok(cred), self.sent_at, None, None);
            }
            None => self.cell.peek_missed(),
        }
    }
}

impl Drop for Peeking {
    fn drop(&mut self) {
        if !self.done {
            self.cell.peek_missed();
        }
    }
}

/// This source's claim on the login, let go when dropped armed: the login failed, or
/// panicked (dropped as its task unwinds), and saves nothing.
struct Unclaim {
    store: Arc<dyn CredentialStore>,
    id: u64,
    within: Duration,
    armed: bool,
}

impl Drop for Unclaim {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // In a task of its own, as a save is: no code of the store's runs here (this may be a
        // panic unwinding), and a panic there ends only that task. Without a runtime (it shut
        // down) the claim lapses.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, id, within) = (self.store.clone(), self.id, self.within);
            runtime.spawn(async move {
                let _ = tokio::time::timeout(within, store.unclaim(id)).await;
            });
        }
    }
}

/// How often a source that another process's claim holds off reads the store for its login.
const CLAIM_POLL: Duration = Duration::from_millis(250);

/// What came of claiming the login in the store.
enum Claim {
    /// This source holds the claim: it logs in.
    Ours,
    /// The store did not answer the claim (in time, or at all: it panicked): this source logs
    /// in, and has no claim to let go.
    Assumed,
    /// Another process's login saved a good credential.
    Served(Credential),
    /// Another process held the claim and nothing good came within the login timeout (or the
    /// store did not answer): this source logs in.
    Lapsed,
}

/// Claim the login in `store`; if another process holds the claim, read the store every
/// [`CLAIM_POLL`] for the credential its login saves, for at most the login timeout. A claim
/// the store does not answer (in time, or at all: it panicked) is taken as this source's.
async fn wait_for_anothers_login(cell: &Cell, store: &dyn CredentialStore, wall: fn() -> SystemTime) -> Claim {
    let within = cell.login_timeout;
    match claim(store, cell).await {
        Some(true) => return Claim::Ours,
        None => return Claim::Assumed,
        Some(false) => {}
    }
    tracing::debug!("login: another process is logging in; waiting for its credential");
    let until = Instant::now() + within;
    while Instant::now() < until {
        tokio::time::sleep(CLAIM_POLL).await;
        let refused = cell.lock().refused.clone();
        let stored = load_stored(store, within / 4).await;
        if let Some(cred) = stored.and_then(|stored| good_stored(stored, refused.as_ref(), cell, wall)) {
            return Claim::Served(cred);
        }
        // The other's login failed and let its claim go: this one logs in now.
        match claim(store, cell).await {
            Some(true) => return Claim::Ours,
            None => return Claim::Assumed,
            Some(false) => {}
        }
    }
    Claim::Lapsed
}

/// `store.claim` for `cell`'s source, for a login and the time to claim it: the claim outlasts
/// a login that hangs until its timeout, which lets it go. Asked for at most a quarter of the
/// login timeout; `None`: the store did not answer (in time, or at all: it panicked).
async fn claim(store: &dyn CredentialStore, cell: &Cell) -> Option<bool> {
    let within = cell.login_timeout;
    let lasts = within.saturating_add(within / 2);
    ask(|| store.claim(cell.claim_id, lasts), within / 4).await
}

/// The credential `store` holds, if it answers within `within`; a `load` that panics (in the
/// call or in its future) answers nothing.
async fn load_stored(store: &dyn CredentialStore, within: Duration) -> Option<StoredCredential> {
    ask(|| store.load(), within).await.flatten()
}

/// What a store's call answers within `within`; `None` if it does not (in time, or at all: the
/// call or its future panicked).
async fn ask<'a, T>(call: impl FnOnce() -> StoreFuture<'a, T>, within: Duration) -> Option<T> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let mut answer = catch_unwind(AssertUnwindSafe(call)).ok()?;
    let answer = std::future::poll_fn(move |cx| {
        catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx)))
            .map_or(std::task::Poll::Ready(None), |p| p.map(Some))
    });
    tokio::time::timeout(within, answer).await.ok().flatten()
}

/// Send `login`'s request and read its answer: the outcome, and whether the login got no
/// answer at all (`None`: it was not sent, the inner service failing to get ready).
async fn send_login(
    login: &dyn Login,
    send: Transport,
    renewal: bool,
    no_response: impl FnOnce(LoginError) -> LoginError,
) -> (Result<Credential, LoginError>, Option<bool>) {
    let mut req = login.request();
    let detached = if renewal { crate::Detached::Renewal } else { crate::Detached::Login };
    req.extensions_mut().insert(detached);
    match send(req).await {
        Ok((res, received_at)) => {
            let (head, body) = res.into_parts();
            // Read against the time it came, by the layer's wall clock: the login's own code
            // reads no clock.
            let answer = redial_core::ResponseHead::new(head.status, &head.headers, received_at);
            let parsed = login.parse(&answer, &body).map_err(|e| {
                // A refused login's body says why; a 2xx one may hold the token the parse
                // could not read, and is never kept.
                if e.status().is_some() {
                    e
                } else if head.status.is_success() {
                    e.with_response(head.status, Bytes::new())
                } else {
                    e.with_response(head.status, body)
                }
            });
            (parsed, Some(false))
        }
        Err(e) => {
            let at = e.downcast_ref::<Stopped>().map(|s| s.at);
            // A transport error names the URL it failed on; its query may hold the credential
            // (Marketo documents client_secret there). So the error is not kept as the source:
            // its causes are told, redacted (`client error (Connect)` says nothing without
            // the `Connection refused` under it). A wrapper that shows its cause's message as
            // its own (reqwest-middleware's around reqwest's) is not told twice.
            let why = {
                let mut why = e.to_string();
                let mut next = e.source();
                while let Some(cause) = next {
                    let cause_text = cause.to_string();
                    if !why.ends_with(&cause_text) {
                        why.push_str(": ");
                        why.push_str(&cause_text);
                    }
                    next = cause.source();
                }
                redial_core::auth::redact_urls(&why).into_owned()
            };
            match at {
                // Nothing went out: neither an answer nor the vendor's silence.
                Some(StoppedAt::NotSent) => {
                    let e = e.downcast::<Stopped>().map_or_else(|e| e, |s| s.error);
                    let message =
                        format!("the login was not sent: the inner service failed to get ready for it: {why}");
                    (Err(LoginError::new(LoginFailureKind::Transient, message).with_source(e)), None)
                }
                // Nor did it here: the vendor saw no login, so none goes unanswered.
                Some(StoppedAt::NeverLeft) => {
                    let message = format!("the login was not sent: {why}");
                    (Err(LoginError::new(LoginFailureKind::Transient, message)), None)
                }
                // A body that could not be read came with an answer (its head).
                Some(StoppedAt::BodyUnread) => (
                    Err(LoginError::new(LoginFailureKind::Transient, format!("login request failed: {why}"))),
                    Some(false),
                ),
                None => {
                    let e = LoginError::new(LoginFailureKind::Transient, format!("login request failed: {why}"));
                    (Err(no_response(e)), Some(true))
                }
            }
        }
    }
}

/// A login in flight, ended exactly once: with its answer, or (dropped unanswered: a panic,
/// a runtime shut down) as a transient failure, under the backoff.
struct Ending {
    cell: Arc<Cell>,
    /// When the login was sent: a token's lifetime runs from there, as the vendor counts it.
    sent_at: Instant,
    done: bool,
}

impl Ending {
    /// `unanswered`: whether the login got no answer at all (`None`: not known, or not sent);
    /// `limit`: the login's [`no_response_retries`](Login::no_response_retries).
    fn finish(mut self, result: Result<Credential, LoginError>, unanswered: Option<bool>, limit: Option<u32>) {
        self.done = true;
        self.cell.finish(result, self.sent_at, unanswered, limit);
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if !self.done {
            // Not the vendor's silence (this side stopped waiting), nor an answer: the count of
            // logins without one stands. No code of the user's runs here: this may be a panic
            // unwinding, and a second panic would abort.
            let why = if std::thread::panicking() {
                "the login panicked (a bug in the Login, the login function or the inner service)"
            } else {
                "the login ended without an answer (its task was dropped: the runtime shut down)"
            };
            self.cell.finish(Err(LoginError::new(LoginFailureKind::Transient, why)), self.sent_at, None, None);
        }
    }
}

impl Cell {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data, consistent after every statement: a panic elsewhere
        // cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A read of the store during the backoff found nothing: the backoff stands, and the
    /// waiters wait again (until the window opens, or the next read).
    fn peek_missed(&self) {
        let mut st = self.lock();
        st.in_flight = false;
        st.peeking = false;
        drop(st);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The login sent at `sent_at` ended with `result`; `unanswered`: it got no answer at all
    /// (`None`: not known, it ended before it could say, or it was not sent); `limit`: the
    /// retries the vendor allows a login without an answer, read by the login's task. Calls
    /// no code of the user's: it runs when a login panicked, too.
    fn finish(
        &self,
        result: Result<Credential, LoginError>,
        sent_at: Instant,
        unanswered: Option<bool>,
        limit: Option<u32>,
    ) {
        let now = Instant::now();
        let result = result.and_then(|cred| match cred.lifetime {
            // A token born expired cannot be used, and logging in again at once would storm the
            // login endpoint: count it as a failed login, under the backoff.
            Some(l) if l.is_zero() => {
                Err(LoginError::new(LoginFailureKind::Transient, "the login answered an already-expired token"))
            }
            // Requests would go without it (and meet the vendor's refusal, and a login again):
            // a login of the user's own answered a line break, say. Never the token itself.
            _ if !attaches(&self.attach, &cred.token) => Err(LoginError::new(
                LoginFailureKind::Fatal,
                format!("the login answered a token that is not a valid {} header value", self.attach.header_name()),
            )),
            _ => Ok(cred),
        });
        let mut st = self.lock();
        st.in_flight = false;
        st.peeking = false;
        match unanswered {
            Some(true) => st.unanswered = st.unanswered.saturating_add(1),
            Some(false) => st.unanswered = 0,
            None => {}
        }
        // Only an answer moves the row of answers Login::failed_again reads (kept below, once
        // its backoff window is known).
        let answered = match (&result, unanswered) {
            (Ok(_), _) => {
                st.last_answer = None;
                None
            }
            (Err(e), Some(false)) => Some(e.clone()),
            (Err(_), _) => None,
        };
        // Past the retries the vendor allows a login without an answer, the silence is taken
        // as fatal: no login for the longest backoff (Responsys disables the login otherwise).
        let result = match result {
            Err(e) if unanswered == Some(true) && limit.is_some_and(|n| st.unanswered > n) => {
                // The vendor's wait after a silence still holds, however short the longest backoff.
                let wait = e.retry_after().map_or(self.backoff_max, |w| self.backoff_max.max(w.min(MAX_LOGIN_WAIT)));
                let fatal = LoginError::new(
                    LoginFailureKind::Fatal,
                    format!(
                        "{} logins in a row got no answer (the last: {}); no login is tried for {:?}, so that \
                         the vendor does not disable it",
                        st.unanswered,
                        e.message(),
                        wait
                    ),
                );
                Err(match e.retry_after() {
                    Some(w) => fatal.with_retry_after(w),
                    None => fatal,
                })
            }
            other => other,
        };
        match result {
            Ok(cred) => {
                st.version += 1;
                st.failures = 0;
                st.not_before = None;
                st.last_error = None;
                // A lifetime past what the clock can hold never expires (a custom login's own
                // value: the built-in ones are capped).
                // From when the login was sent: the vendor's clock ran while it answered.
                let expires_at = cred.lifetime.and_then(|l| sent_at.checked_add(l));
                let refresh_at = match cred.lifetime {
                    // A token that would be renewed at once (its lifetime is within the skew,
                    // as Marketo's identity answers before expiry) is used until it expires.
                    Some(l) if l > self.skew => {
                        let jitter = st.rng.get_or_insert_with(SplitMix64::from_entropy).next_f64();
                        sent_at.checked_add(l - self.skew).and_then(|t| t.checked_add(self.skew.mul_f64(jitter / 4.0)))
                    }
                    _ => None,
                };
                let token =
                    Arc::new(Token { secret: cred.token, version: st.version, endpoint: cred.endpoint, expires_at });
                st.current = Some(Current { token, refresh_at });
                tracing::info!(
                    version = st.version,
                    expires_in_s = cred.lifetime.map(|l| l.as_secs()),
                    "login succeeded"
                );
            }
            Err(e) => {
                st.failures += 1;
                // A fatal answer (bad credentials, a blocked or suspended account) is not
                // tried again for the longest backoff: another attempt can lock the account
                // or prolong its block ("never hammer the login").
                let backoff = if e.is_fatal() {
                    self.backoff_max
                } else {
                    // Doubling all the way to the longest backoff, however small the first.
                    1u32.checked_shl(st.failures - 1)
                        .map_or(self.backoff_max, |factor| self.backoff_min.saturating_mul(factor))
                        .min(self.backoff_max)
                };
                // A wait the vendor named (a throttled login) is kept, up to an hour.
                let backoff = e.retry_after().map_or(backoff, |w| backoff.max(w.min(MAX_LOGIN_WAIT)));
                // Clamped by the clock: nothing here may panic once the login is no longer
                // in flight (its waiters would hang and every request would log in again).
                st.not_before = Some(now.checked_add(backoff).unwrap_or_else(|| now + MAX_DURATION));
                tracing::warn!(
                    fatal = e.is_fatal(),
                    status = e.status().map(|s| s.as_u16()),
                    code = e.code(),
                    message = e.message(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "login failed"
                );
                st.last_error = Some(e);
                if let Some(answer) = answered {
                    let opens = st.not_before.unwrap_or(now);
                    st.last_answer = Some((answer, opens.checked_add(self.backoff_max).unwrap_or(opens)));
                }
                // Keep a still-valid token: a failed proactive refresh must not stop traffic.
            }
        }
        drop(st);
        self.changed.send_modify(|n| *n += 1);
    }
}

impl TokenSource {
    /// The last login error, if the last login failed.
    pub fn last_error(&self) -> Option<LoginError> {
        self.cell.lock().last_error.clone()
    }

    /// Whether a login is running, and the last login's failure (none once one succeeded),
    /// read together: what a request still waiting for a token when its deadline comes fails
    /// with.
    pub(crate) fn login_state(&self) -> (bool, Option<LoginError>) {
        let st = self.cell.lock();
        (st.in_flight && !st.peeking, st.last_error.clone())
    }

    /// Whether a login is running now (a read of the store during a login backoff is not one).
    pub fn login_in_flight(&self) -> bool {
        let st = self.cell.lock();
        st.in_flight && !st.peeking
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.cell.lock();
        let mut d = f.debug_struct("TokenSource");
        match &self.cell.fetch {
            Fetch::Login(l) => d.field("login", l),
            Fetch::Closure(_) => d.field("login", &"<fn>"),
        };
        d.field("attach", &self.cell.attach)
            .field("skew", &self.cell.skew)
            .field("version", &st.version)
            .field("logins", &st.logins)
            .field("in_flight", &st.in_flight)
            .finish_non_exhaustive()
    }
}

/// The longest wait before a login that a vendor's answer can impose.
const MAX_LOGIN_WAIT: Duration = Duration::from_secs(3600);

/// A login transport error that is not the vendor's silence: how far the login got, and the
/// error (shown as itself).
#[derive(Debug)]
struct Stopped {
    at: StoppedAt,
    error: BoxError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoppedAt {
    /// The inner service failed to get ready for the login: nothing was sent.
    NotSent,
    /// The call failed before the login left: its connect failed, or a layer below refused it
    /// (the layer's failure classifier reads [`Failure::Connect`] or [`Failure::Local`]).
    NeverLeft,
    /// The answer came (its head), but its body could not be read (too long, broken).
    BodyUnread,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Stopped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Build the login transport from an inner service: the login request goes through the same
/// client as everything else, and its response is read up to 64 KiB. An inner service that
/// fails to get ready sent nothing ([`StoppedAt::NotSent`]). `wall_clock` (the layer's) says when the
/// answer came, as it does for every other response.
pub(crate) fn transport<S, B, RB>(svc: S, wall_clock: fn() -> SystemTime, classify: FailureClassifier) -> Transport
where
    S: tower_service::Service<Request<RetryBody<B>>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    Box::new(move |req: Request<Bytes>| {
        let mut svc = svc;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            if parts.extensions.get::<crate::Detached>().is_none() {
                parts.extensions.insert(crate::Detached::Login);
            }
            let req = Request::from_parts(parts, RetryBody::buffered(body, None));
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(|e| Stopped { at: StoppedAt::NotSent, error: e.into() })?;
            let res = svc.call(req).await.map_err(|e| {
                let error: BoxError = e.into();
                let failure = match error.downcast_ref::<crate::AttemptError>() {
                    Some(e) => e.failure(),
                    None => classify(&*error),
                };
                match failure {
                    Failure::Connect | Failure::Local => Stopped { at: StoppedAt::NeverLeft, error }.into(),
                    _ => error,
                }
            })?;
            let received_at = wall_clock();
            let (head, body) = res.into_parts();
            let limited = http_body_util::Limited::new(body, LOGIN_BODY_LIMIT);
            let bytes = http_body_util::BodyExt::collect(limited)
                .await
                .map_err(|error| Stopped { at: StoppedAt::BodyUnread, error })?
                .to_bytes();
            Ok((Response::from_parts(head, bytes), received_at))
        })
    })
}
