//! The credential contract (docs/contract.md#broker-credentials) end to end.

use serde_json::json;

use crate::support::{Backend, TestServer};

const PATH: &str = "/users/me/broker-credentials";

fn update_rules_keep_clear_set(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("rules@example.com", false);

    let answer = server.put_credentials(
        &token,
        json!([{"broker": " Binance ", "api_key": "abcd1234efgh", "api_secret": "xyz"}]),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let entry = &answer.body["credentials"][0];
    assert_eq!(entry["broker"], "binance");
    assert_eq!(entry["api_key_masked"], "••••••••efgh");
    assert_eq!(entry["api_secret_masked"], "•••");
    assert_eq!(entry["has_api_key"], true);

    // Absent field keeps, a new value replaces only that half.
    let answer = server.put_credentials(
        &token,
        json!([{"broker": "binance", "api_secret": "new-secret-9999"}]),
    );
    let entry = &answer.body["credentials"][0];
    assert_eq!(entry["api_key_masked"], "••••••••efgh");
    assert_eq!(entry["api_secret_masked"], "•••••••••••9999");

    // null clears the key; whitespace clears the secret → row deleted.
    let answer = server.put_credentials(&token, json!([{"broker": "binance", "api_key": null}]));
    let entry = &answer.body["credentials"][0];
    assert_eq!(entry["has_api_key"], false);
    assert_eq!(entry["api_key_masked"], serde_json::Value::Null);
    assert_eq!(entry["has_api_secret"], true);
    let answer =
        server.put_credentials(&token, json!([{"broker": "binance", "api_secret": "   "}]));
    assert_eq!(answer.body["credentials"], json!([]));

    // Entry with neither field is skipped; a pasted value loses its surrounding white space.
    let answer = server.put_credentials(
        &token,
        json!([{"broker": "kraken"}, {"broker": "alpaca", "api_key": "  KEY-7777  "}]),
    );
    assert_eq!(answer.body["credentials"].as_array().unwrap().len(), 1);
    assert_eq!(answer.body["credentials"][0]["api_key_masked"], "••••7777");
    // A broker id outside letters, digits, '-', '_' and '.' is refused.
    let answer = server.put_credentials(&token, json!([{"broker": "my broker", "api_key": "k"}]));
    assert_eq!(answer.status, 422, "{}", answer.text);
}

fn listing_is_ordered_by_broker_and_aliases_agree(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("order@example.com", false);
    server.put_credentials(
        &token,
        json!([
            {"broker": "kraken", "api_key": "k1234"},
            {"broker": "binance", "api_key": "b1234"},
            {"broker": "ibkr", "api_secret": "i1234"},
        ]),
    );
    let list = server.call("GET", PATH, Some(&token), None);
    let brokers: Vec<_> = list.body["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["broker"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(brokers, ["binance", "ibkr", "kraken"]);
    let alias = server.call("GET", "/users/me/api-credentials", Some(&token), None);
    assert_eq!(alias.body, list.body);
    let posted = server.call(
        "POST",
        "/users/me/api-credentials",
        Some(&token),
        Some(json!({"credentials": [{"broker": "alpaca", "api_key": "a1234"}]})),
    );
    assert_eq!(posted.status, 200);
    assert_eq!(posted.body["credentials"].as_array().unwrap().len(), 4);
}

fn invalid_entries_are_4xx_and_change_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("bad@example.com", false);
    server.put_credentials(
        &token,
        json!([{"broker": "binance", "api_key": "original-key"}]),
    );
    let before = server.call("GET", PATH, Some(&token), None).body;

    let blank = server.put_credentials(&token, json!([{"broker": "   ", "api_key": "x"}]));
    assert_eq!(blank.status, 400);
    assert_eq!(blank.detail(), "Broker identifier is required");

    let duplicate = server.put_credentials(
        &token,
        json!([{"broker": "binance", "api_key": "a"}, {"broker": "BINANCE", "api_key": "b"}]),
    );
    assert_eq!(duplicate.status, 400, "{}", duplicate.text);

    let long_broker =
        server.put_credentials(&token, json!([{"broker": "b".repeat(65), "api_key": "x"}]));
    assert_eq!(long_broker.status, 422);

    let ok = server.put_credentials(
        &token,
        json!([{"broker": "kraken", "api_secret": "s".repeat(4096)}]),
    );
    assert_eq!(ok.status, 200, "4096 characters are accepted");
    let too_long = server.put_credentials(&token,
        json!([{"broker": "binance", "api_secret": "s".repeat(4097)}, {"broker": "alpaca", "api_key": "zz"}]),
    );
    assert_eq!(too_long.status, 422);
    assert!(too_long.body["errors"][0]["field"]
        .as_str()
        .unwrap()
        .contains("api_secret"));

    let wrong_type =
        server.put_credentials(&token, json!([{"broker": "binance", "api_key": 12345678}]));
    assert_eq!(wrong_type.status, 422);
    assert!(
        !wrong_type.text.contains("12345678"),
        "the value is not echoed"
    );

    // Malformed JSON, a form, a body over the limit.
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(70_000));
    for (content_type, body, status) in [
        ("application/json", "{\"credentials\": [", 400),
        ("application/x-www-form-urlencoded", "a=b", 415),
        ("application/json", huge.as_str(), 413),
    ] {
        let answer = server.call_raw("PUT", PATH, &token, content_type, body);
        assert_eq!(answer.status, status, "{content_type}: {}", answer.text);
    }

    let mut after = server.call("GET", PATH, Some(&token), None).body;
    after["credentials"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["broker"] != "kraken");
    assert_eq!(after, before, "failed writes changed nothing");
}

fn delete_routes(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("del@example.com", false);
    server.put_credentials(
        &token,
        json!([{"broker": "binance", "api_key": "k"}, {"broker": "kraken", "api_key": "k"}]),
    );
    assert_eq!(
        server
            .call(
                "DELETE",
                "/users/me/api-credentials/binance",
                Some(&token),
                None
            )
            .status,
        204
    );
    assert_eq!(
        server
            .call(
                "DELETE",
                "/users/me/broker-credentials/KRAKEN",
                Some(&token),
                None
            )
            .status,
        204
    );
    let missing = server.call(
        "DELETE",
        "/users/me/broker-credentials/kraken",
        Some(&token),
        None,
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.detail(), "Broker credential not found");
    assert!(missing.body["request_id"].is_string());
}

fn table_holds_ciphertext_only(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("cipher@example.com", false);
    let key = "AKIAIOSFODNN7EXAMPLE";
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    assert_eq!(
        server
            .put_credentials(
                &token,
                json!([{"broker": "binance", "api_key": key, "api_secret": secret}])
            )
            .status,
        200
    );
    let rows = server.db.credential_rows();
    assert_eq!(rows.len(), 1);
    for value in [rows[0].2.as_deref().unwrap(), rows[0].3.as_deref().unwrap()] {
        assert!(value.starts_with("gAAAAA"), "{value}");
        for plain in [key, secret, "AKIA", "EXAMPLE"] {
            assert!(!value.contains(plain));
        }
    }
}

fn copied_row_is_undecryptable_for_its_new_owner(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let ((a, token_a), (b, token_b)) = server.two_binance_traders("a@example.com", "b@example.com");
    // An attacker with write access copies B's ciphertext (and tag) into A's row, moving the
    // version forward as this service's writes do (the database refuses a write that does not).
    server.db.execute(&format!(
        "UPDATE user_broker_credentials SET \
         api_key_encrypted = (SELECT api_key_encrypted FROM user_broker_credentials WHERE user_id = {b}), \
         api_secret_encrypted = (SELECT api_secret_encrypted FROM user_broker_credentials WHERE user_id = {b}), \
         binding = (SELECT binding FROM user_broker_credentials WHERE user_id = {b}), \
         version = version + 1 \
         WHERE user_id = {a}"
    ));
    let list = server.call("GET", PATH, Some(&token_a), None);
    assert_eq!(list.status, 200);
    let entry = &list.body["credentials"][0];
    assert_eq!(entry["status"], "undecryptable");
    assert_eq!(entry["has_api_key"], true);
    assert_eq!(entry["api_key_masked"], serde_json::Value::Null);
    assert!(
        !list.text.contains("•2222")
            && !list.text.contains("b-key")
            && !list.text.contains("b-secret")
    );
    server.output_with("cannot be decrypted or failed its binding check");
    // B still reads its own.
    let own = server.call("GET", PATH, Some(&token_b), None);
    assert_eq!(own.body["credentials"][0]["api_key_masked"], "••••••2222");
}

fn rows_under_another_key_are_marked_not_fatal(backend: Backend) {
    let Some(db) = crate::support::TestDatabase::create(backend) else {
        return;
    };
    let server = TestServer::start_on(
        db,
        &[(
            "BROKER_CREDENTIALS_ENCRYPTION_KEY",
            Some(crate::support::OTHER_KEY),
        )],
    )
    .unwrap();
    let (_, token) = server.user("rot@example.com", false);
    server.put_credentials(
        &token,
        json!([{"broker": "binance", "api_key": "k-123456"}]),
    );
    let mut server = server;
    server.stop();
    let db = std::mem::replace(
        &mut server.db,
        crate::support::TestDatabase::create(crate::support::Backend::Sqlite).unwrap(),
    );
    drop(server);
    let server = TestServer::start_on(db, &[]).unwrap();
    let list = server.call("GET", PATH, Some(&token), None);
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["credentials"][0]["status"], "undecryptable");
}

crate::test_on_both_backends!(
    update_rules_keep_clear_set,
    listing_is_ordered_by_broker_and_aliases_agree,
    invalid_entries_are_4xx_and_change_nothing,
    delete_routes,
    table_holds_ciphertext_only,
    copied_row_is_undecryptable_for_its_new_owner,
    rows_under_another_key_are_marked_not_fatal,
);

/// A loopback server answering every request like Binance's account endpoint does for valid keys.
fn binance_stub() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = r#"{"balances":[]}"#;
            let mut stream = stream;
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    url
}

fn connection_test_calls_the_broker_and_stores_the_result(backend: Backend) {
    let stub = binance_stub();
    let Some(server) = TestServer::start(backend, &[("BROKER_PROBE_BINANCE_URL", Some(&stub))])
    else {
        return;
    };
    let (_, token) = server.user("probe@example.com", false);
    server.put_credentials(
        &token,
        json!([{"broker": "binance", "api_key": "bk-1234", "api_secret": "bs-5678"}]),
    );
    let test = server.call(
        "POST",
        "/users/me/api-credentials/test",
        Some(&token),
        Some(json!({"broker": "Binance"})),
    );
    assert_eq!(test.status, 200, "{}", test.text);
    assert_eq!(test.body["status"], "ok");
    assert_eq!(test.body["message"], "Connexion établie avec succès.");
    assert!(test.body["tested_at"].is_string());
    let list = server.call("GET", PATH, Some(&token), None);
    assert_eq!(list.body["credentials"][0]["last_test_status"], "ok");

    let missing = server.call(
        "POST",
        "/users/me/api-credentials/test",
        Some(&token),
        Some(json!({"broker": "kraken", "api_key": "only-key"})),
    );
    assert_eq!(
        (
            missing.body["status"].as_str(),
            missing.body["message"].as_str()
        ),
        (
            Some("missing_credentials"),
            Some("Clés API manquantes pour ce broker.")
        )
    );
    let no_adapter = server.call(
        "POST",
        "/users/me/api-credentials/test",
        Some(&token),
        Some(json!({"broker": "ibkr", "api_key": "k", "api_secret": "s"})),
    );
    assert_eq!(no_adapter.body["status"], "network_error");
    assert_eq!(
        no_adapter.body["message"],
        "Vérification automatique indisponible pour ce broker."
    );
    // The message follows Accept-Language (French when it names neither).
    let english = server.call_with(
        "POST",
        "/users/me/api-credentials/test",
        Some(&token),
        Some(json!({"broker": "kraken", "api_key": "only-key"})),
        &[("Accept-Language", "en-GB,en;q=0.9")],
    );
    assert_eq!(
        (
            english.body["status"].as_str(),
            english.body["message"].as_str(),
            english.header("content-language")
        ),
        (
            Some("missing_credentials"),
            Some("The API key or secret is missing for this broker."),
            Some("en")
        )
    );
    let other = server.call_with(
        "POST",
        "/users/me/api-credentials/test",
        Some(&token),
        Some(json!({"broker": "binance"})),
        &[("Accept-Language", "de-DE")],
    );
    assert_eq!(other.body["message"], "Connexion établie avec succès.");
    // A new write resets the last test result.
    server.put_credentials(
        &token,
        json!([{"broker": "binance", "api_secret": "bs-0000"}]),
    );
    let list = server.call("GET", PATH, Some(&token), None);
    assert_eq!(
        list.body["credentials"][0]["last_test_status"],
        serde_json::Value::Null
    );
}

crate::test_on_both_backends!(connection_test_calls_the_broker_and_stores_the_result,);
