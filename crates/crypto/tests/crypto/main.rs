//! Integration tests of the key ring, in one test binary (one link instead of one per file).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod binding;
mod fernet_spec;
mod properties;
mod python_interop;
mod python_vectors;
mod redaction;
mod support;
mod timestamps;
