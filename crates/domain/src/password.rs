//! The password policy of the embedded sign-in, as the platform's auth service has it: 12 to
//! 256 characters with an upper-case letter, a lower-case letter, a digit and a symbol.
//!
//! Passwords only travel in [`SecretString`]s, so that no `Debug` output, log line or error
//! message can show one. Hashing is an adapter's job (the `PasswordHasher` port).

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

/// Checks `password` against the policy; the error names the policy and what is missing, never
/// a part of the password.
pub fn check_policy(password: &SecretString) -> Result<(), PolicyViolation> {
    let broken = broken_rules(password);
    if broken.is_empty() {
        Ok(())
    } else {
        Err(PolicyViolation(policy_message(&broken)))
    }
}

/// A password that breaks the policy; the message says what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyViolation(pub String);

#[cfg(test)]
mod tests {
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
}
