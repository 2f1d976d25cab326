//! Per-host state against the simulated vendors: limits, failover, reconcile, rewrites,
//! idempotency keys, and hosts kept apart. Real loopback sockets, paused clock.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use redial::hooks::{FailoverMode, FailoverStore, InMemoryFailover, Probe, ReconcileRequest, Verdict};
use redial::vendors::{adobe, marketo, responsys};
use redial::{Policy, RetryLayer, TokenSource, Vendor, VendorExt};
use redial_sim::vendors::{
    adobe as sim_adobe, genesys as sim_genesys, marketo as sim_marketo, responsys as sim_responsys,
};
use redial_sim::Sim;
use tokio::time::Instant;
use tower::ServiceExt;

const S: Duration = Duration::from_secs(1);

fn marketo_source(sim: &Sim, host: &str) -> TokenSource {
    let url = format!("http://{host}:{}/identity", sim.addr().port());
    TokenSource::login(marketo::IdentityLogin::new(&url, "sim-client-id", "sim-client-secret").unwrap())
}

/// A layer serving `host` with Marketo's profile, `policy`, and a login at the sim's identity.
fn marketo_layer(sim: &Sim, host: &str, policy: Policy, seed: u64) -> RetryLayer {
    RetryLayer::builder()
        .host(host, Vendor::Marketo.profile(), policy)
        .unwrap()
        .auth(host, marketo_source(sim, host))
        .unwrap()
        .rng_seed(seed)
        .build()
}

/// 2,000 requests from 50 concurrent callers through a layer with Marketo's limits.
async fn marketo_quota_run(client_limit: u32) -> (usize, Duration, sim_marketo::MarketoHandle, RetryLayer) {
    marketo_quota_run_after(client_limit, 0, 2000).await
}

/// `requests` requests from 50 concurrent callers through a new layer with Marketo's limits,
/// `earlier` calls after another client (or this process before it restarted) spent that much
/// of the instance's window.
async fn marketo_quota_run_after(
    client_limit: u32,
    earlier: usize,
    requests: usize,
) -> (usize, Duration, sim_marketo::MarketoHandle, RetryLayer) {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, sim_marketo::MarketoConfig::default()); // 100 / 20 s, 10 concurrent
    let host = "123-abc-456.mktorest.com";
    if earlier > 0 {
        let policy = Vendor::Marketo.policy();
        let before = common::client(&marketo_layer(&sim, host, policy, 7));
        let url = format!("http://{host}:{}/rest/v1/leads.json?filterType=id&filterValues=1", sim.addr().port());
        for _ in 0..earlier {
            let res = before.clone().oneshot(Request::get(&url).body(Full::default()).unwrap()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
    let policy =
        Vendor::Marketo.policy().to_builder().rate_limit(client_limit, 20 * S).deadline(600 * S).build().unwrap();
    let layer = marketo_layer(&sim, host, policy, 11);
    let svc = common::client(&layer);
    let url = format!("http://{host}:{}/rest/v1/leads.json?filterType=id&filterValues=1", sim.addr().port());
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..50 {
        let (svc, url, next) = (svc.clone(), url.clone(), next.clone());
        callers.spawn(async move {
            let mut errors = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < requests {
                let req = Request::get(&url).body(Full::default()).unwrap();
                match svc.clone().oneshot(req).await {
                    Ok(res) if res.status() == StatusCode::OK => {}
                    Ok(res) => panic!("unexpected {}", res.status()),
                    Err(e) => {
                        eprintln!("caller error: {e}");
                        errors += 1
                    }
                }
            }
            errors
        });
    }
    let mut errors = 0;
    while let Some(r) = callers.join_next().await {
        errors += r.unwrap();
    }
    (errors, started.elapsed(), vendor, layer)
}

#[tokio::test(start_paused = true)]
async fn marketo_quota_two_thousand_requests_no_606_no_615_near_the_theoretical_minimum() {
    let (errors, elapsed, vendor, _) = marketo_quota_run(100).await;
    assert_eq!(errors, 0);
    assert_eq!(vendor.count_code("606"), 0);
    assert_eq!(vendor.count_code("615"), 0);
    assert!(vendor.max_in_flight() <= 10);
    let served = vendor.api_calls().iter().filter(|c| c.outcome_code.is_none()).count();
    assert_eq!(served, 2000);
    // 2,000 / 100 × 20 s = 400 s; the last window's calls start at 380 s.
    let minimum = 400 * S;
    eprintln!("2,000 calls in {elapsed:?}");
    assert!(elapsed <= minimum + minimum / 20, "{elapsed:?}");
    assert!(elapsed >= 380 * S, "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_misconfigured_limit_meets_606_and_adapts_without_caller_errors() {
    let (errors, elapsed, vendor, layer) = marketo_quota_run(200).await;
    let throttled = vendor.count_code("606");
    eprintln!(
        "200 / 20 s against 100 / 20 s: {throttled} × 606, done in {elapsed:?}, limit now {:?}",
        layer.current_rate_limit("123-abc-456.mktorest.com")
    );
    assert_eq!(errors, 0);
    assert!(throttled > 0, "the sim should have refused some calls");
    assert!(throttled < 150, "redial should adapt: {throttled} × 606");
    // What it learned: about the vendor's 100 (what it accepted, probed 1 % at a time after
    // each 606), far below the configured 200.
    let learned = layer.current_rate_limit("123-abc-456.mktorest.com").unwrap();
    assert!((90..=110).contains(&learned), "learned a limit of {learned}");
    // 2,000 calls at the vendor's 100 per 20 s take 400 s at best; at 200, 606s all the way.
    assert!(elapsed <= 440 * S, "{elapsed:?}");
    assert_eq!(vendor.count_code("615"), 0);
}

/// A client that restarts (or starts beside another) meets a window the vendor has nearly
/// spent: its first calls are refused, and what it learns from them (two calls accepted) says
/// nothing of the windows after. It must be back at the vendor's rate within minutes, not
/// after an hour of two calls per window.
#[tokio::test(start_paused = true)]
async fn a_client_that_starts_in_a_spent_window_is_back_at_full_rate_within_minutes() {
    let (errors, elapsed, vendor, layer) = marketo_quota_run_after(100, 98, 1000).await;
    let throttled = vendor.count_code("606");
    eprintln!(
        "1,000 calls after 98 of another's: {throttled} × 606, done in {elapsed:?}, limit now {:?}",
        layer.current_rate_limit("123-abc-456.mktorest.com")
    );
    assert_eq!(errors, 0);
    assert!(throttled > 0, "the window was spent: the sim should have refused the first calls");
    assert!(throttled <= 10, "only the calls sent into the spent window are refused: {throttled} × 606");
    // 1,000 calls at 100 per 20 s take 200 s at best, a window more for the spent one. The
    // limit learned from the spent window (2) comes back 1, 2, 4, … % a window: 3, 5, 9, 17,
    // 33, 65, then 100 a window; 1 % a window would have taken 860 s.
    assert!(elapsed <= 340 * S, "{elapsed:?}");
    assert_eq!(layer.current_rate_limit("123-abc-456.mktorest.com"), Some(100));
}

#[tokio::test(start_paused = true)]
async fn marketo_615_lowers_the_concurrency_limit_and_not_the_rate() {
    let sim = Sim::start().await.unwrap();
    // Other clients of the instance hold seven of its ten concurrent calls: three are left.
    let config = sim_marketo::MarketoConfig { max_concurrency: Some(3), latency: S, ..Default::default() };
    let vendor = sim_marketo::install(&sim, config);
    let host = "123-abc-456.mktorest.com";
    // Marketo's policy: 100 calls / 20 s and 10 in flight.
    let policy = Vendor::Marketo.policy().to_builder().deadline(600 * S).build().unwrap();
    let layer = marketo_layer(&sim, host, policy, 5);
    let svc = common::client(&layer);
    let url = format!("http://{host}:{}/rest/v1/leads.json?filterType=id&filterValues=1", sim.addr().port());
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (svc, url) = (svc.clone(), url.clone());
        callers.spawn(async move {
            for _ in 0..10 {
                let res = svc.clone().oneshot(Request::get(&url).body(Full::default()).unwrap()).await;
                assert_eq!(res.unwrap().status(), StatusCode::OK);
            }
        });
    }
    while let Some(r) = callers.join_next().await {
        r.unwrap();
    }
    let refused = vendor.count_code("615");
    eprintln!(
        "200 calls: {refused} × 615; concurrency limit now {:?}, rate limit {:?}",
        layer.current_concurrency_limit(host),
        layer.current_rate_limit(host)
    );
    assert!(refused > 0, "the sim should have refused some calls");
    assert!(refused <= 20, "redial should keep to what the vendor serves: {refused} × 615");
    // What the vendor serves this client (one more after a quiet interval, until refused).
    let limit = layer.current_concurrency_limit(host).unwrap();
    assert!((3..=4).contains(&limit), "concurrency limit {limit}");
    assert_eq!(layer.current_rate_limit(host), Some(100), "a 615 is not about the call rate");
    assert_eq!(vendor.count_code("606"), 0);
}

/// Responsys on the sim's host with its shipped profile and policy, logging in as `api-user`,
/// with `probe` for failover mode if given.
fn responsys_failover_layer(sim: &Sim, probe: Option<Probe>) -> RetryLayer {
    let login = responsys::PasswordLogin::new(&sim.url(""), "api-user", "pw").unwrap();
    let builder = RetryLayer::builder()
        .host("127.0.0.1", Vendor::Responsys.profile(), Vendor::Responsys.policy())
        .unwrap()
        .auth("127.0.0.1", TokenSource::login(login))
        .unwrap();
    match probe {
        Some(probe) => builder.failover_probe("127.0.0.1", probe).unwrap().build(),
        None => builder.build(),
    }
}

#[tokio::test(start_paused = true)]
async fn responsys_failover_fails_fast_locally_aftm_keeps_working_and_the_probe_brings_it_back() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", "pw"));
    let probe_url = sim.url("/rest/api/v1.3/lists");
    let probe = Probe::new(30 * S, move || Request::get(&probe_url).body(Bytes::new()).unwrap());
    let layer = responsys_failover_layer(&sim, Some(probe));
    let svc = common::client(&layer);
    let lists = || Request::get(sim.url("/rest/api/v1.3/lists")).body(Full::default()).unwrap();
    let aftm = || {
        Request::post(sim.url("/rest/haApi/v1.3/campaigns/Welcome/email"))
            .body(Full::new(Bytes::from_static(b"{\"recipientData\":[]}")))
            .unwrap()
    };
    assert_eq!(svc.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Primary));

    vendor.set_secondary(true);
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_failover() && !err.is_failover_local(), "{err}");
    assert_eq!(err.vendor_errors().next().unwrap().code, "API_NOT_ALLOWED_IN_SECONDARY");
    assert!(matches!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Secondary { .. })));

    let before = sim.count("/rest/api/v1.3/lists");
    for _ in 0..5 {
        let err = svc.clone().oneshot(lists()).await.unwrap_err();
        assert!(err.is_failover_local(), "{err}");
    }
    assert_eq!(sim.count("/rest/api/v1.3/lists"), before, "refused locally, never sent");
    for _ in 0..3 {
        assert_eq!(svc.clone().oneshot(aftm()).await.unwrap().status(), StatusCode::OK);
    }

    // The probe runs every 30 s; the vendor comes back; the next probe returns us to primary.
    tokio::time::sleep(65 * S).await;
    assert!(matches!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Secondary { .. })));
    vendor.set_secondary(false);
    tokio::time::sleep(31 * S).await;
    assert_eq!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Primary));
    assert_eq!(svc.oneshot(lists()).await.unwrap().status(), StatusCode::OK);
}

/// A vendor fails over an account, not a client. Two clients of one Responsys account share
/// their failover mode through a store: the one that meets `API_NOT_ALLOWED_IN_SECONDARY`
/// spares the other its refused calls (refused locally, never sent), and the first to find the
/// vendor back (the other's trial request, a minute later) brings both back.
#[tokio::test(start_paused = true)]
async fn two_clients_of_one_account_share_its_failover_through_a_store() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", "pw"));
    let account: std::sync::Arc<dyn FailoverStore> = std::sync::Arc::new(InMemoryFailover::default());
    let client = |store: std::sync::Arc<dyn FailoverStore>| {
        let login = responsys::PasswordLogin::new(&sim.url(""), "api-user", "pw").unwrap();
        RetryLayer::builder()
            .host("127.0.0.1", Vendor::Responsys.profile(), Vendor::Responsys.policy())
            .unwrap()
            .auth("127.0.0.1", TokenSource::login(login))
            .unwrap()
            .failover_store("127.0.0.1", store)
            .unwrap()
            .build()
    };
    let (one, other) = (client(account.clone()), client(account.clone()));
    let (svc_one, svc_other) = (common::client(&one), common::client(&other));
    let lists = || Request::get(sim.url("/rest/api/v1.3/lists")).body(Full::default()).unwrap();
    assert_eq!(svc_other.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK);

    vendor.set_secondary(true);
    let err = svc_one.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_failover() && !err.is_failover_local(), "{err}");
    assert!(account.is_failed_over());
    let before = sim.count("/rest/api/v1.3/lists");
    for _ in 0..3 {
        let err = svc_other.clone().oneshot(lists()).await.unwrap_err();
        assert!(err.is_failover_local(), "the other client learnt it from the store: {err}");
    }
    assert_eq!(sim.count("/rest/api/v1.3/lists"), before, "refused locally, never sent");
    assert!(matches!(other.failover_mode("127.0.0.1"), Some(FailoverMode::Secondary { .. })));

    // The vendor comes back; a minute after it learnt of the failover, the other client lets
    // one request find out, which is served: both clients are back.
    vendor.set_secondary(false);
    tokio::time::sleep(61 * S).await;
    assert_eq!(svc_other.oneshot(lists()).await.unwrap().status(), StatusCode::OK);
    assert!(!account.is_failed_over());
    assert_eq!(one.failover_mode("127.0.0.1"), Some(FailoverMode::Primary));
    assert_eq!(svc_one.oneshot(lists()).await.unwrap().status(), StatusCode::OK);
}

/// A probe whose request (the user's closure) panics ends, and the host is not left failed
/// over with nothing to find out: it takes a trial request each minute, as without a probe.
#[tokio::test(start_paused = true)]
async fn a_failover_probe_that_panics_leaves_the_host_to_trial_requests() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", "pw"));
    let probe = Probe::new(30 * S, || panic!("the probe's request could not be made"));
    let layer = responsys_failover_layer(&sim, Some(probe));
    let svc = common::client(&layer);
    let lists = || Request::get(sim.url("/rest/api/v1.3/lists")).body(Full::default()).unwrap();

    vendor.set_secondary(true);
    assert!(svc.clone().oneshot(lists()).await.unwrap_err().is_failover());
    // The probe's first turn, at 30 s, panics; the vendor comes back meanwhile.
    tokio::time::sleep(31 * S).await;
    vendor.set_secondary(false);
    assert!(svc.clone().oneshot(lists()).await.unwrap_err().is_failover_local());
    // A minute after failover began, one request goes, is served, and the host is back.
    tokio::time::sleep(30 * S).await;
    assert_eq!(svc.clone().oneshot(lists()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Primary));
}

#[tokio::test(start_paused = true)]
async fn responsys_failover_without_a_probe_lets_one_request_find_out_each_minute() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", "pw"));
    let layer = responsys_failover_layer(&sim, None);
    let svc = common::client(&layer);
    let lists = || Request::get(sim.url("/rest/api/v1.3/lists")).body(Full::default()).unwrap();
    let secondary = || matches!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Secondary { .. }));

    vendor.set_secondary(true);
    assert!(svc.clone().oneshot(lists()).await.unwrap_err().is_failover());
    assert!(secondary());
    let sent = sim.count("/rest/api/v1.3/lists");
    assert!(svc.clone().oneshot(lists()).await.unwrap_err().is_failover_local());

    // A minute on, one request goes: still failed over, the vendor refuses it unprocessed, and
    // the next is refused locally again.
    tokio::time::sleep(redial::hooks::FAILOVER_TRIAL_INTERVAL).await;
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_failover() && !err.is_failover_local(), "{err}");
    assert!(svc.clone().oneshot(lists()).await.unwrap_err().is_failover_local());
    assert_eq!(sim.count("/rest/api/v1.3/lists"), sent + 1, "one trial a minute");

    // A trial whose token has expired is refreshed and goes on: the vendor's 401 for the token
    // says nothing of failover, and the host stays in failover mode when the refreshed call is
    // refused for it.
    vendor.expire_tokens();
    tokio::time::sleep(redial::hooks::FAILOVER_TRIAL_INTERVAL).await;
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_failover() && !err.is_failover_local(), "{err}");
    assert!(secondary(), "a 401 for the token is no sign the vendor is back");

    // The vendor comes back; a minute after the last trial, the next request goes. The primary
    // refuses that one call (400): an answer of the primary's all the same, so the host is back.
    vendor.set_secondary(false);
    assert!(svc.clone().oneshot(lists()).await.unwrap_err().is_failover_local());
    tokio::time::sleep(redial::hooks::FAILOVER_TRIAL_INTERVAL).await;
    vendor.fail_next_with(1, 400, "INVALID_PARAMETER");
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    assert!(!err.is_failover(), "{err}");
    assert_eq!(err.vendor_errors().next().unwrap().code, "INVALID_PARAMETER");
    assert_eq!(layer.failover_mode("127.0.0.1"), Some(FailoverMode::Primary));
    assert_eq!(svc.oneshot(lists()).await.unwrap().status(), StatusCode::OK);
}

fn show_state_envelope() -> &'static str {
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><showSubCampaignState><campaign>Spring</campaign><externalId>sub-42</externalId></showSubCampaignState></soapenv:Body></soapenv:Envelope>"#
}

/// The hook a Genesys user writes: showSubCampaignState by externalId and campaign.
fn genesys_hook(
    url: String,
) -> impl Fn(ReconcileRequest) -> std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send>> + Send + Sync + 'static
{
    move |req: ReconcileRequest| {
        let url = url.clone();
        Box::pin(async move {
            assert!(String::from_utf8_lossy(req.request.body()).contains("<externalId>sub-42</externalId>"));
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
            let res = client
                .request(
                    Request::post(url).body(Full::new(Bytes::from_static(show_state_envelope().as_bytes()))).unwrap(),
                )
                .await
                .unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            if String::from_utf8_lossy(&body).contains("OBJECT_NOT_EXISTS") {
                Verdict::NotApplied
            } else {
                Verdict::Applied(http::Response::builder().status(status).body(body).unwrap())
            }
        })
    }
}

fn genesys_layer(sim: &Sim, hook: bool) -> RetryLayer {
    let b = RetryLayer::builder()
        .host("127.0.0.1", Vendor::GenesysEngage.profile(), Vendor::GenesysEngage.policy())
        .unwrap();
    let b = if hook { b.reconcile("127.0.0.1", genesys_hook(sim.url(sim_genesys::SERVICE_PATH))).unwrap() } else { b };
    b.build()
}

#[tokio::test(start_paused = true)]
async fn create_sub_campaign_that_timed_out_after_taking_effect_is_reconciled_not_duplicated() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    vendor.timeout_after_effect(1);
    let res = common::client(&genesys_layer(&sim, true)).oneshot(common::create_sub_campaign(&sim)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let report = res.extensions().get::<redial::Report>().unwrap();
    assert!(report.reconciled);
    assert_eq!(report.attempts[0].failure, Some(redial::core::Failure::Timeout));
    assert_eq!(vendor.count_creates(), 1, "the create was never sent again");
    assert_eq!(vendor.sub_campaigns().len(), 1);
    assert!(String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).contains("RUNNING"));
}

/// A gateway's 504 in front of Genesys is a timeout: the create may have taken effect, so it is
/// reconciled like one (not failed as a POST that got a 504, nor sent again).
#[tokio::test(start_paused = true)]
async fn create_sub_campaign_whose_gateway_timed_out_after_it_took_effect_is_reconciled_not_duplicated() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    vendor.gateway_timeout_after_effect(1);
    let res = common::client(&genesys_layer(&sim, true)).oneshot(common::create_sub_campaign(&sim)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let report = res.extensions().get::<redial::Report>().unwrap();
    assert!(report.reconciled);
    assert_eq!(report.attempts[0].status, Some(StatusCode::GATEWAY_TIMEOUT));
    assert_eq!(report.attempts[0].action, redial::core::Action::Reconcile);
    assert_eq!(vendor.count_creates(), 1, "the create was never sent again");
    assert_eq!(vendor.sub_campaigns().len(), 1);
}

/// VENDORS.md, Genesys: `NO_SESSION` → re-establish the session, replay once [I]. The session
/// comes from the user's own login (`TokenSource::from_fn`), attached as a header; redial asks
/// it for a new one and replays the call with it, once.
#[tokio::test(start_paused = true)]
async fn no_session_re_establishes_the_session_and_replays_the_call_once() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    let sessions = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let opened = sessions.clone();
    let session = TokenSource::from_fn(
        redial::core::auth::Attach::Header(http::HeaderName::from_static("x-engage-session")),
        move || {
            let n = opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            async move { Ok(redial::core::auth::Credential::new(format!("session-{n}"), None)) }
        },
    );
    let layer = RetryLayer::builder()
        .host("127.0.0.1", Vendor::GenesysEngage.profile(), Vendor::GenesysEngage.policy())
        .unwrap()
        .reconcile("127.0.0.1", genesys_hook(sim.url(sim_genesys::SERVICE_PATH)))
        .unwrap()
        .auth("127.0.0.1", session.clone())
        .unwrap()
        .build();
    let svc = common::client(&layer);

    // The session expires at the vendor: the next call is told NO_SESSION.
    vendor.fail_next(1, "NO_SESSION");
    let res = svc.clone().oneshot(common::create_sub_campaign(&sim)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let report = res.extensions().get::<redial::Report>().unwrap();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].code.as_deref(), Some("NO_SESSION"));
    assert_eq!(report.attempts[0].action, redial::core::Action::RefreshAuth);
    assert_eq!(session.logins(), 2, "the first session, then one new one");
    let sent: Vec<_> = sim.requests().iter().map(|r| r.headers["x-engage-session"].clone()).collect();
    assert_eq!(sent, ["session-1", "session-2"], "the replay carries the new session");
    assert_eq!(vendor.count_creates(), 2, "the call and its replay");
    assert_eq!(vendor.sub_campaigns().len(), 1, "NO_SESSION had no effect: one object, made by the replay");

    // Replayed once: a vendor that says NO_SESSION again to the new session is not asked a third time.
    vendor.fail_next(2, "NO_SESSION");
    let err = svc.oneshot(common::create_sub_campaign(&sim)).await.unwrap_err();
    assert_eq!(err.vendor_errors().last().unwrap().code, "NO_SESSION");
    assert_eq!(err.report().attempt_count(), 2);
    assert!(err.is_auth(), "{err}");
    assert_eq!(session.logins(), 3);
}

#[tokio::test(start_paused = true)]
async fn create_sub_campaign_not_applied_is_retried_once() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    vendor.internal_error_before_effect(1);
    let res = common::client(&genesys_layer(&sim, true)).oneshot(common::create_sub_campaign(&sim)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let report = res.extensions().get::<redial::Report>().unwrap();
    assert!(!report.reconciled);
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].code.as_deref(), Some("INTERNAL_ERROR"));
    // The hook was asked first: one showSubCampaignState, which found nothing.
    assert_eq!(report.attempts[0].action, redial::core::Action::Reconcile);
    let shows =
        sim.requests().iter().filter(|r| String::from_utf8_lossy(&r.body).contains("showSubCampaignState")).count();
    assert_eq!(shows, 1, "the hook asked the vendor once");
    assert_eq!(vendor.count_creates(), 2);
    assert_eq!(vendor.sub_campaigns().len(), 1, "exactly one object");
}

#[tokio::test(start_paused = true)]
async fn create_sub_campaign_without_a_hook_is_not_retried_and_the_error_says_so() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    vendor.internal_error_after_effect(1);
    let err = common::client(&genesys_layer(&sim, false)).oneshot(common::create_sub_campaign(&sim)).await.unwrap_err();
    assert_eq!(err.fail_reason(), Some(&redial::core::FailReason::NoReconcileHook));
    assert!(err.to_string().contains("reconcile"), "{err}");
    assert_eq!(vendor.count_creates(), 1);
    assert_eq!(err.vendor_errors().next().unwrap().code, "INTERNAL_ERROR");
}

/// VENDORS.md, Genesys: INTERNAL_ERROR on `createSubCampaign` while the object exists but
/// failed → the user's compensation (`changeSubCampaignState` stop), then resubmit. The hook
/// stops the sub-campaign and answers [`Verdict::Compensated`]; redial sends the create again.
#[tokio::test(start_paused = true)]
async fn create_sub_campaign_found_failed_is_stopped_by_the_hook_then_resubmitted() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    vendor.internal_error_after_effect(1);
    let url = sim.url(sim_genesys::SERVICE_PATH);
    let half_done = vendor.clone();
    let hook = move |req: ReconcileRequest| {
        let (url, half_done) = (url.clone(), half_done.clone());
        async move {
            assert!(String::from_utf8_lossy(req.request.body()).contains("<externalId>sub-42</externalId>"));
            // The create half-happened: the object exists, in a failed state.
            assert!(half_done.set_state("Spring", "sub-42", "FAILED"));
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
            let call = |envelope: &'static str| {
                client.request(
                    Request::post(url.as_str()).body(Full::new(Bytes::from_static(envelope.as_bytes()))).unwrap(),
                )
            };
            let shown = call(show_state_envelope()).await.unwrap().into_body().collect().await.unwrap().to_bytes();
            assert!(String::from_utf8_lossy(&shown).contains("<state>FAILED</state>"), "{shown:?}");
            let stop = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><changeSubCampaignState><campaign>Spring</campaign><externalId>sub-42</externalId><state>STOPPED</state></changeSubCampaignState></soapenv:Body></soapenv:Envelope>"#;
            assert_eq!(call(stop).await.unwrap().status(), StatusCode::OK);
            Verdict::Compensated
        }
    };
    let layer = RetryLayer::builder()
        .host("127.0.0.1", Vendor::GenesysEngage.profile(), Vendor::GenesysEngage.policy())
        .unwrap()
        .reconcile("127.0.0.1", hook)
        .unwrap()
        .build();
    let res = common::client(&layer).oneshot(common::create_sub_campaign(&sim)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let report = res.extensions().get::<redial::Report>().unwrap();
    assert!(!report.reconciled, "the first call's result is not the one returned");
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].code.as_deref(), Some("INTERNAL_ERROR"));
    assert_eq!(report.attempts[0].action, redial::core::Action::Reconcile);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("createSubCampaignResponse"), "{body:?}");
    // Stopped by the hook, then created once more: one sub-campaign, running.
    assert_eq!(vendor.count_creates(), 2);
    let stops =
        sim.requests().iter().filter(|r| String::from_utf8_lossy(&r.body).contains("changeSubCampaignState")).count();
    assert_eq!(stops, 1);
    assert_eq!(vendor.sub_campaigns(), [("Spring".to_owned(), "sub-42".to_owned(), "RUNNING".to_owned())]);
}

/// The Errors page: a failure carries the set of errors ("validate all arguments … return a set
/// of errors"), `ARG_*` ones with their `argumentIndex`. The simulated Engage answers a create
/// missing both arguments with two; the caller's error owns both, and it is never re-sent.
#[tokio::test(start_paused = true)]
async fn genesys_fault_with_several_errors_reaches_the_caller_whole_and_is_final() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_genesys::install(&sim, sim_genesys::GenesysConfig::default());
    let envelope = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><createSubCampaign/></soapenv:Body></soapenv:Envelope>"#;
    let req = Request::post(sim.url(sim_genesys::SERVICE_PATH))
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"createSubCampaign\"")
        .body(Full::new(Bytes::from_static(envelope.as_bytes())))
        .unwrap();
    let err = common::client(&genesys_layer(&sim, true)).oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), Some(redial::core::Kind::Fatal));
    let got: Vec<_> =
        err.vendor_errors().map(|e| (e.code.clone(), e.attribute("argumentIndex").map(str::to_owned))).collect();
    assert_eq!(got, [("ARG_NULL".to_owned(), Some("0".to_owned())), ("ARG_NULL".to_owned(), Some("1".to_owned()))]);
    assert_eq!(err.report().attempt_count(), 1);
    assert_eq!(sim.count(sim_genesys::SERVICE_PATH), 1);
    assert_eq!(vendor.count_creates(), 1);
    assert!(vendor.sub_campaigns().is_empty());
}

#[tokio::test(start_paused = true)]
async fn marketo_414_is_rewritten_to_post_with_method_get() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, sim_marketo::MarketoConfig::default());
    let host = "123-abc-456.mktorest.com";
    let layer = RetryLayer::builder()
        .host(host, Vendor::Marketo.profile(), Vendor::Marketo.policy())
        .unwrap()
        .auth(host, marketo_source(&sim, host))
        .unwrap()
        .build();
    let ids: Vec<String> = (0..1500).map(|i| format!("{:06}", i)).collect();
    let query = format!("filterType=id&filterValues={}", ids.join(","));
    assert!(query.len() > 10_000);
    let url = format!("http://{host}:{}/rest/v1/leads.json?{query}", sim.addr().port());
    let res = common::client(&layer).oneshot(Request::get(url).body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(body.contains("000000,000001") && body.contains("001499"), "{}", &body[..200.min(body.len())]);
    let log = sim.requests();
    let api: Vec<_> = log.iter().filter(|r| r.path == "/rest/v1/leads.json").collect();
    assert_eq!(api.len(), 2);
    assert_eq!(api[0].method, http::Method::GET);
    assert_eq!(api[1].method, http::Method::POST);
    assert_eq!(api[1].query.as_deref(), Some("_method=GET"));
    assert_eq!(api[1].headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(api[1].body, query.as_bytes());
    assert_eq!(vendor.count_code("601"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_is_added_once_and_reused_on_every_attempt() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/v1/payments", redial_sim::Reply::ok().fault(redial_sim::Fault::ResetAfterRead));
    sim.enqueue("/v1/payments", redial_sim::Reply::status(503));
    sim.set_fallback("/v1/payments", redial_sim::Reply::status(201));
    let policy = Policy::builder()
        .idempotency_keys(true)
        .max_attempts(4)
        .backoff(redial::core::backoff::Backoff::constant(S))
        .build()
        .unwrap();
    let layer = RetryLayer::builder().host("api.example.com", redial::core::generic::Generic, policy).unwrap().build();
    let url = format!("http://api.example.com:{}/v1/payments", sim.addr().port());
    let req = Request::post(url).body(Full::new(Bytes::from_static(b"{\"amount\":1}"))).unwrap();
    let res = common::client(&layer).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let keys: Vec<_> = sim.requests().iter().map(|r| r.headers["idempotency-key"].clone()).collect();
    assert_eq!(keys.len(), 3, "a POST reset after sending was retried because it carries a key");
    assert!(keys.iter().all(|k| *k == keys[0]));
    assert_eq!(keys[0].len(), 36);
}

/// A key added on a host whose policy does not honour keys (`honor_idempotency_key(false)`: its
/// server ignores them) does not make the request safe to re-send: a POST reset after it was
/// read is sent once, key and all.
#[tokio::test(start_paused = true)]
async fn an_idempotency_key_a_host_does_not_honour_makes_nothing_retryable() {
    let sim = Sim::start().await.unwrap();
    sim.enqueue("/v1/payments", redial_sim::Reply::ok().fault(redial_sim::Fault::ResetAfterRead));
    sim.set_fallback("/v1/payments", redial_sim::Reply::status(201));
    let policy = Policy::builder().idempotency_keys(true).honor_idempotency_key(false).build().unwrap();
    let layer = RetryLayer::builder().host("api.example.com", redial::core::generic::Generic, policy).unwrap().build();
    let url = format!("http://api.example.com:{}/v1/payments", sim.addr().port());
    let req = Request::post(url).body(Full::new(Bytes::from_static(b"{\"amount\":1}"))).unwrap();
    let err = common::client(&layer).oneshot(req).await.unwrap_err();
    assert!(err.is_not_idempotent(), "{err}");
    let sent = sim.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].headers["idempotency-key"].len(), 36, "the key was added all the same");
}

#[tokio::test(start_paused = true)]
async fn two_vendors_in_one_layer_keep_separate_limits_budgets_and_tokens() {
    let sim = Sim::start().await.unwrap();
    let mkto = sim_marketo::install(&sim, sim_marketo::MarketoConfig::default());
    let edge = sim_adobe::install(&sim, sim_adobe::AdobeConfig::default());
    let port = sim.addr().port();
    let m_host = "123-abc-456.mktorest.com";
    let a_host = "server.adobedc.net";
    let ims = adobe::ImsLogin::new(
        sim_adobe::AdobeConfig::default().client_id,
        sim_adobe::AdobeConfig::default().client_secret,
        ["openid"],
    )
    .token_url(&format!("http://{a_host}:{port}{}", sim_adobe::IMS_TOKEN_PATH))
    .unwrap();
    let m_policy = Vendor::Marketo.policy().to_builder().rate_limit(10, 20 * S).build().unwrap();
    let layer = redial::builder()
        .host(m_host, Vendor::Marketo.profile(), m_policy)
        .unwrap()
        .auth(m_host, marketo_source(&sim, m_host))
        .unwrap()
        .auth(a_host, TokenSource::login(ims))
        .unwrap()
        .build();
    let svc = common::client(&layer);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let svc = svc.clone();
        let req = if i % 2 == 0 {
            Request::get(format!("http://{m_host}:{port}/rest/v1/leads.json")).body(Full::default()).unwrap()
        } else {
            Request::post(format!("http://{a_host}:{port}{}", sim_adobe::INTERACT_PATH))
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap()
        };
        tasks.spawn(async move { (i % 2 == 0, svc.oneshot(req).await.map(|r| r.status()), Instant::now()) });
    }
    let (mut m_done, mut a_done) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (is_m, status, at) = r.unwrap();
        assert_eq!(status.unwrap(), StatusCode::OK);
        if is_m {
            m_done.push(at - started)
        } else {
            a_done.push(at - started)
        }
    }
    // Marketo's 10 per 20 s held its 15 calls into a second window; Adobe's were not held.
    assert!(m_done.iter().max().unwrap() >= &(20 * S));
    assert!(a_done.iter().max().unwrap() < &S, "{a_done:?}");
    // One login each, each token only on its own vendor.
    assert_eq!((mkto.logins(), edge.logins()), (1, 1));
    let m_tokens: std::collections::HashSet<_> = mkto.api_calls().into_iter().filter_map(|c| c.token).collect();
    let a_tokens: std::collections::HashSet<_> = edge.api_calls().into_iter().filter_map(|c| c.token).collect();
    assert!(m_tokens.is_disjoint(&a_tokens));
    assert_eq!(m_tokens.len(), 1);
    assert_eq!(a_tokens.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn two_hosts_in_one_layer_keep_separate_retry_budgets() {
    let sim = Sim::start().await.unwrap();
    let port = sim.addr().port();
    sim.set_fallback("/down", redial_sim::Reply::status(502));
    sim.set_fallback("/flaky", redial_sim::Reply::json(200, "{}"));
    // 20 % of requests plus a reserve of 10 retries per 10 s, per host; retries at once, so
    // that everything below happens inside one budget window.
    let budget = redial::core::budget::BudgetConfig::new(0.2, 1, 10 * S);
    let backoff = redial::core::backoff::Backoff::constant(Duration::from_millis(1));
    let policy = Policy::builder().budget(budget).backoff(backoff).build().unwrap();
    let generic = || redial::core::generic::Generic;
    let layer = RetryLayer::builder()
        .host("down.example.test", generic(), policy.clone())
        .unwrap()
        .host("flaky.example.test", generic(), policy)
        .unwrap()
        .build();
    let svc = common::client(&layer);
    let started = Instant::now();
    let get =
        |host: &str, path: &str| Request::get(format!("http://{host}:{port}{path}")).body(Full::default()).unwrap();
    // A host that is down spends its own budget: 100 requests, then retries are refused.
    let mut exhausted = 0;
    for _ in 0..100 {
        let err = svc.clone().oneshot(get("down.example.test", "/down")).await.unwrap_err();
        exhausted += usize::from(err.is_budget_exhausted());
    }
    assert!(exhausted > 0, "the down host's budget ran out");
    // 100 first attempts, and retries within the reserve (10) and 20 % of the requests (20).
    let down_attempts = sim.count("/down");
    assert!(down_attempts <= 100 + 10 + 20, "{down_attempts} attempts for 100 requests");
    assert!(Instant::now() - started < 10 * S, "all within one budget window");
    // The other host's budget is whole: each of its 502s is retried, and succeeds.
    for _ in 0..5 {
        sim.enqueue("/flaky", redial_sim::Reply::status(502));
        let res = svc.clone().oneshot(get("flaky.example.test", "/flaky")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.extensions().get::<redial::Report>().unwrap().attempt_count(), 2);
    }
}

/// A limiter that counts what the engine tells it, in front of the in-memory one.
#[derive(Debug)]
struct Counting {
    inner: redial::core::rate::SlidingWindow,
    throttles: std::sync::atomic::AtomicU32,
}

impl redial::core::rate::RateLimiter for Counting {
    fn reserve(&self, now: std::time::Instant) -> redial::core::rate::Reservation {
        redial::core::rate::Reservation::At(self.inner.reserve(now))
    }
    fn release(&self, at: std::time::Instant) {
        self.inner.release(at)
    }
    fn throttled(&self, now: std::time::Instant, pause: Duration) {
        self.throttles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.throttled(now, pause)
    }
    fn current_limit(&self) -> u32 {
        self.inner.current_limit()
    }
}

/// A vendor's limit is the account's: one limiter given to two hosts paces them as one (the
/// third call in the window waits for the first to leave it, whichever host it is for), and
/// hears a throttle from either; the policy's own rate limit is not used beside it.
#[tokio::test(start_paused = true)]
async fn a_rate_limiter_given_to_two_hosts_paces_them_as_one_account() {
    let sim = Sim::start().await.unwrap();
    let port = sim.addr().port();
    sim.set_fallback("/x", redial_sim::Reply::json(200, "{}"));
    let limiter = std::sync::Arc::new(Counting {
        inner: redial::core::rate::SlidingWindow::new(2, 10 * S),
        throttles: Default::default(),
    });
    let shared: std::sync::Arc<dyn redial::core::rate::RateLimiter> = limiter.clone();
    // The policy's limit, far looser, is replaced by the shared one; its concurrency limit
    // still holds (`RetryLayerBuilder::rate_limiter`'s docs).
    let policy = Policy::builder().rate_limit(1000, S).max_concurrency(4).build().unwrap();
    let generic = || redial::core::generic::Generic;
    let layer = RetryLayer::builder()
        .host("eu.example.test", generic(), policy.clone())
        .unwrap()
        .rate_limiter("eu.example.test", shared.clone())
        .unwrap()
        .host("us.example.test", generic(), policy)
        .unwrap()
        .rate_limiter("us.example.test", shared)
        .unwrap()
        .build();
    assert_eq!(layer.current_rate_limit("eu.example.test"), Some(2));
    assert_eq!(layer.current_concurrency_limit("eu.example.test"), Some(4));
    let svc = common::client(&layer);
    let get = |host: &str| Request::get(format!("http://{host}:{port}/x")).body(Full::default()).unwrap();
    let started = Instant::now();
    for host in ["eu.example.test", "us.example.test"] {
        assert_eq!(svc.clone().oneshot(get(host)).await.unwrap().status(), StatusCode::OK);
    }
    assert!(Instant::now() - started < S, "two calls fit the window");
    assert_eq!(svc.clone().oneshot(get("us.example.test")).await.unwrap().status(), StatusCode::OK);
    assert!(Instant::now() - started >= 10 * S, "the third waited for the window: {:?}", Instant::now() - started);
    assert_eq!(sim.count("/x"), 3);

    // A throttle on one host reaches the shared limiter: it learns, and the call is retried.
    sim.enqueue("/x", redial_sim::Reply::status(429).header("retry-after", "1"));
    let res = svc.clone().oneshot(get("eu.example.test")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(limiter.throttles.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(layer.current_rate_limit("us.example.test"), Some(1), "the limit both hosts now share");
}

/// A limiter over a store a fleet shares: each slot is the store's answer, `answer` after it
/// is asked (an in-memory log stands for the store). Counts the reservations dropped before
/// the store answered.
#[derive(Debug)]
struct Remote {
    log: std::sync::Arc<redial::core::rate::SlidingWindow>,
    answer: Duration,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Remote {
    fn new(limit: u32, window: Duration, answer: Duration) -> std::sync::Arc<Remote> {
        let log = std::sync::Arc::new(redial::core::rate::SlidingWindow::new(limit, window));
        std::sync::Arc::new(Remote { log, answer, dropped: Default::default() })
    }
}

/// Counts a pending reservation dropped before its answer.
struct Unanswered(Option<std::sync::Arc<std::sync::atomic::AtomicU32>>);

impl Unanswered {
    fn answered(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(dropped) = self.0.take() {
            dropped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl redial::core::rate::RateLimiter for Remote {
    fn reserve(&self, now: std::time::Instant) -> redial::core::rate::Reservation {
        let (log, answer) = (self.log.clone(), self.answer);
        let mut unanswered = Unanswered(Some(self.dropped.clone()));
        redial::core::rate::Reservation::Pending(Box::pin(async move {
            tokio::time::sleep(answer).await;
            unanswered.answered();
            log.reserve(now)
        }))
    }
    fn release(&self, at: std::time::Instant) {
        self.log.release(at)
    }
    fn throttled(&self, now: std::time::Instant, pause: Duration) {
        self.log.throttled(now, pause)
    }
    fn current_limit(&self) -> u32 {
        self.log.current_limit()
    }
}

/// A layer whose one host (the sim's, any path answering 200) is paced by `limiter`.
fn paced_by(sim: &Sim, limiter: std::sync::Arc<Remote>, policy: Policy) -> RetryLayer {
    sim.set_fallback("/x", redial_sim::Reply::json(200, "{}"));
    RetryLayer::builder()
        .host("127.0.0.1", redial::core::generic::Generic, policy)
        .unwrap()
        .rate_limiter("127.0.0.1", limiter)
        .unwrap()
        .build()
}

/// A rate limiter over a shared store answers `Reservation::Pending`: each request awaits its
/// slot (20 ms to the store and back) without holding its thread, then waits for the slot's
/// time; requests in the same window go as the store's log allows.
#[tokio::test(start_paused = true)]
async fn a_slot_a_shared_store_reserves_is_awaited_then_kept() {
    let sim = Sim::start().await.unwrap();
    let store = Remote::new(2, 10 * S, 20 * Duration::from_millis(1));
    let svc = common::client(&paced_by(&sim, store.clone(), Policy::default()));
    let started = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::get(sim.url("/x")).body(Full::default()).unwrap())))
        .collect();
    let mut ended = Vec::new();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
        ended.push(started.elapsed());
    }
    ended.sort();
    assert!(ended[1] >= 20 * Duration::from_millis(1) && ended[1] < S, "the store's answer, then at once: {ended:?}");
    assert!(ended[2] >= 10 * S, "the third waited for the window: {ended:?}");
    assert_eq!(sim.count("/x"), 3);
    assert_eq!(store.dropped.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A store that answers slower than the request's deadline: the request fails at its deadline,
/// sends nothing, and drops the reservation (the store lets its slot lapse).
#[tokio::test(start_paused = true)]
async fn a_store_that_answers_after_the_deadline_fails_the_request_at_its_deadline() {
    let sim = Sim::start().await.unwrap();
    let store = Remote::new(2, 10 * S, 60 * S);
    let policy = Policy::builder().deadline(5 * S).build().unwrap();
    let svc = common::client(&paced_by(&sim, store.clone(), policy));
    let started = Instant::now();
    let err = svc.oneshot(Request::get(sim.url("/x")).body(Full::default()).unwrap()).await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert_eq!(started.elapsed(), 5 * S);
    assert_eq!(sim.count("/x"), 0);
    assert_eq!(store.dropped.load(std::sync::atomic::Ordering::SeqCst), 1, "the reservation was dropped");
}

/// A slot the store answers at or past the deadline fails the request at once, as an in-memory
/// one does, and is given back.
#[tokio::test(start_paused = true)]
async fn a_slot_the_store_answers_past_the_deadline_fails_the_request_at_once() {
    let sim = Sim::start().await.unwrap();
    let store = Remote::new(1, 60 * S, Duration::from_millis(20));
    let policy = Policy::builder().deadline(10 * S).build().unwrap();
    let svc = common::client(&paced_by(&sim, store.clone(), policy));
    let get = || Request::get(sim.url("/x")).body(Full::default()).unwrap();
    assert_eq!(svc.clone().oneshot(get()).await.unwrap().status(), StatusCode::OK);
    let started = Instant::now();
    let err = svc.clone().oneshot(get()).await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert!(err.to_string().contains("would pass the deadline"), "{err}");
    assert!(started.elapsed() < S, "failed when the store answered: {:?}", started.elapsed());
    assert_eq!(sim.count("/x"), 1);
    // The slot was given back: 55 s on, the next call takes it (5 s away, within its
    // deadline), not the one after it (a window later).
    tokio::time::sleep(55 * S).await;
    let started = Instant::now();
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), StatusCode::OK);
    assert!(started.elapsed() < 6 * S, "{:?}", started.elapsed());
}

/// Responsys retries "no response" three times, any method. A POST answered 200 whose body then
/// breaks did get a response: the vendor had it, and it is not sent again.
#[tokio::test(start_paused = true)]
async fn responsys_a_post_answered_whose_body_breaks_is_not_sent_again() {
    let sim = Sim::start().await.unwrap();
    let path = "/rest/api/v1.3/campaigns/welcome/email";
    sim.set_fallback(
        path,
        redial_sim::Reply::json(200, r#"{"recipientData":[{"recipient":{"emailAddress":"a@example.com"}}]}"#)
            .fault(redial_sim::Fault::TruncatedBody { sent: 10 }),
    );
    let layer = RetryLayer::builder().vendor_at(Vendor::Responsys, "127.0.0.1").unwrap().build();
    let req = Request::post(sim.url(path)).body(Full::from("{\"recipientData\":[]}")).unwrap();
    let err = common::client(&layer).oneshot(req).await.unwrap_err();
    assert_eq!(sim.count(path), 1, "a POST the vendor answered was sent again");
    assert!(err.is_not_idempotent(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::OK), "the answer's head is kept");
}

/// A refusal whose body breaks is still the refusal: Responsys's 503 (the call was not carried
/// out) is retried for any method, a POST included.
#[tokio::test(start_paused = true)]
async fn responsys_a_post_refused_with_a_503_whose_body_breaks_is_still_retried() {
    let sim = Sim::start().await.unwrap();
    let path = "/rest/api/v1.3/campaigns/welcome/email";
    let refusal = r#"{"type":"","title":"Service unavailable","errorCode":"SERVICE_UNAVAILABLE","detail":"down","errorDetails":[]}"#;
    sim.enqueue(path, redial_sim::Reply::json(503, refusal).fault(redial_sim::Fault::TruncatedBody { sent: 10 }));
    sim.set_fallback(path, redial_sim::Reply::json(200, r#"{"recipientData":[]}"#));
    let layer = RetryLayer::builder().vendor_at(Vendor::Responsys, "127.0.0.1").unwrap().build();
    let req = Request::post(sim.url(path)).body(Full::from("{\"recipientData\":[]}")).unwrap();
    let res = common::client(&layer).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(sim.count(path), 2);
}

/// A gateway's 502 is no refusal: the call may have gone on upstream. Read whole, its body
/// makes it final for a POST; one that breaks must not turn it into "no response", which
/// Responsys re-sends three times, any method.
#[tokio::test(start_paused = true)]
async fn responsys_a_post_answered_502_whose_body_breaks_is_not_sent_again() {
    let sim = Sim::start().await.unwrap();
    let path = "/rest/api/v1.3/campaigns/welcome/email";
    let gateway =
        r#"{"type":"","title":"Bad gateway","errorCode":"BAD_GATEWAY","detail":"upstream","errorDetails":[]}"#;
    sim.set_fallback(path, redial_sim::Reply::json(502, gateway).fault(redial_sim::Fault::TruncatedBody { sent: 10 }));
    let layer = RetryLayer::builder().vendor_at(Vendor::Responsys, "127.0.0.1").unwrap().build();
    let req = Request::post(sim.url(path)).body(Full::from("{\"recipientData\":[]}")).unwrap();
    let err = common::client(&layer).oneshot(req).await.unwrap_err();
    assert_eq!(sim.count(path), 1, "a POST a gateway answered was sent again");
    assert!(err.is_not_idempotent(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY), "the answer's head is kept");
}

#[test]
fn host_state_is_read_by_pattern_or_by_a_host_name_it_serves() {
    let layer = redial::builder().build();
    assert_eq!(layer.current_rate_limit("*.mktorest.com"), Some(100));
    assert_eq!(layer.current_rate_limit("123-abc-456.mktorest.com"), Some(100));
    assert_eq!(layer.current_concurrency_limit("123-abc-456.MKTOREST.com"), Some(10));
    assert_eq!(layer.failover_mode("acme.responsys.ocs.oraclecloud.com"), Some(FailoverMode::Primary));
    // A name no vendor serves is served by the default host, which has no limits.
    assert_eq!(layer.current_rate_limit("api.example.com"), None);
    assert_eq!(layer.failover_mode("*.nobody.example"), None, "a pattern nothing was registered under");
}

#[test]
fn attaching_to_a_pattern_nothing_was_registered_under_says_so() {
    let source = TokenSource::from_fn(redial::core::auth::Attach::Bearer, || async {
        Ok::<_, redial::core::auth::LoginError>(redial::core::auth::Credential::new("t", None))
    });
    let err = RetryLayer::builder().auth("api.example.com", source).unwrap_err();
    assert!(err.to_string().contains("no host is registered under \"api.example.com\""), "{err}");
    let err = RetryLayer::builder().host("api.example.com:8443", redial::core::generic::Generic, Policy::default());
    assert!(err.unwrap_err().to_string().contains("without a port"));
}
