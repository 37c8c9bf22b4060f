//! Stored broker credentials, their public status and masking.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::broker::BrokerId;
use crate::limits::{MASK_CHAR, MASK_CLEAR_SUFFIX};
use crate::user::UserId;

/// A short, non-secret fingerprint naming one key of the key ring (docs/contract.md#encryption).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Wraps a fingerprint computed by the cipher adapter.
    pub fn new(fingerprint: impl Into<String>) -> Self {
        Self(fingerprint.into())
    }

    /// The fingerprint text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// A credential row as stored: ciphertext only, never plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// Row id.
    pub id: i64,
    /// Owner.
    pub user_id: UserId,
    /// Normalised broker.
    pub broker: BrokerId,
    /// Optional human label.
    pub label: Option<String>,
    /// Fernet token of the API key, if any.
    pub api_key_encrypted: Option<String>,
    /// Fernet token of the API secret, if any.
    pub api_secret_encrypted: Option<String>,
    /// Key that encrypted the row; `None` for rows written by the Python service.
    pub key_id: Option<KeyId>,
    /// Integrity tag binding the ciphertext to its row (docs/security.md); `None` for legacy rows.
    pub binding: Option<String>,
    /// Incremented on every write; the compare-and-set guard.
    pub version: i64,
    /// Outcome of the last connection test.
    pub last_test_status: Option<String>,
    /// When the last connection test ran.
    pub last_tested_at: Option<DateTime<Utc>>,
    /// The owner's consent that the platform signs requests with this key (docs/signing.md);
    /// covered by the binding tag when on.
    pub trading_enabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last write time.
    pub updated_at: DateTime<Utc>,
}

impl StoredCredential {
    /// What the binding tag of this row must cover.
    pub fn binding_input(&self) -> BindingInput<'_> {
        BindingInput {
            user_id: self.user_id,
            broker: &self.broker,
            version: self.version,
            api_key_encrypted: self.api_key_encrypted.as_deref(),
            api_secret_encrypted: self.api_secret_encrypted.as_deref(),
            trading_enabled: self.trading_enabled,
        }
    }
}

/// The fields a row's binding tag covers: a ciphertext copied into another row no longer matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingInput<'a> {
    /// Owner of the row.
    pub user_id: UserId,
    /// Broker of the row.
    pub broker: &'a BrokerId,
    /// Version the row has once written.
    pub version: i64,
    /// Token of the API key.
    pub api_key_encrypted: Option<&'a str>,
    /// Token of the API secret.
    pub api_secret_encrypted: Option<&'a str>,
    /// The owner's trading consent. Covered only when on, so that every tag written before the
    /// consent existed still verifies, and a database writer who turns it on breaks the tag.
    pub trading_enabled: bool,
}

/// Whether a stored credential could be read.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialHealth {
    /// Every stored half decrypted and the binding matched.
    Ok,
    /// A half failed to decrypt or the binding did not match (docs/contract.md#key-errors).
    Undecryptable,
    /// Stored, but the service has no encryption key right now: nothing could be decrypted or
    /// checked (the masks are absent). Only in the body of the 503 of a key outage.
    KeyUnavailable,
}

/// What the API shows of a credential: presence, masks and metadata, never plaintext.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialStatus {
    /// Normalised broker.
    pub broker: String,
    /// Optional label.
    pub label: Option<String>,
    /// Whether an API key is stored.
    pub has_api_key: bool,
    /// Whether an API secret is stored.
    pub has_api_secret: bool,
    /// Masked API key; `None` when absent or undecryptable.
    pub api_key_masked: Option<String>,
    /// Masked API secret; `None` when absent or undecryptable.
    pub api_secret_masked: Option<String>,
    /// Last write time.
    pub updated_at: DateTime<Utc>,
    /// Outcome of the last connection test.
    pub last_test_status: Option<String>,
    /// When the last connection test ran.
    pub last_tested_at: Option<DateTime<Utc>>,
    /// Whether the owner allows the platform to trade with this key (off by default, and off
    /// again whenever the key or the secret changes).
    #[serde(default)]
    pub trading_enabled: bool,
    /// `ok`; `undecryptable` when the stored value cannot be read; `key_unavailable` during a
    /// key outage.
    pub status: CredentialHealth,
}

/// Masks `value` as docs/contract.md#masking says: every character but the last four becomes `•`; values of
/// four characters or fewer become all bullets. Counts Unicode scalar values.
///
/// ```
/// use user_service_domain::mask;
/// assert_eq!(mask("abcd1234efgh"), "••••••••efgh");
/// assert_eq!(mask("xyz"), "•••");
/// ```
pub fn mask(value: &str) -> String {
    let count = value.chars().count();
    if count <= MASK_CLEAR_SUFFIX {
        return MASK_CHAR.to_string().repeat(count);
    }
    let hidden = count - MASK_CLEAR_SUFFIX;
    let mut masked = String::with_capacity(hidden * MASK_CHAR.len_utf8() + MASK_CLEAR_SUFFIX * 4);
    masked.extend(std::iter::repeat_n(MASK_CHAR, hidden));
    masked.extend(value.chars().skip(hidden));
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_the_last_four_characters() {
        assert_eq!(mask("abcd1234efgh"), "••••••••efgh");
        assert_eq!(mask("abcde"), "•bcde");
    }

    #[test]
    fn short_values_become_all_bullets() {
        assert_eq!(mask("xyz"), "•••");
        assert_eq!(mask("abcd"), "••••");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn masking_counts_unicode_scalar_values() {
        assert_eq!(mask("ééééçàüö"), "••••çàüö");
        assert_eq!(mask("日本語"), "•••");
    }
}
