//! The `redial-sim` binary: started on an ephemeral port, called with a real client (real
//! time), stopped by closing its stdin.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A running `redial-sim`, killed if the test fails before stopping it.
struct Running {
    child: Child,
    /// The banner: the listening line, then the endpoints and credentials.
    banner: Vec<String>,
    url: String,
}

impl Running {
    /// With `--port 0 --exit-on-stdin-eof`.
    fn start(args: &[&str]) -> Running {
        Running::start_with(args, &["--port", "0", "--exit-on-stdin-eof"])
    }

    fn start_with(args: &[&str], more: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_redial-sim"))
            .args(args)
            .args(more)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read on a thread of its own, so that a sim that prints nothing fails the test (after
        // 30 s) instead of hanging it; the thread then keeps the pipe drained.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (lines, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                if lines.send(line.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(30)).expect("the sim printed its listening line");
        let url = first
            .trim_end()
            .rsplit_once(" listening on ")
            .unwrap_or_else(|| panic!("not the listening line: {first:?}"))
            .1
            .to_owned();
        // The banner is written at once: read it to its end without waiting for more.
        let mut banner = vec![first.trim_end().to_owned()];
        while let Ok(rest) = rx.recv_timeout(Duration::from_secs(5)) {
            if !rest.starts_with("  ") {
                break;
            }
            banner.push(rest.trim_end().to_owned());
            if rest.contains("try:") || rest.contains("credentials:") {
                break;
            }
        }
        Running { child, banner, url }
    }

    /// Close stdin; the sim must exit 0 soon after.
    fn stop(mut self) -> String {
        drop(self.child.stdin.take());
        let status = exit_of(&mut self.child, "stdin closed");
        assert!(status.success(), "{status:?}");
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        stderr
    }

    fn banner_has(&self, text: &str) -> bool {
        self.banner.iter().any(|l| l.contains(text))
    }
}

/// How `child` exited, after `what`; it must exit within 10 s (a real process on real time:
/// polled every few milliseconds).
fn exit_of(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still running after {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send one request on a real-time runtime; status and body.
fn send(req: Request<Full<Bytes>>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let res =
            tokio::time::timeout(Duration::from_secs(10), client.request(req)).await.expect("the sim answers").unwrap();
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    })
}

#[test]
fn marketo_on_an_ephemeral_port_logs_in_answers_and_stops_when_stdin_closes() {
    let sim = Running::start(&["--vendor", "marketo", "--client-secret", "bin-test-secret", "--verbose"]);
    assert!(sim.banner[0].starts_with("redial-sim: marketo listening on http://127.0.0.1:"), "{:?}", sim.banner);
    assert!(sim.banner_has("client_id:     sim-client-id"), "{:?}", sim.banner);
    // A secret given on the command line is never printed (it may be a real one).
    assert!(sim.banner_has("client_secret: the one given with --client-secret (not shown)"), "{:?}", sim.banner);
    assert!(!sim.banner_has("bin-test-secret"), "{:?}", sim.banner);

    let login = Request::post(format!("{}/identity/oauth/token", sim.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials&client_id=sim-client-id&client_secret=bin-test-secret"))
        .unwrap();
    let (status, body) = send(login);
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    let call = Request::get(format!("{}/rest/v1/leads.json?filterType=id&filterValues=7", sim.url))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let (status, body) = send(call);
    assert_eq!(status, 200);
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["result"][0]["filterValues"], "7");

    // Without a token: Marketo's 601, in a 200.
    let (status, body) = send(Request::get(format!("{}/rest/v1/leads.json", sim.url)).body(Full::default()).unwrap());
    assert_eq!(status, 200);
    assert_eq!(body["errors"][0]["code"], "601");

    // --verbose: a line per request on stderr.
    let stderr = sim.stop();
    assert!(stderr.contains("POST /identity/oauth/token"), "{stderr}");
    assert!(stderr.contains("GET /rest/v1/leads.json?filterType=id&filterValues=7"), "{stderr}");
    assert!(stderr.contains("stopped after 3 requests"), "{stderr}");
}

/// An instance with other limits than Marketo's: the command the banner suggests gives the
/// client those limits, so that it does not start at 100 per 20 s and learn them from 606s.
#[test]
fn the_suggested_command_carries_the_instances_own_limits() {
    let sim = Running::start(&["--vendor", "marketo", "--rate-limit", "10/2", "--max-concurrency", "3"]);
    assert!(sim.banner_has("--rate-limit 10/2 --max-concurrency 3 http://"), "{:?}", sim.banner);
    drop(sim);
    let sim = Running::start(&["--vendor", "marketo"]);
    assert!(!sim.banner_has("--rate-limit") && !sim.banner_has("--max-concurrency"), "{:?}", sim.banner);
}

/// `--verbose` writes a line per request on stderr: a reader of it that goes away (`2>&1 |
/// head`, a log collector restarted) must neither stop the sim nor make it panic.
#[test]
fn verbose_serves_on_and_stops_cleanly_when_nobody_reads_stderr() {
    let mut sim = Running::start(&["--vendor", "marketo", "--verbose"]);
    drop(sim.child.stderr.take());
    let (status, body) = send(Request::get(format!("{}/rest/v1/leads.json", sim.url)).body(Full::default()).unwrap());
    assert_eq!((status, &body["errors"][0]["code"]), (200, &Value::from("601")), "{body}");
    // Stopping prints the requests left in the log and a last line: to a closed pipe.
    drop(sim.child.stdin.take());
    let status = exit_of(&mut sim.child, "stdin closed");
    assert!(status.success(), "{status:?}");
}

#[test]
fn every_vendor_starts_and_prints_what_it_accepts() {
    for (vendor, accepts) in [
        ("responsys", "user_name:     sim-user"),
        // The sim's own test credentials are printed, to be copied.
        ("responsys", "password:      sim-password"),
        ("adobe-edge", "client_id:     sim-client-id"),
        ("adobe-edge", "client_secret: sim-client-secret"),
        ("genesys-engage", "credentials:   none"),
    ] {
        let sim = Running::start(&["--vendor", vendor]);
        assert!(
            sim.banner[0].starts_with(&format!("redial-sim: {vendor} listening on http://127.0.0.1:")),
            "{:?}",
            sim.banner
        );
        assert!(sim.banner_has(accepts), "{vendor}: {:?}", sim.banner);
        // Quiet without --verbose.
        let stderr = sim.stop();
        assert!(stderr.is_empty(), "{vendor}: {stderr}");
    }
}

#[test]
fn responsys_with_its_own_password_logs_in() {
    let sim = Running::start(&["--vendor", "responsys", "--user", "u1", "--password", "pw1", "--token-lifetime", "60"]);
    assert!(sim.banner_has("password:      the one given with --password (not shown)"), "{:?}", sim.banner);
    assert!(!sim.banner_has("pw1"), "{:?}", sim.banner);
    let login = Request::post(format!("{}/rest/api/v1.3/auth/token", sim.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("user_name=u1&password=pw1&auth_type=password"))
        .unwrap();
    let (status, body) = send(login);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["endPoint"], sim.url.as_str());
    sim.stop();
}

/// A POST to `/_sim/<command>` on a running sim; its status and JSON answer.
fn command(sim: &Running, command: &str) -> (u16, Value) {
    send(Request::post(format!("{}/_sim/{command}", sim.url)).body(Full::default()).unwrap())
}

/// `GET /_sim`: the vendor's commands and what it saw.
fn seen(sim: &Running) -> Value {
    let (status, body) = send(Request::get(format!("{}/_sim", sim.url)).body(Full::default()).unwrap());
    assert_eq!(status, 200, "{body}");
    body
}

/// An application pointed at the sim meets a failover, and then an `UNRECOVERABLE_EXCEPTION`,
/// when its test says so, over HTTP: the binary's controls do what a Rust test does with the
/// vendor's handle.
#[test]
fn responsys_fails_over_and_back_and_fails_a_call_on_command() {
    let sim = Running::start(&["--vendor", "responsys"]);
    assert!(sim.banner_has("control:       POST http://127.0.0.1:"), "{:?}", sim.banner);
    let login = Request::post(format!("{}/rest/api/v1.3/auth/token", sim.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("user_name=sim-user&password=sim-password&auth_type=password"))
        .unwrap();
    let (_, body) = send(login);
    let token = body["authToken"].as_str().unwrap().to_owned();
    let lists = || {
        let req = Request::get(format!("{}/rest/api/v1.3/lists", sim.url)).header("authorization", &token);
        send(req.body(Full::default()).unwrap())
    };
    assert_eq!(lists().0, 200);

    assert_eq!(command(&sim, "secondary?on=true"), (200, serde_json::json!({"ok": true, "command": "secondary"})));
    let (status, body) = lists();
    assert_eq!((status, body["errorCode"].as_str()), (401, Some("API_NOT_ALLOWED_IN_SECONDARY")), "{body}");
    assert_eq!(seen(&sim)["secondary"], true);

    assert_eq!(command(&sim, "secondary?on=false").0, 200);
    assert_eq!(command(&sim, "fail-next?n=1&code=UNRECOVERABLE_EXCEPTION").0, 200);
    let (status, body) = lists();
    assert_eq!((status, body["errorCode"].as_str()), (500, Some("UNRECOVERABLE_EXCEPTION")), "{body}");
    assert_eq!(lists().0, 200, "only the next call failed");

    let seen = seen(&sim);
    assert_eq!(
        (seen["vendor"].as_str(), seen["logins"].as_u64(), seen["api_calls"].as_u64()),
        (Some("responsys"), Some(1), Some(4))
    );
    assert_eq!(seen["codes"], serde_json::json!({"API_NOT_ALLOWED_IN_SECONDARY": 1, "UNRECOVERABLE_EXCEPTION": 1}));
    assert!(seen["commands"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().starts_with("secondary?on=")));
    sim.stop();
}

/// A command the vendor does not take, a bad parameter or a GET of a command is refused, and
/// the answer says what would do.
#[test]
fn a_command_the_vendor_does_not_take_is_refused_with_its_commands() {
    let sim = Running::start(&["--vendor", "marketo"]);
    let (status, body) = command(&sim, "secondary?on=true");
    assert_eq!(status, 404, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("marketo has no command \"secondary\"") && error.contains("expire-tokens"), "{error}");
    let (status, body) = command(&sim, "fail-logins?n=many");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("n=\"many\" is not a count"), "{body}");
    assert_eq!(command(&sim, "hang-logins").0, 400, "on= is missing");
    let (status, _) = send(Request::get(format!("{}/_sim/expire-tokens", sim.url)).body(Full::default()).unwrap());
    assert_eq!(status, 405);
    // Logins refused on command, then accepted again.
    assert_eq!(command(&sim, "login-fatal?on=true").0, 200);
    let login = || {
        send(Request::get(format!("{}/identity/oauth/token?grant_type=client_credentials&client_id=sim-client-id&client_secret=sim-client-secret", sim.url)).body(Full::default()).unwrap())
    };
    assert_eq!(login().0, 401);
    assert_eq!(command(&sim, "login-fatal?on=false").0, 200);
    assert_eq!(login().0, 200);
    assert_eq!(seen(&sim)["logins"], 2);
    sim.stop();
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_it() {
    // Stdin stays open: only the signal can stop it.
    let mut sim = Running::start_with(&["--vendor", "genesys-engage"], &["--port", "0"]);
    let pid = sim.child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let status = exit_of(&mut sim.child, "SIGINT");
    assert!(status.success(), "{status:?}");
}

/// Supervisors (systemd, `docker stop`) send SIGTERM: the sim stops as for Ctrl-C, exit 0, and
/// says so with --verbose.
#[cfg(unix)]
#[test]
fn sigterm_stops_it() {
    let mut sim = Running::start_with(&["--vendor", "marketo", "--verbose"], &["--port", "0"]);
    let pid = sim.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = exit_of(&mut sim.child, "SIGTERM");
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    sim.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("stopped after 0 requests"), "{stderr}");
}

#[test]
fn help_and_bad_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_redial-sim")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.starts_with("redial-sim: "), "{help}");
    assert!(help.contains("--exit-on-stdin-eof"));

    for (args, want) in [
        (&["--port", "0"][..], "missing --vendor"),
        (&["--vendor", "acme"][..], "unknown vendor"),
        (&["--vendor", "genesys-engage", "--client-id", "x"][..], "does not apply"),
        (&["--vendor", "marketo", "--rate-limit", "fast"][..], "--rate-limit"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_redial-sim")).args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("redial-sim: ") && stderr.contains(want), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_port_in_use_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_redial-sim"))
        .args(["--vendor", "marketo", "--port", &port])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

/// An argument that is not UTF-8 (a path or a secret in another encoding) is a usage error,
/// exit 2, and is not echoed: before, `std::env::args` panicked on it.
#[cfg(unix)]
#[test]
fn an_argument_that_is_not_utf8_is_refused_without_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"s3cret-\xff");
    let out = Command::new(env!("CARGO_BIN_EXE_redial-sim"))
        .args(["--vendor", "marketo", "--client-secret"])
        .arg(bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end(), "redial-sim: an argument is not valid UTF-8");
    assert!(!stderr.contains("s3cret") && !stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());
}
