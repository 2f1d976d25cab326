//! A fake Marketo Engage REST instance: Identity, Bearer tokens, and the instance's limits.
//!
//! - Identity, `GET|POST /identity/oauth/token`: `grant_type=client_credentials`, `client_id`
//!   and `client_secret` from the query string or an `application/x-www-form-urlencoded` body →
//!   `200 {"access_token","token_type":"bearer","expires_in","scope"}`. Like the real Identity
//!   (with [`MarketoConfig::same_token_until_expiry`]), it hands out the same token until it
//!   expires, with its *remaining* lifetime in whole seconds. Wrong credentials → `401
//!   {"error":"invalid_client","error_description":"Bad client credentials"}`; a `grant_type`
//!   other than `client_credentials` → `400 unsupported_grant_type`.
//! - API, everything under `/rest` and `/bulk`, answered with HTTP 200 and a Marketo envelope
//!   unless said otherwise, checked in this order:
//!   1. a GET whose path and query exceed [`MAX_GET_URI`] bytes → `414`, empty body (the front
//!      end answers before anything is checked);
//!   2. the token, from `Authorization: Bearer` or the `access_token` query parameter: missing or
//!      unknown → `601 Access token invalid`, expired → `602 Access token expired`;
//!   3. the rate window ([`MarketoConfig::rate_limit`]): a call beyond it → `606 Max rate limit
//!      '100' exceeded with in '20' secs`. Calls refused with 601 or 602 do not count toward
//!      the window; every other call does, 606 and 615 included (the docs exempt only the
//!      asterisked codes, and 606 is not one: a client that retries too soon keeps the window
//!      full);
//!   4. concurrency ([`MarketoConfig::max_concurrency`]): with that many calls already being
//!      processed → `615 Concurrent access limit reached`;
//!   5. otherwise the call is in flight for [`MarketoConfig::latency`], then succeeds:
//!      `{"requestId","success":true,"result":[…]}`. A GET, or a POST with `_method=GET` in its
//!      query (Marketo's answer to 414), echoes its parameters (query minus `access_token` and
//!      `_method`, plus the form body) as `"result":[{name: value, …}]` (a repeated name gives an
//!      array); any other call answers `"result":[{"id":1,"status":"updated"}]`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::{
    bearer, form_params, json_reply, lock, mount, param, query_params, take_one, ApiCall, SlidingWindow, TokenState,
    Tokens,
};
use crate::{Recorded, Reply, Sim};

/// Path of the Identity token endpoint.
pub const IDENTITY_PATH: &str = "/identity/oauth/token";

/// A GET whose path and query (with its `?`) are longer than this many bytes is answered 414.
pub const MAX_GET_URI: usize = 8 * 1024;

/// How the fake Marketo instance behaves. `MarketoConfig::default()` is the real instance's
/// defaults with the credentials `sim-client-id` / `sim-client-secret`.
#[derive(Debug, Clone)]
pub struct MarketoConfig {
    /// The only accepted `client_id`.
    pub client_id: String,
    /// The only accepted `client_secret`.
    pub client_secret: String,
    /// Lifetime of an access token from the moment it is minted (default 3600 s).
    pub token_lifetime: Duration,
    /// At most this many calls per sliding window of this length (default 100 per 20 s);
    /// `None`: unlimited.
    pub rate_limit: Option<(u32, Duration)>,
    /// At most this many API calls processed at once (default 10); `None`: unlimited.
    pub max_concurrency: Option<u32>,
    /// How long a successful API call is processed, in flight, before it answers (default
    /// 50 ms), so that concurrent calls overlap.
    pub latency: Duration,
    /// `true` (default, the real behaviour): Identity returns the current token with its
    /// remaining lifetime until it expires. `false`: every login mints a new token (earlier ones
    /// stay valid until their own expiry).
    pub same_token_until_expiry: bool,
}

impl Default for MarketoConfig {
    fn default() -> MarketoConfig {
        MarketoConfig {
            client_id: "sim-client-id".to_owned(),
            client_secret: "sim-client-secret".to_owned(),
            token_lifetime: Duration::from_secs(3600),
            rate_limit: Some((100, Duration::from_secs(20))),
            max_concurrency: Some(10),
            latency: Duration::from_millis(50),
            same_token_until_expiry: true,
        }
    }
}

impl MarketoConfig {
    /// The defaults with these credentials.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> MarketoConfig {
        MarketoConfig { client_id: client_id.into(), client_secret: client_secret.into(), ..MarketoConfig::default() }
    }
}

/// Controls and observes a fake Marketo instance mounted with [`install`]. Cheap to clone; all
/// clones share the instance.
#[derive(Clone)]
pub struct MarketoHandle {
    inner: Arc<Inner>,
}

struct Inner {
    config: MarketoConfig,
    state: Mutex<State>,
}

struct State {
    tokens: Tokens,
    window: Option<SlidingWindow>,
    in_flight: u32,
    max_in_flight: u32,
    fail_logins: u32,
    hang_logins: bool,
    login_fatal: bool,
    login_times: Vec<Instant>,
    calls: Vec<ApiCall>,
    request_ids: u64,
}

/// Mounts a fake Marketo instance on `sim`: Identity at [`IDENTITY_PATH`], the API under `/rest`
/// and `/bulk`.
pub fn install(sim: &Sim, config: MarketoConfig) -> MarketoHandle {
    let state = State {
        tokens: Tokens::new("mkto"),
        window: config.rate_limit.map(|(limit, window)| SlidingWindow::new(limit, window)),
        in_flight: 0,
        max_in_flight: 0,
        fail_logins: 0,
        hang_logins: false,
        login_fatal: false,
        login_times: Vec::new(),
        calls: Vec::new(),
        request_ids: 0,
    };
    let handle = MarketoHandle { inner: Arc::new(Inner { config, state: Mutex::new(state) }) };
    mount(sim, IDENTITY_PATH, &handle, MarketoHandle::identity);
    mount(sim, "/rest", &handle, MarketoHandle::api);
    mount(sim, "/bulk", &handle, MarketoHandle::api);
    handle
}

impl MarketoHandle {
    /// Number of requests Identity received (whatever it answered, hung ones included).
    pub fn logins(&self) -> usize {
        self.state().login_times.len()
    }

    /// When each Identity request arrived, in order.
    pub fn login_times(&self) -> Vec<Instant> {
        self.state().login_times.clone()
    }

    /// Every API call the instance received, in order (414s included).
    pub fn api_calls(&self) -> Vec<ApiCall> {
        self.state().calls.clone()
    }

    /// Number of API calls answered with this Marketo error code (`"601"`, `"602"`, `"606"`,
    /// `"615"`).
    pub fn count_code(&self, code: &str) -> usize {
        let state = self.state();
        state.calls.iter().filter(|c| c.outcome_code.as_deref() == Some(code)).count()
    }

    /// The most API calls ever processed at the same time.
    pub fn max_in_flight(&self) -> u32 {
        self.state().max_in_flight
    }

    /// API calls being processed right now.
    pub fn in_flight(&self) -> u32 {
        self.state().in_flight
    }

    /// The next `n` Identity requests answer `503` with an empty body (replaces any count left).
    pub fn fail_logins(&self, n: u32) {
        self.state().fail_logins = n;
    }

    /// While `true`, Identity requests are never answered (until the client gives up).
    pub fn hang_logins(&self, hang: bool) {
        self.state().hang_logins = hang;
    }

    /// While `true`, Identity answers `401 invalid_client` whatever the credentials.
    pub fn set_login_fatal(&self, fatal: bool) {
        self.state().login_fatal = fatal;
    }

    /// Expires every token issued so far, now: API calls carrying one get 602, and the next login
    /// mints a new token.
    pub fn expire_tokens(&self) {
        self.state().tokens.expire_all(Instant::now());
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    async fn identity(self, req: Recorded) -> Reply {
        let reply = {
            let mut state = self.state();
            state.login_times.push(req.at);
            (!state.hang_logins).then(|| self.login(&mut state, &req))
        };
        match reply {
            Some(reply) => reply,
            None => std::future::pending().await,
        }
    }

    fn login(&self, state: &mut State, req: &Recorded) -> Reply {
        let config = &self.inner.config;
        if req.method != Method::GET && req.method != Method::POST {
            return Reply::status(405);
        }
        if take_one(&mut state.fail_logins) {
            return Reply::status(503);
        }
        let mut params = query_params(req);
        params.extend(form_params(req));
        let grant_type = param(&params, "grant_type");
        if grant_type.is_some_and(|g| g != "client_credentials") {
            let body = json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant type"});
            return json_reply(400, &body);
        }
        let credentials_ok = param(&params, "client_id") == Some(config.client_id.as_str())
            && param(&params, "client_secret") == Some(config.client_secret.as_str());
        if state.login_fatal || !credentials_ok || grant_type.is_none() {
            let body = json!({"error": "invalid_client", "error_description": "Bad client credentials"});
            return json_reply(401, &body);
        }
        let now = Instant::now();
        let current = config.same_token_until_expiry.then(|| state.tokens.current(now)).flatten();
        let (token, expiry) = current.unwrap_or_else(|| {
            let token = state.tokens.mint(now, config.token_lifetime);
            (token, now + config.token_lifetime)
        });
        let body = json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expiry.duration_since(now).as_secs(),
            "scope": "sim-api-user@example.com",
        });
        json_reply(200, &body)
    }

    async fn api(self, req: Recorded) -> Reply {
        let query = query_params(&req);
        let token = bearer(&req).or_else(|| param(&query, "access_token").map(str::to_owned));
        let method_get = req.method == Method::POST && param(&query, "_method") == Some("GET");
        let get_like = req.method == Method::GET || method_get;
        let uri_len = req.path.len() + req.query.as_ref().map_or(0, |q| q.len() + 1);

        let (request_id, verdict) = {
            let mut state = self.state();
            let now = Instant::now();
            let token_state = state.tokens.state(token.as_deref(), now);
            let verdict = if req.method == Method::GET && uri_len > MAX_GET_URI {
                Verdict::UriTooLong
            } else {
                self.admit(&mut state, token_state, now)
            };
            let (status, outcome_code) = match &verdict {
                Verdict::UriTooLong => (414, None),
                Verdict::Refused(code) => (200, Some((*code).to_owned())),
                Verdict::Admitted(_) => (200, None),
            };
            state.calls.push(ApiCall {
                at: req.at,
                method: req.method.clone(),
                path: req.path.clone(),
                token,
                token_state,
                status,
                outcome_code,
            });
            state.request_ids += 1;
            (format!("sim#{:011x}", state.request_ids), verdict)
        };

        match verdict {
            Verdict::UriTooLong => Reply::status(414),
            Verdict::Refused(code) => {
                let body = json!({
                    "requestId": request_id,
                    "success": false,
                    "errors": [{"code": code, "message": self.message(code)}],
                });
                json_reply(200, &body)
            }
            Verdict::Admitted(in_flight) => {
                tokio::time::sleep(self.inner.config.latency).await;
                drop(in_flight);
                let result = if get_like {
                    let mut params: Vec<_> =
                        query.into_iter().filter(|(name, _)| name != "access_token" && name != "_method").collect();
                    params.extend(form_params(&req));
                    Value::Object(echo(params))
                } else {
                    json!({"id": 1, "status": "updated"})
                };
                json_reply(200, &json!({"requestId": request_id, "success": true, "result": [result]}))
            }
        }
    }

    /// Checks the token, the rate window and the concurrency limit, in that order.
    fn admit(&self, state: &mut State, token_state: TokenState, now: Instant) -> Verdict {
        match token_state {
            TokenState::Missing | TokenState::Unknown => return Verdict::Refused("601"),
            TokenState::Expired => return Verdict::Refused("602"),
            TokenState::Valid => {}
        }
        if let Some(window) = &mut state.window {
            if !window.try_admit(now) {
                return Verdict::Refused("606");
            }
        }
        if self.inner.config.max_concurrency.is_some_and(|max| state.in_flight >= max) {
            return Verdict::Refused("615");
        }
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        Verdict::Admitted(InFlight(self.inner.clone()))
    }

    fn message(&self, code: &str) -> String {
        match code {
            "601" => "Access token invalid".to_owned(),
            "602" => "Access token expired".to_owned(),
            "606" => {
                let (limit, window) = self.inner.config.rate_limit.unwrap_or_default();
                format!("Max rate limit '{limit}' exceeded with in '{}' secs", window.as_secs())
            }
            "615" => "Concurrent access limit reached".to_owned(),
            other => format!("Error {other}"),
        }
    }
}

impl std::fmt::Debug for MarketoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("MarketoHandle")
            .field("config", &self.inner.config)
            .field("logins", &state.login_times.len())
            .field("api_calls", &state.calls.len())
            .field("in_flight", &state.in_flight)
            .finish_non_exhaustive()
    }
}

/// What the instance does with an API call.
enum Verdict {
    UriTooLong,
    Refused(&'static str),
    Admitted(InFlight),
}

/// One admitted call: counted in flight until dropped (answered, or abandoned by the client).
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0.state).in_flight -= 1;
    }
}

/// Parameters as a JSON object; a name given more than once maps to an array of its values.
fn echo(params: Vec<(String, String)>) -> Map<String, Value> {
    let mut object = Map::new();
    for (name, value) in params {
        match object.get_mut(&name) {
            None => {
                object.insert(name, Value::String(value));
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(first) => *first = Value::Array(vec![first.take(), Value::String(value)]),
        }
    }
    object
}
