//! Body types: the request body redial sends (kept for replay, or streamed once) and the
//! response body it hands back (the bytes already read for inspection, then the rest).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// The request body redial sends to the inner service.
    ///
    /// A body that fits the replay limit is buffered once and sent from shared [`Bytes`] on
    /// every attempt (no copy per attempt, and no copy at all when the body already was one
    /// `Bytes`); any other body is streamed through once.
    ///
    /// Its `Debug` shows the kind and the length, never the bytes: a login's form (a client
    /// secret, a password) goes through the inner service in one of these.
    pub struct RetryBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Buffered { data: Option<Bytes>, trailers: Option<Box<HeaderMap>> },
        Streaming { #[pin] body: B },
    }
}

impl<B> std::fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Buffered { data, trailers } => f
                .debug_struct("RetryBody::Buffered")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .field("trailers", &trailers.as_ref().map(|t| t.len()))
                .finish(),
            Inner::Streaming { .. } => f.write_str("RetryBody::Streaming"),
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rest = match &self.rest {
            Rest::Inline { .. } | Rest::Boxed { .. } => "unread",
            Rest::Done => "none",
        };
        f.debug_struct("ResponseBody")
            .field("read", &(self.prefix.as_ref().map_or(0, Bytes::len) + self.over.as_ref().map_or(0, Bytes::len)))
            .field("trailers", &self.trailers.as_ref().map(|t| t.len()))
            .field("rest", &rest)
            .finish()
    }
}

impl<B> RetryBody<B> {
    pub(crate) fn buffered(data: Bytes, trailers: Option<Box<HeaderMap>>) -> Self {
        RetryBody { inner: Inner::Buffered { data: (!data.is_empty()).then_some(data), trailers } }
    }

    /// A replayable body from bytes already in memory.
    pub fn from_bytes(data: Bytes) -> Self {
        Self::buffered(data, None)
    }

    pub(crate) fn streaming(body: B) -> Self {
        RetryBody { inner: Inner::Streaming { body } }
    }

    /// Whether this body is replayed from memory (else it streams the caller's body once).
    pub fn is_buffered(&self) -> bool {
        matches!(self.inner, Inner::Buffered { .. })
    }

    /// A copy of a body replayed from memory (its bytes shared, not copied), not yet sent;
    /// `None` for a body streamed once. For a layer below redial that sends a request's body
    /// again: tower-http's `FollowRedirect` follows a 307 or 308 with its body only if its
    /// policy can clone it.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use redial_tower::RetryBody;
    ///
    /// let body = RetryBody::<Full<Bytes>>::from_bytes(Bytes::from_static(b"{\"id\":1}"));
    /// assert!(body.try_clone().is_some_and(|copy| copy.is_buffered()));
    /// // With tower-http: policy::Standard::default().and(policy::clone_body_fn(RetryBody::try_clone))
    /// ```
    pub fn try_clone(&self) -> Option<Self> {
        match &self.inner {
            Inner::Buffered { data, trailers } => {
                Some(RetryBody { inner: Inner::Buffered { data: data.clone(), trailers: trailers.clone() } })
            }
            Inner::Streaming { .. } => None,
        }
    }
}

/// An empty body. A middleware below redial that makes requests of its own asks for one:
/// tower-http's `FollowRedirect` sends a redirect's `GET` (after a 303, or for a request whose
/// body is empty) with its body type's `Default`, and takes no body type without it.
impl<B> Default for RetryBody<B> {
    fn default() -> Self {
        Self::buffered(Bytes::new(), None)
    }
}

impl<B> Body for RetryBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            InnerProj::Buffered { data, trailers } => Poll::Ready(match data.take() {
                Some(d) => Some(Ok(Frame::data(d))),
                None => trailers.take().map(|t| Ok(Frame::trailers(*t))),
            }),
            InnerProj::Streaming { body } => body.poll_frame(cx).map(|f| {
                f.map(|r| match r {
                    Ok(frame) => Ok(frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))),
                    Err(e) => Err(e.into()),
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Inner::Streaming { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Buffered { data, .. } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Inner::Streaming { body } => body.size_hint(),
        }
    }
}

pin_project! {
    /// The response body redial hands back: whatever it read to classify the response,
    /// followed by the untouched rest of the inner body.
    ///
    /// Its `Debug` shows the length of what was read, never the bytes (a login's answer holds
    /// the token).
    pub struct ResponseBody<B> {
        prefix: Option<Bytes>,
        // What a last frame read brought beyond the inspect limit, kept apart (not copied).
        over: Option<Bytes>,
        trailers: Option<Box<HeaderMap>>,
        #[pin]
        rest: Rest<B>,
    }
}

pin_project! {
    #[project = RestProj]
    enum Rest<B> {
        Inline { #[pin] body: B },
        Boxed { body: Pin<Box<B>> },
        Done,
    }
}

impl<B> ResponseBody<B> {
    /// The inner body, untouched.
    pub(crate) fn passthrough(body: B) -> Self {
        ResponseBody { prefix: None, over: None, trailers: None, rest: Rest::Inline { body } }
    }

    /// Bytes already read, then (if the body was not read to its end) the rest.
    pub(crate) fn prefixed(prefix: Bytes, trailers: Option<Box<HeaderMap>>, rest: Option<Pin<Box<B>>>) -> Self {
        ResponseBody {
            prefix: (!prefix.is_empty()).then_some(prefix),
            over: None,
            trailers,
            rest: rest.map_or(Rest::Done, |body| Rest::Boxed { body }),
        }
    }

    /// The part of the last frame read that went beyond the inspect limit, sent after the
    /// prefix and before the rest.
    pub(crate) fn with_overshoot(mut self, over: Option<Bytes>) -> Self {
        self.over = over.filter(|o| !o.is_empty());
        self
    }

    /// The inner body, if redial read none of it (the response went through as it came);
    /// otherwise this body, unchanged.
    ///
    /// A front door that wraps a response of its own kind (a `reqwest::Response`, say) gets it
    /// back whole, with no conversion on the path where nothing needed reading.
    pub fn into_untouched(self) -> Result<B, Self> {
        match self {
            ResponseBody { prefix: None, over: None, trailers: None, rest: Rest::Inline { body } } => Ok(body),
            other => Err(other),
        }
    }

    fn rest_hint(&self) -> Option<(bool, SizeHint)>
    where
        B: Body,
    {
        match &self.rest {
            Rest::Inline { body } => Some((body.is_end_stream(), body.size_hint())),
            Rest::Boxed { body } => Some((body.is_end_stream(), body.size_hint())),
            Rest::Done => None,
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if let Some(prefix) = this.prefix.take().or_else(|| this.over.take()) {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let frame = match this.rest.as_mut().project() {
            RestProj::Inline { body } => std::task::ready!(body.poll_frame(cx)),
            RestProj::Boxed { body } => std::task::ready!(body.as_mut().poll_frame(cx)),
            RestProj::Done => None,
        };
        match frame {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))))),
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                this.rest.set(Rest::Done);
                Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(*t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && self.over.is_none()
            && self.trailers.is_none()
            && self.rest_hint().is_none_or(|(end, _)| end)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = [&self.prefix, &self.over].iter().map(|p| p.as_ref().map_or(0, |p| p.len() as u64)).sum::<u64>();
        let rest = self.rest_hint().map_or_else(|| SizeHint::with_exact(0), |(_, h)| h);
        // Upper first: `set_lower` asserts the new lower bound is within the current upper one.
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(prefix));
        }
        hint.set_lower(rest.lower().saturating_add(prefix));
        hint
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_shows_lengths_never_bytes() {
        let login = RetryBody::<()>::from_bytes(Bytes::from_static(b"client_id=id&client_secret=TOPSECRET"));
        let shown = format!("{login:?}");
        assert!(!shown.contains("TOPSECRET") && shown.contains("len: 36"), "{shown}");
        let answer = ResponseBody::<()>::prefixed(Bytes::from_static(br#"{"access_token":"TOPSECRET"}"#), None, None);
        let shown = format!("{answer:?}");
        assert!(!shown.contains("TOPSECRET") && shown.contains("read: 28"), "{shown}");
    }

    use super::*;
    use http_body_util::{BodyExt, Full};

    #[test]
    fn size_hint_of_a_prefixed_body_adds_the_prefix_without_panicking() {
        // An inspected body: 3 bytes read, 5 of exactly known length left.
        let rest = Box::pin(Full::new(Bytes::from_static(b"world")));
        let body = ResponseBody::prefixed(Bytes::from_static(b"hel"), None, Some(rest));
        assert_eq!(body.size_hint().exact(), Some(8));
        // Completely read: the prefix is the whole body.
        let body = ResponseBody::<Full<Bytes>>::prefixed(Bytes::from_static(b"hello"), None, None);
        assert_eq!(body.size_hint().exact(), Some(5));
        // Unknown rest: the prefix is a lower bound.
        let body = ResponseBody::passthrough(Full::new(Bytes::from_static(b"x")));
        assert_eq!(body.size_hint().exact(), Some(1));
    }

    #[test]
    fn only_an_untouched_body_gives_its_inner_body_back() {
        let body = ResponseBody::passthrough(Full::new(Bytes::from_static(b"x")));
        assert!(body.into_untouched().is_ok());
        let read = ResponseBody::<Full<Bytes>>::prefixed(Bytes::from_static(b"x"), None, None);
        assert!(read.into_untouched().is_err());
        let rest = Box::pin(Full::new(Bytes::from_static(b"y")));
        let partly = ResponseBody::prefixed(Bytes::from_static(b"x"), None, Some(rest));
        assert!(partly.into_untouched().is_err());
    }

    #[tokio::test]
    async fn a_prefixed_body_yields_prefix_then_rest() {
        let rest = Box::pin(Full::new(Bytes::from_static(b"world")));
        let body = ResponseBody::prefixed(Bytes::from_static(b"hello "), None, Some(rest));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
    }
}
