//! Crossing the adapter: `reqwest::Request` to `http::Request` and back for every attempt,
//! `reqwest::Response` to `http::Response` and back once. Bodies are moved or shared, never
//! copied: a bytes body becomes the engine's replay buffer as it is (one `Bytes`), and every
//! attempt hands reqwest a clone of that `Bytes` (a reference count).

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use redial_tower::{ResponseBody, RetryBody};
use reqwest::ResponseBuilderExt;

/// The caller's request body as the engine sees it.
///
/// A bytes body (one that `reqwest::Request::try_clone` can clone) shows its exact size, so
/// the engine keeps it for replay. A stream shows no size at all, so the engine sends it once
/// and never replays it: reading a stream ahead of sending it would change what the caller
/// asked for.
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: reqwest::Body,
    replayable: bool,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.replayable {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

/// The caller's request, for the engine, and the template of every attempt's `reqwest::Request`.
///
/// The method, headers and body are moved out of the caller's request, not copied; what is
/// left of it (its URL, already parsed, and its timeout) is the template.
pub(crate) fn request_to_http(mut req: reqwest::Request, uri: http::Uri) -> (http::Request<RequestBody>, Template) {
    // Exactly the requests `try_clone` can clone are replayable.
    let replayable = req.body().is_none_or(|b| b.as_bytes().is_some());
    let had_body = req.body().is_some();
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.uri = uri;
    parts.method = std::mem::replace(req.method_mut(), http::Method::GET);
    parts.version = req.version();
    parts.headers = std::mem::take(req.headers_mut());
    let body = req.body_mut().take().unwrap_or_else(|| reqwest::Body::from(Bytes::new()));
    if !replayable && !body.is_end_stream() {
        // The engine is not told a stream's size (see `RequestBody`); the wire still is.
        if let Some(len) = body.size_hint().exact() {
            if !parts.headers.contains_key(CONTENT_LENGTH) && !parts.headers.contains_key(TRANSFER_ENCODING) {
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
        }
    }
    let template =
        Template { uri: UriMark::of(&parts.uri), timeout: req.timeout().copied(), url: req.url().clone(), had_body };
    (http::Request::from_parts(parts, RequestBody { inner: body, replayable }), template)
}

/// What each attempt's `reqwest::Request` is made from: what is left of the caller's request,
/// its URL (already parsed) and its timeout (the one setting reqwest reads from a request's
/// extensions). An attempt to that URL (every attempt, unless a login named another endpoint)
/// is not parsed again.
///
/// Only these are kept, not the rest of the caller's request: the call's future holds the
/// template, and a future over 1 KiB misses the allocator's fast path.
pub(crate) struct Template {
    uri: UriMark,
    url: reqwest::Url,
    timeout: Option<std::time::Duration>,
    /// Whether the caller's request had a body: one without keeps none on every attempt (a
    /// later middleware may tell the two apart).
    had_body: bool,
}

impl Template {
    /// The caller's URL.
    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// One attempt of the caller's request, for the rest of the middleware chain: the caller's
    /// URL and timeout, unless the engine moved it to another endpoint (a login named one).
    pub(crate) fn request(
        &self,
        req: http::Request<RetryBody<RequestBody>>,
    ) -> Result<reqwest::Request, reqwest::Error> {
        let (parts, body) = req.into_parts();
        let body = reqwest_body(body);
        let none = !self.had_body && body.as_bytes().is_some_and(<[u8]>::is_empty);
        let mut attempt = if UriMark::of(&parts.uri) == self.uri && parts.uri.scheme_str() == Some(self.url.scheme()) {
            let mut attempt = reqwest::Request::new(parts.method, self.url.clone());
            *attempt.headers_mut() = parts.headers;
            *attempt.version_mut() = parts.version;
            *attempt.body_mut() = Some(body);
            attempt
        } else {
            reqwest::Request::try_from(http::Request::from_parts(parts, body))?
        };
        if none {
            *attempt.body_mut() = None;
        }
        // `timeout_mut` makes reqwest's extension map: only when there is a timeout.
        if let Some(timeout) = self.timeout {
            *attempt.timeout_mut() = Some(timeout);
        }
        Ok(attempt)
    }
}

/// A login or a probe, for the rest of the middleware chain or the background client.
pub(crate) fn detached_request(req: http::Request<RetryBody<RequestBody>>) -> Result<reqwest::Request, reqwest::Error> {
    let (parts, body) = req.into_parts();
    reqwest::Request::try_from(http::Request::from_parts(parts, reqwest_body(body)))
}

fn reqwest_body(body: RetryBody<RequestBody>) -> reqwest::Body {
    if body.is_buffered() {
        // A reusable body, so that the middlewares after this one can `try_clone` the
        // request and read `as_bytes` (to sign it, say) as they would without redial.
        reqwest::Body::from(buffered_bytes(body))
    } else {
        reqwest::Body::wrap(body)
    }
}

/// Where a URI's authority and path point. The engine's copies of the caller's URI share its
/// bytes (and keep them alive while the call lasts), so an attempt whose URI points where the
/// caller's did is to the caller's URL: the cheap test of "the engine left the URI alone". A
/// URI it rebuilt (a login's endpoint) points elsewhere, and is parsed again. Two words, not
/// the URI: the call's future holds the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UriMark {
    authority: usize,
    path: usize,
}

impl UriMark {
    fn of(uri: &http::Uri) -> Self {
        let at = |s: Option<&str>| s.map_or(0, |s| s.as_ptr() as usize);
        UriMark {
            authority: at(uri.authority().map(|a| a.as_str())),
            path: at(uri.path_and_query().map(|p| p.as_str())),
        }
    }
}

/// The bytes of a buffered body. A buffered body is always ready: its first frame is its data,
/// and it has no trailers here (a reqwest bytes body has none, nor has a login's or a probe's).
fn buffered_bytes<B>(mut body: RetryBody<B>) -> Bytes
where
    RetryBody<B>: Body<Data = Bytes> + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut data = Bytes::new();
    while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
        if let Ok(chunk) = frame.into_data() {
            debug_assert!(data.is_empty(), "a buffered body is one frame");
            data = chunk;
        }
    }
    data
}

/// A response from the rest of the chain, as the engine reads it: its head is moved out (not
/// copied) into the `http::Response` the engine sees, and its body is still inside the
/// `reqwest::Response`, which is handed back whole when the engine read none of it.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The response as it came, until its body is first polled.
    res: Option<reqwest::Response>,
    /// Its body, frame by frame (trailers included), once the engine reads it.
    body: Option<reqwest::Body>,
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        let this = self.get_mut();
        if let Some(res) = this.res.take() {
            // Frames, not `chunk`: `chunk` drops a trailers frame.
            this.body = Some(http::Response::<reqwest::Body>::from(res).into_body());
        }
        match &mut this.body {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match (&self.res, &self.body) {
            (Some(res), _) => res.content_length() == Some(0),
            (None, Some(body)) => body.is_end_stream(),
            (None, None) => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.res, &self.body) {
            (Some(res), _) => res.content_length().map_or_else(SizeHint::default, SizeHint::with_exact),
            (None, Some(body)) => body.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

/// A response from the rest of the chain, for the engine: status, version, headers and
/// extensions as they came, nothing copied.
pub(crate) fn response_to_http(mut res: reqwest::Response) -> http::Response<Inbound> {
    let (mut head, ()) = http::Response::new(()).into_parts();
    head.status = res.status();
    head.version = res.version();
    head.headers = std::mem::take(res.headers_mut());
    head.extensions = std::mem::take(res.extensions_mut());
    http::Response::from_parts(head, Inbound { res: Some(res), body: None })
}

/// The engine's response, for the caller: status, version, headers and extensions (the
/// `Report`, the remote address) as they came, the final URL, and a body that is the bytes the
/// engine read followed by the untouched rest. A response the engine did not read is the
/// `reqwest::Response` that came, its head put back; one it read is rebuilt, with `final_url`
/// (the attempt's, when reqwest followed a redirect) or else the caller's URL. Unless
/// `length_known` (reqwest knew the exact length of the body that came), it shows no exact
/// length, as it would not have without redial.
pub(crate) fn response_from_http(
    res: http::Response<ResponseBody<Inbound>>,
    final_url: Option<Box<reqwest::Url>>,
    length_known: bool,
    caller_url: &reqwest::Url,
) -> reqwest::Response {
    let (mut parts, body) = res.into_parts();
    let body = match body.into_untouched() {
        Ok(Inbound { res: Some(mut res), .. }) if res.status() == parts.status && res.version() == parts.version => {
            *res.headers_mut() = parts.headers;
            *res.extensions_mut() = parts.extensions;
            return res;
        }
        Ok(inbound) => reqwest::Body::wrap(inbound),
        Err(body) if length_known => reqwest::Body::wrap(body),
        Err(body) => reqwest::Body::wrap(LengthUnknown(body)),
    };
    let url = final_url.map_or_else(|| caller_url.clone(), |url| *url);
    let mut with_url = http::response::Builder::new().url(url);
    if let Some(ext) = with_url.extensions_mut() {
        parts.extensions.extend(std::mem::take(ext));
    }
    reqwest::Response::from(http::Response::from_parts(parts, body))
}

/// A body read by the engine whose length the wire did not tell (chunked, or up to the close):
/// what was read makes its length exact, and reqwest's `content_length` would show it.
struct LengthUnknown<B>(B);

impl<B: Body + Unpin> Body for LengthUnknown<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = SizeHint::new();
        hint.set_lower(self.0.size_hint().lower());
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{StatusCode, Version};

    fn to_http(req: reqwest::Request) -> (http::Request<RequestBody>, Template) {
        let uri = req.url().as_str().parse().unwrap();
        request_to_http(req, uri)
    }

    fn request(body: Option<reqwest::Body>) -> reqwest::Request {
        let mut req = reqwest::Request::new(http::Method::PUT, "http://api.example.com/v1/x?q=1".parse().unwrap());
        req.headers_mut().insert("x-id", HeaderValue::from_static("7"));
        *req.body_mut() = body;
        req
    }

    #[test]
    fn a_bytes_body_shows_its_size_and_comes_back_as_the_same_bytes() {
        let data = Bytes::from_static(b"{\"id\":42}");
        let (req, template) = to_http(request(Some(reqwest::Body::from(data.clone()))));
        assert_eq!(req.body().size_hint().exact(), Some(9));
        assert!(!req.headers().contains_key(CONTENT_LENGTH));

        let (parts, _) = req.into_parts();
        let again = template.request(http::Request::from_parts(parts, RetryBody::from_bytes(data.clone()))).unwrap();
        assert_eq!(again.url().as_str(), "http://api.example.com/v1/x?q=1");
        assert_eq!(again.method(), http::Method::PUT);
        assert_eq!(again.headers()["x-id"], "7");
        let bytes = again.body().and_then(reqwest::Body::as_bytes).unwrap();
        assert_eq!(bytes.as_ptr(), data.as_ptr(), "shared, not copied");
        assert!(again.try_clone().is_some());
    }

    #[test]
    fn an_attempt_keeps_the_callers_timeout_and_a_new_endpoint_is_parsed() {
        let mut caller = request(Some(reqwest::Body::from("x")));
        *caller.timeout_mut() = Some(std::time::Duration::from_secs(7));
        let (req, template) = to_http(caller);
        let (mut parts, _) = req.into_parts();
        parts.headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        let same =
            template.request(http::Request::from_parts(parts.clone(), RetryBody::from_bytes("x".into()))).unwrap();
        assert_eq!(same.timeout(), Some(&std::time::Duration::from_secs(7)));
        assert_eq!(same.headers()["authorization"], "Bearer t");
        assert_eq!(same.headers()["x-id"], "7");
        assert_eq!(same.method(), http::Method::PUT);

        // A login named another endpoint (Responsys): that URL is the attempt's.
        parts.uri = "https://pod2.example.com/v1/x?q=1".parse().unwrap();
        let moved = template.request(http::Request::from_parts(parts, RetryBody::from_bytes("x".into()))).unwrap();
        assert_eq!(moved.url().as_str(), "https://pod2.example.com/v1/x?q=1");
        assert_eq!(moved.timeout(), Some(&std::time::Duration::from_secs(7)));
    }

    #[test]
    fn no_body_is_an_empty_replayable_body() {
        let (req, _) = to_http(request(None));
        assert!(req.body().is_end_stream());
        assert_eq!(req.body().size_hint().exact(), Some(0));
    }

    #[test]
    fn a_stream_shows_no_size_to_the_engine_and_keeps_its_length_on_the_wire() {
        let stream = reqwest::Body::wrap(String::from("0123456789"));
        let (req, _) = to_http(request(Some(stream)));
        assert_eq!(req.body().size_hint().exact(), None);
        assert_eq!(req.body().size_hint().lower(), 0);
        assert_eq!(req.headers()[CONTENT_LENGTH], "10");
    }

    #[test]
    fn a_stream_that_names_its_framing_is_left_alone() {
        let mut req = request(Some(reqwest::Body::wrap(String::from("0123456789"))));
        req.headers_mut().insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let (req, _) = to_http(req);
        assert!(!req.headers().contains_key(CONTENT_LENGTH));
    }

    #[tokio::test]
    async fn a_response_crosses_with_its_head_moved() {
        let res = http::Response::builder()
            .status(StatusCode::ACCEPTED)
            .version(Version::HTTP_10)
            .header("x-a", "1")
            .url("http://api.example.com/final".parse().unwrap())
            .body(reqwest::Body::from("hello"))
            .unwrap();
        let res = response_to_http(reqwest::Response::from(res));
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert_eq!(res.version(), Version::HTTP_10);
        assert_eq!(res.headers()["x-a"], "1");
        assert_eq!(res.body().size_hint().exact(), Some(5));
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        assert_eq!(body, "hello");
    }
}
