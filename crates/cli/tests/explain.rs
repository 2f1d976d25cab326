//! `redial explain` over the real binary: the vendor scenarios of `VENDORS.md`, the output's
//! shape, and every way to get exit status 2.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

/// Verbatim from VENDORS.md (Marketo fixtures).
const MARKETO_606: &str = r#"{"requestId":"e42b#14272d07d78","success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"}]}"#;

/// Verbatim from the seed page (Marketo error codes, record level): two created, one skipped.
const MARKETO_1005: &str = r#"{
"requestId":"e42b#14272d07d78",
"success":true,
"result":[
{
"id":50,
"status":"created"
},
{
"id":51,
"status":"created"
},
{
"status":"skipped",
"reasons":[
{
"code":"1005",
"message":"Lead already exists"
}
]
}
]
}"#;

/// Verbatim from VENDORS.md (Adobe fixtures): the 207 with an error and a warning.
const ADOBE_207: &str = r#"{"requestId":"72eaa048-207e-4dde-bf16-0cb2b21336d5","handle":[],"errors":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0201-503","status":503,"title":"The 'com.adobe.experience.platform.ode' service is temporarily unable to serve this request. Please try again later."}],"warnings":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0204-200","status":200,"title":"A warning occurred while calling the 'com.adobe.audiencemanager' service for this request.","report":{"cause":{"message":"Cannot read related customer for device id: ...","code":202}}}]}"#;

const JSON: &str = "Content-Type: application/json";

/// A Responsys error envelope (as in the vendor tests).
fn responsys_envelope(code: &str) -> String {
    format!(r#"{{"type":"","title":"A title","errorCode":"{code}","detail":"Some detail","errorDetails":[]}}"#)
}

/// A SOAP 1.1 fault carrying these Genesys `<error>`s (as in the vendor tests).
fn genesys_fault(errors: &[&str]) -> String {
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

/// A SOAP request invoking `op` (as in the vendor tests).
fn genesys_request(op: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Header><wsse:Security xmlns:wsse="x"/></S:Header><S:Body><api:{op} xmlns:api="http://engage.example/api"><subCampaign><externalId>X1</externalId></subCampaign></api:{op}></S:Body></S:Envelope>"#
    )
}

/// A file under the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "redial-cli-test-{}-{}.body",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redial"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    run_with_stdin(args, None)
}

/// Run `redial explain` with these arguments; expect success and exactly one line of JSON.
fn explain(args: &[&str]) -> Value {
    explain_with_stdin(args, None)
}

fn explain_with_stdin(args: &[&str], stdin: Option<&str>) -> Value {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    let r = run_with_stdin(&all, stdin);
    assert_eq!(r.code, 0, "{args:?}: stderr {}", r.stderr);
    assert!(r.stderr.is_empty(), "{args:?}: stderr {}", r.stderr);
    assert!(r.stdout.ends_with('\n'), "{:?}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 1, "{:?}", r.stdout);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v.is_object());
    v
}

/// The documented members, present in every output.
const FIELDS: [&str; 11] =
    ["vendor", "kind", "action", "code", "message", "delay_ms", "reason", "errors", "body", "hint_ms", "fail_reason"];

fn assert_shape(v: &Value) {
    for field in FIELDS {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    let action = v["action"].as_str().unwrap();
    assert_eq!(v["delay_ms"].is_null(), action != "retry", "{v}");
    assert_eq!(v["fail_reason"].is_null(), action != "fail", "{v}");
    for e in v["errors"].as_array().unwrap() {
        for field in ["code", "message", "scope", "index", "attributes"] {
            assert!(e.get(field).is_some(), "error without {field}: {e}");
        }
        assert!(e["attributes"].is_object());
    }
}

fn delay(v: &Value) -> (u64, u64) {
    (v["delay_ms"]["min"].as_u64().unwrap(), v["delay_ms"]["max"].as_u64().unwrap())
}

#[test]
fn marketo_606_in_a_200_is_throttled_and_retried() {
    let body = TempFile::new(MARKETO_606);
    let v = explain(&["--vendor", "marketo", "--status", "200", "--header", JSON, "--body-file", body.path()]);
    assert_shape(&v);
    assert_eq!(v["vendor"], "marketo");
    assert_eq!(v["kind"], "throttled");
    assert_eq!(v["action"], "retry");
    assert_eq!(v["code"], "606");
    assert_eq!(v["message"], "Max rate limit '100' exceeded with in '20' secs");
    assert_eq!(v["body"], "parsed");
    let (min, max) = delay(&v);
    assert!(min <= max && max > 0, "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["code"], "606");
    assert_eq!(errors[0]["scope"], "response");
    assert_eq!(errors[0]["index"], Value::Null);
}

#[test]
fn the_same_body_via_stdin() {
    let v = explain_with_stdin(
        &["--vendor", "marketo", "--status", "200", "--header", JSON, "--body-file", "-"],
        Some(MARKETO_606),
    );
    assert_eq!((&v["kind"], &v["action"]), (&json!("throttled"), &json!("retry")));
    assert_eq!(v["code"], "606");
}

#[test]
fn marketo_record_level_1005_is_partial() {
    let check = |body: &str, index: u64| {
        let body = TempFile::new(body);
        let v = explain(&[
            "--vendor",
            "marketo",
            "--method",
            "POST",
            "--status",
            "200",
            "--header",
            JSON,
            "--body-file",
            body.path(),
        ]);
        assert_shape(&v);
        assert_eq!((&v["kind"], &v["action"]), (&json!("partial"), &json!("return")));
        assert_eq!(v["delay_ms"], Value::Null);
        assert_eq!(v["code"], "1005");
        let errors = v["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{v}");
        assert_eq!(errors[0]["scope"], "record");
        assert_eq!(errors[0]["index"], index);
        assert_eq!(errors[0]["message"], "Lead already exists");
    };
    // The seed fixture: the third record (index 2) was skipped.
    check(MARKETO_1005, 2);
    // The same with the skipped record second.
    check(
        r#"{"requestId":"r","success":true,"result":[{"id":50,"status":"created"},{"status":"skipped","reasons":[{"code":"1005","message":"Lead already exists"}]}]}"#,
        1,
    );
}

#[test]
fn adobe_429_waits_for_retry_after() {
    let v = explain(&["--vendor", "adobe-edge", "--method", "POST", "--status", "429", "--header", "Retry-After: 5"]);
    assert_shape(&v);
    assert_eq!((&v["kind"], &v["action"]), (&json!("throttled"), &json!("retry")));
    assert_eq!(delay(&v), (5000, 5000));
    assert_eq!(v["hint_ms"], 5000);
}

#[test]
fn adobe_207_is_partial_with_errors_and_warnings() {
    let body = TempFile::new(ADOBE_207);
    let v = explain(&[
        "--vendor",
        "adobe-edge",
        "--method",
        "POST",
        "--status",
        "207",
        "--header",
        JSON,
        "--body-file",
        body.path(),
    ]);
    assert_shape(&v);
    assert_eq!((&v["kind"], &v["action"]), (&json!("partial"), &json!("return")));
    assert_eq!(v["delay_ms"], Value::Null);
    let errors = v["errors"].as_array().unwrap();
    let scopes: Vec<_> = errors.iter().map(|e| (e["code"].as_str().unwrap(), e["scope"].as_str().unwrap())).collect();
    assert_eq!(scopes, [("EXEG-0201-503", "non_fatal"), ("EXEG-0204-200", "warning")]);
    assert_eq!(errors[0]["attributes"]["status"], "503");
    assert_eq!(errors[0]["attributes"]["requestId"], "72eaa048-207e-4dde-bf16-0cb2b21336d5");
    assert_eq!(v["code"], "EXEG-0201-503");
}

#[test]
fn responsys_unrecoverable_exception_is_resubmitted_once() {
    let body = TempFile::new(&responsys_envelope("UNRECOVERABLE_EXCEPTION"));
    let args = |attempt: &'static str| {
        vec![
            "--vendor",
            "responsys",
            "--method",
            "POST",
            "--status",
            "500",
            "--header",
            JSON,
            "--body-file",
            body.path(),
            "--attempt",
            attempt,
        ]
    };
    let first = explain(&args("1"));
    assert_shape(&first);
    assert_eq!((&first["kind"], &first["action"]), (&json!("transient"), &json!("retry")));
    assert_eq!(first["code"], "UNRECOVERABLE_EXCEPTION");
    assert!(delay(&first).0 >= 30_000, "{first}");

    let second = explain(&args("2"));
    assert_shape(&second);
    assert_eq!(second["action"], "fail");
    assert_eq!(second["delay_ms"], Value::Null);
    let reason = second["reason"].as_str().unwrap();
    let fail_reason = second["fail_reason"].as_str().unwrap();
    assert!(reason.ends_with(fail_reason), "{second}");
    assert!(fail_reason.contains("responsys.unrecoverable_exception"), "{second}");
    let history = second["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["action"], "retry");
}

#[test]
fn genesys_internal_error_on_create_sub_campaign_reconciles() {
    let body = TempFile::new(&genesys_fault(&["INTERNAL_ERROR"]));
    let request = TempFile::new(&genesys_request("createSubCampaign"));
    let mut args = vec![
        "--vendor",
        "genesys-engage",
        "--method",
        "POST",
        "--status",
        "500",
        "--header",
        "Content-Type: text/xml; charset=utf-8",
        "--body-file",
        body.path(),
        "--request-body-file",
        request.path(),
    ];
    let without = explain(&args);
    assert_shape(&without);
    assert_eq!(without["advice"], "reconcile");
    assert_eq!(without["action"], "fail");
    assert_eq!(without["code"], "INTERNAL_ERROR");
    assert!(without["reason"].as_str().unwrap().contains("no reconcile hook"), "{without}");

    args.push("--reconcile-hook");
    let with = explain(&args);
    assert_shape(&with);
    assert_eq!(with["kind"], "transient");
    assert_eq!(with["action"], "reconcile");
    assert_eq!(with["fail_reason"], Value::Null);

    // Another operation is simply re-invoked.
    let other = TempFile::new(&genesys_request("createCampaign"));
    let last = args.len() - 2;
    args[last] = other.path();
    let plain = explain(&args);
    assert_eq!(plain["action"], "retry");
}

#[test]
fn generic_status_rules() {
    let v = explain(&["--vendor", "generic", "--status", "503", "--header", "Retry-After: 2"]);
    assert_shape(&v);
    assert_eq!((&v["kind"], &v["action"]), (&json!("transient"), &json!("retry")));
    assert_eq!(delay(&v), (2000, 2000));

    let v = explain(&["--vendor", "generic", "--status", "404"]);
    assert_shape(&v);
    assert_eq!((&v["kind"], &v["action"]), (&json!("fatal"), &json!("fail")));
    assert_eq!(v["delay_ms"], Value::Null);
    assert_eq!(v["code"], Value::Null);
    assert_eq!(v["message"], Value::Null);
    assert_eq!(v["errors"], json!([]));
}

#[test]
fn a_failed_connection_is_retried_for_any_method() {
    let v = explain(&["--vendor", "generic", "--method", "POST", "--failure", "connect"]);
    assert_shape(&v);
    assert_eq!((&v["kind"], &v["action"]), (&json!("transient"), &json!("retry")));
    assert_eq!((&v["status"], &v["failure"]), (&Value::Null, &json!("connect")));
    // After it may have reached the server, a POST is not re-sent.
    let v = explain(&["--vendor", "generic", "--method", "POST", "--failure", "io"]);
    assert_eq!(v["action"], "fail");
    // Unless it carries an Idempotency-Key.
    let v = explain(&[
        "--vendor",
        "generic",
        "--method",
        "POST",
        "--failure",
        "io",
        "--request-header",
        "Idempotency-Key: 42",
    ]);
    assert_eq!(v["action"], "retry");
}

#[test]
fn help_goes_to_stdout() {
    for args in [&["--help"][..], &["-h"], &["help"], &["explain", "--help"], &["help", "explain"]] {
        let r = run(args);
        assert_eq!(r.code, 0, "{args:?}");
        assert!(r.stdout.contains("Usage"), "{args:?}: {}", r.stdout);
        assert!(r.stderr.is_empty());
    }
    assert!(run(&["explain", "--help"]).stdout.contains("--body-file"));
}

#[test]
fn bad_input_exits_2_with_one_line_on_stderr() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["explain", "--vendor", "acme", "--status", "200"],
            "marketo, adobe-edge, responsys, genesys-engage, generic",
        ),
        (&["explain", "--vendor", "generic", "--status", "abc"], "--status"),
        (&["explain", "--vendor", "generic", "--status", "1000"], "--status"),
        (&["explain", "--vendor", "generic", "--status", "200", "--header", "NoColon"], "--header"),
        (&["explain", "--vendor", "generic", "--status", "200", "--header", "Bad Name: x"], "--header"),
        (
            &[
                "explain",
                "--vendor",
                "generic",
                "--status",
                "200",
                "--body-file",
                "/nonexistent/redial-cli-test/body.json",
            ],
            "--body-file",
        ),
        (&["explain", "--vendor", "generic", "--status", "200", "--frobnicate"], "--frobnicate"),
        // Attempt 4 is never made: the generic policy's third 502 ends the request.
        (
            &["explain", "--vendor", "generic", "--status", "502", "--attempt", "4"],
            "attempt 4 is never made: with this outcome every time, attempt 3 ends the request (fail: gave up after 3 attempts)",
        ),
        (&["explain", "--vendor", "generic", "--status", "200", "--attempt", "2"], "attempt 1 ends the request (return"),
        (&["explain", "--vendor", "marketo", "--status", "200", "--no-login=no"], "--no-login takes no value"),
        (&["explain", "--vendor", "generic"], "--status"),
        (&["explain", "--vendor", "generic", "--status", "200", "--failure", "io"], "--failure"),
        (&[], "command"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, want) in cases {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stdout);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert!(r.stderr.starts_with("redial: "), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
    }
}
