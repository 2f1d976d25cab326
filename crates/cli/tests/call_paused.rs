//! `redial call` driven in-process on tokio's paused clock: the library the binary runs
//! (`redial_cli::args`, `redial_cli::call`), against the simulator on the same runtime, so the
//! quota scenario's 40 s of waits take none. `tests/call.rs` runs the binary itself.

use std::ffi::OsString;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redial_cli::args::{self, Command};
use redial_cli::call::{self, Output};
use redial_sim::vendors::marketo::{self, MarketoConfig};
use redial_sim::{Reply, Sim};
use serde_json::Value;

/// A recognisable secret: it must never be printed.
const SECRET: &str = "S3CRET-never-printed-7f1c";

/// What `run` prints, kept.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// `redial call` with these arguments (the client secret in its environment), in this test's
/// runtime: what it finished with, and what it printed on stdout and stderr.
async fn run(argv: &[&str]) -> (call::Finished, Captured, Captured) {
    let env = |var: &str| (var == "REDIAL_CLIENT_SECRET").then(|| OsString::from(SECRET));
    let Command::Call(a) = args::parse_with_env(argv.iter().map(OsString::from), env).unwrap() else {
        panic!("not a call")
    };
    let source = call::token_source(&a).unwrap();
    let layer = call::layer(&a, source.as_ref()).unwrap();
    let (out, err) = (Captured::default(), Captured::default());
    let output = Arc::new(Output::new(out.clone(), err.clone()));
    let finished = call::run(*a, Bytes::new(), call::stack(&layer), source, output).await;
    (finished, out, err)
}

/// `redial call --json --repeat 200 --concurrency 20` (and `flags`) against a Marketo sim with
/// a quota of 10 calls per 2 s and 10 at once: what it printed, parsed, and the sim.
async fn two_hundred_against_a_quota_of_10_per_2_s(flags: &[&str]) -> (Vec<Value>, marketo::MarketoHandle) {
    let sim = Sim::start().await.unwrap();
    let mut config = MarketoConfig::new("sim-client-id", SECRET);
    config.rate_limit = Some((10, Duration::from_secs(2)));
    config.max_concurrency = Some(10);
    config.latency = Duration::from_millis(5);
    let vendor = marketo::install(&sim, config);
    let (login, url) = (sim.url("/identity"), sim.url("/rest/v1/leads.json?filterType=id&filterValues=1"));
    let mut argv = vec!["call", "--vendor", "marketo", "--login-url", &login, "--client-id", "sim-client-id"];
    argv.extend_from_slice(flags);
    argv.extend_from_slice(&["--json", "--repeat", "200", "--concurrency", "20", &url]);
    let (finished, out, err) = run(&argv).await;

    let (stdout, stderr) = (out.text(), err.text());
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret was printed");
    assert_eq!(finished.tally.failed(), 0, "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let s = &lines.last().expect("a summary line")["summary"];
    assert_eq!((&s["requests"], &s["successes"], &s["logins"]), (&200.into(), &200.into(), &1.into()), "{s}");
    assert_eq!(s["failures"], serde_json::json!({}), "{s}");
    assert_eq!(vendor.logins(), 1);
    (lines, vendor)
}

#[tokio::test(start_paused = true)]
async fn two_hundred_requests_against_a_quota_of_10_per_2_s_all_succeed_without_a_606() {
    let (lines, vendor) = two_hundred_against_a_quota_of_10_per_2_s(&["--rate-limit", "10/2"]).await;
    let s = &lines.last().unwrap()["summary"];
    // 200 calls at 10 per 2 s: the last window opens after 38 s at the earliest.
    assert!(s["elapsed_ms"].as_u64().unwrap() >= 38_000, "{s}");
    let attempts = &lines[..lines.len() - 1];
    assert_eq!(attempts.len() as u64, s["attempts"].as_u64().unwrap(), "one line per attempt");
    let mut returned: Vec<u64> =
        attempts.iter().filter(|a| a["action"] == "return").map(|a| a["request"].as_u64().unwrap()).collect();
    returned.sort_unstable();
    assert_eq!(returned, (0..200).collect::<Vec<_>>());

    assert_eq!(vendor.count_code("606"), 0, "the sim refused calls for the rate");
    assert_eq!(vendor.count_code("615"), 0);
    assert_eq!(vendor.api_calls().iter().filter(|c| c.outcome_code.is_none()).count(), 200);
}

/// The same command without `--rate-limit`: the client starts at Marketo's documented 100 per
/// 20 s, meets the instance's 10 per 2 s as a burst of 606s, and learns from them what the
/// instance accepted. Slower (its window is Marketo's 20 s), and still no failure.
#[tokio::test(start_paused = true)]
async fn the_same_without_the_instances_rate_limit_learns_it_from_the_606s_and_fails_nothing() {
    let (lines, vendor) = two_hundred_against_a_quota_of_10_per_2_s(&[]).await;
    let s = &lines.last().unwrap()["summary"];
    let refused = vendor.count_code("606");
    assert!(refused > 0, "the instance's limit is below Marketo's: it refuses the first burst");
    assert_eq!(s["attempts"].as_u64().unwrap(), 200 + refused as u64, "each 606 retried once: {s}");
}

/// A login endpoint that keeps failing (503): the requests wait for a token up to their
/// deadline, and stderr says at each failed login that it is tried again, not nothing until
/// the deadline.
#[tokio::test(start_paused = true)]
async fn a_login_that_keeps_failing_is_reported_as_it_happens() {
    let sim = Sim::start().await.unwrap();
    sim.set_fallback("/identity/oauth/token", Reply::status(503));
    let (login, url) = (sim.url("/identity"), sim.url("/rest/v1/leads.json"));
    let argv = [
        "call",
        "--vendor",
        "marketo",
        "--login-url",
        &login,
        "--client-id",
        "sim-client-id",
        "--json",
        "--deadline",
        "30",
        &url,
    ];
    let (finished, out, err) = run(&argv).await;

    assert_eq!(finished.tally.failures.get("auth_failed"), Some(&1), "{}", out.text());
    let stderr = err.text();
    assert!(!stderr.contains(SECRET) && !out.text().contains(SECRET), "the secret was printed");
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("trying again")).collect();
    assert!(said.len() >= 2, "{stderr}");
    assert!(
        said[0].starts_with("redial: login failed: ") && said[0].contains("(login 1)") && said[0].contains("503"),
        "{stderr}"
    );
    assert!(finished.logins >= said.len() as u64, "{stderr}");
}
