//! A Binance spot stand-in: `GET /api/v3/account`, `POST /api/v3/order`, `POST
//! /api/v3/order/test`, with Binance's "SIGNED endpoint" checks.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::server::{Answer, Broker, Request, StandIn};
use crate::params;

/// Binance's answer when the key header is missing (code -2014).
const BAD_KEY_FORMAT: (i64, &str) = (-2014, "API-key format invalid.");
/// Binance's answer for an unknown key (code -2015).
const REJECTED_KEY: (i64, &str) = (-2015, "Invalid API-key, IP, or permissions for action.");
const BAD_SIGNATURE: (i64, &str) = (-1022, "Signature for this request is not valid.");
const BAD_TIMESTAMP: (i64, &str) = (
    -1021,
    "Timestamp for this request is outside of the recvWindow.",
);
const RECV_WINDOW_TOO_LARGE: (i64, &str) = (-1131, "recvWindow must be less than 60000");
/// Binance's `recvWindow` when the request sets none, and its maximum, in milliseconds.
const DEFAULT_RECV_WINDOW_MS: i64 = 5000;
const MAX_RECV_WINDOW_MS: i64 = 60_000;

/// The state of a [`BinanceStandIn`].
pub struct State {
    /// API key → secret.
    keys: HashMap<String, String>,
    next_order_id: AtomicU64,
}

/// A loopback Binance that accepts requests signed with the keys it was started with.
///
/// Checks, in Binance's terms: the `X-MBX-APIKEY` header names a known key (missing: 401
/// `-2014`, unknown: 401 `-2015`); `signature` is the last parameter of the query or the body and
/// equals HMAC-SHA256(secret, totalParams without it) (else 400 `-1022`, missing: 400 `-1102`);
/// `timestamp` is within `recvWindow` (default 5000 ms, at most 60000) of the stand-in's clock
/// and less than one second ahead of it (else 400 `-1021`). Query parameters take precedence over
/// body parameters; a `GET` body is ignored.
pub type BinanceStandIn = StandIn<State>;

/// Names no key or secret.
impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl Broker for State {
    const STAND_IN: &'static str = "BinanceStandIn";

    fn new(keys: HashMap<String, String>) -> io::Result<Self> {
        Ok(Self {
            keys,
            next_order_id: AtomicU64::new(1),
        })
    }

    fn handle(&self, request: &Request) -> Answer {
        handle(self, request)
    }
}

#[derive(Clone, Copy)]
enum Route {
    Account,
    Order,
    OrderTest,
}

fn error(status: u16, (code, msg): (i64, &str)) -> Answer {
    Answer::refused(
        status,
        json!({ "code": code, "msg": msg }),
        code.to_string(),
    )
}

fn mandatory(name: &str) -> Answer {
    Answer::refused(
        400,
        json!({
            "code": -1102,
            "msg": format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        }),
        "-1102",
    )
}

fn handle(state: &State, request: &Request) -> Answer {
    let route = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/api/v3/account") => Route::Account,
        ("POST", "/api/v3/order") => Route::Order,
        ("POST", "/api/v3/order/test") => Route::OrderTest,
        _ => {
            return Answer::refused(
                404,
                json!({ "code": -1000, "msg": "The stand-in does not serve this endpoint." }),
                "not_found",
            )
        }
    };
    let Some(key) = request.header("X-MBX-APIKEY") else {
        return error(401, BAD_KEY_FORMAT);
    };
    let Some(secret) = state.keys.get(key) else {
        return error(401, REJECTED_KEY);
    };
    let body = if request.method == "GET" {
        ""
    } else {
        request.body.as_str()
    };
    let (Ok((query_rest, query_signature)), Ok((body_rest, body_signature))) =
        (split_signature(&request.query), split_signature(body))
    else {
        // A `signature` that is not the last parameter signs nothing Binance can rebuild.
        return error(400, BAD_SIGNATURE);
    };
    let signature = match (query_signature, body_signature) {
        (None, None) => return mandatory("signature"),
        (Some(signature), None) | (None, Some(signature)) => signature,
        (Some(_), Some(_)) => return error(400, BAD_SIGNATURE),
    };
    if !signature_matches(secret, query_rest, body_rest, signature) {
        return error(400, BAD_SIGNATURE);
    }
    let param = |name: &str| params::value(query_rest, name).or(params::value(body_rest, name));
    let Some(timestamp) = param("timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return mandatory("timestamp");
    };
    let recv_window = match param("recvWindow") {
        None => DEFAULT_RECV_WINDOW_MS,
        Some(window) => match window.parse::<i64>() {
            Ok(window) if window > MAX_RECV_WINDOW_MS => return error(400, RECV_WINDOW_TOO_LARGE),
            Ok(window) => window,
            Err(_) => return mandatory("recvWindow"),
        },
    };
    let now = Utc::now().timestamp_millis();
    if !(timestamp < now + 1000 && now - timestamp <= recv_window) {
        return error(400, BAD_TIMESTAMP);
    }
    match route {
        Route::Account => Answer::accepted(json!({
            "makerCommission": 10,
            "takerCommission": 10,
            "canTrade": true,
            "canWithdraw": false,
            "canDeposit": true,
            "accountType": "SPOT",
            "balances": [
                { "asset": "BTC", "free": "0.50000000", "locked": "0.00000000" },
                { "asset": "USDT", "free": "1000.00000000", "locked": "0.00000000" }
            ],
            "permissions": ["SPOT"]
        })),
        Route::Order | Route::OrderTest => {
            for name in ["symbol", "side", "type"] {
                if param(name).is_none_or(str::is_empty) {
                    return mandatory(name);
                }
            }
            if matches!(route, Route::OrderTest) {
                return Answer::accepted(json!({}));
            }
            let order_id = state.next_order_id.fetch_add(1, Ordering::Relaxed);
            Answer::accepted(json!({
                "symbol": param("symbol"),
                "orderId": order_id,
                "orderListId": -1,
                "clientOrderId": format!("stand-in-{order_id}"),
                "transactTime": now,
                "price": param("price").unwrap_or("0.00000000"),
                "origQty": param("quantity").unwrap_or("0.00000000"),
                "executedQty": "0.00000000",
                "status": "NEW",
                "timeInForce": param("timeInForce").unwrap_or("GTC"),
                "type": param("type"),
                "side": param("side"),
            }))
        }
    }
}

/// Splits a trailing `signature=…` off `text`: (the rest, the signature). An error when a
/// `signature` parameter is present but not last.
fn split_signature(text: &str) -> Result<(&str, Option<&str>), ()> {
    let mut offset = 0;
    let mut found = None;
    for pair in text.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "signature" {
            if found.is_some() {
                return Err(());
            }
            found = Some((offset, pair.len(), value));
        }
        offset += pair.len() + 1;
    }
    match found {
        None => Ok((text, None)),
        Some((start, len, value)) if start + len == text.len() => {
            Ok((&text[..start.saturating_sub(1)], Some(value)))
        }
        Some(_) => Err(()),
    }
}

/// HMAC signatures are compared without case, in constant time.
fn signature_matches(secret: &str, query: &str, body: &str, signature: &str) -> bool {
    let Some(expected) = decode_hex(signature) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(query.as_bytes());
    mac.update(body.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn signature_is_split_off_only_when_last() {
        assert_eq!(split_signature("a=1&signature=ab"), Ok(("a=1", Some("ab"))));
        assert_eq!(split_signature("signature=ab"), Ok(("", Some("ab"))));
        assert_eq!(split_signature("a=1"), Ok(("a=1", None)));
        assert_eq!(split_signature(""), Ok(("", None)));
        assert_eq!(split_signature("signature=ab&a=1"), Err(()));
        assert_eq!(split_signature("signature=ab&signature=cd"), Err(()));
    }

    #[test]
    fn signatures_are_compared_without_case() {
        // Binance's published example (see the signing module's tests).
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC";
        let body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let signature = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77";
        assert!(signature_matches(secret, query, body, signature));
        assert!(signature_matches(
            secret,
            query,
            body,
            &signature.to_ascii_uppercase()
        ));
        assert!(!signature_matches(secret, body, query, signature));
        assert!(!signature_matches(secret, query, body, "zz"));
    }
}
