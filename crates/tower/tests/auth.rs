//! The token cell through the engine, against an in-process vendor on the paused clock.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use redial_core::auth::{Attach, Credential, Login, LoginError, LoginFailureKind};
use redial_core::generic::Generic;
use redial_core::{Advice, Classification, Kind, Outcome, Policy, Profile, RequestHead, ResponseHead};
use redial_tower::auth::{CredentialStore, InMemoryStore, StoreFuture, StoredCredential};
use redial_tower::{RetryBody, RetryLayer, TokenSource};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

const S: Duration = Duration::from_secs(1);

/// 401 means the token expired; everything else is generic.
#[derive(Debug)]
struct Vendor;

impl Profile for Vendor {
    fn name(&self) -> &str {
        "test-vendor"
    }
    fn inspect(&self, _: &RequestHead<'_>, _: &ResponseHead<'_>) -> bool {
        false
    }
    fn classify(&self, req: &RequestHead<'_>, outcome: &Outcome<'_>) -> Classification {
        match outcome {
            Outcome::Response(head, _) if head.status == StatusCode::UNAUTHORIZED => {
                Classification::new(Kind::AuthExpired, Advice::RefreshAuth, "token expired")
            }
            _ => Generic.classify(req, outcome),
        }
    }
}

/// The login: POST /login, answer `token-N:lifetime`.
#[derive(Debug)]
struct TestLogin;

impl Login for TestLogin {
    fn request(&self) -> Request<Bytes> {
        Request::post("http://vendor.test/login").body(Bytes::from_static(b"secret=hunter2")).unwrap()
    }
    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        match res.status.as_u16() {
            200 => {
                let text = std::str::from_utf8(body).unwrap();
                let (token, life) = text.split_once(':').unwrap();
                Ok(Credential::new(token, Some(Duration::from_secs(life.parse().unwrap()))))
            }
            401 => Err(LoginError::new(LoginFailureKind::Fatal, "bad client secret")),
            _ => Err(LoginError::new(LoginFailureKind::Transient, "login unavailable")),
        }
    }
}

/// An in-process vendor: tokens with a lifetime, logins counted and timestamped.
#[derive(Clone, Default)]
struct FakeVendor(Arc<Inner>);

#[derive(Default)]
struct Inner {
    next: AtomicU64,
    lifetime_s: AtomicU64,
    valid: Mutex<Vec<(String, Instant)>>,
    logins: Mutex<Vec<Instant>>,
    fail_logins: AtomicUsize,
    fatal: std::sync::atomic::AtomicBool,
    login_delay_ms: AtomicU64,
    api_calls: AtomicUsize,
    expired_sent: AtomicUsize,
    reject_all: std::sync::atomic::AtomicBool,
}

impl FakeVendor {
    fn new(lifetime: u64) -> Self {
        let v = FakeVendor::default();
        v.0.lifetime_s.store(lifetime, Ordering::SeqCst);
        v
    }
    fn logins(&self) -> Vec<Instant> {
        self.0.logins.lock().unwrap().clone()
    }
    fn expire_all(&self) {
        self.0.valid.lock().unwrap().clear();
    }

    async fn handle(self, req: Request<RetryBody<Full<Bytes>>>) -> Result<Response<Full<Bytes>>, Infallible> {
        let now = Instant::now();
        let reply = |status: u16, body: String| Ok(Response::builder().status(status).body(Full::from(body)).unwrap());
        if req.uri().path() == "/login" {
            self.0.logins.lock().unwrap().push(now);
            let delay = self.0.login_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if self.0.fatal.load(Ordering::SeqCst) {
                return reply(401, "bad client".into());
            }
            if self.0.fail_logins.load(Ordering::SeqCst) > 0 {
                self.0.fail_logins.fetch_sub(1, Ordering::SeqCst);
                return reply(503, "busy".into());
            }
            let n = self.0.next.fetch_add(1, Ordering::SeqCst);
            let life = self.0.lifetime_s.load(Ordering::SeqCst);
            let token = format!("tok{n}");
            self.0.valid.lock().unwrap().push((token.clone(), Instant::now() + Duration::from_secs(life)));
            return reply(200, format!("{token}:{life}"));
        }
        self.0.api_calls.fetch_add(1, Ordering::SeqCst);
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = auth.strip_prefix("Bearer ").unwrap_or("");
        let valid = !self.0.reject_all.load(Ordering::SeqCst)
            && self.0.valid.lock().unwrap().iter().any(|(t, exp)| t == token && now < *exp);
        if !valid {
            if !token.is_empty() {
                self.0.expired_sent.fetch_add(1, Ordering::SeqCst);
            }
            return reply(401, "expired".into());
        }
        reply(200, "ok".into())
    }
}

fn service(
    vendor: &FakeVendor,
    source: TokenSource,
    policy: Policy,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<redial_tower::ResponseBody<Full<Bytes>>>,
    Error = redial_tower::Error,
    Future: Send,
> + Clone
       + Send
       + 'static {
    let layer = RetryLayer::builder().default_host(Vendor, policy).auth("*", source).unwrap().rng_seed(3).build();
    let v = vendor.clone();
    ServiceBuilder::new().layer(layer).service(tower::service_fn(move |req| v.clone().handle(req)))
}

/// Log in through the fake vendor by hand, as a user's own closure would: the token it mints.
async fn login_by_hand(v: FakeVendor) -> String {
    let res = v
        .handle(Request::post("http://vendor.test/login").body(RetryBody::from_bytes(Bytes::new())).unwrap())
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split_once(':').unwrap().0.to_owned()
}

fn api() -> Request<Full<Bytes>> {
    Request::get("http://vendor.test/api/things").body(Full::default()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_requests_cause_one_login() {
    let vendor = FakeVendor::new(3600);
    vendor.0.login_delay_ms.store(200, Ordering::SeqCst);
    let source = TokenSource::login(TestLogin);
    let svc = service(&vendor, source.clone(), Policy::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let svc = svc.clone();
        tasks.spawn(async move { svc.oneshot(api()).await.map(|r| r.status()) });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), StatusCode::OK);
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(vendor.logins().len(), 1);
    assert_eq!(source.logins(), 1);
    assert_eq!(vendor.0.expired_sent.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_refreshed_once_for_everyone_and_requests_replay() {
    let vendor = FakeVendor::new(3600);
    let source = TokenSource::login(TestLogin);
    let svc = service(&vendor, source.clone(), Policy::default());
    svc.clone().oneshot(api()).await.unwrap();
    assert_eq!(vendor.logins().len(), 1);
    vendor.expire_all();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let svc = svc.clone();
        tasks.spawn(async move { svc.oneshot(api()).await.map(|r| r.status()) });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), StatusCode::OK);
    }
    // Every one of the 100 saw 401 with token v1; one login for all of them.
    assert_eq!(vendor.logins().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_keeps_saying_expired_cannot_loop() {
    let vendor = FakeVendor::new(3600);
    vendor.0.reject_all.store(true, Ordering::SeqCst); // every token is "expired"
    let source = TokenSource::login(TestLogin);
    let policy = Policy::builder().max_attempts(10).max_auth_refreshes(2).build().unwrap();
    let err = service(&vendor, source, policy).oneshot(api()).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert_eq!(err.report().attempt_count(), 3);
    assert_eq!(vendor.0.api_calls.load(Ordering::SeqCst), 3);
    assert_eq!(vendor.logins().len(), 3, "one login, then one per refresh");
}

#[tokio::test(start_paused = true)]
async fn a_login_answering_an_expired_token_backs_off_instead_of_storming() {
    let vendor = FakeVendor::new(0);
    let source = TokenSource::login(TestLogin).login_backoff(S, 8 * S);
    let err =
        service(&vendor, source, Policy::builder().deadline(30 * S).build().unwrap()).oneshot(api()).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");
    assert!(err.login_error().unwrap().message().contains("already-expired"));
    // 30 s with backoff 1, 2, 4, 8, 8, ... s: a handful of logins, not a storm.
    let n = vendor.logins().len();
    assert!((4..=8).contains(&n), "{n} logins");
}

#[tokio::test(start_paused = true)]
async fn proactive_refresh_keeps_every_request_on_a_valid_token() {
    // A 10-minute token, renewed 60 s before it expires (the default skew), up to 15 s later
    // at random, under a request every 10 s for an hour.
    let vendor = FakeVendor::new(600);
    let source = TokenSource::login(TestLogin);
    let svc = service(&vendor, source, Policy::default());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3600) {
        let res = svc.clone().oneshot(api()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.extensions().get::<redial_tower::Report>().is_none(), "no request needed a retry");
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert_eq!(vendor.0.expired_sent.load(Ordering::SeqCst), 0);
    // Each token serves 540-555 s: logins at 0 s and then every ~9 minutes.
    let logins = vendor.logins();
    assert_eq!(logins.len(), 7, "{logins:?}");
    for pair in logins.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_secs(540) && gap <= Duration::from_secs(560), "{gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_login_is_retried_once_per_backoff_window_then_requests_succeed() {
    let vendor = FakeVendor::new(3600);
    vendor.0.fail_logins.store(5, Ordering::SeqCst);
    let source = TokenSource::login(TestLogin).login_backoff(S, 60 * S);
    let svc = service(&vendor, source, Policy::builder().deadline(600 * S).build().unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let svc = svc.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            svc.oneshot(api()).await.map(|r| r.status())
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), StatusCode::OK);
    }
    let logins = vendor.logins();
    assert_eq!(logins.len(), 6, "{logins:?}");
    // 1 s, 2 s, 4 s, 8 s, 16 s between the six attempts: never two in one window.
    for (i, pair) in logins.windows(2).enumerate() {
        assert!(pair[1] - pair[0] >= S * (1 << i), "{:?}", pair[1] - pair[0]);
    }
}

/// A token whose whole lifetime is within the skew (Marketo's identity answers the token it
/// already gave, with what is left of its hour) is not renewed at once, which would log in on
/// every request: it is used until it expires, and the next login comes then.
#[tokio::test(start_paused = true)]
async fn a_token_shorter_than_the_skew_is_used_until_it_expires_not_renewed_at_once() {
    let vendor = FakeVendor::new(30);
    let svc = service(&vendor, TokenSource::login(TestLogin), Policy::default());
    let start = Instant::now();
    while start.elapsed() < 50 * S {
        assert_eq!(svc.clone().oneshot(api()).await.unwrap().status(), StatusCode::OK);
        tokio::time::sleep(5 * S).await;
    }
    let logins: Vec<Duration> = vendor.logins().iter().map(|t| *t - start).collect();
    assert_eq!(logins, [Duration::ZERO, 30 * S], "one login a lifetime, the second at the expiry");
    assert_eq!(vendor.0.expired_sent.load(Ordering::SeqCst), 0);
}

/// A source left at its defaults: a failing login is tried again after 1 s, then 2 s, 4 s …
/// doubling to 5 min, and no longer apart than that.
#[tokio::test(start_paused = true)]
async fn a_source_left_at_its_defaults_backs_off_from_1_s_doubling_to_5_min() {
    let vendor = FakeVendor::new(3600);
    vendor.0.fail_logins.store(11, Ordering::SeqCst);
    let svc = service(&vendor, TokenSource::login(TestLogin), Policy::builder().deadline(1800 * S).build().unwrap());
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    let logins = vendor.logins();
    let gaps: Vec<u64> = logins.windows(2).map(|pair| (pair[1] - pair[0]).as_secs()).collect();
    assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
}

/// A setting given to a source already shared (cloned, or given to a layer) is ignored, as
/// `TokenSource`'s docs say: its clones keep one configuration. Here the backoff stays the
/// default 1 s, not the 60 s given to a clone.
#[tokio::test(start_paused = true)]
async fn a_setting_given_to_a_source_already_shared_is_ignored() {
    let vendor = FakeVendor::new(3600);
    vendor.0.fail_logins.store(1, Ordering::SeqCst);
    let source = TokenSource::login(TestLogin);
    let shared = source.clone();
    let late = source.login_backoff(60 * S, 300 * S);
    assert_eq!(service(&vendor, late, Policy::default()).oneshot(api()).await.unwrap().status(), StatusCode::OK);
    let logins = vendor.logins();
    assert_eq!((logins.len(), logins[1] - logins[0]), (2, S), "{logins:?}");
    assert_eq!(shared.logins(), 2, "the clones are one source");
}

/// A source left at its defaults: after a fatal answer, no login for 5 min (its longest
/// backoff), then one.
#[tokio::test(start_paused = true)]
async fn a_fatal_answer_holds_a_source_left_at_its_defaults_off_for_5_min() {
    let vendor = FakeVendor::new(3600);
    vendor.0.fatal.store(true, Ordering::SeqCst);
    let svc = service(&vendor, TokenSource::login(TestLogin), Policy::default());
    assert!(svc.clone().oneshot(api()).await.unwrap_err().is_auth_failed());
    vendor.0.fatal.store(false, Ordering::SeqCst);
    tokio::time::sleep(299 * S).await;
    assert!(svc.clone().oneshot(api()).await.unwrap_err().is_auth_failed());
    assert_eq!(vendor.logins().len(), 1);
    tokio::time::sleep(S).await;
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2);
}

/// A source left at its defaults: a login that hangs counts as failed after 30 s, and the next
/// goes a backoff (1 s) later.
#[tokio::test(start_paused = true)]
async fn a_login_that_hangs_fails_after_30_s_by_default() {
    let vendor = FakeVendor::new(3600);
    vendor.0.login_delay_ms.store(3_600_000, Ordering::SeqCst);
    let svc = service(&vendor, TokenSource::login(TestLogin), Policy::default());
    let call = tokio::spawn(svc.oneshot(api()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(vendor.logins().len(), 1, "the first login hangs");
    vendor.0.login_delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    let logins = vendor.logins();
    assert_eq!(logins.len(), 2);
    let gap = logins[1] - logins[0];
    assert!(gap >= 31 * S && gap < 31 * S + Duration::from_millis(100), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fatal_login_fails_every_waiter_and_is_not_retried_before_its_backoff() {
    let vendor = FakeVendor::new(3600);
    vendor.0.fatal.store(true, Ordering::SeqCst);
    vendor.0.login_delay_ms.store(50, Ordering::SeqCst);
    let source = TokenSource::login(TestLogin).login_backoff(30 * S, 300 * S);
    let svc = service(&vendor, source.clone(), Policy::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let svc = svc.clone();
        tasks.spawn(async move { svc.oneshot(api()).await });
    }
    while let Some(r) = tasks.join_next().await {
        let err = r.unwrap().unwrap_err();
        assert!(err.is_auth_failed(), "{err}");
        let login = err.login_error().unwrap();
        assert!(login.is_fatal());
        assert_eq!(login.status(), Some(StatusCode::UNAUTHORIZED));
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
    assert_eq!(vendor.logins().len(), 1);
    // Within the backoff window: refused at once, no login.
    tokio::time::sleep(10 * S).await;
    let err = svc.clone().oneshot(api()).await.unwrap_err();
    assert!(err.is_auth_failed());
    assert_eq!(vendor.logins().len(), 1);
    // A fatal answer holds for the longest backoff (300 s), not the first (30 s): another
    // attempt could lock the account.
    vendor.0.fatal.store(false, Ordering::SeqCst);
    tokio::time::sleep(30 * S).await;
    assert!(svc.clone().oneshot(api()).await.unwrap_err().is_auth_failed());
    assert_eq!(vendor.logins().len(), 1);
    // After it: one new login, which now works.
    tokio::time::sleep(265 * S).await;
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_while_the_login_is_in_flight_cancels_nothing() {
    let vendor = FakeVendor::new(3600);
    vendor.0.login_delay_ms.store(1000, Ordering::SeqCst);
    let source = TokenSource::login(TestLogin);
    let svc = service(&vendor, source.clone(), Policy::default());
    let dropped = tokio::spawn(svc.clone().oneshot(api()));
    let kept = tokio::spawn(svc.clone().oneshot(api()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(source.login_in_flight());
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());
    assert_eq!(kept.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 1);
    // The cell is usable: the next login (after expiry) works.
    vendor.expire_all();
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_closure_source_works_and_never_shows_its_secret() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let vendor = FakeVendor::new(3600);
    let v = vendor.clone();
    let source = TokenSource::from_fn(redial_core::auth::Attach::Bearer, move || {
        c.fetch_add(1, Ordering::SeqCst);
        let v = v.clone();
        async move { Ok(Credential::new(login_by_hand(v).await, None)) }
    });
    let svc = service(&vendor, source.clone(), Policy::default());
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!format!("{source:?}").contains("tok0"));
}

#[tokio::test(start_paused = true)]
async fn a_token_that_expires_while_its_request_waits_for_a_rate_slot_is_never_sent() {
    // Tokens live 10 s (within the skew: no proactive refresh); one call per 20 s. The second
    // request leases the token at once and waits 20 s for its slot: by then it has expired.
    let vendor = FakeVendor::new(10);
    let policy = Policy::builder().rate_limit(1, 20 * S).build().unwrap();
    let svc = service(&vendor, TokenSource::login(TestLogin), policy);
    let (a, b) = tokio::join!(svc.clone().oneshot(api()), svc.oneshot(api()));
    assert_eq!(a.unwrap().status(), StatusCode::OK);
    assert_eq!(b.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.0.expired_sent.load(Ordering::SeqCst), 0, "no expired token went to the vendor");
    assert_eq!(vendor.logins().len(), 2, "the second request logged in again before it went");
}

/// A login whose answer the parse cannot read, whatever its status.
#[derive(Debug)]
struct Unreadable;

impl Login for Unreadable {
    fn request(&self) -> Request<Bytes> {
        TestLogin.request()
    }
    fn parse(&self, _: &ResponseHead<'_>, _: &[u8]) -> Result<Credential, LoginError> {
        Err(LoginError::new(LoginFailureKind::Fatal, "unreadable login answer"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_answer_that_cannot_be_read_keeps_its_status_but_never_a_2xx_body() {
    // The 200's body is `tok0:3600`: the very token the parse could not read.
    let vendor = FakeVendor::new(3600);
    let err = service(&vendor, TokenSource::login(Unreadable), Policy::default()).oneshot(api()).await.unwrap_err();
    let login = err.login_error().expect("the login's error");
    assert_eq!(login.status(), Some(StatusCode::OK));
    assert!(login.body().is_empty(), "a 2xx login body may hold a token: {:?}", login.body());
    assert!(!format!("{err:?} {err}").contains("tok0"));
}

/// A request through a source whose first login is refused with `message`, asking for `wait`
/// (a login throttled for its own limit); every login after it succeeds. Returns when the
/// two logins went.
async fn logins_after_a_first_refused_with(message: &'static str, wait: Duration, policy: Policy) -> Vec<Instant> {
    let vendor = FakeVendor::new(3600);
    let logins = Arc::new(Mutex::new(Vec::new()));
    let seen = logins.clone();
    let v = vendor.clone();
    let source = TokenSource::from_fn(Attach::Bearer, move || {
        let mut seen = seen.lock().unwrap();
        seen.push(Instant::now());
        let first = seen.len() == 1;
        let v = v.clone();
        async move {
            if first {
                return Err(LoginError::new(LoginFailureKind::Transient, message).with_retry_after(wait));
            }
            Ok(Credential::new(login_by_hand(v).await, None))
        }
    });
    let res = service(&vendor, source, policy).oneshot(api()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let at = logins.lock().unwrap().clone();
    assert_eq!(at.len(), 2, "{at:?}");
    at
}

#[tokio::test(start_paused = true)]
async fn a_throttled_login_waits_the_time_the_vendor_named_not_the_backoff() {
    // The first login is refused for its per-minute limit ("try again in the next minute"); the
    // token source's backoff starts at 1 s, but the next login waits the minute.
    let policy = Policy::builder().deadline(300 * S).build().unwrap();
    let at = logins_after_a_first_refused_with("API_LIMIT_EXCEEDED", 60 * S, policy).await;
    assert!(at[1] - at[0] >= 60 * S, "the second login went {:?} after the first", at[1] - at[0]);
}

/// A wait a login's answer names is kept up to an hour (`LoginError::with_retry_after`): a
/// throttled login that asks for two hours is tried again one hour later, not two, nor at its
/// backoff.
#[tokio::test(start_paused = true)]
async fn a_login_asked_to_wait_two_hours_is_tried_again_an_hour_later() {
    let policy = Policy::builder().no_deadline().build().unwrap();
    let at = logins_after_a_first_refused_with("come back in two hours", 7200 * S, policy).await;
    assert_eq!(at[1] - at[0], 3600 * S);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_login_with_a_backoff_of_duration_max_stops_logins_without_a_panic() {
    // "After a fatal answer, never again", said the natural way: the wait is held to what the
    // clock can say, and the login task still records the answer for every waiter.
    let logins = Arc::new(AtomicUsize::new(0));
    let counted = logins.clone();
    let source = TokenSource::from_fn(Attach::Bearer, move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Err::<Credential, _>(LoginError::new(LoginFailureKind::Fatal, "ACCOUNT_SUSPENDED")) }
    })
    .login_backoff(S, Duration::MAX);
    let vendor = tower::service_fn(|_: Request<RetryBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
    });
    let layer = RetryLayer::builder()
        .default_host(Generic, Policy::builder().deadline(10 * S).build().unwrap())
        .auth("*", source)
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    for _ in 0..3 {
        let req = Request::get("http://x.test/").body(Full::default()).unwrap();
        let err = svc.clone().oneshot(req).await.unwrap_err();
        let login = err.login_error().expect("the login's answer");
        assert_eq!(login.code(), None);
        assert!(login.is_fatal() && login.to_string().contains("ACCOUNT_SUSPENDED"), "{login}");
    }
    assert_eq!(logins.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_login_transport_error_that_names_its_url_shows_no_query_or_userinfo() {
    // reqwest's errors name the URL they failed on; a token endpoint's query can carry the
    // client secret (Marketo documents it there).
    let inner = tower::service_fn(|req: Request<RetryBody<Full<Bytes>>>| async move {
        if req.uri().path() == "/login" {
            let e = "error sending request for url (http://u:TOPSECRET@vendor.test/login?client_secret=TOPSECRET)";
            return Err::<Response<Full<Bytes>>, _>(std::io::Error::other(e));
        }
        Ok(Response::new(Full::from("ok")))
    });
    let err = call_whose_login_fails(inner.map_err(redial_tower::BoxError::from)).await;
    let login = err.login_error().expect("the login's error");
    let shown = format!("{err} {err:?} {login} {login:?}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    assert!(login.message().contains("http://vendor.test/login?…"), "{}", login.message());
}

/// A call through `inner` (whose logins fail on the transport) with [`TestLogin`], within 10 s.
async fn call_whose_login_fails<S>(inner: S) -> redial_tower::Error
where
    S: Service<Request<RetryBody<Full<Bytes>>>, Response = Response<Full<Bytes>>, Error = redial_tower::BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(10 * S).build().unwrap())
        .auth("*", TokenSource::login(TestLogin))
        .unwrap()
        .build();
    ServiceBuilder::new().layer(layer).service(inner).oneshot(api()).await.unwrap_err()
}

#[tokio::test(start_paused = true)]
async fn a_login_transport_error_whose_wrapper_repeats_its_cause_tells_it_once() {
    // reqwest-middleware's error shows the reqwest error it wraps as its own message, and has it
    // as its source: the login's message said "error sending request for url (…)" twice.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let inner = tower::service_fn(|req: Request<RetryBody<Full<Bytes>>>| async move {
        if req.uri().path() == "/login" {
            let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
            return Err::<Response<Full<Bytes>>, _>(Wrapper(std::io::Error::other(refused)));
        }
        Ok(Response::new(Full::from("ok")))
    });
    let err = call_whose_login_fails(inner.map_err(redial_tower::BoxError::from)).await;
    let message = err.login_error().expect("the login's error").message().to_owned();
    assert_eq!(message.matches("connection refused").count(), 1, "{message}");
}

/// A vendor that answers 200 to anything, boxed.
type Plain = tower::util::BoxCloneService<Request<RetryBody<Full<Bytes>>>, Response<Full<Bytes>>, Infallible>;

fn plain_vendor() -> Plain {
    Plain::new(tower::service_fn(|_: Request<RetryBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
    }))
}

#[tokio::test(start_paused = true)]
async fn a_login_that_panics_ends_as_a_failed_login_and_the_next_one_starts() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let source = TokenSource::from_fn(Attach::Bearer, move || {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                panic!("a custom login with a bug");
            }
            Ok::<_, LoginError>(Credential::new("t0k3n", Some(3600 * S)))
        }
    });
    let layer = RetryLayer::builder()
        .default_host(Generic, Policy::builder().deadline(10 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(plain_vendor());
    // The first login's task dies; the request is not left waiting on it: the next login,
    // after the backoff, serves it.
    let res = svc.clone().oneshot(api()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(!source.login_in_flight());
}

#[tokio::test(start_paused = true)]
async fn a_tokens_lifetime_runs_from_when_its_login_was_sent() {
    // The vendor mints a 20 s token when the login arrives and answers 3 s later: the token
    // dies 20 s after the login was sent, and is never sent after that.
    let minted = Arc::new(Mutex::new(Vec::new()));
    let log = minted.clone();
    let source = TokenSource::from_fn(Attach::Bearer, move || {
        let log = log.clone();
        async move {
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Instant::now());
                log.len()
            };
            tokio::time::sleep(3 * S).await;
            Ok::<_, LoginError>(Credential::new(format!("tok{n}"), Some(20 * S)))
        }
    })
    .skew(Duration::from_millis(1));
    let expired_sent = Arc::new(AtomicUsize::new(0));
    let (seen, valid) = (expired_sent.clone(), minted.clone());
    let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
        let token = req.headers()["authorization"].to_str().unwrap().trim_start_matches("Bearer tok").to_owned();
        let born = valid.lock().unwrap()[token.parse::<usize>().unwrap() - 1];
        if Instant::now() >= born + 20 * S {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok"))) }
    });
    let layer = RetryLayer::builder().default_host(Generic, Policy::default()).auth("*", source).unwrap().build();
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    svc.clone().oneshot(api()).await.unwrap();
    // t = 21.5 s: 1.5 s past the token's real end, 1.5 s before the end an answer-time clock
    // would give it.
    tokio::time::sleep(Duration::from_millis(18_500)).await;
    svc.clone().oneshot(api()).await.unwrap();
    assert_eq!(expired_sent.load(Ordering::SeqCst), 0, "a token went out after its expiry");
}

#[tokio::test(start_paused = true)]
async fn a_login_backoff_doubles_all_the_way_to_its_longest_and_never_starts_at_zero() {
    for (min, max) in [(Duration::ZERO, 60 * S), (Duration::from_micros(100), 300 * S)] {
        let logins = Arc::new(Mutex::new(Vec::new()));
        let log = logins.clone();
        let source = TokenSource::from_fn(Attach::Bearer, move || {
            log.lock().unwrap().push(Instant::now());
            async { Err::<Credential, _>(LoginError::new(LoginFailureKind::Transient, "login unavailable")) }
        })
        .login_backoff(min, max);
        let layer = RetryLayer::builder()
            .default_host(Generic, Policy::builder().deadline(900 * S).build().unwrap())
            .auth("*", source)
            .unwrap()
            .build();
        let svc = ServiceBuilder::new().layer(layer).service(plain_vendor());
        assert!(svc.oneshot(api()).await.is_err());
        let logins = logins.lock().unwrap().clone();
        assert!(logins.len() < 40, "{min:?}: {} logins", logins.len());
        let longest = logins.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(longest >= max, "{min:?}: the longest wait was {longest:?}, not {max:?}");
    }
}

/// A login like Responsys's: one that gets no answer waits 2 minutes before the next, and
/// after three retries without an answer the next silence counts as fatal.
#[derive(Debug)]
struct SilentVendorLogin;

impl Login for SilentVendorLogin {
    fn request(&self) -> Request<Bytes> {
        TestLogin.request()
    }
    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        TestLogin.parse(res, body)
    }
    fn no_response_wait(&self) -> Option<Duration> {
        Some(120 * S)
    }
    fn no_response_retries(&self) -> Option<u32> {
        Some(3)
    }
}

/// An inner service whose logins fail without an answer (the connection broke) while
/// `silent` is set, and answer `tok:3600` otherwise; the login times are kept.
fn silent_login_vendor(
    silent: Arc<std::sync::atomic::AtomicBool>,
    logins: Arc<Mutex<Vec<Instant>>>,
) -> impl Service<Request<RetryBody<Full<Bytes>>>, Response = Response<Full<Bytes>>, Error = std::io::Error, Future: Send>
       + Clone
       + Send
       + 'static {
    failing_login_vendor(silent, logins, || std::io::Error::other("connection broke"))
}

/// As [`silent_login_vendor`], the logins failing with `error` while `failing` is set.
fn failing_login_vendor(
    failing: Arc<std::sync::atomic::AtomicBool>,
    logins: Arc<Mutex<Vec<Instant>>>,
    error: fn() -> std::io::Error,
) -> impl Service<Request<RetryBody<Full<Bytes>>>, Response = Response<Full<Bytes>>, Error = std::io::Error, Future: Send>
       + Clone
       + Send
       + 'static {
    tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
        let (failing, logins) = (failing.clone(), logins.clone());
        async move {
            if req.uri().path() == "/login" {
                logins.lock().unwrap().push(Instant::now());
                if failing.load(Ordering::SeqCst) {
                    return Err(error());
                }
                return Ok(Response::new(Full::from("tok:3600")));
            }
            Ok(Response::new(Full::from("ok")))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn logins_without_an_answer_stay_the_vendors_wait_apart_even_past_a_shorter_longest_backoff() {
    // The user's login backoff (1 s to 10 s) is shorter than the vendor's 2 minutes: the
    // silence turned fatal must not let the next login come sooner than the vendor allows.
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let logins = Arc::new(Mutex::new(Vec::new()));
    let source = TokenSource::login(SilentVendorLogin).login_backoff(S, 10 * S);
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(900 * S).build().unwrap())
        .auth("*", source)
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(silent_login_vendor(silent.clone(), logins.clone()));
    let err = svc.clone().oneshot(api()).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");
    assert!(err.login_error().unwrap().is_fatal(), "{err}");
    assert_eq!(logins.lock().unwrap().len(), 4);
    // A request now and then for the next 10 minutes.
    for _ in 0..60 {
        tokio::time::sleep(10 * S).await;
        let _ = svc.clone().oneshot(api()).await;
    }
    let times = logins.lock().unwrap().clone();
    assert!(times.len() > 4, "the logins start again: {times:?}");
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 120 * S, "a login came {:?} after one that got no answer", w[1] - w[0]);
    }
}

/// A login whose connect was refused never reached the vendor: it is no login without an
/// answer (Responsys counts those, and disables the login after the fourth), only a failed
/// one, under the token source's own backoff. Twenty refusals later the login still goes.
#[tokio::test(start_paused = true)]
async fn logins_whose_connect_was_refused_are_not_logins_the_vendor_left_unanswered() {
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let logins = Arc::new(Mutex::new(Vec::new()));
    let source = TokenSource::login(SilentVendorLogin).login_backoff(S, 2 * S);
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(900 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let vendor = failing_login_vendor(refusing.clone(), logins.clone(), refused);
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    let request = tokio::spawn(svc.oneshot(api()));
    tokio::time::sleep(40 * S).await;
    assert!(logins.lock().unwrap().len() >= 20, "{:?}", logins.lock().unwrap());
    let last = source.last_error().expect("the logins failed");
    assert!(!last.is_fatal() && last.message().contains("not sent"), "{last}");
    refusing.store(false, Ordering::SeqCst);
    assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn renewals_without_an_answer_turned_fatal_never_stop_traffic_on_a_valid_token() {
    // A 1-hour token renewed from about 10 minutes in; from then on every login goes unanswered.
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let logins = Arc::new(Mutex::new(Vec::new()));
    let source = TokenSource::login(SilentVendorLogin).skew(3000 * S);
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(30 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(silent_login_vendor(silent.clone(), logins.clone()));
    svc.clone().oneshot(api()).await.unwrap();
    silent.store(true, Ordering::SeqCst);
    let start = Instant::now();
    while start.elapsed() < 3590 * S {
        let res = svc.clone().oneshot(api()).await;
        assert!(res.is_ok(), "at {:?}: {:?}", start.elapsed(), res.err());
        tokio::time::sleep(10 * S).await;
    }
    let times = logins.lock().unwrap().clone();
    assert!(times.len() >= 5, "{times:?}");
    assert!(source.last_error().unwrap().is_fatal());
    for w in times[1..].windows(2) {
        assert!(w[1] - w[0] >= 120 * S, "{:?}", w[1] - w[0]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_deadline_comes_as_the_login_backoff_opens_fails_and_starts_no_login() {
    // The login gets no answer at once; the next may go 1 s later, when the waiting request's
    // own deadline ends: that request is over, and sends no login for no one.
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let logins = Arc::new(Mutex::new(Vec::new()));
    let source = TokenSource::login(TestLogin).login_backoff(S, 60 * S);
    let layer =
        RetryLayer::builder().default_host(Vendor, Policy::default()).auth("*", source.clone()).unwrap().build();
    let svc = ServiceBuilder::new().layer(layer).service(silent_login_vendor(silent, logins.clone()));
    let mut req = api();
    req.extensions_mut().insert(redial_tower::RequestLimits::new().deadline(S));
    let started = Instant::now();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(started.elapsed(), S);
    assert!(err.is_auth_failed(), "{err}");
    assert!(err.login_error().unwrap().message().contains("connection broke"), "{err}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(logins.lock().unwrap().len(), 1, "a login went for a request past its deadline");
    assert_eq!(source.logins(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_closure_login_that_panics_before_its_future_fails_the_login_not_the_request() {
    // The closure's own code (before the future it returns) panics the first time: that is
    // the login's failure, in the login's task, not a panic in whichever request started it.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let source = TokenSource::from_fn(Attach::Bearer, move || {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("a custom login with a bug");
        }
        async { Ok::<_, LoginError>(Credential::new("t0k3n", Some(3600 * S))) }
    });
    let layer = RetryLayer::builder()
        .default_host(Generic, Policy::builder().deadline(10 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(plain_vendor());
    let res = tokio::spawn(svc.oneshot(api())).await.expect("the request did not panic");
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(!source.login_in_flight());
}

/// [`SilentVendorLogin`], whose request-building panics once, on its `panic_on`th login.
#[derive(Debug)]
struct PanicsOnce {
    calls: AtomicUsize,
    panic_on: usize,
}

impl Login for PanicsOnce {
    fn request(&self) -> Request<Bytes> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.panic_on {
            panic!("a custom login with a bug");
        }
        TestLogin.request()
    }
    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        TestLogin.parse(res, body)
    }
    fn no_response_wait(&self) -> Option<Duration> {
        SilentVendorLogin.no_response_wait()
    }
    fn no_response_retries(&self) -> Option<u32> {
        SilentVendorLogin.no_response_retries()
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_that_ends_without_an_answer_does_not_reset_the_count_of_logins_without_one() {
    // Three logins get no answer, the fourth dies before it is sent (nothing was answered),
    // the fifth gets no answer: that is the fourth silence in a row, and fatal.
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let logins = Arc::new(Mutex::new(Vec::new()));
    let source = TokenSource::login(PanicsOnce { calls: AtomicUsize::new(0), panic_on: 4 });
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(3600 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(silent_login_vendor(silent, logins.clone()));
    let err = svc.oneshot(api()).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");
    assert!(err.login_error().unwrap().is_fatal(), "{err}");
    assert_eq!(source.logins(), 5);
    assert_eq!(logins.lock().unwrap().len(), 4, "four logins sent, none answered");
}

/// A login's answer is read up to 64 KiB: one of exactly 64 KiB is read whole and parsed; one
/// a byte longer is an answer whose body could not be read, and the login fails.
#[tokio::test(start_paused = true)]
async fn a_login_answer_is_read_up_to_64_kib() {
    #[derive(Debug)]
    struct Measures;
    impl Login for Measures {
        fn request(&self) -> Request<Bytes> {
            TestLogin.request()
        }
        fn parse(&self, _: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
            Ok(Credential::new(format!("read-{}", body.len()), None))
        }
    }
    for (len, read) in [(64 * 1024, true), (64 * 1024 + 1, false)] {
        let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| async move {
            let body = if req.uri().path() == "/login" { Bytes::from(vec![b'x'; len]) } else { Bytes::from("ok") };
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        });
        let source = TokenSource::login(Measures);
        let policy = Policy::builder().deadline(5 * S).build().unwrap();
        let layer = RetryLayer::builder().default_host(Vendor, policy).auth("*", source.clone()).unwrap().build();
        let res = ServiceBuilder::new().layer(layer).service(vendor).oneshot(api()).await;
        match res {
            Ok(res) => assert!(read, "{len} bytes: {:?}", res.status()),
            Err(err) => {
                assert!(!read && err.is_auth_failed(), "{len} bytes: {err}");
                assert!(source.last_error().is_some_and(|e| !e.is_fatal()), "{:?}", source.last_error());
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_answered_with_a_body_too_long_to_read_is_an_answer_not_a_silence() {
    // The vendor answers every login, with a body past the login body limit: four of them are
    // four answers, and never "four logins in a row got no answer".
    let logins = Arc::new(AtomicUsize::new(0));
    let count = logins.clone();
    let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
        let count = count.clone();
        async move {
            if req.uri().path() == "/login" {
                count.fetch_add(1, Ordering::SeqCst);
                return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; 1 << 20]))));
            }
            Ok(Response::new(Full::from("ok")))
        }
    });
    let source = TokenSource::login(SilentVendorLogin).login_backoff(S, 10 * S);
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(900 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    for _ in 0..60 {
        if logins.load(Ordering::SeqCst) >= 4 {
            break;
        }
        let _ = svc.clone().oneshot(api()).await;
        tokio::time::sleep(10 * S).await;
    }
    assert!(logins.load(Ordering::SeqCst) >= 4);
    let e = source.last_error().unwrap();
    assert!(!e.is_fatal(), "answered logins counted as silence: {e}");
}

/// An inner service whose `Clone` panics once, when `armed` (a bug in the user's service):
/// the clone the token cell makes to send a login, which a request's poll asks for.
struct ClonePanicsOnce {
    armed: Arc<std::sync::atomic::AtomicBool>,
    inner: Plain,
}

impl Clone for ClonePanicsOnce {
    fn clone(&self) -> Self {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("an inner service whose Clone has a bug");
        }
        ClonePanicsOnce { armed: self.armed.clone(), inner: self.inner.clone() }
    }
}

impl Service<Request<RetryBody<Full<Bytes>>>> for ClonePanicsOnce {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = <Plain as Service<Request<RetryBody<Full<Bytes>>>>>::Future;
    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: Request<RetryBody<Full<Bytes>>>) -> Self::Future {
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn an_inner_service_whose_clone_panics_for_a_login_fails_that_login_not_its_waiters() {
    // Two requests need a token; the first one's poll starts the login, and the clone of the
    // inner service the login is sent through panics. That login is over at once (nothing was
    // sent): neither request panics nor waits for its deadline, and the next login, a
    // backoff later, serves them both.
    let vendor = FakeVendor::new(3600);
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let v = vendor.clone();
    let inner = ClonePanicsOnce {
        armed: armed.clone(),
        inner: Plain::new(tower::service_fn(move |req| v.clone().handle(req))),
    };
    let source = TokenSource::login(TestLogin).login_backoff(S, 60 * S);
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(30 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let mut svc = ServiceBuilder::new().layer(layer).service(inner);
    // Called before the service's bug shows: the layer keeps a clone of its own per call.
    let first = svc.ready().await.unwrap().call(api());
    let second = svc.ready().await.unwrap().call(api());
    armed.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let (first, second) = (tokio::spawn(first), tokio::spawn(second));
    let first = first.await.expect("the request that started the login did not panic");
    assert_eq!(first.unwrap().status(), StatusCode::OK);
    assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
    assert!(!armed.load(Ordering::SeqCst), "the clone for the login panicked");
    assert_eq!(started.elapsed(), S, "served by the next login, one backoff later");
    assert_eq!(source.logins(), 2);
    assert_eq!(vendor.logins().len(), 1, "the login whose clone panicked was never sent");
    assert!(!source.login_in_flight());
}

/// [`TestLogin`], whose `method` panics the first time it is called.
#[derive(Debug)]
struct HookPanicsOnce {
    method: &'static str,
    panicked: std::sync::atomic::AtomicBool,
}

impl HookPanicsOnce {
    fn new(method: &'static str) -> Self {
        HookPanicsOnce { method, panicked: std::sync::atomic::AtomicBool::new(false) }
    }
    fn maybe_panic(&self, method: &str) {
        if method == self.method && !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("a custom login with a bug in {method}");
        }
    }
}

impl Login for HookPanicsOnce {
    fn request(&self) -> Request<Bytes> {
        TestLogin.request()
    }
    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        self.maybe_panic("parse");
        TestLogin.parse(res, body)
    }
    fn no_response_wait(&self) -> Option<Duration> {
        self.maybe_panic("no_response_wait");
        SilentVendorLogin.no_response_wait()
    }
    fn no_response_retries(&self) -> Option<u32> {
        self.maybe_panic("no_response_retries");
        SilentVendorLogin.no_response_retries()
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_whose_own_method_panics_fails_that_login_and_its_waiters_are_woken_at_once() {
    // Whichever of the Login's methods panics, the login it was called for is over: the
    // request that started it does not panic, no waiter stays until its deadline, and the
    // next login, one backoff later, serves them.
    for method in ["no_response_wait", "no_response_retries", "parse"] {
        let vendor = FakeVendor::new(3600);
        let source = TokenSource::login(HookPanicsOnce::new(method)).login_backoff(S, 60 * S);
        let svc = service(&vendor, source.clone(), Policy::builder().deadline(30 * S).build().unwrap());
        let started = Instant::now();
        let (first, second) = (tokio::spawn(svc.clone().oneshot(api())), tokio::spawn(svc.oneshot(api())));
        let first = first.await.unwrap_or_else(|_| panic!("{method}: the request that started the login panicked"));
        assert_eq!(first.unwrap().status(), StatusCode::OK, "{method}");
        assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK, "{method}");
        assert_eq!(started.elapsed(), S, "{method}: served by the next login, one backoff later");
        assert_eq!(source.logins(), 2, "{method}");
        assert!(!source.login_in_flight(), "{method}");
    }
}

/// A login whose `no_response_retries` always panics.
#[derive(Debug)]
struct AlwaysPanics;

impl Login for AlwaysPanics {
    fn request(&self) -> Request<Bytes> {
        TestLogin.request()
    }
    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        TestLogin.parse(res, body)
    }
    fn no_response_retries(&self) -> Option<u32> {
        panic!("a custom login with a bug")
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_that_always_panics_fails_its_waiters_with_a_login_error_that_says_so() {
    // Every login panics: each is a failed login, under the backoff; the request fails at its
    // deadline with the login's failure, which says it panicked.
    let vendor = FakeVendor::new(3600);
    let source = TokenSource::login(AlwaysPanics).login_backoff(S, 60 * S);
    let svc = service(&vendor, source.clone(), Policy::builder().deadline(10 * S).build().unwrap());
    let started = Instant::now();
    let err = tokio::spawn(svc.oneshot(api())).await.expect("the request did not panic").unwrap_err();
    assert_eq!(started.elapsed(), 10 * S);
    assert!(err.is_auth_failed(), "{err}");
    let login = err.login_error().unwrap();
    assert!(!login.is_fatal() && login.message().contains("panicked"), "{login}");
    // Logins at 0, 1, 3 and 7 s: never sent (the hook is read before the request is).
    assert_eq!(source.logins(), 4);
    assert!(vendor.logins().is_empty());
    assert!(!source.login_in_flight());
}

/// An inner service that cannot get ready while `down` is set (its connection pool closed, a
/// `Buffer` whose worker died): nothing it is given is sent then.
#[derive(Clone)]
struct Unready<S> {
    down: Arc<std::sync::atomic::AtomicBool>,
    inner: S,
}

impl<S> Service<Request<RetryBody<Full<Bytes>>>> for Unready<S>
where
    S: Service<Request<RetryBody<Full<Bytes>>>, Error = std::io::Error>,
{
    type Response = S::Response;
    type Error = std::io::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), std::io::Error>> {
        if self.down.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Err(std::io::Error::other("connection pool closed")));
        }
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: Request<RetryBody<Full<Bytes>>>) -> Self::Future {
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_the_inner_service_could_not_get_ready_to_send_is_not_a_login_without_an_answer() {
    // The vendor's login turns fatal after three retries without an answer, 2 minutes apart.
    // For 40 s the client cannot send at all: those logins never reached the vendor, so they
    // neither count toward that limit nor wait its 2 minutes; each is a failed login under the
    // backoff (1, 2, 4, 8, 16, 32 s), with the client's error as its source. The one after the
    // client is back is sent, answered, and serves the request.
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let logins = Arc::new(Mutex::new(Vec::new()));
    let source = TokenSource::login(SilentVendorLogin).login_backoff(S, 60 * S);
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(900 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let inner = Unready {
        down: down.clone(),
        inner: silent_login_vendor(Arc::new(std::sync::atomic::AtomicBool::new(false)), logins.clone()),
    };
    let mut svc = ServiceBuilder::new().layer(layer).service(inner);
    let request = svc.ready().await.unwrap().call(api());
    down.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let request = tokio::spawn(request);
    tokio::time::sleep(40 * S).await;
    assert_eq!(source.logins(), 6, "logins at 0, 1, 3, 7, 15 and 31 s");
    assert!(logins.lock().unwrap().is_empty(), "none was sent");
    let e = source.last_error().unwrap();
    assert!(!e.is_fatal(), "logins never sent counted as logins without an answer: {e}");
    let why = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(why.map(|e| e.to_string()).as_deref(), Some("connection pool closed"), "{e:?}");
    down.store(false, Ordering::SeqCst);
    assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(started.elapsed(), 63 * S, "the seventh login, 32 s after the sixth");
    assert_eq!(logins.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_login_succeeds_as_its_deadline_comes_fails_on_its_deadline_not_an_older_login_error() {
    // The request's token has expired: the vendor answers 401, and the request waits for a new
    // login. The first fails (503, after 1 s), the next goes a backoff later and answers 1 s
    // after that: at the request's deadline, or 1 ms past it. The request fails on its
    // deadline, its 401 kept, not with the first login's failure (a login was running, and
    // it succeeded).
    for deadline in [3000, 2999] {
        let vendor = FakeVendor::new(3600);
        let source = TokenSource::login(TestLogin).login_backoff(S, 60 * S);
        let svc = service(&vendor, source.clone(), Policy::default());
        svc.clone().oneshot(api()).await.unwrap();
        vendor.expire_all();
        vendor.0.fail_logins.store(1, Ordering::SeqCst);
        vendor.0.login_delay_ms.store(1000, Ordering::SeqCst);
        let mut req = api();
        req.extensions_mut().insert(redial_tower::RequestLimits::new().deadline(Duration::from_millis(deadline)));
        let started = Instant::now();
        let err = svc.clone().oneshot(req).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(deadline));
        assert!(err.is_deadline(), "{deadline} ms: {err}");
        assert!(err.login_error().is_none(), "{deadline} ms: an older login's error: {err}");
        assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED), "{deadline} ms: the last response is kept");
        assert_eq!(err.body().map(|b| &b[..]), Some(&b"expired"[..]));
        assert_eq!(err.report().attempt_count(), 1);
        // The login did succeed: the next request goes with its token, no login of its own.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
        assert_eq!(vendor.logins().len(), 3, "{deadline} ms");
    }
}

/// A vendor whose login answers `503 BUSY` may be tried once more; a second `BUSY` in a row
/// is fatal (as Responsys's `UNRECOVERABLE_EXCEPTION`).
#[derive(Debug)]
struct OneRetryWhenBusy;

impl Login for OneRetryWhenBusy {
    fn request(&self) -> Request<Bytes> {
        TestLogin.request()
    }
    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        TestLogin.parse(res, body).map_err(|e| if res.status == 503 { e.with_code("BUSY") } else { e })
    }
    fn failed_again(&self, previous: &LoginError, failure: LoginError) -> LoginError {
        if previous.code() == Some("BUSY") && failure.code() == Some("BUSY") {
            failure.into_fatal("BUSY twice in a row")
        } else {
            failure
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_vendors_rule_for_a_row_of_failed_login_answers_skips_logins_that_got_no_answer() {
    // The logins' answers: BUSY, none (a refused connection), BUSY: that is two BUSY answers in
    // a row, and fatal. After the longest backoff: a token (the row ends), then BUSY: not fatal.
    let script = Arc::new(Mutex::new(vec!["busy", "silent", "busy", "ok", "busy"]));
    let next = script.clone();
    let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
        let next = next.clone();
        async move {
            if req.uri().path() == "/login" {
                let answer = next.lock().unwrap().remove(0);
                return match answer {
                    "busy" => Ok(Response::builder().status(503).body(Full::<Bytes>::from("busy")).unwrap()),
                    "silent" => Err(std::io::Error::other("connection refused")),
                    _ => Ok(Response::new(Full::from("tok:1"))),
                };
            }
            Ok(Response::new(Full::from("ok")))
        }
    });
    let source = TokenSource::login(OneRetryWhenBusy).login_backoff(S, 60 * S);
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(30 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    let err = svc.clone().oneshot(api()).await.unwrap_err();
    let login = err.login_error().expect("the login's failure");
    assert!(login.is_fatal() && login.message() == "BUSY twice in a row", "{login}");
    assert_eq!(source.logins(), 3);
    tokio::time::sleep(60 * S).await;
    // A 1 s token: the request is served.
    assert_eq!(svc.clone().oneshot(api()).await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(2 * S).await;
    // Its deadline comes before the backoff after this BUSY ends.
    let mut req = api();
    req.extensions_mut().insert(redial_tower::RequestLimits::new().deadline(Duration::from_millis(500)));
    let err = svc.oneshot(req).await.unwrap_err();
    let login = err.login_error().expect("the login's failure");
    assert!(!login.is_fatal(), "a success ended the row: {login}");
    assert!(script.lock().unwrap().is_empty());
}

/// A login that honours a `Retry-After` on a refused answer, measured from the time the
/// answer came (`ResponseHead::received_at`), as the built-in OAuth2 logins do.
#[derive(Debug)]
struct RetryAfterLogin;

impl Login for RetryAfterLogin {
    fn request(&self) -> Request<Bytes> {
        TestLogin.request()
    }
    fn parse(&self, res: &ResponseHead<'_>, body: &[u8]) -> Result<Credential, LoginError> {
        TestLogin.parse(res, body).map_err(|e| match redial_core::hint::retry_after(res.headers, res.received_at) {
            Some(wait) => e.with_retry_after(wait),
            None => e,
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_answer_is_read_against_the_layers_wall_clock() {
    // The layer's wall clock says Sun, 06 Nov 1994 08:49:37 GMT. The login is refused with a
    // Retry-After date one minute after that: the next login waits that minute, as a request's
    // own Retry-After date would be measured (not against the machine's clock, by which the
    // date is long past and the login backoff's 1 s decides).
    fn clock() -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(784_111_777)
    }
    let logins = Arc::new(AtomicUsize::new(0));
    let count = logins.clone();
    let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
        let count = count.clone();
        async move {
            if req.uri().path() == "/login" {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    let busy = Response::builder()
                        .status(503)
                        .header("retry-after", "Sun, 06 Nov 1994 08:50:37 GMT")
                        .body(Full::<Bytes>::from("busy"))
                        .unwrap();
                    return Ok::<_, Infallible>(busy);
                }
                return Ok(Response::new(Full::from("tok:3600")));
            }
            Ok(Response::new(Full::from("ok")))
        }
    });
    let source = TokenSource::login(RetryAfterLogin).login_backoff(S, 300 * S);
    let layer = RetryLayer::builder()
        .default_host(Vendor, Policy::builder().deadline(300 * S).build().unwrap())
        .auth("*", source.clone())
        .unwrap()
        .wall_clock(clock)
        .build();
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    let started = Instant::now();
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(logins.load(Ordering::SeqCst), 2);
    assert_eq!(started.elapsed(), 60 * S, "the second login came when the vendor said, by the layer's clock");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_in_a_login_after_a_failed_one_keeps_the_last_attempts_transport_error() {
    // The first attempt goes with a 2 s token and its connection is reset; the retry, 3 s
    // later, needs a new token: that login is refused (503), and the next one is still
    // running at the deadline. The request fails on its deadline; its error still owns what
    // its last attempt got (the reset, as its source), whatever the logins did.
    let logins = Arc::new(AtomicUsize::new(0));
    let count = logins.clone();
    let vendor = tower::service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
        let count = count.clone();
        async move {
            if req.uri().path() == "/login" {
                return match count.fetch_add(1, Ordering::SeqCst) {
                    0 => Ok(Response::new(Full::from("tok:2"))),
                    1 => Ok(Response::builder().status(503).body(Full::<Bytes>::from("busy")).unwrap()),
                    _ => std::future::pending().await,
                };
            }
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer"))
        }
    });
    let source = TokenSource::login(TestLogin).login_backoff(S, 60 * S);
    let policy =
        Policy::builder().deadline(10 * S).backoff(redial_core::backoff::Backoff::schedule([3 * S])).build().unwrap();
    let layer = RetryLayer::builder().default_host(Vendor, policy).auth("*", source.clone()).unwrap().build();
    let svc = ServiceBuilder::new().layer(layer).service(vendor);
    let err = svc.oneshot(api()).await.unwrap_err();
    assert_eq!(logins.load(Ordering::SeqCst), 3, "{err}");
    assert!(source.login_in_flight());
    assert!(err.is_deadline(), "{err}");
    assert_eq!(err.report().attempt_count(), 1, "{err}");
    assert!(err.is_transport(), "{err}");
    let io = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionReset), "{err:?}");
}

/// Two processes of a fleet (here two layers, each with its own token source) share one
/// credential through a store: the second takes the first's login instead of logging in.
#[tokio::test(start_paused = true)]
async fn token_sources_sharing_a_store_log_in_once_between_them() {
    let vendor = FakeVendor::new(3600);
    let store = Arc::new(InMemoryStore::default());
    let a = service(&vendor, TokenSource::login(TestLogin).store(store.clone()), Policy::default());
    let b = service(&vendor, TokenSource::login(TestLogin).store(store.clone()), Policy::default());
    assert_eq!(a.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    tokio::task::yield_now().await; // the login's task stores what it got
    assert_eq!(b.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 1, "the second source took the stored token");
    let shown = format!("{store:?}");
    assert!(shown.contains("expires_at") && !shown.contains("tok0"), "{shown}");
}

/// Two sources sharing a store need a token at the same moment (a fleet's processes meeting
/// an expired token at once): one claims the login, the other waits for its save and takes
/// the credential. The vendor sees one login.
#[tokio::test(start_paused = true)]
async fn two_sources_that_need_a_token_at_once_log_in_once_through_the_stores_claim() {
    let vendor = FakeVendor::new(3600);
    vendor.0.login_delay_ms.store(200, Ordering::SeqCst);
    let store = Arc::new(InMemoryStore::default());
    let (a_source, b_source) =
        (TokenSource::login(TestLogin).store(store.clone()), TokenSource::login(TestLogin).store(store.clone()));
    let a = service(&vendor, a_source.clone(), Policy::default());
    let b = service(&vendor, b_source.clone(), Policy::default());
    let started = Instant::now();
    let (ra, rb) = tokio::join!(a.oneshot(api()), b.oneshot(api()));
    assert_eq!((ra.unwrap().status(), rb.unwrap().status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(vendor.logins().len(), 1, "one login for both");
    assert!(started.elapsed() < S, "the second waited for the first's save, not a timeout: {:?}", started.elapsed());
    assert_eq!((a_source.logins(), b_source.logins()), (1, 1), "each source got a credential once");
    assert!(format!("{store:?}").contains("claimed: None"), "the save ended the claim: {store:?}");
}

/// A claim whose login fails saves nothing: the source lets its claim go, and the source it
/// held off logs in at its next look (a quarter of a second), not when the claim would lapse.
#[tokio::test(start_paused = true)]
async fn a_claim_whose_login_fails_is_let_go_and_the_other_source_logs_in_at_once() {
    let vendor = FakeVendor::new(3600);
    vendor.0.fail_logins.store(1, Ordering::SeqCst);
    vendor.0.login_delay_ms.store(200, Ordering::SeqCst);
    let store = Arc::new(InMemoryStore::default());
    let source = || TokenSource::login(TestLogin).store(store.clone()).login_backoff(60 * S, 300 * S);
    let a = service(&vendor, source(), Policy::default());
    let b = service(&vendor, source(), Policy::default());
    let a_call = tokio::spawn(a.oneshot(api()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    let res = b.oneshot(api()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(waited < S, "held off only while the first login ran: {waited:?}");
    assert_eq!(vendor.logins().len(), 2, "the failed one, and the other source's");
    // The first source, in its backoff, reads the store and is served by the second's login.
    assert_eq!(a_call.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2);
}

/// A login that panics is a failed login (the module's docs): it saves nothing, and its
/// claim is let go as a failed login's is. The source it held off logs in at its next look,
/// not when the claim would lapse (the login timeout, 30 s).
#[tokio::test(start_paused = true)]
async fn a_claim_whose_login_panics_is_let_go_and_the_other_source_logs_in_at_once() {
    let vendor = FakeVendor::new(3600);
    let store = Arc::new(InMemoryStore::default());
    let panics = TokenSource::from_fn(Attach::Bearer, || async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        panic!("a custom login with a bug");
    })
    .store(store.clone())
    .login_backoff(60 * S, 300 * S);
    let a = service(&vendor, panics, Policy::default());
    let b = service(&vendor, TokenSource::login(TestLogin).store(store.clone()), Policy::default());
    let a_call = tokio::spawn(a.oneshot(api()));
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let started = Instant::now();
    assert_eq!(b.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(waited < S, "held off only while the panicking login ran: {waited:?}");
    assert_eq!(vendor.logins().len(), 1, "the other source's");
    // The panicking source, in its backoff, reads the store and is served by the other's login.
    assert_eq!(a_call.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// A claim outlasts its login: a login that hangs until its timeout still holds the other
/// source off (the claim is taken, then answered a second later, before the login's own
/// timeout starts), and the other logs in once the first gives up, never beside it.
#[tokio::test(start_paused = true)]
async fn a_claim_outlasts_a_login_that_hangs_until_its_timeout() {
    let vendor = FakeVendor::new(3600);
    vendor.0.login_delay_ms.store(60_000, Ordering::SeqCst);
    let store = Arc::new(SlowClaim::default());
    let source = || TokenSource::login(TestLogin).store(store.clone()).login_timeout(8 * S).login_backoff(S, 300 * S);
    let a = service(&vendor, source(), Policy::default());
    let b = service(&vendor, source(), Policy::default());
    let started = Instant::now();
    let a_call = tokio::spawn(a.oneshot(api()));
    // The first login is under way (sent once its claim was answered, at 1 s); the next answers.
    tokio::time::sleep(2 * S).await;
    assert_eq!(vendor.logins().len(), 1);
    vendor.0.login_delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(b.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    let logins = vendor.logins();
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert!(logins[1] - started >= 9 * S, "the second login waited for the first to give up: {logins:?}");
    // The claim was not granted again while the first login ran (until 9 s: sent at 1 s, its
    // timeout 8 s): a claim lasting only the login timeout lapsed at 8 s, under it.
    let granted: Vec<Duration> = store.1.lock().unwrap().iter().map(|t| *t - started).collect();
    assert_eq!(granted.len(), 2, "{granted:?}");
    assert!(granted[1] >= 9 * S, "granted again while the first login ran: {granted:?}");
    assert_eq!(a_call.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// A store that takes a claim at once and answers it a second later; it keeps when it granted
/// each claim.
#[derive(Debug, Default)]
struct SlowClaim(InMemoryStore, Mutex<Vec<Instant>>);

impl CredentialStore for SlowClaim {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        self.0.load()
    }
    fn save(&self, credential: StoredCredential) -> StoreFuture<'_, ()> {
        self.0.save(credential)
    }
    fn claim(&self, id: u64, within: Duration) -> StoreFuture<'_, bool> {
        let taken = self.0.claim(id, within);
        Box::pin(async move {
            let taken = taken.await;
            if taken {
                self.1.lock().unwrap().push(Instant::now());
            }
            tokio::time::sleep(S).await;
            taken
        })
    }
    fn unclaim(&self, id: u64) -> StoreFuture<'_, ()> {
        self.0.unclaim(id)
    }
}

/// A claim is let go only by its holder: a source whose claim lapsed (and was taken by
/// another) and that lets go late ends nothing of the other's.
#[tokio::test(start_paused = true)]
async fn a_late_unclaim_leaves_anothers_claim() {
    let store = InMemoryStore::default();
    assert!(store.claim(1, 10 * S).await);
    assert!(!store.claim(2, 10 * S).await, "held");
    tokio::time::advance(11 * S).await;
    assert!(store.claim(2, 10 * S).await, "the first one's lapsed");
    store.unclaim(1).await;
    assert!(!store.claim(3, 10 * S).await, "the second one's stays");
    store.unclaim(2).await;
    assert!(store.claim(3, 10 * S).await);
    // A holder claims again what it holds (its save did not land): it is not held off by itself.
    assert!(store.claim(3, 10 * S).await);
}

/// A store whose claim never answers holds no login off for longer than a quarter of the
/// login timeout: the source takes the claim as its own, and logs in.
#[tokio::test(start_paused = true)]
async fn a_claim_the_store_never_answers_is_taken_as_ours() {
    let vendor = FakeVendor::new(3600);
    let source = TokenSource::login(TestLogin).store(Arc::new(ClaimHangs)).login_timeout(8 * S);
    let svc = service(&vendor, source, Policy::default());
    let started = Instant::now();
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(started.elapsed(), 2 * S, "a quarter of the login timeout");
    assert_eq!(vendor.logins().len(), 1);
}

/// A credential store that holds nothing and never answers a claim.
#[derive(Debug)]
struct ClaimHangs;

impl CredentialStore for ClaimHangs {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        Box::pin(std::future::ready(None))
    }
    fn save(&self, _: StoredCredential) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
    fn claim(&self, _: u64, _: Duration) -> StoreFuture<'_, bool> {
        Box::pin(std::future::pending())
    }
}

/// The token the vendor refused is not taken back from the store: the source logs in, and
/// stores the new one for the others.
#[tokio::test(start_paused = true)]
async fn a_stored_token_the_vendor_refused_is_not_taken_back() {
    let vendor = FakeVendor::new(3600);
    let store = Arc::new(InMemoryStore::default());
    let a = service(&vendor, TokenSource::login(TestLogin).store(store.clone()), Policy::default());
    assert_eq!(a.clone().oneshot(api()).await.unwrap().status(), StatusCode::OK);
    vendor.expire_all();
    assert_eq!(a.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2, "the refused token was not reused");
    tokio::task::yield_now().await;
    let b = service(&vendor, TokenSource::login(TestLogin).store(store), Policy::default());
    assert_eq!(b.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2, "the new token was stored and taken");
}

/// `StoredCredential`'s `Debug` never shows the token (its docs), nor does the in-memory store
/// that keeps one.
#[tokio::test]
async fn a_stored_credential_and_its_store_never_show_the_token() {
    let stored = StoredCredential::new("tok-SECRET", None).with_endpoint("https://rest.example.com".parse().unwrap());
    let store = InMemoryStore::default();
    store.save(stored.clone()).await;
    let shown = format!("{stored:?} {store:?}");
    assert!(!shown.contains("SECRET") && shown.contains("rest.example.com"), "{shown}");
}

/// A stored credential that expires within the source's skew (renewal time), or has expired,
/// is not taken: the source logs in.
#[tokio::test(start_paused = true)]
async fn a_stored_credential_near_its_expiry_is_not_taken() {
    let vendor = FakeVendor::new(3600);
    let store = Arc::new(InMemoryStore::default());
    let soon = std::time::SystemTime::now() + Duration::from_secs(30);
    store.save(StoredCredential::new("stale-token", Some(soon))).await;
    let a = service(&vendor, TokenSource::login(TestLogin).store(store), Policy::default());
    assert_eq!(a.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 1);
    assert_eq!(vendor.0.expired_sent.load(Ordering::SeqCst), 0, "the stale token was never sent");
}

/// A vendor whose first login fails (transiently), and a source sharing `store` that waits
/// `backoff` after a failed login.
fn first_login_fails(store: Arc<dyn CredentialStore>, backoff: Duration) -> (FakeVendor, TokenSource) {
    let vendor = FakeVendor::new(3600);
    vendor.0.fail_logins.store(1, Ordering::SeqCst);
    (vendor, TokenSource::login(TestLogin).store(store).login_backoff(backoff, 300 * S))
}

/// A login failed: the source waits out its backoff window before it logs in again. Another
/// process logs in meanwhile and stores its token; the request waiting here takes it from the
/// store within a second (the store is read once a second while requests wait), not a minute
/// later when the window opens, and the vendor sees no second login from this source.
#[tokio::test(start_paused = true)]
async fn a_token_another_process_stores_during_the_login_backoff_is_taken_at_once() {
    let store = Arc::new(InMemoryStore::default());
    let (vendor, source) = first_login_fails(store.clone(), 60 * S);
    let a = service(&vendor, source.clone(), Policy::default());
    let started = Instant::now();
    let waiting = tokio::spawn(a.oneshot(api()));
    tokio::time::sleep(5 * S).await;
    assert_eq!(vendor.logins().len(), 1, "the first login failed; the next waits a minute");
    let b = service(&vendor, TokenSource::login(TestLogin).store(store), Policy::default());
    assert_eq!(b.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    let res = waiting.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(started.elapsed() <= 7 * S, "waited {:?}", started.elapsed());
    assert_eq!(vendor.logins().len(), 2, "one failed login here, one there");
    assert!(source.last_error().is_none(), "a good token ends the backoff");
    assert_eq!(source.logins(), 2, "the failed login and the token taken from the store");
}

/// A fatal answer's window is not read past (the module's docs): while it holds, requests fail
/// with it, even with another process's good token in the store; the first login after it
/// takes that token instead of logging in.
#[tokio::test(start_paused = true)]
async fn a_token_stored_during_a_fatal_answers_window_does_not_end_it() {
    let store = Arc::new(InMemoryStore::default());
    let vendor = FakeVendor::new(3600);
    vendor.0.fatal.store(true, Ordering::SeqCst);
    let a = service(
        &vendor,
        TokenSource::login(TestLogin).store(store.clone()).login_backoff(S, 60 * S),
        Policy::default(),
    );
    assert!(a.clone().oneshot(api()).await.unwrap_err().is_auth_failed());
    vendor.0.fatal.store(false, Ordering::SeqCst);
    let b = service(&vendor, TokenSource::login(TestLogin).store(store), Policy::default());
    assert_eq!(b.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(10 * S).await;
    let err = a.clone().oneshot(api()).await.unwrap_err();
    assert!(err.login_error().is_some_and(|e| e.is_fatal()), "{err}");
    assert_eq!(vendor.logins().len(), 2, "a's fatal login, b's");
    tokio::time::sleep(50 * S).await;
    assert_eq!(a.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2, "the token b stored serves a");
}

/// While a source waits out its backoff, the store is read at most once a second, however
/// many requests wait, and only while they do.
#[tokio::test(start_paused = true)]
async fn the_store_is_read_once_a_second_while_requests_wait_out_a_backoff() {
    let store = Arc::new(Counting::default());
    let (vendor, source) = first_login_fails(store.clone(), 30 * S);
    let svc = service(&vendor, source, Policy::default());
    let mut waiting = tokio::task::JoinSet::new();
    for _ in 0..50 {
        waiting.spawn(svc.clone().oneshot(api()));
    }
    while let Some(res) = waiting.join_next().await {
        assert_eq!(res.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(vendor.logins().len(), 2, "the failed login, and the one when the window opened");
    let loads = store.loads.load(Ordering::SeqCst);
    // Before each login, and once a second for the 30 s the requests waited between them.
    assert!((30..=33).contains(&loads), "{loads} loads");
    tokio::time::sleep(60 * S).await;
    assert_eq!(store.loads.load(Ordering::SeqCst), loads, "nobody waits: nobody reads");
}

/// A request whose deadline comes while the source waits out its backoff fails for the failed
/// login, as it would without a store, even if the store is being read at that moment.
#[tokio::test(start_paused = true)]
async fn a_deadline_during_a_read_of_the_store_in_the_backoff_fails_for_the_failed_login() {
    let (vendor, source) = first_login_fails(Arc::new(Slow), 60 * S);
    let svc = service(&vendor, source.clone(), Policy::builder().deadline(40 * S).build().unwrap());
    let started = Instant::now();
    let err = svc.oneshot(api()).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");
    assert!(err.to_string().contains("login unavailable"), "{err}");
    assert_eq!(started.elapsed(), 40 * S);
    assert!(!source.login_in_flight(), "a read of the store is not a login");
}

/// A store that takes 5 s to answer that it holds nothing.
#[derive(Debug)]
struct Slow;

impl CredentialStore for Slow {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        Box::pin(async {
            tokio::time::sleep(5 * S).await;
            None
        })
    }
    fn save(&self, _: StoredCredential) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A store that holds nothing and counts its loads.
#[derive(Debug, Default)]
struct Counting {
    loads: AtomicUsize,
}

impl CredentialStore for Counting {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(None))
    }
    fn save(&self, _: StoredCredential) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A credential store that never answers.
#[derive(Debug)]
struct Hangs;

impl CredentialStore for Hangs {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        Box::pin(std::future::pending())
    }
    fn save(&self, _: StoredCredential) -> StoreFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

/// A store that never answers, read during a login backoff: each read gives up after a quarter
/// of the login timeout, so the login when the window opens is held back by no more than that
/// (and its own read of the store), not by a read that waits on.
#[tokio::test(start_paused = true)]
async fn a_store_that_hangs_during_the_backoff_holds_the_next_login_back_a_quarter_of_its_timeout() {
    let vendor = FakeVendor::new(3600);
    vendor.0.fail_logins.store(1, Ordering::SeqCst);
    let source =
        TokenSource::login(TestLogin).store(Arc::new(Hangs)).login_timeout(8 * S).login_backoff(10 * S, 300 * S);
    let svc = service(&vendor, source, Policy::default());
    let started = Instant::now();
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    let logins: Vec<Duration> = vendor.logins().iter().map(|t| *t - started).collect();
    assert_eq!(logins.len(), 2, "{logins:?}");
    // The first login after its read (2 s); the window opens 10 s after it fails; a read in
    // flight then ends within 2 s, and the login's own read takes 2 s more.
    assert!(logins[1] <= 16 * S + Duration::from_millis(500), "{logins:?}");
}

/// Another process holds the login's claim and the store's reads never answer: the wait for
/// the other's credential ends after the login timeout (each read giving up after a quarter of
/// it), and the source logs in itself.
#[tokio::test(start_paused = true)]
async fn a_claim_held_elsewhere_with_a_store_that_hangs_holds_the_login_back_its_timeout_at_most() {
    let vendor = FakeVendor::new(3600);
    let source = TokenSource::login(TestLogin).store(Arc::new(HeldElsewhere)).login_timeout(8 * S);
    let svc = service(&vendor, source, Policy::default());
    let started = Instant::now();
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    let logins: Vec<Duration> = vendor.logins().iter().map(|t| *t - started).collect();
    assert_eq!(logins.len(), 1);
    // Its read (2 s), the claim refused, then 8 s of waiting, the last read giving up 2 s in.
    assert!(logins[0] >= 10 * S && logins[0] <= 12 * S + Duration::from_millis(500), "{logins:?}");
}

/// A read of the store during the backoff that never ends (its runtime shut down under it)
/// leaves no login in flight behind: on another runtime, the source logs in.
#[test]
fn a_backoff_read_dropped_with_its_runtime_leaves_no_login_in_flight() {
    let paused = || tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let vendor = FakeVendor::new(3600);
    vendor.0.fail_logins.store(1, Ordering::SeqCst);
    let source = TokenSource::login(TestLogin).store(Arc::new(Hangs)).login_timeout(8 * S).login_backoff(S, 300 * S);
    let runtime = paused();
    runtime.block_on(async {
        let svc = service(&vendor, source.clone(), Policy::default());
        // The login fails at 2 s (after its read of the store), and a read of the store starts
        // in its backoff, never to end: the runtime is shut down under it at 3.5 s.
        let waited = tokio::time::timeout(Duration::from_millis(3500), svc.oneshot(api())).await;
        assert!(waited.is_err(), "still waiting for a token");
    });
    drop(runtime);
    paused().block_on(async {
        let svc = service(&vendor, source.clone(), Policy::builder().deadline(30 * S).build().unwrap());
        assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    });
    assert_eq!(vendor.logins().len(), 2);
}

/// A store whose reads never answer, and whose login claim another process always holds.
#[derive(Debug)]
struct HeldElsewhere;

impl CredentialStore for HeldElsewhere {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        Box::pin(std::future::pending())
    }
    fn save(&self, _: StoredCredential) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
    fn claim(&self, _: u64, _: Duration) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(false))
    }
}

/// A store that never answers costs a quarter of the login timeout, then the login goes on.
#[tokio::test(start_paused = true)]
async fn a_store_that_hangs_delays_the_login_and_does_not_fail_it() {
    let vendor = FakeVendor::new(3600);
    let source = TokenSource::login(TestLogin).login_timeout(8 * S).store(Arc::new(Hangs));
    let started = Instant::now();
    let a = service(&vendor, source, Policy::default());
    assert_eq!(a.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(started.elapsed(), 2 * S, "a quarter of the login timeout");
    assert_eq!(vendor.logins().len(), 1);
}

/// A store that never answers costs a quarter of the login timeout, and the login that follows
/// still has the whole of it: a vendor taking 7 s to answer a login with an 8 s timeout is a
/// login answered, not one timed out (and counted as unanswered) for the store's hang.
#[tokio::test(start_paused = true)]
async fn a_store_that_hangs_leaves_the_login_its_whole_timeout() {
    let vendor = FakeVendor::new(3600);
    vendor.0.login_delay_ms.store(7000, Ordering::SeqCst);
    let source = TokenSource::login(TestLogin).login_timeout(8 * S).store(Arc::new(Hangs));
    let started = Instant::now();
    let a = service(&vendor, source.clone(), Policy::default());
    let res = a.oneshot(api()).await;
    assert_eq!(res.map(|r| r.status()).ok(), Some(StatusCode::OK), "{:?}", source.last_error());
    assert_eq!(started.elapsed(), 9 * S, "2 s for the store, 7 s for the login");
    assert_eq!(vendor.logins().len(), 1);
}

/// A save runs in a task of its own for at most the login timeout (`CredentialStore`'s docs):
/// one that hangs holds back no request, and the next login's save, which waits for it, is
/// made once the timeout has given it up.
#[tokio::test(start_paused = true)]
async fn a_save_that_hangs_is_given_up_after_the_login_timeout_and_the_next_one_is_made() {
    #[derive(Debug, Default)]
    struct FirstSaveHangs(Mutex<Vec<Instant>>);
    impl CredentialStore for FirstSaveHangs {
        fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
            Box::pin(std::future::ready(None))
        }
        fn save(&self, _: StoredCredential) -> StoreFuture<'_, ()> {
            let mut saves = self.0.lock().unwrap();
            saves.push(Instant::now());
            let first = saves.len() == 1;
            Box::pin(async move {
                if first {
                    std::future::pending::<()>().await;
                }
            })
        }
    }
    let vendor = FakeVendor::new(3600);
    let store = Arc::new(FirstSaveHangs::default());
    let svc =
        service(&vendor, TokenSource::login(TestLogin).login_timeout(8 * S).store(store.clone()), Policy::default());
    let started = Instant::now();
    assert_eq!(svc.clone().oneshot(api()).await.unwrap().status(), StatusCode::OK);
    vendor.expire_all();
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert!(started.elapsed() < S, "no request waited for the hanging save: {:?}", started.elapsed());
    assert_eq!(vendor.logins().len(), 2);
    tokio::time::sleep(10 * S).await;
    let saves: Vec<Duration> = store.0.lock().unwrap().iter().map(|t| *t - started).collect();
    assert_eq!(saves.len(), 2, "{saves:?}");
    assert!(saves[1] >= 8 * S && saves[1] < 8 * S + Duration::from_millis(100), "{saves:?}");
}

/// A store whose `load` panics (a bug in the store) is a store without a credential: the login
/// goes on, as it does past a store that hangs; it is not failed, and so every later one too.
#[tokio::test(start_paused = true)]
async fn a_store_whose_load_panics_is_passed_by_and_the_login_goes_on() {
    #[derive(Debug)]
    struct Panics;
    impl CredentialStore for Panics {
        fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
            Box::pin(async { panic!("the store's load panicked") })
        }
        fn save(&self, _: StoredCredential) -> StoreFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
    }
    #[derive(Debug)]
    struct PanicsBeforeItsFuture;
    impl CredentialStore for PanicsBeforeItsFuture {
        fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
            panic!("the store's load panicked before its future")
        }
        fn save(&self, _: StoredCredential) -> StoreFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
    }
    let stores: [Arc<dyn CredentialStore>; 2] = [Arc::new(Panics), Arc::new(PanicsBeforeItsFuture)];
    for store in stores {
        let vendor = FakeVendor::new(3600);
        let source = TokenSource::login(TestLogin).store(store);
        let a = service(&vendor, source.clone(), Policy::default());
        let res = a.clone().oneshot(api()).await;
        assert_eq!(res.map(|r| r.status()).ok(), Some(StatusCode::OK), "{:?}", source.last_error());
        assert_eq!(vendor.logins().len(), 1);
        assert!(source.last_error().is_none());
    }
}

/// Saves to the store go in the order of the logins: a slow save of an older token does not
/// land after the newer one, which would leave the store holding a token the vendor refused.
#[tokio::test(start_paused = true)]
async fn a_slow_save_of_an_older_token_does_not_overwrite_a_newer_one() {
    #[derive(Debug, Default)]
    struct SlowFirst {
        inner: InMemoryStore,
        saves: AtomicUsize,
    }
    impl CredentialStore for SlowFirst {
        fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
            self.inner.load()
        }
        fn save(&self, c: StoredCredential) -> StoreFuture<'_, ()> {
            let first = self.saves.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                if first {
                    tokio::time::sleep(5 * S).await;
                }
                self.inner.save(c).await;
            })
        }
    }
    let vendor = FakeVendor::new(3600);
    let store = Arc::new(SlowFirst::default());
    let a = service(&vendor, TokenSource::login(TestLogin).store(store.clone()), Policy::default());
    assert_eq!(a.clone().oneshot(api()).await.unwrap().status(), StatusCode::OK);
    vendor.expire_all();
    assert_eq!(a.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2);
    tokio::time::sleep(10 * S).await;
    let b = service(&vendor, TokenSource::login(TestLogin).store(store), Policy::default());
    assert_eq!(b.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 2, "the store holds the newer token, and b took it");
    assert_eq!(vendor.0.expired_sent.load(Ordering::SeqCst), 1, "only a's own refused call");
}

/// A login of the user's own that answers a token no header can carry (a line break in it)
/// fails the request as a fatal login: the request is not sent without its token, to meet the
/// vendor's refusal and a login again. The error never shows the token.
#[tokio::test(start_paused = true)]
async fn a_token_no_header_can_carry_fails_the_login_and_is_never_sent_without() {
    let vendor = FakeVendor::new(3600);
    let source = TokenSource::from_fn(Attach::Bearer, || async { Ok(Credential::new("tok\r\nX-Evil: 1", None)) });
    let err = service(&vendor, source.clone(), Policy::default()).oneshot(api()).await.unwrap_err();
    let login = err.login_error().expect("the login's error");
    assert_eq!(login.kind(), LoginFailureKind::Fatal);
    assert!(login.message().contains("not a valid authorization header value"), "{err}");
    assert_eq!(vendor.0.api_calls.load(Ordering::SeqCst), 0, "a request went without its token");
    assert!(!format!("{err:?} {err}").contains("Evil"));
}

/// A stored credential no header can carry is not taken: the source logs in, and its one
/// request goes with the login's token (not first without one, to be refused).
#[tokio::test(start_paused = true)]
async fn a_stored_token_no_header_can_carry_is_not_taken() {
    let vendor = FakeVendor::new(3600);
    let store = Arc::new(InMemoryStore::default());
    store.save(StoredCredential::new("tok\nbroken", None)).await;
    let svc = service(&vendor, TokenSource::login(TestLogin).store(store.clone()), Policy::default());
    assert_eq!(svc.oneshot(api()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins().len(), 1);
    assert_eq!(vendor.0.api_calls.load(Ordering::SeqCst), 1, "a request went without its token");
}
