#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

#[doc(inline)]
pub use redial_tower::{
    AttemptError, BoxError, Detach, Detached, Error, FailureClassifier, Inner, InvalidHost, Policy, Report,
    RequestLimits, ResponseBody, ResponseFuture, Retry, RetryBody, RetryLayer, RetryLayerBuilder, RetrySafe,
    TokenSource,
};

/// Token sources and the single-flight token cell.
pub use redial_tower::auth;

/// Reconcile hooks and failover probes.
pub use redial_tower::hooks;

/// The generic HTTP rules (`VENDORS.md`, "Any other host"): the profile to give a host of
/// your own its own policy.
///
/// ```
/// use std::time::Duration;
/// use redial::{Generic, Policy, RetryLayer};
///
/// let policy = Policy::builder().max_attempts(5).deadline(Duration::from_secs(30)).build()?;
/// let layer = RetryLayer::builder().host("api.example.com", Generic, policy)?.build();
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(inline)]
pub use redial_core::generic::Generic;

/// The sans-io core: classification, decision, backoff, Retry-After, budgets.
pub use redial_core as core;

/// The reqwest-middleware front door.
pub use redial_reqwest as reqwest;

#[doc(inline)]
pub use redial_reqwest::RedialMiddleware;

/// The built-in vendor profiles.
pub use redial_vendors as vendors;

#[doc(inline)]
pub use redial_vendors::Vendor;

/// A layer builder with every built-in vendor registered on its default hosts, the generic
/// rules for every other host, and [`classify_error`] to read its inner service's errors.
///
/// ```
/// let layer = redial::builder().build();
/// # let _ = layer;
/// ```
pub fn builder() -> RetryLayerBuilder {
    Vendor::ALL.into_iter().fold(RetryLayer::builder(), VendorExt::vendor).failure_classifier(classify_error)
}

/// The [`FailureClassifier`] of [`builder`]: the tower layer's default
/// ([`redial_tower::classify_error`]: an `io::Error` that proves the request never left or
/// timed out, tower's own `Timeout` and `LoadShed` errors), and the connect errors of the two
/// clients redial is built over, hyper-util's legacy `Client` and reqwest
/// ([`redial_reqwest::classify_error`]).
///
/// A connect error is [`Failure::Connect`](crate::core::Failure::Connect) whatever its cause: a
/// name that does not resolve, a connect refused or timed out, a TLS handshake that failed. The
/// request was never written, so a POST is sent again. The tower layer's own default knows only
/// a refused connect: it does not depend on hyper-util.
///
/// ```
/// use redial::core::Failure;
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert_eq!(redial::classify_error(&refused), Failure::Connect);
/// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
/// assert_eq!(redial::classify_error(&reset), Failure::Io);
/// ```
pub fn classify_error(error: &(dyn std::error::Error + 'static)) -> redial_core::Failure {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<hyper_util::client::legacy::Error>().is_some_and(|e| e.is_connect()) {
            return redial_core::Failure::Connect;
        }
        next = e.source();
    }
    redial_reqwest::classify_error(error)
}

/// Registers built-in vendors on a [`RetryLayerBuilder`].
///
/// ```
/// use redial::{Vendor, VendorExt};
/// let layer = redial::RetryLayer::builder()
///     .vendor(Vendor::Marketo)                                   // *.mktorest.com
///     .vendor_at(Vendor::GenesysEngage, "engage.example.com")?  // Genesys has no public host
///     .build();
/// # Ok::<(), redial::InvalidHost>(())
/// ```
pub trait VendorExt: Sized {
    /// Serve the vendor's default hosts ([`Vendor::hosts`]) with its profile and policy.
    fn vendor(self, vendor: Vendor) -> Self;

    /// Serve `host` (exact, or `*.suffix`) with the vendor's profile and policy.
    fn vendor_at(self, vendor: Vendor, host: &str) -> Result<Self, InvalidHost>;

    /// Serve `host` with the vendor's profile and a policy of your own (start from
    /// `vendor.policy().to_builder()` to adjust the vendor's defaults).
    fn vendor_with(self, vendor: Vendor, host: &str, policy: Policy) -> Result<Self, InvalidHost>;
}

impl VendorExt for RetryLayerBuilder {
    fn vendor(self, vendor: Vendor) -> Self {
        vendor.hosts().iter().fold(self, |b, host| {
            b.host(host, vendor.profile(), vendor.policy()).expect("built-in host patterns are valid")
        })
    }

    fn vendor_at(self, vendor: Vendor, host: &str) -> Result<Self, InvalidHost> {
        self.host(host, vendor.profile(), vendor.policy())
    }

    fn vendor_with(self, vendor: Vendor, host: &str, policy: Policy) -> Result<Self, InvalidHost> {
        self.host(host, vendor.profile(), policy)
    }
}
