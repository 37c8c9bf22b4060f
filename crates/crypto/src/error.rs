//! Errors of key ring parsing. Messages name the position of the faulty key and what is wrong
//! with it, never the key itself.

use thiserror::Error;

/// Why a key ring could not be built from its configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// The value holds no key at all: empty, blank, or only commas and whitespace.
    #[error("no encryption key configured: the value is empty")]
    Empty,
    /// One key of the comma-separated ring is malformed.
    #[error(
        "encryption key #{position} is invalid: {reason} (a Fernet key is 32 bytes in url-safe \
         base64: 44 characters ending in '=')"
    )]
    InvalidKey {
        /// Position of the key in the ring, 1 for the primary key.
        position: usize,
        /// What is wrong with it.
        reason: KeyProblem,
    },
    /// The same key appears twice in the ring.
    #[error("encryption key #{position} repeats key #{first}")]
    DuplicateKey {
        /// Position of the repeated key, counted from 1.
        position: usize,
        /// Position of its first occurrence.
        first: usize,
    },
}

/// What is wrong with one key of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The key is empty or whitespace only.
    #[error("it is blank")]
    Blank,
    /// A character is neither base64 (either alphabet) nor `=` padding.
    #[error("character {index} is not a base64 character")]
    InvalidCharacter {
        /// 1-based index of the character in the key as given, surrounding whitespace included.
        index: usize,
    },
    /// `=` padding appears before the last characters.
    #[error("'=' padding appears in the middle")]
    MisplacedPadding,
    /// The key does not decode to 32 bytes.
    #[error("it decodes to {bytes} bytes instead of 32")]
    WrongLength {
        /// Number of bytes it decodes to (rounded down when the length is not whole).
        bytes: usize,
    },
    /// The trailing `=` is missing (Python's `Fernet` refuses such keys too).
    #[error("the trailing '=' padding is missing")]
    MissingPadding,
    /// More `=` than base64 allows (Python ignores the extra ones; we refuse them).
    #[error("it has more '=' padding than base64 allows")]
    ExtraPadding,
    /// The underlying Fernet implementation refused a key this crate accepted (a bug).
    #[error("the Fernet implementation refused it")]
    Refused,
}
