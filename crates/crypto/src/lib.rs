#![doc = include_str!("../README.md")]

mod binding;
mod error;
mod key;
mod ring;

pub use error::{KeyProblem, KeyRingError};
pub use ring::KeyRing;
