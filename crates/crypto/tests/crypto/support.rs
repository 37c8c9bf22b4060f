//! Shared fixtures: test data files, keys and rows.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use user_service_crypto::KeyRing;
use user_service_domain::test_support::stored_row;
use user_service_domain::{KeyId, StoredCredential, UserId};

/// A fixed key (the one of the Fernet spec vectors).
pub const KEY_A: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
/// Another fixed key.
pub const KEY_B: &str = "yMnKy8zNzs_Q0dLT1NXW19jZ2tvc3d7f4OHi4-Tl5uc=";
/// A third fixed key.
pub const KEY_C: &str = "t4excE-aoy-3pkbPitYkA1IpxEKdxR-wo9OPw9x_iRA=";

/// A file of the workspace's `testdata/` directory.
pub fn testdata(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(relative)
}

/// Reads and deserialises a JSON file of `testdata/`.
pub fn load_json<T: DeserializeOwned>(relative: &str) -> T {
    let path = testdata(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("cannot parse {}: {error}", path.display()))
}

/// A ring parsed from plain text.
pub fn ring(keys: &str) -> KeyRing {
    keys.parse()
        .unwrap_or_else(|error| panic!("test key ring refused: {error}"))
}

/// A stored row with the given ownership and ciphertext, unbound and without key id.
pub fn row(
    user_id: i64,
    broker: &str,
    version: i64,
    api_key_encrypted: Option<&str>,
    api_secret_encrypted: Option<&str>,
) -> StoredCredential {
    StoredCredential {
        id: user_id.wrapping_mul(100).wrapping_add(version),
        user_id: UserId(user_id),
        api_key_encrypted: api_key_encrypted.map(str::to_owned),
        api_secret_encrypted: api_secret_encrypted.map(str::to_owned),
        key_id: None,
        binding: None,
        ..stored_row(broker, false, false, version)
    }
}

/// `row`, bound by `ring` as the domain does on write: key id of the primary key and its tag.
pub fn bound(ring: &KeyRing, mut row: StoredCredential) -> StoredCredential {
    use user_service_domain::ports::CredentialCipher;

    row.binding = Some(ring.bind(&row.binding_input()));
    row.key_id = Some(ring.primary_key_id());
    row
}

/// The id of the single key `key`.
pub fn key_id(key: &str) -> KeyId {
    ring(key).primary_key_id()
}
