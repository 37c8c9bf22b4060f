//! The domain's error types.
//!
//! Use [`ValidationError`] for a request that breaks a rule, [`RepositoryError`] in repository
//! adapters, [`CipherError`] in cipher adapters and [`DomainError`] for what a domain service
//! returns. Messages are for humans and never contain a secret value.

use thiserror::Error;

use crate::capability::AccessDenied;

/// A request that breaks a rule of the domain. Callers answer 400 or 422 with its message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The broker identifier is blank.
    #[error("Broker identifier is required")]
    BrokerRequired,
    /// The same broker appears twice in one request (after normalisation).
    #[error("Duplicate broker in request: {0}")]
    DuplicateBroker(String),
    /// A field is longer than its limit.
    #[error("{field} must be at most {max} characters")]
    TooLong {
        /// Name of the field.
        field: &'static str,
        /// The limit, in characters.
        max: usize,
    },
    /// A field does not have the expected form.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// Name of the field.
        field: &'static str,
        /// What is wrong, without the value.
        reason: &'static str,
    },
    /// Too many entries in one request.
    #[error("At most {max} credentials may be sent in one request")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
}

impl ValidationError {
    /// Whether the error concerns the shape of the request (400) rather than one field's value
    /// (422), following the original service's status codes.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Self::BrokerRequired | Self::DuplicateBroker(_))
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::BrokerRequired | Self::DuplicateBroker(_) => Some("broker"),
            Self::TooLong { field, .. } | Self::Invalid { field, .. } => Some(field),
            Self::TooManyEntries { .. } => Some("credentials"),
        }
    }
}

/// What a repository adapter reports. Adapters translate their driver's errors into these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The row does not exist (or the user is soft-deleted).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken, or a compare-and-set lost against a concurrent writer.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the message names the operation, never a value.
    #[error("database error: {0}")]
    Other(String),
}

/// What a cipher adapter reports. Messages never contain key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CipherError {
    /// No usable key is configured.
    #[error("encryption key is not configured")]
    NotConfigured,
    /// The token is not valid under any configured key (wrong key, tampered or malformed).
    #[error("token cannot be decrypted with any configured key")]
    Undecryptable,
    /// The decrypted bytes are not UTF-8 text.
    #[error("decrypted value is not valid UTF-8")]
    NotUtf8,
}

/// What a domain service returns.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The request breaks a rule.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The actor lacks a capability.
    #[error(transparent)]
    AccessDenied(#[from] AccessDenied),
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was broken, or concurrent writers kept winning.
    #[error("{0}")]
    Conflict(String),
    /// The encryption key is missing or invalid.
    #[error("broker credentials encryption key is not configured")]
    KeyNotConfigured,
    /// A dependency (database, entitlements service) is unavailable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// An unexpected failure; the message names the operation, never a value.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RepositoryError> for DomainError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound => Self::NotFound("record"),
            RepositoryError::Conflict(message) => Self::Conflict(message),
            RepositoryError::Unavailable(message) => Self::Unavailable(message),
            RepositoryError::Other(message) => Self::Internal(message),
        }
    }
}

impl From<CipherError> for DomainError {
    fn from(error: CipherError) -> Self {
        match error {
            CipherError::NotConfigured => Self::KeyNotConfigured,
            other => Self::Internal(other.to_string()),
        }
    }
}
