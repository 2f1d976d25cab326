//! Vendor profiles for redial: each vendor's body parser, code table and default host policy,
//! exactly as `VENDORS.md` lays them out.
//!
//! Every vendor module has the same shape: a profile type implementing
//! [`redial_core::Profile`], its rules as a table of data, `policy()` for the vendor's default
//! [`Policy`], `HOSTS` for the host patterns it serves, and typed parsers for its error bodies.
//! (`oauth2` holds the OAuth 2 client-credentials login the vendors' logins share.)
#![forbid(unsafe_code)]

use std::sync::Arc;

use redial_core::generic::Generic;
use redial_core::{Policy, Profile};

/// The most vendor errors kept from one response: a body of a few hundred kilobytes can list
/// tens of thousands, and each is kept, with the attempt history, in the caller's report.
pub const MAX_ERRORS: usize = 1000;

/// The longest value copied onto every error of a response (a `requestId`, a record's `id`):
/// a longer one goes on the first error only, so that what the errors hold stays linear in the
/// body however many errors share it.
pub const MAX_SHARED_ATTRIBUTE: usize = 256;

/// Whether a value shared by every error of a response goes on the error at `index`.
pub(crate) fn shares(value: &str, index: usize) -> bool {
    index == 0 || value.len() <= MAX_SHARED_ATTRIBUTE
}

pub mod adobe;
pub mod genesys;
pub mod marketo;
pub mod oauth2;
pub mod responsys;

/// A built-in vendor.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// Marketo Engage REST (`*.mktorest.com`).
    Marketo,
    /// Adobe Experience Platform Edge Network Server API.
    AdobeEdge,
    /// Oracle Responsys REST and AFTM.
    Responsys,
    /// Genesys Engage Service API (SOAP).
    GenesysEngage,
    /// Any other host: plain HTTP and RFC 9457 problem details.
    Generic,
}

impl Vendor {
    /// Every built-in vendor.
    pub const ALL: [Vendor; 5] =
        [Vendor::Marketo, Vendor::AdobeEdge, Vendor::Responsys, Vendor::GenesysEngage, Vendor::Generic];

    /// The vendor's name as the CLI and logs spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Vendor::Marketo => "marketo",
            Vendor::AdobeEdge => "adobe-edge",
            Vendor::Responsys => "responsys",
            Vendor::GenesysEngage => "genesys-engage",
            Vendor::Generic => "generic",
        }
    }

    /// The vendor named `name` (as [`name`](Vendor::name) spells it).
    pub fn from_name(name: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The vendor's profile.
    pub fn profile(self) -> Arc<dyn Profile> {
        match self {
            Vendor::Marketo => Arc::new(marketo::Marketo::default()),
            Vendor::AdobeEdge => Arc::new(adobe::AdobeEdge::default()),
            Vendor::Responsys => Arc::new(responsys::Responsys::default()),
            Vendor::GenesysEngage => Arc::new(genesys::GenesysEngage::default()),
            Vendor::Generic => Arc::new(Generic),
        }
    }

    /// The vendor's default host policy.
    pub fn policy(self) -> Policy {
        match self {
            Vendor::Marketo => marketo::policy(),
            Vendor::AdobeEdge => adobe::policy(),
            Vendor::Responsys => responsys::policy(),
            Vendor::GenesysEngage => genesys::policy(),
            Vendor::Generic => Policy::default(),
        }
    }

    /// The host patterns the vendor serves by default (`*.suffix` or exact hosts).
    pub fn hosts(self) -> &'static [&'static str] {
        match self {
            Vendor::Marketo => marketo::HOSTS,
            Vendor::AdobeEdge => adobe::HOSTS,
            Vendor::Responsys => responsys::HOSTS,
            Vendor::GenesysEngage => genesys::HOSTS,
            Vendor::Generic => &[],
        }
    }
}
