#![doc = include_str!("../README.md")]

pub mod audit;
pub mod broker;
pub mod capability;
pub mod credential;
pub mod entitlements;
pub mod error;
pub mod limits;
pub mod ports;
pub mod rotation;
pub mod secret;
pub mod service;
pub mod signing;
pub mod update;
pub mod user;

#[cfg(test)]
mod test_support;

pub use audit::{AuditAction, AuditEvent};
pub use broker::BrokerId;
pub use capability::{authorize, AccessDenied, Action, Capabilities, Capability};
pub use credential::{
    mask, BindingInput, CredentialHealth, CredentialStatus, KeyId, StoredCredential,
};
pub use error::{CipherError, DomainError, RepositoryError, ValidationError};
pub use secret::{PlainSecret, SecretInput};
pub use service::{CredentialService, CredentialTest, RequestContext, TestOutcome, TestResult};
pub use signing::{HttpMethod, RequestSigner, SignError, SignedRequest, UnsignedRequest};
pub use update::{plan_update, CredentialUpdate, HalfChange, PlannedChange};
pub use user::{Email, NewUser, OnboardingProgress, Page, User, UserId, UserPatch};

/// Re-exported so that callers use the same secret types as the domain.
pub use secrecy;
