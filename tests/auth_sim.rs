//! Auth against the simulated vendors, over real loopback sockets, on the paused clock.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use redial::vendors::{marketo, responsys};
use redial::{Policy, RequestLimits, RetryBody, RetryLayer, TokenSource, Vendor};
use redial_sim::vendors::{marketo as sim_marketo, responsys as sim_responsys, TokenState};
use redial_sim::Sim;
use tower::{Service, ServiceBuilder, ServiceExt};

const S: Duration = Duration::from_secs(1);
const SECRET: &str = "s3cr3t-client-SECRET";
const PASSWORD: &str = "pa55-PASSWORD";

type Svc = redial::Retry<Client<hyper_util::client::legacy::connect::HttpConnector, RetryBody<Full<Bytes>>>>;

fn client_through(layer: RetryLayer) -> Svc {
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    ServiceBuilder::new().layer(layer).service(client)
}

/// Marketo on the sim's host, logging in at the sim's identity endpoint.
fn marketo_layer(policy: Policy, source: &TokenSource) -> RetryLayer {
    RetryLayer::builder()
        .host("127.0.0.1", Vendor::Marketo.profile(), policy)
        .unwrap()
        .auth("127.0.0.1", source.clone())
        .unwrap()
        .rng_seed(5)
        .build()
}

fn marketo_source(sim: &Sim) -> TokenSource {
    TokenSource::login(marketo::IdentityLogin::new(&sim.url("/identity"), "sim-client-id", SECRET).unwrap())
}

fn marketo_config() -> sim_marketo::MarketoConfig {
    let mut config = sim_marketo::MarketoConfig::new("sim-client-id", SECRET);
    config.rate_limit = None;
    config.max_concurrency = None;
    config
}

fn leads(sim: &Sim) -> Request<Full<Bytes>> {
    Request::get(sim.url("/rest/v1/leads.json?filterType=id&filterValues=1")).body(Full::default()).unwrap()
}

/// A login that cannot connect says why, all the way down ("client error (Connect)" alone
/// does not), and never with the secret its URL carries.
#[tokio::test(start_paused = true)]
async fn a_login_that_cannot_connect_says_why_without_its_secret() {
    let sim = Sim::start().await.unwrap();
    sim_marketo::install(&sim, marketo_config());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed}/identity");
    let source = TokenSource::login(marketo::IdentityLogin::new(&url, "sim-client-id", SECRET).unwrap());
    let svc = client_through(marketo_layer(Vendor::Marketo.policy(), &source));
    let mut req = leads(&sim);
    req.extensions_mut().insert(RequestLimits::new().deadline(3 * S));
    let err = svc.oneshot(req).await.unwrap_err();
    let login = err.login_error().unwrap_or_else(|| panic!("{err}"));
    let said = login.to_string();
    assert!(said.to_ascii_lowercase().contains("refused"), "{said}");
    assert!(!said.contains(SECRET) && !err.to_string().contains(SECRET), "{said}");
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_requests_with_an_expired_token_cause_exactly_one_login() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, marketo_config());
    let source = marketo_source(&sim);
    // This test is about the token cell: the instance's rate limits are lifted.
    let policy = Vendor::Marketo.policy().to_builder().no_rate_limit().no_max_concurrency().build().unwrap();
    let svc = client_through(marketo_layer(policy, &source));
    // Warm the cell with a token, then the vendor expires it: every request starts with it.
    svc.clone().oneshot(leads(&sim)).await.unwrap();
    assert_eq!(vendor.logins(), 1);
    vendor.expire_tokens();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let svc = svc.clone();
        let req = leads(&sim);
        tasks.spawn(async move { svc.oneshot(req).await.map(|r| r.status()) });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), StatusCode::OK);
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(vendor.logins(), 2, "exactly one login for the thousand");
    let calls = vendor.api_calls();
    let refused = calls.iter().filter(|c| c.outcome_code.as_deref() == Some("602")).count();
    let served = calls.iter().filter(|c| c.outcome_code.is_none()).count();
    assert_eq!(served, 1001);
    assert_eq!(refused, 1000, "every request met the expired token, and replayed once");
}

#[tokio::test(start_paused = true)]
async fn a_login_that_fails_five_times_then_works_is_tried_once_per_backoff_window() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, marketo_config());
    vendor.fail_logins(5);
    let source = marketo_source(&sim).login_backoff(S, 60 * S);
    let policy = Vendor::Marketo.policy().to_builder().deadline(300 * S).build().unwrap();
    let svc = client_through(marketo_layer(policy, &source));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40u64 {
        let svc = svc.clone();
        let req = leads(&sim);
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(250 * i)).await;
            svc.oneshot(req).await.map(|r| r.status())
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), StatusCode::OK);
    }
    let times = vendor.login_times();
    assert_eq!(times.len(), 6, "five failures, then the login that works");
    for (i, w) in times.windows(2).enumerate() {
        let gap = w[1] - w[0];
        assert!(gap >= S * (1 << i), "login {} came {gap:?} after the previous one", i + 2);
    }
    // No API call went out without a valid token.
    assert!(vendor.api_calls().iter().all(|c| c.token_state == TokenState::Valid));
}

#[tokio::test(start_paused = true)]
async fn marketo_identity_401_fails_every_waiter_with_auth_failed_and_no_login_until_the_backoff() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_marketo::install(&sim, marketo_config());
    vendor.set_login_fatal(true);
    let source = marketo_source(&sim).login_backoff(60 * S, 600 * S);
    let svc = client_through(marketo_layer(Vendor::Marketo.policy(), &source));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..25 {
        let svc = svc.clone();
        let req = leads(&sim);
        tasks.spawn(async move { svc.oneshot(req).await });
    }
    while let Some(r) = tasks.join_next().await {
        let err = r.unwrap().unwrap_err();
        assert!(err.is_auth_failed(), "{err}");
        let login = err.login_error().unwrap();
        assert!(login.is_fatal());
        assert_eq!(login.status(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(login.code(), Some("invalid_client"));
    }
    assert_eq!(vendor.logins(), 1);
    assert!(vendor.api_calls().is_empty(), "nothing was sent without a token");
    tokio::time::sleep(59 * S).await;
    assert!(svc.clone().oneshot(leads(&sim)).await.unwrap_err().is_auth_failed());
    assert_eq!(vendor.logins(), 1, "no login inside the backoff window");
    // A fatal answer holds for the longest window (600 s), not the first (60 s).
    vendor.set_login_fatal(false);
    tokio::time::sleep(2 * S).await;
    assert!(svc.clone().oneshot(leads(&sim)).await.unwrap_err().is_auth_failed());
    assert_eq!(vendor.logins(), 1, "never hammer the login");
    tokio::time::sleep(540 * S).await;
    assert_eq!(svc.oneshot(leads(&sim)).await.unwrap().status(), StatusCode::OK);
    assert_eq!(vendor.logins(), 2);
}

fn responsys_layer(source: &TokenSource) -> RetryLayer {
    RetryLayer::builder()
        .host("127.0.0.1", Vendor::Responsys.profile(), Vendor::Responsys.policy())
        .unwrap()
        .auth("127.0.0.1", source.clone())
        .unwrap()
        .rng_seed(5)
        .build()
}

fn responsys_source(sim: &Sim) -> TokenSource {
    TokenSource::login(responsys::PasswordLogin::new(&sim.url(""), "api-user", PASSWORD).unwrap())
}

/// A request addressed to a port where nothing listens: only the login's endPoint can make
/// it reach the vendor.
fn lists() -> Request<Full<Bytes>> {
    Request::get("http://127.0.0.1:9/rest/api/v1.3/lists").body(Full::default()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn responsys_account_suspended_fails_every_waiter_and_no_login_until_the_backoff() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", PASSWORD));
    vendor.set_login_error(Some("ACCOUNT_SUSPENDED"));
    let source = responsys_source(&sim).login_backoff(60 * S, 600 * S);
    let svc = client_through(responsys_layer(&source));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let svc = svc.clone();
        tasks.spawn(async move { svc.oneshot(lists()).await });
    }
    while let Some(r) = tasks.join_next().await {
        let err = r.unwrap().unwrap_err();
        assert!(err.is_auth_failed(), "{err}");
        assert_eq!(err.login_error().unwrap().code(), Some("ACCOUNT_SUSPENDED"));
        assert!(!format!("{err}{err:?}").contains(PASSWORD));
    }
    assert_eq!(vendor.logins(), 1);
    tokio::time::sleep(30 * S).await;
    assert!(svc.oneshot(lists()).await.unwrap_err().is_auth_failed());
    assert_eq!(vendor.logins(), 1);
}

#[tokio::test(start_paused = true)]
async fn responsys_endpoint_then_invalid_token_relogin_and_replay_once_then_no_loop() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", PASSWORD));
    let source = responsys_source(&sim);
    let svc = client_through(responsys_layer(&source));

    // Login, and the request goes to the endPoint the login named.
    let res = svc.clone().oneshot(lists()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(vendor.logins(), 1);
    let first = vendor.api_calls();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].token_state, TokenState::Valid);

    // The token expires mid-run: TOKEN_EXPIRED → re-login → the request replayed once.
    vendor.expire_tokens();
    let res = svc.clone().oneshot(lists()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(vendor.logins(), 2);
    let report = res.extensions().get::<redial::Report>().unwrap();
    assert_eq!(report.attempt_count(), 2);
    assert_eq!(report.attempts[0].code.as_deref(), Some("TOKEN_EXPIRED"));
    assert_eq!(report.attempts[0].action, redial::core::Action::RefreshAuth);

    // INVALID_TOKEN again on the replay: the request fails, no loop.
    vendor.fail_next_with(5, 401, "INVALID_TOKEN");
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert_eq!(err.report().attempt_count(), 2);
    assert_eq!(vendor.logins(), 3);
    assert_eq!(err.vendor_errors().filter(|e| e.code == "INVALID_TOKEN").count(), 2);
}

#[tokio::test(start_paused = true)]
async fn no_token_password_or_client_secret_in_tracing_debug_or_errors() {
    let (capture, _guard) = common::Capture::install();

    let sim = Sim::start().await.unwrap();
    let mkto = sim_marketo::install(&sim, marketo_config());
    let rsys = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", PASSWORD));
    let m_source = marketo_source(&sim);
    let r_source = responsys_source(&sim);
    let mut seen = Vec::new();

    // A full Marketo run: login, expiry, refresh, a failing login, a fatal one.
    let mut svc = client_through(marketo_layer(Vendor::Marketo.policy(), &m_source));
    svc.ready().await.unwrap().call(leads(&sim)).await.unwrap();
    mkto.expire_tokens();
    svc.ready().await.unwrap().call(leads(&sim)).await.unwrap();
    mkto.expire_tokens();
    mkto.set_login_fatal(true);
    let err = svc.ready().await.unwrap().call(leads(&sim)).await.unwrap_err();
    seen.push(format!("{err} {err:?} {:?}", err.login_error()));
    // And Responsys: login, endPoint, INVALID_TOKEN, a suspended account.
    let mut svc = client_through(responsys_layer(&r_source));
    svc.ready().await.unwrap().call(lists()).await.unwrap();
    rsys.fail_next_with(2, 401, "INVALID_TOKEN");
    let err = svc.ready().await.unwrap().call(lists()).await.unwrap_err();
    seen.push(format!("{err} {err:?}"));
    seen.push(format!("{m_source:?} {r_source:?} {svc:?}"));
    seen.push(format!("{:?}", marketo::IdentityLogin::new(&sim.url("/identity"), "id", SECRET).unwrap()));
    seen.push(format!("{:?}", responsys::PasswordLogin::new(&sim.url(""), "api-user", PASSWORD).unwrap()));

    let tokens: Vec<String> = mkto
        .api_calls()
        .into_iter()
        .chain(rsys.api_calls())
        .filter_map(|c| c.token)
        .filter(|t| !t.is_empty())
        .collect();
    assert!(tokens.len() >= 3, "the run used tokens: {tokens:?}");
    let out = capture.text();
    assert!(out.contains("login succeeded") && out.contains("login failed"), "{out}");
    let everything = format!("{out}\n{}", seen.join("\n"));
    for secret in tokens.iter().map(String::as_str).chain([SECRET, PASSWORD]) {
        assert!(!everything.contains(secret), "{secret:?} leaked:\n{everything}");
    }
}

/// The AFTM seed page: "If there is no system response, your code can retry up to three times,
/// with two minute intervals, to prevent the API login being disabled." The login itself is
/// the call that gets disabled: a login that gets no answer is not tried again sooner.
#[tokio::test(start_paused = true)]
async fn a_responsys_login_without_a_response_is_tried_again_only_two_minutes_later() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", PASSWORD));
    vendor.hang_logins(true);
    // The shipped defaults: the Responsys login, policy and token source as they come.
    let svc = client_through(responsys_layer(&responsys_source(&sim)));
    let request = tokio::spawn(svc.oneshot(lists()));
    tokio::time::sleep(600 * S).await;
    let times = vendor.login_times();
    assert!(!times.is_empty());
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= 120 * S,
            "a login came {gap:?} after one that got no response: {} logins in 10 min",
            times.len()
        );
    }
    assert!(times.len() >= 2, "the login is tried again: {}", times.len());
    vendor.hang_logins(false);
    request.abort();
}

/// The same page: "up to three times". A Responsys login that gets no answer is tried again
/// three times, two minutes apart; when the third retry gets no answer either, the logins stop
/// for the token source's longest backoff and the waiting request fails, saying why.
#[tokio::test(start_paused = true)]
async fn a_responsys_login_without_a_response_is_retried_three_times_then_no_more() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", PASSWORD));
    vendor.hang_logins(true);
    let svc = client_through(responsys_layer(&responsys_source(&sim)));
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");
    assert!(err.to_string().contains("4 logins in a row got no answer"), "{err}");
    let times = vendor.login_times();
    assert_eq!(times.len(), 1 + 3, "the first login and three retries: {times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 120 * S), "{times:?}");

    // Meanwhile nothing logs in: the next request fails at once, the vendor sees no login.
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");
    assert_eq!(vendor.login_times().len(), 4);

    // An answer resets the count: once the vendor answers again, a login after the backoff works.
    vendor.hang_logins(false);
    tokio::time::sleep(301 * S).await;
    let res = svc.oneshot(lists()).await.unwrap();
    assert!(res.status().is_success());
    assert_eq!(vendor.login_times().len(), 5);
}

/// The AFTM seed page: "If you receive an UNRECOVERABLE_EXCEPTION error …, your code should
/// wait about 30 seconds and then resubmit the request only once." The login answered so is
/// sent again once, 30 s later; a second UNRECOVERABLE_EXCEPTION in a row is fatal: the
/// waiting request fails saying why, and no login is tried for the token source's longest
/// backoff (not one every 30 s until the deadline).
#[tokio::test(start_paused = true)]
async fn a_responsys_login_answered_unrecoverable_exception_is_resubmitted_only_once() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", PASSWORD));
    vendor.set_login_error(Some("UNRECOVERABLE_EXCEPTION"));
    // The shipped defaults: the Responsys login, policy and token source as they come.
    let svc = client_through(responsys_layer(&responsys_source(&sim)));
    let started = tokio::time::Instant::now();
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");
    let login = err.login_error().unwrap();
    assert!(login.is_fatal(), "{login}");
    assert_eq!(login.code(), Some("UNRECOVERABLE_EXCEPTION"));
    assert!(login.message().contains("only once"), "{login}");
    let times = vendor.login_times();
    assert_eq!(times.len(), 2, "the login and its one resubmission: {times:?}");
    assert!(times[1] - times[0] >= 30 * S, "{times:?}");
    assert!(started.elapsed() < 31 * S, "the request failed at the second answer: {:?}", started.elapsed());

    // Meanwhile nothing logs in: the next request fails at once, the vendor sees no login.
    tokio::time::sleep(60 * S).await;
    assert!(svc.clone().oneshot(lists()).await.unwrap_err().is_auth_failed());
    assert_eq!(vendor.login_times().len(), 2);

    // Another answer ends the row: once the vendor is well again, a login after the backoff works.
    vendor.set_login_error(None);
    tokio::time::sleep(300 * S).await;
    assert!(svc.oneshot(lists()).await.unwrap().status().is_success());
    assert_eq!(vendor.login_times().len(), 3);
}

/// "Resubmit the request only once" is about the resubmission, 30 s later: a login long after
/// an `UNRECOVERABLE_EXCEPTION` that was never resubmitted (its request gave up first, and no
/// request came for an hour) is a new request's login. Answered so too, it is resubmitted once
/// in its turn; it is not fatal at once for an answer an hour old.
#[tokio::test(start_paused = true)]
async fn a_responsys_login_long_after_an_unrecoverable_exception_is_not_its_resubmission() {
    let sim = Sim::start().await.unwrap();
    let vendor = sim_responsys::install(&sim, sim_responsys::ResponsysConfig::new("api-user", PASSWORD));
    vendor.set_login_error(Some("UNRECOVERABLE_EXCEPTION"));
    let svc = client_through(responsys_layer(&responsys_source(&sim)));
    // A request with 5 s to live: it cannot wait for the resubmission, due 30 s later, which
    // is never sent.
    let mut hurried = lists();
    hurried.extensions_mut().insert(RequestLimits::new().deadline(5 * S));
    let err = svc.clone().oneshot(hurried).await.unwrap_err();
    assert!(err.is_auth_failed(), "{err}");
    assert!(!err.login_error().unwrap().is_fatal(), "{err}");
    assert_eq!(vendor.login_times().len(), 1);

    tokio::time::sleep(3600 * S).await;
    let started = tokio::time::Instant::now();
    let err = svc.clone().oneshot(lists()).await.unwrap_err();
    let login = err.login_error().unwrap();
    assert!(login.is_fatal(), "{login}");
    assert!(login.message().contains("only once"), "{login}");
    let times = vendor.login_times();
    assert_eq!(times.len(), 3, "the new login and its own resubmission: {times:?}");
    assert!(times[2] - times[1] >= 30 * S, "{times:?}");
    assert!(started.elapsed() >= 30 * S, "{:?}", started.elapsed());
}
