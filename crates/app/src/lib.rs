#![doc = include_str!("../README.md")]

pub mod auth;
pub mod cli;
pub mod entitlements;
pub mod error;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod password;
pub mod probe;
pub mod rotation;
pub mod secrets;
pub mod settings;
pub mod smoke;
pub mod startup;
pub mod state;
pub mod telemetry;
