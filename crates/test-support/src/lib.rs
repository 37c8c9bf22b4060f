#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod ci;
pub mod cipher;
pub mod db;
pub mod stub;
