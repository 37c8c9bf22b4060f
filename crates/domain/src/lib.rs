#![doc = include_str!("../README.md")]

pub mod audit;
pub mod broker;
pub mod capability;
pub mod credential;
pub mod cutover;
pub mod entitlements;
pub mod error;
pub mod limits;
pub mod password;
pub mod ports;
pub mod principal;
pub mod rotation;
pub mod secret;
pub mod service;
pub mod session;
pub mod signing;
pub mod text;
pub mod update;
pub mod user;

#[cfg(any(test, feature = "mock"))]
pub mod test_support;

pub use audit::{AuditAction, AuditEvent};
pub use broker::BrokerId;
pub use capability::{authorize, authorize_principal, Action, Capabilities, Capability};
pub use credential::{
    mask, BindingInput, CredentialHealth, CredentialStatus, KeyId, StoredCredential,
};
pub use cutover::{BindingCheck, CutoverMode, CutoverState};
pub use error::{
    chain, AccessDenied, Cause, CipherError, DomainError, RepositoryError, Unique, ValidationError,
};
pub use principal::{Principal, ServiceName};
pub use secret::{PlainSecret, SecretInput};
pub use service::{
    CapabilityChange, CredentialService, CredentialTest, CutoverGate, RequestContext,
    SignInService, SignOrder, Signing, TestOutcome, TestResult, UserPorts, UserService,
};
pub use session::{NewSession, PresentedSession, RefreshOutcome, Session, SessionState};
pub use signing::{
    HttpMethod, RequestSigner, SignError, SignedRequest, SigningServices, UnsignedRequest,
};
pub use update::{plan_update, CredentialUpdate, HalfChange, PlannedChange};
pub use user::{Email, NewUser, OnboardingProgress, Page, User, UserId, UserPatch};

/// Re-exported so that callers use the same secret types as the domain.
pub use secrecy;
