//! A fake vendor's controls over HTTP, under [`PATH`]: what a Rust test does with the vendor's
//! handle, a test in any language (or `curl`) does to a running `redial-sim`.
//!
//! - `GET /_sim`: the vendor, its commands, and what it has seen: logins, API calls, and the
//!   calls by vendor error code.
//! - `POST /_sim/<command>?<parameters>`: one of the vendor's [`Controls::commands`], such as
//!   `POST /_sim/secondary?on=true` (Responsys fails over) or
//!   `POST /_sim/fail-next?n=1&code=UNRECOVERABLE_EXCEPTION`.
//!
//! Answers are JSON: `{"ok":true,"command":…}`, or `{"error":…}` with 400 (a parameter
//! missing or out of range), 404 (no such command for this vendor) or 405 (not a `POST`).
//!
//! ```
//! use redial_sim::vendors::control::Controls;
//! use redial_sim::vendors::responsys::{self, ResponsysConfig};
//! use redial_sim::Sim;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let sim = Sim::start().await?;
//! let account = responsys::install(&sim, ResponsysConfig::default());
//! Controls::Responsys(account.clone()).mount(&sim);
//! // `POST /_sim/secondary?on=true` now does what this does:
//! account.set_secondary(true);
//! assert!(account.is_secondary());
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::adobe::AdobeHandle;
use super::genesys::GenesysHandle;
use super::marketo::MarketoHandle;
use super::responsys::ResponsysHandle;
use super::{json_reply, param, query_params, ApiCall};
use crate::{Recorded, Reply, Sim};

/// Where the controls are mounted. No vendor's API lives there.
pub const PATH: &str = "/_sim";

/// The fake vendor whose controls are mounted: its handle.
#[derive(Clone)]
#[non_exhaustive]
pub enum Controls {
    /// A fake Marketo instance.
    Marketo(MarketoHandle),
    /// A fake Responsys account.
    Responsys(ResponsysHandle),
    /// A fake Adobe IMS and Edge Network.
    AdobeEdge(AdobeHandle),
    /// A fake Genesys Engage service.
    GenesysEngage(GenesysHandle),
}

const MARKETO: &[&str] = &[
    "expire-tokens                   every token issued so far expires now (602 next)",
    "fail-logins?n=N                 the next N logins answer 503",
    "hang-logins?on=true|false       logins are never answered, while on",
    "login-fatal?on=true|false       logins are refused (401 invalid_client), while on",
];

const RESPONSYS: &[&str] = &[
    "expire-tokens                   every token issued so far expires now",
    "fail-logins?n=N                 the next N logins answer 503",
    "hang-logins?on=true|false       logins are never answered, while on",
    "login-error?code=CODE|none      logins are refused with this errorCode (401), until none",
    "secondary?on=true|false         failover: outside AFTM, API_NOT_ALLOWED_IN_SECONDARY",
    "fail-next?n=N&code=CODE[&status=S]  the next N API calls answer S (500) with this errorCode",
];

const ADOBE_EDGE: &[&str] = &[
    "expire-tokens                   every token issued so far expires now (EXEG-0503-401 next)",
    "fail-logins?n=N                 the next N IMS token requests answer 503",
    "throttle-next?n=N[&retry_after=SECS]  the next N Edge calls answer 429 EXEG-0000-429",
];

const GENESYS_ENGAGE: &[&str] = &[
    "fail-next?n=N&code=CODE         the next N calls answer a fault with this code, no effect",
    "internal-error-before-effect?n=N  the next N creates fault INTERNAL_ERROR, nothing created",
    "internal-error-after-effect?n=N   the next N creates take effect, then fault INTERNAL_ERROR",
    "timeout-after-effect?n=N        the next N creates take effect, then never answer",
    "gateway-timeout-after-effect?n=N  the next N creates take effect, then a gateway's 504",
    "set-state?campaign=C&external_id=ID&state=S  a sub-campaign's state (FAILED, say)",
];

impl std::fmt::Debug for Controls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Controls").field(&self.vendor()).finish()
    }
}

impl Controls {
    /// Mounts the controls at [`PATH`] on `sim`.
    pub fn mount(self, sim: &Sim) {
        sim.route(PATH, move |req: Recorded| {
            let reply = self.handle(&req);
            async move { reply }
        });
    }

    /// The vendor's name, as `redial-sim --vendor` takes it.
    pub fn vendor(&self) -> &'static str {
        match self {
            Controls::Marketo(_) => "marketo",
            Controls::Responsys(_) => "responsys",
            Controls::AdobeEdge(_) => "adobe-edge",
            Controls::GenesysEngage(_) => "genesys-engage",
        }
    }

    /// The commands this vendor takes: one line each, the command and its parameters, then
    /// what it does.
    pub fn commands(&self) -> &'static [&'static str] {
        match self {
            Controls::Marketo(_) => MARKETO,
            Controls::Responsys(_) => RESPONSYS,
            Controls::AdobeEdge(_) => ADOBE_EDGE,
            Controls::GenesysEngage(_) => GENESYS_ENGAGE,
        }
    }

    fn handle(&self, req: &Recorded) -> Reply {
        let command = req.path.strip_prefix(PATH).unwrap_or_default().trim_matches('/');
        if command.is_empty() {
            return if req.method == Method::GET {
                json_reply(200, &self.status())
            } else {
                refused(405, "GET /_sim tells the vendor's state; POST /_sim/<command> runs a command")
            };
        }
        if req.method != Method::POST {
            return refused(405, &format!("a command is a POST: POST {PATH}/{command}"));
        }
        let params = Params(query_params(req));
        match self.run(command, &params) {
            Ok(true) => json_reply(200, &json!({"ok": true, "command": command})),
            Ok(false) => {
                let names: Vec<&str> = self.commands().iter().filter_map(|c| c.split(['?', ' ']).next()).collect();
                refused(
                    404,
                    &format!("{} has no command {command:?}; its commands: {}", self.vendor(), names.join(", ")),
                )
            }
            Err(e) => refused(400, &format!("{command}: {e}")),
        }
    }

    /// Runs `command`: `Ok(false)` when this vendor has no such command.
    fn run(&self, command: &str, p: &Params) -> Result<bool, String> {
        match (self, command) {
            (Controls::Marketo(v), "expire-tokens") => v.expire_tokens(),
            (Controls::Marketo(v), "fail-logins") => v.fail_logins(p.count("n")?),
            (Controls::Marketo(v), "hang-logins") => v.hang_logins(p.on()?),
            (Controls::Marketo(v), "login-fatal") => v.set_login_fatal(p.on()?),
            (Controls::Responsys(v), "expire-tokens") => v.expire_tokens(),
            (Controls::Responsys(v), "fail-logins") => v.fail_logins(p.count("n")?),
            (Controls::Responsys(v), "hang-logins") => v.hang_logins(p.on()?),
            (Controls::Responsys(v), "login-error") => match p.text("code")? {
                "none" => v.set_login_error(None),
                code => v.set_login_error(Some(code)),
            },
            (Controls::Responsys(v), "secondary") => v.set_secondary(p.on()?),
            (Controls::Responsys(v), "fail-next") => {
                let status = match p.get("status") {
                    None => 500,
                    Some(s) => s
                        .parse::<u16>()
                        .ok()
                        .filter(|s| StatusCode::from_u16(*s).is_ok())
                        .ok_or_else(|| format!("status={s:?} is not an HTTP status (100 to 999)"))?,
                };
                v.fail_next_with(p.count("n")?, status, p.text("code")?);
            }
            (Controls::AdobeEdge(v), "expire-tokens") => v.expire_tokens(),
            (Controls::AdobeEdge(v), "fail-logins") => v.fail_logins(p.count("n")?),
            (Controls::AdobeEdge(v), "throttle-next") => {
                let retry_after = match p.get("retry_after") {
                    None => None,
                    Some(s) => Some(s.parse::<u64>().map_err(|_| format!("retry_after={s:?} is not whole seconds"))?),
                };
                v.throttle_next(p.count("n")?, retry_after);
            }
            (Controls::GenesysEngage(v), "fail-next") => v.fail_next(p.count("n")?, p.text("code")?),
            (Controls::GenesysEngage(v), "internal-error-before-effect") => {
                v.internal_error_before_effect(p.count("n")?)
            }
            (Controls::GenesysEngage(v), "internal-error-after-effect") => v.internal_error_after_effect(p.count("n")?),
            (Controls::GenesysEngage(v), "timeout-after-effect") => v.timeout_after_effect(p.count("n")?),
            (Controls::GenesysEngage(v), "gateway-timeout-after-effect") => {
                v.gateway_timeout_after_effect(p.count("n")?)
            }
            (Controls::GenesysEngage(v), "set-state") => {
                let (campaign, id, state) = (p.text("campaign")?, p.text("external_id")?, p.text("state")?);
                if !v.set_state(campaign, id, state) {
                    return Err(format!("no sub-campaign {id:?} in campaign {campaign:?}"));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// What `GET /_sim` answers.
    fn status(&self) -> Value {
        let mut status = json!({"vendor": self.vendor(), "commands": self.commands()});
        let mut add = |name: &str, value: Value| {
            status[name] = value;
        };
        match self {
            Controls::Marketo(v) => {
                add("logins", json!(v.logins()));
                add("in_flight", json!(v.in_flight()));
                add("max_in_flight", json!(v.max_in_flight()));
                calls(&v.api_calls(), add);
            }
            Controls::Responsys(v) => {
                add("logins", json!(v.logins()));
                add("secondary", json!(v.is_secondary()));
                calls(&v.api_calls(), add);
            }
            Controls::AdobeEdge(v) => {
                add("logins", json!(v.logins()));
                calls(&v.api_calls(), add);
            }
            Controls::GenesysEngage(v) => {
                add("creates", json!(v.count_creates()));
                let subs: Vec<Value> = v
                    .sub_campaigns()
                    .into_iter()
                    .map(|(campaign, id, state)| json!({"campaign": campaign, "external_id": id, "state": state}))
                    .collect();
                add("sub_campaigns", Value::Array(subs));
            }
        }
        status
    }
}

/// The API calls seen, and how many were answered each vendor error code.
fn calls(calls: &[ApiCall], mut add: impl FnMut(&str, Value)) {
    let mut codes: BTreeMap<&str, u64> = BTreeMap::new();
    for code in calls.iter().filter_map(|c| c.outcome_code.as_deref()) {
        *codes.entry(code).or_default() += 1;
    }
    add("api_calls", json!(calls.len()));
    add("codes", json!(codes));
}

fn refused(status: u16, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

/// A command's query parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        param(&self.0, name)
    }

    fn text(&self, name: &str) -> Result<&str, String> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| format!("{name}= is missing"))
    }

    fn count(&self, name: &str) -> Result<u32, String> {
        let text = self.text(name)?;
        text.parse().map_err(|_| format!("{name}={text:?} is not a count (0 to {})", u32::MAX))
    }

    fn on(&self) -> Result<bool, String> {
        match self.text("on")? {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("on={other:?} is neither true nor false")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendors::{adobe, genesys, marketo, responsys};

    fn post(controls: &Controls, target: &str) -> (u16, Value) {
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q.to_owned())));
        let req = Recorded {
            method: Method::POST,
            path: format!("{PATH}/{path}"),
            query,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            body_len: 0,
            at: tokio::time::Instant::now(),
            connection: 0,
        };
        let reply = controls.handle(&req);
        let crate::BodySpec::Fixed(body) = &reply.body else { panic!("a control answers a fixed body") };
        (reply.status.as_u16(), serde_json::from_slice(body).unwrap())
    }

    /// Every command a vendor's list names is one it takes, with the parameters the list
    /// gives it (sample values): the list and the commands cannot drift apart.
    #[tokio::test]
    async fn every_listed_command_is_taken_with_its_parameters() {
        let sim = Sim::start().await.unwrap();
        let all = [
            Controls::Marketo(marketo::install(&sim, Default::default())),
            Controls::Responsys(responsys::install(&sim, Default::default())),
            Controls::AdobeEdge(adobe::install(&sim, Default::default())),
            Controls::GenesysEngage(genesys::install(&sim, Default::default())),
        ];
        for controls in &all {
            assert!(controls.commands().len() >= 3, "{controls:?}");
            for line in controls.commands() {
                let spec = line.split_whitespace().next().unwrap();
                let (name, params) = spec.split_once('?').unwrap_or((spec, ""));
                let sample: Vec<String> = params
                    .trim_start_matches('[')
                    .split(['&', '['])
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let key = p.trim_matches(|c| c == '[' || c == ']').split('=').next().unwrap();
                        let value = match key {
                            "n" | "retry_after" => "2",
                            "on" => "true",
                            "status" => "503",
                            _ => "SAMPLE",
                        };
                        format!("{key}={value}")
                    })
                    .collect();
                let (status, body) = post(controls, &format!("{name}?{}", sample.join("&")));
                if name == "set-state" {
                    assert_eq!(status, 400, "{name}: {body}");
                    assert!(body["error"].as_str().unwrap().contains("no sub-campaign"), "{body}");
                } else {
                    assert_eq!(
                        (status, &body["command"]),
                        (200, &json!(name)),
                        "{}: {line}: {body}",
                        controls.vendor()
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_status_that_is_not_http_is_refused_not_kept_for_a_panic_later() {
        let sim = Sim::start().await.unwrap();
        let account = Controls::Responsys(responsys::install(&sim, Default::default()));
        let (status, body) = post(&account, "fail-next?n=1&code=X&status=1000");
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("not an HTTP status"), "{body}");
    }

    #[tokio::test]
    async fn adobe_throttles_and_genesys_faults_on_command() {
        let sim = Sim::start().await.unwrap();
        let edge = adobe::install(&sim, Default::default());
        assert_eq!(post(&Controls::AdobeEdge(edge.clone()), "throttle-next?n=3&retry_after=x").0, 400);
        assert_eq!(post(&Controls::AdobeEdge(edge), "throttle-next?n=3&retry_after=7").0, 200);
        let engage = Controls::GenesysEngage(genesys::install(&sim, Default::default()));
        assert_eq!(post(&engage, "fail-next?n=1").0, 400, "code= is missing");
        let Controls::GenesysEngage(handle) = &engage else { unreachable!() };
        assert!(handle.sub_campaigns().is_empty());
        assert_eq!(engage.status()["creates"], 0);
    }
}
