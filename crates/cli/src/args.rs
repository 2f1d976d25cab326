//! Argument parsing, by hand: the command line is a subcommand and a handful of flags.
//!
//! [`parse`] turns the arguments (without the program name) into a [`Command`], or a
//! [`UsageError`] whose message is one line, ready to be printed after `redial: `. Parsing does
//! no I/O: files named by flags are read by the caller.
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

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use redial_core::Failure;
use redial_vendors::Vendor;

/// The top-level usage text, printed by `redial --help`.
pub const USAGE: &str = "\
redial: vendor-aware retry decisions, explained

Usage:
  redial explain --vendor NAME (--status CODE | --failure KIND) [options]
  redial help [explain]
  redial --help | --version

Commands:
  explain    Tell what redial would do with a response you got (or an attempt that got
             none): prints one JSON object on one line.
  help       Print this text, or the help of a command.

Run `redial explain --help` for the flags of explain.
Exit status: 0 on success, 2 on bad arguments or unreadable input.
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

  -h, --help                   print this help

Output: {\"vendor\",\"attempt\",\"request\":{\"method\",\"url\",\"idempotent\",\"replayable\"},
  \"status\",\"failure\",\"kind\",\"advice\",\"action\",\"rule\",\"code\",\"message\",
  \"delay_ms\":{\"min\",\"max\"}|null,\"hint_ms\",\"reason\",\"fail_reason\",\"body\",
  \"errors\":[{\"code\",\"message\",\"scope\",\"index\",\"attributes\"}],\"problem\",
  \"history\":[{\"attempt\",\"action\",\"rule\",\"after_ms\",\"fail_reason\"}]}
`action` is what redial does next; `advice` is what the vendor's rule asked for.
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

/// What the command line asks for. `redial call` will join `explain` here.
#[derive(Debug, Clone)]
pub enum Command {
    /// Print this usage text on stdout and exit 0.
    Help(&'static str),
    /// Print the version on stdout and exit 0.
    Version,
    /// `redial explain`: what redial would do with an outcome.
    Explain(Box<ExplainArgs>),
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

/// The arguments of `redial explain`.
#[non_exhaustive]
#[derive(Debug, Clone)]
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
}

impl ExplainArgs {
    /// The defaults for `vendor` and `observed`: a `GET` of the vendor's
    /// [default URL](default_url), first attempt, no headers, no bodies, no reconcile hook.
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

/// Parse the arguments that follow the program name.
///
/// Non-UTF-8 arguments are accepted only as file paths.
pub fn parse<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let Some(first) = args.next() else {
        return Err(UsageError::new("missing command (try `redial explain --help`)"));
    };
    match utf8(first)?.as_str() {
        "-h" | "--help" => Ok(Command::Help(USAGE)),
        "-V" | "--version" => Ok(Command::Version),
        "help" => match args.next().map(utf8).transpose()?.as_deref() {
            None => Ok(Command::Help(USAGE)),
            Some("explain") => Ok(Command::Help(EXPLAIN_USAGE)),
            Some(other) => Err(UsageError::new(format!(
                "no help for unknown command {other:?} (commands: explain)"
            ))),
        },
        "explain" => parse_explain(args),
        flag if flag.starts_with('-') => Err(UsageError::new(format!(
            "unknown flag {flag} before the command (try `redial --help`)"
        ))),
        other => Err(UsageError::new(format!(
            "unknown command {other:?} (commands: explain)"
        ))),
    }
}

fn utf8(arg: OsString) -> Result<String, UsageError> {
    arg.into_string()
        .map_err(|arg| UsageError::new(format!("argument {:?} is not valid UTF-8", arg.to_string_lossy())))
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
}

fn parse_explain(mut args: impl Iterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut raw = Raw::default();
    while let Some(arg) = args.next() {
        // A flag's name is UTF-8; `--flag=value` keeps the value as it came (it may be a path).
        let (name, inline) = split_flag(arg)?;
        let value = |args: &mut dyn Iterator<Item = OsString>| match inline.clone() {
            Some(v) => Ok(v),
            None => args
                .next()
                .ok_or_else(|| UsageError::new(format!("{name} needs a value"))),
        };
        fn set<T>(slot: &mut Option<T>, name: &str, v: T) -> Result<(), UsageError> {
            if slot.is_some() {
                return Err(UsageError::new(format!("{name} given more than once")));
            }
            *slot = Some(v);
            Ok(())
        }
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
            flag if flag.starts_with('-') && flag != "-" => {
                return Err(UsageError::new(format!(
                    "unknown flag {flag} for explain (see `redial explain --help`)"
                )))
            }
            other => {
                return Err(UsageError::new(format!(
                    "unexpected argument {other:?} for explain (see `redial explain --help`)"
                )))
            }
        }
    }
    check(raw).map(|a| Command::Explain(Box::new(a)))
}

/// Split `--flag=value` into its name and value; other arguments are a name alone.
fn split_flag(arg: OsString) -> Result<(String, Option<OsString>), UsageError> {
    let Some(text) = arg.to_str() else {
        // A bare non-UTF-8 argument is never a flag: report it as it is.
        return Err(UsageError::new(format!(
            "unexpected argument {:?} for explain",
            arg.to_string_lossy()
        )));
    };
    if text.starts_with("--") {
        if let Some((name, value)) = text.split_once('=') {
            return Ok((name.to_owned(), Some(OsString::from(value))));
        }
    }
    Ok((text.to_owned(), None))
}

fn check(raw: Raw) -> Result<ExplainArgs, UsageError> {
    let vendor_name = raw
        .vendor
        .ok_or_else(|| UsageError::new(format!("missing --vendor ({})", vendor_names())))?;
    let vendor = Vendor::from_name(&vendor_name)
        .ok_or_else(|| UsageError::new(format!("unknown vendor {vendor_name:?} (valid: {})", vendor_names())))?;

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
        return Err(UsageError::new(
            "--body-file and --request-body-file cannot both read stdin (`-`)",
        ));
    }
    if matches!(&args.body, Some(Input::File(p)) if p.as_os_str().is_empty())
        || matches!(&args.request_body, Some(Input::File(p)) if p.as_os_str().is_empty())
    {
        return Err(UsageError::new("a body file path cannot be empty"));
    }
    args.reconcile_hook = raw.reconcile_hook;
    Ok(args)
}

/// Parse `--status`: a number from 100 to 999.
pub fn parse_status(s: &str) -> Result<StatusCode, UsageError> {
    let invalid = || UsageError::new(format!("invalid --status {s:?}: expected 100 to 999"));
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
            "invalid --failure {s:?}: expected connect, timeout, io or body_read"
        ))),
    }
}

/// Parse `--method`, case-insensitively (`post` is `POST`).
pub fn parse_method(s: &str) -> Result<Method, UsageError> {
    Method::from_bytes(s.to_ascii_uppercase().as_bytes())
        .map_err(|_| UsageError::new(format!("invalid --method {s:?}")))
}

/// Parse `--url`: an absolute URL with a scheme and a host.
pub fn parse_url(s: &str) -> Result<Uri, UsageError> {
    let invalid = || {
        UsageError::new(format!(
            "invalid --url {s:?}: expected an absolute URL such as https://host/path"
        ))
    };
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
        .ok_or_else(|| UsageError::new(format!("invalid --attempt {s:?}: expected 1 to {MAX_ATTEMPT}")))
}

/// Parse one `Name: value` header, as given to `flag`. The value's surrounding spaces and tabs
/// are dropped; the name must be a valid field name, with no space before the colon.
pub fn parse_header(s: &str, flag: &str) -> Result<(HeaderName, HeaderValue), UsageError> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(UsageError::new(format!("invalid {flag} {s:?}: expected 'Name: value'")));
    };
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| UsageError::new(format!("invalid {flag} {s:?}: bad name {name:?}")))?;
    let value = HeaderValue::from_bytes(value.trim_matches([' ', '\t']).as_bytes())
        .map_err(|_| UsageError::new(format!("invalid {flag} {s:?}: bad value")))?;
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

    #[test]
    fn defaults_and_flags() {
        let a = explain(&["--vendor", "marketo", "--status", "200"]).unwrap();
        assert_eq!(a.vendor, Vendor::Marketo);
        assert_eq!(a.attempt, 1);
        assert_eq!(a.url.host(), Some("123-ABC-456.mktorest.com"));
        assert!(!a.reconcile_hook);

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
        ])
        .unwrap();
        assert_eq!(a.observed, Observed::Failure(Failure::Connect));
        assert_eq!(a.method, Method::POST);
        assert_eq!(a.url.path(), "/p");
        assert_eq!(a.attempt, 3);
        assert_eq!(a.request_headers["idempotency-key"], "42");
        assert_eq!(a.request_body, Some(Input::Stdin));
        assert!(a.reconcile_hook);
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
            (
                &["--vendor", "generic", "--status", "200", "--failure", "io"],
                "cannot both",
            ),
            (&["--vendor", "generic", "--status", "abc"], "--status"),
            (&["--vendor", "generic", "--status", "1000"], "--status"),
            (&["--vendor", "generic", "--status", "99"], "--status"),
            (&["--vendor", "generic", "--status", "+200"], "--status"),
            (&["--vendor", "generic", "--status"], "needs a value"),
            (&["--vendor", "generic", "--failure", "dns"], "--failure"),
            (
                &["--vendor", "generic", "--status", "200", "--header", "NoColon"],
                "Name: value",
            ),
            (
                &["--vendor", "generic", "--status", "200", "--header", "Bad Name: x"],
                "bad name",
            ),
            (
                &["--vendor", "generic", "--status", "200", "--header", ": x"],
                "bad name",
            ),
            (
                &["--vendor", "generic", "--status", "200", "--header", "A: b\u{1}"],
                "bad value",
            ),
            (
                &["--vendor", "generic", "--status", "200", "--attempt", "0"],
                "--attempt",
            ),
            (
                &["--vendor", "generic", "--status", "200", "--attempt", "1001"],
                "--attempt",
            ),
            (
                &["--vendor", "generic", "--status", "200", "--url", "/relative"],
                "--url",
            ),
            (
                &["--vendor", "generic", "--status", "200", "--method", "GE T"],
                "--method",
            ),
            (&["--vendor", "generic", "--status", "200", "--bogus"], "unknown flag"),
            (&["--vendor", "generic", "--status", "200", "stray"], "unexpected"),
            (
                &["--vendor", "generic", "--vendor", "generic", "--status", "200"],
                "more than once",
            ),
            (
                &["--vendor", "generic", "--failure", "io", "--body-file", "x"],
                "--failure",
            ),
            (
                &[
                    "--vendor",
                    "generic",
                    "--status",
                    "200",
                    "--body-file",
                    "-",
                    "--request-body-file",
                    "-",
                ],
                "stdin",
            ),
            (
                &["--vendor", "generic", "--status", "200", "--reconcile-hook=yes"],
                "no value",
            ),
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
        assert!(matches!(
            parse(["explain", "--vendor", "nope", "--help"]),
            Ok(Command::Help(EXPLAIN_USAGE))
        ));
        assert!(matches!(parse(["--version"]), Ok(Command::Version)));
        assert!(parse(Vec::<String>::new()).is_err());
        assert!(parse(["call"]).unwrap_err().message().contains("unknown command"));
        assert!(parse(["--bogus"]).unwrap_err().message().contains("unknown flag"));
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
