//! The published Fernet spec vectors (`testdata/fernet-spec/`): the underlying `fernet` crate is
//! spec-correct, with the spec's TTL and clock, and the key ring reads the same tokens.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use chrono::DateTime;
use secrecy::ExposeSecret;
use serde::Deserialize;
use user_service_domain::ports::CredentialCipher;
use user_service_domain::CipherError;

use crate::support::{load_json, ring};

#[derive(Deserialize)]
struct Generate {
    token: String,
    now: String,
    iv: Vec<u8>,
    src: String,
    secret: String,
}

#[derive(Deserialize)]
struct Verify {
    token: String,
    now: String,
    ttl_sec: u64,
    src: String,
    secret: String,
}

#[derive(Deserialize)]
struct Invalid {
    desc: String,
    token: String,
    now: String,
    ttl_sec: u64,
    secret: String,
}

fn unix(rfc3339: &str) -> u64 {
    let seconds = DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp();
    u64::try_from(seconds).unwrap()
}

fn fernet(secret: &str) -> fernet::Fernet {
    fernet::Fernet::new(secret).unwrap()
}

/// `fernet` has no public API to encrypt with a chosen IV, so the generated token is checked
/// part by part: version byte, timestamp `now` and the given IV, then a ciphertext and HMAC that
/// `fernet` authenticates and decrypts to `src`. AES-CBC under a fixed key and IV is a bijection
/// and PKCS#7 padding is unique, so a ciphertext that decrypts to `src` is the one encrypting
/// `src`, and the HMAC is a function of the rest: the token is exactly the one the spec's
/// generator makes.
#[test]
fn generate_vectors_are_reproduced_part_by_part() {
    let vectors: Vec<Generate> = load_json("fernet-spec/generate.json");
    assert!(!vectors.is_empty());
    for v in vectors {
        let now = unix(&v.now);
        let bytes = URL_SAFE.decode(&v.token).unwrap();
        assert_eq!(bytes[0], 0x80, "version");
        assert_eq!(bytes[1..9], now.to_be_bytes(), "timestamp");
        assert_eq!(bytes[9..25], v.iv[..], "iv");
        let f = fernet(&v.secret);
        assert_eq!(
            f.decrypt_at_time(&v.token, None, now).unwrap(),
            v.src.as_bytes()
        );

        // What `fernet` generates at the same time has the same layout and length.
        let ours = URL_SAFE
            .decode(f.encrypt_at_time(v.src.as_bytes(), now))
            .unwrap();
        assert_eq!(ours.len(), bytes.len());
        assert_eq!(ours[..9], bytes[..9]);

        // And the key ring reads the spec's token.
        let opened = ring(&v.secret).decrypt(&v.token).unwrap();
        assert_eq!(opened.value.expose_secret(), v.src);
    }
}

#[test]
fn verify_vectors_decrypt_within_their_ttl() {
    let vectors: Vec<Verify> = load_json("fernet-spec/verify.json");
    assert!(!vectors.is_empty());
    for v in vectors {
        let plaintext = fernet(&v.secret)
            .decrypt_at_time(&v.token, Some(v.ttl_sec), unix(&v.now))
            .unwrap();
        assert_eq!(plaintext, v.src.as_bytes());
        let opened = ring(&v.secret).decrypt(&v.token).unwrap();
        assert_eq!(opened.value.expose_secret(), v.src);
    }
}

#[test]
fn every_invalid_vector_fails_with_the_spec_ttl_and_clock() {
    let vectors: Vec<Invalid> = load_json("fernet-spec/invalid.json");
    assert_eq!(vectors.len(), 8);
    for v in vectors {
        let result = fernet(&v.secret).decrypt_at_time(&v.token, Some(v.ttl_sec), unix(&v.now));
        assert!(result.is_err(), "{} was accepted", v.desc);
    }
}

/// Stored tokens have no TTL (docs/contract.md#encryption) and, as in Python, no clock check: the two vectors that
/// are invalid only because of the time open through the ring (to the empty string, as Python's
/// `Fernet.decrypt` without TTL also answers); every other one fails.
#[test]
fn invalid_vectors_fail_through_the_ring_unless_invalid_only_by_time() {
    let time_only = ["far-future TS (unacceptable clock skew)", "expired TTL"];
    let vectors: Vec<Invalid> = load_json("fernet-spec/invalid.json");
    for v in vectors {
        let result = ring(&v.secret).decrypt(&v.token);
        if time_only.contains(&v.desc.as_str()) {
            let opened = result.unwrap_or_else(|e| panic!("{}: {e}", v.desc));
            assert_eq!(opened.value.expose_secret(), "", "{}", v.desc);
        } else {
            assert_eq!(
                result.unwrap_err(),
                CipherError::Undecryptable,
                "{}",
                v.desc
            );
        }
    }
}
