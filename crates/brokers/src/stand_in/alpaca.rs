//! An Alpaca trading API stand-in: `GET /v2/account` with the key headers.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use serde_json::json;

use super::server::{Answer, Recorded, Request, Server};

/// A loopback Alpaca that accepts the (key id, secret key) pairs it was started with on
/// `GET /v2/account` (headers `APCA-API-KEY-ID` and `APCA-API-SECRET-KEY`); anything else with a
/// wrong or missing pair is 401 `{"code":40110000,"message":"request is not authorized"}`.
pub struct AlpacaStandIn {
    server: Server,
    key_count: usize,
}

impl fmt::Debug for AlpacaStandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlpacaStandIn")
            .field("url", &self.server.url())
            .field("keys", &self.key_count)
            .finish()
    }
}

impl AlpacaStandIn {
    /// Starts a stand-in that knows these (key id, secret key) pairs.
    pub fn start<K, S>(keys: impl IntoIterator<Item = (K, S)>) -> io::Result<Self>
    where
        K: Into<String>,
        S: Into<String>,
    {
        let keys: HashMap<String, String> = keys
            .into_iter()
            .map(|(k, s)| (k.into(), s.into()))
            .collect();
        let key_count = keys.len();
        let keys = Arc::new(keys);
        let server = Server::start(Arc::new(move |request: &Request| handle(&keys, request)))?;
        Ok(Self { server, key_count })
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// While `Some(status)`, every request is answered with that status and `{}`.
    pub fn set_outage(&self, status: Option<u16>) {
        self.server.set_outage(status);
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
