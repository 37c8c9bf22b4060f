//! Broker identifiers.

use std::fmt;

use crate::error::ValidationError;
use crate::limits::BROKER_ID_MAX_CHARS;

/// A normalised broker identifier: trimmed, lower-cased, 1 to 64 characters.
///
/// It cannot be blank: the only way to build one is [`BrokerId::parse`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerId(String);

impl BrokerId {
    /// Trims and lower-cases `raw`; refuses a blank or over-long identifier, and one holding a
    /// control character (NUL, line breaks, bidirectional overrides…), which no broker name
    /// needs and which PostgreSQL cannot store (NUL) or logs would show misleadingly.
    ///
    /// ```
    /// use user_service_domain::BrokerId;
    /// assert_eq!(BrokerId::parse("  Binance ").unwrap().as_str(), "binance");
    /// assert!(BrokerId::parse("   ").is_err());
    /// ```
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let normalised = raw.trim().to_lowercase();
        if normalised.is_empty() {
            return Err(ValidationError::BrokerRequired);
        }
        if normalised.chars().count() > BROKER_ID_MAX_CHARS {
            return Err(ValidationError::TooLong {
                field: "broker",
                max: BROKER_ID_MAX_CHARS,
            });
        }
        if normalised.chars().any(crate::text::is_forbidden_char) {
            return Err(ValidationError::Invalid {
                field: "broker",
                reason: "must not contain control characters",
            });
        }
        Ok(Self(normalised))
    }

    /// The normalised identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerId({:?})", self.0)
    }
}

impl AsRef<str> for BrokerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_is_trimmed_and_lower_cased() {
        assert_eq!(BrokerId::parse(" KRAKEN\t").unwrap().as_str(), "kraken");
    }

    #[test]
    fn control_characters_are_refused() {
        for raw in [
            "bin\u{0}ance",
            "a\nb",
            "x\u{7f}",
            "evil\u{202e}kcalb",
            "a\u{2066}b",
        ] {
            assert!(
                matches!(
                    BrokerId::parse(raw),
                    Err(ValidationError::Invalid {
                        field: "broker",
                        ..
                    })
                ),
                "{raw:?}"
            );
        }
        assert!(BrokerId::parse("interactive-brokers (é)").is_ok());
    }

    #[test]
    fn blank_broker_is_required() {
        for raw in ["", " ", "\n\t "] {
            assert_eq!(BrokerId::parse(raw), Err(ValidationError::BrokerRequired));
        }
    }

    #[test]
    fn broker_of_64_chars_is_accepted_and_65_refused() {
        assert!(BrokerId::parse(&"é".repeat(64)).is_ok());
        assert!(matches!(
            BrokerId::parse(&"a".repeat(65)),
            Err(ValidationError::TooLong {
                field: "broker",
                ..
            })
        ));
    }

    #[test]
    fn length_is_checked_after_trimming() {
        let raw = format!("  {}  ", "a".repeat(64));
        assert!(BrokerId::parse(&raw).is_ok());
    }
}
