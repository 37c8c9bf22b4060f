//! Black-box tests of the `user-service` binary: each test spawns the real server (port 0) on a
//! fresh SQLite or PostgreSQL database and talks HTTP to it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod access;
mod audit;
mod checks;
mod credentials;
mod cutover;
mod fuzz;
mod hardening;
mod logs;
mod openapi;
mod outage;
mod reload;
mod rotation;
mod sessions;
mod signing;
mod smoke;
mod support;
mod users;
