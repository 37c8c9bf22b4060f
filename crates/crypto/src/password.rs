//! Password hashing for the embedded sign-in: argon2id for new hashes, and verification of
//! argon2id and bcrypt hashes (the platform's Python auth service writes bcrypt `$2b$…`).
//!
//! Passwords and hashes only travel in [`SecretString`]s, so that no `Debug` output, log line or
//! error message can show one. The work is CPU-bound (tens of milliseconds): [`Passwords`], the
//! adapter of the domain's `PasswordHasher` port, does it on the runtime's blocking threads,
//! never on a thread that serves requests.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use user_service_domain::ports::{HashingFailed, PasswordHasher};

/// Hashes `password` with argon2id (the `argon2` crate's defaults: m = 19 MiB, t = 2, p = 1,
/// the OWASP recommendation) into a PHC string (`$argon2id$v=19$…`).
pub fn hash(password: &SecretString) -> Result<SecretString, HashingFailed> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|hash| SecretString::from(hash.to_string()))
        .map_err(|_| HashingFailed)
}

/// Whether `password` matches `stored`: an argon2 PHC string or a bcrypt hash (`$2a$`, `$2b$`,
/// `$2y$`). An unknown or malformed hash never matches.
pub fn verify(password: &SecretString, stored: &SecretString) -> bool {
    let stored = stored.expose_secret();
    let password = password.expose_secret().as_bytes();
    if stored.starts_with("$argon2") {
        return PasswordHash::new(stored)
            .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok());
    }
    if ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        return bcrypt::verify(password, stored).unwrap_or(false);
    }
    false
}

/// Does the work of one argon2id verification and fails. Called when there is no hash to check
/// (unknown e-mail, account without a password), so that the answer takes as long as a wrong
/// password and its timing does not tell whether the account exists.
pub fn verify_nothing(password: &SecretString) -> bool {
    static DECOY: OnceLock<Option<SecretString>> = OnceLock::new();
    let decoy =
        DECOY.get_or_init(|| hash(&SecretString::from("decoy password, never matched")).ok());
    if let Some(decoy) = decoy {
        let _ = verify(password, decoy);
    }
    false
}

/// The domain's `PasswordHasher`: argon2id and bcrypt, off the request threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Passwords;

#[async_trait]
impl PasswordHasher for Passwords {
    async fn hash(&self, password: &SecretString) -> Result<SecretString, HashingFailed> {
        let password = password.clone();
        tokio::task::spawn_blocking(move || hash(&password))
            .await
            .map_err(|_| HashingFailed)?
    }

    async fn verify(&self, password: &SecretString, stored: Option<SecretString>) -> bool {
        let password = password.clone();
        tokio::task::spawn_blocking(move || match stored {
            Some(stored) => verify(&password, &stored),
            None => verify_nothing(&password),
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[test]
    fn argon2id_hash_round_trips_and_is_a_phc_string() {
        let password = secret("Correct-Horse-9");
        let stored = hash(&password).unwrap();
        assert!(
            stored.expose_secret().starts_with("$argon2id$v=19$"),
            "PHC argon2id string"
        );
        assert!(verify(&password, &stored));
        assert!(!verify(&secret("Correct-Horse-8"), &stored));
    }

    #[test]
    fn two_hashes_of_one_password_differ() {
        let password = secret("Correct-Horse-9");
        assert_ne!(
            hash(&password).unwrap().expose_secret(),
            hash(&password).unwrap().expose_secret()
        );
    }

    #[test]
    fn bcrypt_hashes_from_the_python_service_verify() {
        // Made with Python `bcrypt` 5.0: bcrypt.hashpw(b"Platform-Pass-1", bcrypt.gensalt(rounds=4)).
        let stored = secret("$2b$04$9kdl8i.bIGPmPTt7cFJPxu3/WEKhcNZnSZl3XFvW8Mz/oH2CzfCXG");
        assert!(verify(&secret("Platform-Pass-1"), &stored));
        assert!(!verify(&secret("Platform-Pass-2"), &stored));
    }

    #[test]
    fn bcrypt_hashes_made_here_verify_too() {
        let made = bcrypt::hash("Another-Pass-2", 4).unwrap();
        assert!(verify(&secret("Another-Pass-2"), &secret(&made)));
        let legacy = made.replacen("$2b$", "$2y$", 1);
        assert!(verify(&secret("Another-Pass-2"), &secret(&legacy)));
    }

    #[test]
    fn unknown_or_malformed_hashes_never_match() {
        let password = secret("Correct-Horse-9");
        for stored in [
            "",
            "Correct-Horse-9",
            "$argon2id$garbage",
            "$2b$04$short",
            "$1$md5$x",
        ] {
            assert!(!verify(&password, &secret(stored)), "{stored:?}");
        }
        assert!(!verify_nothing(&password));
    }

    #[test]
    fn debug_output_hides_passwords_and_hashes() {
        let password = secret("Correct-Horse-9");
        let stored = hash(&password).unwrap();
        let shown = format!("{password:?} {stored:?}");
        assert!(!shown.contains("Correct-Horse-9"), "{shown}");
        assert!(!shown.contains("argon2"), "{shown}");
    }
}
