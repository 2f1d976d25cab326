//! The fake vendors as seen by a real hyper client over loopback, on a paused clock.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redial_sim::vendors::adobe::{self, AdobeConfig};
use redial_sim::vendors::genesys::{self, GenesysConfig};
use redial_sim::vendors::marketo::{self, MarketoConfig, MarketoHandle};
use redial_sim::vendors::responsys::{self, ResponsysConfig, EPOCH_BASE_MS};
use redial_sim::vendors::{ApiCall, TokenState};
use redial_sim::{Reply, Sim};
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// The handles can be shared across tasks and threads.
const _: fn() = || {
    fn send_sync_clone<T: Send + Sync + Clone + std::fmt::Debug>() {}
    send_sync_clone::<MarketoHandle>();
    send_sync_clone::<responsys::ResponsysHandle>();
    send_sync_clone::<adobe::AdobeHandle>();
    send_sync_clone::<genesys::GenesysHandle>();
};

type TestClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

const FORM: &str = "application/x-www-form-urlencoded";

/// A response read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn content_type(&self) -> &str {
        self.headers.get("content-type").map_or("", |v| v.to_str().unwrap())
    }
}

/// A request to a sim, built step by step and sent with `send`.
struct Call {
    request: http::request::Builder,
    body: String,
}

fn call(method: Method, url: String) -> Call {
    Call { request: Request::builder().method(method).uri(url), body: String::new() }
}

impl Call {
    fn header(mut self, name: &str, value: &str) -> Call {
        self.request = self.request.header(name, value);
        self
    }

    fn form(self, body: &str) -> Call {
        let mut call = self.header("content-type", FORM);
        call.body = body.to_owned();
        call
    }

    fn bearer(self, token: &str) -> Call {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn xml(self, body: String) -> Call {
        let mut call = self.header("content-type", "text/xml; charset=utf-8");
        call.body = body;
        call
    }

    async fn send(self, client: &TestClient) -> Answer {
        let request = self.request.body(Full::new(Bytes::from(self.body))).unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
    }
}

fn codes(calls: &[ApiCall]) -> Vec<Option<&str>> {
    calls.iter().map(|c| c.outcome_code.as_deref()).collect()
}

fn token_states(calls: &[ApiCall]) -> Vec<TokenState> {
    calls.iter().map(|c| c.token_state).collect()
}

// ---------------------------------------------------------------------------------------------
// Marketo

const LEADS: &str = "/rest/v1/leads.json";

async fn marketo_login(c: &TestClient, sim: &Sim) -> Value {
    let url = sim.url("/identity/oauth/token?grant_type=client_credentials&client_id=id&client_secret=secret");
    let answer = call(Method::GET, url).send(c).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

async fn marketo_token(c: &TestClient, sim: &Sim) -> String {
    marketo_login(c, sim).await["access_token"].as_str().unwrap().to_owned()
}

/// A Marketo API call with a Bearer token: (HTTP status, the error code if `success` is false).
async fn marketo_call(c: &TestClient, sim: &Sim, token: &str) -> (u16, Option<String>) {
    let answer = call(Method::GET, sim.url(LEADS)).bearer(token).send(c).await;
    marketo_outcome(&answer)
}

fn marketo_outcome(answer: &Answer) -> (u16, Option<String>) {
    let body = answer.json();
    let code = (body["success"] == false).then(|| body["errors"][0]["code"].as_str().unwrap().to_owned());
    (answer.status, code)
}

#[tokio::test(start_paused = true)]
async fn marketo_identity_returns_the_same_token_with_its_remaining_lifetime() {
    let sim = Sim::start().await.unwrap();
    let mkto = marketo::install(&sim, MarketoConfig::new("id", "secret"));
    let c = client();
    let start = Instant::now();

    let first = marketo_login(&c, &sim).await;
    assert_eq!(first["token_type"], "bearer");
    assert_eq!(first["expires_in"], 3600);
    assert!(first["scope"].is_string());

    // Ten minutes later, a form-encoded POST: the same token, 3000 s left.
    sleep(Duration::from_secs(600)).await;
    let url = sim.url("/identity/oauth/token");
    let second = call(Method::POST, url.clone())
        .form("grant_type=client_credentials&client_id=id&client_secret=secret")
        .send(&c)
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["access_token"], first["access_token"]);
    assert_eq!(second.json()["expires_in"], 3000);

    // Once it expired, a new token with a full lifetime.
    sleep(Duration::from_secs(3000)).await;
    let third = marketo_login(&c, &sim).await;
    assert_ne!(third["access_token"], first["access_token"]);
    assert_eq!(third["expires_in"], 3600);

    assert_eq!(mkto.logins(), 3);
    let times: Vec<_> = mkto.login_times().iter().map(|t| t.duration_since(start).as_secs()).collect();
    assert_eq!(times, [0, 600, 3600]);
}

#[tokio::test(start_paused = true)]
async fn marketo_identity_can_mint_a_new_token_per_login() {
    let sim = Sim::start().await.unwrap();
    let config = MarketoConfig { same_token_until_expiry: false, ..MarketoConfig::new("id", "secret") };
    marketo::install(&sim, config);
    let c = client();
    let a = marketo_token(&c, &sim).await;
    let b = marketo_token(&c, &sim).await;
    assert_ne!(a, b);
    // Both stay valid.
    assert_eq!(marketo_call(&c, &sim, &a).await, (200, None));
    assert_eq!(marketo_call(&c, &sim, &b).await, (200, None));
}

#[tokio::test(start_paused = true)]
async fn marketo_identity_failure_modes() {
    let sim = Sim::start().await.unwrap();
    let mkto = marketo::install(&sim, MarketoConfig::new("id", "secret"));
    let c = client();

    let url = sim.url("/identity/oauth/token?grant_type=client_credentials&client_id=id&client_secret=wrong");
    let bad = call(Method::GET, url).send(&c).await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json(), json!({"error": "invalid_client", "error_description": "Bad client credentials"}));

    mkto.fail_logins(2);
    let url = sim.url("/identity/oauth/token?grant_type=client_credentials&client_id=id&client_secret=secret");
    for _ in 0..2 {
        assert_eq!(call(Method::GET, url.clone()).send(&c).await.status, 503);
    }
    marketo_login(&c, &sim).await;

    mkto.set_login_fatal(true);
    let fatal = call(Method::GET, url.clone()).send(&c).await;
    assert_eq!((fatal.status, fatal.json()["error"].as_str()), (401, Some("invalid_client")));
    mkto.set_login_fatal(false);
    marketo_login(&c, &sim).await;

    mkto.hang_logins(true);
    let hung = timeout(Duration::from_secs(30), call(Method::GET, url.clone()).send(&c)).await;
    assert!(hung.is_err(), "a hung login must not answer");
    mkto.hang_logins(false);
    marketo_login(&c, &sim).await;

    assert_eq!(mkto.logins(), 8);
}

#[tokio::test(start_paused = true)]
async fn marketo_601_for_missing_or_unknown_tokens_and_602_once_expired() {
    let sim = Sim::start().await.unwrap();
    let mkto = marketo::install(&sim, MarketoConfig::new("id", "secret"));
    let c = client();

    let missing = call(Method::GET, sim.url(LEADS)).send(&c).await;
    assert_eq!(missing.status, 200);
    let body = missing.json();
    assert!(body["requestId"].is_string());
    assert_eq!(body["success"], false);
    assert_eq!(body["errors"], json!([{"code": "601", "message": "Access token invalid"}]));
    assert_eq!(marketo_call(&c, &sim, "forged").await, (200, Some("601".into())));

    let token = marketo_token(&c, &sim).await;
    let by_query = call(Method::GET, sim.url(&format!("{LEADS}?access_token={token}"))).send(&c).await;
    assert_eq!(marketo_outcome(&by_query), (200, None));
    assert_eq!(marketo_call(&c, &sim, &token).await, (200, None));

    sleep(Duration::from_secs(3600)).await;
    let expired = call(Method::GET, sim.url(LEADS)).bearer(&token).send(&c).await;
    assert_eq!(expired.json()["errors"], json!([{"code": "602", "message": "Access token expired"}]));

    // A new login, then every token expires on command.
    let fresh = marketo_token(&c, &sim).await;
    assert_ne!(fresh, token);
    assert_eq!(marketo_call(&c, &sim, &fresh).await, (200, None));
    mkto.expire_tokens();
    assert_eq!(marketo_call(&c, &sim, &fresh).await, (200, Some("602".into())));
    assert_ne!(marketo_token(&c, &sim).await, fresh);

    let calls = mkto.api_calls();
    use TokenState::*;
    assert_eq!(token_states(&calls), [Missing, Unknown, Valid, Valid, Expired, Valid, Expired]);
    assert_eq!(calls[3].token.as_deref(), Some(token.as_str()));
    assert_eq!((mkto.count_code("601"), mkto.count_code("602")), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn marketo_606_beyond_the_sliding_window() {
    let sim = Sim::start().await.unwrap();
    let config = MarketoConfig {
        rate_limit: Some((3, Duration::from_secs(20))),
        latency: Duration::ZERO,
        ..MarketoConfig::new("id", "secret")
    };
    let mkto = marketo::install(&sim, config);
    let c = client();
    let token = marketo_token(&c, &sim).await;
    let t0 = Instant::now();

    let mut outcomes = Vec::new();
    for at_ms in [0, 1_000, 2_000, 3_000, 19_500, 20_000, 20_500, 21_000, 40_000] {
        sleep_until(t0 + Duration::from_millis(at_ms)).await;
        let answer = call(Method::GET, sim.url(LEADS)).bearer(&token).send(&c).await;
        if at_ms == 3_000 {
            let message = &answer.json()["errors"][0]["message"];
            assert_eq!(message, "Max rate limit '3' exceeded with in '20' secs");
        }
        outcomes.push(marketo_outcome(&answer).1);
    }
    // A refused call counts too (606 is not one of the asterisked codes): at 20 s the window
    // (0 s, 20 s] still holds the calls of 1 s and 2 s and the refused ones of 3 s and 19.5 s,
    // and so on while the calls keep coming; by 40 s only the calls of 20.5 s and 21 s are in it.
    let expected = [None, None, None, Some("606"), Some("606"), Some("606"), Some("606"), Some("606"), None];
    assert_eq!(outcomes, expected.map(|c| c.map(str::to_owned)));
    assert_eq!(mkto.count_code("606"), 5);
    // Calls refused with 601 do not count either.
    assert_eq!(marketo_call(&c, &sim, "forged").await.1.as_deref(), Some("601"));
}

#[tokio::test(start_paused = true)]
async fn marketo_615_beyond_the_concurrency_limit() {
    let sim = Sim::start().await.unwrap();
    let config = MarketoConfig {
        max_concurrency: Some(3),
        latency: Duration::from_secs(1),
        ..MarketoConfig::new("id", "secret")
    };
    let mkto = marketo::install(&sim, config);
    let c = client();
    let token = marketo_token(&c, &sim).await;
    let start = Instant::now();

    let mut calls = JoinSet::new();
    for _ in 0..4 {
        let (c, url, token) = (c.clone(), sim.url(LEADS), token.clone());
        calls.spawn(async move {
            let answer = call(Method::GET, url).bearer(&token).send(&c).await;
            (marketo_outcome(&answer), start.elapsed())
        });
    }
    let mut outcomes = calls.join_all().await;
    outcomes.sort();
    let ok = ((200, None), Duration::from_secs(1));
    let refused = ((200, Some("615".to_owned())), Duration::ZERO);
    assert_eq!(outcomes, [ok.clone(), ok.clone(), ok, refused]);
    assert_eq!(mkto.max_in_flight(), 3);
    assert_eq!(mkto.in_flight(), 0);
    assert_eq!(mkto.count_code("615"), 1);

    // The limit frees up once calls finish.
    assert_eq!(marketo_call(&c, &sim, &token).await, (200, None));
}

#[tokio::test(start_paused = true)]
async fn marketo_414_for_long_gets_and_method_get_echoes_the_form() {
    let sim = Sim::start().await.unwrap();
    let mkto = marketo::install(&sim, MarketoConfig::new("id", "secret"));
    let c = client();
    let token = marketo_token(&c, &sim).await;

    let values = vec!["someone@example.com"; 500].join(",");
    let long = sim.url(&format!("{LEADS}?filterType=email&filterValues={values}"));
    let too_long = call(Method::GET, long).bearer(&token).send(&c).await;
    assert_eq!((too_long.status, too_long.body.as_str()), (414, ""));

    // The rewrite Marketo documents: POST, `_method=GET` in the URL, the query as a form body.
    let form = format!("filterType=email&filterValues={}", values.replace('@', "%40"));
    let rewritten =
        call(Method::POST, sim.url(&format!("{LEADS}?_method=GET"))).bearer(&token).form(&form).send(&c).await;
    assert_eq!(rewritten.status, 200);
    let body = rewritten.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["result"], json!([{"filterType": "email", "filterValues": values}]));

    // A plain GET echoes its query (minus the token); a plain POST answers a record status.
    let get =
        call(Method::GET, sim.url(&format!("{LEADS}?fields=id&fields=email&access_token={token}"))).send(&c).await;
    assert_eq!(get.json()["result"], json!([{"fields": ["id", "email"]}]));
    let post =
        call(Method::POST, sim.url(LEADS)).bearer(&token).header("content-type", "application/json").send(&c).await;
    assert_eq!(post.json()["result"], json!([{"id": 1, "status": "updated"}]));

    let calls = mkto.api_calls();
    let statuses: Vec<_> = calls.iter().map(|c| (c.method.as_str(), c.status)).collect();
    assert_eq!(statuses, [("GET", 414), ("POST", 200), ("GET", 200), ("POST", 200)]);
}

#[tokio::test(start_paused = true)]
async fn queued_replies_win_over_the_vendor_and_everything_is_logged() {
    let sim = Sim::start().await.unwrap();
    let mkto = marketo::install(&sim, MarketoConfig::new("id", "secret"));
    let c = client();
    let token = marketo_token(&c, &sim).await;

    sim.enqueue(LEADS, Reply::status(502).body("Bad Gateway"));
    let injected = call(Method::GET, sim.url(LEADS)).bearer(&token).send(&c).await;
    assert_eq!((injected.status, injected.body.as_str()), (502, "Bad Gateway"));
    assert_eq!(marketo_call(&c, &sim, &token).await, (200, None));

    sim.enqueue("/identity/oauth/token", Reply::status(500));
    let url = sim.url("/identity/oauth/token?grant_type=client_credentials&client_id=id&client_secret=secret");
    assert_eq!(call(Method::GET, url).send(&c).await.status, 500);

    // The vendor saw neither injected request; the sim's log has all of them.
    assert_eq!(mkto.api_calls().len(), 1);
    assert_eq!(mkto.logins(), 1);
    assert_eq!(sim.count(LEADS), 2);
    assert_eq!(sim.count("/identity/oauth/token"), 2);
    assert_eq!(sim.requests().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Responsys

const RSYS_LOGIN: &str = "/rest/api/v1.3/auth/token";
const RSYS_LISTS: &str = "/rest/api/v1.3/lists";
const RSYS_AFTM: &str = "/rest/haApi/v1.3/campaigns/welcome/email";

async fn responsys_login(c: &TestClient, sim: &Sim, password: &str) -> Answer {
    call(Method::POST, sim.url(RSYS_LOGIN))
        .form(&format!("user_name=user&password={password}&auth_type=password"))
        .send(c)
        .await
}

async fn responsys_token(c: &TestClient, sim: &Sim) -> String {
    let answer = responsys_login(c, sim, "pass").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["authToken"].as_str().unwrap().to_owned()
}

/// A Responsys API call with a raw token: (status, errorCode if any).
async fn responsys_call(c: &TestClient, method: Method, url: String, token: Option<&str>) -> (u16, Option<String>) {
    let mut request = call(method, url);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let answer = request.send(c).await;
    let code = answer.json()["errorCode"].as_str().map(str::to_owned);
    (answer.status, code)
}

#[tokio::test(start_paused = true)]
async fn responsys_login_success_and_failure_modes() {
    let sim = Sim::start().await.unwrap();
    let rsys = responsys::install(&sim, ResponsysConfig::new("user", "pass"));
    let c = client();

    sleep(Duration::from_millis(1500)).await;
    let ok = responsys_login(&c, &sim, "pass").await;
    assert_eq!(ok.status, 200);
    let body = ok.json();
    assert!(body["authToken"].is_string());
    assert_eq!(body["issuedAt"], EPOCH_BASE_MS + 1500);
    assert_eq!(body["endPoint"], sim.url(""));

    let bad = responsys_login(&c, &sim, "wrong").await;
    assert_eq!(bad.status, 401);
    let body = bad.json();
    assert_eq!(body["errorCode"], "INVALID_USER_NAME_PASSWORD");
    assert_eq!(body["title"], "Invalid user name or password");
    assert_eq!((&body["type"], &body["errorDetails"]), (&json!(""), &json!([])));

    rsys.set_login_error(Some("ACCOUNT_SUSPENDED"));
    let suspended = responsys_login(&c, &sim, "pass").await;
    assert_eq!((suspended.status, suspended.json()["errorCode"].as_str()), (401, Some("ACCOUNT_SUSPENDED")));
    rsys.set_login_error(None);

    rsys.fail_logins(1);
    assert_eq!(responsys_login(&c, &sim, "pass").await.status, 503);
    rsys.hang_logins(true);
    assert!(timeout(Duration::from_secs(30), responsys_login(&c, &sim, "pass")).await.is_err());
    rsys.hang_logins(false);
    let token = responsys_token(&c, &sim).await;

    // Refresh: `auth_type=token` with a valid token gives a new one.
    let refreshed =
        call(Method::POST, sim.url(RSYS_LOGIN)).header("authorization", &token).form("auth_type=token").send(&c).await;
    assert_eq!(refreshed.status, 200);
    assert_ne!(refreshed.json()["authToken"], token.as_str());

    assert_eq!(rsys.logins(), 7);
    assert_eq!(rsys.login_times().len(), 7);
}

#[tokio::test(start_paused = true)]
async fn responsys_invalid_token_when_missing_bearer_or_expired() {
    let sim = Sim::start().await.unwrap();
    let rsys = responsys::install(&sim, ResponsysConfig::new("user", "pass"));
    let c = client();
    let token = responsys_token(&c, &sim).await;

    let lists = call(Method::GET, sim.url(RSYS_LISTS)).header("authorization", &token).send(&c).await;
    assert_eq!(lists.status, 200);
    assert!(lists.json()["lists"].is_array());
    let record = responsys_call(&c, Method::POST, sim.url("/rest/api/v1.3/lists/L/members"), Some(&token)).await;
    assert_eq!(record, (200, None));

    let invalid = Some("INVALID_TOKEN".to_owned());
    assert_eq!(responsys_call(&c, Method::GET, sim.url(RSYS_LISTS), None).await, (401, invalid.clone()));
    let bearer = format!("Bearer {token}");
    assert_eq!(responsys_call(&c, Method::GET, sim.url(RSYS_LISTS), Some(&bearer)).await, (401, invalid.clone()));

    sleep(Duration::from_secs(2 * 3600)).await;
    let expired = call(Method::GET, sim.url(RSYS_LISTS)).header("authorization", &token).send(&c).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json()["errorCode"], "TOKEN_EXPIRED");

    let fresh = responsys_token(&c, &sim).await;
    assert_eq!(responsys_call(&c, Method::GET, sim.url(RSYS_LISTS), Some(&fresh)).await, (200, None));

    use TokenState::*;
    let calls = rsys.api_calls();
    assert_eq!(token_states(&calls), [Valid, Valid, Missing, Unknown, Expired, Valid]);
    assert_eq!(calls[4].path, RSYS_LISTS);
    assert_eq!(codes(&calls)[4], Some("TOKEN_EXPIRED"));
}

#[tokio::test(start_paused = true)]
async fn responsys_failover_allows_only_aftm_until_back_to_primary() {
    let sim = Sim::start().await.unwrap();
    let rsys = responsys::install(&sim, ResponsysConfig::new("user", "pass"));
    let c = client();
    let token = responsys_token(&c, &sim).await;
    let lists = || responsys_call(&c, Method::GET, sim.url(RSYS_LISTS), Some(&token));
    let aftm = |path: &'static str| responsys_call(&c, Method::POST, sim.url(path), Some(&token));

    assert_eq!(lists().await, (200, None));
    rsys.set_secondary(true);
    assert!(rsys.is_secondary());
    let refused = call(Method::GET, sim.url(RSYS_LISTS)).header("authorization", &token).send(&c).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["errorCode"], "API_NOT_ALLOWED_IN_SECONDARY");
    assert_eq!(aftm(RSYS_AFTM).await, (200, None));
    assert_eq!(aftm("/rest/haAsyncApi/v1.3/campaigns/welcome/email").await, (200, None));
    // A token obtained before failover stays valid; logins keep working.
    let during = responsys_token(&c, &sim).await;
    assert_eq!(responsys_call(&c, Method::POST, sim.url(RSYS_AFTM), Some(&during)).await, (200, None));

    rsys.set_secondary(false);
    assert!(!rsys.is_secondary());
    assert_eq!(lists().await, (200, None));
    let calls = rsys.api_calls();
    assert_eq!(codes(&calls), [None, Some("API_NOT_ALLOWED_IN_SECONDARY"), None, None, None, None]);
}

#[tokio::test(start_paused = true)]
async fn responsys_fail_next_answers_500_with_the_code() {
    let sim = Sim::start().await.unwrap();
    let rsys = responsys::install(&sim, ResponsysConfig::new("user", "pass"));
    let c = client();
    let token = responsys_token(&c, &sim).await;
    rsys.fail_next(2, "UNRECOVERABLE_EXCEPTION");

    // A call refused for its token does not use up a scripted failure.
    let none = responsys_call(&c, Method::POST, sim.url(RSYS_AFTM), None).await;
    assert_eq!(none.1.as_deref(), Some("INVALID_TOKEN"));
    for _ in 0..2 {
        let failed = call(Method::POST, sim.url(RSYS_AFTM)).header("authorization", &token).send(&c).await;
        assert_eq!(failed.status, 500);
        assert_eq!(failed.json()["errorCode"], "UNRECOVERABLE_EXCEPTION");
        assert_eq!(failed.json()["title"], "Unrecoverable exception");
    }
    assert_eq!(responsys_call(&c, Method::POST, sim.url(RSYS_AFTM), Some(&token)).await, (200, None));

    rsys.fail_next_with(1, 400, "API_LIMIT_EXCEEDED");
    let limited = responsys_call(&c, Method::POST, sim.url(RSYS_AFTM), Some(&token)).await;
    assert_eq!(limited, (400, Some("API_LIMIT_EXCEEDED".into())));
}

// ---------------------------------------------------------------------------------------------
// Adobe

const IMS: &str = "/ims/token/v3";
const INTERACT: &str = "/ee/v2/interact";

async fn ims_login(c: &TestClient, sim: &Sim, client_id: &str, secret: &str) -> Answer {
    let form = format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}&scope=openid");
    call(Method::POST, sim.url(IMS)).form(&form).send(c).await
}

async fn interact(c: &TestClient, sim: &Sim, token: Option<&str>) -> Answer {
    let mut request = call(Method::POST, sim.url(INTERACT)).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.bearer(token);
    }
    request.body = r#"{"event":{"xdm":{}}}"#.to_owned();
    request.send(c).await
}

#[tokio::test(start_paused = true)]
async fn adobe_ims_login_success_and_failures() {
    let sim = Sim::start().await.unwrap();
    let adobe = adobe::install(&sim, AdobeConfig::new("id", "secret"));
    let c = client();

    let ok = ims_login(&c, &sim, "id", "secret").await;
    assert_eq!(ok.status, 200);
    let body = ok.json();
    assert_eq!((&body["token_type"], &body["expires_in"]), (&json!("bearer"), &json!(86399)));
    let second = ims_login(&c, &sim, "id", "secret").await.json();
    assert_ne!(second["access_token"], body["access_token"]);

    let bad_id = ims_login(&c, &sim, "nope", "secret").await;
    assert_eq!(bad_id.status, 401);
    assert_eq!(bad_id.json(), json!({"error": "invalid_client", "error_description": "invalid client_id parameter"}));
    let bad_secret = ims_login(&c, &sim, "id", "nope").await;
    assert_eq!(bad_secret.status, 401);
    assert_eq!(bad_secret.json()["error"], "invalid_client");

    adobe.fail_logins(1);
    assert_eq!(ims_login(&c, &sim, "id", "secret").await.status, 503);
    assert_eq!(ims_login(&c, &sim, "id", "secret").await.status, 200);
    assert_eq!(adobe.logins(), 6);
    assert_eq!(adobe.login_times().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn adobe_edge_rejects_missing_then_expired_tokens_with_problems() {
    let sim = Sim::start().await.unwrap();
    let adobe = adobe::install(&sim, AdobeConfig::new("id", "secret"));
    let c = client();
    let token = ims_login(&c, &sim, "id", "secret").await.json()["access_token"].as_str().unwrap().to_owned();

    let missing = interact(&c, &sim, None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.content_type(), "application/problem+json");
    assert_eq!(missing.json()["type"], "https://ns.adobe.com/aep/errors/EXEG-0500-401");

    let ok = interact(&c, &sim, Some(&token)).await;
    assert_eq!(ok.status, 200);
    assert!(ok.json()["requestId"].is_string());
    assert_eq!(ok.json()["handle"], json!([]));

    sleep(Duration::from_secs(86_399)).await;
    let expired = interact(&c, &sim, Some(&token)).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.content_type(), "application/problem+json");
    let problem = expired.json();
    assert_eq!(problem["type"], "https://ns.adobe.com/aep/errors/EXEG-0503-401");
    assert_eq!((&problem["status"], &problem["title"]), (&json!(401), &json!("Token expired")));
    assert!(problem["detail"].is_string());

    let calls = adobe.api_calls();
    assert_eq!(codes(&calls), [Some("EXEG-0500-401"), None, Some("EXEG-0503-401")]);
    assert_eq!(calls[2].token_state, TokenState::Expired);
}

#[tokio::test(start_paused = true)]
async fn adobe_edge_throttles_with_retry_after() {
    let sim = Sim::start().await.unwrap();
    let adobe = adobe::install(&sim, AdobeConfig::new("id", "secret"));
    let c = client();
    let token = ims_login(&c, &sim, "id", "secret").await.json()["access_token"].as_str().unwrap().to_owned();

    adobe.throttle_next(1, Some(7));
    let throttled = interact(&c, &sim, Some(&token)).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.headers["retry-after"], "7");
    assert_eq!(throttled.content_type(), "application/problem+json");
    assert_eq!(throttled.json()["type"], "https://ns.adobe.com/aep/errors/EXEG-0000-429");
    assert_eq!(interact(&c, &sim, Some(&token)).await.status, 200);

    adobe.throttle_next(1, None);
    let bare = interact(&c, &sim, Some(&token)).await;
    assert_eq!(bare.status, 429);
    assert!(bare.headers.get("retry-after").is_none());
    assert_eq!(codes(&adobe.api_calls()), [Some("EXEG-0000-429"), None, Some("EXEG-0000-429")]);
}

// ---------------------------------------------------------------------------------------------
// Genesys

const ENGAGE: &str = "/engage/services/CampaignService";

fn soap(operation: &str, arguments: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:eng="urn:engage"><soapenv:Header/><soapenv:Body><eng:{operation}>{arguments}</eng:{operation}></soapenv:Body></soapenv:Envelope>"#
    )
}

fn sub_campaign(external_id: &str) -> String {
    format!("<eng:campaign>Spring</eng:campaign><eng:externalId>{external_id}</eng:externalId>")
}

async fn engage(c: &TestClient, sim: &Sim, operation: &str, arguments: &str) -> Answer {
    call(Method::POST, sim.url(ENGAGE)).header("soapaction", "\"\"").xml(soap(operation, arguments)).send(c).await
}

/// The `<code>` of a SOAP fault.
fn fault_code(answer: &Answer) -> Option<&str> {
    let start = answer.body.find("<code>")? + "<code>".len();
    let end = start + answer.body[start..].find("</code>")?;
    Some(&answer.body[start..end])
}

fn triple(campaign: &str, external_id: &str, state: &str) -> (String, String, String) {
    (campaign.to_owned(), external_id.to_owned(), state.to_owned())
}

#[tokio::test(start_paused = true)]
async fn genesys_create_show_and_change_sub_campaigns() {
    let sim = Sim::start().await.unwrap();
    let engage_handle = genesys::install(&sim, GenesysConfig::default());
    let c = client();

    let created = engage(&c, &sim, "createSubCampaign", &sub_campaign("X-1")).await;
    assert_eq!(created.status, 200);
    assert_eq!(created.content_type(), "text/xml; charset=utf-8");
    assert!(created.body.contains("<createSubCampaignResponse><internalId>"), "{}", created.body);

    let again = engage(&c, &sim, "createSubCampaign", &sub_campaign("X-1")).await;
    assert_eq!(again.status, 500);
    assert_eq!(fault_code(&again), Some("OBJECT_EXISTS"));
    assert!(again.body.contains("<soap:Fault><faultcode>soap:Client</faultcode><faultstring>OBJECT_EXISTS"));

    let shown = engage(&c, &sim, "showSubCampaignState", &sub_campaign("X-1")).await;
    assert_eq!(shown.status, 200);
    assert!(shown.body.contains("<state>RUNNING</state>"), "{}", shown.body);
    let unknown = engage(&c, &sim, "showSubCampaignState", &sub_campaign("X-2")).await;
    assert_eq!((unknown.status, fault_code(&unknown)), (500, Some("OBJECT_NOT_EXISTS")));

    // Stop it; then the same external id can be created again.
    let changed = engage(&c, &sim, "changeSubCampaignState", &sub_campaign("X-1")).await;
    assert_eq!(changed.status, 200);
    assert_eq!(engage_handle.sub_campaigns(), [triple("Spring", "X-1", "STOPPED")]);
    let resubmitted = engage(&c, &sim, "createSubCampaign", &sub_campaign("X-1")).await;
    assert_eq!(resubmitted.status, 200);
    assert_eq!(engage_handle.sub_campaigns(), [triple("Spring", "X-1", "RUNNING")]);

    let no_id = engage(&c, &sim, "createSubCampaign", "<eng:campaign>Spring</eng:campaign>").await;
    assert_eq!(fault_code(&no_id), Some("ARG_NULL"));
    assert_eq!(engage_handle.count_creates(), 4);
}

#[tokio::test(start_paused = true)]
async fn genesys_create_that_times_out_after_effect_is_found_by_show() {
    let sim = Sim::start().await.unwrap();
    let engage_handle = genesys::install(&sim, GenesysConfig::default());
    let c = client();
    engage_handle.timeout_after_effect(1);

    let attempt = timeout(Duration::from_secs(30), engage(&c, &sim, "createSubCampaign", &sub_campaign("X-1"))).await;
    assert!(attempt.is_err(), "the create must never answer");
    assert_eq!(engage_handle.sub_campaigns(), [triple("Spring", "X-1", "RUNNING")]);

    // Reconciliation: show finds it, so the create took effect and is not resubmitted.
    let shown = engage(&c, &sim, "showSubCampaignState", &sub_campaign("X-1")).await;
    assert!(shown.body.contains("<state>RUNNING</state>"), "{}", shown.body);
    assert_eq!(engage_handle.count_creates(), 1);
    // Had it been resubmitted, it would have been refused.
    let again = engage(&c, &sim, "createSubCampaign", &sub_campaign("X-1")).await;
    assert_eq!(fault_code(&again), Some("OBJECT_EXISTS"));
}

#[tokio::test(start_paused = true)]
async fn genesys_internal_errors_before_and_after_effect() {
    let sim = Sim::start().await.unwrap();
    let engage_handle = genesys::install(&sim, GenesysConfig::default());
    let c = client();

    engage_handle.internal_error_before_effect(1);
    let before = engage(&c, &sim, "createSubCampaign", &sub_campaign("A")).await;
    assert_eq!((before.status, fault_code(&before)), (500, Some("INTERNAL_ERROR")));
    assert!(before.body.contains("<faultcode>soap:Server</faultcode><faultstring>INTERNAL_ERROR</faultstring>"));
    let shown = engage(&c, &sim, "showSubCampaignState", &sub_campaign("A")).await;
    assert_eq!(fault_code(&shown), Some("OBJECT_NOT_EXISTS"));

    engage_handle.internal_error_after_effect(1);
    let after = engage(&c, &sim, "createSubCampaign", &sub_campaign("B")).await;
    assert_eq!((after.status, fault_code(&after)), (500, Some("INTERNAL_ERROR")));
    let shown = engage(&c, &sim, "showSubCampaignState", &sub_campaign("B")).await;
    assert!(shown.body.contains("<state>RUNNING</state>"));

    // Found but failed: the state a user's compensation would stop.
    assert!(engage_handle.set_state("Spring", "B", "FAILED"));
    let failed = engage(&c, &sim, "showSubCampaignState", &sub_campaign("B")).await;
    assert!(failed.body.contains("<state>FAILED</state>"));

    engage_handle.fail_next(1, "NO_SESSION");
    let no_session = engage(&c, &sim, "showSubCampaignState", &sub_campaign("B")).await;
    assert_eq!(fault_code(&no_session), Some("NO_SESSION"));
    assert_eq!(engage_handle.sub_campaigns(), [triple("Spring", "B", "FAILED")]);
    assert_eq!(engage_handle.count_creates(), 2);
}

/// The Errors page: "the implementation will attempt to validate all arguments … and return a
/// set of errors", and for `ARG_*` errors "the argumentIndex will indicate which argument is in
/// error". A create missing both arguments is answered with one error per argument.
#[tokio::test(start_paused = true)]
async fn genesys_missing_arguments_are_a_set_of_errors_each_with_its_argument_index() {
    let sim = Sim::start().await.unwrap();
    let engage_handle = genesys::install(&sim, GenesysConfig::default());
    let c = client();

    let neither = engage(&c, &sim, "createSubCampaign", "").await;
    assert_eq!(neither.status, 500);
    let errors: Vec<&str> = neither.body.split("<error>").skip(1).collect();
    assert_eq!(errors.len(), 2, "{}", neither.body);
    assert!(errors[0].starts_with("<code>ARG_NULL</code>") && errors[0].contains("<argumentIndex>0</argumentIndex>"));
    assert!(errors[1].starts_with("<code>ARG_NULL</code>") && errors[1].contains("<argumentIndex>1</argumentIndex>"));

    let no_id = engage(&c, &sim, "showSubCampaignState", "<eng:campaign>Spring</eng:campaign>").await;
    assert_eq!(no_id.body.matches("<error>").count(), 1, "{}", no_id.body);
    assert!(no_id.body.contains("<code>ARG_NULL</code><message>Argument 'externalId' must be non-null</message><argumentIndex>1</argumentIndex>"), "{}", no_id.body);
    assert!(engage_handle.sub_campaigns().is_empty());
}
