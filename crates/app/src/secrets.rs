//! Secret sources (SPEC §6.2): where the encryption key and the JWT secret come from.
//!
//! The providers (`environment`, `vault`, `doppler`) live in the `user-service-secrets` crate;
//! `vault` and `doppler` are compiled in by this crate's default features of the same names.
//! This module keeps the names the rest of the app uses.

pub use user_service_secrets::{source_for, ENCRYPTION_KEY, JWT_SECRET};
