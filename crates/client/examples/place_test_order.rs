//! Places a Binance order through user-service's signing route: the order router's path,
//! without the trader's secret ever leaving user-service.
//!
//! ```text
//! USER_SERVICE_URL=http://127.0.0.1:8000 SERVICE_TOKEN=… USER_ID=42 \
//! BINANCE_URL=http://127.0.0.1:<stand-in port> \
//! cargo run -p user-service-client --example place_test_order
//! ```
//!
//! By default it validates a LIMIT order with `POST /api/v3/order/test`; with `ORDER=real` it
//! places it with `POST /api/v3/order`. `SYMBOL`, `QUANTITY` and `PRICE` override the order.

use std::process::ExitCode;
use std::time::Duration;

use secrecy::SecretString;
use user_service_client::{BrokerRequest, SigningClient};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn required(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} must be set"))
}

fn optional(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn run() -> Result<(), String> {
    let client = SigningClient::new(
        required("USER_SERVICE_URL")?,
        SecretString::from(required("SERVICE_TOKEN")?),
    );
    let user_id: i64 = required("USER_ID")?
        .parse()
        .map_err(|_| "USER_ID must be an integer".to_owned())?;
    let binance_url = required("BINANCE_URL")?;
    let path = if optional("ORDER", "test") == "real" {
        "/api/v3/order"
    } else {
        "/api/v3/order/test"
    };

    let order = BrokerRequest::post(path)
        .form("symbol", optional("SYMBOL", "BTCUSDT"))
        .form("side", "BUY")
        .form("type", "LIMIT")
        .form("timeInForce", "GTC")
        .form("quantity", optional("QUANTITY", "0.001"))
        .form("price", optional("PRICE", "20000"));
    let ready = client
        .sign(user_id, "binance", &order)
        .map_err(|e| format!("user-service did not sign the order: {e}"))?;

    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = ready
        .send(&agent, &binance_url)
        .map_err(|e| format!("Binance could not be reached: {e}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("Binance's answer could not be read: {e}"))?;
    println!("POST {path} -> {status}");
    println!("{body}");
    Ok(())
}
