//! A Kraken spot stand-in: `POST /0/private/Balance` and `POST /0/private/AddOrder`, with
//! Kraken's `API-Key` / `API-Sign` / nonce checks.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};

use super::server::{lock, Answer, Broker, Request, StandIn};
use crate::params;

/// The state of a [`KrakenStandIn`].
pub struct State {
    /// API key → decoded secret.
    keys: HashMap<String, Vec<u8>>,
    /// API key → last nonce accepted.
    nonces: Mutex<HashMap<String, u64>>,
    next_order: AtomicU64,
}

/// A loopback Kraken that accepts requests signed with the keys it was started with.
///
/// Checks, in Kraken's terms (always HTTP 200 with an `error` array): `API-Key` names a known key
/// (else `EAPI:Invalid key`); `API-Sign` is base64 of HMAC-SHA512(decoded secret, path ‖
/// SHA-256(nonce ‖ body)) (else `EAPI:Invalid signature`); the body's `nonce` is an integer
/// greater than the last one accepted for that key (else `EAPI:Invalid nonce`). Success is
/// `{"error":[],"result":…}`; `AddOrder` with `validate=true` only describes the order.
///
/// Its secrets are base64, as Kraken's are: `start` refuses one that is not with an
/// `InvalidInput` error.
pub type KrakenStandIn = StandIn<State>;

/// Names no key or secret.
impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl Broker for State {
    const STAND_IN: &'static str = "KrakenStandIn";

    /// A secret that is not base64 is an `InvalidInput` error.
    fn new(keys: HashMap<String, String>) -> io::Result<Self> {
        let mut decoded = HashMap::new();
        for (key, secret) in keys {
            let secret = base64::engine::general_purpose::STANDARD
                .decode(secret.trim())
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a Kraken stand-in secret must be base64",
                    )
                })?;
            decoded.insert(key, secret);
        }
        Ok(Self {
            keys: decoded,
            nonces: Mutex::new(HashMap::new()),
            next_order: AtomicU64::new(1),
        })
    }

    fn handle(&self, request: &Request) -> Answer {
        handle(self, request)
    }
}

fn error(status: u16, name: &str) -> Answer {
    Answer::refused(status, json!({ "error": [name] }), name)
}

fn handle(state: &State, request: &Request) -> Answer {
    let served = ["/0/private/Balance", "/0/private/AddOrder"];
    if request.method != "POST" || !served.contains(&request.path.as_str()) {
        return error(404, "EGeneral:Unknown method");
    }
    let Some((key, secret)) = request
        .header("API-Key")
        .and_then(|key| state.keys.get_key_value(key))
    else {
        return error(200, "EAPI:Invalid key");
    };
    let Some(signature) = request
        .header("API-Sign")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return error(200, "EAPI:Invalid signature");
    };
    let body = request.body.as_str();
    let Some(nonce_text) = params::value(body, "nonce") else {
        return error(200, "EAPI:Invalid nonce");
    };
    let Ok(nonce) = nonce_text.parse::<u64>() else {
        return error(200, "EAPI:Invalid nonce");
    };
    let digest = Sha256::new()
        .chain_update(nonce_text.as_bytes())
        .chain_update(body.as_bytes())
        .finalize();
    let Ok(mut mac) = <Hmac<Sha512> as Mac>::new_from_slice(secret) else {
        return error(200, "EAPI:Invalid signature");
    };
    mac.update(request.path.as_bytes());
    mac.update(&digest);
    if mac.verify_slice(&signature).is_err() {
        return error(200, "EAPI:Invalid signature");
    }
    {
        let mut nonces = lock(&state.nonces);
        let last = nonces.entry(key.clone()).or_insert(0);
        if nonce <= *last {
            return error(200, "EAPI:Invalid nonce");
        }
        *last = nonce;
    }
    if request.path == "/0/private/Balance" {
        return Answer::accepted(json!({
            "error": [],
            "result": { "ZUSD": "1000.0000", "XXBT": "0.5000000000" }
        }));
    }
    for name in ["pair", "type", "ordertype", "volume"] {
        if params::value(body, name).is_none_or(str::is_empty) {
            return error(200, "EGeneral:Invalid arguments");
        }
    }
    let value = |name: &str| params::value(body, name).unwrap_or_default();
    let description = format!(
        "{} {} {} @ {} {}",
        value("type"),
        value("volume"),
        value("pair"),
        value("ordertype"),
        value("price")
    );
    if matches!(value("validate"), "true" | "1") {
        return Answer::accepted(json!({
            "error": [],
            "result": { "descr": { "order": description } }
        }));
    }
    let order = state.next_order.fetch_add(1, Ordering::Relaxed);
    Answer::accepted(json!({
        "error": [],
        "result": {
            "descr": { "order": description },
            "txid": [format!("OSTAND-IN{order:05}-KRAKEN")]
        }
    }))
}
