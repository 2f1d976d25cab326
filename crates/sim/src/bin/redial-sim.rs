//! `redial-sim`: a fake vendor on a port, for pointing your own application at a misbehaving
//! vendor. See `redial-sim --help`.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use redial_sim::vendors::adobe::{self, AdobeConfig};
use redial_sim::vendors::control::{Controls, PATH};
use redial_sim::vendors::genesys::{self, GenesysConfig};
use redial_sim::vendors::marketo::{self, MarketoConfig};
use redial_sim::vendors::responsys::{self, ResponsysConfig};
use redial_sim::{Recorded, Sim};

const USAGE: &str = "\
redial-sim: a fake vendor API on a local port, to point your own application at

Usage: redial-sim --vendor NAME [options]

  --vendor NAME            marketo, responsys, adobe-edge, genesys-engage
  --port PORT              the port to listen on (default 0: any free port)
  --bind ADDR              the address to listen on (default 127.0.0.1; another is warned of)

Vendor knobs (each vendor takes only its own):
  --client-id ID           marketo, adobe-edge: the accepted client id (default sim-client-id)
  --client-secret SECRET   marketo, adobe-edge: the accepted secret (default sim-client-secret)
  --user NAME              responsys: the accepted user name (default sim-user)
  --password PASSWORD      responsys: the accepted password (default sim-password)
  --token-lifetime SECS    marketo, responsys, adobe-edge: how long a token lives
                           (defaults 3600, 7200, 86399)
  --rate-limit N/SECS|none marketo: at most N calls in any window of SECS (default 100/20)
  --max-concurrency N|none marketo: at most N calls processed at once (default 10)
  --latency-ms MS          marketo: how long a successful call takes (default 50)

  --verbose                print a line on stderr for every request served
  --exit-on-stdin-eof      also stop when standard input closes (for tests and supervisors)
  -h, --help               print this help

The first line on stdout is `redial-sim: VENDOR listening on http://ADDR:PORT`; the lines
after it name the endpoints and the credentials the fake vendor accepts (its default test
credentials are printed on purpose; a secret or password given with a flag never is). Runs until Ctrl-C or SIGTERM. The vendors' behaviour (tokens, 601/602/606/615,
INVALID_TOKEN, EXEG problems, SOAP faults) is described in the docs of redial_sim::vendors.
Responsys' login names the listening address as its endPoint.

Misbehaving on demand: `POST /_sim/<command>?<parameters>` on the same port, for example
  curl -X POST 'http://127.0.0.1:8080/_sim/secondary?on=true'            (responsys fails over)
  curl -X POST 'http://127.0.0.1:8080/_sim/fail-next?n=1&code=UNRECOVERABLE_EXCEPTION'
  curl -X POST 'http://127.0.0.1:8080/_sim/throttle-next?n=3&retry_after=2'   (adobe-edge)
  curl -X POST 'http://127.0.0.1:8080/_sim/expire-tokens'
`GET /_sim` answers the vendor's commands (each vendor has its own: token expiry, failing or
hanging logins, failover, error codes, throttling, SOAP faults before or after their effect)
and what it has seen: logins, API calls, and the calls by error code.
Exit status: 0 when stopped, 1 when it cannot listen, 2 on bad arguments.
";

/// The vendor to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Marketo,
    Responsys,
    AdobeEdge,
    GenesysEngage,
}

impl Vendor {
    fn from_name(name: &str) -> Option<Vendor> {
        match name {
            "marketo" => Some(Vendor::Marketo),
            "responsys" => Some(Vendor::Responsys),
            "adobe-edge" => Some(Vendor::AdobeEdge),
            "genesys-engage" => Some(Vendor::GenesysEngage),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Vendor::Marketo => "marketo",
            Vendor::Responsys => "responsys",
            Vendor::AdobeEdge => "adobe-edge",
            Vendor::GenesysEngage => "genesys-engage",
        }
    }

    /// The knobs this vendor takes.
    fn knobs(self) -> &'static [&'static str] {
        match self {
            Vendor::Marketo => &[
                "--client-id",
                "--client-secret",
                "--token-lifetime",
                "--rate-limit",
                "--max-concurrency",
                "--latency-ms",
            ],
            Vendor::Responsys => &["--user", "--password", "--token-lifetime"],
            Vendor::AdobeEdge => &["--client-id", "--client-secret", "--token-lifetime"],
            Vendor::GenesysEngage => &[],
        }
    }
}

/// The command line.
#[derive(Debug, Default)]
struct Args {
    vendor: Option<Vendor>,
    port: u16,
    bind: Option<IpAddr>,
    client_id: Option<String>,
    client_secret: Option<String>,
    user: Option<String>,
    password: Option<String>,
    token_lifetime: Option<Duration>,
    /// `Some(None)`: `none`, no limit.
    rate_limit: Option<Option<(u32, Duration)>>,
    max_concurrency: Option<Option<u32>>,
    latency: Option<Duration>,
    verbose: bool,
    exit_on_stdin_eof: bool,
    /// The knobs given, to check they fit the vendor.
    knobs: Vec<&'static str>,
}

enum Parsed {
    Help,
    Run(Box<Args>),
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut a = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        // A value is never the next flag: `--client-id --port 80` is a missing client id. Not
        // shown: it may be a secret that starts with "--" (give it as `--flag=value`).
        let mut value = || match inline.clone() {
            Some(v) => Ok(v),
            None => match args.next() {
                Some(v) if v.starts_with("--") && v.len() > 2 => Err(format!(
                    "{name} needs a value (the next argument is a flag; write {name}=… for one that starts with --)"
                )),
                Some(v) => Ok(v),
                None => Err(format!("{name} needs a value")),
            },
        };
        let flag = |a: &mut Args, knob: &'static str| a.knobs.push(knob);
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--vendor" => {
                let v = value()?;
                a.vendor = Some(Vendor::from_name(&v).ok_or_else(|| {
                    format!("unknown vendor {v:?} (valid: marketo, responsys, adobe-edge, genesys-engage)")
                })?);
            }
            "--port" => {
                let v = value()?;
                a.port = v.parse().map_err(|_| format!("invalid --port {v:?}: expected 0 to 65535"))?;
            }
            "--bind" => {
                let v = value()?;
                a.bind = Some(v.parse().map_err(|_| format!("invalid --bind {v:?}: expected an IP address"))?);
            }
            "--client-id" => {
                a.client_id = Some(value()?);
                flag(&mut a, "--client-id");
            }
            "--client-secret" => {
                a.client_secret = Some(value()?);
                flag(&mut a, "--client-secret");
            }
            "--user" => {
                a.user = Some(value()?);
                flag(&mut a, "--user");
            }
            "--password" => {
                a.password = Some(value()?);
                flag(&mut a, "--password");
            }
            "--token-lifetime" => {
                a.token_lifetime = Some(seconds(&value()?, "--token-lifetime")?);
                flag(&mut a, "--token-lifetime");
            }
            "--rate-limit" => {
                let v = value()?;
                a.rate_limit = Some(if v == "none" { None } else { Some(rate_limit(&v)?) });
                flag(&mut a, "--rate-limit");
            }
            "--max-concurrency" => {
                let v = value()?;
                a.max_concurrency = Some(if v == "none" { None } else { Some(count(&v, "--max-concurrency")?) });
                flag(&mut a, "--max-concurrency");
            }
            "--latency-ms" => {
                let v = value()?;
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|ms| *ms <= 3_600_000)
                    .ok_or_else(|| format!("invalid --latency-ms {v:?}: expected 0 to 3600000"))?;
                a.latency = Some(Duration::from_millis(ms));
                flag(&mut a, "--latency-ms");
            }
            "--verbose" | "-v" => a.verbose = true,
            "--exit-on-stdin-eof" => a.exit_on_stdin_eof = true,
            other if other.starts_with('-') => return Err(format!("unknown flag {other} (see `redial-sim --help`)")),
            other => return Err(format!("unexpected argument {other:?} (see `redial-sim --help`)")),
        }
    }
    let vendor = a.vendor.ok_or("missing --vendor (marketo, responsys, adobe-edge, genesys-engage)")?;
    if let Some(knob) = a.knobs.iter().find(|k| !vendor.knobs().contains(k)) {
        return Err(format!("{knob} does not apply to {}", vendor.name()));
    }
    Ok(Parsed::Run(Box::new(a)))
}

fn count(s: &str, flag: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("invalid {flag} {s:?}: expected a whole number of at least 1"))
}

fn seconds(s: &str, flag: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid {flag} {s:?}: expected seconds, greater than 0");
    let secs: f64 = s.parse().map_err(|_| invalid())?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(invalid());
    }
    // A value such as 1e-10 is more than 0 but rounds to 0 ns; one such as 1e20 is more than a
    // duration holds.
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(invalid()),
        Err(_) => Err(format!("invalid {flag} {s:?}: too large (at most {} seconds)", u64::MAX)),
    }
}

fn rate_limit(s: &str) -> Result<(u32, Duration), String> {
    let (n, secs) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid --rate-limit {s:?}: expected N/SECS (e.g. 100/20) or none"))?;
    Ok((count(n, "--rate-limit")?, seconds(secs, "--rate-limit")?))
}

fn main() -> ExitCode {
    // Arguments that are not UTF-8 are refused here, not left to panic in `std::env::args`.
    let args: Result<Vec<String>, _> = std::env::args_os().skip(1).map(|a| a.into_string()).collect();
    let Ok(args) = args else {
        eprintln!("redial-sim: an argument is not valid UTF-8");
        return ExitCode::from(2);
    };
    let args = match parse(args) {
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => *args,
        Err(e) => {
            eprintln!("redial-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redial-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(args));
    runtime.shutdown_background();
    code
}

/// `eprintln!` for the sim while it serves: whoever read its stderr may be gone (`2>&1 | head`,
/// a log collector restarted), and a write that fails is dropped: `eprintln!` would panic,
/// and stop the sim under the application that uses it.
macro_rules! log {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

async fn serve(args: Args) -> ExitCode {
    let vendor = args.vendor.expect("checked by parse");
    let addr = SocketAddr::new(args.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), args.port);
    let sim = match Sim::start_on(addr).await {
        Ok(sim) => sim,
        Err(e) => {
            log!("redial-sim: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The handler is registered at the first poll: before the banner, so that whoever read the
    // URL can stop the sim with Ctrl-C at once.
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let interrupted = std::future::poll_fn(|cx| Poll::Ready(ctrl_c.as_mut().poll(cx))).await;
    if let Poll::Ready(r) = interrupted {
        if let Err(e) = r {
            log!("redial-sim: cannot listen for Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    // SIGTERM, as supervisors and `docker stop` send, stops it as Ctrl-C does.
    #[cfg(unix)]
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            log!("redial-sim: cannot listen for SIGTERM ({e}); it will end the sim at once");
            None
        }
    };
    let terminated = async {
        #[cfg(unix)]
        if let Some(signal) = terminate.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await
    };
    tokio::pin!(terminated);
    let banner = install(&sim, vendor, &args);
    // One write, so a reader of the first line never sees half of it.
    let mut stdout = io::stdout().lock();
    if stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        // Nobody reads stdout: keep serving all the same.
    }
    drop(stdout);
    if let Some(warning) = exposed(sim.addr().ip()) {
        log!("{warning}");
    }

    let stdin_closed = async {
        if !args.exit_on_stdin_eof {
            return std::future::pending().await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = [0u8; 1024];
            let mut stdin = io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = tx.send(());
        });
        let _ = rx.await;
    };
    let mut drain = tokio::time::interval(Duration::from_millis(if args.verbose { 100 } else { 1000 }));
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stdin_closed);
    let mut served = 0u64;
    loop {
        tokio::select! {
            r = &mut ctrl_c => {
                if let Err(e) = r {
                    log!("redial-sim: cannot listen for Ctrl-C ({e}); stopping");
                }
                break;
            }
            () = &mut stdin_closed => break,
            () = &mut terminated => break,
            _ = drain.tick() => {
                // The log is drained, printed if asked: a long run keeps bounded memory.
                for req in sim.take_requests() {
                    served += 1;
                    if args.verbose {
                        log!("{}", describe(served, &req));
                    }
                }
            }
        }
    }
    sim.shutdown();
    if args.verbose {
        for req in sim.take_requests() {
            served += 1;
            log!("{}", describe(served, &req));
        }
        log!("redial-sim: stopped after {served} requests");
    }
    ExitCode::SUCCESS
}

/// A secret as the banner shows it: the sim's own default test credential as it is (printed on
/// purpose, to be copied), one given on the command line never (it may be a real one).
struct Shown {
    shown: String,
    in_env: String,
}

fn shown(given: &Option<String>, value: &str, flag: &str) -> Shown {
    match given {
        Some(_) => Shown { shown: format!("the one given with {flag} (not shown)"), in_env: "…".to_owned() },
        None => Shown { shown: value.to_owned(), in_env: value.to_owned() },
    }
}

/// One request served, for `--verbose`. The values of query parameters that carry a credential
/// (Marketo documents `client_secret` and `access_token` in the query) are not shown.
fn describe(n: u64, req: &Recorded) -> String {
    let query = req.query.as_deref().map(|q| format!("?{}", masked(q))).unwrap_or_default();
    format!(
        "redial-sim: #{n} {} {}{query} ({} body bytes, connection {})",
        req.method, req.path, req.body_len, req.connection
    )
}

/// `query` with the value of each credential-like parameter replaced by `***`.
fn masked(query: &str) -> String {
    const SECRET: [&str; 6] = ["secret", "token", "password", "key", "signature", "auth"];
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET.iter().any(|s| name.to_ascii_lowercase().contains(s)) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Install the vendor on `sim`; the banner: the listening line, then the endpoints and the
/// credentials accepted.
/// The warning for a sim that listens beyond loopback: its banner gives the fake vendor's
/// test credentials, and its controls take any caller.
fn exposed(ip: IpAddr) -> Option<String> {
    (!ip.is_loopback()).then(|| {
        format!(
            "redial-sim: listening on {ip}, not on loopback: anyone who reaches it can log in with the \
             credentials above and make it misbehave through {PATH}"
        )
    })
}

/// The banner's line for the controls.
fn control(base: &str) -> String {
    format!("control:       POST {base}{PATH}/<command>?… to misbehave; GET {base}{PATH}: the commands and what it saw")
}

fn install(sim: &Sim, vendor: Vendor, args: &Args) -> String {
    let base = sim.url("");
    let mut lines = vec![format!("redial-sim: {} listening on {base}", vendor.name())];
    let mut line = |s: String| lines.push(format!("  {s}"));
    match vendor {
        Vendor::Marketo => {
            let mut c = MarketoConfig::default();
            if let Some(v) = &args.client_id {
                c.client_id = v.clone();
            }
            if let Some(v) = &args.client_secret {
                c.client_secret = v.clone();
            }
            if let Some(v) = args.token_lifetime {
                c.token_lifetime = v;
            }
            if let Some(v) = args.rate_limit {
                c.rate_limit = v;
            }
            if let Some(v) = args.max_concurrency {
                c.max_concurrency = v;
            }
            if let Some(v) = args.latency {
                c.latency = v;
            }
            line(format!("identity:      {base}{} (the identity URL: {base}/identity)", marketo::IDENTITY_PATH));
            let secret = shown(&args.client_secret, &c.client_secret, "--client-secret");
            line(format!("client_id:     {}", c.client_id));
            line(format!("client_secret: {}", secret.shown));
            line(format!("API:           {base}/rest/v1/leads.json (everything under /rest and /bulk)"));
            line(format!(
                "limits:        tokens live {} s; {}; {}; calls take {} ms",
                c.token_lifetime.as_secs_f64(),
                c.rate_limit
                    .map_or("no rate limit".to_owned(), |(n, w)| format!("{n} calls per {} s", w.as_secs_f64())),
                c.max_concurrency.map_or("no concurrency limit".to_owned(), |n| format!("{n} at once")),
                c.latency.as_millis()
            ));
            // A client keeps Marketo's limits unless told this instance's (tighter ones: it
            // would learn them from the 606s and 615s, slowly): the command says them.
            let marketo = MarketoConfig::default();
            let mut limits = String::new();
            if let Some((n, w)) = c.rate_limit.filter(|_| c.rate_limit != marketo.rate_limit) {
                limits.push_str(&format!("--rate-limit {n}/{} ", w.as_secs_f64()));
            }
            if let Some(n) = c.max_concurrency.filter(|_| c.max_concurrency != marketo.max_concurrency) {
                limits.push_str(&format!("--max-concurrency {n} "));
            }
            line(control(&base));
            line(format!(
                "try:           REDIAL_CLIENT_SECRET={} redial call --vendor marketo --login-url {base}/identity \
                 --client-id {} {limits}{base}/rest/v1/leads.json",
                secret.in_env, c.client_id
            ));
            Controls::Marketo(marketo::install(sim, c)).mount(sim);
        }
        Vendor::Responsys => {
            let mut c = ResponsysConfig::default();
            if let Some(v) = &args.user {
                c.user_name = v.clone();
            }
            if let Some(v) = &args.password {
                c.password = v.clone();
            }
            if let Some(v) = args.token_lifetime {
                c.token_lifetime = v;
            }
            line(format!("login:         {base}{} (the login host: {base})", responsys::LOGIN_PATH));
            let password = shown(&args.password, &c.password, "--password");
            line(format!("user_name:     {}", c.user_name));
            line(format!("password:      {}", password.shown));
            line(format!(
                "API:           {base}/rest/api/v1.3/lists (everything under /rest/api/v1.3; AFTM under /rest/haApi)"
            ));
            line(format!("limits:        tokens live {} s", c.token_lifetime.as_secs_f64()));
            line(control(&base));
            line(format!(
                "try:           REDIAL_PASSWORD={} redial call --vendor responsys --login-url {base} --user {} \
                 {base}/rest/api/v1.3/lists",
                password.in_env, c.user_name
            ));
            Controls::Responsys(responsys::install(sim, c)).mount(sim);
        }
        Vendor::AdobeEdge => {
            let mut c = AdobeConfig::default();
            if let Some(v) = &args.client_id {
                c.client_id = v.clone();
            }
            if let Some(v) = &args.client_secret {
                c.client_secret = v.clone();
            }
            if let Some(v) = args.token_lifetime {
                c.token_lifetime = v;
            }
            let secret = shown(&args.client_secret, &c.client_secret, "--client-secret");
            line(format!("IMS token:     {base}{}", adobe::IMS_TOKEN_PATH));
            line(format!("client_id:     {}", c.client_id));
            line(format!("client_secret: {}", secret.shown));
            line(format!("API:           {base}{} (everything under /ee/v2)", adobe::INTERACT_PATH));
            line(format!("limits:        tokens live {} s", c.token_lifetime.as_secs_f64()));
            line(control(&base));
            line(format!(
                "try:           REDIAL_CLIENT_SECRET={} redial call --vendor adobe-edge --login-url {base}{} \
                 --client-id {} -H 'Content-Type: application/json' -d '{{}}' {base}{}",
                secret.in_env,
                adobe::IMS_TOKEN_PATH,
                c.client_id,
                adobe::INTERACT_PATH
            ));
            Controls::AdobeEdge(adobe::install(sim, c)).mount(sim);
        }
        Vendor::GenesysEngage => {
            line(format!(
                "service:       POST {base}{} (SOAP 1.1: createSubCampaign, showSubCampaignState, \
                 changeSubCampaignState)",
                genesys::SERVICE_PATH
            ));
            line(control(&base));
            line("credentials:   none".to_owned());
            Controls::GenesysEngage(genesys::install(sim, GenesysConfig::default())).mount(sim);
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(a) => Ok(*a),
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn flags() {
        let a = run(&[
            "--vendor",
            "marketo",
            "--port=8080",
            "--rate-limit",
            "10/2",
            "--max-concurrency",
            "none",
            "--latency-ms",
            "5",
        ])
        .unwrap();
        assert_eq!(a.vendor, Some(Vendor::Marketo));
        assert_eq!(a.port, 8080);
        assert_eq!(a.rate_limit, Some(Some((10, Duration::from_secs(2)))));
        assert_eq!(a.max_concurrency, Some(None));
        assert_eq!(a.latency, Some(Duration::from_millis(5)));
        assert!(matches!(parse(["--help".to_owned()]), Ok(Parsed::Help)));
    }

    #[test]
    fn verbose_lines_hide_credentials_in_the_query() {
        let q = "grant_type=client_credentials&client_id=abc&client_secret=S3CRET&access_token=T0KEN&filterType=id";
        assert_eq!(
            masked(q),
            "grant_type=client_credentials&client_id=abc&client_secret=***&access_token=***&filterType=id"
        );
        assert_eq!(masked("Password=x&API_KEY=y&plain"), "Password=***&API_KEY=***&plain");
    }

    #[test]
    fn listening_beyond_loopback_is_warned_of() {
        for ip in ["127.0.0.1", "127.0.0.2", "::1"] {
            assert_eq!(exposed(ip.parse().unwrap()), None, "{ip}");
        }
        for ip in ["0.0.0.0", "::", "192.168.1.10"] {
            let warning = exposed(ip.parse().unwrap()).unwrap_or_else(|| panic!("{ip}: no warning"));
            assert!(warning.contains("not on loopback") && warning.contains(ip), "{warning}");
        }
    }

    #[test]
    fn errors() {
        for (args, want) in [
            (&["--port", "1"][..], "missing --vendor"),
            (&["--vendor", "acme"][..], "unknown vendor"),
            (&["--vendor", "responsys", "--client-id", "x"][..], "does not apply"),
            (&["--vendor", "genesys-engage", "--token-lifetime", "5"][..], "does not apply"),
            (&["--vendor", "marketo", "--rate-limit", "10"][..], "N/SECS"),
            (&["--vendor", "marketo", "--port", "70000"][..], "--port"),
            (&["--vendor", "marketo", "--bind", "localhost"][..], "--bind"),
            (&["--vendor", "marketo", "--bogus"][..], "unknown flag"),
            (&["--vendor"][..], "needs a value"),
            (&["--vendor", "marketo", "--client-id", "--port", "80"][..], "--client-id needs a value (the next"),
            (&["--vendor", "marketo", "--client-secret", "--s3cret"][..], "--client-secret needs a value"),
            // Greater than 0 as a duration: not a value that rounds to 0 ns (a token expired when
            // issued, a window that limits nothing).
            (&["--vendor", "marketo", "--token-lifetime", "0.0000000001"][..], "greater than 0"),
            (&["--vendor", "marketo", "--rate-limit", "5/1e-10"][..], "greater than 0"),
            (&["--vendor", "marketo", "--token-lifetime", "1e20"][..], "too large"),
        ] {
            let err = run(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
