//! The operating document's post-deployment checks (docs/contract.md#post-deployment-checks), against the real process.

use serde_json::json;

use crate::support::{Backend, TestDatabase, TestServer, TEST_KEY, WITHOUT_KEY};

fn new_user_has_no_credentials(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("new@example.com", false);
    let answer = server.call("GET", "/users/me/broker-credentials", Some(&token), None);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({"credentials": []}));
}

fn missing_key_is_logged_and_answers_503_when_not_required(backend: Backend) {
    let Some(server) = TestServer::start(backend, &WITHOUT_KEY) else {
        return;
    };
    server.output_with("broker credentials encryption key misconfigured: BROKER_CREDENTIALS_ENCRYPTION_KEY is not set");
    let (_, token) = server.user("nokey@example.com", false);
    let answer = server.call("GET", "/users/me/broker-credentials", Some(&token), None);
    assert_eq!(
        (answer.status, answer.detail()),
        (503, "Broker credentials encryption key is not configured")
    );
    let put = server.call(
        "PUT",
        "/users/me/broker-credentials",
        Some(&token),
        Some(json!({"credentials": [{"broker": "binance", "api_key": "k"}]})),
    );
    assert_eq!(put.status, 503);
    // DELETE does not need the key.
    assert_eq!(
        server
            .call(
                "DELETE",
                "/users/me/broker-credentials/binance",
                Some(&token),
                None
            )
            .status,
        404
    );
    let ready = server.call("GET", "/ready", None, None);
    assert_eq!(ready.status, 503);
    assert!(ready.body["encryption_key"]
        .as_str()
        .unwrap()
        .contains("not set"));
}

fn during_a_key_outage_stored_keys_are_listed_as_unavailable(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("outage@example.com", false);
    let stored = server.call(
        "PUT",
        "/users/me/broker-credentials",
        Some(&token),
        Some(json!({"credentials": [
            {"broker": "binance", "api_key": "outage-key-1234", "api_secret": "outage-secret-5678"},
            {"broker": "my-exchange", "api_key": "custom-key-9999"},
        ]})),
    );
    assert_eq!(stored.status, 200, "{}", stored.text);
    let without_key =
        TestServer::start_on(server.db.alias(), &WITHOUT_KEY).expect("starts without a key");
    let answer = without_key.call("GET", "/users/me/broker-credentials", Some(&token), None);
    assert_eq!(
        (answer.status, answer.detail()),
        (503, "Broker credentials encryption key is not configured")
    );
    assert_eq!(answer.body["code"], "encryption_key_not_configured");
    let entries: Vec<_> = answer.body["credentials"]
        .as_array()
        .expect("what is stored")
        .iter()
        .map(|e| {
            (
                e["broker"].as_str().unwrap(),
                e["has_api_key"].as_bool().unwrap(),
                e["has_api_secret"].as_bool().unwrap(),
                e["api_key_masked"].is_null() && e["api_secret_masked"].is_null(),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("binance", true, true, true, "key_unavailable"),
            ("my-exchange", true, false, true, "key_unavailable"),
        ]
    );
    assert!(
        !answer.text.contains("outage-") && !answer.text.contains("gAAAAA"),
        "{}",
        answer.text
    );
}

fn invalid_key_stops_the_process_before_binding_when_required(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let output = TestServer::start_on(
        db,
        &[(
            "BROKER_CREDENTIALS_ENCRYPTION_KEY",
            Some("not-a-fernet-key"),
        )],
    )
    .err()
    .expect("the server refuses to start");
    assert!(
        output.contains("broker credentials encryption key misconfigured"),
        "{output}"
    );
    assert!(
        !output.contains("not-a-fernet-key"),
        "the value is never printed"
    );
    assert!(!output.contains("listening on"));
}

fn key_from_a_mounted_file_is_read_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, format!("{TEST_KEY}\n")).unwrap();
    let Some(server) = TestServer::start(
        backend,
        &[
            ("BROKER_CREDENTIALS_ENCRYPTION_KEY", None),
            (
                "BROKER_CREDENTIALS_ENCRYPTION_KEY_FILE",
                Some(file.to_str().unwrap()),
            ),
        ],
    ) else {
        return;
    };
    let (_, token) = server.user("file@example.com", false);
    // The file disappears: the cached ring keeps serving.
    std::fs::remove_file(&file).unwrap();
    let put = server.call(
        "PUT",
        "/users/me/broker-credentials",
        Some(&token),
        Some(json!({"credentials": [{"broker": "binance", "api_key": "abcdefgh"}]})),
    );
    assert_eq!(put.status, 200);
    let ready = server.call("GET", "/ready", None, None);
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["key_ids"].as_array().unwrap().len(), 1);
}

crate::test_on_both_backends!(
    new_user_has_no_credentials,
    missing_key_is_logged_and_answers_503_when_not_required,
    during_a_key_outage_stored_keys_are_listed_as_unavailable,
    invalid_key_stops_the_process_before_binding_when_required,
    key_from_a_mounted_file_is_read_once,
);
