//! No key material or plaintext in `Debug` output or error messages (docs/contract.md#encryption).

use secrecy::ExposeSecret;
use user_service_crypto::{KeyRing, KeyRingError};
use user_service_domain::ports::CredentialCipher;
use user_service_domain::PlainSecret;

use crate::support::{ring, KEY_A, KEY_B};

/// Fails when `printed` contains any 6-character window of `secret`.
fn assert_no_window_of(secret: &str, printed: &str) {
    let chars: Vec<char> = secret.trim().chars().collect();
    for window in chars.windows(6) {
        let window: String = window.iter().collect();
        assert!(
            !printed.contains(&window),
            "{printed:?} contains {window:?} of a secret"
        );
    }
}

#[test]
fn debug_of_a_ring_shows_key_ids_only() {
    let ring = ring(&format!("{KEY_A},{KEY_B}"));
    let printed = format!("{ring:?} {ring:#?}");
    for key in [KEY_A, KEY_B] {
        assert_no_window_of(key, &printed);
    }
    for id in ring.key_ids() {
        assert!(printed.contains(id.as_str()), "{printed}");
    }
}

#[test]
fn errors_about_malformed_keys_never_quote_them() {
    let almost = [
        KEY_A.trim_end_matches('=').to_owned(),
        format!("{KEY_A}="),
        format!("{KEY_A}AAAA"),
        KEY_A.replacen('x', "!", 1),
        KEY_A.replacen('x', "=", 1),
        format!("{}x=", &KEY_A[..KEY_A.len() - 1]),
        hex_of(KEY_A),
    ];
    for key in &almost {
        for value in [key.clone(), format!("{KEY_B},{key}")] {
            let error = value.parse::<KeyRing>().unwrap_err();
            assert!(
                matches!(error, KeyRingError::InvalidKey { .. }),
                "{error:?}"
            );
            let printed = format!("{error} {error:?}");
            assert_no_window_of(key, &printed);
            assert_no_window_of(KEY_B, &printed);
        }
    }
    let duplicate = format!("{KEY_A},{KEY_B},{KEY_A}")
        .parse::<KeyRing>()
        .unwrap_err();
    let printed = format!("{duplicate} {duplicate:?}");
    assert_no_window_of(KEY_A, &printed);
    assert_eq!(printed.matches("#3").count(), 1, "{printed}");
}

#[test]
fn opened_values_and_generated_keys_are_redacted() {
    let ring = ring(KEY_A);
    let plaintext = "sk_live_VERY_SECRET_VALUE";
    let sealed = ring.encrypt(&PlainSecret::new(plaintext)).unwrap();
    let opened = ring.decrypt(&sealed.token).unwrap();
    assert_eq!(opened.value.expose_secret(), plaintext);
    assert_no_window_of(plaintext, &format!("{opened:?} {sealed:?}"));

    let key = KeyRing::generate_key();
    assert_no_window_of(key.expose_secret(), &format!("{key:?}"));
}

#[test]
fn cipher_errors_never_quote_the_token_or_plaintext() {
    let ring = ring(KEY_A);
    let other = crate::support::ring(KEY_B);
    let token = other
        .encrypt(&PlainSecret::new("sk_live_VERY_SECRET_VALUE"))
        .unwrap()
        .token;
    let error = ring.decrypt(&token).unwrap_err();
    let printed = format!("{error} {error:?}");
    assert_no_window_of(&token, &printed);
    assert_no_window_of("sk_live_VERY_SECRET_VALUE", &printed);
}

fn hex_of(key: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE;
    use base64::Engine;
    URL_SAFE
        .decode(key)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
