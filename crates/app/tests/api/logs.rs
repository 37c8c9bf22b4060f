//! No secret ever reaches the logs, even at the most verbose level.

use serde_json::json;

use crate::on_both_backends;
use crate::support::{TestServer, JWT_SECRET, TEST_KEY};

on_both_backends! {
    fn no_secret_in_the_logs(backend: Backend) {
        let Some(server) = TestServer::start(backend, &[("RUST_LOG", Some("trace"))]) else { return };
        let (user, token) = server.user("logs@example.com", false);
        let (_, op) = server.user("logs-op@example.com", true);
        let key = "LOGKEY-AKIA-9f8e7d6c5b4a";
        let secret = "LOGSECRET-wJalrXUtnFEMI-K7MDENG";
        let long_secret = format!("LONGSECRET-{}", "z".repeat(5000));
        let path = "/users/me/broker-credentials";
        let mut responses = Vec::new();
        for (method, p, body) in [
            ("PUT", path.to_owned(), Some(json!({"credentials": [{"broker": "binance", "api_key": key, "api_secret": secret}]}))),
            ("GET", path.to_owned(), None),
            ("PUT", path.to_owned(), Some(json!({"credentials": [{"broker": "kraken", "api_secret": long_secret}]}))),
            ("PUT", path.to_owned(), Some(json!({"credentials": [{"broker": "binance", "api_key": key}, {"broker": "binance", "api_key": secret}]}))),
            ("PUT", path.to_owned(), Some(json!({"credentials": [{"broker": "binance", "api_key": 42, "api_secret": secret}]}))),
            ("POST", "/users/me/api-credentials".to_owned(), Some(json!({"credentials": [{"broker": "binance", "api_secret": secret}]}))),
            ("GET", format!("/users/{user}/broker-credentials"), None),
            ("DELETE", "/users/me/api-credentials/kraken".to_owned(), None),
            ("DELETE", "/users/me/api-credentials/nothing".to_owned(), None),
        ] {
            responses.push(server.call(method, &p, Some(&token), body.clone()));
            responses.push(server.call(method, &p, Some(&op), body));
        }
        responses.push(server.call("GET", path, Some("eyJhbGciOiJIUzI1NiJ9.e30.forged-signature"), None));
        // The access line of the last request: every earlier line has arrived too.
        let output = server.output_with("GET /users/me/broker-credentials 401");
        assert!(output.contains("TRACE") || output.contains("DEBUG"), "the most verbose level is on");
        assert!(output.contains("PUT /users/me/broker-credentials 200"), "access log present");
        let stored: Vec<String> = server.db.credential_rows().into_iter().flat_map(|r| [r.2, r.3]).flatten().collect();
        assert!(!stored.is_empty());
        for needle in [key, secret, &long_secret[..40], TEST_KEY, JWT_SECRET, &token, &op, "forged-signature"] {
            assert!(!output.contains(needle), "a secret reached the logs: {needle}");
        }
        for token in stored {
            assert!(!output.contains(&token), "a Fernet token reached the logs");
        }
        for answer in responses {
            assert!(!answer.text.contains(key) && !answer.text.contains(secret), "a plaintext reached a response");
        }
    }
}
