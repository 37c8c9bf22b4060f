//! Shared by the integration tests: keys known to the stand-ins and a way to send a signed
//! request.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use user_service_brokers::BrokerProtocols;
use user_service_domain::{
    BrokerId, HttpMethod, PlainSecret, RequestSigner, SignError, SignedRequest, UnsignedRequest,
};

pub const BINANCE_KEY: &str = "binance-test-key-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL";
pub const BINANCE_SECRET: &str = "binance-test-secret-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvuts";
pub const KRAKEN_KEY: &str = "kraken-test-key-Pw4tnbf9enZmpewCTKEwmmzO18LXZcHQcu7HPLWre4l8V9I3y";
/// Base64, as Kraken private keys are.
pub const KRAKEN_SECRET: &str =
    "c3RhbmQtaW4ga3Jha2VuIHNlY3JldCwgc2l4dHktZm91ciBieXRlcyBsb25nLCBmb3IgdGVzdHMgb25seSEhISE=";
pub const ALPACA_KEY: &str = "PKSTANDINKEYID0123456";
pub const ALPACA_SECRET: &str = "alpaca-test-secret-key-0123456789abcdefghij";

pub fn broker(name: &str) -> BrokerId {
    BrokerId::parse(name).unwrap()
}

pub fn request(
    method: HttpMethod,
    path: &str,
    query: Option<&str>,
    body: Option<&str>,
) -> UnsignedRequest {
    UnsignedRequest::parse(method, path, query, body).unwrap()
}

pub fn sign_at(
    broker_name: &str,
    request: &UnsignedRequest,
    key: &str,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<SignedRequest, SignError> {
    BrokerProtocols::new().sign(
        &broker(broker_name),
        request,
        &PlainSecret::new(key),
        &PlainSecret::new(secret),
        now,
    )
}

pub fn sign(
    broker_name: &str,
    request: &UnsignedRequest,
    key: &str,
    secret: &str,
) -> SignedRequest {
    sign_at(broker_name, request, key, secret, Utc::now()).unwrap()
}

/// Sends a signed request to `base` and returns the status and the JSON answer.
pub fn send(
    base: &str,
    method: HttpMethod,
    path: &str,
    signed: &SignedRequest,
) -> (u16, serde_json::Value) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut url = format!("{base}{path}");
    if !signed.query.is_empty() {
        url = format!("{url}?{}", signed.query);
    }
    let builder = ureq::http::Request::builder()
        .method(method.as_str())
        .uri(url.as_str());
    let builder = signed
        .headers
        .iter()
        .fold(builder, |b, (name, value)| b.header(name, value));
    let response = if method == HttpMethod::Get {
        agent.run(builder.body(()).unwrap())
    } else {
        agent.run(builder.body(signed.body.as_str()).unwrap())
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap())
}
