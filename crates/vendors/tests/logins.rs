//! The built-in logins: Marketo identity, Responsys password, Adobe IMS and generic OAuth2
//! client credentials. Their requests, the parse of their answers, the fatal/transient tables,
//! tolerance, and that no secret ever shows.

use std::time::{Duration, SystemTime};

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use proptest::prelude::*;
use redial_core::auth::{Attach, Credential, Login, LoginError, LoginFailureKind, Secret};
use redial_core::ResponseHead;
use redial_vendors::adobe::{ImsLogin, IMS_TOKEN_URL};
use redial_vendors::marketo::{self, IdentityLogin};
use redial_vendors::oauth2::{form_urlencode, AuthStyle, ClientCredentials};
use redial_vendors::responsys::{PasswordLogin, TOKEN_LIFETIME};

const CLIENT_SECRET: &str = "sEcReT-9f8e7d6c5b4a";
const PASSWORD: &str = "P4ss w0rd&=!";
const TOKEN: &str = "tok-3c1b2a99e0d4-TOKEN";

const HTML_GATEWAY: &str =
    "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>";

// ---------------------------------------------------------------------------------------------
// Helpers.

fn marketo() -> IdentityLogin {
    IdentityLogin::new("https://123-ABC-456.mktorest.com/identity", "mkto-client-id", CLIENT_SECRET).unwrap()
}

fn responsys() -> PasswordLogin {
    PasswordLogin::new("https://login2.responsys.net", "api.user@acme.example", PASSWORD).unwrap()
}

fn adobe() -> ImsLogin {
    ImsLogin::new("adobe-client-id", CLIENT_SECRET, ["openid", "AdobeID", "read_organizations"])
}

fn oauth() -> ClientCredentials {
    ClientCredentials::new("https://auth.example.com/oauth2/token", "oauth client", CLIENT_SECRET).unwrap()
}

/// Every login, boxed, with its name.
fn all_logins() -> Vec<(&'static str, Box<dyn Login>)> {
    vec![
        ("marketo", Box::new(marketo())),
        ("responsys", Box::new(responsys())),
        ("adobe", Box::new(adobe())),
        ("oauth2", Box::new(oauth())),
        ("oauth2-post", Box::new(oauth().auth_style(AuthStyle::Post))),
    ]
}

fn parse(login: &dyn Login, status: u16, body: &str) -> Result<Credential, LoginError> {
    parse_with(login, status, &HeaderMap::new(), body.as_bytes())
}

fn parse_with(login: &dyn Login, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Credential, LoginError> {
    login.parse(&ResponseHead::new(StatusCode::from_u16(status).unwrap(), headers, SystemTime::now()), body)
}

fn json_headers(content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
    h
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => panic!("bad hex digit {b}"),
    }
}

/// Decode one `application/x-www-form-urlencoded` component.
fn form_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// A form body's pairs, decoded, in order.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let body = std::str::from_utf8(body).unwrap();
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk.iter().map(|&c| if c == b'=' { 0 } else { value(c) }).fold(0u32, |acc, v| acc << 6 | v);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

fn assert_fatal(r: Result<Credential, LoginError>, code: Option<&str>) -> LoginError {
    let e = r.expect_err("the login must fail");
    assert_eq!(e.kind(), LoginFailureKind::Fatal, "{e}");
    assert!(e.is_fatal());
    assert_eq!(e.code(), code, "{e}");
    e
}

fn assert_transient(r: Result<Credential, LoginError>) -> LoginError {
    let e = r.expect_err("the login must fail");
    assert_eq!(e.kind(), LoginFailureKind::Transient, "{e}");
    assert!(!e.is_fatal());
    e
}

fn oauth_error(code: &str) -> String {
    format!(r#"{{"error":"{code}","error_description":"something about {code}"}}"#)
}

fn responsys_error(code: &str) -> String {
    format!(
        r#"{{"type":"","title":"Login failed","errorCode":"{code}","detail":"Detail of {code}","errorDetails":[]}}"#
    )
}

const RESPONSYS_OK: &str =
    r#"{"authToken":"tok-3c1b2a99e0d4-TOKEN","issuedAt":1427325074342,"endPoint":"https://rest-pod1.responsys.net"}"#;
const MARKETO_OK: &str =
    r#"{"access_token":"tok-3c1b2a99e0d4-TOKEN","token_type":"bearer","expires_in":3599,"scope":"apis@acmeinc.com"}"#;
const ADOBE_OK: &str = r#"{"access_token":"tok-3c1b2a99e0d4-TOKEN","token_type":"bearer","expires_in":86399}"#;
const OAUTH_OK: &str = r#"{"access_token":"tok-3c1b2a99e0d4-TOKEN","token_type":"Bearer","expires_in":3600}"#;

// ---------------------------------------------------------------------------------------------
// Requests.

fn assert_form_request(login: &dyn Login, uri: &str) -> Vec<(String, String)> {
    let req = login.request();
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri(), uri);
    assert!(req.uri().query().is_none(), "nothing in the query");
    assert!(!req.uri().to_string().contains(CLIENT_SECRET));
    assert!(!req.uri().to_string().contains(&form_urlencode(PASSWORD)));
    assert_eq!(req.headers()[CONTENT_TYPE], "application/x-www-form-urlencoded");
    assert_eq!(req.headers()[ACCEPT], "application/json");
    form_fields(req.body())
}

#[test]
fn marketo_request() {
    let fields = assert_form_request(&marketo(), "https://123-ABC-456.mktorest.com/identity/oauth/token");
    assert_eq!(
        fields,
        [
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), "mkto-client-id".into()),
            ("client_secret".into(), CLIENT_SECRET.into()),
        ]
    );
    assert!(marketo().request().headers().get(AUTHORIZATION).is_none());
    assert_eq!(marketo().attach(), Attach::Bearer);
    assert_eq!(marketo().client_id(), "mkto-client-id");
}

#[test]
fn marketo_identity_url_forms() {
    for url in [
        "https://123-ABC-456.mktorest.com/identity",
        "https://123-ABC-456.mktorest.com/identity/",
        " https://123-ABC-456.mktorest.com/identity/oauth/token ",
    ] {
        let login = IdentityLogin::new(url, "id", "secret").unwrap();
        assert_eq!(login.token_url(), "https://123-ABC-456.mktorest.com/identity/oauth/token");
    }
    // No scheme, another scheme, nothing, credentials in it, a port without a host.
    for bad in
        ["123-ABC-456.mktorest.com/identity", "ftp://x/identity", "", "https://u:p@h/identity", "https://:443/identity"]
    {
        let e = IdentityLogin::new(bad, "id", CLIENT_SECRET).unwrap_err();
        assert!(e.to_string().starts_with("invalid login URL"), "{e}");
    }
}

#[test]
fn responsys_request() {
    let fields = assert_form_request(&responsys(), "https://login2.responsys.net/rest/api/v1.3/auth/token");
    assert_eq!(
        fields,
        [
            ("user_name".into(), "api.user@acme.example".into()),
            ("password".into(), PASSWORD.into()),
            ("auth_type".into(), "password".into()),
        ]
    );
    assert!(responsys().request().headers().get(AUTHORIZATION).is_none());
    assert_eq!(responsys().attach(), Attach::Raw);
    let again = PasswordLogin::new("https://login2.responsys.net/rest/api/v1.3/auth/token/", "u", "p").unwrap();
    assert_eq!(again.token_url(), "https://login2.responsys.net/rest/api/v1.3/auth/token");
    assert_eq!(again.user_name(), "u");
}

#[test]
fn adobe_request() {
    let fields = assert_form_request(&adobe(), IMS_TOKEN_URL);
    assert_eq!(
        fields,
        [
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), "adobe-client-id".into()),
            ("client_secret".into(), CLIENT_SECRET.into()),
            ("scope".into(), "openid,AdobeID,read_organizations".into()),
        ]
    );
    assert_eq!(adobe().attach(), Attach::Bearer);
    assert_eq!(adobe().client_id(), "adobe-client-id");
    assert_eq!(adobe().scope(), Some("openid,AdobeID,read_organizations"));

    let other = adobe().token_url("http://127.0.0.1:9/ims/token/v3").unwrap();
    assert_eq!(other.request().uri(), "http://127.0.0.1:9/ims/token/v3");
    assert!(adobe().token_url("not a url").is_err());

    // No scopes: no scope parameter.
    let bare = ImsLogin::new("id", "secret", Vec::<String>::new());
    let fields = form_fields(bare.request().body());
    assert_eq!(field(&fields, "scope"), None);
}

#[test]
fn oauth2_request_basic() {
    let login = oauth().scope("read write").param("audience", "https://api.example.com");
    let fields = assert_form_request(&login, "https://auth.example.com/oauth2/token");
    assert_eq!(
        fields,
        [
            ("grant_type".into(), "client_credentials".into()),
            ("scope".into(), "read write".into()),
            ("audience".into(), "https://api.example.com".into()),
        ]
    );
    let req = login.request();
    let auth = &req.headers()[AUTHORIZATION];
    assert!(auth.is_sensitive());
    let encoded = auth.to_str().unwrap().strip_prefix("Basic ").unwrap();
    let decoded = String::from_utf8(base64_decode(encoded)).unwrap();
    // RFC 6749 §2.3.1: each half form-urlencoded before base64.
    assert_eq!(decoded, format!("oauth+client:{}", form_urlencode(CLIENT_SECRET)));
    let (id, secret) = decoded.split_once(':').unwrap();
    assert_eq!(form_decode(id), "oauth client");
    assert_eq!(form_decode(secret), CLIENT_SECRET);
}

#[test]
fn oauth2_basic_matches_rfc_example() {
    let login =
        ClientCredentials::new("https://server.example.com/token", "s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw").unwrap();
    assert_eq!(login.request().headers()[AUTHORIZATION], "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3");
    // Characters that need escaping: ':' in the id, non-ASCII in the secret.
    let login = ClientCredentials::new("https://server.example.com/token", "a:b", "pé/s s").unwrap();
    let value = login.request().headers()[AUTHORIZATION].to_str().unwrap().to_owned();
    let decoded = String::from_utf8(base64_decode(value.strip_prefix("Basic ").unwrap())).unwrap();
    assert_eq!(decoded, "a%3Ab:p%C3%A9%2Fs+s");
}

#[test]
fn oauth2_request_post_and_builders() {
    let login = oauth()
        .auth_style(AuthStyle::Post)
        .scopes(["a", "b"])
        .param("resource", "r 1")
        .param("grant_type", "password")
        .param("client_secret", "other")
        .with_attach(Attach::Header(http::header::HeaderName::from_static("x-token")));
    let req = login.request();
    assert!(req.headers().get(AUTHORIZATION).is_none());
    let fields = form_fields(req.body());
    assert_eq!(
        fields,
        [
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), "oauth client".into()),
            ("client_secret".into(), CLIENT_SECRET.into()),
            ("scope".into(), "a b".into()),
            ("resource".into(), "r 1".into()),
        ]
    );
    assert_eq!(login.attach(), Attach::Header(http::header::HeaderName::from_static("x-token")));
    assert_eq!(login.client_id(), "oauth client");
    assert_eq!(login.token_url(), "https://auth.example.com/oauth2/token");
    // An empty scope sends none.
    let fields = form_fields(oauth().scope("  ").request().body());
    assert_eq!(field(&fields, "scope"), None);
}

#[test]
fn form_urlencode_keeps_unreserved_only() {
    assert_eq!(form_urlencode("AZaz09-._~"), "AZaz09-._~");
    assert_eq!(form_urlencode(" "), "+");
    assert_eq!(form_urlencode("+&=%/?#:@*'!"), "%2B%26%3D%25%2F%3F%23%3A%40%2A%27%21");
    assert_eq!(form_urlencode("é€"), "%C3%A9%E2%82%AC");
    assert_eq!(form_urlencode(""), "");
}

// ---------------------------------------------------------------------------------------------
// Success.

#[test]
fn marketo_success() {
    let c = parse(&marketo(), 200, MARKETO_OK).unwrap();
    assert_eq!(c.token.expose(), TOKEN);
    assert_eq!(c.lifetime, Some(Duration::from_secs(3599)));
    assert_eq!(c.endpoint, None);
}

#[test]
fn responsys_success() {
    let c = parse(&responsys(), 200, RESPONSYS_OK).unwrap();
    assert_eq!(c.token.expose(), TOKEN);
    assert_eq!(c.lifetime, Some(TOKEN_LIFETIME));
    assert_eq!(TOKEN_LIFETIME, Duration::from_secs(7200));
    let endpoint = c.endpoint.unwrap();
    assert_eq!(endpoint.scheme_str(), Some("https"));
    assert_eq!(endpoint.host(), Some("rest-pod1.responsys.net"));

    let shorter = responsys().token_lifetime(Duration::from_secs(3600));
    assert_eq!(parse(&shorter, 200, RESPONSYS_OK).unwrap().lifetime, Some(Duration::from_secs(3600)));

    // A trailing slash, surrounding blanks, and an account-specific AFTM host.
    let body = r#"{"authToken":"t","issuedAt":"1427325074342","endPoint":" https://acme-aftm.responsys.ocs.oraclecloud.com/ "}"#;
    let c = parse(&responsys(), 200, body).unwrap();
    assert_eq!(c.endpoint.unwrap().host(), Some("acme-aftm.responsys.ocs.oraclecloud.com"));
}

#[test]
fn adobe_success() {
    let c = parse(&adobe(), 200, ADOBE_OK).unwrap();
    assert_eq!(c.token.expose(), TOKEN);
    assert_eq!(c.lifetime, Some(Duration::from_secs(86399)));
    assert_eq!(c.endpoint, None);
}

#[test]
fn oauth2_success() {
    let c = parse(&oauth(), 200, OAUTH_OK).unwrap();
    assert_eq!(c.token.expose(), TOKEN);
    assert_eq!(c.lifetime, Some(Duration::from_secs(3600)));
    // No expires_in: no lifetime.
    let c = parse(&oauth(), 200, r#"{"access_token":"abc","token_type":"Bearer"}"#).unwrap();
    assert_eq!(c.lifetime, None);
}

// ---------------------------------------------------------------------------------------------
// Fatal answers.

#[test]
fn marketo_fatal() {
    let bad = r#"{"error":"invalid_client","error_description":"Bad client credentials"}"#;
    let e = assert_fatal(parse(&marketo(), 401, bad), Some("invalid_client"));
    assert!(e.message().contains("Bad client credentials"), "{e}");
    assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(&e.body()[..], bad.as_bytes());
    // Even on a 200 or a 400.
    assert_fatal(parse(&marketo(), 200, bad), Some("invalid_client"));
    assert_fatal(parse(&marketo(), 400, bad), Some("invalid_client"));
    // 401 without a recognisable body: bad client id or secret.
    let e = assert_fatal(parse(&marketo(), 401, ""), None);
    assert!(e.message().contains("bad client id or secret"), "{e}");
    assert_fatal(parse(&marketo(), 401, HTML_GATEWAY), None);
    // An unknown OAuth code on a 401 is fatal, with the code kept.
    assert_fatal(
        parse(
            &marketo(),
            401,
            r#"{"error":"unauthorized","error_description":"An Authentication object was not found"}"#,
        ),
        Some("unauthorized"),
    );
    // A Marketo envelope with a final code.
    let body = r#"{"requestId":"e42b#1","success":false,"errors":[{"code":"603","message":"Access denied"}]}"#;
    assert_fatal(parse(&marketo(), 200, body), Some("603"));
}

#[test]
fn responsys_fatal_codes() {
    for code in [
        "LOGIN_BLOCKED_TEMPORARILY",
        "PASSWORD_LOCKOUT",
        "PASSWORD_EXPIRED",
        "PASSWORD_MUST_CHANGE",
        "ACCOUNT_SUSPENDED",
        "LOGIN_BLOCKED_INVALID_IPRANGE",
        "WS_ARG_DISABLED",
        "INVALID_USER_NAME_PASSWORD",
        "API_BLOCKED",
        "INVALID_PARAMETER",
        // A code the login table does not list is fatal whatever the status, a 5xx included
        // (VENDORS.md: "… others | fatal | fail; never hammer the login"): the documented 500,
        // UNRECOVERABLE_EXCEPTION, is resubmitted only once; an undocumented one is not
        // resubmitted at every backoff window until the deadline.
        "SOME_NEW_CODE",
        "UNEXPECTED_EXCEPTION",
    ] {
        for status in [400, 401, 403, 500, 502, 503, 504, 200] {
            let e = assert_fatal(parse(&responsys(), status, &responsys_error(code)), Some(code));
            assert_eq!(e.status().map(|s| s.as_u16()), Some(status));
            assert!(e.message().contains(&format!("Detail of {code}")), "{e}");
        }
    }
    // PASSWORD_* is a prefix row: every code under it says what to do about the password.
    for code in ["PASSWORD_LOCKOUT", "PASSWORD_EXPIRED", "PASSWORD_MUST_CHANGE"] {
        let e = assert_fatal(parse(&responsys(), 401, &responsys_error(code)), Some(code));
        assert!(e.message().contains("the password is locked out or expired"), "{code}: {e}");
    }
    let e = assert_fatal(parse(&responsys(), 401, &responsys_error("PASSWORD_")), Some("PASSWORD_"));
    assert!(!e.message().contains("the password is locked out"), "the bare prefix is no code of the row: {e}");
    // Any 401/403 without an envelope.
    for status in [401, 403] {
        assert_fatal(parse(&responsys(), status, ""), None);
        assert_fatal(parse(&responsys(), status, HTML_GATEWAY), None);
        assert_fatal(parse(&responsys(), status, r#"{"message":"no"}"#), None);
    }
}

#[test]
fn oauth_fatal_codes() {
    let logins: [(&str, Box<dyn Login>); 4] = [
        ("marketo", Box::new(marketo())),
        ("adobe", Box::new(adobe())),
        ("oauth2", Box::new(oauth())),
        ("oauth2-post", Box::new(oauth().auth_style(AuthStyle::Post))),
    ];
    for (name, login) in &logins {
        for code in [
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "invalid_request",
            "access_denied",
        ] {
            for status in [400, 401, 403, 500, 200] {
                let e = assert_fatal(parse(login.as_ref(), status, &oauth_error(code)), Some(code));
                assert!(e.message().contains(&format!("something about {code}")), "{name}: {e}");
            }
        }
        for status in [401, 403] {
            assert_fatal(parse(login.as_ref(), status, ""), None);
            assert_fatal(parse(login.as_ref(), status, "{}"), None);
        }
        // A JSON 400 that says nothing recognisable: refused.
        assert_fatal(parse(login.as_ref(), 400, r#"{"message":"bad"}"#), None);
        // A wrong URL or a redirect (the table's 404, 405, 410 and 3xx rows), whatever the body.
        for status in [404, 405, 410, 301, 302, 303, 307, 308] {
            for body in ["", HTML_GATEWAY, "{}"] {
                assert_fatal(parse(login.as_ref(), status, body), None);
            }
        }
    }
}

#[test]
fn adobe_fatal_fixture() {
    let body = r#"{"error":"invalid_scope","error_description":"Invalid scope(s): read_everything"}"#;
    let e = assert_fatal(parse(&adobe(), 400, body), Some("invalid_scope"));
    assert_eq!(
        e.to_string(),
        "login refused: adobe ims: the scope is invalid or beyond what the client was granted: Invalid scope(s): read_everything (invalid_scope) [HTTP 400]"
    );
}

// ---------------------------------------------------------------------------------------------
// Transient answers.

#[test]
fn transient_statuses_for_every_login() {
    for (name, login) in all_logins() {
        for status in [500, 502, 503, 504, 429, 408] {
            for body in ["", HTML_GATEWAY, "{}", r#"{"access_token":"#, "Service Temporarily Unavailable"] {
                let e = assert_transient(parse(login.as_ref(), status, body));
                assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{name}");
                assert_eq!(&e.body()[..], body.as_bytes(), "{name}: the body of a failed login is kept");
            }
        }
        // 2xx that is not a token answer.
        for body in [
            "",
            "   ",
            HTML_GATEWAY,
            r#"{"access_token":"abc","expires_in":36"#,
            r#"{"authToken":"abc","endPoint":"https"#,
            "[]",
            "null",
        ] {
            let e = assert_transient(parse(login.as_ref(), 200, body));
            assert!(e.body().is_empty(), "{name}: a 2xx body is not kept");
        }
        // A 400 gateway page is not the vendor's answer.
        assert_transient(parse(login.as_ref(), 400, HTML_GATEWAY));
        // Only a 4xx with a JSON body is the endpoint refusing the request: a status of no class
        // the table names (1xx, or beyond 599) is an unexpected answer, not a refusal.
        for status in [100, 199, 600, 999] {
            for body in ["{}", r#"{"message":"bad"}"#, ""] {
                let e = assert_transient(parse(login.as_ref(), status, body));
                assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{name}");
            }
        }
    }
}

/// A failed login says why its answer was not read: an empty body, truncated JSON, a body that
/// is not JSON or not a JSON object; "not a token" for a 2xx, "not JSON" otherwise.
#[test]
fn an_answer_that_is_not_a_token_says_why() {
    let table: &[(u16, &str, &str)] = &[
        (200, "", "the answer is not a token (empty body)"),
        (200, " \r\n", "the answer is not a token (empty body)"),
        (200, r#"{"access_token":"abc","expires_in":36"#, "the answer is not a token (truncated JSON)"),
        (200, HTML_GATEWAY, "the answer is not a token (not JSON)"),
        (200, "[]", "the answer is not a token (not a JSON object)"),
        (400, HTML_GATEWAY, "the answer is not JSON (not JSON)"),
        (400, r#"{"error":"#, "the answer is not JSON (truncated JSON)"),
        (400, "null", "the answer is not JSON (not a JSON object)"),
        (502, "", "the login endpoint is unavailable or throttled"),
    ];
    for (name, login) in all_logins() {
        for &(status, body, why) in table {
            let e = assert_transient(parse(login.as_ref(), status, body));
            assert!(e.message().ends_with(why), "{name}, {status} {body:?}: {e}");
        }
    }
}

#[test]
fn oauth_transient_codes() {
    for login in [Box::new(marketo()) as Box<dyn Login>, Box::new(adobe()), Box::new(oauth())] {
        for code in ["temporarily_unavailable", "server_error", "slow_down"] {
            let e = assert_transient(parse(login.as_ref(), 400, &oauth_error(code)));
            assert_eq!(e.code(), Some(code));
        }
        // An unknown code is judged by the status.
        let e = assert_transient(parse(login.as_ref(), 503, &oauth_error("maintenance")));
        assert_eq!(e.code(), Some("maintenance"));
        assert_fatal(parse(login.as_ref(), 400, &oauth_error("maintenance")), Some("maintenance"));
        // 200 JSON without a token.
        assert_transient(parse(login.as_ref(), 200, r#"{"token_type":"bearer"}"#));
        assert_transient(parse(login.as_ref(), 200, r#"{"access_token":""}"#));
        assert_transient(parse(login.as_ref(), 200, r#"{"access_token":"bad\ntoken"}"#));
    }
}

#[test]
fn marketo_transient_envelope() {
    // (code, the least wait before the next login)
    let table: &[(&str, Option<Duration>)] = &[
        ("604", None),
        // 100 calls / 20 s: the login waits the window out, as a request's 606 retry does (the
        // host limiter holds that one until the window has room; nothing holds a login).
        ("606", Some(marketo::RATE_WINDOW)),
        ("608", None),
        ("611", None),
        ("615", None),
        ("713", None),
    ];
    for &(code, wait) in table {
        let body = format!(r#"{{"requestId":"1","success":false,"errors":[{{"code":{code},"message":"m"}}]}}"#);
        let e = assert_transient(parse(&marketo(), 200, &body));
        assert_eq!(e.code(), Some(code));
        assert_eq!(e.retry_after(), wait, "{code}");
    }
    // A Retry-After on the answer holds when it is longer than the rule's wait, not when shorter.
    let body =
        r#"{"success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"}]}"#;
    for (header, want) in [("5", 20), ("45", 45)] {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", header.parse().unwrap());
        let e = parse_with(&marketo(), 200, &headers, body.as_bytes()).unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(want)), "Retry-After: {header}");
    }
    // The most forbidding code decides.
    let body = r#"{"success":false,"errors":[{"code":"606"},{"code":"603"}]}"#;
    assert_fatal(parse(&marketo(), 200, body), Some("603"));
}

#[test]
fn responsys_transient() {
    for code in
        ["API_LIMIT_EXCEEDED", "INTERNAL_CAPACITY_LIMIT_EXCEEDED", "SERVICE_UNAVAILABLE", "UNRECOVERABLE_EXCEPTION"]
    {
        // The code decides, whatever the status (API_LIMIT_EXCEEDED is documented under 400 and 401).
        for status in [400, 401, 500, 503] {
            let e = assert_transient(parse(&responsys(), status, &responsys_error(code)));
            assert_eq!(e.code(), Some(code));
            // A throttled login waits for its limit's window: "try again in the next minute";
            // UNRECOVERABLE_EXCEPTION, "wait about 30 seconds and then resubmit" (the AFTM seed).
            let wait = match code {
                "API_LIMIT_EXCEEDED" | "INTERNAL_CAPACITY_LIMIT_EXCEEDED" => Some(Duration::from_secs(60)),
                "UNRECOVERABLE_EXCEPTION" => Some(Duration::from_secs(30)),
                _ => None,
            };
            assert_eq!(e.retry_after(), wait, "{code}");
        }
    }
    // A non-JSON gateway 503.
    let e = assert_transient(parse(&responsys(), 503, "Transport error: 503 Error: Service Temporarily Unavailable"));
    assert_eq!(e.code(), None);
}

/// VENDORS.md, "Retry-After and other server hints (every vendor)": a Responsys login answered
/// with a wait (a gateway in front of the login during a maintenance window) is not sent again
/// before it, as the OAuth 2 logins' are not; with a wait of the code's own, the longer holds.
/// A fatal answer stays fatal, whatever the header says.
#[test]
fn responsys_a_login_answered_with_retry_after_waits_it() {
    let gateway = "Transport error: 503 Error: Service Temporarily Unavailable";
    for (status, body, header, want) in [
        (503, gateway.to_owned(), "300", Some(300)),
        (503, responsys_error("SERVICE_UNAVAILABLE"), "120", Some(120)),
        (429, String::new(), "Sun, 06 Nov 1994 08:49:37 GMT", Some(0)),
        (400, responsys_error("API_LIMIT_EXCEEDED"), "90", Some(90)),
        (400, responsys_error("API_LIMIT_EXCEEDED"), "10", Some(60)),
        (500, responsys_error("UNRECOVERABLE_EXCEPTION"), "5", Some(30)),
        (503, gateway.to_owned(), "soon", None),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", header.parse().unwrap());
        let e = assert_transient(parse_with(&responsys(), status, &headers, body.as_bytes()));
        assert_eq!(e.retry_after(), want.map(Duration::from_secs), "{status} {body:?}, Retry-After: {header}");
    }
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "300".parse().unwrap());
    let e = parse_with(&responsys(), 401, &headers, responsys_error("ACCOUNT_SUSPENDED").as_bytes());
    assert_eq!(assert_fatal(e, Some("ACCOUNT_SUSPENDED")).retry_after(), None);
}

/// The AFTM seed page: `UNRECOVERABLE_EXCEPTION` → "wait about 30 seconds and then resubmit
/// the request only once". The resubmitted login answered so too is fatal, saying why, with
/// everything the vendor answered kept; any other row of answers is left as it came.
#[test]
fn responsys_unrecoverable_exception_to_the_resubmitted_login_is_fatal() {
    let login = responsys();
    let answer = |code: &str| assert_transient(parse(&login, 500, &responsys_error(code)));
    let again = login.failed_again(&answer("UNRECOVERABLE_EXCEPTION"), answer("UNRECOVERABLE_EXCEPTION"));
    let again = assert_fatal(Err(again), Some("UNRECOVERABLE_EXCEPTION"));
    assert!(again.message().contains("resubmit only once"), "{again}");
    assert!(again.message().contains("Detail of UNRECOVERABLE_EXCEPTION"), "{again}");
    assert_eq!(again.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(again.body(), &responsys_error("UNRECOVERABLE_EXCEPTION").into_bytes()[..]);
    assert_eq!(again.retry_after(), Some(Duration::from_secs(30)));
    for (before, now) in [
        ("UNRECOVERABLE_EXCEPTION", "SERVICE_UNAVAILABLE"),
        ("SERVICE_UNAVAILABLE", "UNRECOVERABLE_EXCEPTION"),
        ("API_LIMIT_EXCEEDED", "API_LIMIT_EXCEEDED"),
        ("SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE"),
    ] {
        assert_eq!(login.failed_again(&answer(before), answer(now)), answer(now), "{before} then {now}");
    }
    // No other login has such a rule.
    for (name, other) in all_logins().into_iter().filter(|(name, _)| *name != "responsys") {
        let e = assert_transient(parse(&*other, 500, &responsys_error("UNRECOVERABLE_EXCEPTION")));
        assert_eq!(other.failed_again(&e, e.clone()), e, "{name}");
    }
}

/// A `Retry-After` date on a login's answer is measured from when the answer came (the time
/// the caller gives), not from a clock the login reads itself.
#[test]
fn oauth2_a_retry_after_date_is_read_against_the_time_the_answer_came() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT".parse().unwrap());
    let came = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 08:49:37 that day
    let e = oauth().parse(&ResponseHead::new(StatusCode::SERVICE_UNAVAILABLE, &headers, came), b"").unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)), "{e}");
    // Today that date is long past: a wait of zero, so the token source's backoff decides.
    let e = oauth().parse(&ResponseHead::new(StatusCode::SERVICE_UNAVAILABLE, &headers, SystemTime::now()), b"");
    assert_eq!(e.unwrap_err().retry_after(), Some(Duration::ZERO));
}

/// A token endpoint that throttles and says when to come back: the login error carries the wait.
#[test]
fn oauth2_a_throttled_token_endpoint_names_its_wait() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "30".parse().unwrap());
    let e = parse_with(&oauth(), 429, &headers, b"").unwrap_err();
    assert!(!e.is_fatal(), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    // Without the header, the token source's own backoff decides.
    let e = parse(&oauth(), 429, "").unwrap_err();
    assert_eq!(e.retry_after(), None);
}

/// RFC 6749 §7.1: a token of a type the client does not understand is not used; these logins
/// send theirs as `Bearer`. No `token_type` at all is taken as bearer (many servers omit it).
#[test]
fn oauth2_a_token_that_is_not_a_bearer_token_is_refused() {
    for (body, ok) in [
        (r#"{"access_token":"tok-3c1b2a99e0d4-TOKEN","token_type":"DPoP","expires_in":3600}"#, false),
        (r#"{"access_token":"tok-3c1b2a99e0d4-TOKEN","token_type":"mac","expires_in":3600}"#, false),
        (r#"{"access_token":"tok-3c1b2a99e0d4-TOKEN","token_type":"BEARER","expires_in":3600}"#, true),
        (r#"{"access_token":"tok-3c1b2a99e0d4-TOKEN","expires_in":3600}"#, true),
    ] {
        let r = parse(&oauth(), 200, body);
        assert_eq!(r.is_ok(), ok, "{body}");
        if let Err(e) = r {
            assert!(e.is_fatal() && e.message().contains("bearer"), "{e}");
            assert!(!format!("{e} {e:?}").contains("tok-3c1b2a99e0d4"));
        }
    }
}

/// The token goes to the endPoint raw in a header: a login over https naming an http endPoint
/// would send it in cleartext.
#[test]
fn responsys_an_endpoint_weaker_than_the_login_is_refused() {
    let body = format!(r#"{{"authToken":"{TOKEN}","issuedAt":1,"endPoint":"http://rest-pod1.responsys.net"}}"#);
    let e = parse(&responsys(), 200, &body).unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(e.message().contains("not https"), "{e}");
    assert!(!format!("{e} {e:?}").contains(TOKEN));
    // Over http (a simulator), an http endPoint is what there is.
    let plain = PasswordLogin::new("http://127.0.0.1:9", "u", "p").unwrap();
    assert!(parse(&plain, 200, &body).is_ok());
}

#[test]
fn responsys_unusable_endpoint() {
    for endpoint in [
        r#""endPoint":"rest-pod1.responsys.net""#,
        r#""endPoint":"/rest/api""#,
        r#""endPoint":"ftp://rest-pod1.responsys.net""#,
        r#""endPoint":"""#,
        r#""endPoint":null"#,
        r#""endPoint":42"#,
        r#""endPoint":"https://user:pw@host""#,
        r#""other":1"#,
    ] {
        let body = format!(r#"{{"authToken":"{TOKEN}","issuedAt":1,{endpoint}}}"#);
        let e = assert_transient(parse(&responsys(), 200, &body));
        assert!(e.message().contains("login answered without a usable endPoint"), "{e}");
        assert!(e.body().is_empty(), "the body holds the token: not kept");
        assert!(!format!("{e} {e:?}").contains(TOKEN));
    }
    assert_transient(parse(&responsys(), 200, r#"{"endPoint":"https://h"}"#));
}

/// The authToken goes raw in the `Authorization` header: one that cannot is not a credential.
#[test]
fn responsys_a_token_that_cannot_go_in_a_header_is_refused() {
    let body = r#"{"authToken":"bPBY3l9H\na9C7uyDO","issuedAt":1,"endPoint":"https://rest-pod1.responsys.net"}"#;
    let e = assert_transient(parse(&responsys(), 200, body));
    assert!(e.message().contains("the authToken cannot be sent in a header"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Tolerance.

/// The longest lifetime a login reads from `expires_in`, in seconds.
const TEN_YEARS: u64 = 10 * 365 * 86_400;

#[test]
fn expires_in_as_string_and_other_shapes() {
    for login in [Box::new(marketo()) as Box<dyn Login>, Box::new(adobe()), Box::new(oauth())] {
        let cases = [
            (r#""3599""#, Some(3599)),
            (r#"" 3599 ""#, Some(3599)),
            ("3599.0", Some(3599)),
            ("-1", Some(0)),
            ("null", None),
            (r#""soon""#, None),
            ("[]", None),
            // A string that parses as a float, not as a number of seconds.
            (r#""NaN""#, None),
            // Lifetimes beyond ten years are read as ten years.
            ("315360001", Some(TEN_YEARS)),
            ("1e300", Some(TEN_YEARS)),
        ];
        for (value, want) in cases {
            let body = format!(r#"{{"access_token":"abc","token_type":"bearer","expires_in":{value}}}"#);
            let c = parse(login.as_ref(), 200, &body).unwrap();
            assert_eq!(c.lifetime, want.map(Duration::from_secs), "{value}");
        }
    }
}

#[test]
fn extra_fields_charset_and_bom() {
    let body = r#"{"access_token":"abc","token_type":"bearer","expires_in":3599,"scope":"x","refresh_token":null,"nested":{"a":[1,2]},"jti":"j"}"#;
    for (_, login) in all_logins() {
        let _ = parse(&*login, 200, body);
    }
    for ct in ["application/json;charset=UTF-8", "application/json; charset=utf-8", "text/plain", "text/html"] {
        let h = json_headers(ct);
        for login in [Box::new(marketo()) as Box<dyn Login>, Box::new(adobe()), Box::new(oauth())] {
            let c = parse_with(login.as_ref(), 200, &h, body.as_bytes()).unwrap();
            assert_eq!(c.token.expose(), "abc");
        }
        let r = parse_with(&responsys(), 200, &h, RESPONSYS_OK.as_bytes()).unwrap();
        assert_eq!(r.token.expose(), TOKEN);
    }
    // A UTF-8 byte-order mark and surrounding whitespace.
    let bom = [b"\xEF\xBB\xBF".as_slice(), b"\n ", OAUTH_OK.as_bytes(), b"\r\n"].concat();
    assert!(parse_with(&oauth(), 200, &HeaderMap::new(), &bom).is_ok());
    // A token with blanks around it is trimmed.
    let c = parse(&oauth(), 200, r#"{"access_token":"  abc  "}"#).unwrap();
    assert_eq!(c.token.expose(), "abc");
    // Responsys: issuedAt as a string, extra fields.
    let body = r#"{"authToken":"t","issuedAt":"x","endPoint":"https://h.example","extra":[1]}"#;
    assert!(parse(&responsys(), 200, body).is_ok());
}

/// RFC 6749 §5.2's `error` is a code: an empty one (`"error":""`, some servers send it beside
/// the token) names no error, and the answer is read as if it had none.
#[test]
fn an_empty_error_member_is_no_error() {
    for login in [Box::new(marketo()) as Box<dyn Login>, Box::new(adobe()), Box::new(oauth())] {
        for error in [r#""""#, r#""  ""#, "null"] {
            let body = format!(r#"{{"access_token":"abc","token_type":"bearer","expires_in":3599,"error":{error}}}"#);
            assert_eq!(parse(login.as_ref(), 200, &body).unwrap().token.expose(), "abc", "{body}");
            let body = format!(r#"{{"error":{error},"error_description":"d"}}"#);
            assert_fatal(parse(login.as_ref(), 401, &body), None);
        }
    }
}

#[test]
fn nested_error_object_and_responsys_polling_envelope() {
    let body = r#"{"error":{"code":"invalid_client","message":"no such client"}}"#;
    let e = assert_fatal(parse(&oauth(), 401, body), Some("invalid_client"));
    assert!(e.message().contains("no such client"));
    let body = r#"{"responseMessage":{"errorCode":"ACCOUNT_SUSPENDED","detail":"d","title":"t"}}"#;
    assert_fatal(parse(&responsys(), 200, body), Some("ACCOUNT_SUSPENDED"));
}

// ---------------------------------------------------------------------------------------------
// No secret ever shows.

#[test]
fn nothing_secret_in_debug_or_errors() {
    let secrets = [CLIENT_SECRET, PASSWORD, TOKEN];
    let check = |what: &str, text: String| {
        for s in secrets {
            assert!(!text.contains(s), "{what} shows a secret: {text}");
        }
    };
    check("marketo", format!("{:?}", marketo()));
    check("responsys", format!("{:?}", responsys()));
    check("adobe", format!("{:?}", adobe()));
    // Hidden, not blank: each Debug still says which login it is and whose it is.
    for (shown, names) in [
        (format!("{:?}", marketo()), ["IdentityLogin", "mkto-client-id"]),
        (format!("{:?}", responsys()), ["PasswordLogin", "api.user@acme.example"]),
        (format!("{:?}", adobe()), ["ImsLogin", "adobe-client-id"]),
        (format!("{:?}", oauth()), ["ClientCredentials", "oauth client"]),
    ] {
        for name in names {
            assert!(shown.contains(name), "{shown} does not name {name}");
        }
    }
    check("oauth2", format!("{:?}", oauth().param("client_assertion_extra", CLIENT_SECRET)));
    check("oauth2 alt", format!("{:#?}", oauth().auth_style(AuthStyle::Post)));
    // A login URL pasted from Marketo's docs, the credentials in its query.
    let pasted =
        format!("https://123-ABC-456.mktorest.com/identity/oauth/token?client_id=id&client_secret={CLIENT_SECRET}");
    check("marketo pasted URL", format!("{:?}", IdentityLogin::new(&pasted, "id", "other").unwrap()));
    let with_key = format!("https://login2.responsys.net/?api_key={CLIENT_SECRET}");
    check("responsys query", format!("{:?}", PasswordLogin::new(&with_key, "user", "other").unwrap()));
    check("oauth2 query", format!("{:?}", ClientCredentials::new(&pasted, "id", "other").unwrap()));

    for (name, login) in all_logins() {
        // Each login knows its own secret: the one an echo can be redacted from.
        let own = if name == "responsys" { PASSWORD } else { CLIENT_SECRET };
        let check = |text: String| {
            for s in [own, TOKEN] {
                assert!(!text.contains(s), "{name} shows a secret: {text}");
            }
        };
        check(format!("{login:?}"));
        let ok = if name == "responsys" { RESPONSYS_OK } else { OAUTH_OK };
        let c = parse(login.as_ref(), 200, ok).unwrap();
        check(format!("{c:?} {c:#?}"));
        assert_eq!(c.token, Secret::new(TOKEN));

        // Errors whose vendor text echoes the secret; a 2xx that holds the token but fails.
        let echo = format!(r#"{{"error":"invalid_client","error_description":"the secret {own} is wrong"}}"#);
        let echo_code = format!(r#"{{"error":"bad_{own}","error_description":"x"}}"#);
        let echo_responsys = format!(
            r#"{{"errorCode":"INVALID_USER_NAME_PASSWORD","detail":"password {own} is wrong","title":"{own}"}}"#
        );
        let echo_marketo = format!(r#"{{"success":false,"errors":[{{"code":"603","message":"secret {own}"}}]}}"#);
        let token_no_endpoint = format!(r#"{{"authToken":"{TOKEN}","access_token":"{TOKEN}\nx"}}"#);
        let answers: Vec<(u16, String)> = vec![
            (401, echo.clone()),
            (200, echo),
            (400, echo_code),
            (401, echo_responsys),
            (200, echo_marketo),
            (200, token_no_endpoint),
            (502, HTML_GATEWAY.to_owned()),
            (401, String::new()),
            (200, format!(r#"{{"access_token":"{TOKEN}""#)),
            (400, oauth_error("server_error")),
            (400, responsys_error("PASSWORD_EXPIRED")),
        ];
        for (status, body) in answers {
            let e = parse(login.as_ref(), status, &body).expect_err(&body);
            check(format!("{e} {e:?} {e:#?} {:?} {:?}", e.message(), e.code()));
            check(String::from_utf8_lossy(e.body()).into_owned());
            if e.status().is_some_and(|s| s.is_success()) {
                assert!(e.body().is_empty(), "{name}: a 2xx body is never kept");
            }
        }
    }
}

/// A secret echoed back in another encoding than the one sent (`%20` for a space, lower-case
/// hex) is withheld too.
#[test]
fn a_secret_echoed_in_another_encoding_is_withheld() {
    let login = ClientCredentials::new("https://auth.example.com/oauth/token", "id", "a b/c").unwrap();
    for echoed in ["a%20b%2Fc", "a+b%2fc", "a%20b/c"] {
        let body = format!(r#"{{"error":"invalid_client","error_description":"bad secret {echoed}"}}"#);
        let e = parse(&login, 401, &body).unwrap_err();
        let shown = format!("{e} {e:?} {:?}", e.message());
        assert!(!shown.contains(echoed) && !shown.contains("a b/c"), "{echoed}: {shown}");
    }
}

/// A failed login keeps the vendor's body, except one that echoes a secret: as sent, as the
/// form body carried it, or in another encoding. A secret with `+` or `%` in it, echoed as
/// sent, decodes to something else, and is still found.
#[test]
fn a_body_that_echoes_a_secret_is_not_kept() {
    for (secret, echoed) in [
        (CLIENT_SECRET, CLIENT_SECRET.to_owned()),
        ("a+b%41c", "a+b%41c".to_owned()),
        ("a+b%41c", form_urlencode("a+b%41c")),
        ("a b/c", form_urlencode("a b/c")),
        ("a b/c", "a%20b%2fc".to_owned()),
    ] {
        let login = ClientCredentials::new("https://auth.example.com/oauth/token", "id", secret).unwrap();
        let body = format!(r#"{{"error":"invalid_client","error_description":"bad secret {echoed}"}}"#);
        let e = assert_fatal(parse(&login, 401, &body), Some("invalid_client"));
        assert!(e.body().is_empty(), "{secret:?} echoed as {echoed:?}: the body is kept");
        assert!(!format!("{e} {e:?}").contains(&echoed), "{echoed}: {e}");
    }
    // A body without the secret is kept.
    let body = r#"{"error":"invalid_client","error_description":"bad secret"}"#;
    let e = assert_fatal(parse(&oauth(), 401, body), Some("invalid_client"));
    assert_eq!(&e.body()[..], body.as_bytes());
}

/// Vendor text with a `%` that starts no escape (at its end, or one hex digit before its end)
/// is shown as it came.
#[test]
fn vendor_text_with_a_bare_percent_sign_is_shown_as_it_came() {
    for text in ["quota at 100%", "code %4", "50% off %zz"] {
        let body = format!(r#"{{"error":"invalid_client","error_description":"{text}"}}"#);
        let e = assert_fatal(parse(&oauth(), 401, &body), Some("invalid_client"));
        assert!(e.message().ends_with(&format!(": {text}")), "{e}");
    }
}

/// `ClientCredentials`' `Debug` shows the token URL, the client id, the auth style and the names
/// of the extra parameters, never the secret or the parameters' values.
#[test]
fn oauth2_debug_shows_the_login_never_its_secret() {
    let login = oauth().auth_style(AuthStyle::Post).scope("read").param("audience", "aud-value-7f3e");
    let shown = format!("{login:?}");
    for part in ["https://auth.example.com/oauth2/token", "oauth client", "Post", "audience", "read", "Bearer"] {
        assert!(shown.contains(part), "{part} not in {shown}");
    }
    assert!(!shown.contains(CLIENT_SECRET) && !shown.contains("aud-value-7f3e"), "{shown}");
}

#[test]
fn secret_echo_is_redacted_in_the_message() {
    let body = format!(r#"{{"error":"invalid_client","error_description":"bad secret {CLIENT_SECRET}"}}"#);
    let e = parse(&oauth(), 401, &body).unwrap_err();
    assert!(e.message().contains("bad secret ***"), "{e}");
    let body = format!(r#"{{"errorCode":"INVALID_USER_NAME_PASSWORD","detail":"bad password {PASSWORD}"}}"#);
    let e = parse(&responsys(), 401, &body).unwrap_err();
    assert!(e.message().contains("bad password ***"), "{e}");
    let encoded = form_urlencode(PASSWORD);
    let body = format!(r#"{{"errorCode":"INVALID_USER_NAME_PASSWORD","detail":"password={encoded} refused"}}"#);
    let e = parse(&responsys(), 401, &body).unwrap_err();
    assert!(e.message().contains("password=*** refused"), "{e}");
}

#[test]
fn logins_are_clone_and_objects() {
    fn assert_login<L: Login + Clone>(l: &L) -> L {
        l.clone()
    }
    let _ = assert_login(&marketo());
    let _ = assert_login(&responsys());
    let _ = assert_login(&adobe());
    let _ = assert_login(&oauth());
    let arc: std::sync::Arc<dyn Login> = std::sync::Arc::new(responsys());
    assert_eq!(arc.attach(), Attach::Raw);
}

// ---------------------------------------------------------------------------------------------
// Never panics.

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let json_like = prop::collection::vec(
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "null",
            "1e999",
            "-0",
            "3599",
            "\"3599\"",
            "\"access_token\"",
            "\"expires_in\"",
            "\"authToken\"",
            "\"endPoint\"",
            "\"https://h\"",
            "\"error\"",
            "\"errorCode\"",
            "\"errors\"",
            "\"code\"",
            "\"PASSWORD_X\"",
            "\"invalid_client\"",
            "\"responseMessage\"",
            "\"\\u0000\"",
            "\"é\"",
            " ",
        ]),
        0..40,
    )
    .prop_map(|parts| parts.concat().into_bytes());
    prop_oneof![prop::collection::vec(any::<u8>(), 0..256), json_like]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics(status in 100u16..=999, body in body_strategy()) {
        let status = StatusCode::from_u16(status).unwrap();
        for (_, login) in all_logins() {
            match login.parse(&ResponseHead::new(status, &HeaderMap::new(), SystemTime::now()), &body) {
                Ok(c) => {
                    prop_assert!(!c.token.expose().is_empty());
                    prop_assert!(status.is_success());
                    let mut h = HeaderMap::new();
                    prop_assert!(login.attach().apply(&mut h, &c.token));
                }
                Err(e) => {
                    let _ = format!("{e} {e:?}");
                    if status.is_success() {
                        prop_assert!(e.body().is_empty());
                    }
                }
            }
        }
    }
}

/// The AFTM seed page: no response → "retry up to three times, with two minute intervals, to
/// prevent the API login being disabled". Only Responsys names such a wait for its login.
#[test]
fn only_the_responsys_login_names_a_wait_after_no_response() {
    for (name, login) in all_logins() {
        let expected = (name == "responsys").then_some(redial_vendors::responsys::NO_RESPONSE_INTERVAL);
        assert_eq!(login.no_response_wait(), expected, "{name}");
        let retries = (name == "responsys").then_some(3);
        assert_eq!(login.no_response_retries(), retries, "{name}: up to three times");
    }
    assert_eq!(responsys().no_response_wait(), Some(Duration::from_secs(120)));
}
