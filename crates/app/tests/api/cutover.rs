//! Binding and cut-over mode, tried the way an attacker with write access to the table would:
//! on a database this service created, no moved, stripped, swapped or replayed ciphertext is
//! ever served; a database that still holds the Python service's rows reads them until
//! `cutover close`, then reads only bound rows.

use serde_json::{json, Value};

use crate::support::{Backend, TestServer};

const PATH: &str = "/users/me/broker-credentials";

/// `user_id`'s entry for `broker` as the API shows it to its owner.
fn entry(server: &TestServer, token: &str, broker: &str) -> Value {
    let list = server.call("GET", PATH, Some(token), None);
    assert_eq!(list.status, 200, "{}", list.text);
    list.body["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["broker"] == broker)
        .cloned()
        .unwrap_or_else(|| panic!("no {broker} entry in {}", list.text))
}

/// SQL literal of a stored column.
fn lit(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or_else(|| "NULL".to_owned(), |v| format!("'{v}'"))
}

/// Sets the row's five stored columns (`[key, secret, key_id, binding, version]`).
fn overwrite(user: i64, broker: &str, columns: &[Option<String>; 5]) -> String {
    let [key, secret, key_id, binding, version] = columns;
    format!(
        "UPDATE user_broker_credentials SET api_key_encrypted = {}, api_secret_encrypted = {}, \
         key_id = {}, binding = {}, version = {} WHERE user_id = {user} AND broker = '{broker}'",
        lit(key),
        lit(secret),
        lit(key_id),
        lit(binding),
        version.as_deref().unwrap()
    )
}

/// One attack move: the SQL statement, written from the rows as they are when it runs.
type Move<'a> = Box<dyn Fn() -> String + 'a>;

fn bump(version: &Option<String>, by: i64) -> Option<String> {
    Some((version.as_deref().unwrap().parse::<i64>().unwrap() + by).to_string())
}

fn no_move_of_a_ciphertext_is_served_on_a_fresh_database(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let ready = server.call("GET", "/ready", None, None);
    assert_eq!(ready.body["cutover"], "closed", "{}", ready.text);
    let (a, token_a) = server.user("victim@example.com", false);
    let (b, token_b) = server.user("owner@example.com", false);
    let a_values = json!([
        {"broker": "binance", "api_key": "a-key-1111", "api_secret": "a-secret-1111"},
        {"broker": "kraken", "api_key": "a-kraken-3333", "api_secret": "a-ksecret-3333"}
    ]);
    assert_eq!(
        server.put_credentials(&token_a, a_values.clone()).status,
        200
    );
    let a_v1 = server.db.credential_row(a, "binance");
    // A second write: version 2, under which an older copy no longer verifies.
    assert_eq!(
        server.put_credentials(&token_a, a_values.clone()).status,
        200
    );
    assert_eq!(
        server.put_credentials(&token_b,
            json!([{"broker": "binance", "api_key": "b-key-2222", "api_secret": "b-secret-2222"}])
        )
        .status,
        200
    );
    let b_row = server.db.credential_row(b, "binance");

    let current = || server.db.credential_row(a, "binance");
    // Each move as one SQL statement, written so that the database accepts it where it can
    // (the version moved forward, as this service's own writes do).
    let moves: Vec<(&str, Move)> = vec![
        (
            "copy B's ciphertexts and tag",
            Box::new(|| {
                let mut moved = b_row.clone();
                moved[4] = bump(&current()[4], 1);
                overwrite(a, "binance", &moved)
            }),
        ),
        (
            "copy B's ciphertexts and strip the tag",
            Box::new(|| {
                let mut moved = b_row.clone();
                moved[2] = None;
                moved[3] = None;
                moved[4] = bump(&current()[4], 1);
                overwrite(a, "binance", &moved)
            }),
        ),
        (
            "strip A's own tag",
            Box::new(|| {
                let mut stripped = current();
                stripped[2] = None;
                stripped[3] = None;
                overwrite(a, "binance", &stripped)
            }),
        ),
        (
            "swap A's kraken row into A's binance row",
            Box::new(|| {
                let mut moved = server.db.credential_row(a, "kraken");
                moved[4] = bump(&current()[4], 1);
                overwrite(a, "binance", &moved)
            }),
        ),
        (
            "put A's version-1 ciphertext and tag under a later version",
            Box::new(|| {
                let mut moved = a_v1.clone();
                moved[4] = bump(&current()[4], 1);
                overwrite(a, "binance", &moved)
            }),
        ),
    ];
    for (name, statement) in moves {
        server.db.execute(&statement());
        let shown = entry(&server, &token_a, "binance");
        assert_eq!(shown["status"], "undecryptable", "{name}: {shown}");
        assert_eq!(shown["api_key_masked"], Value::Null, "{name}");
        assert_eq!(shown["api_secret_masked"], Value::Null, "{name}");
        // A's own write replaces the row, and the next move starts from a good row.
        assert_eq!(
            server.put_credentials(&token_a, a_values.clone()).status,
            200,
            "{name}"
        );
        assert_eq!(
            entry(&server, &token_a, "binance")["status"],
            "ok",
            "{name}"
        );
    }

    // Replaying the whole older copy of the row (its tag valid for version 1): refused by
    // the database, and the current row is still served as it was.
    let before = current();
    let refused = server
        .db
        .try_execute(&overwrite(a, "binance", &a_v1))
        .unwrap_err();
    assert!(refused.contains("version may only increase"), "{refused}");
    assert_eq!(current(), before);
    // A writer that does not move the version (how the Python service writes): refused once
    // cut-over is closed, as is an insert without a tag.
    let refused = server
        .db
        .try_execute(&format!(
            "UPDATE user_broker_credentials SET api_key_encrypted = {} WHERE user_id = {a} AND broker = 'binance'",
            lit(&b_row[0])
        ))
        .unwrap_err();
    assert!(refused.contains("cut-over is closed"), "{refused}");
    let refused = server
        .db
        .try_execute(&format!(
            "INSERT INTO user_broker_credentials (user_id, broker, api_key_encrypted) VALUES ({a}, 'alpaca', {})",
            lit(&b_row[0])
        ))
        .unwrap_err();
    assert!(refused.contains("cut-over is closed"), "{refused}");
    assert_eq!(
        entry(&server, &token_a, "binance")["api_key_masked"],
        "••••••1111"
    );

    // Every undecryptable read was audited as a binding failure, and B's values never shown.
    let trail = server.call(
        "GET",
        "/users/me/broker-credentials/audit?limit=100",
        Some(&token_a),
        None,
    );
    let failures = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "binding_failure")
        .count();
    assert_eq!(failures, 5, "{}", trail.text);
    assert!(!server.output().contains("2222"));
}

fn a_half_of_a_moved_row_cannot_be_laundered_by_a_partial_write(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let ((a, token_a), (b, _)) =
        server.two_binance_traders("victim@example.com", "owner@example.com");
    let mut moved = server.db.credential_row(b, "binance");
    moved[4] = bump(&server.db.credential_row(a, "binance")[4], 1);
    server.db.execute(&overwrite(a, "binance", &moved));
    // The victim replaces only the key: keeping the moved secret would bind it to A.
    let partial = server.put_credentials(
        &token_a,
        json!([{"broker": "binance", "api_key": "a-key-new-4444"}]),
    );
    assert_eq!(partial.status, 422, "{}", partial.text);
    assert_eq!(
        partial.detail(),
        "The stored api_secret for binance cannot be read; send a new api_secret (or null to remove it)"
    );
    assert_eq!(
        entry(&server, &token_a, "binance")["status"],
        "undecryptable"
    );
    // Sending both halves (or clearing the unreadable one) is how the user mends it.
    let cleared = server.put_credentials(
        &token_a,
        json!([{"broker": "binance", "api_key": "a-key-new-4444", "api_secret": null}]),
    );
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    let shown = entry(&server, &token_a, "binance");
    assert_eq!(
        (shown["status"].as_str(), shown["has_api_secret"].as_bool()),
        (Some("ok"), Some(false))
    );
    assert!(!cleared.text.contains("2222"));
}

fn unbound_rows_are_read_while_cut_over_is_open_and_no_longer_once_closed(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (a, token_a) = server.user("python-user@example.com", false);
    server.put_credentials(
        &token_a,
        json!([{"broker": "binance", "api_key": "a-key-1111", "api_secret": "a-secret-1111"}]),
    );
    let status = server.cli(&["cutover", "status"]);
    assert!(
        status.contains("cut-over mode stored in the database: closed"),
        "{status}"
    );

    let opened = server.cli(&["cutover", "open"]);
    assert!(opened.contains("cut-over opened (audited)"), "{opened}");
    let ready = server.call("GET", "/ready", None, None);
    assert_eq!(ready.body["cutover"], "open", "{}", ready.text);
    let metrics = server.call("GET", "/metrics", None, None);
    assert!(
        metrics.text.contains("\ncutover_open 1\n"),
        "{}",
        metrics.text
    );

    // What the Python service writes while open: an unbound row (here its ciphertext is a
    // copy of a bound one of ours, re-written without tag, version moved by the trigger).
    let bound = server.db.credential_row(a, "binance");
    server.db.execute(&format!(
        "INSERT INTO user_broker_credentials (user_id, broker, api_key_encrypted, api_secret_encrypted) \
         VALUES ({a}, 'kraken', {}, {})",
        lit(&bound[0]),
        lit(&bound[1])
    ));
    assert_eq!(entry(&server, &token_a, "kraken")["status"], "ok");
    let strict = TestServer::start_on(
        server.db.alias(),
        &[("BROKER_CREDENTIALS_REQUIRE_BINDING", Some("1"))],
    )
    .unwrap();
    assert_eq!(
        entry(&strict, &token_a, "kraken")["status"],
        "undecryptable",
        "the override forces closed"
    );
    let ready = strict.call("GET", "/ready", None, None);
    assert_eq!(
        (
            ready.body["cutover"].as_str(),
            ready.body["cutover_forced_closed"].as_bool()
        ),
        (Some("closed"), Some(true))
    );
    drop(strict);

    // Closing is refused while a row is unbound, and changes nothing.
    let refused = server.cli_with(&["cutover", "close"], &[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cut-over stays open: 1 row(s) are unbound or fail verification"),
        "{stderr}"
    );
    assert_eq!(
        server.call("GET", "/ready", None, None).body["cutover"],
        "open"
    );

    // keys rotate binds it; then close succeeds, and the row still reads (bound now).
    let rotated = server.cli(&["keys", "rotate"]);
    assert!(rotated.contains("rotated 1 rows"), "{rotated}");
    let closed = server.cli(&["cutover", "close"]);
    assert!(
        closed.contains("cut-over closed: 2 row(s) verified, all bound"),
        "{closed}"
    );
    assert_eq!(entry(&server, &token_a, "kraken")["status"], "ok");
    let verify = server.cli(&["keys", "verify"]);
    assert!(
        verify.contains("cut-over mode: closed")
            && verify.contains("rows without a binding tag: 0"),
        "{verify}"
    );

    // Once closed, nothing a foreign writer does makes an unbound row readable.
    server.db.execute(&format!(
        "UPDATE user_broker_credentials SET binding = NULL, key_id = NULL WHERE user_id = {a} AND broker = 'kraken'"
    ));
    assert_eq!(
        entry(&server, &token_a, "kraken")["status"],
        "undecryptable"
    );
    let rotate = server.cli_with(&["keys", "rotate"], &[]);
    assert!(
        !rotate.status.success(),
        "keys rotate must not bind a row that may be a moved one"
    );
    assert_eq!(
        entry(&server, &token_a, "kraken")["status"],
        "undecryptable"
    );

    // Both changes of mode are in the trail (target 0: the whole database).
    assert_eq!(
        server.db.count_rows(
            "credential_audit_events",
            "target_user_id = 0 AND action = 'cutover_open'"
        ),
        1
    );
    assert_eq!(
        server.db.count_rows(
            "credential_audit_events",
            "target_user_id = 0 AND action = 'cutover_close'"
        ),
        1
    );
}

crate::test_on_both_backends!(
    no_move_of_a_ciphertext_is_served_on_a_fresh_database,
    a_half_of_a_moved_row_cannot_be_laundered_by_a_partial_write,
    unbound_rows_are_read_while_cut_over_is_open_and_no_longer_once_closed,
);
