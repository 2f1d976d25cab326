//! redial for [reqwest](https://docs.rs/reqwest): a
//! [`reqwest_middleware::Middleware`] that drives the same engine as redial's tower layer.
//!
//! One engine, two front doors: [`RedialMiddleware`] is made from a
//! [`RetryLayer`](redial_tower::RetryLayer) and hands each request to that layer's engine. The
//! engine decides everything (which host rules apply, whether to read the body, whether and
//! when to retry, when to give up); this crate only carries requests and responses across.
//!
//! # Quick start
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use redial_reqwest::RedialMiddleware;
//! use redial_tower::Report;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let sim = redial_sim::Sim::start().await?;
//! # sim.enqueue("/v1/items", redial_sim::Reply::status(503).header("Retry-After", "2"));
//! # sim.enqueue("/v1/items", redial_sim::Reply::json(200, r#"{"items":[]}"#));
//! # let url = sim.url("/v1/items");
//! // With the facade, `redial::builder().build()`: every built-in vendor on its own hosts.
//! let layer = redial_tower::RetryLayer::generic();
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(RedialMiddleware::new(layer))
//!     .build();
//!
//! // The server answers 503 with Retry-After: 2, then 200: redial waits two seconds and retries.
//! let res = client.get(&url).send().await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.url().as_str(), url);
//! let report = res.extensions().get::<Report>().expect("a retry happened");
//! assert_eq!(report.attempt_count(), 2);
//! assert_eq!(report.total_delay(), std::time::Duration::from_secs(2));
//! assert_eq!(res.text().await?, r#"{"items":[]}"#);
//! # Ok(()) }
//! ```
//!
//! When redial gives up, the error is `reqwest_middleware::Error::Middleware` holding a
//! [`redial_tower::Error`] that owns the last response and every attempt; [`redial_error`]
//! finds it.
//!
//! # What crosses the adapter
//!
//! - **Requests are replayed when `reqwest::Request::try_clone` could clone them**, up to the
//!   policy's replay limit (1 MiB by default): a bytes body (or none) is kept once by the
//!   engine, as the same `Bytes`, and every attempt is a new `reqwest::Request` around a clone of
//!   it (a reference count, not a copy), so the middlewares after this one can still
//!   `try_clone` it and read `Body::as_bytes`. A streaming body, or a bytes body over the limit,
//!   is sent once (as a stream) and never replayed: when a retry is wanted, the error says why
//!   the request was not replayable.
//! - **Responses are real `reqwest::Response`s**: URL (the final one, after reqwest's
//!   redirects), status, version, headers and extensions (with the [`Report`](redial_tower::Report)
//!   when there is something to report, and reqwest's remote address) as received. A response
//!   whose body the engine did not need is the very `reqwest::Response` the client returned (its
//!   head lent to the engine and put back, nothing converted); otherwise the body is whatever the
//!   engine read to classify it, then the untouched rest of the stream. A body past the inspect
//!   limit is never held in memory whole.
//! - **Errors**: a `reqwest::Error` of an attempt is read by what reqwest knows of it (a
//!   connect error never left, a timeout is a timeout); any other goes to the layer's failure
//!   classifier. The error of a middleware after redial in the chain is final, never retried.
//!   Either stays reachable from the redial error's `source()`.
//!
//! # Per-request markers
//!
//! `reqwest::Request` has no public extensions, so the markers the engine reads travel as
//! reqwest-middleware extensions: `client.post(url).with_extension(redial_tower::RetrySafe)`
//! lets a POST be re-sent even after it may have reached the server, and
//! `.with_extension(redial_tower::core::AddIdempotencyKey)` sends one `Idempotency-Key` on
//! every attempt, and `.with_extension(redial_tower::RequestLimits::no_retries())` (or a
//! shorter deadline, fewer attempts) tightens the host's policy for this call only.
//!
//! # Order and timeouts
//!
//! Each attempt runs the middlewares added *after* this one, then the client: add per-attempt
//! concerns (signing, tracing of each attempt) after it, and whole-call concerns before it.
//! reqwest's own timeouts (`ClientBuilder::timeout`, `RequestBuilder::timeout`) therefore bound
//! each attempt; redial's policy deadline (2 minutes by default) bounds the whole call, sleeps
//! included, and ends an attempt still in flight when it passes, whatever reqwest's timeout.
//!
//! # Logins and failover probes
//!
//! A token source's login is sent by the engine on its own, through the rest of the chain of
//! the call that waits for it. What can outlive that call (a login whose call was cancelled or
//! ran out of time) and what no call waits for (a background token renewal; a failover probe,
//! in practice) go through the client given with `with_client`, or a default
//! `reqwest::Client` made for them: not through the middlewares after redial.
//!
//! ```
//! # use redial_reqwest::RedialMiddleware;
//! let client = reqwest::Client::new();
//! let redial = RedialMiddleware::new(redial_tower::RetryLayer::generic()).with_client(client.clone());
//! let client = reqwest_middleware::ClientBuilder::new(client).with(redial).build();
//! # let _ = client;
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod convert;
mod error;
mod middleware;
mod service;

pub use error::{classify_error, into_redial_error, redial_error};
pub use middleware::RedialMiddleware;
