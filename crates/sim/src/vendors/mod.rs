//! Stateful fake vendors built on [`Sim::route`]: they log in, issue and expire tokens, count,
//! throttle and fail on command, like the real services redial talks to.
//!
//! Each vendor module has an `install(&sim, config)` that mounts the vendor's paths on a [`Sim`]
//! and returns a cheap, cloneable handle: tests use it to steer the vendor (fail the next
//! logins, expire every token, go into failover…) and to observe it (logins, API calls with the
//! token state they carried and the answer they got).
//!
//! - [`marketo`]: Identity client credentials, Bearer tokens, 601/602, the 606 sliding window,
//!   the 615 concurrency limit, 414 and `_method=GET`.
//! - [`responsys`]: password login with `endPoint`, raw `Authorization` tokens, `INVALID_TOKEN`,
//!   AFTM failover (`API_NOT_ALLOWED_IN_SECONDARY`), scripted `UNRECOVERABLE_EXCEPTION`.
//! - [`adobe`]: IMS client credentials, Edge `application/problem+json` errors (EXEG-0500-401,
//!   EXEG-0503-401), 429 with `Retry-After`.
//! - [`genesys`]: SOAP `createSubCampaign` / `showSubCampaignState` / `changeSubCampaignState`
//!   with faults before or after the create took effect, and creates that never answer.
//!
//! Requests answered by a reply queued with [`Sim::enqueue`] never reach the vendor (it does not
//! count them), but [`Sim::requests`] logs them all. All times are `tokio::time::Instant`, so a
//! paused test clock drives token lifetimes, rate windows and latencies.
//!
//! The bodies follow the vendor contracts in redial's `VENDORS.md`; where a detail is not
//! documented by the vendor, the module says what the sim chose.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use tokio::time::Instant;

use crate::{Recorded, Reply, Sim};

pub mod adobe;
pub mod control;
pub mod genesys;
pub mod marketo;
pub mod responsys;

/// What a request's access token was, when the vendor looked at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenState {
    /// Issued by this vendor and not expired.
    Valid,
    /// Issued by this vendor, past its lifetime (or expired on command).
    Expired,
    /// Not a token this vendor issued.
    Unknown,
    /// No token on the request.
    Missing,
}

/// One API call as a vendor saw it (login calls are counted separately).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiCall {
    /// When the vendor received it.
    pub at: Instant,
    /// Request method (for Marketo, a POST with `_method=GET` shows as `POST`).
    pub method: http::Method,
    /// Request path, without the query.
    pub path: String,
    /// The token the call carried, if any.
    pub token: Option<String>,
    /// What that token was at `at`.
    pub token_state: TokenState,
    /// HTTP status of the answer.
    pub status: u16,
    /// The vendor error code answered (`"606"`, `"INVALID_TOKEN"`, `"EXEG-0503-401"`…), or
    /// `None` when the call succeeded (or failed without a vendor code, like Marketo's 414).
    pub outcome_code: Option<String>,
}

/// Mounts `f(state.clone(), req)` at `prefix`.
fn mount<S, F, Fut>(sim: &Sim, prefix: &str, state: &S, f: F)
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Recorded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let state = state.clone();
    sim.route(prefix, move |req| f(state.clone(), req));
}

/// Locks a vendor's state; a panic in another test task does not poison it for the rest.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A JSON reply (`Content-Type: application/json`).
fn json_reply(status: u16, body: &serde_json::Value) -> Reply {
    Reply::json(status, body.to_string())
}

/// Decodes `application/x-www-form-urlencoded` text (a query string or a form body) into pairs,
/// in order: `+` is a space, `%XX` a byte; malformed escapes are kept as they are.
fn form_decode(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The request's query parameters, decoded.
fn query_params(req: &Recorded) -> Vec<(String, String)> {
    req.query.as_deref().map(form_decode).unwrap_or_default()
}

/// The request's body parameters, if it is sent as `application/x-www-form-urlencoded`.
fn form_params(req: &Recorded) -> Vec<(String, String)> {
    let is_form = req
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if is_form {
        form_decode(&String::from_utf8_lossy(&req.body))
    } else {
        Vec::new()
    }
}

/// The first value of `name` among `params`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The `Authorization` header as text, if present.
fn authorization(req: &Recorded) -> Option<String> {
    req.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned())
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(req: &Recorded) -> Option<String> {
    let value = authorization(req)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// The tokens a vendor issued, each with its expiry. Tokens are minted from a counter, so they
/// are distinct and predictable (`<prefix>-000001`, …).
#[derive(Debug)]
struct Tokens {
    prefix: &'static str,
    minted: u64,
    expiry: HashMap<String, Instant>,
    /// The most recently minted token.
    latest: Option<String>,
}

impl Tokens {
    fn new(prefix: &'static str) -> Tokens {
        Tokens { prefix, minted: 0, expiry: HashMap::new(), latest: None }
    }

    /// Mints a new token valid for `lifetime` from `now`.
    fn mint(&mut self, now: Instant, lifetime: Duration) -> String {
        self.minted += 1;
        let token = format!("{}-{:06}", self.prefix, self.minted);
        self.expiry.insert(token.clone(), now + lifetime);
        self.latest = Some(token.clone());
        token
    }

    /// The most recent token if it is still valid at `now`, with its expiry.
    fn current(&self, now: Instant) -> Option<(String, Instant)> {
        let token = self.latest.as_ref()?;
        let expiry = self.expiry[token];
        (now < expiry).then(|| (token.clone(), expiry))
    }

    /// What `token` is at `now`.
    fn state(&self, token: Option<&str>, now: Instant) -> TokenState {
        match token {
            None => TokenState::Missing,
            Some(token) => match self.expiry.get(token) {
                None => TokenState::Unknown,
                Some(&expiry) if now < expiry => TokenState::Valid,
                Some(_) => TokenState::Expired,
            },
        }
    }

    /// Makes every token issued so far expired at `now`.
    fn expire_all(&mut self, now: Instant) {
        for expiry in self.expiry.values_mut() {
            *expiry = (*expiry).min(now);
        }
    }
}

/// A sliding-window rate limit that counts every call it sees, refused ones included: a call
/// is refused when `limit` calls came in the span of `window` before it.
#[derive(Debug)]
struct SlidingWindow {
    limit: u32,
    window: Duration,
    calls: VecDeque<Instant>,
}

impl SlidingWindow {
    fn new(limit: u32, window: Duration) -> SlidingWindow {
        SlidingWindow { limit, window, calls: VecDeque::new() }
    }

    /// Admits a call at `now` if fewer than `limit` calls came in `(now - window, now]`; the
    /// call counts either way (a refused call is a call the vendor served with an error).
    fn try_admit(&mut self, now: Instant) -> bool {
        while self.calls.front().is_some_and(|&at| now.duration_since(at) >= self.window) {
            self.calls.pop_front();
        }
        let admitted = self.calls.len() < self.limit as usize;
        self.calls.push_back(now);
        admitted
    }
}

/// Takes one from a "next n" counter: whether it was still positive.
fn take_one(counter: &mut u32) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_decode("a=1&b=x+y%2Bz&c&&d=%zz%4"),
            [
                ("a".into(), "1".into()),
                ("b".into(), "x y+z".into()),
                ("c".into(), String::new()),
                ("d".into(), "%zz%4".into()),
            ]
        );
        assert_eq!(form_decode("n%C3%A9=%E2%82%AC"), [("né".into(), "€".into())]);
    }

    #[tokio::test(start_paused = true)]
    async fn sliding_window_counts_refused_calls_too() {
        let mut window = SlidingWindow::new(2, Duration::from_secs(20));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert!(window.try_admit(at(0)));
        assert!(window.try_admit(at(5)));
        assert!(!window.try_admit(at(10)));
        // The calls of 5 s and 10 s (refused) are in (0 s, 20 s]: refused again, and counted.
        assert!(!window.try_admit(at(20)));
        // (6 s, 26 s] holds the refused calls of 10 s and 20 s.
        assert!(!window.try_admit(at(26)));
        // (20 s, 40 s] holds the refused call of 26 s only.
        assert!(window.try_admit(at(40)));
        assert!(!window.try_admit(at(41)));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_expire() {
        let mut tokens = Tokens::new("t");
        let t0 = Instant::now();
        let a = tokens.mint(t0, Duration::from_secs(10));
        assert_eq!(tokens.current(t0), Some((a.clone(), t0 + Duration::from_secs(10))));
        assert_eq!(tokens.state(Some(&a), t0), TokenState::Valid);
        assert_eq!(tokens.state(Some(&a), t0 + Duration::from_secs(10)), TokenState::Expired);
        assert_eq!(tokens.state(Some("nope"), t0), TokenState::Unknown);
        assert_eq!(tokens.state(None, t0), TokenState::Missing);
        let b = tokens.mint(t0, Duration::from_secs(10));
        assert_ne!(a, b);
        tokens.expire_all(t0);
        assert_eq!(tokens.current(t0), None);
        assert_eq!(tokens.state(Some(&b), t0), TokenState::Expired);
    }
}
