//! A fake Oracle Responsys account: password login, raw tokens, and AFTM failover.
//!
//! - Login, `POST /rest/api/v1.3/auth/token`, form `user_name`, `password`,
//!   `auth_type=password` → `200 {"authToken","issuedAt","endPoint"}`, where `endPoint` is the
//!   sim's own URL (`http://127.0.0.1:PORT`) and `issuedAt` is milliseconds since the Unix epoch
//!   on a virtual calendar ([`EPOCH_BASE_MS`] at install, then following the tokio clock). Also
//!   `auth_type=token` with a valid token in `Authorization` (Responsys' refresh) → a new token.
//!   Every login mints a new token. Failures are `401` error envelopes
//!   `{"type":"","title","errorCode","detail","errorDetails":[]}`: `INVALID_USER_NAME_PASSWORD`,
//!   or the code set with [`ResponsysHandle::set_login_error`].
//! - API, everything under `/rest/api/v1.3` and the AFTM paths under `/rest/haApi` and
//!   `/rest/haAsyncApi`, checked in this order:
//!   1. `Authorization: <token>` (raw, no `Bearer`): missing or unknown → `401 INVALID_TOKEN`
//!      "Not a valid token"; expired → `401 TOKEN_EXPIRED` (the Oracle error table,
//!      `handlingError4`);
//!   2. in secondary ([`ResponsysHandle::set_secondary`]) a non-AFTM path → `401
//!      API_NOT_ALLOWED_IN_SECONDARY` (AFTM paths keep working);
//!   3. a failure scripted with [`ResponsysHandle::fail_next`] → `500` with that `errorCode`;
//!   4. success: a GET whose path ends in `/lists` → `{"lists":[…]}`, anything else →
//!      `{"recordData":{"fieldNames":[…],"records":[…],"mapTemplateName":null}}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use serde_json::json;
use tokio::time::Instant;

use super::{authorization, form_params, json_reply, lock, mount, param, take_one, ApiCall, TokenState, Tokens};
use crate::{Recorded, Reply, Sim};

/// Path of the login endpoint.
pub const LOGIN_PATH: &str = "/rest/api/v1.3/auth/token";

/// Path prefixes of the AFTM (Automatic Failover for Transactional Messaging) API, which keeps
/// working in secondary.
pub const AFTM_PREFIXES: [&str; 2] = ["/rest/haApi", "/rest/haAsyncApi"];

/// `issuedAt` of a login at the moment of [`install`]: 2026-01-01T00:00:00Z, in ms.
pub const EPOCH_BASE_MS: u64 = 1_767_225_600_000;

/// How the fake account behaves. `ResponsysConfig::default()` accepts `sim-user` / `sim-password`
/// and issues 2-hour tokens.
#[derive(Debug, Clone)]
pub struct ResponsysConfig {
    /// The only accepted `user_name`.
    pub user_name: String,
    /// The only accepted `password`.
    pub password: String,
    /// Lifetime of a token from its login (default 2 h).
    pub token_lifetime: Duration,
}

impl Default for ResponsysConfig {
    fn default() -> ResponsysConfig {
        ResponsysConfig {
            user_name: "sim-user".to_owned(),
            password: "sim-password".to_owned(),
            token_lifetime: Duration::from_secs(2 * 3600),
        }
    }
}

impl ResponsysConfig {
    /// The defaults with these credentials.
    pub fn new(user_name: impl Into<String>, password: impl Into<String>) -> ResponsysConfig {
        ResponsysConfig { user_name: user_name.into(), password: password.into(), ..ResponsysConfig::default() }
    }
}

/// Controls and observes a fake Responsys account mounted with [`install`]. Cheap to clone; all
/// clones share the account.
#[derive(Clone)]
pub struct ResponsysHandle {
    inner: Arc<Inner>,
}

struct Inner {
    config: ResponsysConfig,
    end_point: String,
    installed_at: Instant,
    state: Mutex<State>,
}

struct State {
    tokens: Tokens,
    secondary: bool,
    login_error: Option<String>,
    fail_logins: u32,
    hang_logins: bool,
    fail_next: u32,
    fail_with: (u16, String),
    login_times: Vec<Instant>,
    calls: Vec<ApiCall>,
}

/// Mounts a fake Responsys account on `sim`: login at [`LOGIN_PATH`], the REST API under
/// `/rest/api/v1.3`, AFTM under [`AFTM_PREFIXES`].
pub fn install(sim: &Sim, config: ResponsysConfig) -> ResponsysHandle {
    let state = State {
        tokens: Tokens::new("rsys"),
        secondary: false,
        login_error: None,
        fail_logins: 0,
        hang_logins: false,
        fail_next: 0,
        fail_with: (500, String::new()),
        login_times: Vec::new(),
        calls: Vec::new(),
    };
    let handle = ResponsysHandle {
        inner: Arc::new(Inner {
            config,
            end_point: sim.url(""),
            installed_at: Instant::now(),
            state: Mutex::new(state),
        }),
    };
    mount(sim, LOGIN_PATH, &handle, ResponsysHandle::login);
    mount(sim, "/rest/api/v1.3", &handle, ResponsysHandle::api);
    for prefix in AFTM_PREFIXES {
        mount(sim, prefix, &handle, ResponsysHandle::api);
    }
    handle
}

impl ResponsysHandle {
    /// Number of login requests received (whatever they were answered, hung ones included).
    pub fn logins(&self) -> usize {
        self.state().login_times.len()
    }

    /// When each login request arrived, in order.
    pub fn login_times(&self) -> Vec<Instant> {
        self.state().login_times.clone()
    }

    /// Every API call received, in order; `outcome_code` is the `errorCode` answered.
    pub fn api_calls(&self) -> Vec<ApiCall> {
        self.state().calls.clone()
    }

    /// Whether the account is in secondary (failover).
    pub fn is_secondary(&self) -> bool {
        self.state().secondary
    }

    /// Puts the account in secondary (`true`: non-AFTM calls get `API_NOT_ALLOWED_IN_SECONDARY`)
    /// or back to primary (`false`). Tokens stay valid either way.
    pub fn set_secondary(&self, secondary: bool) {
        self.state().secondary = secondary;
    }

    /// While `Some(code)`, every login answers `401` with that `errorCode` (for example
    /// `ACCOUNT_SUSPENDED`, `LOGIN_BLOCKED_TEMPORARILY`, `PASSWORD_EXPIRED`).
    pub fn set_login_error(&self, code: Option<&str>) {
        self.state().login_error = code.map(str::to_owned);
    }

    /// The next `n` logins answer `503` with an empty body (replaces any count left).
    pub fn fail_logins(&self, n: u32) {
        self.state().fail_logins = n;
    }

    /// While `true`, logins are never answered (until the client gives up).
    pub fn hang_logins(&self, hang: bool) {
        self.state().hang_logins = hang;
    }

    /// The next `n` API calls that pass the token and failover checks answer `500` with this
    /// `errorCode` (for example `UNRECOVERABLE_EXCEPTION`) and do nothing.
    pub fn fail_next(&self, n: u32, error_code: &str) {
        self.fail_next_with(n, 500, error_code);
    }

    /// Like [`fail_next`](Self::fail_next) with another status (for example `400
    /// API_LIMIT_EXCEEDED`).
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code (at the next API call).
    pub fn fail_next_with(&self, n: u32, status: u16, error_code: &str) {
        let mut state = self.state();
        state.fail_next = n;
        state.fail_with = (status, error_code.to_owned());
    }

    /// Expires every token issued so far, now.
    pub fn expire_tokens(&self) {
        self.state().tokens.expire_all(Instant::now());
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    async fn login(self, req: Recorded) -> Reply {
        let reply = {
            let mut state = self.state();
            state.login_times.push(req.at);
            (!state.hang_logins).then(|| self.try_login(&mut state, &req))
        };
        match reply {
            Some(reply) => reply,
            None => std::future::pending().await,
        }
    }

    fn try_login(&self, state: &mut State, req: &Recorded) -> Reply {
        let config = &self.inner.config;
        if req.method != Method::POST {
            return Reply::status(405);
        }
        if take_one(&mut state.fail_logins) {
            return Reply::status(503);
        }
        if let Some(code) = &state.login_error {
            return error(401, code, "Login refused", "The login was refused by the account.");
        }
        let now = Instant::now();
        let form = form_params(req);
        let accepted = match param(&form, "auth_type") {
            Some("password") => {
                param(&form, "user_name") == Some(config.user_name.as_str())
                    && param(&form, "password") == Some(config.password.as_str())
            }
            Some("token") => state.tokens.state(authorization(req).as_deref(), now) == TokenState::Valid,
            _ => {
                let detail = "auth_type must be password or token.";
                return error(400, "INVALID_PARAMETER", "Invalid parameter", detail);
            }
        };
        if !accepted {
            let detail = "Login failed: invalid user name or password.";
            return error(401, "INVALID_USER_NAME_PASSWORD", "Invalid user name or password", detail);
        }
        let token = state.tokens.mint(now, config.token_lifetime);
        let issued_at = EPOCH_BASE_MS + now.duration_since(self.inner.installed_at).as_millis() as u64;
        json_reply(200, &json!({"authToken": token, "issuedAt": issued_at, "endPoint": self.inner.end_point}))
    }

    async fn api(self, req: Recorded) -> Reply {
        let token = authorization(&req);
        let aftm = AFTM_PREFIXES.iter().any(|prefix| req.path.starts_with(prefix));
        let mut state = self.state();
        let token_state = state.tokens.state(token.as_deref(), Instant::now());
        let failure = if token_state == TokenState::Expired {
            Some((401, "TOKEN_EXPIRED".to_owned(), "Token expired".to_owned(), "The token has expired."))
        } else if token_state != TokenState::Valid {
            Some((401, "INVALID_TOKEN".to_owned(), "Not a valid token".to_owned(), "Not a valid token"))
        } else if state.secondary && !aftm {
            let detail = "This API is not allowed while the account is in secondary (failover) mode.";
            let title = "API not allowed in secondary".to_owned();
            Some((401, "API_NOT_ALLOWED_IN_SECONDARY".to_owned(), title, detail))
        } else if take_one(&mut state.fail_next) {
            let (status, code) = state.fail_with.clone();
            let title = title(&code);
            Some((status, code, title, "Simulated failure."))
        } else {
            None
        };
        state.calls.push(ApiCall {
            at: req.at,
            method: req.method.clone(),
            path: req.path.clone(),
            token,
            token_state,
            status: failure.as_ref().map_or(200, |f| f.0),
            outcome_code: failure.as_ref().map(|f| f.1.clone()),
        });
        drop(state);
        if let Some((status, code, title, detail)) = failure {
            error(status, &code, &title, detail)
        } else if req.method == Method::GET && req.path.ends_with("/lists") {
            json_reply(200, &json!({"lists": [{"name": "CONTACTS_LIST", "folderName": "!MasterData"}]}))
        } else {
            let record_data = json!({
                "fieldNames": ["RIID_", "EMAIL_ADDRESS_"],
                "records": [["1", "sim@example.com"]],
                "mapTemplateName": null,
            });
            json_reply(200, &json!({ "recordData": record_data }))
        }
    }
}

impl std::fmt::Debug for ResponsysHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("ResponsysHandle")
            .field("config", &self.inner.config)
            .field("end_point", &self.inner.end_point)
            .field("secondary", &state.secondary)
            .field("logins", &state.login_times.len())
            .field("api_calls", &state.calls.len())
            .finish_non_exhaustive()
    }
}

/// A Responsys error envelope.
fn error(status: u16, code: &str, title: &str, detail: &str) -> Reply {
    let body = json!({"type": "", "title": title, "errorCode": code, "detail": detail, "errorDetails": []});
    json_reply(status, &body)
}

/// A readable title for a scripted error code: `UNRECOVERABLE_EXCEPTION` → "Unrecoverable exception".
fn title(code: &str) -> String {
    let words = code.to_ascii_lowercase().replace('_', " ");
    let mut chars = words.chars();
    chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}
