//! Ports: the traits adapters implement. Every port has a `mockall` mock (`MockCredentialRepository`,
//! ...) when the `mock` feature is on, so each layer is unit-tested against mocked ports.
//!
//! Ports are synchronous: the persistence adapter is sync diesel, and the HTTP layer runs port
//! calls on its blocking thread pool.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use thiserror::Error;

use crate::audit::AuditEvent;
use crate::broker::BrokerId;
use crate::capability::{Capabilities, Capability};
use crate::credential::{BindingInput, KeyId, StoredCredential};
use crate::error::{CipherError, RepositoryError};
use crate::secret::PlainSecret;
use crate::user::{Email, NewUser, OnboardingProgress, Page, User, UserId, UserPatch};

#[cfg(any(test, feature = "mock"))]
use mockall::automock;

/// The time source.
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A value encrypted by the cipher, with the key that encrypted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The token (for Fernet, url-safe base64 starting `gAAAAA`).
    pub token: String,
    /// Fingerprint of the key that encrypted it.
    pub key_id: KeyId,
}

/// A decrypted value, with the key that decrypted it.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The plaintext, redacted in `Debug`.
    pub value: PlainSecret,
    /// Fingerprint of the key that decrypted it.
    pub key_id: KeyId,
}

/// Encrypts and decrypts credential halves and computes the row binding tag (SPEC §6.4–§6.5).
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait CredentialCipher: Send + Sync {
    /// Fingerprint of the primary key, which encrypts every new value.
    fn primary_key_id(&self) -> KeyId;
    /// Fingerprints of every configured key, primary first.
    fn key_ids(&self) -> Vec<KeyId>;
    /// Encrypts with the primary key.
    fn encrypt(&self, plaintext: &PlainSecret) -> Result<Sealed, CipherError>;
    /// Decrypts with whichever configured key fits.
    fn decrypt(&self, token: &str) -> Result<Opened, CipherError>;
    /// The binding tag of a row about to be written, under the primary key.
    fn bind<'a>(&self, input: &BindingInput<'a>) -> String;
    /// Whether the row's binding tag matches its content under the key its `key_id` names (any
    /// configured key when it has none). A row without a tag (written by the Python service)
    /// passes. Constant-time comparison.
    fn verify_binding(&self, row: &StoredCredential) -> bool;
}

/// One row write of an update, prepared by the domain: ciphertext only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialWrite {
    /// Broker of the row.
    pub broker: BrokerId,
    /// Version the row must still have (`None`: the row must not exist yet).
    pub expected_version: Option<i64>,
    /// Version the row has once written.
    pub version: i64,
    /// Token of the API key.
    pub api_key_encrypted: Option<String>,
    /// Token of the API secret.
    pub api_secret_encrypted: Option<String>,
    /// Key that encrypted both tokens.
    pub key_id: KeyId,
    /// Binding tag over the written row.
    pub binding: String,
    /// Time of the write.
    pub updated_at: DateTime<Utc>,
}

/// One change of an update request, as the repository applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialMutation {
    /// Insert or compare-and-set update; resets the last test result.
    Write(CredentialWrite),
    /// Compare-and-set delete.
    Delete {
        /// Broker of the row.
        broker: BrokerId,
        /// Version the row must still have.
        expected_version: i64,
    },
}

/// Count of rows per key id (`None`: rows written by the Python service, without a key id).
pub type KeyIdCount = (Option<KeyId>, u64);

/// Storage of broker credentials.
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait CredentialRepository: Send + Sync {
    /// Rows of a user, ordered by broker.
    fn list(&self, user: UserId) -> Result<Vec<StoredCredential>, RepositoryError>;
    /// Applies every mutation in one transaction and returns the user's rows afterwards. When
    /// any compare-and-set fails, nothing changes and the error is
    /// [`RepositoryError::Conflict`]. Same as [`CredentialRepository::apply_audited`] with no
    /// event.
    fn apply(
        &self,
        user: UserId,
        mutations: &[CredentialMutation],
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.apply_audited(user, mutations, &[])
    }
    /// Applies every mutation and records `events` in **one** transaction, so that a change and
    /// its audit record are committed together or not at all; returns the user's rows
    /// afterwards. When any compare-and-set fails, nothing changes (no event either) and the
    /// error is [`RepositoryError::Conflict`].
    fn apply_audited(
        &self,
        user: UserId,
        mutations: &[CredentialMutation],
        events: &[AuditEvent],
    ) -> Result<Vec<StoredCredential>, RepositoryError>;
    /// Deletes a row whatever its version; `false` when there was none.
    fn delete(&self, user: UserId, broker: &BrokerId) -> Result<bool, RepositoryError>;
    /// Stores the outcome of a connection test on an existing row; `false` when there is none.
    fn record_test(
        &self,
        user: UserId,
        broker: &BrokerId,
        status: &str,
        tested_at: DateTime<Utc>,
    ) -> Result<bool, RepositoryError>;
    /// Up to `limit` rows of all users with an id above `after_id`, ordered by id (key rotation).
    fn batch_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredCredential>, RepositoryError>;
    /// Rewrites, in one transaction, the ciphertext, key id, binding and version of each row
    /// `(id, write)` whose version is still `write.expected_version`, leaving `updated_at` and
    /// test results alone. Answers, in order, whether each row was rewritten (`false`: a
    /// concurrent writer got there first, or the row is gone). An `Err` rewrote nothing.
    fn rewrite(&self, rows: &[(i64, CredentialWrite)]) -> Result<Vec<bool>, RepositoryError>;
    /// Number of rows per key id.
    fn count_by_key_id(&self) -> Result<Vec<KeyIdCount>, RepositoryError>;
}

/// Storage of user profiles.
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait UserRepository: Send + Sync {
    /// Creates a user; [`RepositoryError::Conflict`] when the e-mail is taken.
    fn create(
        &self,
        user: &NewUser,
        password_hash: Option<SecretString>,
    ) -> Result<User, RepositoryError>;
    /// A user that is not soft-deleted; [`RepositoryError::NotFound`] otherwise.
    fn get(&self, id: UserId) -> Result<User, RepositoryError>;
    /// The user with this e-mail, if not soft-deleted.
    fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepositoryError>;
    /// The stored password hash, if any.
    fn password_hash(&self, id: UserId) -> Result<Option<SecretString>, RepositoryError>;
    /// Replaces the password hash.
    fn set_password_hash(&self, id: UserId, hash: SecretString) -> Result<(), RepositoryError>;
    /// One page of users that are not soft-deleted, by id, and their total count.
    fn list(&self, page: Page) -> Result<(Vec<User>, u64), RepositoryError>;
    /// Applies a patch; [`RepositoryError::Conflict`] when the new e-mail is taken.
    fn update(&self, id: UserId, patch: &UserPatch) -> Result<User, RepositoryError>;
    /// Marks the user deleted; [`RepositoryError::NotFound`] when already deleted or unknown.
    fn soft_delete(&self, id: UserId) -> Result<(), RepositoryError>;
}

/// Storage of user preferences (a JSON object).
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait PreferenceRepository: Send + Sync {
    /// The user's preferences, `{}` when none are stored.
    fn get(&self, user: UserId) -> Result<Value, RepositoryError>;
    /// Replaces the user's preferences.
    fn put(&self, user: UserId, preferences: &Value) -> Result<Value, RepositoryError>;
}

/// Storage of onboarding progress.
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait OnboardingRepository: Send + Sync {
    /// The stored progress, if the user has started.
    fn get(&self, user: UserId) -> Result<Option<OnboardingProgress>, RepositoryError>;
    /// Stores the progress.
    fn save(&self, user: UserId, progress: &OnboardingProgress) -> Result<(), RepositoryError>;
}

/// Storage of per-user capability grants and revocations (the `local` entitlements provider).
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait CapabilityRepository: Send + Sync {
    /// Explicit grants (`true`) and revocations (`false`) of a user.
    fn overrides(&self, user: UserId) -> Result<Vec<(Capability, bool)>, RepositoryError>;
    /// Grants (`true`) or revokes (`false`) a capability.
    fn set(
        &self,
        user: UserId,
        capability: &Capability,
        granted: bool,
    ) -> Result<(), RepositoryError>;
}

/// Storage of credential audit events.
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait AuditRepository: Send + Sync {
    /// Records one event.
    fn record(&self, event: &AuditEvent) -> Result<(), RepositoryError>;
    /// One page of the events about a user, newest first, and their total count.
    fn list(&self, target: UserId, page: Page) -> Result<(Vec<AuditEvent>, u64), RepositoryError>;
}

/// The entitlements provider could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("entitlements unavailable: {0}")]
pub struct EntitlementsUnavailable(pub String);

/// Resolves the capabilities of a user.
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait EntitlementsProvider: Send + Sync {
    /// The capabilities `user` holds now.
    fn capabilities(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable>;
}

/// A secret source failed. Names the provider and the key, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{provider}: cannot read {key}: {reason}")]
pub struct SecretSourceError {
    /// Provider name (`environment`, `vault`, `doppler`).
    pub provider: String,
    /// Name of the secret asked for.
    pub key: String,
    /// What went wrong.
    pub reason: String,
}

/// Where configuration secrets (encryption key, JWT secret) come from.
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait SecretSource: Send + Sync {
    /// Provider name, for messages.
    fn provider(&self) -> &'static str;
    /// The secret named `name`, `None` when the source does not have it.
    fn fetch(&self, name: &str) -> Result<Option<SecretString>, SecretSourceError>;
}

/// Outcome of a broker connection test (SPEC §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeStatus {
    /// The broker accepted the credentials.
    Ok,
    /// The broker rejected them.
    Unauthorized,
    /// The broker could not be reached, or has no automated check.
    NetworkError,
}

impl ProbeStatus {
    /// Stable name (`ok`, `unauthorized`, `network_error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unauthorized => "unauthorized",
            Self::NetworkError => "network_error",
        }
    }
}

impl fmt::Display for ProbeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Performs a signed, read-only call to a broker to check credentials.
#[cfg_attr(any(test, feature = "mock"), automock)]
pub trait BrokerProbe: Send + Sync {
    /// Checks the credentials against the broker.
    fn probe(
        &self,
        broker: &BrokerId,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
    ) -> ProbeStatus;
}
