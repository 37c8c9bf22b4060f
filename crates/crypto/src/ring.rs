//! The key ring: Fernet encryption under the primary key, decryption under any key, key ids and
//! row binding.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use user_service_domain::ports::{CredentialCipher, Opened, Sealed};
use user_service_domain::{
    BindingCheck, BindingInput, CipherError, KeyId, PlainSecret, StoredCredential,
};
use zeroize::Zeroizing;

use crate::binding;
use crate::error::KeyRingError;
use crate::key::{is_surrounding_space, RawKey};

/// The "current time" given to `fernet` when decrypting, which disables its clock-skew check.
///
/// Python's `Fernet.decrypt(token)` without a TTL ignores the token's timestamp. `fernet` 0.2
/// refuses a token whose timestamp is more than 60 s after the current time even without a TTL
/// (`current_time + 60 < timestamp`). With `ttl = None` the current time serves no other
/// purpose, so we pass the largest value for which `current_time + 60` cannot overflow: no
/// timestamp is then "in the future". The test `token_with_the_largest_timestamp_decrypts`
/// catches a `fernet` release that changes this arithmetic.
const NO_CLOCK_CHECK: u64 = u64::MAX - 60;

/// One configured key and what is derived from it at parse time.
struct RingKey {
    id: KeyId,
    fernet: fernet::Fernet,
    binding_key: Zeroizing<[u8; 32]>,
}

impl RingKey {
    fn parse(text: &str, position: usize) -> Result<Self, KeyRingError> {
        let invalid = |reason| KeyRingError::InvalidKey { position, reason };
        let raw = RawKey::parse(text).map_err(invalid)?;
        Ok(Self {
            id: raw.key_id(),
            fernet: raw.fernet().map_err(invalid)?,
            binding_key: raw.binding_key(),
        })
    }
}

/// A non-empty ring of Fernet keys, primary first: encrypts with the primary key, decrypts with
/// any, and computes and checks row binding tags (docs/contract.md#encryption).
///
/// `Debug` shows the key ids only.
pub struct KeyRing {
    primary: RingKey,
    older: Vec<RingKey>,
    /// Unique to this ring in this process ([`CredentialCipher::generation`]).
    generation: u64,
}

/// The generation of the next ring parsed.
static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl KeyRing {
    /// Parses one key or a comma-separated ring of keys, the first being primary.
    ///
    /// Each key is judged as Python's `Fernet(key)` judges it (url-safe or standard base64,
    /// surrounding whitespace allowed, `=` padding required, 32 bytes); see the crate
    /// documentation for the few inputs Python accepts and we refuse.
    pub fn parse(ring: &SecretString) -> Result<Self, KeyRingError> {
        Self::parse_str(ring.expose_secret())
    }

    fn parse_str(ring: &str) -> Result<Self, KeyRingError> {
        let parts: Vec<&str> = ring.split(',').collect();
        if parts
            .iter()
            .all(|part| part.trim_matches(is_surrounding_space).is_empty())
        {
            return Err(KeyRingError::Empty);
        }
        let mut keys: Vec<RingKey> = Vec::with_capacity(parts.len());
        for (index, part) in parts.into_iter().enumerate() {
            let position = index + 1;
            let key = RingKey::parse(part, position)?;
            // Equal ids mean equal keys (a 64-bit HMAC collision is not a practical concern).
            if let Some(first) = keys.iter().position(|known| known.id == key.id) {
                return Err(KeyRingError::DuplicateKey {
                    position,
                    first: first + 1,
                });
            }
            keys.push(key);
        }
        let mut keys = keys.into_iter();
        let primary = keys.next().ok_or(KeyRingError::Empty)?;
        Ok(Self {
            primary,
            older: keys.collect(),
            generation: NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// A new random key, in the format of Python's `Fernet.generate_key()`: 44 characters of
    /// url-safe base64 with `=` padding.
    pub fn generate_key() -> SecretString {
        SecretString::from(fernet::Fernet::generate_key())
    }

    /// Id of the primary key, which encrypts and binds every new value.
    pub fn primary_key_id(&self) -> KeyId {
        self.primary.id.clone()
    }

    /// Ids of every key, primary first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys().map(|key| key.id.clone()).collect()
    }

    /// Whether a key with this id is configured.
    pub fn contains(&self, id: &KeyId) -> bool {
        self.find(id).is_some()
    }

    /// Number of keys in the ring (at least one).
    pub fn key_count(&self) -> usize {
        1 + self.older.len()
    }

    fn keys(&self) -> impl Iterator<Item = &RingKey> {
        std::iter::once(&self.primary).chain(&self.older)
    }

    fn find(&self, id: &KeyId) -> Option<&RingKey> {
        self.keys().find(|key| &key.id == id)
    }
}

impl FromStr for KeyRing {
    type Err = KeyRingError;

    /// Same as [`KeyRing::parse`], for keys that are not held in a `SecretString` (tests).
    fn from_str(ring: &str) -> Result<Self, Self::Err> {
        Self::parse_str(ring)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl CredentialCipher for KeyRing {
    fn primary_key_id(&self) -> KeyId {
        KeyRing::primary_key_id(self)
    }

    fn key_ids(&self) -> Vec<KeyId> {
        KeyRing::key_ids(self)
    }

    fn encrypt(&self, plaintext: &PlainSecret) -> Result<Sealed, CipherError> {
        // `fernet::Fernet::encrypt` panics when the clock is before 1970; read it ourselves.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let token = self
            .primary
            .fernet
            .encrypt_at_time(plaintext.expose_secret().as_bytes(), now);
        Ok(Sealed {
            token,
            key_id: self.primary.id.clone(),
        })
    }

    fn decrypt(&self, token: &str) -> Result<Opened, CipherError> {
        for key in self.keys() {
            let Ok(bytes) = key.fernet.decrypt_at_time(token, None, NO_CLOCK_CHECK) else {
                continue;
            };
            // The HMAC matched, so this is the right key: no other key is tried.
            let bytes = Zeroizing::new(bytes);
            let text = std::str::from_utf8(&bytes).map_err(|_| CipherError::NotUtf8)?;
            // `to_owned` allocates exactly the text's length, so turning it into the boxed
            // secret does not reallocate and leave an unzeroized copy behind.
            return Ok(Opened {
                value: PlainSecret::new(text.to_owned()),
                key_id: key.id.clone(),
            });
        }
        Err(CipherError::Undecryptable)
    }

    fn bind<'a>(&self, input: &BindingInput<'a>) -> String {
        binding::tag(&self.primary.binding_key, input)
    }

    fn verify_binding(&self, row: &StoredCredential) -> BindingCheck {
        let Some(tag) = row.binding.as_deref() else {
            return BindingCheck::Unbound;
        };
        let Some(mac) = binding::decode(tag) else {
            return BindingCheck::Mismatch;
        };
        let input = row.binding_input();
        let matches = match &row.key_id {
            Some(id) => self
                .find(id)
                .is_some_and(|key| binding::verify(&key.binding_key, &input, &mac)),
            None => self
                .keys()
                .any(|key| binding::verify(&key.binding_key, &input, &mac)),
        };
        if matches {
            BindingCheck::Bound
        } else {
            BindingCheck::Mismatch
        }
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const KEY_A: &str = "yMnKy8zNzs_Q0dLT1NXW19jZ2tvc3d7f4OHi4-Tl5uc=";
    const KEY_B: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";

    #[test]
    fn every_ring_parsed_has_a_generation_of_its_own() {
        let first: KeyRing = KEY_A.parse().unwrap();
        let same_keys: KeyRing = KEY_A.parse().unwrap();
        let rotated: KeyRing = format!("{KEY_B},{KEY_A}").parse().unwrap();
        let generations = [&first, &same_keys, &rotated].map(|r| r.generation().unwrap());
        assert_ne!(generations[0], generations[1]);
        assert_ne!(generations[1], generations[2]);
        assert_ne!(generations[0], generations[2]);
    }

    #[test]
    fn first_key_of_the_ring_is_primary() {
        let ring: KeyRing = format!("{KEY_B}, {KEY_A}").parse().unwrap();
        let b: KeyRing = KEY_B.parse().unwrap();
        let a: KeyRing = KEY_A.parse().unwrap();
        assert_eq!(ring.primary_key_id(), b.primary_key_id());
        assert_eq!(ring.key_ids(), vec![b.primary_key_id(), a.primary_key_id()]);
        assert_eq!(ring.key_count(), 2);
        assert!(ring.contains(&a.primary_key_id()));
        assert!(!a.contains(&b.primary_key_id()));
    }

    #[test]
    fn empty_values_are_refused_as_empty() {
        for value in ["", " ", ",", " , ,\n", ",,,"] {
            assert_eq!(
                value.parse::<KeyRing>().unwrap_err(),
                KeyRingError::Empty,
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_blank_part_names_its_position() {
        for (value, position) in [
            (format!("{KEY_A},"), 2),
            (format!(",{KEY_A}"), 1),
            (format!("{KEY_A}, ,{KEY_B}"), 2),
        ] {
            assert_eq!(
                value.parse::<KeyRing>().unwrap_err(),
                KeyRingError::InvalidKey {
                    position,
                    reason: crate::KeyProblem::Blank
                },
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_repeated_key_is_refused() {
        let value = format!("{KEY_A},{KEY_B}, {}", KEY_A.replace('_', "/"));
        assert_eq!(
            value.parse::<KeyRing>().unwrap_err(),
            KeyRingError::DuplicateKey {
                position: 3,
                first: 1
            }
        );
    }

    #[test]
    fn parse_takes_a_secret_string() {
        let ring = KeyRing::parse(&SecretString::from(format!("{KEY_A}\n"))).unwrap();
        assert_eq!(ring.key_count(), 1);
    }

    #[test]
    fn token_with_the_largest_timestamp_decrypts() {
        let ring: KeyRing = KEY_A.parse().unwrap();
        for timestamp in [0, u64::MAX - 61, u64::MAX - 60, u64::MAX - 1, u64::MAX] {
            let token = ring.primary.fernet.encrypt_at_time(b"secret", timestamp);
            let opened = ring.decrypt(&token).unwrap();
            assert_eq!(opened.value.expose_secret(), "secret", "{timestamp}");
        }
    }

    #[test]
    fn authentic_non_utf8_plaintext_is_reported_as_such() {
        let ring: KeyRing = format!("{KEY_A},{KEY_B}").parse().unwrap();
        let older: KeyRing = KEY_B.parse().unwrap();
        let token = older.primary.fernet.encrypt(b"\xff\xfe not text");
        assert_eq!(ring.decrypt(&token).unwrap_err(), CipherError::NotUtf8);
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let ring: KeyRing = format!("{KEY_A},{KEY_B}").parse().unwrap();
        let printed = format!("{ring:?}");
        assert_eq!(
            printed,
            format!(
                "KeyRing {{ key_ids: [KeyId({}), KeyId({})] }}",
                ring.key_ids()[0],
                ring.key_ids()[1]
            )
        );
        for key in [KEY_A, KEY_B] {
            assert!(!printed.contains(&key[..8]), "{printed}");
        }
    }
}
