//! A fake Genesys Engage Service API: SOAP 1.1 sub-campaign methods, with failures before or
//! after a create took effect, for testing reconciliation.
//!
//! `POST /engage/services/CampaignService`; the operation is the first child element of the
//! envelope's `Body` (any namespace prefix), its arguments the text of the child elements named
//! below (found by a plain string scan: this is a fake, not an XML parser). Answers are
//! `text/xml; charset=utf-8`.
//!
//! - `createSubCampaign` (`campaign`, `externalId`) → creates the sub-campaign in state `RUNNING`
//!   and answers `<createSubCampaignResponse><internalId>N</internalId></…>`. If one with the
//!   same campaign and external id exists and is not `STOPPED` → fault `OBJECT_EXISTS`; a
//!   stopped one is replaced (so "stop, then resubmit" works).
//! - `showSubCampaignState` (`campaign`, `externalId`) →
//!   `<showSubCampaignStateResponse><state>RUNNING</state></…>`, or fault `OBJECT_NOT_EXISTS`.
//! - `changeSubCampaignState` (`campaign`, `externalId`, optional `state`, default `STOPPED`) →
//!   sets the state and answers `<changeSubCampaignStateResponse/>`, or fault `OBJECT_NOT_EXISTS`.
//! - Missing arguments → one fault with an `ARG_NULL` error per missing argument, each with its
//!   `argumentIndex` (`campaign` 0, `externalId` 1: the sim's order), as the Errors page says
//!   the API validates every argument and returns the set; another operation or no `Body` →
//!   fault `ARG_INVALID_DATA` with `faultcode` `soap:Client`.
//!
//! A fault is HTTP 500 with `<soap:Fault><faultcode>…</faultcode><faultstring>CODE</faultstring>
//! <detail><error><code>CODE</code><message>…</message>[<argumentIndex>N</argumentIndex>]</error>…
//! </detail></soap:Fault>` (one `<error>` per error of the set);
//! `faultcode` is `soap:Server` for `INTERNAL_ERROR`, `NO_SESSION` and `SYSTEM_LIMIT_EXCEEDED`,
//! `soap:Client` otherwise.

use std::sync::{Arc, Mutex};

use http::Method;

use super::{lock, mount, take_one};
use crate::{Recorded, Reply, Sim};

/// Path of the campaign service endpoint.
pub const SERVICE_PATH: &str = "/engage/services/CampaignService";

/// How the fake Engage behaves (nothing to configure yet; use `GenesysConfig::default()`).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GenesysConfig {}

/// Controls and observes the fake Engage mounted with [`install`]. Cheap to clone; all clones
/// share the same sub-campaigns.
#[derive(Clone)]
pub struct GenesysHandle {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    sub_campaigns: Vec<SubCampaign>,
    next_internal_id: u64,
    creates: usize,
    timeout_after_effect: u32,
    gateway_timeout_after_effect: u32,
    internal_error_after_effect: u32,
    internal_error_before_effect: u32,
    fail_next: u32,
    fail_code: String,
}

struct SubCampaign {
    campaign: String,
    external_id: String,
    internal_id: u64,
    state: String,
}

/// What the service does after a call.
enum Outcome {
    Answer(Reply),
    Hang,
}

/// Mounts the fake Engage campaign service on `sim` at [`SERVICE_PATH`].
pub fn install(sim: &Sim, config: GenesysConfig) -> GenesysHandle {
    let GenesysConfig {} = config;
    let handle = GenesysHandle { state: Arc::new(Mutex::new(State { next_internal_id: 1000, ..State::default() })) };
    mount(sim, SERVICE_PATH, &handle, GenesysHandle::serve);
    handle
}

impl GenesysHandle {
    /// Every sub-campaign, in creation order: (campaign, external id, state).
    pub fn sub_campaigns(&self) -> Vec<(String, String, String)> {
        let state = lock(&self.state);
        state.sub_campaigns.iter().map(|s| (s.campaign.clone(), s.external_id.clone(), s.state.clone())).collect()
    }

    /// Number of `createSubCampaign` calls received, whatever they were answered.
    pub fn count_creates(&self) -> usize {
        lock(&self.state).creates
    }

    /// The next `n` creates that would succeed take effect, then never answer (the client's
    /// attempt timeout fires).
    pub fn timeout_after_effect(&self, n: u32) {
        lock(&self.state).timeout_after_effect = n;
    }

    /// The next `n` creates that would succeed take effect, then the gateway in front of the
    /// service gives up on them: HTTP 504 with the gateway's HTML page, no SOAP.
    pub fn gateway_timeout_after_effect(&self, n: u32) {
        lock(&self.state).gateway_timeout_after_effect = n;
    }

    /// The next `n` creates that would succeed take effect, then answer fault `INTERNAL_ERROR`.
    pub fn internal_error_after_effect(&self, n: u32) {
        lock(&self.state).internal_error_after_effect = n;
    }

    /// The next `n` creates answer fault `INTERNAL_ERROR` without creating anything.
    pub fn internal_error_before_effect(&self, n: u32) {
        lock(&self.state).internal_error_before_effect = n;
    }

    /// The next `n` calls of any operation answer a fault with this code (for example
    /// `NO_SESSION`, `SYSTEM_LIMIT_EXCEEDED`) without any effect.
    pub fn fail_next(&self, n: u32, code: &str) {
        let mut state = lock(&self.state);
        state.fail_next = n;
        state.fail_code = code.to_owned();
    }

    /// Sets the state of an existing sub-campaign (for example `FAILED`); returns whether it
    /// exists.
    pub fn set_state(&self, campaign: &str, external_id: &str, new_state: &str) -> bool {
        let mut state = lock(&self.state);
        match state.find(campaign, external_id) {
            Some(i) => {
                state.sub_campaigns[i].state = new_state.to_owned();
                true
            }
            None => false,
        }
    }

    async fn serve(self, req: Recorded) -> Reply {
        let outcome = self.call(&req);
        match outcome {
            Outcome::Answer(reply) => reply,
            Outcome::Hang => std::future::pending().await,
        }
    }

    fn call(&self, req: &Recorded) -> Outcome {
        if req.method != Method::POST {
            return Outcome::Answer(Reply::status(405));
        }
        let xml = String::from_utf8_lossy(&req.body);
        let Some(operation) = operation(&xml) else {
            return Outcome::Answer(fault("ARG_INVALID_DATA", "No SOAP Body with an operation."));
        };
        let mut state = lock(&self.state);
        if operation == "createSubCampaign" {
            state.creates += 1;
        }
        if take_one(&mut state.fail_next) {
            let code = state.fail_code.clone();
            return Outcome::Answer(fault(&code, "Simulated failure."));
        }
        let known = ["createSubCampaign", "showSubCampaignState", "changeSubCampaignState"];
        if !known.contains(&operation) {
            return Outcome::Answer(fault("ARG_INVALID_DATA", &format!("Unknown operation {operation}.")));
        }
        let (Some(campaign), Some(external_id)) = (element_text(&xml, "campaign"), element_text(&xml, "externalId"))
        else {
            // Every argument is validated and the set of errors returned, each ARG_* error with
            // the argumentIndex of its argument (the Errors page).
            let missing: Vec<(String, usize)> = ARGUMENTS
                .iter()
                .enumerate()
                .filter(|(_, name)| element_text(&xml, name).is_none())
                .map(|(i, name)| (format!("Argument '{name}' must be non-null"), i))
                .collect();
            let errors: Vec<_> = missing.iter().map(|(m, i)| ("ARG_NULL", m.as_str(), Some(*i))).collect();
            return Outcome::Answer(fault_set(&errors));
        };
        let existing = state.find(&campaign, &external_id);
        match operation {
            "createSubCampaign" => state.create(campaign, external_id, existing),
            "showSubCampaignState" => Outcome::Answer(match existing {
                Some(i) => {
                    let current = escape(&state.sub_campaigns[i].state);
                    envelope(&format!(
                        "<showSubCampaignStateResponse><state>{current}</state></showSubCampaignStateResponse>"
                    ))
                }
                None => not_exists(),
            }),
            _ => Outcome::Answer(match existing {
                Some(i) => {
                    let new_state = element_text(&xml, "state").unwrap_or_else(|| "STOPPED".to_owned());
                    state.sub_campaigns[i].state = new_state;
                    envelope("<changeSubCampaignStateResponse/>")
                }
                None => not_exists(),
            }),
        }
    }
}

impl State {
    fn find(&self, campaign: &str, external_id: &str) -> Option<usize> {
        self.sub_campaigns.iter().position(|s| s.campaign == campaign && s.external_id == external_id)
    }

    fn create(&mut self, campaign: String, external_id: String, existing: Option<usize>) -> Outcome {
        if take_one(&mut self.internal_error_before_effect) {
            return Outcome::Answer(fault("INTERNAL_ERROR", "Internal error."));
        }
        if let Some(i) = existing {
            if self.sub_campaigns[i].state != "STOPPED" {
                return Outcome::Answer(fault("OBJECT_EXISTS", "The sub-campaign already exists."));
            }
            self.sub_campaigns.remove(i);
        }
        self.next_internal_id += 1;
        let internal_id = self.next_internal_id;
        self.sub_campaigns.push(SubCampaign { campaign, external_id, internal_id, state: "RUNNING".to_owned() });
        if take_one(&mut self.timeout_after_effect) {
            return Outcome::Hang;
        }
        if take_one(&mut self.gateway_timeout_after_effect) {
            return Outcome::Answer(gateway_timeout());
        }
        if take_one(&mut self.internal_error_after_effect) {
            return Outcome::Answer(fault("INTERNAL_ERROR", "Internal error."));
        }
        let body =
            format!("<createSubCampaignResponse><internalId>{internal_id}</internalId></createSubCampaignResponse>");
        Outcome::Answer(envelope(&body))
    }
}

impl std::fmt::Debug for GenesysHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        let internal_ids: Vec<_> = state.sub_campaigns.iter().map(|s| s.internal_id).collect();
        f.debug_struct("GenesysHandle")
            .field("sub_campaigns", &internal_ids)
            .field("creates", &state.creates)
            .finish_non_exhaustive()
    }
}

const ENVELOPE_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#
);
const ENVELOPE_CLOSE: &str = "</soap:Body></soap:Envelope>";

/// A 200 envelope around `body`.
fn envelope(body: &str) -> Reply {
    xml_reply(200, format!("{ENVELOPE_OPEN}{body}{ENVELOPE_CLOSE}"))
}

/// The arguments of the sub-campaign methods, in order: an `ARG_*` error's `argumentIndex`.
const ARGUMENTS: [&str; 2] = ["campaign", "externalId"];

/// What a gateway in front of the service answers when the service takes too long.
fn gateway_timeout() -> Reply {
    Reply::status(504)
        .header("content-type", "text/html")
        .body("<html><head><title>504 Gateway Time-out</title></head><body><h1>504 Gateway Time-out</h1></body></html>")
}

/// A 500 SOAP fault carrying one error.
fn fault(code: &str, message: &str) -> Reply {
    fault_set(&[(code, message, None)])
}

/// A 500 SOAP fault carrying this set of errors (code, message, argumentIndex); the first
/// error's code is the `faultstring`.
fn fault_set(errors: &[(&str, &str, Option<usize>)]) -> Reply {
    let first = errors.first().map_or("", |e| e.0);
    let who = match first {
        "INTERNAL_ERROR" | "NO_SESSION" | "SYSTEM_LIMIT_EXCEEDED" => "soap:Server",
        _ => "soap:Client",
    };
    let detail: String = errors
        .iter()
        .map(|(code, message, index)| {
            let index = index.map(|i| format!("<argumentIndex>{i}</argumentIndex>")).unwrap_or_default();
            format!("<error><code>{}</code><message>{}</message>{index}</error>", escape(code), escape(message))
        })
        .collect();
    let first = escape(first);
    xml_reply(
        500,
        format!(
            "{ENVELOPE_OPEN}<soap:Fault><faultcode>{who}</faultcode><faultstring>{first}</faultstring>\
             <detail>{detail}</detail></soap:Fault>{ENVELOPE_CLOSE}"
        ),
    )
}

fn not_exists() -> Reply {
    fault("OBJECT_NOT_EXISTS", "The sub-campaign does not exist.")
}

fn xml_reply(status: u16, body: String) -> Reply {
    Reply::status(status).header("content-type", "text/xml; charset=utf-8").body(body)
}

/// Escapes text for an XML element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Undoes the five predefined XML entities.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// One start tag found by [`start_tags`].
struct StartTag<'a> {
    /// Name without its namespace prefix.
    local: &'a str,
    /// Byte offset just past the tag's `>`.
    end: usize,
    /// `<name/>`.
    empty: bool,
}

/// The start tags of `xml`, in order (comments, declarations, processing instructions and end
/// tags skipped).
fn start_tags(xml: &str) -> impl Iterator<Item = StartTag<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        let open = pos + xml[pos..].find('<')?;
        let close = open + xml[open..].find('>')?;
        pos = close + 1;
        let inner = &xml[open + 1..close];
        if inner.starts_with(['/', '?', '!']) {
            continue;
        }
        let name = inner.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        return Some(StartTag { local, end: pos, empty: inner.ends_with('/') });
    })
}

/// The operation: the local name of the first element inside `Body`.
fn operation(xml: &str) -> Option<&str> {
    let mut tags = start_tags(xml).skip_while(|tag| tag.local != "Body");
    tags.next()?;
    tags.next().map(|tag| tag.local)
}

/// The text of the first non-empty element with this local name, unescaped and trimmed.
fn element_text(xml: &str, local: &str) -> Option<String> {
    let tag = start_tags(xml).find(|tag| tag.local == local && !tag.empty)?;
    let len = xml[tag.end..].find('<')?;
    let text = unescape(xml[tag.end..tag.end + len].trim());
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_operation_and_arguments_with_any_prefix() {
        let xml = r#"<?xml version="1.0"?>
            <!-- a comment -->
            <S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Header/>
            <S:Body><eng:createSubCampaign xmlns:eng="urn:engage">
              <eng:campaign>Spring &amp; Summer</eng:campaign><externalId> X-1 </externalId><note/>
            </eng:createSubCampaign></S:Body></S:Envelope>"#;
        assert_eq!(operation(xml), Some("createSubCampaign"));
        assert_eq!(element_text(xml, "campaign").as_deref(), Some("Spring & Summer"));
        assert_eq!(element_text(xml, "externalId").as_deref(), Some("X-1"));
        assert_eq!(element_text(xml, "note"), None);
        assert_eq!(element_text(xml, "missing"), None);
        assert_eq!(operation("<Envelope><Header/></Envelope>"), None);
    }
}
