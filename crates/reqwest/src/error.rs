//! Reading redial's error out of `reqwest_middleware::Error`, and reqwest's errors for the engine.

use redial_tower::core::Failure;
use redial_tower::Error;

/// The redial [`Error`] inside a `reqwest_middleware` error, if redial gave up: the last
/// response's status, headers and body, every vendor error, the server's hint, the attempts.
///
/// ```
/// # async fn demo(client: reqwest_middleware::ClientWithMiddleware) {
/// match client.get("http://api.example.com/v1/items").send().await {
///     Ok(res) => { /* … */ }
///     Err(e) => match redial_reqwest::redial_error(&e) {
///         Some(err) if err.is_hint_exceeds_limit() => eprintln!("asked to wait {:?}", err.retry_after()),
///         Some(err) => eprintln!("gave up after {} attempts: {err}", err.report().attempt_count()),
///         None => eprintln!("{e}"),
///     },
/// }
/// # }
/// ```
pub fn redial_error(err: &reqwest_middleware::Error) -> Option<&Error> {
    match err {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Error>(),
        _ => None,
    }
}

/// The redial [`Error`] inside a `reqwest_middleware` error, owned (to take its last response
/// with [`Error::into_response`]); any other error is given back.
pub fn into_redial_error(err: reqwest_middleware::Error) -> Result<Error, reqwest_middleware::Error> {
    match err {
        reqwest_middleware::Error::Middleware(e) => {
            e.downcast::<Error>().map_err(reqwest_middleware::Error::Middleware)
        }
        other => Err(other),
    }
}

/// A [`FailureClassifier`](redial_tower::FailureClassifier) that also reads reqwest's own
/// errors: a connect error (including reqwest's connect timeout) never reached the server,
/// reqwest's timeouts are timeouts, and a builder or redirect-policy error is final
/// ([`Failure::Local`]: sending the request again would meet it again). Everything else is read by [`redial_tower::classify_error`],
/// the default, which already recognises a refused connection below a reqwest error.
///
/// [`RedialMiddleware`](crate::RedialMiddleware) reads reqwest's errors this way itself; this
/// is for a `RetryLayer` over another service whose errors are reqwest's.
///
/// ```
/// let layer = redial_tower::RetryLayer::builder()
///     .failure_classifier(redial_reqwest::classify_error)
///     .build();
/// # let _ = layer;
/// ```
pub fn classify_error(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<reqwest::Error>() {
            if e.is_connect() {
                return Failure::Connect;
            }
            if e.is_timeout() {
                return Failure::Timeout;
            }
            // Never left (a request reqwest could not build), or stopped by the redirect
            // policy, which would stop it again: final.
            if e.is_builder() || e.is_redirect() {
                return Failure::Local;
            }
        }
        next = e.source();
    }
    redial_tower::classify_error(error)
}
