//! redial as a `reqwest-middleware` middleware: a Marketo client that logs in, meets an expired
//! token and a rate limit, and reads what redial did; then a daily quota it cannot retry.
//!
//! `cargo run --example reqwest` (it starts a simulated Marketo on loopback; every wait is
//! simulated in full on a paused clock).

use redial::vendors::marketo::IdentityLogin;
use redial::{RedialMiddleware, Report, TokenSource, Vendor, VendorExt};
use redial_sim::vendors::marketo::{self as sim_marketo, MarketoConfig};
use redial_sim::{Reply, Sim};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start().await?;
    let marketo = sim_marketo::install(&sim, MarketoConfig::new("my-client-id", "my-client-secret"));

    // In an application: `redial::builder().build()` serves *.mktorest.com with Marketo's
    // rules, and the secret comes from the environment. The simulator is 127.0.0.1, so the
    // example registers Marketo there.
    let login = IdentityLogin::new(&sim.url("/identity"), "my-client-id", "my-client-secret")?;
    let layer = redial::builder()
        .vendor_at(Vendor::Marketo, "127.0.0.1")?
        .auth("127.0.0.1", TokenSource::login(login))?
        .build();
    let http = reqwest::Client::new();
    // The same client sends the logins that outlive the call that started them.
    let client = reqwest_middleware::ClientBuilder::new(http.clone())
        .with(RedialMiddleware::new(layer).with_client(http))
        .build();
    let leads = sim.url("/rest/v1/leads.json?filterType=id&filterValues=50");

    // The first call logs in. Then the instance's rate limit is hit (606 in an HTTP 200) and
    // the token expires (602): redial waits, logs in again, and replays.
    let res = client.get(&leads).send().await?;
    println!("first call: {} after {} login(s)", res.status(), marketo.logins());
    marketo.expire_tokens();
    sim.enqueue(
        "/rest/v1/leads.json",
        Reply::json(200, r#"{"requestId":"r","success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"}]}"#),
    );
    let res = client.get(&leads).send().await?;
    let report = res.extensions().get::<Report>().cloned().unwrap_or_default();
    println!(
        "second call: {} after {} attempts and {:?} ({:?} of them the retry waits, {:?} a login or the host's rate \
         limit, lowered by the 606, holding an attempt), {} login(s) in all",
        res.status(),
        report.attempt_count(),
        report.attempts.last().map(|a| a.elapsed).unwrap_or_default(),
        report.total_delay(),
        report.total_held(),
        marketo.logins()
    );
    for a in &report.attempts {
        let status = a.status.map_or_else(|| "no response".to_owned(), |s| s.to_string());
        let code = a.code.as_deref().unwrap_or("-");
        println!("  attempt {}: {status}, code {code}: {} → {}", a.number, a.kind.as_str(), a.action.as_str());
    }
    println!("  body: {}", res.text().await?);

    // 607, the daily quota: final. The error owns what Marketo said, and when the quota resets.
    sim.enqueue(
        "/rest/v1/leads.json",
        Reply::json(
            200,
            r#"{"requestId":"q","success":false,"errors":[{"code":"607","message":"Daily quota reached"}]}"#,
        ),
    );
    let e = client.get(&leads).send().await.unwrap_err();
    match redial::reqwest::redial_error(&e) {
        Some(err) => {
            println!("third call: {err}");
            for v in err.vendor_errors() {
                println!("  Marketo said {}: {:?}", v.code, v.message);
            }
            println!("  the quota resets in {:?}", err.retry_after());
        }
        None => println!("third call: {e}"),
    }
    Ok(())
}
