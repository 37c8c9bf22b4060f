//! Secret values and the keep / clear / set rule of an update request.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::error::ValidationError;
use crate::limits::SECRET_MAX_CHARS;

/// A plaintext API key or secret: zeroized on drop, redacted in `Debug`.
///
/// The value is reachable only through [`ExposeSecret::expose_secret`], so every read of it is
/// visible in the code.
#[derive(Clone)]
pub struct PlainSecret(SecretString);

impl PlainSecret {
    /// Wraps a plaintext value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// Number of characters (Unicode scalar values) of the value.
    pub fn char_count(&self) -> usize {
        self.0.expose_secret().chars().count()
    }
}

impl ExposeSecret<str> for PlainSecret {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<SecretString> for PlainSecret {
    fn from(value: SecretString) -> Self {
        Self(value)
    }
}

impl From<PlainSecret> for SecretString {
    fn from(value: PlainSecret) -> Self {
        value.0
    }
}

impl fmt::Debug for PlainSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainSecret([REDACTED])")
    }
}

/// What an update request asks for one half (API key or API secret) of a credential.
#[derive(Debug, Clone)]
pub enum SecretInput {
    /// The field was absent: leave the stored half unchanged.
    Keep,
    /// The field was `null`, empty or whitespace-only: remove the stored half.
    Clear,
    /// Any other string: store it encrypted, without its surrounding white space.
    Set(PlainSecret),
}

impl SecretInput {
    /// Applies the update rules (docs/contract.md#update-rules) to a JSON field: `None` when absent, `Some(None)` when
    /// `null`, `Some(Some(s))` for a string.
    ///
    /// `field` names the field in the validation error of a value over 4096 characters.
    pub fn from_field(
        field: &'static str,
        value: Option<Option<SecretString>>,
    ) -> Result<Self, ValidationError> {
        match value {
            None => Ok(Self::Keep),
            Some(None) => Ok(Self::Clear),
            Some(Some(value)) => Self::from_value(field, value),
        }
    }

    /// Leading and trailing white space is removed: a key pasted with a space or a line break
    /// around it would otherwise be stored as typed and fail at the broker (a change from the
    /// original service, which stored values as sent; no broker issues keys with surrounding
    /// white space).
    fn from_value(field: &'static str, value: SecretString) -> Result<Self, ValidationError> {
        let text = value.expose_secret();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Self::Clear);
        }
        // The limit counts what was sent (the documented maxLength), white space included.
        if text.chars().count() > SECRET_MAX_CHARS {
            return Err(ValidationError::TooLong {
                field,
                max: SECRET_MAX_CHARS,
            });
        }
        if trimmed.len() == text.len() {
            return Ok(Self::Set(PlainSecret::from(value)));
        }
        Ok(Self::Set(PlainSecret::new(trimmed.to_owned())))
    }

    /// Whether this input leaves the stored half unchanged.
    pub fn is_keep(&self) -> bool {
        matches!(self, Self::Keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(value: &str) -> Option<Option<SecretString>> {
        Some(Some(SecretString::from(value.to_owned())))
    }

    #[test]
    fn absent_field_keeps() {
        assert!(SecretInput::from_field("api_key", None).unwrap().is_keep());
    }

    #[test]
    fn null_empty_and_whitespace_clear() {
        for value in [Some(None), set(""), set("   "), set("\t\n")] {
            assert!(matches!(
                SecretInput::from_field("api_key", value).unwrap(),
                SecretInput::Clear
            ));
        }
    }

    #[test]
    fn surrounding_white_space_is_removed_and_inner_kept() {
        for (sent, stored) in [
            ("  KEY-7777  ", "KEY-7777"),
            ("\tab c\n", "ab c"),
            ("x", "x"),
        ] {
            match SecretInput::from_field("api_key", set(sent)).unwrap() {
                SecretInput::Set(secret) => assert_eq!(secret.expose_secret(), stored),
                other => panic!("expected Set, got {other:?}"),
            }
        }
    }

    #[test]
    fn value_of_4096_chars_is_accepted_and_4097_refused() {
        assert!(SecretInput::from_field("api_secret", set(&"ж".repeat(4096))).is_ok());
        assert_eq!(
            SecretInput::from_field("api_secret", set(&"x".repeat(4097))).unwrap_err(),
            ValidationError::TooLong {
                field: "api_secret",
                max: 4096
            }
        ); // Counted as sent, surrounding white space included (the documented maxLength).
        assert!(
            SecretInput::from_field("api_secret", set(&format!(" {}", "x".repeat(4096)))).is_err()
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let input = SecretInput::from_field("api_key", set("sk_live_SECRET")).unwrap();
        let printed = format!("{input:?} {:?}", PlainSecret::new("sk_live_SECRET"));
        assert!(!printed.contains("SECRET"), "{printed}");
    }
}
