//! Fixtures shared by the domain's unit tests and, with the `mock` feature, by other crates'
//! tests and benchmarks: update entries and stored rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use secrecy::SecretString;

use crate::{BrokerId, CredentialUpdate, KeyId, SecretInput, StoredCredential, UserId};

/// An update entry; `None` means the field is absent.
pub fn entry(broker: &str, api_key: Option<&str>, api_secret: Option<&str>) -> CredentialUpdate {
    let input = |field, value: Option<&str>| {
        SecretInput::from_field(field, value.map(|v| Some(SecretString::from(v.to_owned()))))
            .unwrap()
    };
    CredentialUpdate {
        broker: BrokerId::parse(broker).unwrap(),
        api_key: input("api_key", api_key),
        api_secret: input("api_secret", api_secret),
        trading_enabled: None,
    }
}

/// A stored row of user 1 (id 10, key id `primary`, tag `tag`, no test result, trading off)
/// with placeholder tokens for the halves that are present; tests change the fields they need.
pub fn stored_row(broker: &str, has_key: bool, has_secret: bool, version: i64) -> StoredCredential {
    let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    StoredCredential {
        id: 10,
        user_id: UserId(1),
        broker: BrokerId::parse(broker).unwrap(),
        label: None,
        api_key_encrypted: has_key.then(|| format!("token-key-{broker}")),
        api_secret_encrypted: has_secret.then(|| format!("token-secret-{broker}")),
        key_id: Some(KeyId::new("primary")),
        binding: Some("tag".into()),
        version,
        last_test_status: None,
        last_tested_at: None,
        trading_enabled: false,
        created_at: at,
        updated_at: at,
    }
}
