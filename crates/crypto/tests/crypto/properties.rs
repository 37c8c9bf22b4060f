//! Property tests. Case counts are modest so that CI stays quick on two cores.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use proptest::prelude::*;
use proptest::sample::Index;
use secrecy::ExposeSecret;
use user_service_crypto::KeyRing;
use user_service_domain::ports::CredentialCipher;
use user_service_domain::{BindingCheck, BrokerId, CipherError, PlainSecret};

use crate::support::{bound, ring, row, KEY_A};

fn ring_of(bytes: [u8; 32]) -> KeyRing {
    ring(&URL_SAFE.encode(bytes))
}

/// Plaintexts of 0 to 8 KiB: ASCII (up to 8192 bytes) or any characters (up to 2048).
fn plaintexts() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex("[ -~]{0,8192}").unwrap(),
        proptest::collection::vec(any::<char>(), 0..=2048)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
    ]
}

fn sealed_bytes(ring: &KeyRing, plaintext: &str) -> Vec<u8> {
    let sealed = ring.encrypt(&PlainSecret::new(plaintext)).unwrap();
    URL_SAFE.decode(sealed.token).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn encrypt_then_decrypt_returns_the_plaintext(key in any::<[u8; 32]>(), plaintext in plaintexts()) {
        let ring = ring_of(key);
        let sealed = ring.encrypt(&PlainSecret::new(plaintext.clone())).unwrap();
        prop_assert!(sealed.token.starts_with("gAAAAA"));
        prop_assert_eq!(&sealed.key_id, &ring.primary_key_id());
        let opened = ring.decrypt(&sealed.token).unwrap();
        prop_assert_eq!(opened.value.expose_secret(), plaintext.as_str());
        prop_assert_eq!(opened.key_id, sealed.key_id);
    }

    #[test]
    fn any_flipped_byte_of_the_token_fails(
        plaintext in "[ -~]{0,300}",
        position in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let ring = ring(KEY_A);
        let mut bytes = sealed_bytes(&ring, &plaintext);
        let at = position.index(bytes.len());
        bytes[at] ^= mask;
        let tampered = URL_SAFE.encode(&bytes);
        prop_assert_eq!(ring.decrypt(&tampered).unwrap_err(), CipherError::Undecryptable);
    }

    #[test]
    fn any_truncation_of_the_token_fails(plaintext in "[ -~]{0,300}", length in any::<Index>()) {
        let ring = ring(KEY_A);
        let bytes = sealed_bytes(&ring, &plaintext);
        // Truncate the decoded token ...
        let cut = length.index(bytes.len());
        let truncated = URL_SAFE.encode(&bytes[..cut]);
        prop_assert_eq!(ring.decrypt(&truncated).unwrap_err(), CipherError::Undecryptable);
        // ... or its text, short of its `=` padding (which `fernet` does not require).
        let token = URL_SAFE.encode(&bytes);
        let unpadded = token.trim_end_matches('=').len();
        let cut = length.index(unpadded);
        prop_assert_eq!(ring.decrypt(&token[..cut]).unwrap_err(), CipherError::Undecryptable);
    }

    #[test]
    fn another_key_fails(
        key in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        plaintext in "[ -~]{0,300}",
    ) {
        prop_assume!(key != other);
        let sealed = ring_of(key).encrypt(&PlainSecret::new(plaintext)).unwrap();
        prop_assert_eq!(ring_of(other).decrypt(&sealed.token).unwrap_err(), CipherError::Undecryptable);
    }

    #[test]
    fn decrypt_of_arbitrary_text_fails_without_panicking(text in any::<String>()) {
        prop_assert!(ring(KEY_A).decrypt(&text).is_err());
    }

    #[test]
    fn decrypt_of_token_like_text_fails_without_panicking(text in "gAAAAA[A-Za-z0-9_=-]{0,300}") {
        prop_assert!(ring(KEY_A).decrypt(&text).is_err());
    }

    #[test]
    fn parse_of_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = text.parse::<KeyRing>();
    }

    #[test]
    fn parse_of_key_like_text_never_panics_and_accepts_only_44_character_keys(
        text in "[A-Za-z0-9+/_=, \t\n-]{0,140}",
    ) {
        if let Ok(ring) = text.parse::<KeyRing>() {
            let parts: Vec<&str> = text.split(',').map(str::trim).collect();
            prop_assert_eq!(ring.key_count(), parts.len());
            for part in parts {
                prop_assert!(part.len() == 44 && part.ends_with('=') && !part[..43].contains('='));
            }
        }
    }

    #[test]
    fn every_spelling_python_accepts_of_a_ring_parses_to_the_same_keys(
        keys in proptest::collection::btree_set(any::<[u8; 32]>(), 1..=4),
        spellings in proptest::collection::vec(
            (any::<bool>(), "[ \t\r\n\x0b\x0c]{0,3}", "[ \t\r\n\x0b\x0c]{0,3}"),
            4,
        ),
    ) {
        let canonical: Vec<String> = keys.iter().map(|key| URL_SAFE.encode(key)).collect();
        let spelled: Vec<String> = canonical
            .iter()
            .zip(&spellings)
            .map(|(key, (standard, before, after))| {
                let key = if *standard { key.replace('-', "+").replace('_', "/") } else { key.clone() };
                format!("{before}{key}{after}")
            })
            .collect();
        let expected = ring(&canonical.join(","));
        let parsed = ring(&spelled.join(","));
        prop_assert_eq!(parsed.key_ids(), expected.key_ids());
        let sealed = parsed.encrypt(&PlainSecret::new("x")).unwrap();
        prop_assert_eq!(expected.decrypt(&sealed.token).unwrap().key_id, expected.primary_key_id());
    }

    #[test]
    fn changing_any_bound_field_changes_the_tag(
        user_id in any::<i64>(),
        broker in "[a-z0-9-]{1,20}",
        version in any::<i64>(),
        api_key in proptest::option::of("[A-Za-z0-9_=-]{0,40}"),
        api_secret in proptest::option::of("[A-Za-z0-9_=-]{0,40}"),
        field in 0usize..6,
        new_user_id in any::<i64>(),
        new_broker in "[a-z0-9-]{1,20}",
        new_version in any::<i64>(),
        new_token in proptest::option::of("[A-Za-z0-9_=-]{0,40}"),
    ) {
        let ring = ring(KEY_A);
        let original = bound(&ring, row(user_id, &broker, version, api_key.as_deref(), api_secret.as_deref()));
        let mut changed = original.clone();
        match field {
            0 => changed.user_id = user_service_domain::UserId(new_user_id),
            1 => changed.broker = BrokerId::parse(&new_broker).unwrap(),
            2 => changed.version = new_version,
            3 => changed.api_key_encrypted = new_token,
            4 => changed.api_secret_encrypted = new_token,
            _ => std::mem::swap(&mut changed.api_key_encrypted, &mut changed.api_secret_encrypted),
        }
        prop_assume!(changed != original);
        prop_assert_ne!(ring.bind(&changed.binding_input()), ring.bind(&original.binding_input()));
        prop_assert_eq!(ring.verify_binding(&changed), BindingCheck::Mismatch);
        prop_assert_eq!(ring.verify_binding(&original), BindingCheck::Bound);
    }

    #[test]
    fn a_binding_never_verifies_for_another_user(
        user_a in any::<i64>(),
        user_b in any::<i64>(),
        token in "gAAAAA[A-Za-z0-9_-]{0,80}",
    ) {
        prop_assume!(user_a != user_b);
        let ring = ring(KEY_A);
        let a = bound(&ring, row(user_a, "binance", 1, Some(&token), None));
        let mut b = row(user_b, "binance", 1, Some(&token), None);
        b.binding = a.binding.clone();
        b.key_id = a.key_id.clone();
        prop_assert_eq!(ring.verify_binding(&b), BindingCheck::Mismatch);
    }
}
