//! The domain's error types.
//!
//! Use [`ValidationError`] for a request that breaks a rule, [`AccessDenied`] for an actor
//! lacking a capability, [`RepositoryError`] in repository adapters, [`CipherError`] in cipher
//! adapters and [`DomainError`] for what a domain service returns. Messages are for humans and
//! never contain a secret value; the underlying cause of a storage failure is kept as the
//! error's [`source`](std::error::Error::source), so that the edge that logs it can print the
//! whole chain once.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use crate::password::PolicyViolation;

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
    /// The request would leave the user with more stored credentials than allowed.
    #[error("At most {max} broker credentials may be stored per user")]
    TooManyCredentials {
        /// The limit.
        max: usize,
    },
    /// The request keeps a stored half that cannot be read (undecryptable, or its row fails
    /// its binding check): carried into a newly bound row, it would become readable.
    #[error(
        "The stored {half} for {broker} cannot be read; send a new {half} (or null to remove it)"
    )]
    UnreadableStoredHalf {
        /// Broker of the row.
        broker: String,
        /// `api_key` or `api_secret`.
        half: &'static str,
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
            Self::TooManyEntries { .. } | Self::TooManyCredentials { .. } => Some("credentials"),
            Self::UnreadableStoredHalf { half, .. } => Some(half),
        }
    }
}

/// The underlying failure of a storage or dependency error, kept for the logs.
///
/// `Display` is the adapter's description (never a value); [`source`](StdError::source) is the
/// driver's own error when there is one. Cheap to clone; two causes are equal when they read the
/// same.
#[derive(Clone)]
pub struct Cause(Arc<dyn StdError + Send + Sync + 'static>);

impl Cause {
    /// Wraps a driver's error.
    pub fn new(error: impl StdError + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// A cause described by text only (no driver error behind it).
    pub fn message(text: impl Into<String>) -> Self {
        #[derive(Debug)]
        struct Message(String);
        impl fmt::Display for Message {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl StdError for Message {}
        Self(Arc::new(Message(text.into())))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cause({})", self.0)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unique {
    /// Two users with one e-mail address.
    Email,
    /// Two users with one id.
    UserId,
    /// Two credentials of one user for one broker.
    Broker,
}

impl fmt::Display for Unique {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Email => "email",
            Self::UserId => "user id",
            Self::Broker => "broker",
        })
    }
}

/// What a repository adapter reports. Adapters translate their driver's errors into these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The row does not exist (or the user is soft-deleted).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken.
    #[error("duplicate {0}")]
    Duplicate(Unique),
    /// A compare-and-set lost against a concurrent writer: nothing was written.
    #[error("changed concurrently")]
    StaleVersion,
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable during {operation}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// Why.
        #[source]
        cause: Cause,
    },
    /// The database answers but its schema is missing or older than this program's migrations.
    #[error("database schema is behind: run `user-service migrate`")]
    SchemaBehind,
    /// Anything else; never a value.
    #[error("database error during {operation}")]
    Other {
        /// What was being done.
        operation: &'static str,
        /// Why.
        #[source]
        cause: Cause,
    },
}

impl RepositoryError {
    /// An unavailable database during `operation`.
    pub fn unavailable(operation: &'static str, cause: impl Into<String>) -> Self {
        Self::Unavailable {
            operation,
            cause: Cause::message(cause),
        }
    }

    /// An unexpected failure during `operation`.
    pub fn other(operation: &'static str, cause: impl Into<String>) -> Self {
        Self::Other {
            operation,
            cause: Cause::message(cause),
        }
    }

    /// Whether the database could not be reached.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
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

/// The actor lacks a capability the action requires.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccessDenied {
    /// The dashboard capability is missing (message kept from the original service).
    #[error("Missing capabilities: {0}")]
    MissingCapabilities(String),
    /// The operator capability is missing (message kept from the original service).
    #[error("Missing capability: {0}")]
    MissingCapability(String),
    /// The action is reserved to the account itself and to operators (message kept from the
    /// original service).
    #[error("Operation not permitted")]
    OperationNotPermitted,
    /// A service principal asked for something only users may do.
    #[error("Not available to service principals")]
    ServicePrincipal,
    /// Someone other than the owner tried to allow trading with the owner's keys.
    #[error("Only the account's owner may allow trading with its keys")]
    OwnerConsentOnly,
    /// A user's token on a route only platform services may use.
    #[error("Only a platform service may have broker requests signed")]
    ServiceRequired,
    /// A platform service that `SIGNING_SERVICES` does not list.
    #[error("This service is not allowed to have broker requests signed (SIGNING_SERVICES)")]
    ServiceNotListed,
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
    /// A uniqueness rule was broken (an e-mail address already registered, …).
    #[error("duplicate {0}")]
    Duplicate(Unique),
    /// Concurrent writers kept changing the same rows: nothing was written; retry.
    #[error("changed concurrently; retry")]
    Busy,
    /// A new password breaks the policy; the message says what is missing.
    #[error(transparent)]
    PasswordPolicy(#[from] PolicyViolation),
    /// The encryption key is missing or invalid.
    #[error("broker credentials encryption key is not configured")]
    KeyNotConfigured,
    /// A dependency other than the database (entitlements service, …) is unavailable.
    #[error("{0} unavailable")]
    DependencyUnavailable(&'static str),
    /// Storage failed (unavailable database, schema behind, unexpected error).
    #[error(transparent)]
    Storage(RepositoryError),
    /// A broker request was not signed.
    #[error(transparent)]
    Signing(#[from] SignError),
    /// An unexpected failure; the message names the operation, never a value.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<PolicyViolation> for ValidationError {
    fn from(_: PolicyViolation) -> Self {
        ValidationError::Invalid {
            field: "password",
            reason: "does not meet the password policy",
        }
    }
}

impl From<RepositoryError> for DomainError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound => Self::NotFound("record"),
            RepositoryError::Duplicate(unique) => Self::Duplicate(unique),
            RepositoryError::StaleVersion => Self::Busy,
            other => Self::Storage(other),
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

/// `error` followed by each of its sources, joined by `: ` — the one line to log at the edge.
pub fn chain(error: &dyn StdError) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Wrappers that display their source again would repeat it.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Why a request was not signed. Messages never contain a value of the request or a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// The broker's API cannot be signed here: it sends the secret itself (Alpaca), or no signer
    /// knows its protocol.
    #[error("requests to this broker cannot be signed")]
    Unsupported,
    /// The signing policy does not allow this method and path for this broker.
    #[error("the signing policy does not allow this request for this broker")]
    PathNotAllowed,
    /// The request breaks a limit or a rule of the broker's protocol.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The stored key or secret does not have the form the broker uses: a Kraken secret that is
    /// not base64, an API key holding characters an HTTP header cannot carry.
    #[error("the stored API key or secret does not have the form this broker uses")]
    InvalidSecret,
    /// The owner has not allowed the platform to trade with this key.
    #[error("the owner has not allowed trading with this key")]
    TradingNotEnabled,
    /// The stored credential cannot be used: a half is missing, or it cannot be decrypted or
    /// fails its integrity check. The message says which, never a value.
    #[error("{0}")]
    UnusableCredential(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_the_operation_then_the_cause() {
        let error = RepositoryError::Unavailable {
            operation: "list broker credentials",
            cause: Cause::new(std::io::Error::other("connection refused")),
        };
        assert_eq!(
            chain(&error),
            "database unavailable during list broker credentials: connection refused"
        );
        let domain = DomainError::from(error);
        assert!(
            chain(&domain).ends_with("list broker credentials: connection refused"),
            "{}",
            chain(&domain)
        );
    }

    #[test]
    fn a_lost_compare_and_set_is_not_a_duplicate() {
        assert_eq!(
            DomainError::from(RepositoryError::StaleVersion),
            DomainError::Busy
        );
        assert_eq!(
            DomainError::from(RepositoryError::Duplicate(Unique::Email)),
            DomainError::Duplicate(Unique::Email)
        );
    }
}
