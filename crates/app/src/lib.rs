#![doc = include_str!("../README.md")]

pub mod cli;
pub mod config;
pub mod http;
pub mod startup;
pub mod state;
pub mod telemetry;
