//! An Alpaca trading API stand-in: `GET /v2/account` with the key headers.

use std::collections::HashMap;
use std::fmt;
use std::io;

use serde_json::json;

use super::server::{Answer, Broker, Request, StandIn};

/// A loopback Alpaca that accepts the (key id, secret key) pairs it was started with on
/// `GET /v2/account` (headers `APCA-API-KEY-ID` and `APCA-API-SECRET-KEY`); anything else with a
/// wrong or missing pair is 401 `{"code":40110000,"message":"request is not authorized"}`.
pub type AlpacaStandIn = StandIn<Alpaca>;

/// The state of an [`AlpacaStandIn`]: key id → secret key.
pub struct Alpaca {
    keys: HashMap<String, String>,
}

/// Names no key or secret.
impl fmt::Debug for Alpaca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alpaca").finish_non_exhaustive()
    }
}

impl Broker for Alpaca {
    const STAND_IN: &'static str = "AlpacaStandIn";

    fn new(keys: HashMap<String, String>) -> io::Result<Self> {
        Ok(Self { keys })
    }

    fn handle(&self, request: &Request) -> Answer {
        handle(&self.keys, request)
    }
}

fn handle(keys: &HashMap<String, String>, request: &Request) -> Answer {
    let known = request
        .header("APCA-API-KEY-ID")
        .and_then(|id| keys.get(id))
        .zip(request.header("APCA-API-SECRET-KEY"))
        .is_some_and(|(expected, given)| {
            constant_time_equal(expected.as_bytes(), given.as_bytes())
        });
    if !known {
        return Answer::refused(
            401,
            json!({ "code": 40110000, "message": "request is not authorized" }),
            "40110000",
        );
    }
    if request.method != "GET" || request.path != "/v2/account" {
        return Answer::refused(404, json!({ "message": "Not Found" }), "not_found");
    }
    Answer::accepted(json!({
        "id": "00000000-0000-4000-8000-000000000000",
        "account_number": "PA0STANDIN",
        "status": "ACTIVE",
        "currency": "USD",
        "cash": "100000",
        "buying_power": "200000",
        "trading_blocked": false
    }))
}

/// Compares without stopping at the first difference, as a real server should.
fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
