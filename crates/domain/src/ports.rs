//! Ports: the traits adapters implement. Every port has a `mockall` mock (`MockCredentialRepository`,
//! ...) when the `mock` feature is on, so each layer is unit-tested against mocked ports.
//!
//! Ports that do I/O (repositories, entitlements, broker probes) are asynchronous, so that an
//! adapter can do its I/O where the request runs; pure computations (cipher, clock) and the
//! start-up secret sources are synchronous.

// The mock generated for `CredentialRepository::update` needs the object lifetime spelled out
// in parentheses, which the lint then calls unnecessary.
#![allow(unused_parens)]

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use thiserror::Error;

use crate::audit::AuditEvent;
use crate::broker::BrokerId;
use crate::capability::{Capabilities, Capability};
use crate::credential::{BindingInput, KeyId, StoredCredential};
use crate::cutover::{BindingCheck, CutoverMode, CutoverState};
use crate::error::{CipherError, RepositoryError};
use crate::secret::PlainSecret;
use crate::session::{NewSession, Session};
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

/// Encrypts and decrypts credential halves and computes the row binding tag.
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
    /// configured key when it has none), compared in constant time. Whether an unbound row may
    /// be read is not the cipher's decision (see [`crate::cutover`]).
    fn verify_binding(&self, row: &StoredCredential) -> BindingCheck;
    /// Names this set of keys for callers that keep what they computed with it: two ciphers
    /// answering the same `Some(id)` decrypt and verify every token alike, and a cipher whose
    /// keys differ never answers an id another one gave. `None`: keep nothing computed with
    /// this cipher beyond the call.
    fn generation(&self) -> Option<u64> {
        None
    }
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
    /// The owner's trading consent the row has once written.
    pub trading_enabled: bool,
    /// The connection test result the row keeps: the stored one when only the consent changes,
    /// `None` (reset) when a key or secret changes.
    pub last_test_status: Option<String>,
    /// When that test ran.
    pub last_tested_at: Option<DateTime<Utc>>,
}

/// One change of an update request, as the repository applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialMutation {
    /// Insert or compare-and-set update (the test result becomes the write's).
    Write(CredentialWrite),
    /// Compare-and-set delete.
    Delete {
        /// Broker of the row.
        broker: BrokerId,
        /// Version the row must still have.
        expected_version: i64,
    },
}

/// What an update decides once it has seen the rows inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritePlan {
    /// Nothing to change: the transaction ends without a write.
    Nothing,
    /// Apply these mutations and record these audit events, all in the transaction.
    Apply {
        /// Row changes, each a compare-and-set on the version seen.
        mutations: Vec<CredentialMutation>,
        /// Audit events committed with them.
        events: Vec<AuditEvent>,
    },
    /// The request is refused (its reason is kept by the planner): roll back.
    Abort,
}

/// What an update runs inside its transaction: given the user's rows, what to write. Any
/// `FnMut(&[StoredCredential]) -> WritePlan` is one.
pub trait WritePlanner: Send {
    /// The plan for these rows.
    fn plan(&mut self, rows: &[StoredCredential]) -> WritePlan;
}

impl<F> WritePlanner for F
where
    F: FnMut(&[StoredCredential]) -> WritePlan + Send,
{
    fn plan(&mut self, rows: &[StoredCredential]) -> WritePlan {
        self(rows)
    }
}

/// Count of rows per key id (`None`: rows written by the Python service, without a key id).
pub type KeyIdCount = (Option<KeyId>, u64);

/// Storage of broker credentials.
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait CredentialRepository: Send + Sync {
    /// Rows of a user, ordered by broker.
    async fn list(&self, user: UserId) -> Result<Vec<StoredCredential>, RepositoryError>;
    /// One write transaction: reads the user's rows, asks `planner` what to change, applies
    /// the mutations (each a compare-and-set on the version read) with the audit events, and
    /// commits; answers the user's rows afterwards. [`WritePlan::Nothing`] and
    /// [`WritePlan::Abort`] write nothing and answer the rows read. When a compare-and-set
    /// fails, nothing is written (no event either) and the error is
    /// [`RepositoryError::StaleVersion`].
    async fn update<'p>(
        &self,
        user: UserId,
        planner: &'p mut (dyn WritePlanner + 'p),
    ) -> Result<Vec<StoredCredential>, RepositoryError>;
    /// Deletes a row whatever its version and records `event` in the same transaction; `false`
    /// (and no event) when there was none.
    async fn delete(
        &self,
        user: UserId,
        broker: &BrokerId,
        event: &AuditEvent,
    ) -> Result<bool, RepositoryError>;
    /// Stores the outcome of a connection test on an existing row; `false` when there is none.
    async fn record_test(
        &self,
        user: UserId,
        broker: &BrokerId,
        status: &str,
        tested_at: DateTime<Utc>,
    ) -> Result<bool, RepositoryError>;
    /// Up to `limit` rows of all users with an id above `after_id`, ordered by id (key rotation).
    async fn batch_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredCredential>, RepositoryError>;
    /// Rewrites, in one transaction, the ciphertext, key id, binding and version of each row
    /// `(id, write)` whose version is still `write.expected_version`, leaving `updated_at` and
    /// test results alone. Answers, in order, whether each row was rewritten (`false`: a
    /// concurrent writer got there first, or the row is gone). An `Err` rewrote nothing.
    async fn rewrite(&self, rows: &[(i64, CredentialWrite)]) -> Result<Vec<bool>, RepositoryError>;
    /// Number of rows per key id.
    async fn count_by_key_id(&self) -> Result<Vec<KeyIdCount>, RepositoryError>;
}

/// What setting the cut-over mode did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChange {
    /// The mode changed (and the change is audited).
    Changed,
    /// The database was already in that mode.
    Unchanged,
    /// Closing was refused, nothing changed: this many rows with a ciphertext have no tag.
    RefusedUnbound(u64),
}

/// Storage of the cut-over mode (one value for the whole database).
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait CutoverRepository: Send + Sync {
    /// The stored mode. A database without one (the row deleted by hand) reads as closed.
    async fn state(&self) -> Result<CutoverState, RepositoryError>;
    /// Sets the mode; every change is recorded in the audit trail (target
    /// [`crate::cutover::DATABASE_WIDE`]) in the same transaction, whoever makes it. Closing
    /// checks, in that transaction and after taking the mode's lock, that no row holding a
    /// ciphertext lacks a tag, and is refused otherwise.
    async fn set_mode(&self, mode: CutoverMode) -> Result<ModeChange, RepositoryError>;
    /// Rows holding a ciphertext without a binding tag.
    async fn unbound_rows(&self) -> Result<u64, RepositoryError>;
}

/// Storage of user profiles.
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Creates a user; [`RepositoryError::Duplicate`] when the e-mail (or the id) is taken.
    async fn create(
        &self,
        user: &NewUser,
        password_hash: Option<SecretString>,
    ) -> Result<User, RepositoryError>;
    /// A user that is not soft-deleted; [`RepositoryError::NotFound`] otherwise.
    async fn get(&self, id: UserId) -> Result<User, RepositoryError>;
    /// The user with this e-mail, if not soft-deleted.
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepositoryError>;
    /// The stored password hash, if any.
    async fn password_hash(&self, id: UserId) -> Result<Option<SecretString>, RepositoryError>;
    /// Replaces the password hash.
    async fn set_password_hash(
        &self,
        id: UserId,
        hash: SecretString,
    ) -> Result<(), RepositoryError>;
    /// One page of users that are not soft-deleted, by id, and their total count.
    async fn list(&self, page: Page) -> Result<(Vec<User>, u64), RepositoryError>;
    /// Applies a patch; [`RepositoryError::Duplicate`] when the new e-mail is taken.
    async fn update(&self, id: UserId, patch: &UserPatch) -> Result<User, RepositoryError>;
    /// Marks the user deleted and deletes its broker credentials, in one transaction, recording
    /// `event` (with each credential's broker) for every credential deleted; answers how many
    /// were. [`RepositoryError::NotFound`] (and nothing changed) when already deleted or
    /// unknown.
    async fn soft_delete(&self, id: UserId, event: &AuditEvent) -> Result<u64, RepositoryError>;
}

/// Storage of sign-in sessions (see [`crate::session`]), shared by every replica.
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Stores a new session (a sign-in).
    async fn create(&self, session: &NewSession) -> Result<(), RepositoryError>;
    /// The session with this id, whatever its state.
    async fn get(&self, id: &str) -> Result<Option<Session>, RepositoryError>;
    /// In one transaction: marks `old` replaced at `at` if it is neither replaced nor revoked
    /// nor expired (one conditional `UPDATE`, its affected rows checked) and then stores `next`.
    /// `false` (and nothing written) when `old` was not in that state: of two concurrent
    /// rotations of one session, only one succeeds.
    async fn rotate(
        &self,
        old: &str,
        next: &NewSession,
        at: DateTime<Utc>,
    ) -> Result<bool, RepositoryError>;
    /// Revokes, at `at`, every session of `family` not yet revoked; answers how many.
    async fn revoke_family(&self, family: &str, at: DateTime<Utc>) -> Result<u64, RepositoryError>;
    /// Revokes, at `at`, every session of `user` not yet revoked; answers how many.
    async fn revoke_user(&self, user: UserId, at: DateTime<Utc>) -> Result<u64, RepositoryError>;
}

/// Rate-limit buckets shared by every replica (sign-in throttling).
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait ThrottleRepository: Send + Sync {
    /// Counts one attempt at `now` in `bucket`, which allows `per_minute` attempts in a burst and
    /// then one every `60 / per_minute` seconds (GCRA). `None`: admitted and counted;
    /// `Some(wait)`: refused, nothing counted, the next attempt is admitted after `wait`. Of
    /// concurrent attempts on the last slot, exactly one is admitted.
    async fn admit(
        &self,
        bucket: &str,
        per_minute: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<std::time::Duration>, RepositoryError>;
}

/// Storage of user preferences (a JSON object).
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait PreferenceRepository: Send + Sync {
    /// The user's preferences, `{}` when none are stored.
    async fn get(&self, user: UserId) -> Result<Value, RepositoryError>;
    /// Replaces the user's preferences.
    async fn put(&self, user: UserId, preferences: &Value) -> Result<Value, RepositoryError>;
}

/// Storage of onboarding progress.
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait OnboardingRepository: Send + Sync {
    /// The stored progress, if the user has started.
    async fn get(&self, user: UserId) -> Result<Option<OnboardingProgress>, RepositoryError>;
    /// Stores the progress.
    async fn save(
        &self,
        user: UserId,
        progress: &OnboardingProgress,
    ) -> Result<(), RepositoryError>;
}

/// Storage of per-user capability grants and revocations (the `local` entitlements provider).
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait CapabilityRepository: Send + Sync {
    /// Explicit grants (`true`) and revocations (`false`) of a user.
    async fn overrides(&self, user: UserId) -> Result<Vec<(Capability, bool)>, RepositoryError>;
    /// Grants (`true`) or revokes (`false`) a capability.
    async fn set(
        &self,
        user: UserId,
        capability: &Capability,
        granted: bool,
    ) -> Result<(), RepositoryError>;
}

/// Storage of credential audit events.
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait AuditRepository: Send + Sync {
    /// Records one event.
    async fn record(&self, event: &AuditEvent) -> Result<(), RepositoryError>;
    /// One page of the events about a user, newest first, and their total count.
    async fn list(
        &self,
        target: UserId,
        page: Page,
    ) -> Result<(Vec<AuditEvent>, u64), RepositoryError>;
}

/// The entitlements provider could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("entitlements unavailable: {0}")]
pub struct EntitlementsUnavailable(pub String);

/// Resolves the capabilities of a user.
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait EntitlementsProvider: Send + Sync {
    /// The capabilities `user` holds now.
    async fn capabilities(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable>;
    /// Forgets what is cached about `user` (after a grant, a revocation or a deletion in this
    /// process); providers that cache nothing ignore it.
    fn forget(&self, _user: UserId) {}
}

/// Hashing failed (the system random generator failed). Carries no detail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("password hashing failed")]
pub struct HashingFailed;

/// Hashes and checks passwords. The work is deliberately slow (tens of milliseconds):
/// adapters do it away from the thread that serves requests.
#[cfg_attr(any(test, feature = "mock"), automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A new salted hash of `password`.
    async fn hash(&self, password: &SecretString) -> Result<SecretString, HashingFailed>;
    /// Whether `password` matches `stored`. With no stored hash (unknown account, account
    /// without a password) the same work is done and the answer is `false`, so that the time
    /// taken does not tell whether the account exists.
    async fn verify(&self, password: &SecretString, stored: Option<SecretString>) -> bool;
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

/// Outcome of a broker connection test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeStatus {
    /// The broker accepted the credentials.
    Ok,
    /// The broker rejected them.
    Unauthorized,
    /// The broker could not be reached, or has no automated check.
    NetworkError,
    /// A key or secret is missing: no call was made.
    MissingCredentials,
}

impl ProbeStatus {
    /// Stable name (`ok`, `unauthorized`, `network_error`, `missing_credentials`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unauthorized => "unauthorized",
            Self::NetworkError => "network_error",
            Self::MissingCredentials => "missing_credentials",
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
#[async_trait]
pub trait BrokerProbe: Send + Sync {
    /// Checks the credentials against the broker.
    async fn probe(
        &self,
        broker: &BrokerId,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
    ) -> ProbeStatus;
}
