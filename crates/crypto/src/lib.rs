#![doc = include_str!("../README.md")]

mod binding;
mod error;
mod key;
pub mod password;
mod ring;
pub mod tokens;

pub use error::{KeyProblem, KeyRingError};
pub use password::Passwords;
pub use ring::KeyRing;
pub use tokens::{InvalidToken, SessionClaims, TokenCodec, TokenKind, Verified};
