//! A fleet: several processes (here, several `RetryLayer`s, each with its own host state) of
//! one team against one Marketo instance and one Responsys account, sharing each host's state
//! through a fake remote store (a Redis, say) as DESIGN.md promises: the rate limiter, the
//! credential, the failover mode and the retry budget. Real loopback sockets, paused clock.
//!
//! The remote store is a map shared behind an `Arc`. Where the trait is async
//! (`CredentialStore`) it is reached over a network that takes [`LATENCY`] each way. Where the
//! trait is synchronous, a process keeps a copy fresh from it in the background, as the
//! `FailoverStore` docs advise. A rate slot, which a copy cannot reserve, is the store's: the
//! limiter answers `Reservation::Pending` with the round trip, and the request awaits it.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use redial::auth::{CredentialStore, StoreFuture, StoredCredential};
use redial::core::budget::{BudgetConfig, RatioBudget, RetryBudget};
use redial::core::rate::{RateLimiter, Reservation, SlidingWindow};
use redial::hooks::{FailoverMode, FailoverStore};
use redial::vendors::{marketo, responsys};
use redial::{Policy, RetryLayer, RetryLayerBuilder, TokenSource, Vendor};
use redial_sim::vendors::{marketo as sim_marketo, responsys as sim_responsys};
use redial_sim::Sim;
use tokio::time::Instant;
use tower::ServiceExt;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// One way to the remote store and back takes twice this.
const LATENCY: Duration = Duration::from_millis(20);
/// How often a process refreshes the copies it keeps of the remote store.
const REFRESH: Duration = Duration::from_millis(500);

const MARKETO: &str = "123-abc-456.mktorest.com";
const RESPONSYS: &str = "127.0.0.1";

// ---------------------------------------------------------------------------------------------
// The remote store
// ---------------------------------------------------------------------------------------------

/// A credential as the store keeps it: token, expiry (wall clock), endpoint.
type Kept = (String, Option<SystemTime>, Option<String>);

/// The fleet's store. Everything in it is kept as a network store keeps it: strings and
/// numbers, by the store's own clock ([`store_clock`]).
#[derive(Debug)]
struct Remote {
    /// The account's credential: token, expiry (wall clock), endpoint.
    credential: Mutex<Option<Kept>>,
    credential_loads: AtomicUsize,
    credential_saves: AtomicUsize,
    /// The process whose claim on the account's login holds, and until when (`SET NX PX`).
    login_claim: Mutex<Option<(u64, Instant)>>,
    /// The account's failover flag, and how many times it was written.
    failover: Mutex<(bool, u64)>,
    /// The instance's call log, as a script on the store would keep it.
    rate: SlidingWindow,
    /// The account's retry budget.
    budget: RatioBudget,
}

impl Remote {
    fn new(limit: u32, window: Duration, budget: BudgetConfig) -> Arc<Remote> {
        Arc::new(Remote {
            credential: Mutex::new(None),
            credential_loads: AtomicUsize::new(0),
            credential_saves: AtomicUsize::new(0),
            login_claim: Mutex::new(None),
            failover: Mutex::new((false, 0)),
            rate: SlidingWindow::new(limit, window),
            budget: RatioBudget::new(budget),
        })
    }

    fn account() -> Arc<Remote> {
        Remote::new(100, 20 * S, BudgetConfig::default())
    }
}

/// The store's clock (its `TIME`). In this test every process and the store share tokio's
/// paused clock; an implementation still answers in offsets from the `now` it was given, as
/// the `RateLimiter` docs ask.
fn store_clock() -> std::time::Instant {
    Instant::now().into_std()
}

// ---------------------------------------------------------------------------------------------
// CredentialStore: async, over the network
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct FleetCredentials(Arc<Remote>);

impl CredentialStore for FleetCredentials {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            self.0.credential_loads.fetch_add(1, Ordering::SeqCst);
            let stored = self.0.credential.lock().unwrap().clone();
            tokio::time::sleep(LATENCY).await;
            stored.map(|(token, expires_at, endpoint)| {
                let cred = StoredCredential::new(token, expires_at);
                match endpoint.and_then(|e| e.parse::<Uri>().ok()) {
                    Some(e) => cred.with_endpoint(e),
                    None => cred,
                }
            })
        })
    }

    fn save(&self, credential: StoredCredential) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            self.0.credential_saves.fetch_add(1, Ordering::SeqCst);
            *self.0.credential.lock().unwrap() = Some((
                credential.token.expose().to_owned(),
                credential.expires_at,
                credential.endpoint.map(|e| e.to_string()),
            ));
            *self.0.login_claim.lock().unwrap() = None;
            tokio::time::sleep(LATENCY).await;
        })
    }

    fn unclaim(&self, id: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            let mut claim = self.0.login_claim.lock().unwrap();
            if claim.is_some_and(|(holder, _)| holder == id) {
                *claim = None;
            }
        })
    }

    fn claim(&self, id: u64, within: Duration) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            let claimed = {
                let mut claim = self.0.login_claim.lock().unwrap();
                let now = Instant::now();
                let free = claim.is_none_or(|(holder, until)| holder == id || until <= now);
                if free {
                    *claim = Some((id, now + within));
                }
                free
            };
            tokio::time::sleep(LATENCY).await;
            claimed
        })
    }
}

// ---------------------------------------------------------------------------------------------
// FailoverStore: synchronous; a copy kept fresh, written through
// ---------------------------------------------------------------------------------------------

/// The flag as this process knows it: answered at once from the copy, written through to the
/// store in the background, refreshed from it on an interval. A refresh does not overwrite
/// a write of this process's that has not landed yet (read your writes), and a write is
/// sent in the order it was made.
#[derive(Debug)]
struct FleetFailover {
    copy: Arc<Copy>,
    remote: Arc<Remote>,
}

#[derive(Debug, Default)]
struct Copy {
    flag: AtomicBool,
    /// Writes made here that have not landed in the store yet.
    pending: AtomicUsize,
    writes: tokio::sync::Mutex<()>,
}

impl FleetFailover {
    /// A process's view of `remote`'s flag, refreshed every `every` while the view lives.
    fn new(remote: &Arc<Remote>, every: Duration) -> Arc<FleetFailover> {
        let copy = Arc::new(Copy { flag: AtomicBool::new(remote.failover.lock().unwrap().0), ..Copy::default() });
        tokio::spawn(refresh(Arc::downgrade(&copy), remote.clone(), every));
        Arc::new(FleetFailover { copy, remote: remote.clone() })
    }
}

async fn refresh(copy: Weak<Copy>, remote: Arc<Remote>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(copy) = copy.upgrade() else { return };
        // The read goes out, and its answer comes back LATENCY later.
        tokio::time::sleep(LATENCY).await;
        let (flag, _) = *remote.failover.lock().unwrap();
        tokio::time::sleep(LATENCY).await;
        if copy.pending.load(Ordering::SeqCst) == 0 {
            copy.flag.store(flag, Ordering::SeqCst);
        }
    }
}

impl FailoverStore for FleetFailover {
    fn is_failed_over(&self) -> bool {
        self.copy.flag.load(Ordering::SeqCst)
    }

    fn set_failed_over(&self, failed_over: bool) {
        self.copy.flag.store(failed_over, Ordering::SeqCst);
        self.copy.pending.fetch_add(1, Ordering::SeqCst);
        let (copy, remote) = (self.copy.clone(), self.remote.clone());
        // The trait is synchronous: the write goes in the background.
        tokio::spawn(async move {
            let _in_order = copy.writes.lock().await;
            tokio::time::sleep(LATENCY).await;
            {
                let mut f = remote.failover.lock().unwrap();
                *f = (failed_over, f.1 + 1);
            }
            tokio::time::sleep(LATENCY).await;
            copy.pending.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// RateLimiter: a copy cannot reserve; each slot is the store's, a round trip the request awaits
// ---------------------------------------------------------------------------------------------

/// The instance's call log kept in the store, reserved in by a script: `reserve` answers
/// `Reservation::Pending` with the round trip. Slots are answered in this process's clock as
/// offsets from the store's answer, and the store's slot of each answer is remembered so that
/// `release` (in the poll: its write goes in the background) gives back the right one.
#[derive(Debug)]
struct FleetLimiter {
    remote: Arc<Remote>,
    /// (the slot answered, in this process's clock; the store's slot).
    answered: Arc<Mutex<VecDeque<(std::time::Instant, std::time::Instant)>>>,
    /// Round trips to the store, each awaited by its request (none blocks a thread).
    round_trips: AtomicUsize,
}

impl FleetLimiter {
    fn new(remote: &Arc<Remote>) -> Arc<FleetLimiter> {
        Arc::new(FleetLimiter { remote: remote.clone(), answered: Arc::default(), round_trips: AtomicUsize::new(0) })
    }
}

impl RateLimiter for FleetLimiter {
    fn reserve(&self, _now: std::time::Instant) -> Reservation {
        self.round_trips.fetch_add(1, Ordering::SeqCst);
        let (remote, answered) = (self.remote.clone(), self.answered.clone());
        Reservation::Pending(Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            let store_now = store_clock();
            let slot = remote.rate.reserve(store_now);
            tokio::time::sleep(LATENCY).await;
            let now = Instant::now().into_std();
            let local = now + slot.saturating_duration_since(store_now).saturating_sub(LATENCY);
            let mut answered = answered.lock().unwrap();
            // A slot a minute gone was used (or will not be given back).
            while answered.front().is_some_and(|(at, _)| *at + 60 * S < now) {
                answered.pop_front();
            }
            answered.push_back((local, slot));
            local
        }))
    }

    fn release(&self, at: std::time::Instant) {
        let slot = {
            let mut answered = self.answered.lock().unwrap();
            answered.iter().rposition(|(local, _)| *local == at).and_then(|i| answered.remove(i))
        };
        if let Some((_, slot)) = slot {
            let remote = self.remote.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LATENCY).await;
                remote.rate.release(slot);
            });
        }
    }

    fn throttled(&self, _now: std::time::Instant, pause: Duration) {
        let remote = self.remote.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LATENCY).await;
            remote.rate.throttled(store_clock(), pause);
        });
    }

    fn current_limit(&self) -> u32 {
        self.remote.rate.current_limit()
    }
}

// ---------------------------------------------------------------------------------------------
// RetryBudget: synchronous; each withdrawal is the store's
// ---------------------------------------------------------------------------------------------

/// Deposits are written through in the background (a lost or late deposit only allows fewer
/// retries); a withdrawal must answer yes or no now and must not be spent twice by two
/// processes, so it is the store's (a round trip per retry, over a real network).
#[derive(Debug)]
struct FleetBudget {
    remote: Arc<Remote>,
    withdrawals: AtomicUsize,
    granted: AtomicUsize,
}

impl FleetBudget {
    fn new(remote: &Arc<Remote>) -> Arc<FleetBudget> {
        Arc::new(FleetBudget { remote: remote.clone(), withdrawals: AtomicUsize::new(0), granted: AtomicUsize::new(0) })
    }
}

impl RetryBudget for FleetBudget {
    fn deposit(&self, _now: std::time::Instant) {
        let remote = self.remote.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LATENCY).await;
            remote.budget.deposit(store_clock());
        });
    }

    fn withdraw(&self, _now: std::time::Instant) -> bool {
        self.withdrawals.fetch_add(1, Ordering::SeqCst);
        let granted = self.remote.budget.withdraw(store_clock());
        if granted {
            self.granted.fetch_add(1, Ordering::SeqCst);
        }
        granted
    }
}

// ---------------------------------------------------------------------------------------------
// The processes
// ---------------------------------------------------------------------------------------------

fn marketo_login(sim: &Sim) -> marketo::IdentityLogin {
    let url = format!("http://{MARKETO}:{}/identity", sim.addr().port());
    marketo::IdentityLogin::new(&url, "sim-client-id", "sim-client-secret").unwrap()
}

/// One process's layer for the Marketo instance, with `attach` giving it its share of the
/// fleet's state. The instance's 10 calls in flight have no store: each of two processes
/// takes 5 of them.
fn marketo_process(seed: u64, attach: impl FnOnce(RetryLayerBuilder) -> RetryLayerBuilder) -> RetryLayer {
    marketo_process_in_flight(seed, 5, attach)
}

fn marketo_process_in_flight(
    seed: u64,
    in_flight: u32,
    attach: impl FnOnce(RetryLayerBuilder) -> RetryLayerBuilder,
) -> RetryLayer {
    let policy = Vendor::Marketo.policy().to_builder().max_concurrency(in_flight).deadline(600 * S).build().unwrap();
    let builder = RetryLayer::builder().host(MARKETO, Vendor::Marketo.profile(), policy).unwrap().rng_seed(seed);
    attach(builder).build()
}

fn leads(sim: &Sim) -> String {
    format!("http://{MARKETO}:{}/rest/v1/leads.json?filterType=id&filterValues=1", sim.addr().port())
}

/// `per_process` requests through each of `layers`, from `callers` concurrent callers each:
/// the errors, and how long it took.
async fn run_fleet(layers: &[RetryLayer], url: &str, per_process: usize, callers: usize) -> (usize, Duration) {
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for layer in layers {
        let svc = common::client(layer);
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..callers {
            let (svc, url, next) = (svc.clone(), url.to_owned(), next.clone());
            all.spawn(async move {
                let mut errors = 0;
                while next.fetch_add(1, Ordering::SeqCst) < per_process {
                    match svc.clone().oneshot(Request::get(&url).body(Full::default()).unwrap()).await {
                        Ok(res) if res.status() == StatusCode::OK => {}
                        Ok(res) => panic!("unexpected {}", res.status()),
                        Err(_) => errors += 1,
                    }
                }
                errors
            });
        }
    }
    let mut errors = 0;
    while let Some(r) = all.join_next().await {
        errors += r.unwrap();
    }
    (errors, started.elapsed())
}

/// The most calls the vendor received in any span of `window`.
fn busiest_window(calls: &[redial_sim::vendors::ApiCall], window: Duration) -> usize {
    let at: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    (0..at.len()).map(|i| at[i..].iter().take_while(|t| **t < at[i] + window).count()).max().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------------------------

/// Two processes pace Marketo's 100 calls per 20 s together through one limiter in the store:
/// 400 calls, no 606, never more than 100 in any 20 s at the vendor, in about the 60 s that
/// 400 calls at 100 per window take.
#[tokio::test(start_paused = true)]
async fn two_processes_sharing_a_limiter_stay_within_marketos_100_calls_per_20_s() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, sim_marketo::MarketoConfig::default());
    let remote = Remote::account();
    let limiters = [FleetLimiter::new(&remote), FleetLimiter::new(&remote)];
    let layers: Vec<RetryLayer> = limiters
        .iter()
        .enumerate()
        .map(|(i, limiter)| {
            marketo_process(i as u64, |b| {
                b.rate_limiter(MARKETO, limiter.clone())
                    .unwrap()
                    .auth(MARKETO, TokenSource::login(marketo_login(&sim)))
                    .unwrap()
            })
        })
        .collect();
    let (errors, elapsed) = run_fleet(&layers, &leads(&sim), 200, 25).await;
    let calls = vendor.api_calls();
    eprintln!("400 calls from two processes in {elapsed:?}; busiest 20 s: {}", busiest_window(&calls, 20 * S));
    assert_eq!(errors, 0);
    assert_eq!(vendor.count_code("606"), 0);
    assert_eq!(vendor.count_code("615"), 0);
    assert_eq!(calls.iter().filter(|c| c.outcome_code.is_none()).count(), 400);
    assert!(busiest_window(&calls, 20 * S) <= 100);
    assert!(elapsed >= 60 * S && elapsed <= 70 * S, "{elapsed:?}");
    assert_eq!(layers[1].current_rate_limit(MARKETO), Some(100));
    let trips: usize = limiters.iter().map(|l| l.round_trips.load(Ordering::SeqCst)).sum();
    assert!(trips >= 400, "a round trip to the store for every call, awaited: {trips}");
}

/// The control: two processes with their own in-memory limiters (Marketo's defaults, 100 per
/// 20 s each) send 200 at once into a window of 100, and meet 606s.
#[tokio::test(start_paused = true)]
async fn two_processes_each_with_its_own_limiter_meet_606() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, sim_marketo::MarketoConfig { max_concurrency: None, ..Default::default() });
    let layers: Vec<RetryLayer> = (0..2)
        .map(|i| marketo_process(i, |b| b.auth(MARKETO, TokenSource::login(marketo_login(&sim))).unwrap()))
        .collect();
    let _ = run_fleet(&layers, &leads(&sim), 200, 25).await;
    assert!(vendor.count_code("606") > 0);
}

/// The instance's 10 calls in flight are the account's too, but have no store: two processes
/// at Marketo's defaults (10 each), sharing the rate limiter, meet 615s, and the refused calls
/// spend the shared window (the sim counts them, as Marketo does).
#[tokio::test(start_paused = true)]
async fn two_processes_at_marketos_default_concurrency_meet_615() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, sim_marketo::MarketoConfig::default());
    let remote = Remote::account();
    let layers: Vec<RetryLayer> = (0..2)
        .map(|i| {
            marketo_process_in_flight(i, 10, |b| {
                b.rate_limiter(MARKETO, FleetLimiter::new(&remote))
                    .unwrap()
                    .auth(MARKETO, TokenSource::login(marketo_login(&sim)))
                    .unwrap()
            })
        })
        .collect();
    let (errors, elapsed) = run_fleet(&layers, &leads(&sim), 200, 25).await;
    eprintln!("{} × 615, done in {elapsed:?}", vendor.count_code("615"));
    assert_eq!(errors, 0);
    assert!(vendor.count_code("615") > 0);
    assert!(vendor.max_in_flight() <= 10, "the vendor refuses the eleventh");
    assert_eq!(vendor.count_code("606"), 0);
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

fn marketo_auth_process(sim: &Sim, remote: &Arc<Remote>, seed: u64) -> (RetryLayer, TokenSource) {
    let source = TokenSource::login(marketo_login(sim)).store(Arc::new(FleetCredentials(remote.clone())));
    let layer = marketo_process(seed, |b| b.auth(MARKETO, source.clone()).unwrap());
    (layer, source)
}

/// Two processes of one Marketo instance sharing a credential store, each served once: the
/// first logged in, the second (a second later) took its token from the store.
async fn two_logged_in_processes() -> (Sim, sim_marketo::MarketoHandle, common::Svc, common::Svc) {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, sim_marketo::MarketoConfig::default());
    let remote = Remote::account();
    let (one, _) = marketo_auth_process(&sim, &remote, 1);
    let (other, _) = marketo_auth_process(&sim, &remote, 2);
    let (one, other) = (common::client(&one), common::client(&other));
    assert_eq!(get_leads(&one, &sim).await, StatusCode::OK);
    tokio::time::sleep(S).await;
    assert_eq!(get_leads(&other, &sim).await, StatusCode::OK);
    assert_eq!(vendor.logins(), 1);
    (sim, vendor, one, other)
}

async fn get_leads(svc: &common::Svc, sim: &Sim) -> StatusCode {
    svc.clone().oneshot(Request::get(leads(sim)).body(Full::default()).unwrap()).await.unwrap().status()
}

/// A process that starts after another has logged in takes the other's token from the store:
/// one login between them.
#[tokio::test(start_paused = true)]
async fn a_second_process_takes_the_first_ones_login_from_the_store() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, sim_marketo::MarketoConfig::default());
    let remote = Remote::account();
    let (one, one_source) = marketo_auth_process(&sim, &remote, 1);
    let (other, other_source) = marketo_auth_process(&sim, &remote, 2);
    let (one, other) = (common::client(&one), common::client(&other));
    assert_eq!(get_leads(&one, &sim).await, StatusCode::OK);
    tokio::time::sleep(S).await; // the save lands
    assert_eq!(remote.credential_saves.load(Ordering::SeqCst), 1);
    assert_eq!(get_leads(&other, &sim).await, StatusCode::OK);
    assert_eq!(vendor.logins(), 1, "the other process took the stored token");
    assert_eq!((one_source.logins(), other_source.logins()), (1, 1));
}

/// Both processes meet the token's expiry at once (602): each drops the token and reads the
/// store (which holds the token just refused). One claims the login in the store; the other
/// waits for its save and takes the new token: one login between them.
#[tokio::test(start_paused = true)]
async fn two_processes_that_meet_602_at_once_log_in_once_through_the_stores_claim() {
    let (sim, vendor, one, other) = two_logged_in_processes().await;

    vendor.expire_tokens();
    let (a, b) = tokio::join!(get_leads(&one, &sim), get_leads(&other, &sim));
    assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));
    assert_eq!(vendor.count_code("602"), 2, "both met the expiry");
    eprintln!("logins after a shared 602: {}", vendor.logins() - 1);
    assert_eq!(vendor.logins() - 1, 1, "one login between them: the store's claim");
}

/// The same with the two a store round trip apart: the second to meet the 602 reads the store
/// after the first one's save has landed and takes the new token. The fleet logs in once only
/// when its processes meet the expiry further apart than a login and a save.
#[tokio::test(start_paused = true)]
async fn a_process_that_meets_602_after_anothers_login_was_stored_takes_it() {
    let (sim, vendor, one, other) = two_logged_in_processes().await;

    vendor.expire_tokens();
    assert_eq!(get_leads(&one, &sim).await, StatusCode::OK);
    tokio::time::sleep(S).await;
    assert_eq!(get_leads(&other, &sim).await, StatusCode::OK);
    assert_eq!(vendor.count_code("602"), 2);
    assert_eq!(vendor.logins(), 2, "one login before, one after the expiry");
}

// ---------------------------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------------------------

fn responsys_process(sim: &Sim, store: Arc<FleetFailover>) -> RetryLayer {
    let login = responsys::PasswordLogin::new(&sim.url(""), "api-user", "pw").unwrap();
    RetryLayer::builder()
        .host(RESPONSYS, Vendor::Responsys.profile(), Vendor::Responsys.policy())
        .unwrap()
        .auth(RESPONSYS, TokenSource::login(login))
        .unwrap()
        .failover_store(RESPONSYS, store)
        .unwrap()
        .build()
}

/// A failover met by one process is honoured by the other once its copy of the store is
/// fresh (its calls are refused locally, never sent), and the other's trial request a minute
/// later, served, brings both back.
#[tokio::test(start_paused = true)]
async fn a_failover_one_process_meets_is_honoured_by_the_other_and_either_brings_both_back() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", "pw"));
    let remote = Remote::account();
    let (one_store, other_store) = (FleetFailover::new(&remote, REFRESH), FleetFailover::new(&remote, REFRESH));
    let (one, other) = (responsys_process(&sim, one_store.clone()), responsys_process(&sim, other_store.clone()));
    let (svc_one, svc_other) = (common::client(&one), common::client(&other));
    let lists = || Request::get(sim.url("/rest/api/v1.3/lists")).body(Full::default()).unwrap();
    assert_eq!(svc_one.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(svc_other.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK);

    vendor.set_secondary(true);
    let err = svc_one.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_failover() && !err.is_failover_local(), "{err}");
    // The write lands, the other's copy is refreshed.
    tokio::time::sleep(REFRESH + 4 * LATENCY).await;
    assert!(remote.failover.lock().unwrap().0);
    assert!(matches!(other.failover_mode(RESPONSYS), Some(FailoverMode::Secondary { .. })));
    let before = sim.count("/rest/api/v1.3/lists");
    for _ in 0..3 {
        let err = svc_other.clone().oneshot(lists()).await.unwrap_err();
        assert!(err.is_failover_local(), "{err}");
    }
    assert_eq!(sim.count("/rest/api/v1.3/lists"), before, "refused locally, never sent");
    // Its own refresh has not undone the first process's own write.
    assert!(matches!(one.failover_mode(RESPONSYS), Some(FailoverMode::Secondary { .. })));

    vendor.set_secondary(false);
    tokio::time::sleep(61 * S).await;
    assert_eq!(svc_other.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK, "the trial");
    tokio::time::sleep(REFRESH + 4 * LATENCY).await;
    assert!(!remote.failover.lock().unwrap().0);
    assert_eq!(one.failover_mode(RESPONSYS), Some(FailoverMode::Primary));
    let sent = sim.count("/rest/api/v1.3/lists");
    assert_eq!(svc_one.oneshot(lists()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(sim.count("/rest/api/v1.3/lists"), sent + 1);
}

// ---------------------------------------------------------------------------------------------
// Retry budget
// ---------------------------------------------------------------------------------------------

/// `rounds` requests from each of two processes to a host that is down, 10 ms apart (so that
/// each deposit lands in the store before the next request), each process's budget given by
/// `budget` (none: the policy's own, in memory): the retries the vendor saw.
async fn down_host_retries(given: impl Fn() -> Option<Arc<dyn RetryBudget>>) -> usize {
    let sim = Sim::start().await.unwrap();
    let port = sim.addr().port();
    sim.set_fallback("/down", redial_sim::Reply::status(502));
    let policy = Policy::builder()
        .budget(budget())
        .backoff(redial::core::backoff::Backoff::constant(MS))
        .max_attempts(3)
        .build()
        .unwrap();
    let layers: Vec<RetryLayer> = (0..2)
        .map(|_| {
            let b = RetryLayer::builder().host("down.example.test", redial::Generic, policy.clone()).unwrap();
            match given() {
                Some(budget) => b.retry_budget("down.example.test", budget).unwrap().build(),
                None => b.build(),
            }
        })
        .collect();
    let url = format!("http://down.example.test:{port}/down");
    let started = Instant::now();
    let svcs: Vec<common::Svc> = layers.iter().map(common::client).collect();
    for _ in 0..100 {
        for svc in &svcs {
            let _ = svc.clone().oneshot(Request::get(&url).body(Full::default()).unwrap()).await.unwrap_err();
        }
        tokio::time::sleep(10 * MS).await;
    }
    assert!(started.elapsed() < budget().ttl(), "within one budget window: {:?}", started.elapsed());
    sim.count("/down") - 200
}

/// 20 % of requests may be retried, plus a reserve of 10 over 10 s.
fn budget() -> BudgetConfig {
    BudgetConfig::new(0.2, 1, 10 * S)
}

/// Two processes calling a host that is down, through one budget in the store: their retries
/// together stay within one budget (a reserve of 10 plus 20 % of their 200 requests), and
/// both get some of them. Each with its own budget, they get a reserve each (60).
#[tokio::test(start_paused = true)]
async fn a_budget_in_the_store_bounds_two_processes_retries_together() {
    let remote = Remote::new(100, 20 * S, budget());
    let budgets = [FleetBudget::new(&remote), FleetBudget::new(&remote)];
    let next = AtomicUsize::new(0);
    let retries = down_host_retries(|| Some(budgets[next.fetch_add(1, Ordering::SeqCst)].clone() as _)).await;
    let granted: Vec<usize> = budgets.iter().map(|b| b.granted.load(Ordering::SeqCst)).collect();
    eprintln!("shared budget: {retries} retries, {granted:?} per process");
    assert_eq!(retries, granted.iter().sum::<usize>());
    // The last deposit lands after the last request: 10 + 0.2 × 199, less rounding.
    assert!((45..=50).contains(&retries), "{retries} retries for 200 requests");
    assert!(granted.iter().all(|g| *g > 0), "both processes retry: {granted:?}");

    let apart = down_host_retries(|| None).await;
    eprintln!("a budget each: {apart} retries");
    assert!(apart >= 55, "a reserve each: {apart}");
}

/// A trial request that one process sent while the account was still failed over is refused;
/// its answer comes back late (a slow network), after another process has found the vendor
/// back and said so in the store, but before this process's copy of the store has caught up.
/// The refusal is older news than the store's: it must not fail the fleet over again.
#[tokio::test(start_paused = true)]
async fn a_late_refusal_of_a_trial_does_not_fail_the_fleet_back_over_through_a_stale_copy() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", "pw"));
    let remote = Remote::account();
    // The second process refreshes its copy every 5 s.
    let (one_store, other_store) = (FleetFailover::new(&remote, REFRESH), FleetFailover::new(&remote, 5 * S));
    let (one, other) = (responsys_process(&sim, one_store), responsys_process(&sim, other_store));
    let svc_one = common::client(&one);
    // The other's answers come back `delay` late.
    let delay = Arc::new(AtomicBool::new(false));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, redial::RetryBody<Full<bytes::Bytes>>>(
            hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(common::Loopback),
        );
    let slow = {
        let delay = delay.clone();
        tower::service_fn(move |req| {
            let (client, delay) = (client.clone(), delay.clone());
            async move {
                let res = client.request(req).await;
                if delay.load(Ordering::SeqCst) {
                    tokio::time::sleep(2 * S).await;
                }
                res
            }
        })
    };
    let svc_other = tower::Layer::layer(&other, slow);
    let lists = || Request::get(sim.url("/rest/api/v1.3/lists")).body(Full::default()).unwrap();
    assert_eq!(svc_one.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(svc_other.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK);

    // The other process meets the failover; the first learns it from the store.
    vendor.set_secondary(true);
    let failed_over = Instant::now();
    assert!(!svc_other.clone().oneshot(lists()).await.unwrap_err().is_failover_local());
    tokio::time::sleep(S).await;
    assert!(matches!(one.failover_mode(RESPONSYS), Some(FailoverMode::Secondary { .. })));

    // A minute on, the other's trial goes while the vendor is still failed over; its refusal
    // is two seconds on the way back.
    tokio::time::sleep_until(failed_over + 60 * S).await;
    delay.store(true, Ordering::SeqCst);
    let trial = tokio::spawn(svc_other.clone().oneshot(lists()));
    tokio::time::sleep(100 * MS).await;
    assert_eq!(vendor.api_calls().last().unwrap().outcome_code.as_deref(), Some("API_NOT_ALLOWED_IN_SECONDARY"));
    // The vendor is back; the first process's own trial finds out, and says so in the store.
    vendor.set_secondary(false);
    tokio::time::sleep(S).await;
    assert_eq!(svc_one.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK, "the first's trial");
    tokio::time::sleep(4 * LATENCY).await;
    assert!(!remote.failover.lock().unwrap().0, "the store says the vendor is back");
    // The late refusal comes back to the other process, whose copy still says failed over.
    let err = trial.await.unwrap().unwrap_err();
    assert!(err.is_failover() && !err.is_failover_local(), "{err}");
    tokio::time::sleep(REFRESH + 4 * LATENCY).await;
    assert!(!remote.failover.lock().unwrap().0, "the late refusal did not fail the account over again");
    assert_eq!(one.failover_mode(RESPONSYS), Some(FailoverMode::Primary));
    assert_eq!(svc_one.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK);
    // And the other comes back with the next refresh of its copy.
    delay.store(false, Ordering::SeqCst);
    tokio::time::sleep(6 * S).await;
    assert_eq!(other.failover_mode(RESPONSYS), Some(FailoverMode::Primary));
    assert_eq!(svc_other.oneshot(lists()).await.unwrap().status(), StatusCode::OK);
}

thread_local! {
    static WALL_ORIGIN: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// A wall clock that follows tokio's paused clock (the store keeps expiries by the wall clock).
fn paused_wall() -> SystemTime {
    let now = Instant::now();
    let origin = WALL_ORIGIN.with(|o| {
        let origin = o.get().unwrap_or(now);
        o.set(Some(origin));
        origin
    });
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600) + now.saturating_duration_since(origin)
}

/// Over three token lifetimes with Marketo's Identity (which answers the current token, with
/// what is left of its hour, until it expires): each process's renewal, a jittered minute
/// before expiry, finds the stored token too near its expiry to take and logs in for the same
/// token; after the expiry one login serves both. Two processes log in three times an hour,
/// not once; without the store they would log in four times.
#[tokio::test(start_paused = true)]
async fn each_process_renews_on_its_own_and_one_logs_in_for_both_after_the_expiry() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, sim_marketo::MarketoConfig::default());
    let remote = Remote::account();
    let process = |seed| {
        let source = TokenSource::login(marketo_login(&sim)).store(Arc::new(FleetCredentials(remote.clone())));
        let layer = marketo_process(seed, |b| b.auth(MARKETO, source).unwrap().wall_clock(paused_wall));
        common::client(&layer)
    };
    let (one, other) = (process(1), process(2));
    for i in 0..3 * 360 {
        assert_eq!(get_leads(if i % 2 == 0 { &one } else { &other }, &sim).await, StatusCode::OK);
        tokio::time::sleep(10 * S).await;
    }
    let t0 = vendor.login_times()[0];
    let at: Vec<u64> = vendor.login_times().iter().map(|t| (*t - t0).as_secs()).collect();
    eprintln!("logins at {at:?} s");
    assert_eq!((vendor.count_code("601"), vendor.count_code("602")), (0, 0));
    assert_eq!(at.len(), 1 + 3 * 3, "{at:?}");
    for hour in 1..=3u64 {
        let renewals = at.iter().filter(|t| (hour * 3600 - 60..hour * 3600).contains(*t)).count();
        let after = at.iter().filter(|t| (hour * 3600..hour * 3600 + 60).contains(*t)).count();
        assert_eq!((renewals, after), (2, 1), "hour {hour}: {at:?}");
    }
}
