//! Shared test plumbing: a hyper-util client whose every host name resolves to loopback, so
//! several simulated vendors can be addressed by their own host names; a request body that
//! stalls; a capture of what `tracing` prints; the Genesys call that must be reconciled; a
//! profile that reads every body.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Ready;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::{dns::Name, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redial::{RetryBody, RetryLayer};

/// Every host name resolves to 127.0.0.1 (the port comes from the URL).
#[derive(Clone)]
pub(crate) struct Loopback;

impl tower::Service<Name> for Loopback {
    type Response = std::iter::Once<SocketAddr>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0)))))
    }
}

pub(crate) type Svc = redial::Retry<Client<HttpConnector<Loopback>, RetryBody<Full<Bytes>>>>;

pub(crate) fn client(layer: &RetryLayer) -> Svc {
    let client = Client::builder(TokioExecutor::new())
        .build::<_, RetryBody<Full<Bytes>>>(HttpConnector::new_with_resolver(Loopback));
    tower::Layer::layer(layer, client)
}

/// A request body that announces 10 bytes and never sends them.
pub(crate) struct StalledBody;

impl http_body::Body for StalledBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(10)
    }
}

/// Everything `tracing` prints on this thread, at every level, while the guard of
/// [`Capture::install`] lives.
///
/// One global subscriber, set once, writes each event to the capture of the thread it happens
/// on (and nowhere when there is none). A subscriber set per thread (`set_default`) is not
/// enough: a callsite first reached by another test's thread while this one installs its
/// subscriber may cache "no one is interested", and this thread's capture then misses it.
#[derive(Clone, Default)]
pub(crate) struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    static CAPTURING: std::cell::RefCell<Option<Capture>> = const { std::cell::RefCell::new(None) };
}

/// The global subscriber's writer: this thread's capture, if one is installed.
struct ThisThread;

impl std::io::Write for ThisThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURING.with(|c| c.borrow_mut().as_mut().map_or(Ok(buf.len()), |c| c.write(buf)))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// This thread's capture ends when it is dropped.
pub(crate) struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURING.with(|c| c.borrow_mut().take());
    }
}

impl Capture {
    pub(crate) fn install() -> (Capture, CaptureGuard) {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(|| ThisThread)
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        });
        let capture = Capture::default();
        CAPTURING.with(|c| *c.borrow_mut() = Some(capture.clone()));
        (capture, CaptureGuard(()))
    }

    /// What was printed so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Genesys `createSubCampaign` (the call that must be reconciled before it is sent again), to
/// the simulated Genesys.
pub(crate) fn create_sub_campaign(sim: &redial_sim::Sim) -> http::Request<Full<Bytes>> {
    let envelope = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><createSubCampaign><campaign>Spring</campaign><externalId>sub-42</externalId></createSubCampaign></soapenv:Body></soapenv:Envelope>"#;
    http::Request::post(sim.url(redial_sim::vendors::genesys::SERVICE_PATH))
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"createSubCampaign\"")
        .body(Full::new(Bytes::from_static(envelope.as_bytes())))
        .unwrap()
}

/// A profile that reads every body (as Marketo's reads every 2xx JSON one), then applies the
/// generic rules: to test inspection itself.
#[derive(Debug)]
pub(crate) struct InspectEverything;

impl redial::core::Profile for InspectEverything {
    fn name(&self) -> &str {
        "inspect-everything"
    }
    fn inspect(&self, _: &redial::core::RequestHead<'_>, _: &redial::core::ResponseHead<'_>) -> bool {
        true
    }
    fn classify(
        &self,
        req: &redial::core::RequestHead<'_>,
        outcome: &redial::core::Outcome<'_>,
    ) -> redial::core::Classification {
        redial::core::Profile::classify(&redial::core::generic::Generic, req, outcome)
    }
}
