//! Token timestamps: stored tokens have no TTL and, as with Python's `Fernet.decrypt(token)`,
//! their timestamp is not compared with the clock (see the crate README, "Timestamps").

use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use user_service_domain::ports::CredentialCipher;

use crate::support::{ring, KEY_A, KEY_B};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn token_from_the_far_future_decrypts_as_in_python() {
    let year_3000 = 32_503_680_000;
    let fernet = fernet::Fernet::new(KEY_A).unwrap();
    let token = fernet.encrypt_at_time(b"from the future", year_3000);

    // `fernet`'s own `decrypt` refuses it (more than 60 s of clock skew) ...
    assert!(fernet.decrypt(&token).is_err());
    // ... the ring does not.
    let opened = ring(KEY_A).decrypt(&token).unwrap();
    assert_eq!(opened.value.expose_secret(), "from the future");
}

#[test]
fn token_a_little_ahead_of_the_clock_decrypts() {
    let fernet = fernet::Fernet::new(KEY_A).unwrap();
    let token = fernet.encrypt_at_time(b"skewed", now() + 3_600);
    let opened = ring(KEY_A).decrypt(&token).unwrap();
    assert_eq!(opened.value.expose_secret(), "skewed");
}

#[test]
fn future_token_under_an_older_key_decrypts_through_the_ring() {
    let fernet = fernet::Fernet::new(KEY_B).unwrap();
    let token = fernet.encrypt_at_time(b"old key, future time", u64::MAX);
    let ring = ring(&format!("{KEY_A},{KEY_B}"));
    let opened = ring.decrypt(&token).unwrap();
    assert_eq!(opened.value.expose_secret(), "old key, future time");
    assert_eq!(opened.key_id, ring.key_ids()[1]);
}

#[test]
fn very_old_token_decrypts_without_ttl() {
    let token = fernet::Fernet::new(KEY_A)
        .unwrap()
        .encrypt_at_time(b"1970", 0);
    let opened = ring(KEY_A).decrypt(&token).unwrap();
    assert_eq!(opened.value.expose_secret(), "1970");
}

#[test]
fn new_tokens_carry_the_current_time() {
    use base64::engine::general_purpose::URL_SAFE;
    use base64::Engine;
    use user_service_domain::PlainSecret;

    let before = now();
    let sealed = ring(KEY_A).encrypt(&PlainSecret::new("now")).unwrap();
    let after = now();
    let bytes = URL_SAFE.decode(&sealed.token).unwrap();
    let timestamp = u64::from_be_bytes(bytes[1..9].try_into().unwrap());
    assert!((before..=after).contains(&timestamp), "{timestamp}");
}
