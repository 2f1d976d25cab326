//! A tour of redial: a vendor simulator on loopback, and a client going through real vendor
//! failures. Run it with `cargo run --example tour`.
//!
//! The vendors' real host names (`*.mktorest.com`, `server.adobedc.net`, …) resolve to the
//! simulator, so the layer is configured as in an application: `redial::builder()`. Responsys
//! is the exception: its login answers with the host to call next (`endPoint`), which is the
//! simulator's own address, so its rules are put on `127.0.0.1` with `vendor_at`.
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
use redial::hooks::{FailoverMode, Probe, ReconcileRequest, Verdict};
use redial::vendors::{marketo, responsys};
use redial::{Report, RetryBody, TokenSource, Vendor, VendorExt};
use redial_sim::vendors::{genesys as sim_genesys, marketo as sim_marketo, responsys as sim_responsys};
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

/// What the reconcile hook found, printed under the attempt that asked it (the hook runs
/// before the request's report is printed).
static HOOK_NOTES: std::sync::Mutex<std::collections::VecDeque<String>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

fn hook_note(note: &str) {
    HOOK_NOTES.lock().unwrap().push_back(format!("      reconcile hook: {note}"));
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
        let (outcome, report, attempts) = match result {
            Ok(res) => {
                let status = res.status();
                // A first-try success carries no report: one attempt.
                let report = res.extensions().get::<Report>().cloned();
                let attempts = report.as_ref().map_or(1, Report::attempt_count);
                let report = report.unwrap_or_default();
                let body = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let how = if report.reconciled { ", reconciled: the first call's own result" } else { "" };
                (format!("returned {} ({} bytes){how}", status.as_u16(), body.len()), report, attempts)
            }
            // A request refused locally (failover mode) made no attempt.
            Err(err) => (format!("error: {err}"), err.report().clone(), err.report().attempt_count()),
        };
        let mut notes = HOOK_NOTES.lock().unwrap();
        for (i, a) in report.attempts.iter().enumerate() {
            print_attempt(a, i.checked_sub(1).map(|p| &report.attempts[p]));
            // What the reconcile hook found, under the attempt that asked it.
            if a.action == redial::core::Action::Reconcile {
                if let Some(note) = notes.pop_front() {
                    println!("{note}");
                }
            }
        }
        notes.drain(..).for_each(|note| println!("{note}"));
        drop(notes);
        for (n, e) in &report.errors {
            println!("      vendor said on attempt {n}: {e} [{}]", e.scope.as_str());
        }
        println!("  ⇒ {outcome} after {} in simulated time", secs(elapsed));
        self.rows.push((title.to_owned(), outcome, attempts, elapsed));
    }
}

fn print_attempt(a: &Attempt, previous: Option<&Attempt>) {
    // Time the attempt waited beyond its decided delay: a login, or the host's limits.
    if let Some(held) = a.held(previous).filter(|h| *h >= Duration::from_millis(1)) {
        println!(
            "               (attempt {} held {} before it was sent: a login, or the host's limits)",
            a.number,
            secs(held)
        );
    }
    let what = match (a.status, a.failure) {
        (Some(s), _) => s.as_u16().to_string(),
        (None, Some(f)) => format!("no response ({})", f.as_str()),
        (None, None) => "-".into(),
    };
    let code = a.code.as_deref().map(|c| format!(" code {c}")).unwrap_or_default();
    let wait = a.delay.map(|d| format!(", wait {}", secs(d))).unwrap_or_default();
    println!("    t={:>9}  attempt {}  {what}{code}  → {} / {}{wait}", secs(a.elapsed), a.number, a.kind, a.action);
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

fn soap(url: String, operation: &str, external_id: &str) -> Request<Full<Bytes>> {
    let envelope = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><{operation}><campaign>Spring</campaign><externalId>{external_id}</externalId></{operation}></soapenv:Body></soapenv:Envelope>"#
    );
    Request::post(url)
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"urn:engage/{operation}\""))
        .body(Full::new(Bytes::from(envelope)))
        .unwrap()
}

/// The reconcile hook a Genesys user writes: after an ambiguous `createSubCampaign`, look the
/// sub-campaign up with `showSubCampaignState` (by campaign and externalId).
fn genesys_hook(service_url: String) -> impl redial::hooks::ReconcileHook {
    move |req: ReconcileRequest| {
        let url = service_url.clone();
        async move {
            let body = String::from_utf8_lossy(req.request.body()).into_owned();
            let show = body.replace("createSubCampaign", "showSubCampaignState");
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let Ok(res) = client.request(Request::post(url).body(Full::new(Bytes::from(show))).unwrap()).await else {
                return Verdict::NotApplied;
            };
            let status = res.status();
            let body = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            if String::from_utf8_lossy(&body).contains("OBJECT_NOT_EXISTS") {
                hook_note("showSubCampaignState says OBJECT_NOT_EXISTS → not applied, send again");
                Verdict::NotApplied
            } else {
                hook_note("showSubCampaignState found it → the first call took effect");
                Verdict::Applied(http::Response::builder().status(status).body(body).unwrap())
            }
        }
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    println!(
        "redial tour: vendor simulators on 127.0.0.1, and redial driving a hyper client through real vendor failures."
    );
    println!("Time is simulated (tokio's paused clock): every wait below is waited in full, in no real time.");

    // One simulator per vendor; every host name resolves to 127.0.0.1, the port picks the vendor.
    let sim = Sim::start().await.expect("start the simulator");
    let mkto_sim = Sim::start().await.expect("start the simulator");
    let rsys_sim = Sim::start().await.expect("start the simulator");
    let gen_sim = Sim::start().await.expect("start the simulator");
    // An instance whose quota other services use up: it takes only 20 calls per 20 s.
    let mkto_config =
        sim_marketo::MarketoConfig { rate_limit: Some((20, Duration::from_secs(20))), ..Default::default() };
    let mkto = sim_marketo::install(&mkto_sim, mkto_config);
    let rsys = sim_responsys::install(&rsys_sim, sim_responsys::ResponsysConfig::new("api-user", "tour-password"));
    let genesys = sim_genesys::install(&gen_sim, sim_genesys::GenesysConfig::default());
    let at = |sim: &Sim, host: &str, path: &str| format!("http://{host}:{}{path}", sim.addr().port());
    let url = |host: &str, path: &str| at(&sim, host, path);

    let mkto_host = "123-abc-456.mktorest.com";
    let identity =
        marketo::IdentityLogin::new(&at(&mkto_sim, mkto_host, "/identity"), "sim-client-id", "sim-client-secret")
            .expect("identity URL");
    let rsys_login = responsys::PasswordLogin::new(&rsys_sim.url(""), "api-user", "tour-password").expect("login URL");
    let probe_url = rsys_sim.url("/rest/api/v1.3/lists");
    // Exactly what an application writes: every vendor on its own hosts, plus logins, a
    // reconcile hook and a failover probe. (The Responsys simulator's login answers with its own
    // address as endPoint, so the tour's Responsys host is 127.0.0.1.)
    let layer = redial::builder()
        .vendor_at(Vendor::GenesysEngage, "engage.example.com")
        .and_then(|b| b.reconcile("engage.example.com", genesys_hook(gen_sim.url(sim_genesys::SERVICE_PATH))))
        .and_then(|b| b.auth("*.mktorest.com", TokenSource::login(identity)))
        .and_then(|b| b.vendor_at(Vendor::Responsys, "127.0.0.1"))
        .and_then(|b| b.auth("127.0.0.1", TokenSource::login(rsys_login)))
        .and_then(|b| {
            b.failover_probe(
                "127.0.0.1",
                Probe::new(Duration::from_secs(60), move || Request::get(&probe_url).body(Bytes::new()).unwrap()),
            )
        })
        .expect("valid host patterns")
        .build();
    let client = Client::builder(TokioExecutor::new())
        .build::<_, RetryBody<Full<Bytes>>>(HttpConnector::new_with_resolver(Loopback));
    let mut tour = Tour { svc: tower::Layer::layer(&layer, client), rows: Vec::new() };

    // --- Any host: the generic HTTP rules.
    sim.enqueue("/v1/orders", Reply::status(503).header("Retry-After", "2"));
    sim.enqueue("/v1/orders", Reply::json(200, r#"{"orders":[]}"#));
    tour.run(
        "generic: 503 with Retry-After: 2",
        "The server says when to come back; redial waits exactly that.",
        get(url("api.example.com", "/v1/orders")),
    )
    .await;

    sim.enqueue_many("/v1/stock", [Reply::status(502), Reply::status(502), Reply::json(200, "{}")]);
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

    // --- Marketo: errors in HTTP 200 bodies, a token, an instance quota.
    let leads = |q: &str| at(&mkto_sim, mkto_host, &format!("/rest/v1/leads.json{q}"));
    tour.run(
        "marketo: first call",
        "No token yet: one login at the identity endpoint, then the call.",
        get(leads("?filterType=id&filterValues=50")),
    )
    .await;
    println!("  (the identity endpoint was called {} time)", mkto.logins());
    mkto.expire_tokens();
    tour.run(
        "marketo: token expired (602 in a 200)",
        "Marketo says 602: a new login, and the call replayed with the new token.",
        get(leads("?filterType=id&filterValues=51")),
    )
    .await;
    mkto.expire_tokens();
    println!("\n▶ marketo: 10 concurrent calls meet an expired token");
    println!("  Each is told 602; they share one login and all replay with its token.");
    let before = mkto.logins();
    let refused = mkto.count_code("602");
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..10 {
        let req = get(leads(&format!("?filterType=id&filterValues={}", 60 + i)));
        calls.spawn(tour.svc.clone().oneshot(req));
    }
    let (mut ok, mut attempts) = (0, 0);
    while let Some(done) = calls.join_next().await {
        match done.expect("the call's task") {
            Ok(res) => {
                ok += usize::from(res.status().is_success());
                attempts += res.extensions().get::<Report>().map_or(1, Report::attempt_count);
            }
            Err(e) => attempts += e.report().attempt_count(),
        }
    }
    let (refused, logins) = (mkto.count_code("602") - refused, mkto.logins() - before);
    println!(
        "  ⇒ {ok}/10 succeeded; the vendor answered 602 {refused} times; logins at the identity endpoint: {logins}"
    );
    tour.rows.push((
        "marketo: 10 concurrent calls meet an expired token".into(),
        format!("{ok}/10 succeeded, {refused} × 602, logins: {logins}"),
        attempts,
        started.elapsed(),
    ));

    mkto_sim.enqueue("/rest/v1/leads.json", Reply::json(200, r#"{"requestId":"e42b#3","success":true,"result":[{"id":50,"status":"created"},{"id":51,"status":"created"},{"status":"skipped","reasons":[{"code":"1005","message":"Lead already exists"}]}]}"#));
    tour.run(
        "marketo: record-level 1005",
        "The request succeeded; one record was skipped: a partial success, the record errors in the report.",
        post(leads(""), r#"{"action":"createOnly","input":[{},{},{}]}"#),
    )
    .await;

    mkto_sim.enqueue(
        "/rest/v1/leads.json",
        Reply::json(
            200,
            r#"{"requestId":"e42b#4","success":false,"errors":[{"code":"607","message":"Daily quota reached"}]}"#,
        ),
    );
    tour.run(
        "marketo: 607 daily quota",
        "Not worth retrying today: fail at once, with the reset time (00:00 US Central).",
        get(leads("")),
    )
    .await;

    println!("\n▶ marketo: a 606 storm");
    println!("  Other services use up the instance: it now takes only 20 calls per 20 s, while redial's limit is");
    println!("  Marketo's documented 100. 60 concurrent calls: redial learns the real limit from the 606s.");
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..60 {
        let svc = tour.svc.clone();
        let req = get(leads(&format!("?filterType=id&filterValues={i}")));
        calls.spawn(async move {
            match svc.oneshot(req).await {
                // A first-try success carries no report: one attempt.
                Ok(r) => {
                    let report = r.extensions().get::<Report>();
                    let held = report.map(Report::total_held).unwrap_or_default();
                    (r.status().is_success(), report.map_or(1, Report::attempt_count), held)
                }
                Err(e) => (false, e.report().attempt_count(), e.report().total_held()),
            }
        });
    }
    let (mut ok, mut attempts, mut held) = (0, 0, Duration::ZERO);
    while let Some(r) = calls.join_next().await {
        let (success, n, h) = r.expect("the call's task");
        ok += usize::from(success);
        attempts += n;
        held += h;
    }
    let storm = started.elapsed();
    println!(
        "  ⇒ {ok}/60 succeeded in {}; the vendor answered 606 {} times; redial's limit for the host is now {:?} per 20 s\n    \
         (what the vendor accepted, and for each quiet window since, 1 %, then 2 %, 4 % … of Marketo's 100 back)",
        secs(storm),
        mkto.count_code("606"),
        layer.current_rate_limit("*.mktorest.com").unwrap_or_default()
    );
    println!("    the retried calls were held {} in all by the host's limits, beyond their backoff", secs(held));
    tour.rows.push((
        "marketo: a 606 storm (60 concurrent calls)".into(),
        format!("{ok}/60 succeeded, {} × 606", mkto.count_code("606")),
        attempts,
        storm,
    ));

    // --- Adobe Edge Network.
    let interact = "/ee/v2/interact";
    sim.enqueue(
        interact,
        Reply::status(429).header("content-type", "application/problem+json").body(
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
    let members = rsys_sim.url("/rest/api/v1.3/lists/Customers/members");
    rsys.fail_next(1, "UNRECOVERABLE_EXCEPTION");
    tour.run(
        "responsys: UNRECOVERABLE_EXCEPTION",
        "Oracle: wait about 30 s, then resubmit exactly once.",
        post(members.clone(), r#"{"recordData":{}}"#),
    )
    .await;

    rsys_sim.enqueue("/rest/api/v1.3/lists/Customers/members", Reply::ok().fault(Fault::ResetAfterRead));
    tour.run(
        "responsys: no response",
        "Oracle: retry up to 3 times, 2 minutes apart, or the API login gets disabled (a POST too: Oracle's rule for a call that got no answer).",
        post(members.clone(), r#"{"recordData":{}}"#),
    )
    .await;

    rsys.set_secondary(true);
    let lists = rsys_sim.url("/rest/api/v1.3/lists");
    let aftm = rsys_sim.url("/rest/haApi/v1.3/campaigns/Welcome/email");
    tour.run(
        "responsys: failover happens",
        "API_NOT_ALLOWED_IN_SECONDARY: the account enters failover mode.",
        get(lists.clone()),
    )
    .await;
    tour.run(
        "responsys: in failover, a non-AFTM call",
        "Refused locally, never sent: only AFTM endpoints work now.",
        get(lists.clone()),
    )
    .await;
    tour.run(
        "responsys: in failover, an AFTM call",
        "Transactional email keeps flowing through the failover account.",
        post(aftm, r#"{"recipientData":[]}"#),
    )
    .await;
    rsys.set_secondary(false);
    tokio::time::sleep(Duration::from_secs(61)).await;
    match layer.failover_mode("127.0.0.1") {
        Some(FailoverMode::Primary) => {
            println!("\n  (a minute later, the failover probe succeeded: the host is back to primary)")
        }
        mode => println!("\n  (a minute later, the failover probe has not succeeded: the host is {mode:?})"),
    }
    tour.run(
        "responsys: back to primary",
        "The probe brought the account back; every endpoint is sent again.",
        get(lists),
    )
    .await;

    // --- Genesys Engage (SOAP).
    let svc_url = url("engage.example.com", sim_genesys::SERVICE_PATH)
        .replace(&sim.addr().port().to_string(), &gen_sim.addr().port().to_string());
    genesys.timeout_after_effect(1);
    tour.run(
        "genesys: createSubCampaign times out",
        "The create may have happened: redial asks the reconcile hook instead of sending it again.",
        soap(svc_url.clone(), "createSubCampaign", "sub-42"),
    )
    .await;
    genesys.internal_error_before_effect(1);
    tour.run(
        "genesys: createSubCampaign, INTERNAL_ERROR",
        "The hook finds nothing: it is safe to send it once more.",
        soap(svc_url.clone(), "createSubCampaign", "sub-43"),
    )
    .await;
    genesys.fail_next(1, "INTERNAL_ERROR");
    tour.run(
        "genesys: INTERNAL_ERROR on showSubCampaignState",
        "Genesys: re-invoke once, after about 30 s.",
        soap(svc_url, "showSubCampaignState", "sub-42"),
    )
    .await;
    let held = genesys.sub_campaigns();
    let mut ids: Vec<_> = held.iter().map(|(campaign, id, _)| (campaign, id)).collect();
    ids.sort();
    ids.dedup();
    let duplicates = held.len() - ids.len();
    println!(
        "\n  Genesys now holds {} sub-campaign(s), created by {} createSubCampaign call(s): {}.",
        held.len(),
        genesys.count_creates(),
        if duplicates == 0 { "none duplicated".to_owned() } else { format!("{duplicates} DUPLICATED") }
    );

    println!("\n{:<58} {:>8} {:>10}  outcome", "scenario", "attempts", "sim. time");
    for (title, outcome, attempts, elapsed) in &tour.rows {
        println!("{title:<58} {attempts:>8} {:>10}  {outcome}", secs(*elapsed));
    }
    let received = [&sim, &mkto_sim, &rsys_sim, &gen_sim].iter().map(|s| s.requests().len()).sum::<usize>();
    println!(
        "\n{received} requests reached the simulators ({} logins); every wait above was simulated.",
        mkto.logins() + rsys.logins()
    );
}
