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
        let id = Self::normalise(raw)?;
        if !id
            .0
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ValidationError::Invalid {
                field: "broker",
                reason: "may only hold letters, digits, '-', '_' and '.'",
            });
        }
        Ok(id)
    }

    /// An identifier as another writer stored it (the Python service accepted any text):
    /// trimmed and lower-cased, never blank, no control character, but not held to the
    /// character set of [`BrokerId::parse`], so that such a row can still be read and deleted.
    pub fn from_stored(raw: &str) -> Result<Self, ValidationError> {
        Self::normalise(raw)
    }

    fn normalise(raw: &str) -> Result<Self, ValidationError> {
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
        if crate::text::has_forbidden_char(&normalised) {
            return Err(ValidationError::Invalid {
                field: "broker",
                reason: "must not contain control characters",
            });
        }
        Ok(Self(normalised))
    }

    /// How people call the broker: `Binance`, `Interactive Brokers`, … for the known ones, the
    /// identifier itself otherwise.
    pub fn display_name(&self) -> &str {
        match self.0.as_str() {
            "binance" => "Binance",
            "kraken" => "Kraken",
            "alpaca" => "Alpaca",
            "ibkr" | "interactive-brokers" | "interactivebrokers" => "Interactive Brokers",
            "coinbase" => "Coinbase",
            "bitstamp" => "Bitstamp",
            other => other,
        }
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
        assert!(BrokerId::from_stored("interactive-brokers (é)").is_ok());
    }

    #[test]
    fn only_letters_digits_dashes_underscores_and_dots_are_accepted_from_requests() {
        for good in ["binance", "ibkr", "my-broker_2.eu"] {
            assert!(BrokerId::parse(good).is_ok(), "{good}");
        }
        for bad in ["inter active", "a/b", "é", "x:y", "<b>"] {
            assert!(
                matches!(BrokerId::parse(bad), Err(ValidationError::Invalid { .. })),
                "{bad}"
            );
            assert!(BrokerId::from_stored(bad).is_ok(), "{bad}");
        }
        assert_eq!(
            BrokerId::parse("IBKR").unwrap().display_name(),
            "Interactive Brokers"
        );
        assert_eq!(
            BrokerId::parse("my-broker").unwrap().display_name(),
            "my-broker"
        );
    }

    #[test]
    fn blank_broker_is_required() {
        for raw in ["", " ", "\n\t "] {
            assert_eq!(BrokerId::parse(raw), Err(ValidationError::BrokerRequired));
        }
    }

    #[test]
    fn broker_of_64_chars_is_accepted_and_65_refused() {
        assert!(BrokerId::parse(&"e".repeat(64)).is_ok());
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
