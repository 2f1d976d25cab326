//! A fake Adobe IMS plus Experience Platform Edge Network server API.
//!
//! - IMS, `POST /ims/token/v3`, `grant_type=client_credentials`, `client_id`, `client_secret` and
//!   `scope` in an `application/x-www-form-urlencoded` body (or the query string) → `200
//!   {"access_token","token_type":"bearer","expires_in"}`; every login mints a new token. A wrong
//!   `client_id` → `401 {"error":"invalid_client","error_description":"invalid client_id
//!   parameter"}`, a wrong secret → the same with `invalid client_secret parameter`, another
//!   grant type → `400 unsupported_grant_type`.
//! - Edge, everything under `/ee/v2` (`/ee/v2/interact`, `/ee/v2/collect`), checked in order:
//!   1. `Authorization: Bearer`: missing or unknown → `401 application/problem+json`
//!      `EXEG-0500-401`, expired → `EXEG-0503-401` "Token expired";
//!   2. a throttle scripted with [`AdobeHandle::throttle_next`] → `429` problem `EXEG-0000-429`
//!      (the sim's choice: Adobe documents no EXEG code for 429) with `Retry-After` in seconds;
//!   3. success: `200 {"requestId","handle":[]}`.
//!
//! Problems carry `type` (`https://ns.adobe.com/aep/errors/EXEG-…`), `status`, `title`,
//! `detail` and `report{requestId}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use serde_json::json;
use tokio::time::Instant;

use super::{bearer, form_params, json_reply, lock, mount, param, query_params, take_one, ApiCall, TokenState, Tokens};
use crate::{Recorded, Reply, Sim};

/// Path of the IMS token endpoint.
pub const IMS_TOKEN_PATH: &str = "/ims/token/v3";

/// Path of the Edge interact endpoint (everything under `/ee/v2` is served the same way).
pub const INTERACT_PATH: &str = "/ee/v2/interact";

/// How the fake IMS and Edge behave. `AdobeConfig::default()` accepts `sim-client-id` /
/// `sim-client-secret` and issues tokens for 86399 s.
#[derive(Debug, Clone)]
pub struct AdobeConfig {
    /// The only accepted `client_id`.
    pub client_id: String,
    /// The only accepted `client_secret`.
    pub client_secret: String,
    /// Lifetime of a token from its login (default 86399 s).
    pub token_lifetime: Duration,
}

impl Default for AdobeConfig {
    fn default() -> AdobeConfig {
        AdobeConfig {
            client_id: "sim-client-id".to_owned(),
            client_secret: "sim-client-secret".to_owned(),
            token_lifetime: Duration::from_secs(86_399),
        }
    }
}

impl AdobeConfig {
    /// The defaults with these credentials.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> AdobeConfig {
        AdobeConfig { client_id: client_id.into(), client_secret: client_secret.into(), ..AdobeConfig::default() }
    }
}

/// Controls and observes the fake IMS and Edge mounted with [`install`]. Cheap to clone; all
/// clones share the same state.
#[derive(Clone)]
pub struct AdobeHandle {
    inner: Arc<Inner>,
}

struct Inner {
    config: AdobeConfig,
    state: Mutex<State>,
}

struct State {
    tokens: Tokens,
    fail_logins: u32,
    throttle_next: u32,
    retry_after: Option<u64>,
    login_times: Vec<Instant>,
    calls: Vec<ApiCall>,
    request_ids: u64,
}

/// Mounts fake IMS and Edge on `sim`: IMS at [`IMS_TOKEN_PATH`], Edge under `/ee/v2`.
pub fn install(sim: &Sim, config: AdobeConfig) -> AdobeHandle {
    let state = State {
        tokens: Tokens::new("ims"),
        fail_logins: 0,
        throttle_next: 0,
        retry_after: None,
        login_times: Vec::new(),
        calls: Vec::new(),
        request_ids: 0,
    };
    let handle = AdobeHandle { inner: Arc::new(Inner { config, state: Mutex::new(state) }) };
    mount(sim, IMS_TOKEN_PATH, &handle, AdobeHandle::login);
    mount(sim, "/ee/v2", &handle, AdobeHandle::edge);
    handle
}

impl AdobeHandle {
    /// Number of IMS token requests received (whatever they were answered).
    pub fn logins(&self) -> usize {
        self.state().login_times.len()
    }

    /// When each IMS token request arrived, in order.
    pub fn login_times(&self) -> Vec<Instant> {
        self.state().login_times.clone()
    }

    /// Every Edge call received, in order; `outcome_code` is the EXEG code answered
    /// (`"EXEG-0503-401"`…).
    pub fn api_calls(&self) -> Vec<ApiCall> {
        self.state().calls.clone()
    }

    /// The next `n` IMS token requests answer `503` with an empty body (replaces any count left).
    pub fn fail_logins(&self, n: u32) {
        self.state().fail_logins = n;
    }

    /// The next `n` Edge calls with a valid token answer `429` (`EXEG-0000-429`), with
    /// `Retry-After: <secs>` when `retry_after` is `Some`.
    pub fn throttle_next(&self, n: u32, retry_after: Option<u64>) {
        let mut state = self.state();
        state.throttle_next = n;
        state.retry_after = retry_after;
    }

    /// Expires every token issued so far, now: Edge answers `EXEG-0503-401` to them.
    pub fn expire_tokens(&self) {
        self.state().tokens.expire_all(Instant::now());
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    async fn login(self, req: Recorded) -> Reply {
        let config = &self.inner.config;
        let mut state = self.state();
        state.login_times.push(req.at);
        if req.method != Method::POST {
            return Reply::status(405);
        }
        if take_one(&mut state.fail_logins) {
            return Reply::status(503);
        }
        let mut params = query_params(&req);
        params.extend(form_params(&req));
        let invalid = |what: &str| {
            let body = json!({"error": "invalid_client", "error_description": format!("invalid {what} parameter")});
            json_reply(401, &body)
        };
        if param(&params, "grant_type") != Some("client_credentials") {
            let body = json!({"error": "unsupported_grant_type", "error_description": "invalid grant_type parameter"});
            return json_reply(400, &body);
        }
        if param(&params, "client_id") != Some(config.client_id.as_str()) {
            return invalid("client_id");
        }
        if param(&params, "client_secret") != Some(config.client_secret.as_str()) {
            return invalid("client_secret");
        }
        let token = state.tokens.mint(Instant::now(), config.token_lifetime);
        let body = json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": config.token_lifetime.as_secs(),
        });
        json_reply(200, &body)
    }

    async fn edge(self, req: Recorded) -> Reply {
        let token = bearer(&req);
        let mut state = self.state();
        state.request_ids += 1;
        let request_id = format!("00000000-0000-4000-8000-{:012x}", state.request_ids);
        let token_state = state.tokens.state(token.as_deref(), Instant::now());
        let failure = match token_state {
            TokenState::Missing | TokenState::Unknown => {
                Some((401, "EXEG-0500-401", "Invalid token", "The access token is missing or invalid."))
            }
            TokenState::Expired => Some((401, "EXEG-0503-401", "Token expired", "The access token has expired.")),
            TokenState::Valid if take_one(&mut state.throttle_next) => {
                Some((429, "EXEG-0000-429", "Too many requests", "The request rate is too high. Retry later."))
            }
            TokenState::Valid => None,
        };
        state.calls.push(ApiCall {
            at: req.at,
            method: req.method.clone(),
            path: req.path.clone(),
            token,
            token_state,
            status: failure.map_or(200, |f| f.0),
            outcome_code: failure.map(|f| f.1.to_owned()),
        });
        let Some((status, code, title, detail)) = failure else {
            return json_reply(200, &json!({"requestId": request_id, "handle": []}));
        };
        let body = json!({
            "type": format!("https://ns.adobe.com/aep/errors/{code}"),
            "status": status,
            "title": title,
            "detail": detail,
            "report": {"requestId": request_id},
        });
        let reply = Reply::status(status).header("content-type", "application/problem+json").body(body.to_string());
        match state.retry_after {
            Some(secs) if status == 429 => reply.header("retry-after", &secs.to_string()),
            _ => reply,
        }
    }
}

impl std::fmt::Debug for AdobeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("AdobeHandle")
            .field("config", &self.inner.config)
            .field("logins", &state.login_times.len())
            .field("api_calls", &state.calls.len())
            .finish_non_exhaustive()
    }
}
