//! A tour of redial: a vendor simulator on loopback, and a client going through real vendor
//! failures. Run it with `cargo run --example tour`.
//!
//! The vendors' real host names (`*.mktorest.com`, `server.adobedc.net`, …) resolve to the
//! simulator, so the layer is configured exactly as in an application: `redial::builder()`.
//! Time is tokio's paused clock: every wait is really waited, in simulated time, so a 30 s or
//! 2 min vendor wait costs no real time.

use std::convert::Infallible;
use std::future::Ready;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::{dns::Name, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redial::core::Attempt;
use redial::{Report, RetryBody, Vendor, VendorExt};
use redial_sim::{Fault, Reply, Sim};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// Every host name resolves to the loopback simulator (the port comes from the URL).
#[derive(Clone)]
struct Loopback;

impl Service<Name> for Loopback {
    type Response = std::iter::Once<SocketAddr>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0)))))
    }
}

type Svc = redial::Retry<Client<HttpConnector<Loopback>, RetryBody<Full<Bytes>>>>;

struct Tour {
    svc: Svc,
    rows: Vec<(String, String, u32, Duration)>,
}

impl Tour {
    async fn run(&mut self, title: &str, explain: &str, req: Request<Full<Bytes>>) {
        println!("\n▶ {title}");
        println!("  {explain}");
        println!("  {} {}", req.method(), req.uri());
        let started = Instant::now();
        let result = self.svc.ready().await.unwrap().call(req).await;
        let elapsed = started.elapsed();
        let (outcome, report) = match result {
            Ok(res) => {
                let status = res.status();
                let report = res.extensions().get::<Report>().cloned().unwrap_or_default();
                let body = res
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (format!("returned {} ({} bytes)", status.as_u16(), body.len()), report)
            }
            Err(err) => (format!("error: {err}"), err.report().clone()),
        };
        for a in &report.attempts {
            print_attempt(a);
        }
        for (n, e) in &report.errors {
            println!("      vendor said on attempt {n}: {e} [{}]", e.scope.as_str());
        }
        println!("  ⇒ {outcome} after {} in simulated time", secs(elapsed));
        let attempts = report.attempt_count().max(1);
        self.rows.push((title.to_owned(), outcome, attempts, elapsed));
    }
}

fn print_attempt(a: &Attempt) {
    let what = match (a.status, a.failure) {
        (Some(s), _) => s.as_u16().to_string(),
        (None, Some(f)) => format!("no response ({})", f.as_str()),
        (None, None) => "-".into(),
    };
    let code = a.code.as_deref().map(|c| format!(" code {c}")).unwrap_or_default();
    let wait = a.delay.map(|d| format!(", wait {}", secs(d))).unwrap_or_default();
    println!(
        "    t={:>9}  attempt {}  {what}{code}  → {} / {}{wait}",
        secs(a.elapsed),
        a.number,
        a.kind,
        a.action
    );
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn get(url: String) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

fn post(url: String, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn soap(url: String, operation: &str) -> Request<Full<Bytes>> {
    let envelope = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><{operation}><campaign>Spring</campaign><externalId>sub-42</externalId></{operation}></soapenv:Body></soapenv:Envelope>"#
    );
    Request::post(url)
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"urn:engage/{operation}\""))
        .body(Full::new(Bytes::from(envelope)))
        .unwrap()
}

const GENESYS_INTERNAL_ERROR: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>INTERNAL_ERROR</faultstring><detail><error><code>INTERNAL_ERROR</code><message>Internal error</message></error></detail></soap:Fault></soap:Body></soap:Envelope>"#;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    println!(
        "redial tour: a vendor simulator on 127.0.0.1, and redial driving a hyper client through real vendor failures."
    );
    println!("Time is simulated (tokio's paused clock): every wait below is waited in full, in no real time.");

    let sim = Sim::start().await.expect("start the simulator");
    let port = sim.addr().port();
    let url = |host: &str, path: &str| format!("http://{host}:{port}{path}");

    let layer = redial::builder()
        .vendor_at(Vendor::GenesysEngage, "engage.example.com")
        .unwrap()
        .build();
    let client = Client::builder(TokioExecutor::new())
        .build::<_, RetryBody<Full<Bytes>>>(HttpConnector::new_with_resolver(Loopback));
    let mut tour = Tour {
        svc: tower::Layer::layer(&layer, client),
        rows: Vec::new(),
    };

    // --- Any host: the generic HTTP rules.
    sim.enqueue("/v1/orders", Reply::status(503).header("Retry-After", "2"));
    sim.enqueue("/v1/orders", Reply::json(200, r#"{"orders":[]}"#));
    tour.run(
        "generic: 503 with Retry-After: 2",
        "The server says when to come back; redial waits exactly that.",
        get(url("api.example.com", "/v1/orders")),
    )
    .await;

    sim.enqueue_many(
        "/v1/stock",
        [Reply::status(502), Reply::status(502), Reply::json(200, "{}")],
    );
    tour.run(
        "generic: 502, 502, 200",
        "Bad gateways are retried with exponential backoff and full jitter.",
        get(url("api.example.com", "/v1/stock")),
    )
    .await;

    sim.enqueue("/v1/payments", Reply::status(201).fault(Fault::ResetAfterRead));
    sim.set_fallback("/v1/payments", Reply::status(201));
    tour.run(
        "generic: POST, connection reset after the server read it",
        "The payment may have gone through: a non-idempotent request is never re-sent blindly.",
        post(url("api.example.com", "/v1/payments"), r#"{"amount":100}"#),
    )
    .await;

    // --- Marketo: errors in HTTP 200 bodies.
    let leads = "/rest/v1/leads.json";
    sim.enqueue(leads, Reply::json(200, r#"{"requestId":"e42b#14272d07d78","success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"}]}"#));
    sim.enqueue(
        leads,
        Reply::json(
            200,
            r#"{"requestId":"e42b#2","success":true,"result":[{"id":50,"email":"ada@example.com"}]}"#,
        ),
    );
    tour.run(
        "marketo: 200 carrying 606 (rate limit)",
        "HTTP 200, but success:false: redial reads the body and waits for the 20 s window.",
        get(url(
            "123-abc-456.mktorest.com",
            "/rest/v1/leads.json?filterType=id&filterValues=50",
        )),
    )
    .await;

    sim.enqueue(leads, Reply::json(200, r#"{"requestId":"e42b#3","success":true,"result":[{"id":50,"status":"created"},{"id":51,"status":"created"},{"status":"skipped","reasons":[{"code":"1005","message":"Lead already exists"}]}]}"#));
    tour.run(
        "marketo: record-level 1005",
        "The request succeeded; one record was skipped: a partial success, the record errors in the report.",
        post(
            url("123-abc-456.mktorest.com", leads),
            r#"{"action":"createOnly","input":[{},{},{}]}"#,
        ),
    )
    .await;

    sim.enqueue(
        leads,
        Reply::json(
            200,
            r#"{"requestId":"e42b#4","success":false,"errors":[{"code":"607","message":"Daily quota reached"}]}"#,
        ),
    );
    tour.run(
        "marketo: 607 daily quota",
        "Not worth retrying today: fail at once, with the reset time (00:00 US Central).",
        get(url("123-abc-456.mktorest.com", leads)),
    )
    .await;

    // --- Adobe Edge Network.
    let interact = "/ee/v2/interact";
    sim.enqueue(
        interact,
        Reply::status(429)
            .header("content-type", "application/problem+json")
            .body(
                r#"{"type":"https://ns.adobe.com/aep/errors/EXEG-0000-429","status":429,"title":"Too many requests"}"#,
            ),
    );
    sim.enqueue(interact, Reply::json(200, r#"{"requestId":"72eaa048","handle":[]}"#));
    tour.run(
        "adobe edge: 429 without Retry-After",
        "Adobe's SDK waits 5 s when the header is missing; so does redial.",
        post(url("server.adobedc.net", interact), "{}"),
    )
    .await;

    sim.enqueue(interact, Reply::json(207, r#"{"requestId":"72eaa048-207e-4dde-bf16-0cb2b21336d5","handle":[],"errors":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0201-503","status":503,"title":"The 'com.adobe.experience.platform.ode' service is temporarily unable to serve this request. Please try again later."}],"warnings":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0204-200","status":200,"title":"A warning occurred while calling the 'com.adobe.audiencemanager' service for this request."}]}"#));
    tour.run(
        "adobe edge: 207 multi-status",
        "Succeeded with non-fatal errors and warnings: returned, never retried.",
        post(url("server.adobedc.net", interact), "{}"),
    )
    .await;

    // --- Oracle Responsys.
    let merge = "/rest/api/v1.3/lists/Customers/members";
    sim.enqueue(merge, Reply::json(500, r#"{"type":"","title":"Unrecoverable exception","errorCode":"UNRECOVERABLE_EXCEPTION","detail":"Please retry","errorDetails":[]}"#));
    sim.enqueue(
        merge,
        Reply::json(
            200,
            r#"{"recordData":{"fieldNames":["EMAIL_ADDRESS_"],"records":[["ada@example.com"]]}}"#,
        ),
    );
    tour.run(
        "responsys: UNRECOVERABLE_EXCEPTION",
        "Oracle: wait about 30 s, then resubmit exactly once.",
        post(
            url("acme-aftm.responsys.ocs.oraclecloud.com", merge),
            r#"{"recordData":{}}"#,
        ),
    )
    .await;

    sim.enqueue(merge, Reply::ok().fault(Fault::ResetAfterRead));
    sim.enqueue(merge, Reply::json(200, r#"{"recordData":{}}"#));
    tour.run(
        "responsys: no response",
        "Oracle: retry up to 3 times, 2 minutes apart, or the API login gets disabled.",
        post(
            url("acme-aftm.responsys.ocs.oraclecloud.com", merge),
            r#"{"recordData":{}}"#,
        ),
    )
    .await;

    // --- Genesys Engage (SOAP).
    let svc = "/engage/services/CampaignService";
    sim.enqueue(
        svc,
        Reply::status(500)
            .header("content-type", "text/xml")
            .body(GENESYS_INTERNAL_ERROR),
    );
    sim.enqueue(svc, Reply::ok().header("content-type", "text/xml").body("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><ok/></soap:Body></soap:Envelope>"));
    tour.run(
        "genesys: INTERNAL_ERROR on showCampaign",
        "Genesys: re-invoke once, after about 30 s.",
        soap(url("engage.example.com", svc), "showCampaign"),
    )
    .await;

    sim.enqueue(
        svc,
        Reply::status(500)
            .header("content-type", "text/xml")
            .body(GENESYS_INTERNAL_ERROR),
    );
    tour.run(
        "genesys: INTERNAL_ERROR on createSubCampaign",
        "The create may have happened: it must be reconciled first. With no reconcile hook registered, redial does not re-send it.",
        soap(url("engage.example.com", svc), "createSubCampaign"),
    )
    .await;

    println!("\n{:<58} {:>8} {:>10}  outcome", "scenario", "attempts", "sim. time");
    for (title, outcome, attempts, elapsed) in &tour.rows {
        println!("{title:<58} {attempts:>8} {:>10}  {outcome}", secs(*elapsed));
    }
    println!(
        "\n{} requests reached the simulator; every wait above was simulated.",
        sim.requests().len()
    );
}
