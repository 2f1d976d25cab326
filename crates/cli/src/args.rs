//! Argument parsing, by hand: the command line is a subcommand and a handful of flags.
//!
//! [`parse`] turns the arguments (without the program name) into a [`Command`], or a
//! [`UsageError`] whose message is one line, ready to be printed after `redial: `. Parsing does
//! no I/O: files named by flags are read by the caller.
//!
//! Secrets (`--client-secret`, `--password`) may also come from the environment
//! ([`parse_with_env`]); they are kept as [`Secret`]s, whose `Debug` never shows them.
//!
//! ```
//! use redial_cli::args::{parse, Command, Observed};
//! let cmd = parse(["explain", "--vendor", "generic", "--status", "503"]).unwrap();
//! let Command::Explain(args) = cmd else { panic!() };
//! assert_eq!(args.observed, Observed::Status(http::StatusCode::SERVICE_UNAVAILABLE));
//! assert_eq!(args.method, http::Method::GET);
//!
//! let err = parse(["explain", "--vendor", "acme", "--status", "200"]).unwrap_err();
//! assert!(err.to_string().contains("marketo, adobe-edge"));
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use redial_core::auth::Secret;
use redial_core::Failure;
use redial_vendors::oauth2::AuthStyle;
use redial_vendors::Vendor;

/// The top-level usage text, printed by `redial --help`.
pub const USAGE: &str = "\
redial: vendor-aware retries, explained and exercised

Usage:
  redial explain --vendor NAME (--status CODE | --failure KIND) [options]
  redial call [--vendor NAME] [options] URL
  redial help [explain | call]
  redial --help | --version

Commands:
  explain    Tell what redial would do with a response you got (or an attempt that got
             none): prints one JSON object on one line.
  call       Send a request through the full redial stack, like curl (plain http:// only),
             and drive load with --repeat and --concurrency.
  help       Print this text, or the help of a command.

Run `redial explain --help` or `redial call --help` for the flags of a command.
Exit status: 0 on success, 1 when a call failed, 2 on bad arguments or unreadable input,
3 when the output cannot be written, 130 when a call was interrupted (Ctrl-C).
";

/// The usage text of `redial explain`, printed by `redial explain --help`.
pub const EXPLAIN_USAGE: &str = "\
Usage: redial explain --vendor NAME (--status CODE | --failure KIND) [options]

Tell what redial would do with a response you got: classify it with the vendor's profile,
decide under the vendor's default policy, and print one JSON object on one line.

Required:
  --vendor NAME                marketo, adobe-edge, responsys, genesys-engage, generic
  --status CODE                the response status, 100 to 999
  --failure KIND               or: the attempt got no response: connect, timeout, io, body_read

The response (with --status):
  --header 'Name: value'       a response header; repeatable
  --body-file PATH             the response body; `-` reads stdin (default: empty)

The request:
  --method METHOD              the request method, case-insensitive (default GET)
  --url URL                    the absolute request URL (default: a URL on the vendor's host)
  --request-header 'Name: v'   a request header, e.g. 'Idempotency-Key: 42'; repeatable
  --request-body-file PATH     the request body (Genesys reads the SOAP operation from it);
                               `-` reads stdin

History and hooks:
  --attempt N                  the 1-based attempt that got this outcome (default 1): the N-1
                               earlier attempts are taken to have had the same outcome, with
                               the decision redial took each time
  --reconcile-hook             act as if a reconcile hook were registered for the request
  --no-login                   act as if the host had no login (token source): a token
                               refresh the vendor asks for then fails the request. Without
                               it, a login is taken to be configured

  -h, --help                   print this help

Output: {\"vendor\",\"attempt\",\"request\":{\"method\",\"url\",\"idempotent\",\"replayable\"},
  \"status\",\"failure\",\"kind\",\"throttle\",\"advice\",\"action\",\"rule\",\"code\",\"message\",
  \"delay_ms\":{\"min\",\"max\"}|null,\"hint_ms\",\"reason\",\"fail_reason\",\"body\",
  \"errors\":[{\"code\",\"message\",\"scope\",\"index\",\"attributes\"}],\"problem\",
  \"history\":[{\"attempt\",\"action\",\"rule\",\"after_ms\",\"fail_reason\"}]}
`action` is what redial does next; `advice` is what the vendor's rule asked for; `throttle`,
for a throttled answer, the host limit it lowers (rate, concurrency, or request: none).
An --attempt after one that ends the request (returned, or failed) is a usage error.
";

/// The usage text of `redial call`, printed by `redial call --help`.
pub const CALL_USAGE: &str = "\
Usage: redial call [--vendor NAME] [options] URL

Send a request like curl, through the full redial stack: the vendor's profile and policy
(retries, backoff, Retry-After, the rate and concurrency limits) for the URL's host, whatever
that host is, and a login when the login flags are given (one token, shared by every request,
refreshed when the vendor says it expired).

Plain HTTP only: this build has no TLS, so the URL (and the login URL) must be http://. Point
it at the vendor simulator (`redial-sim`) or at a local TLS-terminating proxy.

The request:
  URL                          the absolute http:// URL to call
  --vendor NAME                marketo, adobe-edge, responsys, genesys-engage, generic
                               (default generic)
  -X, --request METHOD         the method (default GET, or POST when -d is given)
  -H, --header 'Name: value'   a request header; repeatable
  -d, --data BODY              the request body; @PATH reads a file, @- reads stdin. Without a
                               Content-Type header, sends application/x-www-form-urlencoded
                               (as curl does)

Login:
  --login-url URL              marketo: the identity URL (http://HOST/identity); responsys:
                               the login host (then call URLs on the host of the endPoint
                               the login answers); adobe-edge: the IMS token URL (required:
                               the default one is https); generic: the OAuth 2 token URL
  --client-id ID               marketo, adobe-edge, generic (client credentials)
  --client-secret SECRET       or REDIAL_CLIENT_SECRET in the environment (better: a flag is
                               visible to other users of the machine)
  --scope SCOPE                adobe-edge, generic; repeatable
  --client-auth basic|post     generic: the client's id and secret go to the token URL in
                               HTTP Basic (default, the RFC's) or in the form body
  --user NAME                  responsys (password login)
  --password PASSWORD          responsys; or REDIAL_PASSWORD in the environment
  Secrets are never printed.

Load:
  --repeat N                   send the request N times (default 1)
  --concurrency C              with at most C requests under way at once (default 1)

Policy (overrides of the vendor's defaults for the URL's host):
  --rate-limit N/SECONDS       at most N calls in any window of SECONDS, e.g. 100/20. This
                               limit (or the vendor's default one) is kept with a window
                               100 ms longer, a tenth at most: network jitter must not put
                               N+1 calls in one window as the vendor counts them
  --max-concurrency N          at most N calls in flight to the host
  --max-attempts N             attempts per request, the first included
  --deadline SECONDS           per request, across its attempts and waits

Output:
  --json                       JSON lines instead of the response (see below)
  -h, --help                   print this help

Without --json, a single request prints the final response's status line, headers and body
on stdout, like `curl -i` (for a failure, what redial kept of the last response, and why it
failed on stderr); with --repeat, a summary on stderr. A login that fails and is tried
again is said on stderr as it happens (its requests wait, up to their deadline).
With --json, one line per attempt:
  {\"request\",\"attempt\",\"status\",\"failure\",\"code\",\"kind\",\"action\",\"rule\",
   \"delay_ms\",\"sent_ms\",\"elapsed_ms\"}
(`request` counts from 0; `delay_ms` is the wait decided after the attempt; `sent_ms` and
`elapsed_ms` are from the start of the request to when the attempt was sent, after any wait
for the host's limits or a login, and to its outcome), a line
{\"request\",\"error\",\"reason\"} after the attempts of a request that failed, and last:
  {\"summary\":{\"requests\",\"successes\",\"failures\":{KIND:N},\"attempts\",\"logins\",
   \"elapsed_ms\"}}
Ctrl-C stops the run: the requests under way are dropped, and the summary (with
\"interrupted\":true) counts those that finished.
Exit status: 0 when every request succeeded, 1 when some failed, 2 on bad arguments, 3 when
the output cannot be written (a closed pipe, as in `| head -1`: the run stops), 130 when
interrupted.
";

/// The largest `--attempt` accepted: far beyond any policy's attempt limit.
pub const MAX_ATTEMPT: u32 = 1000;

/// A command line that cannot be run, with a one-line message saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }

    /// The message, without the `redial: ` prefix.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Print this usage text on stdout and exit 0.
    Help(&'static str),
    /// Print the version on stdout and exit 0.
    Version,
    /// `redial explain`: what redial would do with an outcome.
    Explain(Box<ExplainArgs>),
    /// `redial call`: send requests through the full stack.
    Call(Box<CallArgs>),
}

/// Where to read a body from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

/// What the explained attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// A response with this status (`--status`).
    Status(StatusCode),
    /// No response (`--failure`).
    Failure(Failure),
}

/// The arguments of `redial explain`. `Debug` shows the URL without its query or userinfo and
/// the header names without their values: any of them may carry a credential.
#[non_exhaustive]
#[derive(Clone)]
pub struct ExplainArgs {
    /// The vendor whose profile and default policy apply.
    pub vendor: Vendor,
    /// The request method.
    pub method: Method,
    /// The request URL.
    pub url: Uri,
    /// The request headers (e.g. `Idempotency-Key`, `SOAPAction`).
    pub request_headers: HeaderMap,
    /// Where to read the request body from, if anywhere.
    pub request_body: Option<Input>,
    /// The 1-based number of the attempt that got this outcome.
    pub attempt: u32,
    /// The response status, or why there was no response.
    pub observed: Observed,
    /// The response headers.
    pub headers: HeaderMap,
    /// Where to read the response body from; `None` is an empty body.
    pub body: Option<Input>,
    /// Whether a reconcile hook is taken to be registered.
    pub reconcile_hook: bool,
    /// Whether the host is taken to have a login (a token source): without one, a token
    /// refresh the vendor asks for fails the request, as in the driver.
    pub login: bool,
}

impl fmt::Debug for ExplainArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExplainArgs")
            .field("vendor", &self.vendor)
            .field("method", &self.method)
            .field("url", &redial_core::auth::redact_urls(&self.url.to_string()))
            .field("request_headers", &self.request_headers.keys().collect::<Vec<_>>())
            .field("request_body", &self.request_body)
            .field("attempt", &self.attempt)
            .field("observed", &self.observed)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body", &self.body)
            .field("reconcile_hook", &self.reconcile_hook)
            .field("login", &self.login)
            .finish()
    }
}

impl ExplainArgs {
    /// The defaults for `vendor` and `observed`: a `GET` of the vendor's
    /// [default URL](default_url), first attempt, no headers, no bodies, no reconcile hook, a
    /// login configured.
    pub fn new(vendor: Vendor, observed: Observed) -> Self {
        ExplainArgs {
            vendor,
            method: Method::GET,
            url: default_url(vendor),
            request_headers: HeaderMap::new(),
            request_body: None,
            attempt: 1,
            observed,
            headers: HeaderMap::new(),
            body: None,
            reconcile_hook: false,
            login: true,
        }
    }
}

/// The request URL used when `--url` is not given: a plausible URL on the vendor's host, so
/// that host and path rules apply as they would in production.
pub fn default_url(vendor: Vendor) -> Uri {
    let url = match vendor {
        Vendor::Marketo => "https://123-ABC-456.mktorest.com/rest/v1/leads.json",
        Vendor::AdobeEdge => "https://server.adobedc.net/ee/v2/interact",
        Vendor::Responsys => "https://acme.responsys.ocs.oraclecloud.com/rest/api/v1.3/campaigns/welcome/email",
        Vendor::GenesysEngage => "https://engage.example.com/ServiceAPI",
        _ => "https://api.example.com/",
    };
    Uri::from_static(url)
}

/// The names `--vendor` accepts, comma-separated.
pub fn vendor_names() -> String {
    Vendor::ALL.map(Vendor::name).join(", ")
}

/// Parse the arguments that follow the program name, with an empty environment: `redial call`
/// takes its secrets from the flags only. See [`parse_with_env`].
///
/// Non-UTF-8 arguments are accepted only as file paths.
pub fn parse<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    parse_with_env(args, |_| None)
}

/// Parse the arguments that follow the program name; `env` looks up the environment variables
/// [`CLIENT_SECRET_ENV`] and [`PASSWORD_ENV`], read only when a login needs them and no flag
/// gave the secret (the binary passes `std::env::var_os`).
pub fn parse_with_env<I>(args: I, env: impl Fn(&str) -> Option<OsString>) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let Some(first) = args.next() else {
        return Err(UsageError::new("missing command: explain or call (see `redial --help`)"));
    };
    match utf8(first)?.as_str() {
        "-h" | "--help" => Ok(Command::Help(USAGE)),
        "-V" | "--version" => Ok(Command::Version),
        "help" => match args.next().map(utf8).transpose()?.as_deref() {
            None => Ok(Command::Help(USAGE)),
            Some("explain") => Ok(Command::Help(EXPLAIN_USAGE)),
            Some("call") => Ok(Command::Help(CALL_USAGE)),
            Some(other) => Err(UsageError::new(format!(
                "no help for unknown command {} (commands: explain, call)",
                shown_value(other)
            ))),
        },
        "explain" => parse_explain(args),
        "call" => parse_call(args, &env),
        flag if flag.starts_with('-') => {
            Err(UsageError::new(format!("unknown flag {} before the command (try `redial --help`)", shown_flag(flag))))
        }
        other => Err(UsageError::new(format!("unknown command {} (commands: explain, call)", shown_value(other)))),
    }
}

/// An argument as text. One that is not valid UTF-8 is not shown: it may be a header's value
/// or a body (a credential).
fn utf8(arg: OsString) -> Result<String, UsageError> {
    arg.into_string().map_err(|_| UsageError::new("an argument is not valid UTF-8 (not shown)".to_owned()))
}

/// The flags of `explain` collected before they are checked together.
#[derive(Default)]
struct Raw {
    vendor: Option<String>,
    method: Option<String>,
    url: Option<String>,
    attempt: Option<String>,
    status: Option<String>,
    failure: Option<String>,
    headers: Vec<String>,
    request_headers: Vec<String>,
    body: Option<OsString>,
    request_body: Option<OsString>,
    reconcile_hook: bool,
    no_login: bool,
}

/// Whether an argument is a long flag (`--x`), which is never taken as the previous flag's value.
fn is_flag(arg: &OsStr) -> bool {
    arg.to_str().is_some_and(|v| v.starts_with("--") && v.len() > 2)
}

fn parse_explain(mut args: impl Iterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut raw = Raw::default();
    while let Some(arg) = args.next() {
        // A flag's name is UTF-8; `--flag=value` keeps the value as it came (it may be a path).
        let (name, inline) = split_flag(arg, "explain")?;
        // A value is never the next flag (`--status --attempt 2` is a missing status).
        let value = |args: &mut dyn Iterator<Item = OsString>| match inline.clone() {
            Some(v) => Ok(v),
            None => match args.next() {
                Some(v) if is_flag(&v) => Err(UsageError::new(format!(
                    "{name} needs a value (the next argument is a flag; write {name}=… for one that starts with --)"
                ))),
                Some(v) => Ok(v),
                None => Err(UsageError::new(format!("{name} needs a value"))),
            },
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help(EXPLAIN_USAGE)),
            "--vendor" => set(&mut raw.vendor, &name, utf8(value(&mut args)?)?)?,
            "--method" => set(&mut raw.method, &name, utf8(value(&mut args)?)?)?,
            "--url" => set(&mut raw.url, &name, utf8(value(&mut args)?)?)?,
            "--attempt" => set(&mut raw.attempt, &name, utf8(value(&mut args)?)?)?,
            "--status" => set(&mut raw.status, &name, utf8(value(&mut args)?)?)?,
            "--failure" => set(&mut raw.failure, &name, utf8(value(&mut args)?)?)?,
            "--header" => raw.headers.push(utf8(value(&mut args)?)?),
            "--request-header" => raw.request_headers.push(utf8(value(&mut args)?)?),
            "--body-file" => set(&mut raw.body, &name, value(&mut args)?)?,
            "--request-body-file" => set(&mut raw.request_body, &name, value(&mut args)?)?,
            "--reconcile-hook" => {
                if inline.is_some() {
                    return Err(UsageError::new("--reconcile-hook takes no value"));
                }
                raw.reconcile_hook = true;
            }
            "--no-login" => {
                if inline.is_some() {
                    return Err(UsageError::new("--no-login takes no value"));
                }
                raw.no_login = true;
            }
            flag if flag.starts_with('-') && flag != "-" => {
                return Err(UsageError::new(format!(
                    "unknown flag {} for explain (see `redial explain --help`)",
                    shown_flag(flag)
                )))
            }
            other => {
                return Err(UsageError::new(format!(
                    "unexpected argument {} for explain (see `redial explain --help`)",
                    shown_value(other)
                )))
            }
        }
    }
    check(raw).map(|a| Command::Explain(Box::new(a)))
}

/// Set a flag's value, once.
fn set<T>(slot: &mut Option<T>, name: &str, v: T) -> Result<(), UsageError> {
    if slot.is_some() {
        return Err(UsageError::new(format!("{name} given more than once")));
    }
    *slot = Some(v);
    Ok(())
}

/// Split `--flag=value` into its name and value; other arguments are a name alone.
fn split_flag(arg: OsString, command: &str) -> Result<(String, Option<OsString>), UsageError> {
    let Some(text) = arg.to_str() else {
        // A bare non-UTF-8 argument is never a flag; it may be a URL with a credential in it,
        // so it is not shown.
        return Err(UsageError::new(format!("unexpected argument for {command}: not valid UTF-8 (not shown)")));
    };
    if text.starts_with("--") {
        if let Some((name, value)) = text.split_once('=') {
            return Ok((name.to_owned(), Some(OsString::from(value))));
        }
    }
    Ok((text.to_owned(), None))
}

fn check(raw: Raw) -> Result<ExplainArgs, UsageError> {
    let vendor_name = raw.vendor.ok_or_else(|| UsageError::new(format!("missing --vendor ({})", vendor_names())))?;
    let vendor = Vendor::from_name(&vendor_name).ok_or_else(|| {
        UsageError::new(format!("unknown vendor {} (valid: {})", shown_value(&vendor_name), vendor_names()))
    })?;

    let observed = match (raw.status, raw.failure) {
        (Some(_), Some(_)) => {
            return Err(UsageError::new(
                "--status and --failure cannot both be given: an attempt got a response or none",
            ))
        }
        (None, None) => {
            return Err(UsageError::new(
                "missing --status (the response status) or --failure (connect, timeout, io, body_read)",
            ))
        }
        (Some(status), None) => Observed::Status(parse_status(&status)?),
        (None, Some(failure)) => Observed::Failure(parse_failure(&failure)?),
    };
    if matches!(observed, Observed::Failure(_)) && (!raw.headers.is_empty() || raw.body.is_some()) {
        return Err(UsageError::new(
            "--header and --body-file describe a response; they cannot be used with --failure",
        ));
    }

    let mut args = ExplainArgs::new(vendor, observed);
    if let Some(method) = raw.method {
        args.method = parse_method(&method)?;
    }
    if let Some(url) = raw.url {
        args.url = parse_url(&url)?;
    }
    if let Some(attempt) = raw.attempt {
        args.attempt = parse_attempt(&attempt)?;
    }
    args.headers = parse_headers(&raw.headers, "--header")?;
    args.request_headers = parse_headers(&raw.request_headers, "--request-header")?;
    let input = |path: OsString| {
        if path == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(path))
        }
    };
    args.body = raw.body.map(input);
    args.request_body = raw.request_body.map(input);
    if args.body == Some(Input::Stdin) && args.request_body == Some(Input::Stdin) {
        return Err(UsageError::new("--body-file and --request-body-file cannot both read stdin (`-`)"));
    }
    if matches!(&args.body, Some(Input::File(p)) if p.as_os_str().is_empty())
        || matches!(&args.request_body, Some(Input::File(p)) if p.as_os_str().is_empty())
    {
        return Err(UsageError::new("a body file path cannot be empty"));
    }
    args.reconcile_hook = raw.reconcile_hook;
    args.login = !raw.no_login;
    Ok(args)
}

/// The environment variable `redial call` reads the client secret from, when `--client-secret`
/// is not given.
pub const CLIENT_SECRET_ENV: &str = "REDIAL_CLIENT_SECRET";

/// The environment variable `redial call` reads the password from, when `--password` is not
/// given.
pub const PASSWORD_ENV: &str = "REDIAL_PASSWORD";

/// The largest `--repeat` accepted.
pub const MAX_REPEAT: u32 = 10_000_000;

/// The largest `--concurrency` accepted.
pub const MAX_CONCURRENCY: u32 = 100_000;

/// The request body of `redial call` (`-d`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// The text given on the command line.
    Text(String),
    /// `@PATH` or `@-`: read from a file or stdin.
    Read(Input),
}

/// How `redial call` logs in. Which [`Login`](redial_core::auth::Login) it becomes depends on
/// the vendor (see [`crate::call::token_source`]). `Debug` never shows the secret.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum LoginArgs {
    /// OAuth 2 client credentials: Marketo Identity, Adobe IMS, any OAuth 2 token endpoint.
    ClientCredentials {
        /// `--login-url`.
        url: String,
        /// `--client-id`.
        client_id: String,
        /// `--client-secret`, or [`CLIENT_SECRET_ENV`].
        secret: Secret,
        /// `--scope`, in order.
        scopes: Vec<String>,
        /// `--client-auth` (generic only): how the client authenticates to the token URL.
        client_auth: AuthStyle,
    },
    /// A user name and password: Responsys.
    Password {
        /// `--login-url`.
        url: String,
        /// `--user`.
        user: String,
        /// `--password`, or [`PASSWORD_ENV`].
        password: Secret,
    },
}

/// The arguments of `redial call`. `Debug` shows the URL without its query or userinfo, the
/// header names without their values and the body's size: any of them may carry a credential.
#[non_exhaustive]
#[derive(Clone)]
pub struct CallArgs {
    /// The vendor whose profile and policy serve the URL's host.
    pub vendor: Vendor,
    /// The request method.
    pub method: Method,
    /// The absolute `http://` URL.
    pub url: Uri,
    /// The request headers (with the default `Content-Type` of `-d` added).
    pub headers: HeaderMap,
    /// The request body, if any.
    pub data: Option<Data>,
    /// The login, if the login flags were given.
    pub login: Option<LoginArgs>,
    /// How many times the request is sent.
    pub repeat: u32,
    /// How many requests may be under way at once.
    pub concurrency: u32,
    /// `--rate-limit`: calls per window.
    pub rate_limit: Option<(u32, Duration)>,
    /// `--max-concurrency`.
    pub max_concurrency: Option<u32>,
    /// `--max-attempts`.
    pub max_attempts: Option<u32>,
    /// `--deadline`.
    pub deadline: Option<Duration>,
    /// `--json`: JSON lines instead of the response.
    pub json: bool,
}

impl fmt::Debug for CallArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.data.as_ref().map(|data| match data {
            Data::Text(text) => format!("{} bytes", text.len()),
            Data::Read(input) => format!("{input:?}"),
        });
        f.debug_struct("CallArgs")
            .field("vendor", &self.vendor)
            .field("method", &self.method)
            .field("url", &redial_core::auth::redact_urls(&self.url.to_string()))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("data", &data)
            .field("login", &self.login)
            .field("repeat", &self.repeat)
            .field("concurrency", &self.concurrency)
            .field("rate_limit", &self.rate_limit)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("deadline", &self.deadline)
            .field("json", &self.json)
            .finish()
    }
}

impl CallArgs {
    /// A single `GET` of `url` with the vendor's defaults: no login, no overrides.
    pub fn new(vendor: Vendor, url: Uri) -> Self {
        CallArgs {
            vendor,
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            data: None,
            login: None,
            repeat: 1,
            concurrency: 1,
            rate_limit: None,
            max_concurrency: None,
            max_attempts: None,
            deadline: None,
            json: false,
        }
    }
}

/// The flags of `call` collected before they are checked together. Secrets are wrapped at once.
#[derive(Default)]
struct RawCall {
    vendor: Option<String>,
    method: Option<String>,
    headers: Vec<String>,
    data: Option<OsString>,
    url: Option<String>,
    login_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    scopes: Vec<String>,
    client_auth: Option<String>,
    user: Option<String>,
    password: Option<Secret>,
    repeat: Option<String>,
    concurrency: Option<String>,
    rate_limit: Option<String>,
    max_concurrency: Option<String>,
    max_attempts: Option<String>,
    deadline: Option<String>,
    json: bool,
}

/// Split a `call` argument into a flag name and an inline value: `--flag=value`, and curl's
/// attached short forms `-XPOST`, `-H'Name: v'`, `-dBODY`.
fn split_call_flag(arg: OsString) -> Result<(String, Option<OsString>), UsageError> {
    if let Some(text) = arg.to_str() {
        for short in ["-X", "-H", "-d"] {
            if let Some(rest) = text.strip_prefix(short) {
                if !rest.is_empty() {
                    return Ok((short.to_owned(), Some(OsString::from(rest))));
                }
            }
        }
    }
    split_flag(arg, "call")
}

fn parse_call(
    mut args: impl Iterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Command, UsageError> {
    let mut raw = RawCall::default();
    while let Some(arg) = args.next() {
        let (name, inline) = split_call_flag(arg)?;
        // A value is never the next flag: `--client-id --client-secret S` is a missing value,
        // not a client id of "--client-secret" (and a secret taken for the URL).
        let value = |args: &mut dyn Iterator<Item = OsString>| {
            match inline.clone() {
            Some(v) => Ok(v),
            None => match args.next() {
                // Not shown: it may be a secret that starts with "--" (give it as `--flag=value`).
                Some(v) if is_flag(&v) => Err(UsageError::new(
                    format!("{name} needs a value (the next argument is a flag; write {name}=… for one that starts with --)"),
                )),
                Some(v) => Ok(v),
                None => Err(UsageError::new(format!("{name} needs a value"))),
            },
        }
        };
        // A secret is never echoed, not even in an error message.
        let secret = |args: &mut dyn Iterator<Item = OsString>| {
            value(args)?
                .into_string()
                .map(Secret::new)
                .map_err(|_| UsageError::new(format!("{name}: the value is not valid UTF-8")))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help(CALL_USAGE)),
            "--vendor" => set(&mut raw.vendor, &name, utf8(value(&mut args)?)?)?,
            "-X" | "--request" => set(&mut raw.method, "-X/--request", utf8(value(&mut args)?)?)?,
            "-H" | "--header" => raw.headers.push(utf8(value(&mut args)?)?),
            "-d" | "--data" => set(&mut raw.data, "-d/--data", value(&mut args)?)?,
            "--login-url" => set(&mut raw.login_url, &name, utf8(value(&mut args)?)?)?,
            "--client-id" => set(&mut raw.client_id, &name, utf8(value(&mut args)?)?)?,
            "--client-secret" => set(&mut raw.client_secret, &name, secret(&mut args)?)?,
            "--scope" => raw.scopes.push(utf8(value(&mut args)?)?),
            "--client-auth" => set(&mut raw.client_auth, &name, utf8(value(&mut args)?)?)?,
            "--user" => set(&mut raw.user, &name, utf8(value(&mut args)?)?)?,
            "--password" => set(&mut raw.password, &name, secret(&mut args)?)?,
            "--repeat" => set(&mut raw.repeat, &name, utf8(value(&mut args)?)?)?,
            "--concurrency" => set(&mut raw.concurrency, &name, utf8(value(&mut args)?)?)?,
            "--rate-limit" => set(&mut raw.rate_limit, &name, utf8(value(&mut args)?)?)?,
            "--max-concurrency" => set(&mut raw.max_concurrency, &name, utf8(value(&mut args)?)?)?,
            "--max-attempts" => set(&mut raw.max_attempts, &name, utf8(value(&mut args)?)?)?,
            "--deadline" => set(&mut raw.deadline, &name, utf8(value(&mut args)?)?)?,
            "--json" => {
                if inline.is_some() {
                    return Err(UsageError::new("--json takes no value"));
                }
                raw.json = true;
            }
            "--" => {
                let url =
                    args.next().ok_or_else(|| UsageError::new("missing URL after `--` (see `redial call --help`)"))?;
                set_url(&mut raw.url, utf8(url)?)?;
                if let Some(extra) = args.next() {
                    return Err(UsageError::new(format!(
                        "unexpected argument {} after the URL",
                        shown_value(&extra.to_string_lossy())
                    )));
                }
            }
            flag if flag.starts_with('-') => {
                return Err(UsageError::new(format!(
                    "unknown flag {} for call (see `redial call --help`)",
                    shown_flag(flag)
                )))
            }
            _ => set_url(&mut raw.url, name)?,
        }
    }
    check_call(raw, env).map(|a| Command::Call(Box::new(a)))
}

/// A URL as a message may show it: without its query (cut at the first `?` or `#`, whatever
/// follows) and its userinfo (`user:password@`), either of which may carry a credential. A
/// text that does not begin as a URL (`scheme://`: a flag's value taken for the URL, a
/// secret) is not shown at all. A URL comes back quoted; the placeholder for a text not shown
/// does not, so that it is not taken for what the user typed.
pub(crate) fn shown_url(s: &str) -> String {
    let first = s.split_whitespace().next().unwrap_or_default();
    let scheme = first.split_once("://").map_or("", |(scheme, _)| scheme);
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return "(not a URL: not shown)".to_owned();
    }
    let (cut, more) = match first.find(['?', '#']) {
        Some(i) => (&first[..i], "?…"),
        None => (first, ""),
    };
    format!("{:?}", format!("{}{more}", redial_core::auth::redact_urls(cut)))
}

/// A flag's value as a message may show it: quoted, but a URL as [`shown_url`] shows it. When
/// a flag's own value is forgotten, the next argument (the URL, perhaps with a token in its
/// query or userinfo) is taken for it.
pub(crate) fn shown_value(s: &str) -> String {
    if s.contains("://") {
        shown_url(s)
    } else {
        format!("{s:?}")
    }
}

/// An unknown flag as a message may show it: a long flag's name; a short one's first letter,
/// as an attached value may be a credential (curl's `-uuser:password`).
fn shown_flag(flag: &str) -> String {
    match flag.strip_prefix('-') {
        Some(rest) if !rest.starts_with('-') && rest.chars().count() > 1 => {
            format!("-{}…", rest.chars().next().unwrap_or_default())
        }
        _ => flag.to_owned(),
    }
}

fn set_url(slot: &mut Option<String>, url: String) -> Result<(), UsageError> {
    if let Some(first) = slot {
        // The second "URL" may be a value meant for a flag (a secret, after a flag that was
        // given no value): neither is shown.
        let _ = (first, url);
        return Err(UsageError::new(
            "more than one URL (redial call sends one; a flag may be missing its value)".to_owned(),
        ));
    }
    *slot = Some(url);
    Ok(())
}

fn check_call(raw: RawCall, env: &dyn Fn(&str) -> Option<OsString>) -> Result<CallArgs, UsageError> {
    let vendor = match raw.vendor {
        Some(name) => Vendor::from_name(&name).ok_or_else(|| {
            UsageError::new(format!("unknown vendor {} (valid: {})", shown_value(&name), vendor_names()))
        })?,
        None => Vendor::Generic,
    };
    let url = raw.url.ok_or_else(|| UsageError::new("missing URL (see `redial call --help`)"))?;
    let mut args = CallArgs::new(vendor, parse_http_url(&url, "URL")?);
    args.headers = parse_headers(&raw.headers, "-H/--header")?;
    args.data = match raw.data {
        None => None,
        Some(d) => {
            let d = utf8(d)?;
            Some(match d.strip_prefix('@') {
                Some("-") => Data::Read(Input::Stdin),
                Some("") => return Err(UsageError::new("-d @PATH: the path cannot be empty")),
                Some(path) => Data::Read(Input::File(PathBuf::from(path))),
                None => Data::Text(d),
            })
        }
    };
    if args.data.is_some() && !args.headers.contains_key(http::header::CONTENT_TYPE) {
        args.headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    }
    args.method = match raw.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| UsageError::new(format!("invalid -X/--request {}", shown_value(&m))))?,
        None if args.data.is_some() => Method::POST,
        None => Method::GET,
    };
    args.login = check_login(
        vendor,
        LoginFlags {
            url: raw.login_url,
            client_id: raw.client_id,
            client_secret: raw.client_secret,
            scopes: raw.scopes,
            client_auth: raw.client_auth.as_deref().map(parse_client_auth).transpose()?,
            user: raw.user,
            password: raw.password,
        },
        env,
    )?;
    if let Some(n) = raw.repeat {
        args.repeat = parse_count(&n, "--repeat", MAX_REPEAT)?;
    }
    if let Some(n) = raw.concurrency {
        args.concurrency = parse_count(&n, "--concurrency", MAX_CONCURRENCY)?;
    }
    args.rate_limit = raw.rate_limit.as_deref().map(parse_rate_limit).transpose()?;
    args.max_concurrency =
        raw.max_concurrency.map(|n| parse_count(&n, "--max-concurrency", MAX_CONCURRENCY)).transpose()?;
    args.max_attempts = raw.max_attempts.map(|n| parse_count(&n, "--max-attempts", MAX_ATTEMPT)).transpose()?;
    args.deadline = raw.deadline.map(|s| parse_seconds(&s, "--deadline")).transpose()?;
    args.json = raw.json;
    Ok(args)
}

struct LoginFlags {
    url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    scopes: Vec<String>,
    client_auth: Option<AuthStyle>,
    user: Option<String>,
    password: Option<Secret>,
}

/// The login the flags describe for `vendor`, if any login flag was given. A secret in the
/// environment alone asks for no login.
fn check_login(
    vendor: Vendor,
    f: LoginFlags,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Option<LoginArgs>, UsageError> {
    let any = f.url.is_some()
        || f.client_id.is_some()
        || f.client_secret.is_some()
        || !f.scopes.is_empty()
        || f.client_auth.is_some()
        || f.user.is_some()
        || f.password.is_some();
    if !any {
        return Ok(None);
    }
    let from_env = |var: &str| -> Result<Option<Secret>, UsageError> {
        match env(var) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v
                .into_string()
                .map(|v| Some(Secret::new(v)))
                .map_err(|_| UsageError::new(format!("{var}: the value is not valid UTF-8"))),
        }
    };
    let not_for = |flag: &str, given: bool, which: &str| {
        if given {
            Err(UsageError::new(format!("{flag} is not a login flag of {} ({which})", vendor.name())))
        } else {
            Ok(())
        }
    };
    let name = vendor.name();
    let url = |url: Option<String>| {
        let url = url.ok_or_else(|| UsageError::new(format!("the {name} login needs --login-url")))?;
        parse_http_url(&url, "--login-url")?;
        Ok::<_, UsageError>(url)
    };
    match vendor {
        Vendor::Responsys => {
            let which = "--login-url, --user, --password";
            not_for("--client-id", f.client_id.is_some(), which)?;
            not_for("--client-secret", f.client_secret.is_some(), which)?;
            not_for("--scope", !f.scopes.is_empty(), which)?;
            not_for("--client-auth", f.client_auth.is_some(), which)?;
            let url = url(f.url)?;
            let user = f.user.ok_or_else(|| UsageError::new("the responsys login needs --user"))?;
            let password = match f.password {
                Some(p) => p,
                None => from_env(PASSWORD_ENV)?.ok_or_else(|| {
                    UsageError::new(format!("the responsys login needs a password: --password or {PASSWORD_ENV}"))
                })?,
            };
            Ok(Some(LoginArgs::Password { url, user, password }))
        }
        Vendor::Marketo | Vendor::AdobeEdge | Vendor::Generic => {
            let which = if vendor == Vendor::Marketo {
                "--login-url, --client-id, --client-secret"
            } else {
                "--login-url, --client-id, --client-secret, --scope"
            };
            not_for("--user", f.user.is_some(), which)?;
            not_for("--password", f.password.is_some(), which)?;
            not_for("--scope", vendor == Vendor::Marketo && !f.scopes.is_empty(), which)?;
            // Marketo's identity and Adobe's IMS each take the client's credentials their one way.
            not_for("--client-auth", vendor != Vendor::Generic && f.client_auth.is_some(), which)?;
            let url = url(f.url)?;
            let client_id =
                f.client_id.ok_or_else(|| UsageError::new(format!("the {name} login needs --client-id")))?;
            let secret = match f.client_secret {
                Some(s) => s,
                None => from_env(CLIENT_SECRET_ENV)?.ok_or_else(|| {
                    UsageError::new(format!(
                        "the {name} login needs a client secret: --client-secret or {CLIENT_SECRET_ENV}"
                    ))
                })?,
            };
            let client_auth = f.client_auth.unwrap_or_default();
            Ok(Some(LoginArgs::ClientCredentials { url, client_id, secret, scopes: f.scopes, client_auth }))
        }
        _ => Err(UsageError::new(format!("{name} has no login in redial call: send its credentials with -H"))),
    }
}

/// Parse an absolute `http://` URL (`what` names it in messages). An `https://` URL is refused
/// with the reason: this build has no TLS.
pub fn parse_http_url(s: &str, what: &str) -> Result<Uri, UsageError> {
    // A URL's query may carry a credential (Marketo's identity takes client_secret there):
    // errors show the URL without it.
    let shown = shown_url(s);
    let s_shown = &shown;
    let invalid =
        || UsageError::new(format!("invalid {what} {s_shown}: expected an absolute URL such as http://host:port/path"));
    let uri: Uri = s.parse().map_err(|_| invalid())?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    // `http::Uri` keeps any digits as the port: one that no socket has is a usage error.
    let host_port = uri.authority().map(|a| a.as_str().rsplit('@').next().unwrap_or_default());
    let port = host_port.and_then(|h| h.rsplit_once(':')).map(|(_, p)| p).filter(|p| !p.contains(']'));
    if port.is_some_and(|p| !p.is_empty() && p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err(UsageError::new(format!("invalid {what} {s_shown}: the port must be 1 to 65535")));
    }
    match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => Ok(uri),
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => Err(UsageError::new(format!(
            "{what} {s_shown}: https:// is not supported, this build of redial has no TLS; \
             use http:// (the simulator, or a local TLS-terminating proxy)"
        ))),
        _ => Err(invalid()),
    }
}

/// Parse a count from 1 to `max`.
pub fn parse_count(s: &str, flag: &str, max: u32) -> Result<u32, UsageError> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n) && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| UsageError::new(format!("invalid {flag} {}: expected 1 to {max}", shown_value(s))))
}

/// Parse a duration in seconds, fractions allowed (`30`, `1.5`), greater than zero and at
/// most a day.
pub fn parse_seconds(s: &str, flag: &str) -> Result<Duration, UsageError> {
    let invalid = || {
        UsageError::new(format!(
            "invalid {flag} {}: expected seconds, greater than 0 and at most 86400",
            shown_value(s)
        ))
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(invalid());
    }
    let secs: f64 = s.parse().map_err(|_| invalid())?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(invalid());
    }
    // A value such as 0.0000000001 is more than 0 but rounds to 0 ns.
    Duration::try_from_secs_f64(secs).ok().filter(|d| !d.is_zero()).ok_or_else(invalid)
}

/// `--client-auth`: `basic` or `post`.
fn parse_client_auth(text: &str) -> Result<AuthStyle, UsageError> {
    match text {
        "basic" => Ok(AuthStyle::Basic),
        "post" => Ok(AuthStyle::Post),
        _ => Err(UsageError::new(format!("--client-auth: expected basic or post, got {text:?}"))),
    }
}

/// Parse `--rate-limit N/SECONDS`: at most N calls in any window of SECONDS.
pub fn parse_rate_limit(s: &str) -> Result<(u32, Duration), UsageError> {
    let Some((n, secs)) = s.split_once('/') else {
        return Err(UsageError::new(format!(
            "invalid --rate-limit {}: expected N/SECONDS, e.g. 100/20",
            shown_value(s)
        )));
    };
    let n = parse_count(n, "--rate-limit calls", 1_000_000)?;
    let window = parse_seconds(secs, "--rate-limit window")?;
    Ok((n, window))
}

/// Parse `--status`: a number from 100 to 999.
pub fn parse_status(s: &str) -> Result<StatusCode, UsageError> {
    let invalid = || UsageError::new(format!("invalid --status {}: expected 100 to 999", shown_value(s)));
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u16 = s.parse().map_err(|_| invalid())?;
    StatusCode::from_u16(n).map_err(|_| invalid())
}

/// Parse `--failure`: `connect`, `timeout`, `io` or `body_read` (`body-read` too).
pub fn parse_failure(s: &str) -> Result<Failure, UsageError> {
    match s {
        "connect" => Ok(Failure::Connect),
        "timeout" => Ok(Failure::Timeout),
        "io" => Ok(Failure::Io),
        "body_read" | "body-read" => Ok(Failure::BodyRead),
        _ => Err(UsageError::new(format!(
            "invalid --failure {}: expected connect, timeout, io or body_read",
            shown_value(s)
        ))),
    }
}

/// Parse `--method`, case-insensitively (`post` is `POST`).
pub fn parse_method(s: &str) -> Result<Method, UsageError> {
    Method::from_bytes(s.to_ascii_uppercase().as_bytes())
        .map_err(|_| UsageError::new(format!("invalid --method {}", shown_value(s))))
}

/// Parse `--url`: an absolute URL with a scheme and a host.
pub fn parse_url(s: &str) -> Result<Uri, UsageError> {
    let shown = shown_url(s);
    let invalid =
        || UsageError::new(format!("invalid --url {shown}: expected an absolute URL such as https://host/path"));
    let uri: Uri = s.parse().map_err(|_| invalid())?;
    if uri.scheme().is_none() || uri.host().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(uri)
}

/// Parse `--attempt`: a number from 1 to [`MAX_ATTEMPT`].
pub fn parse_attempt(s: &str) -> Result<u32, UsageError> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_ATTEMPT).contains(n) && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| UsageError::new(format!("invalid --attempt {}: expected 1 to {MAX_ATTEMPT}", shown_value(s))))
}

/// Parse one `Name: value` header, as given to `flag`. The value's surrounding spaces and tabs
/// are dropped; the name must be a valid field name, with no space before the colon.
///
/// A header may carry a credential: an error names the flag and at most the header's name,
/// never the value (nor, without a colon, the argument).
pub fn parse_header(s: &str, flag: &str) -> Result<(HeaderName, HeaderValue), UsageError> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(UsageError::new(format!("invalid {flag}: expected 'Name: value' (the argument has no colon)")));
    };
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| UsageError::new(format!("invalid {flag}: the header name is not a valid field name")))?;
    let value = HeaderValue::from_bytes(value.trim_matches([' ', '\t']).as_bytes())
        .map_err(|_| UsageError::new(format!("invalid {flag} {name}: bad value (not shown)")))?;
    Ok((name, value))
}

fn parse_headers(list: &[String], flag: &str) -> Result<HeaderMap, UsageError> {
    let mut headers = HeaderMap::new();
    for h in list {
        let (name, value) = parse_header(h, flag)?;
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain(args: &[&str]) -> Result<ExplainArgs, UsageError> {
        let all = std::iter::once("explain").chain(args.iter().copied());
        match parse(all)? {
            Command::Explain(a) => Ok(*a),
            other => panic!("{other:?}"),
        }
    }

    /// Any of the URL's query and userinfo, a header's value and the body may carry a
    /// credential: `Debug` shows none of them.
    #[test]
    fn debug_shows_no_credential_of_the_request() {
        let call = std::iter::once("call").chain([
            "-H",
            "Authorization: Bearer TOPSECRET-1",
            "-d",
            "password=TOPSECRET-2",
            "http://user:TOPSECRET-3@api.example.com/x?access_token=TOPSECRET-4",
        ]);
        let shown = format!("{:?}", parse(call).unwrap());
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("authorization") && shown.contains("api.example.com"), "{shown}");
        let explain = explain(&[
            "--vendor",
            "generic",
            "--status",
            "500",
            "--url",
            "https://api.example.com/p?access_token=TOPSECRET-5",
            "--request-header",
            "Authorization: Bearer TOPSECRET-6",
        ]);
        let shown = format!("{:?}", explain.unwrap());
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("authorization"), "{shown}");
    }

    #[test]
    fn defaults_and_flags() {
        let a = explain(&["--vendor", "marketo", "--status", "200"]).unwrap();
        assert_eq!(a.vendor, Vendor::Marketo);
        assert_eq!(a.attempt, 1);
        assert_eq!(a.url.host(), Some("123-ABC-456.mktorest.com"));
        assert!(!a.reconcile_hook);
        assert!(a.login);

        let a = explain(&[
            "--vendor=generic",
            "--failure=connect",
            "--method",
            "post",
            "--url",
            "https://x.example/p?q=1",
            "--attempt",
            "3",
            "--request-header",
            "Idempotency-Key: 42",
            "--request-body-file",
            "-",
            "--reconcile-hook",
            "--no-login",
        ])
        .unwrap();
        assert_eq!(a.observed, Observed::Failure(Failure::Connect));
        assert_eq!(a.method, Method::POST);
        assert_eq!(a.url.path(), "/p");
        assert_eq!(a.attempt, 3);
        assert_eq!(a.request_headers["idempotency-key"], "42");
        assert_eq!(a.request_body, Some(Input::Stdin));
        assert!(a.reconcile_hook);
        assert!(!a.login);
    }

    #[test]
    fn headers_repeat_and_trim() {
        let a = explain(&[
            "--vendor",
            "generic",
            "--status",
            "503",
            "--header",
            "Retry-After:  2 ",
            "--header",
            "retry-after:3",
            "--header",
            "X-Empty:",
        ])
        .unwrap();
        let all: Vec<_> = a.headers.get_all("retry-after").iter().collect();
        assert_eq!(all, ["2", "3"]);
        assert_eq!(a.headers["x-empty"], "");
    }

    #[test]
    fn errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["--vendor", "acme", "--status", "200"], "unknown vendor"),
            (&["--vendor", "generic"], "missing --status"),
            (&["--status", "200"], "missing --vendor"),
            (&["--vendor", "generic", "--status", "200", "--failure", "io"], "cannot both"),
            (&["--vendor", "generic", "--status", "abc"], "--status"),
            (&["--vendor", "generic", "--status", "1000"], "--status"),
            (&["--vendor", "generic", "--status", "99"], "--status"),
            (&["--vendor", "generic", "--status", "+200"], "--status"),
            (&["--vendor", "generic", "--status"], "needs a value"),
            (
                &["--vendor", "generic", "--status", "--attempt", "2"],
                "--status needs a value (the next argument is a flag",
            ),
            (&["--vendor", "generic", "--failure", "dns"], "--failure"),
            (&["--vendor", "generic", "--status", "200", "--header", "NoColon"], "Name: value"),
            (&["--vendor", "generic", "--status", "200", "--header", "Bad Name: x"], "not a valid field name"),
            (&["--vendor", "generic", "--status", "200", "--header", ": x"], "not a valid field name"),
            (&["--vendor", "generic", "--status", "200", "--header", "A: b\u{1}"], "bad value"),
            (&["--vendor", "generic", "--status", "200", "--attempt", "0"], "--attempt"),
            (&["--vendor", "generic", "--status", "200", "--attempt", "1001"], "--attempt"),
            (&["--vendor", "generic", "--status", "200", "--url", "/relative"], "--url"),
            (&["--vendor", "generic", "--status", "200", "--method", "GE T"], "--method"),
            (&["--vendor", "generic", "--status", "200", "--bogus"], "unknown flag"),
            (&["--vendor", "generic", "--status", "200", "stray"], "unexpected"),
            (&["--vendor", "generic", "--vendor", "generic", "--status", "200"], "more than once"),
            (&["--vendor", "generic", "--failure", "io", "--body-file", "x"], "--failure"),
            (&["--vendor", "generic", "--status", "200", "--body-file", "-", "--request-body-file", "-"], "stdin"),
            (&["--vendor", "generic", "--status", "200", "--reconcile-hook=yes"], "no value"),
        ];
        for (args, want) in cases {
            let err = explain(args).unwrap_err();
            assert!(err.message().contains(want), "{args:?}: {err}");
            assert!(!err.message().contains('\n'), "{args:?}: {err}");
        }
    }

    #[test]
    fn commands() {
        assert!(matches!(parse(["--help"]), Ok(Command::Help(USAGE))));
        assert!(matches!(parse(["help"]), Ok(Command::Help(USAGE))));
        assert!(matches!(parse(["help", "explain"]), Ok(Command::Help(EXPLAIN_USAGE))));
        assert!(matches!(parse(["explain", "--vendor", "nope", "--help"]), Ok(Command::Help(EXPLAIN_USAGE))));
        assert!(matches!(parse(["--version"]), Ok(Command::Version)));
        assert!(parse(Vec::<String>::new()).is_err());
        assert!(parse(["call"]).unwrap_err().message().contains("missing URL"));
        assert!(matches!(parse(["help", "call"]), Ok(Command::Help(CALL_USAGE))));
        assert!(parse(["cal"]).unwrap_err().message().contains("unknown command"));
        assert!(parse(["--bogus"]).unwrap_err().message().contains("unknown flag"));
    }

    fn call(args: &[&str], env: &[(&str, &str)]) -> Result<CallArgs, UsageError> {
        let all = std::iter::once("call").chain(args.iter().copied());
        let lookup = |var: &str| env.iter().find(|(k, _)| *k == var).map(|(_, v)| OsString::from(v));
        match parse_with_env(all, lookup)? {
            Command::Call(a) => Ok(*a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn call_defaults_and_flags() {
        let a = call(&["http://127.0.0.1:8080/rest/v1/leads.json?x=1"], &[]).unwrap();
        assert_eq!(a.vendor, Vendor::Generic);
        assert_eq!(a.method, Method::GET);
        assert_eq!((a.repeat, a.concurrency, a.json), (1, 1, false));
        assert!(a.login.is_none() && a.data.is_none() && a.headers.is_empty());

        let a = call(
            &[
                "--vendor=marketo",
                "-XPATCH",
                "-H",
                "Accept: application/json",
                "-HX-A:1",
                "-d@-",
                "--repeat",
                "200",
                "--concurrency=20",
                "--rate-limit",
                "10/2",
                "--max-concurrency",
                "5",
                "--max-attempts",
                "6",
                "--deadline",
                "0.5",
                "--json",
                "--",
                "http://h.example/p",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(a.vendor, Vendor::Marketo);
        assert_eq!(a.method, Method::PATCH);
        assert_eq!(a.headers["accept"], "application/json");
        assert_eq!(a.headers["x-a"], "1");
        assert_eq!(a.headers["content-type"], "application/x-www-form-urlencoded");
        assert_eq!(a.data, Some(Data::Read(Input::Stdin)));
        assert_eq!((a.repeat, a.concurrency), (200, 20));
        assert_eq!(a.rate_limit, Some((10, Duration::from_secs(2))));
        assert_eq!((a.max_concurrency, a.max_attempts), (Some(5), Some(6)));
        assert_eq!(a.deadline, Some(Duration::from_millis(500)));
        assert!(a.json);

        let a = call(&["-d", "a=1", "http://h/"], &[]).unwrap();
        assert_eq!(a.method, Method::POST);
        assert_eq!(a.data, Some(Data::Text("a=1".into())));
    }

    #[test]
    fn call_secrets_come_from_flags_or_the_environment_and_never_show() {
        let login = ["--vendor", "marketo", "--login-url", "http://h/identity", "--client-id", "id"];
        let with = |extra: &[&str], env: &[(&str, &str)]| {
            let mut all = login.to_vec();
            all.extend_from_slice(extra);
            all.push("http://h/rest/v1/leads.json");
            call(&all, env)
        };
        let secret_of = |a: &CallArgs| match &a.login {
            Some(LoginArgs::ClientCredentials { secret, .. }) => secret.expose().to_owned(),
            other => panic!("{other:?}"),
        };
        let a = with(&[], &[(CLIENT_SECRET_ENV, "from-env-xyz")]).unwrap();
        assert_eq!(secret_of(&a), "from-env-xyz");
        assert!(!format!("{a:?}").contains("from-env-xyz"));
        let a = with(&["--client-secret", "from-flag-xyz"], &[(CLIENT_SECRET_ENV, "from-env-xyz")]).unwrap();
        assert_eq!(secret_of(&a), "from-flag-xyz");
        assert!(!format!("{a:?}").contains("from-flag-xyz"));
        let err = with(&[], &[(CLIENT_SECRET_ENV, "")]).unwrap_err();
        assert!(err.message().contains(CLIENT_SECRET_ENV), "{err}");

        // Responsys: a password.
        let a = call(
            &["--vendor", "responsys", "--login-url", "http://h", "--user", "u", "http://h/rest/api/v1.3/lists"],
            &[(PASSWORD_ENV, "pw-xyz")],
        )
        .unwrap();
        match &a.login {
            Some(LoginArgs::Password { user, password, .. }) => {
                assert_eq!((user.as_str(), password.expose()), ("u", "pw-xyz"))
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{a:?}").contains("pw-xyz"));

        // A secret in the environment alone asks for no login.
        let a = call(&["http://h/"], &[(CLIENT_SECRET_ENV, "x"), (PASSWORD_ENV, "y")]).unwrap();
        assert!(a.login.is_none());

        // An error never echoes a secret.
        let err = with(&["--client-secret", "s3cr3t", "--client-secret", "s3cr3t"], &[]).unwrap_err();
        assert!(!err.message().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn call_values() {
        assert_eq!(parse_rate_limit("100/20").unwrap(), (100, Duration::from_secs(20)));
        assert_eq!(parse_rate_limit("5/0.25").unwrap(), (5, Duration::from_millis(250)));
        for bad in ["100", "0/20", "10/0", "10/-1", "x/2", "10/2/3", "10/inf", "10/1e3", "10/0.0000000001"] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
        // More than 0, but 0 ns as a duration: refused with the flag's name.
        let err = parse_seconds("0.0000000001", "--deadline").unwrap_err();
        assert!(err.message().contains("invalid --deadline"), "{err}");
        assert_eq!(parse_seconds("0.000000001", "--deadline").unwrap(), Duration::from_nanos(1));
        assert!(parse_http_url("https://h/", "URL").unwrap_err().message().contains("no TLS"));
        assert!(parse_http_url("HTTP://h/", "URL").is_ok());
        assert!(parse_http_url("http:///x", "URL").is_err());
        for bad in ["http://127.0.0.1:99999/", "http://127.0.0.1:0/"] {
            assert!(parse_http_url(bad, "URL").unwrap_err().message().contains("port"), "{bad}");
        }
        assert!(parse_http_url("http://127.0.0.1:65535/", "URL").is_ok());
        assert!(parse_http_url("http://u:p@127.0.0.1/", "URL").is_ok());
        assert!(parse_http_url("http://[::1]/", "URL").is_ok());
        #[cfg(unix)]
        {
            // A value that is not UTF-8 is refused without being shown.
            use std::os::unix::ffi::OsStringExt;
            let secret = OsString::from_vec(b"Authorization: Bearer TOPSECRET\xff".to_vec());
            let err = parse(vec!["call".into(), "-H".into(), secret, "http://h/".into()]).unwrap_err();
            assert!(!err.message().contains("TOPSECRET"), "{err}");
        }
        // A URL in a message shows neither userinfo nor query; a text that is no URL, nothing.
        for (bad, shown) in [
            (
                "https://id:TOPSECRET@x.mktorest.com/identity?client_secret=TOPSECRET",
                "https://x.mktorest.com/identity?…",
            ),
            ("ftp://u:TOPSECRET@h/x?access_token=TOPSECRET", "ftp://h/x?…"),
            ("notaurl access_token=TOPSECRET", "(not a URL: not shown)"),
        ] {
            let err = parse_http_url(bad, "--login-url").unwrap_err();
            assert!(!err.message().contains("TOPSECRET") && err.message().contains(shown), "{err}");
        }
        for bad in [
            "notaurl access_token=TOPSECRET",
            "x.mktorest.com/identity/oauth/token?client_secret=TOPSECRET&redirect_uri=https://app.example/cb",
            "https://h/x?q=\"a\"&access_token=TOPSECRET",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert!(!err.message().contains("TOPSECRET"), "{err}");
        }
        let err = parse_url("x.mktorest.com/identity?client_secret=TOPSECRET&r=https://a/b").unwrap_err();
        assert!(err.message().contains("(not a URL: not shown)"), "{err}");
        assert!(parse_http_url("https://id:TOPSECRET@x.test/", "URL")
            .unwrap_err()
            .message()
            .contains("https://x.test/"));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_are_kept() {
        use std::os::unix::ffi::OsStringExt;
        let path = OsString::from_vec(b"/tmp/\xffbody".to_vec());
        let args: Vec<OsString> = vec![
            "explain".into(),
            "--vendor".into(),
            "generic".into(),
            "--status".into(),
            "200".into(),
            "--body-file".into(),
            path.clone(),
        ];
        let Ok(Command::Explain(a)) = parse(args) else { panic!() };
        assert_eq!(a.body, Some(Input::File(PathBuf::from(path.clone()))));
        let bad: Vec<OsString> = vec!["explain".into(), "--vendor".into(), path];
        assert!(parse(bad).unwrap_err().message().contains("UTF-8"));
    }
}
