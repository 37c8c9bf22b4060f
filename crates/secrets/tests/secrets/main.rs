//! Integration tests of the secret sources, in one test binary (one link instead of one per
//! file). The HTTP providers are tested against a loopback server that answers as the vendor's
//! documented API does.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod environment;
mod providers;
mod support;

#[cfg(feature = "doppler")]
mod doppler;
#[cfg(feature = "vault")]
mod vault;
