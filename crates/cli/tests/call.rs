//! `redial call` over the real binary, against the vendor simulator running in this test
//! process on a real-time runtime (the binary runs in real time too).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use redial_sim::vendors::marketo::{self, MarketoConfig, MarketoHandle};
use redial_sim::vendors::responsys::{self, ResponsysConfig};
use redial_sim::{Reply, Sim};
use serde_json::Value;

/// A recognisable secret: it must never be printed.
const SECRET: &str = "S3CRET-never-printed-7f1c";

/// A sim served by worker threads of its own runtime while the test thread runs the binary.
struct Vendor {
    sim: Sim,
    marketo: Option<MarketoHandle>,
    _runtime: tokio::runtime::Runtime,
}

impl Vendor {
    fn start() -> Vendor {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let sim = runtime.block_on(Sim::start()).unwrap();
        Vendor { sim, marketo: None, _runtime: runtime }
    }

    /// With a Marketo instance accepting `sim-client-id` / [`SECRET`], fast calls, and this rate
    /// limit.
    fn marketo(rate_limit: Option<(u32, Duration)>) -> Vendor {
        let mut v = Vendor::start();
        let mut config = MarketoConfig::new("sim-client-id", SECRET);
        config.rate_limit = rate_limit;
        config.max_concurrency = Some(10);
        config.latency = Duration::from_millis(5);
        v.marketo = Some(marketo::install(&v.sim, config));
        v
    }

    fn handle(&self) -> &MarketoHandle {
        self.marketo.as_ref().unwrap()
    }

    fn url(&self, path: &str) -> String {
        self.sim.url(path)
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Every stdout line, parsed.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
    }

    fn assert_no_secret(&self) {
        assert!(!self.stdout.contains(SECRET), "secret on stdout: {}", self.stdout);
        assert!(!self.stderr.contains(SECRET), "secret on stderr: {}", self.stderr);
    }
}

/// Run `redial` with these arguments and environment variables (the secret variables of the
/// test's own environment are removed).
fn redial(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redial"));
    cmd.args(args)
        .env_remove("REDIAL_CLIENT_SECRET")
        .env_remove("REDIAL_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `redial call --vendor marketo` with the sim's login, the secret from the environment.
fn marketo_call(v: &Vendor, extra: &[&str]) -> Run {
    let login = v.url("/identity");
    let mut args = vec!["call", "--vendor", "marketo", "--login-url", &login, "--client-id", "sim-client-id"];
    args.extend_from_slice(extra);
    redial(&args, &[("REDIAL_CLIENT_SECRET", SECRET)])
}

/// `redial` started with these arguments and environment variables, its stdout and stderr
/// piped, once it printed its first line (the run is under way): the child, the rest of its
/// stdout, and that line.
fn started(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redial"))
        .args(args)
        .env_remove("REDIAL_CLIENT_SECRET")
        .env_remove("REDIAL_PASSWORD")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    (child, stdout, first)
}

fn summary(lines: &[Value]) -> &Value {
    let last = lines.last().expect("a summary line");
    &last["summary"]
}

/// The binary end to end: a Marketo login from the environment's secret, repeated calls, one
/// JSON line per attempt and the summary. (The quota scenario, 200 calls at 10 per 2 s, runs on
/// the paused clock in `tests/call_paused.rs`: here it would take 40 s of real time.)
#[test]
fn repeated_calls_print_a_line_per_attempt_and_a_summary_that_counts_attempts_and_logins() {
    let v = Vendor::marketo(None);
    let url = v.url("/rest/v1/leads.json?filterType=id&filterValues=1");
    let r = marketo_call(&v, &["--json", "--repeat", "20", "--concurrency", "5", &url]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    r.assert_no_secret();
    let lines = r.json_lines();
    let s = summary(&lines);
    assert_eq!(s["requests"], 20, "{s}");
    assert_eq!(s["successes"], 20, "{s}");
    assert_eq!(s["failures"], serde_json::json!({}), "{s}");
    assert_eq!(s["attempts"], 20, "{s}");
    assert_eq!(s["logins"], 1, "{s}");

    let attempts = &lines[..lines.len() - 1];
    assert_eq!(attempts.len(), 20);
    let mut requests: Vec<u64> = attempts.iter().map(|a| a["request"].as_u64().unwrap()).collect();
    requests.sort_unstable();
    assert_eq!(requests, (0..20).collect::<Vec<_>>());
    for a in attempts {
        for field in [
            "request",
            "attempt",
            "status",
            "failure",
            "code",
            "kind",
            "action",
            "rule",
            "delay_ms",
            "sent_ms",
            "elapsed_ms",
        ] {
            assert!(a.get(field).is_some(), "no {field}: {a}");
        }
    }
    let vendor = v.handle();
    assert_eq!(vendor.logins(), 1);
    assert_eq!(vendor.api_calls().iter().filter(|c| c.outcome_code.is_none()).count(), 20);
}

#[test]
fn a_single_get_prints_the_status_line_headers_and_body() {
    let v = Vendor::marketo(None);
    let r = marketo_call(&v, &[&v.url("/rest/v1/leads.json?filterType=id&filterValues=42")]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(r.stdout.starts_with("HTTP/1.1 200 OK\r\n"), "{}", r.stdout);
    let (head, body) = r.stdout.split_once("\r\n\r\n").expect("a blank line after the head");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["result"][0]["filterValues"], "42");
    r.assert_no_secret();
    // The token went on the call: one login, one call served.
    assert_eq!(v.handle().logins(), 1);
    assert_eq!(v.handle().api_calls()[0].outcome_code, None);
}

#[test]
fn a_404_is_printed_and_exits_1() {
    let v = Vendor::start();
    let r = redial(&["call", &v.url("/nothing/here")], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.starts_with("HTTP/1.1 404 Not Found\r\n"), "{}", r.stdout);
    assert!(r.stderr.starts_with("redial: "), "{}", r.stderr);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
    assert_eq!(v.sim.count("/nothing/here"), 1, "a 404 is never retried");

    // With --json: the attempt, the failure, and a summary counting it by kind.
    let r = redial(&["call", "--json", &v.url("/nothing/here")], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let lines = r.json_lines();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert_eq!(lines[0]["status"], 404);
    assert_eq!(lines[0]["kind"], "fatal");
    assert_eq!(lines[0]["action"], "fail");
    assert_eq!(lines[1]["request"], 0);
    assert_eq!(lines[1]["reason"], "fatal");
    assert!(lines[1]["error"].as_str().unwrap().contains("404"));
    let s = summary(&lines);
    assert_eq!(s["failures"]["fatal"], 1);
    assert_eq!((s["requests"].as_u64(), s["successes"].as_u64()), (Some(1), Some(0)));
}

/// On a terminal (stdout and stderr the same one), a failure's body without a last newline is
/// followed by a line break, then the error: not by a line of its own that says only `redial: `.
#[cfg(unix)]
#[test]
fn on_a_terminal_the_error_starts_its_own_line_after_the_body() {
    use std::io::Read;

    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

    let v = Vendor::start();
    v.sim.set_fallback("/nothing", Reply::json(404, r#"{"error":"nope"}"#));
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new().read(true).write(true).open(name.to_str().unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_redial"))
        .args(["call", &v.url("/nothing")])
        .stdin(Stdio::null())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    // What it prints is far less than the terminal buffers: it exits without a reader.
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    // Every copy of the terminal's other side is closed: the read ends (EIO) after the output.
    let mut printed = Vec::new();
    let _ = std::fs::File::from(master).read_to_end(&mut printed);
    let printed = String::from_utf8(printed).unwrap();
    assert!(printed.contains("{\"error\":\"nope\"}\r\nredial: "), "{printed:?}");
    assert!(!printed.lines().any(|l| l.trim_end() == "redial:"), "{printed:?}");
}

/// Ctrl-C (SIGINT) during a run: the summary of the requests that finished, marked
/// interrupted, and exit status 130; not a process killed without one.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_run_with_its_summary_and_exits_130() {
    use std::io::Read;

    use rustix::process::{kill_process, Pid, Signal};

    let v = Vendor::marketo(None);
    let (login, url) = (v.url("/identity"), v.url("/rest/v1/leads.json"));
    // 500 calls of 5 ms one at a time: a few seconds at most, however the signal is taken.
    let args = ["call", "--vendor", "marketo", "--login-url", &login, "--client-id", "sim-client-id"];
    let more = ["--rate-limit", "1000/1", "--json", "--repeat", "500", &url];
    let (mut child, mut stdout, mut printed) =
        started(&[&args[..], &more[..]].concat(), &[("REDIAL_CLIENT_SECRET", SECRET)]);
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    kill_process(pid, Signal::INT).unwrap();
    stdout.read_to_string(&mut printed).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {printed}");
    let lines: Vec<Value> = printed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let s = summary(&lines);
    assert_eq!(s["interrupted"], true, "{s}");
    let finished = s["requests"].as_u64().unwrap();
    assert!((1..500).contains(&finished), "{s}");
    assert_eq!(s["successes"].as_u64(), Some(finished), "{s}");
    assert_eq!(lines.len() as u64, finished + 1, "a line per finished request, then the summary");
}

#[test]
fn retries_show_in_the_attempt_lines_and_repeat_prints_a_summary_on_stderr() {
    let v = Vendor::start();
    let path = "/api/items";
    // `Retry-After: 0`: the retry goes at once (the binary runs in real time).
    v.sim.enqueue(path, Reply::status(503).header("Retry-After", "0"));
    v.sim.set_fallback(path, Reply::json(200, r#"{"ok":true}"#));
    let r = redial(&["call", "--json", &v.url(path)], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = r.json_lines();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert_eq!(lines[0]["attempt"], 1);
    assert_eq!(lines[0]["status"], 503);
    assert_eq!(lines[0]["action"], "retry");
    assert_eq!(lines[0]["delay_ms"], 0, "{}", lines[0]);
    assert_eq!(lines[1]["attempt"], 2);
    assert_eq!(lines[1]["action"], "return");
    assert_eq!(summary(&lines)["attempts"], 2);
    assert_eq!(summary(&lines)["logins"], 0);

    // Without --json, --repeat prints nothing on stdout and one summary line on stderr.
    let r = redial(&["call", "--repeat", "5", "--concurrency", "5", &v.url(path)], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr.starts_with("redial: 5 requests in ") && r.stderr.contains("5 succeeded, 0 failed"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

/// With --repeat and without --json, the first 10 failures are described, then one line says
/// that the others are not, however many requests fail at once (here 200 concurrent requests
/// fail together on one refused login).
#[test]
fn repeat_describes_the_first_ten_failures_then_says_once_that_more_are_not_shown() {
    let v = Vendor::marketo(None);
    let (login, url) = (v.url("/identity"), v.url("/rest/v1/leads.json"));
    let args = [
        "call",
        "--vendor",
        "marketo",
        "--login-url",
        &login,
        "--client-id",
        "sim-client-id",
        "--repeat",
        "200",
        "--concurrency",
        "200",
        &url,
    ];
    // Bounded: a race in the counting shows within a few runs.
    for _ in 0..10 {
        let r = redial(&args, &[("REDIAL_CLIENT_SECRET", "not-the-secret")]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().collect();
        let shown = lines.iter().filter(|l| l.starts_with("redial: request ")).count();
        let more: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains("more failures")).collect();
        assert_eq!((shown, more.len()), (10, 1), "{}", r.stderr);
        assert_eq!(more[0], 10, "after the 10 described: {}", r.stderr);
        assert!(lines.last().is_some_and(|l| l.contains("0 succeeded, 200 failed")), "{}", r.stderr);
    }
}

#[test]
fn data_from_a_file_headers_and_the_method_are_sent() {
    let v = Vendor::start();
    v.sim.set_fallback("/api/items", Reply::json(201, r#"{"id":1}"#));
    let file = std::env::temp_dir().join(format!("redial-call-test-{}.json", std::process::id()));
    std::fs::write(&file, br#"{"name":"x"}"#).unwrap();
    let data = format!("@{}", file.display());
    let r = redial(
        &[
            "call",
            "-X",
            "put",
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-Trace: 7",
            "-d",
            &data,
            &v.url("/api/items"),
        ],
        &[],
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("HTTP/1.1 201 Created\r\n"), "{}", r.stdout);
    let sent = v.sim.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, http::Method::PUT);
    assert_eq!(&sent[0].body[..], br#"{"name":"x"}"#);
    assert_eq!(sent[0].headers["content-type"], "application/json");
    assert_eq!(sent[0].headers["x-trace"], "7");

    // -d alone: POST, form-encoded as curl does.
    let r = redial(&["call", "-d", "a=1", &v.url("/api/items")], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sent = v.sim.requests();
    assert_eq!(sent[1].method, http::Method::POST);
    assert_eq!(sent[1].headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(&sent[1].body[..], b"a=1");
}

#[test]
fn the_secret_is_never_printed() {
    let v = Vendor::marketo(None);
    let url = v.url("/rest/v1/leads.json");
    let login = v.url("/identity");
    // From the environment, from the flag; the single response, JSON, the human summary.
    let runs = [
        marketo_call(&v, &[&url]),
        marketo_call(&v, &["--json", &url]),
        marketo_call(&v, &["--repeat", "2", &url]),
        redial(
            &[
                "call",
                "--vendor",
                "marketo",
                "--login-url",
                &login,
                "--client-id",
                "sim-client-id",
                "--client-secret",
                SECRET,
                "--json",
                &url,
            ],
            &[],
        ),
    ];
    for r in &runs {
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.assert_no_secret();
    }

    // A refused login: the error says so, without the secret (here the sim expects another).
    let other = Vendor::start();
    marketo::install(&other.sim, MarketoConfig::new("sim-client-id", "the-right-one"));
    let login = other.url("/identity");
    for json in [false, true] {
        let mut args = vec![
            "call",
            "--vendor",
            "marketo",
            "--login-url",
            &login,
            "--client-id",
            "sim-client-id",
            "--max-attempts",
            "1",
            "--deadline",
            "5",
        ];
        if json {
            args.push("--json");
        }
        let url = other.url("/rest/v1/leads.json");
        args.push(&url);
        let r = redial(&args, &[("REDIAL_CLIENT_SECRET", SECRET)]);
        assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
        r.assert_no_secret();
        let said = if json { &r.stdout } else { &r.stderr };
        assert!(said.contains("credential"), "{said}");
        if json {
            assert_eq!(summary(&r.json_lines())["failures"]["auth_failed"], 1, "{}", r.stdout);
        }
    }

    // Bad usage names the missing secret's variable, never a value.
    let r = redial(&["call", "--vendor", "marketo", "--login-url", &login, "--client-id", "x", &url], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("REDIAL_CLIENT_SECRET"), "{}", r.stderr);
}

/// A vendor that asks for a credential, called without the login flags: the error says which
/// flags log in, on stderr and in the JSON error line.
#[test]
fn a_credential_asked_for_without_the_login_flags_names_them() {
    let v = Vendor::marketo(None);
    let url = v.url("/rest/v1/leads.json");
    let r = redial(&["call", "--vendor", "marketo", &url], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("601"), "{}", r.stderr);
    assert!(r.stderr.contains("--login-url, --client-id and --client-secret or REDIAL_CLIENT_SECRET"), "{}", r.stderr);
    let r = redial(&["call", "--vendor", "marketo", "--json", &url], &[]);
    let lines = r.json_lines();
    assert_eq!(lines[1]["reason"], "auth_expired", "{}", r.stdout);
    assert!(lines[1]["error"].as_str().unwrap().contains("give --login-url"), "{}", r.stdout);
}

/// A Responsys login whose `endPoint` is on another host than the URL's: the error names that
/// host, the one to call (the help says to call URLs on it).
#[test]
fn a_login_endpoint_on_another_host_is_named() {
    let v = Vendor::start();
    responsys::install(&v.sim, ResponsysConfig::default());
    let addr = v.sim.addr();
    let login = v.url("");
    // The same sim, by another name of the loopback address: not the endPoint's host.
    let url = format!("http://localhost:{}/rest/api/v1.3/lists", addr.port());
    let args = ["call", "--vendor", "responsys", "--login-url", &login, "--user", "sim-user", &url];
    let r = redial(&args, &[("REDIAL_PASSWORD", "sim-password")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("endpoint on {addr}, a host")), "{}", r.stderr);
}

/// A generic OAuth 2 login sends the client's id and secret in HTTP Basic unless told
/// `--client-auth post`: a token endpoint that takes them only in the form body (as the
/// simulated Marketo identity does) refuses the first and answers the second.
#[test]
fn a_generic_login_sends_the_client_secret_in_the_form_body_when_told() {
    let v = Vendor::marketo(None);
    let token_url = v.url("/identity/oauth/token");
    let call = |extra: &[&str]| {
        let mut args = vec!["call", "--login-url", &token_url, "--client-id", "sim-client-id"];
        args.extend_from_slice(extra);
        let url = v.url("/rest/v1/leads.json");
        args.push(&url);
        redial(&args, &[("REDIAL_CLIENT_SECRET", SECRET)])
    };
    let basic = call(&[]);
    assert_eq!(basic.code, 1, "{}", basic.stderr);
    assert!(basic.stderr.contains("login"), "{}", basic.stderr);
    let post = call(&["--client-auth", "post"]);
    assert_eq!(post.code, 0, "{}", post.stderr);
    assert!(post.stdout.starts_with("HTTP/1.1 200"), "{}", post.stdout);
    assert_eq!(v.handle().logins(), 2, "one refused, one answered");
    assert!(v.handle().api_calls().iter().any(|c| c.outcome_code.is_none()), "the call carried a good token");
    basic.assert_no_secret();
    post.assert_no_secret();
}

/// `redial call --json --repeat 50 … | head -1`: once the pipe is closed, the run stops at
/// its next line, not after every request is sent; the status (3) says the output was lost.
#[test]
fn a_closed_output_stops_the_run_and_exits_3() {
    let v = Vendor::start();
    v.sim.set_fallback("/slow", Reply::json(200, "{}").delay(Duration::from_millis(50)));
    let (child, stdout, first) = started(&["call", "--json", "--repeat", "50", &v.url("/slow")], &[]);
    assert!(first.contains("\"request\":0"), "{first}");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the output"));
    let sent = v.sim.count("/slow");
    assert!(sent < 10, "{sent} requests sent after the pipe closed");
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    let missing = PathBuf::from("/nonexistent/redial-call-test");
    let data = format!("@{}", missing.display());
    let cases: &[(&[&str], &str)] = &[
        (&["call"], "missing URL"),
        (&["call", "https://example.com/x"], "no TLS"),
        (&["call", "ftp://example.com/x"], "invalid URL"),
        (&["call", "/relative"], "invalid URL"),
        (&["call", "--vendor", "acme", "http://127.0.0.1:1/"], "unknown vendor"),
        (&["call", "--repeat", "0", "http://127.0.0.1:1/"], "--repeat"),
        (&["call", "--concurrency", "x", "http://127.0.0.1:1/"], "--concurrency"),
        (&["call", "--rate-limit", "10", "http://127.0.0.1:1/"], "N/SECONDS"),
        (&["call", "--rate-limit", "10/0", "http://127.0.0.1:1/"], "--rate-limit"),
        (&["call", "--deadline", "-1", "http://127.0.0.1:1/"], "--deadline"),
        (&["call", "--max-attempts", "0", "http://127.0.0.1:1/"], "--max-attempts"),
        (&["call", "-H", "NoColon", "http://127.0.0.1:1/"], "Name: value"),
        (&["call", "--bogus", "http://127.0.0.1:1/"], "unknown flag"),
        (&["call", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"], "more than one URL"),
        (
            &["call", "--vendor", "marketo", "--client-id", "x", "--client-secret", "y", "http://127.0.0.1:1/"],
            "--login-url",
        ),
        (
            &[
                "call",
                "--vendor",
                "marketo",
                "--login-url",
                "https://x.mktorest.com/identity",
                "--client-id",
                "x",
                "--client-secret",
                "y",
                "http://127.0.0.1:1/",
            ],
            "no TLS",
        ),
        (&["call", "--vendor", "marketo", "--user", "u", "http://127.0.0.1:1/"], "not a login flag of marketo"),
        (
            &[
                "call",
                "--vendor",
                "responsys",
                "--login-url",
                "http://127.0.0.1:1",
                "--user",
                "u",
                "http://127.0.0.1:1/",
            ],
            "REDIAL_PASSWORD",
        ),
        (&["call", "--vendor", "genesys-engage", "--client-id", "x", "http://127.0.0.1:1/"], "no login"),
        (&["call", "--client-auth", "digest", "http://127.0.0.1:1/"], "expected basic or post"),
        (
            &["call", "--vendor", "marketo", "--client-auth", "post", "http://127.0.0.1:1/"],
            "not a login flag of marketo",
        ),
        (&["call", "-d", &data, "http://127.0.0.1:1/"], "cannot read"),
    ];
    for (args, want) in cases {
        let r = redial(args, &[]);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert!(r.stderr.starts_with("redial: "), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
    }

    let r = redial(&["call", "--help"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("Usage: redial call"), "{}", r.stdout);
    assert!(r.stdout.contains("http://"), "the help says plain HTTP only");
    let r = redial(&["help", "call"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("Usage: redial call"));
}

#[test]
fn a_refused_connection_is_a_failure_counted_by_kind() {
    // A port nobody listens on: take one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/x");
    let r = redial(&["call", "--json", "--max-attempts", "2", "--repeat", "2", "--concurrency", "2", &url], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let lines = r.json_lines();
    let s = summary(&lines);
    assert_eq!(s["successes"], 0, "{s}");
    assert_eq!(s["attempts"], 4, "{s}");
    assert_eq!(s["failures"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 2);
    assert!(lines.iter().any(|l| l["failure"] == "connect"), "{}", r.stdout);

    // Without --json the error says why the connection failed, not only that it did.
    let r = redial(&["call", "--max-attempts", "1", &url], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("gave up after 1 attempt "), "{}", r.stderr);
    assert!(r.stderr.to_lowercase().contains("connection refused"), "{}", r.stderr);
}

/// "Secrets are never printed": not in a usage error either, whatever the mistake.
#[test]
fn usage_errors_never_echo_a_credential() {
    let url = "http://127.0.0.1:1/rest/v1/leads.json";
    let mistakes: [&[&str]; 13] = [
        // A header without its colon, and one whose value is not a valid header value.
        &["call", "-H", "Authorization Bearer TOKEN-S3CRET", url],
        &["call", "-H", "Authorization: Bearer TOKEN-S3CRET\r", url],
        // A flag left without its value: the next flag is not taken for it, nor the secret for the URL.
        &[
            "call",
            "--vendor",
            "marketo",
            "--login-url",
            "http://h/identity",
            "--client-id",
            "--client-secret",
            "TOKEN-S3CRET",
            url,
        ],
        &["call", "--vendor", "responsys", "--login-url", "http://h", "--user", "--password", "TOKEN-S3CRET", url],
        // A login URL with the secret in its query.
        &["call", "--vendor", "marketo", "--login-url", "https://h/identity?client_secret=TOKEN-S3CRET", url],
        // A flag's value forgotten: the URL, with a token in its query or userinfo, is taken for it.
        &["call", "--vendor", "http://x.mktorest.com/rest/v1/leads.json?access_token=TOKEN-S3CRET"],
        &["call", "--concurrency", "http://h/x?access_token=TOKEN-S3CRET", url],
        &["call", "--deadline", "http://u:TOKEN-S3CRET@h/x", url],
        &["call", "-X", "GET", "--rate-limit", "http://h/x?access_token=TOKEN-S3CRET", url],
        &["explain", "--vendor", "http://h/x?access_token=TOKEN-S3CRET", "--status", "200"],
        &["explain", "--vendor", "generic", "--status", "http://h/x?access_token=TOKEN-S3CRET"],
        &["explain", "--vendor", "generic", "--status", "200", "http://h/x?access_token=TOKEN-S3CRET"],
        // curl's `-u user:password`, attached: not a flag of redial.
        &["call", "-uadmin:TOKEN-S3CRET", url],
    ];
    for args in mistakes {
        let r = redial(args, &[]);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("TOKEN-S3CRET") && !r.stdout.contains("TOKEN-S3CRET"), "{args:?}: {}", r.stderr);
    }
}
