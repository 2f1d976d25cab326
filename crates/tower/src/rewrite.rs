//! Request rewrites the decision can ask for.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{request, HeaderMap, HeaderValue, Method, Uri};

/// `GET /path?query` → `POST /path?_method=GET` with `query` as an
/// `application/x-www-form-urlencoded` body (Marketo's remedy for HTTP 414).
pub(crate) fn method_override_post(parts: &mut request::Parts, body: &mut (Bytes, Option<Box<HeaderMap>>)) {
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let path_and_query = format!("{}?_method=GET", parts.uri.path());
    let mut uri = parts.uri.clone().into_parts();
    let Ok(pq) = path_and_query.parse() else { return };
    uri.path_and_query = Some(pq);
    let Ok(uri) = Uri::from_parts(uri) else { return };
    parts.uri = uri;
    parts.method = Method::POST;
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    parts.headers.remove(CONTENT_LENGTH);
    *body = (Bytes::from(query), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_becomes_post_with_the_query_as_form_body() {
        let (mut parts, ()) =
            http::Request::get("https://x.mktorest.com/rest/v1/leads.json?filterType=id&filterValues=1,2")
                .header(CONTENT_LENGTH, "0")
                .body(())
                .unwrap()
                .into_parts();
        let mut body = (Bytes::new(), None);
        method_override_post(&mut parts, &mut body);
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, "https://x.mktorest.com/rest/v1/leads.json?_method=GET");
        assert_eq!(parts.headers[CONTENT_TYPE], "application/x-www-form-urlencoded");
        assert!(!parts.headers.contains_key(CONTENT_LENGTH));
        assert_eq!(body.0, "filterType=id&filterValues=1,2");
    }
}
