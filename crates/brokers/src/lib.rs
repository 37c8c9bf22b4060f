#![doc = include_str!("../README.md")]

mod params;
pub mod probe;
pub mod signing;
#[cfg(feature = "stand-in")]
pub mod stand_in;

pub use probe::{BrokerProbeAdapter, HttpBrokerProbe, ProbeUrls};
pub use signing::{allowed_requests, BrokerProtocols};
