//! Passwords of the embedded sign-in (SPEC §5): the policy, argon2id hashing, and verification
//! of argon2id and bcrypt hashes (the platform's Python auth service writes bcrypt `$2b$…`).
//!
//! Passwords and hashes only travel in [`SecretString`]s, so that no `Debug` output, log line or
//! error message can show one. Every function here is CPU-bound (tens of milliseconds): call it
//! from `web::block`, never on an async worker.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use secrecy::{ExposeSecret, SecretString};

/// Minimum length of a password, in characters.
pub const MIN_CHARS: usize = 12;
/// Maximum length of a password, in characters (bounds the work one request can ask for).
pub const MAX_CHARS: usize = 256;

/// The policy, as shown to people.
pub const POLICY: &str =
    "Password must be 12 to 256 characters long and contain an upper-case letter, a \
     lower-case letter, a digit and a symbol";

/// One rule of the policy a password breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Fewer than [`MIN_CHARS`] characters.
    TooShort,
    /// More than [`MAX_CHARS`] characters.
    TooLong,
    /// No upper-case letter.
    Uppercase,
    /// No lower-case letter.
    Lowercase,
    /// No digit.
    Digit,
    /// No symbol (a character that is neither a letter, a digit nor white space).
    Symbol,
}

impl Rule {
    /// What the rule asks for, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::TooShort => "at least 12 characters",
            Self::TooLong => "at most 256 characters",
            Self::Uppercase => "an upper-case letter",
            Self::Lowercase => "a lower-case letter",
            Self::Digit => "a digit",
            Self::Symbol => "a symbol",
        }
    }
}

/// A rule on character classes and the test a character must pass for it.
type CharClassRule = (Rule, fn(char) -> bool);

/// The rules `password` breaks; empty when it is acceptable. Never looks at anything but
/// character classes, and never returns a part of the password.
pub fn broken_rules(password: &SecretString) -> Vec<Rule> {
    let password = password.expose_secret();
    let count = password.chars().count();
    let mut broken = Vec::new();
    if count < MIN_CHARS {
        broken.push(Rule::TooShort);
    }
    if count > MAX_CHARS {
        broken.push(Rule::TooLong);
    }
    let checks: [CharClassRule; 4] = [
        (Rule::Uppercase, char::is_uppercase),
        (Rule::Lowercase, char::is_lowercase),
        (Rule::Digit, |c| c.is_ascii_digit()),
        (Rule::Symbol, |c| !c.is_alphanumeric() && !c.is_whitespace()),
    ];
    for (rule, test) in checks {
        if !password.chars().any(test) {
            broken.push(rule);
        }
    }
    broken
}

/// The human message for a password that breaks `rules` (non-empty): the policy, then what is
/// missing.
pub fn policy_message(rules: &[Rule]) -> String {
    let missing: Vec<&str> = rules.iter().map(|r| r.describe()).collect();
    format!("{POLICY} (missing: {})", missing.join(", "))
}

/// Hashing failed (the system random generator failed). Carries no detail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashingFailed;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[test]
    fn a_strong_password_breaks_no_rule() {
        assert!(broken_rules(&secret("Correct-Horse-9")).is_empty());
        assert!(broken_rules(&secret("Éléphant rose 7!")).is_empty());
    }

    #[test]
    fn each_missing_class_is_named() {
        assert_eq!(broken_rules(&secret("Sh0rt!")), [Rule::TooShort]);
        assert_eq!(broken_rules(&secret("alllowercase-1")), [Rule::Uppercase]);
        assert_eq!(broken_rules(&secret("ALLUPPERCASE-1")), [Rule::Lowercase]);
        assert_eq!(broken_rules(&secret("No-Digits-Here")), [Rule::Digit]);
        assert_eq!(broken_rules(&secret("NoSymbols12345")), [Rule::Symbol]);
        assert_eq!(
            broken_rules(&secret("With spaces 123")),
            [Rule::Symbol],
            "a space is not a symbol"
        );
        let long = format!("Aa1!{}", "x".repeat(MAX_CHARS));
        assert_eq!(broken_rules(&secret(&long)), [Rule::TooLong]);
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 11 characters, 22+ bytes.
        assert_eq!(broken_rules(&secret("Ééééééé-1aA")), [Rule::TooShort]);
    }

    #[test]
    fn the_message_names_the_policy_and_what_is_missing() {
        let message = policy_message(&[Rule::Digit, Rule::Symbol]);
        assert!(
            message.starts_with("Password must be 12 to 256 characters long"),
            "{message}"
        );
        assert!(
            message.ends_with("(missing: a digit, a symbol)"),
            "{message}"
        );
    }

    #[test]
    fn the_message_never_quotes_the_password() {
        let password = secret("nouppercase-and-no-digits");
        let message = policy_message(&broken_rules(&password));
        assert!(!message.contains("nouppercase"), "{message}");
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
