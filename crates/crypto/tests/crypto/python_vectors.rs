//! Tokens and keys made by Python `cryptography` (`testdata/python-fernet/`).

use secrecy::ExposeSecret;
use serde::Deserialize;
use user_service_crypto::{KeyRing, KeyRingError};
use user_service_domain::ports::CredentialCipher;
use user_service_domain::CipherError;

use crate::support::{key_id, load_json, ring};

#[derive(Deserialize)]
struct Tokens {
    tokens: Vec<SingleKeyToken>,
    multifernet: Vec<RingToken>,
    wrong_key: Vec<WrongKeyToken>,
}

#[derive(Deserialize)]
struct SingleKeyToken {
    key: String,
    token: String,
    plaintext: String,
}

#[derive(Deserialize)]
struct RingToken {
    keys_primary_first: Vec<String>,
    token: String,
    plaintext: String,
}

#[derive(Deserialize)]
struct WrongKeyToken {
    key: String,
    token: String,
}

#[derive(Deserialize)]
struct KeyParsing {
    cases: Vec<KeyCase>,
}

#[derive(Deserialize)]
struct KeyCase {
    case: String,
    key: String,
    python_accepts: bool,
}

#[test]
fn every_python_token_decrypts_to_its_plaintext() {
    let data: Tokens = load_json("python-fernet/tokens.json");
    assert_eq!(data.tokens.len(), 7);
    for t in &data.tokens {
        let opened = ring(&t.key).decrypt(&t.token).unwrap();
        assert_eq!(opened.value.expose_secret(), t.plaintext);
        assert_eq!(opened.key_id, key_id(&t.key));
    }
}

#[test]
fn python_multifernet_token_decrypts_with_the_ring_in_the_given_order() {
    let data: Tokens = load_json("python-fernet/tokens.json");
    assert!(!data.multifernet.is_empty());
    for t in &data.multifernet {
        let keys = t.keys_primary_first.join(",");
        let ring = ring(&keys);
        assert_eq!(ring.primary_key_id(), key_id(&t.keys_primary_first[0]));
        let opened = ring.decrypt(&t.token).unwrap();
        assert_eq!(opened.value.expose_secret(), t.plaintext);
        // The token was made with the second key: the ring says so.
        assert_eq!(opened.key_id, key_id(&t.keys_primary_first[1]));
        assert_ne!(opened.key_id, ring.primary_key_id());
        assert_eq!(
            crate::support::ring(&t.keys_primary_first[0])
                .decrypt(&t.token)
                .unwrap_err(),
            CipherError::Undecryptable
        );
    }
}

#[test]
fn python_token_under_another_key_is_rejected() {
    let data: Tokens = load_json("python-fernet/tokens.json");
    assert!(!data.wrong_key.is_empty());
    for t in &data.wrong_key {
        assert_eq!(
            ring(&t.key).decrypt(&t.token).unwrap_err(),
            CipherError::Undecryptable
        );
    }
}

#[test]
fn key_parsing_gives_pythons_verdict_on_every_case() {
    let data: KeyParsing = load_json("python-fernet/key-parsing.json");
    assert_eq!(data.cases.len(), 11);
    for c in &data.cases {
        let ours = c.key.parse::<KeyRing>();
        assert_eq!(
            ours.is_ok(),
            c.python_accepts,
            "{}: {:?}",
            c.case,
            ours.err()
        );
    }
}

#[test]
fn every_accepted_spelling_of_a_key_is_the_same_key() {
    let data: KeyParsing = load_json("python-fernet/key-parsing.json");
    let ids: Vec<_> = data
        .cases
        .iter()
        .filter(|c| c.python_accepts)
        .map(|c| key_id(&c.key))
        .collect();
    assert!(ids.len() >= 5);
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
}

#[test]
fn a_ring_refuses_a_case_python_refuses_and_names_its_position() {
    let data: KeyParsing = load_json("python-fernet/key-parsing.json");
    let good = &data.cases[0];
    assert!(good.python_accepts);
    for c in data.cases.iter().filter(|c| !c.python_accepts) {
        let value = format!("{},{}", crate::support::KEY_A, c.key);
        match value.parse::<KeyRing>() {
            Err(KeyRingError::InvalidKey { position: 2, .. }) => {}
            other => panic!("{}: {other:?}", c.case),
        }
    }
}
