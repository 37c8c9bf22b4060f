//! Loopback stand-ins for the brokers (feature `stand-in`): plain HTTP/1.1 servers on
//! `127.0.0.1:0` that serve the calls this crate makes and verify signatures as the broker does,
//! so that a signature this crate (or the user-service's signing route) produces is proven
//! acceptable without a real account.
//!
//! Each stand-in records the requests it answered ([`Recorded`]: method, path, outcome; never a
//! query, body, key or signature), gives its base URL with `url()`, can simulate an outage with
//! `set_outage(Some(503))`, and stops when dropped. std only: one thread accepts, one thread per
//! connection answers, every answer closes its connection.

mod alpaca;
mod binance;
mod kraken;
mod server;

pub use alpaca::AlpacaStandIn;
pub use binance::BinanceStandIn;
pub use kraken::KrakenStandIn;
pub use server::{Outcome, Recorded, StandIn};
