//! Two processes of one fleet share one Marketo instance's limit and login through a store
//! (Redis, say; here a map behind an `Arc`, each call a round trip of a few milliseconds).
//! `cargo run --example fleet_store`
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::auth::{CredentialStore, StoreFuture, StoredCredential};
use redial::core::rate::{RateLimiter, Reservation, SlidingWindow};
use redial::vendors::marketo::IdentityLogin;
use redial::{TokenSource, Vendor};
use redial_sim::vendors::marketo;
use tower::ServiceExt;

/// What the store keeps for the account: the credential, the login's claim, the call log.
#[derive(Debug)]
struct Store {
    credential: Mutex<Option<StoredCredential>>,
    claim: Mutex<Option<(u64, tokio::time::Instant)>>,
    calls: SlidingWindow,
}

async fn round_trip() {
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// The credential, and a claim on the login (a key with an expiry; `save` deletes it).
#[derive(Debug)]
struct Credentials(Arc<Store>);

impl CredentialStore for Credentials {
    fn load(&self) -> StoreFuture<'_, Option<StoredCredential>> {
        Box::pin(async {
            round_trip().await;
            self.0.credential.lock().unwrap().clone()
        })
    }
    fn save(&self, credential: StoredCredential) -> StoreFuture<'_, ()> {
        *self.0.credential.lock().unwrap() = Some(credential);
        *self.0.claim.lock().unwrap() = None;
        Box::pin(round_trip())
    }
    fn claim(&self, id: u64, within: Duration) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            round_trip().await;
            let (mut claim, now) = (self.0.claim.lock().unwrap(), tokio::time::Instant::now());
            let free = claim.is_none_or(|(holder, until)| holder == id || until <= now);
            if free {
                *claim = Some((id, now + within));
            }
            free
        })
    }
    fn unclaim(&self, id: u64) -> StoreFuture<'_, ()> {
        let mut claim = self.0.claim.lock().unwrap();
        if claim.is_some_and(|(holder, _)| holder == id) {
            *claim = None;
        }
        Box::pin(round_trip())
    }
}

/// The instance's 100 calls per 20 s, counted in the store: each slot is its answer.
#[derive(Debug)]
struct Limit(Arc<Store>);

impl RateLimiter for Limit {
    fn reserve(&self, now: Instant) -> Reservation {
        let store = self.0.clone();
        // A real store keeps its own clock and answers offsets from `now`; this one shares ours.
        Reservation::Pending(Box::pin(async move {
            round_trip().await;
            store.calls.reserve(now)
        }))
    }
    fn release(&self, at: Instant) {
        self.0.calls.release(at); // a real store queues the write
    }
    fn throttled(&self, now: Instant, pause: Duration) {
        self.0.calls.throttled(now, pause);
    }
    fn current_limit(&self) -> u32 {
        self.0.calls.current_limit()
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), redial::BoxError> {
    let sim = redial_sim::Sim::start().await?;
    let vendor = marketo::install(&sim, marketo::MarketoConfig::default()); // 100 / 20 s, 10 at once
    let calls = SlidingWindow::new(100, Duration::from_secs(20));
    let store = Arc::new(Store { credential: Mutex::default(), claim: Mutex::default(), calls });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut tasks = tokio::task::JoinSet::new();
    for _process in 0..2 {
        let login = IdentityLogin::new(&sim.url("/identity"), "sim-client-id", "sim-client-secret")?;
        // Each process takes 5 of the instance's 10 calls in flight: that limit has no store.
        let policy =
            Vendor::Marketo.policy().to_builder().max_concurrency(5).deadline(Duration::from_secs(300)).build()?;
        let layer = redial::RetryLayer::builder()
            .host("127.0.0.1", Vendor::Marketo.profile(), policy)?
            .auth("127.0.0.1", TokenSource::login(login).store(Arc::new(Credentials(store.clone()))))?
            .rate_limiter("127.0.0.1", Arc::new(Limit(store.clone())))?
            .build();
        let svc = tower::ServiceBuilder::new().layer(layer).service(client.clone());
        for _ in 0..150 {
            let (svc, url) = (svc.clone(), sim.url("/rest/v1/leads.json?filterType=id&filterValues=1"));
            let req = http::Request::get(url).body(http_body_util::Full::new(bytes::Bytes::new()))?;
            tasks.spawn(async move { svc.oneshot(req).await.map(|res| res.status()) });
        }
    }
    let started = tokio::time::Instant::now();
    let ok = tasks.join_all().await.into_iter().filter(|r| r.as_ref().is_ok_and(|s| s.is_success())).count();
    println!("two processes: {ok}/300 succeeded in {:?}", started.elapsed());
    println!(
        "the vendor saw {} login(s), {} × 606, {} × 615",
        vendor.logins(),
        vendor.count_code("606"),
        vendor.count_code("615")
    );
    Ok(())
}
