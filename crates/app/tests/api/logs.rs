//! No secret ever reaches the logs, even at the most verbose level.

use serde_json::json;

use user_service_test_support::stub::Stub;

use crate::support::{Backend, TestServer, JWT_SECRET, TEST_KEY};

fn no_secret_in_the_logs(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[("RUST_LOG", Some("trace"))]) else {
        return;
    };
    let (user, token) = server.user("logs@example.com", false);
    let (_, op) = server.user("logs-op@example.com", true);
    let key = "LOGKEY-AKIA-9f8e7d6c5b4a";
    let secret = "LOGSECRET-wJalrXUtnFEMI-K7MDENG";
    let long_secret = format!("LONGSECRET-{}", "z".repeat(5000));
    let path = "/users/me/broker-credentials";
    let mut responses = Vec::new();
    for (method, p, body) in [
        (
            "PUT",
            path.to_owned(),
            Some(
                json!({"credentials": [{"broker": "binance", "api_key": key, "api_secret": secret}]}),
            ),
        ),
        ("GET", path.to_owned(), None),
        (
            "PUT",
            path.to_owned(),
            Some(json!({"credentials": [{"broker": "kraken", "api_secret": long_secret}]})),
        ),
        (
            "PUT",
            path.to_owned(),
            Some(
                json!({"credentials": [{"broker": "binance", "api_key": key}, {"broker": "binance", "api_key": secret}]}),
            ),
        ),
        (
            "PUT",
            path.to_owned(),
            Some(
                json!({"credentials": [{"broker": "binance", "api_key": 42, "api_secret": secret}]}),
            ),
        ),
        (
            "POST",
            "/users/me/api-credentials".to_owned(),
            Some(json!({"credentials": [{"broker": "binance", "api_secret": secret}]})),
        ),
        ("GET", format!("/users/{user}/broker-credentials"), None),
        (
            "DELETE",
            "/users/me/api-credentials/kraken".to_owned(),
            None,
        ),
        (
            "DELETE",
            "/users/me/api-credentials/nothing".to_owned(),
            None,
        ),
    ] {
        responses.push(server.call(method, &p, Some(&token), body.clone()));
        responses.push(server.call(method, &p, Some(&op), body));
    }
    responses.push(server.call(
        "GET",
        path,
        Some("eyJhbGciOiJIUzI1NiJ9.e30.forged-signature"),
        None,
    ));
    // The access line of the last request: every earlier line has arrived too.
    let output = server.output_with("GET /users/me/broker-credentials 401");
    assert!(
        output.contains("TRACE") || output.contains("DEBUG"),
        "the most verbose level is on"
    );
    assert!(
        output.contains("PUT /users/me/broker-credentials 200"),
        "access log present"
    );
    let stored: Vec<String> = server
        .db
        .credential_rows()
        .into_iter()
        .flat_map(|r| [r.2, r.3])
        .flatten()
        .collect();
    assert!(!stored.is_empty());
    for needle in [
        key,
        secret,
        &long_secret[..40],
        TEST_KEY,
        JWT_SECRET,
        &token,
        &op,
        "forged-signature",
    ] {
        assert!(
            !output.contains(needle),
            "a secret reached the logs: {needle}"
        );
    }
    for token in stored {
        assert!(!output.contains(&token), "a Fernet token reached the logs");
    }
    for answer in responses {
        assert!(
            !answer.text.contains(key) && !answer.text.contains(secret),
            "a plaintext reached a response"
        );
    }
}

crate::test_on_both_backends!(no_secret_in_the_logs,);

/// The secrets of the outgoing-calls test: none may reach the log, whole, split across lines, or
/// as a hex dump.
const VAULT_TOKEN: &str = "hvs.LOGTEST-vault-token-7c1e9a";
const DOPPLER_TOKEN: &str = "dp.st.LOGTEST-doppler-token-4b2f";
const ENTITLEMENTS_KEY: &str = "LOGTEST-entitlements-key-8d3a";
const BROKER_KEY: &str = "LOGTESTBROKERKEY0001";
const BROKER_SECRET: &str = "LOGTESTBROKERSECRET9876";
/// Kraken secrets are base64.
const KRAKEN_SECRET: &str = "TE9HVEVTVEtSQUtFTlNFQ1JFVDAwMDE=";

/// Every way a secret can be spread over log lines: the output as printed; the messages with the
/// line prefixes and all white space removed (an ASCII column cut across lines); and the bytes of
/// every run of hex digits (a hex dump), decoded.
fn readings(output: &str) -> Vec<String> {
    let messages: String = output
        .lines()
        .map(|line| line.split_once("] ").map_or(line, |(_, message)| message))
        .collect::<Vec<_>>()
        .join("");
    let squeezed: String = messages.chars().filter(|c| !c.is_whitespace()).collect();
    // Hex dumps print bytes as words of hex digits (`4745 5420` or `47 45`), the offset and the
    // ASCII column apart: decode every word made of an even number of hex digits, in order.
    let decoded: Vec<u8> = output
        .split_whitespace()
        .filter(|word| word.len() % 2 == 0 && word.chars().all(|c| c.is_ascii_hexdigit()))
        .flat_map(|word| {
            word.as_bytes()
                .chunks(2)
                .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                .collect::<Vec<_>>()
        })
        .collect();
    vec![
        output.to_owned(),
        squeezed,
        String::from_utf8_lossy(&decoded).into_owned(),
    ]
}

fn assert_no_secret(output: &str, secrets: &[&str]) {
    let readings = readings(output);
    for secret in secrets {
        for (reading, text) in ["as printed", "across lines", "hex-decoded"]
            .iter()
            .zip(&readings)
        {
            assert!(
                !text.contains(secret),
                "a secret reached the logs ({reading})"
            );
        }
    }
}

/// Every call this service makes to another system, at `RUST_LOG=trace`: the secret manager
/// (Vault) for the key ring, the JWT secret and the entitlements key; the entitlements service;
/// each broker's connection test with stored and with sent values.
#[test]
fn no_secret_of_an_outgoing_call_reaches_the_logs() {
    use user_service_brokers::stand_in::{AlpacaStandIn, BinanceStandIn, KrakenStandIn};

    let vault = Stub::start(|seen| {
        if seen.header("x-vault-token") != Some(VAULT_TOKEN) {
            return (403, r#"{"errors":["permission denied"]}"#.into());
        }
        let value = if seen.target.ends_with("/BROKER_CREDENTIALS_ENCRYPTION_KEY") {
            TEST_KEY
        } else if seen.target.ends_with("/JWT_SECRET") {
            JWT_SECRET
        } else if seen.target.ends_with("/ENTITLEMENTS_SERVICE_API_KEY") {
            ENTITLEMENTS_KEY
        } else {
            return (404, r#"{"errors":[]}"#.into());
        };
        (
            200,
            json!({"data": {"data": {"value": value}, "metadata": {}}}).to_string(),
        )
    });
    let entitlements = Stub::start(|seen| {
        if seen.header("authorization") != Some(&format!("Bearer {ENTITLEMENTS_KEY}") as &str) {
            return (401, "{}".into());
        }
        (
            200,
            json!({"capabilities": {"can.use_users": true}, "quotas": {}}).to_string(),
        )
    });
    let binance = BinanceStandIn::start([(BROKER_KEY, BROKER_SECRET)]).unwrap();
    let kraken = KrakenStandIn::start([(BROKER_KEY, KRAKEN_SECRET)]).unwrap();
    let alpaca = AlpacaStandIn::start([(BROKER_KEY, BROKER_SECRET)]).unwrap();
    let (binance_url, kraken_url, alpaca_url) = (binance.url(), kraken.url(), alpaca.url());
    let Some(server) = TestServer::start(
        Backend::Sqlite,
        &[
            ("RUST_LOG", Some("trace")),
            ("SECRET_MANAGER_PROVIDER", Some("vault")),
            ("VAULT_ADDR", Some(&vault.url)),
            ("VAULT_TOKEN", Some(VAULT_TOKEN)),
            ("BROKER_CREDENTIALS_ENCRYPTION_KEY", None),
            ("JWT_SECRET", None),
            ("ENTITLEMENTS_PROVIDER", Some("remote")),
            ("ENTITLEMENTS_SERVICE_URL", Some(&entitlements.url)),
            ("BROKER_PROBE_BINANCE_URL", Some(&binance_url)),
            ("BROKER_PROBE_KRAKEN_URL", Some(&kraken_url)),
            ("BROKER_PROBE_ALPACA_URL", Some(&alpaca_url)),
        ],
    ) else {
        return;
    };
    let (_, token) = server.user("outgoing@example.com", false);
    let stored = json!({"credentials": [
        {"broker": "binance", "api_key": BROKER_KEY, "api_secret": BROKER_SECRET},
        {"broker": "kraken", "api_key": BROKER_KEY, "api_secret": KRAKEN_SECRET},
        {"broker": "alpaca", "api_key": BROKER_KEY, "api_secret": BROKER_SECRET},
    ]});
    assert_eq!(
        server
            .call(
                "PUT",
                "/users/me/broker-credentials",
                Some(&token),
                Some(stored)
            )
            .status,
        200
    );
    for broker in ["binance", "kraken", "alpaca"] {
        let stored = server.call(
            "POST",
            "/users/me/api-credentials/test",
            Some(&token),
            Some(json!({"broker": broker})),
        );
        assert_eq!(stored.body["status"], "ok", "{broker}: {}", stored.text);
    }
    let sent =
        json!({"broker": "binance", "api_key": BROKER_KEY, "api_secret": "LOGTESTWRONGSECRET5555"});
    let wrong = server.call(
        "POST",
        "/users/me/api-credentials/test",
        Some(&token),
        Some(sent),
    );
    assert_eq!(wrong.body["status"], "unauthorized", "{}", wrong.text);
    // The access line of the last request: every earlier line has arrived too.
    let output = server.output_with("POST /users/me/api-credentials/test 200");
    assert_no_secret(
        &output,
        &[
            VAULT_TOKEN,
            ENTITLEMENTS_KEY,
            TEST_KEY,
            JWT_SECRET,
            BROKER_KEY,
            BROKER_SECRET,
            KRAKEN_SECRET,
            "LOGTESTWRONGSECRET5555",
            &token,
        ],
    );
}

/// Doppler, the other secret manager, at `RUST_LOG=trace`.
#[test]
fn no_secret_of_the_doppler_calls_reaches_the_logs() {
    let doppler = Stub::start(|seen| {
        if seen.header("authorization") != Some(&format!("Bearer {DOPPLER_TOKEN}") as &str) {
            return (401, "{}".into());
        }
        let value = if seen
            .target
            .contains("name=BROKER_CREDENTIALS_ENCRYPTION_KEY")
        {
            TEST_KEY
        } else if seen.target.contains("name=JWT_SECRET") {
            JWT_SECRET
        } else {
            return (404, "{}".into());
        };
        (
            200,
            json!({"name": "x", "value": {"raw": value, "computed": value}}).to_string(),
        )
    });
    let Some(server) = TestServer::start(
        Backend::Sqlite,
        &[
            ("RUST_LOG", Some("trace")),
            ("SECRET_MANAGER_PROVIDER", Some("doppler")),
            ("DOPPLER_API_URL", Some(&doppler.url)),
            ("DOPPLER_TOKEN", Some(DOPPLER_TOKEN)),
            ("DOPPLER_PROJECT", Some("trading")),
            ("DOPPLER_CONFIG", Some("prd")),
            ("BROKER_CREDENTIALS_ENCRYPTION_KEY", None),
            ("JWT_SECRET", None),
        ],
    ) else {
        return;
    };
    let (_, token) = server.user("doppler@example.com", false);
    assert_eq!(
        server
            .call("GET", "/users/me/broker-credentials", Some(&token), None)
            .status,
        200
    );
    let output = server.output_with("GET /users/me/broker-credentials 200");
    assert_no_secret(&output, &[DOPPLER_TOKEN, TEST_KEY, JWT_SECRET, &token]);
}
