//! Shared test plumbing: a hyper-util client whose every host name resolves to loopback, so
//! several simulated vendors can be addressed by their own host names.

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
