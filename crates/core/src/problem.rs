//! RFC 9457 problem details (`application/problem+json`).

use serde_json::{Map, Value};

use crate::VendorError;

/// An RFC 9457 problem details object.
///
/// Members of the wrong JSON type are treated as absent (RFC 9457 §3.1: "consumers MUST ignore
/// any such values"); members other than the five standard ones are kept in
/// [`extensions`](Problem::extensions).
///
/// ```
/// use redial_core::Problem;
/// let body = br#"{"type":"https://ns.adobe.com/aep/errors/EXEG-0104-422","status":422,
///                 "title":"Unprocessable entity","report":{"requestId":"0f88"}}"#;
/// let p = Problem::parse(body).unwrap();
/// assert_eq!(p.status, Some(422));
/// assert_eq!(p.type_uri(), "https://ns.adobe.com/aep/errors/EXEG-0104-422");
/// assert!(p.extensions.contains_key("report"));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Problem {
    /// `type`: a URI reference identifying the problem type; absent means `about:blank`.
    pub type_: Option<String>,
    /// `title`: a short summary of the problem type.
    pub title: Option<String>,
    /// `status`: the HTTP status code the origin server generated.
    pub status: Option<u16>,
    /// `detail`: an explanation specific to this occurrence.
    pub detail: Option<String>,
    /// `instance`: a URI reference identifying this occurrence.
    pub instance: Option<String>,
    /// Every other member of the object.
    pub extensions: Map<String, Value>,
}

/// `body` without a leading UTF-8 byte order mark, which RFC 8259 §8.1 lets a JSON parser
/// ignore (and XML 1.0 requires a processor to accept). Every vendor parser reads through it.
///
/// ```
/// assert_eq!(redial_core::without_bom(b"\xEF\xBB\xBF{}"), b"{}");
/// assert_eq!(redial_core::without_bom(b"{}"), b"{}");
/// ```
pub fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

impl Problem {
    /// Parse a problem details document. Returns `None` unless the body is a JSON object.
    pub fn parse(body: &[u8]) -> Option<Problem> {
        match serde_json::from_slice::<Value>(without_bom(body)).ok()? {
            Value::Object(map) => Some(Problem::from_map(map)),
            _ => None,
        }
    }

    /// Build a problem from a JSON object (used for problems embedded in other documents).
    pub fn from_map(mut map: Map<String, Value>) -> Problem {
        fn string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
            match map.remove(key) {
                Some(Value::String(s)) => Some(s),
                _ => None,
            }
        }
        let status = match map.remove("status") {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        };
        Problem {
            type_: string(&mut map, "type"),
            title: string(&mut map, "title"),
            status,
            detail: string(&mut map, "detail"),
            instance: string(&mut map, "instance"),
            extensions: map,
        }
    }

    /// The problem type, `about:blank` when absent or empty.
    pub fn type_uri(&self) -> &str {
        match self.type_.as_deref() {
            None | Some("") => "about:blank",
            Some(t) => t,
        }
    }

    /// The problem as a [`VendorError`]: the code is the last path segment of `type` when it
    /// has one (`EXEG-0104-422`), else the status; the message is `title`, then `detail`.
    pub fn to_vendor_error(&self) -> VendorError {
        let code = match self.type_.as_deref() {
            Some(t) if !t.is_empty() && t != "about:blank" => {
                t.rsplit('/').find(|s| !s.is_empty()).unwrap_or(t).to_owned()
            }
            _ => self.status.map(|s| s.to_string()).unwrap_or_else(|| "about:blank".into()),
        };
        let mut e = VendorError::code_only(code);
        e.message = self.title.clone().or_else(|| self.detail.clone());
        if let (Some(detail), Some(_)) = (&self.detail, &self.title) {
            e = e.with_attribute("detail", detail.clone());
        }
        if let Some(instance) = &self.instance {
            e = e.with_attribute("instance", instance.clone());
        }
        e
    }
}

/// Whether a `Content-Type` value names a JSON document: `application/json`, any `+json`
/// suffix (`application/problem+json`), with or without parameters such as `charset`.
pub fn is_json_media_type(content_type: &str) -> bool {
    // The common case, read on every response of a vendor whose errors come in 2xx bodies:
    // `application/json`, then nothing, white space or parameters. No splitting, no UTF-8.
    const JSON: &[u8] = b"application/json";
    let bytes = content_type.as_bytes();
    if let Some((essence, rest)) = bytes.split_at_checked(JSON.len()) {
        if essence.eq_ignore_ascii_case(JSON) {
            match rest.iter().find(|&&c| c != b' ' && c != b'\t') {
                None | Some(b';') => return true,
                Some(_) => {}
            }
        }
    }
    is_json_essence(content_type)
}

/// [`is_json_media_type`] in full: the essence before any parameters, trimmed, split at `/`.
fn is_json_essence(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    top.eq_ignore_ascii_case("application")
        // `get`, not indexing: the subtype may end in a multi-byte character (found by fuzzing).
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub.get(sub.len() - 5..).is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

/// Whether a `Content-Type` value is `application/problem+json` (parameters ignored).
pub fn is_problem_media_type(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/problem+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_for_application_json_agrees_with_the_full_rule() {
        let cases = [
            "application/json",
            "APPLICATION/JSON",
            "application/json;charset=utf-8",
            "application/json \t ; charset=utf-8",
            "application/json  ",
            "application/jsonx",
            "application/json x",
            "application/json+x",
            "application/jso",
            "application/json\u{a0}",
            " application/json",
            "",
        ];
        for ct in cases {
            assert_eq!(is_json_media_type(ct), is_json_essence(ct), "{ct:?}");
        }
    }

    #[test]
    fn media_types() {
        for (ct, json, problem) in [
            ("application/json", true, false),
            ("application/json; charset=utf-8", true, false),
            ("Application/JSON;charset=UTF-8", true, false),
            ("application/problem+json", true, true),
            ("application/problem+json; charset=utf-8", true, true),
            ("application/vnd.api+json", true, false),
            ("text/html", false, false),
            ("application/+json", false, false),
            ("json", false, false),
            ("", false, false),
            ("application/\u{FFFD}\u{FFFD}", false, false),
            ("application/ab€€", false, false),
            ("application/é+json", true, false),
        ] {
            assert_eq!(is_json_media_type(ct), json, "{ct}");
            assert_eq!(is_problem_media_type(ct), problem, "{ct}");
        }
    }

    #[test]
    fn wrong_member_types_are_ignored() {
        let p = Problem::parse(br#"{"type":5,"title":["x"],"status":"503","detail":"d","x":1}"#).unwrap();
        assert_eq!(p.type_, None);
        assert_eq!(p.title, None);
        assert_eq!(p.status, None);
        assert_eq!(p.detail.as_deref(), Some("d"));
        assert_eq!(p.type_uri(), "about:blank");
        assert_eq!(p.extensions.get("x"), Some(&Value::from(1)));
    }

    #[test]
    fn vendor_error_code_from_type() {
        let p = Problem::parse(
            br#"{"type":"https://ns.adobe.com/aep/errors/EXEG-0503-401","status":401,"title":"Token expired"}"#,
        )
        .unwrap();
        let e = p.to_vendor_error();
        assert_eq!(e.code, "EXEG-0503-401");
        assert_eq!(e.message.as_deref(), Some("Token expired"));
        let p = Problem::parse(br#"{"status":503,"detail":"down"}"#).unwrap();
        assert_eq!(p.to_vendor_error().code, "503");
        assert_eq!(p.to_vendor_error().message.as_deref(), Some("down"));
        // `about:blank`, or an empty type, names no problem type (RFC 9457 §4.2.1): the status does.
        for ty in ["about:blank", ""] {
            let p =
                Problem::parse(format!(r#"{{"type":"{ty}","status":429,"title":"Slow down"}}"#).as_bytes()).unwrap();
            assert_eq!(p.to_vendor_error().code, "429", "{ty:?}");
        }
    }

    #[test]
    fn not_an_object() {
        assert!(Problem::parse(b"[1,2]").is_none());
        assert!(Problem::parse(b"<html>").is_none());
        assert!(Problem::parse(b"").is_none());
        assert!(Problem::parse(br#"{"type":"x""#).is_none());
    }
}
