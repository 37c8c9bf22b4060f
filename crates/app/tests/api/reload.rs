//! `SIGHUP` reloads the key ring and the JWT secret (docs/operations.md#reloading-without-a-restart-sighup) without dropping requests, and
//! refuses a bad new configuration; `READY_ALLOW_RETIRED_KEY_ROWS` (docs/operations.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::support::{Backend, TestDatabase, TestServer, OTHER_KEY, TEST_KEY};

const PATH: &str = "/users/me/broker-credentials";
const RELOADED: &str = "reloaded the key ring";
const REFUSED: &str = "reload refused";

/// A mounted secret file (`NAME_FILE`) that the test rewrites before sending `SIGHUP`.
struct Mounted {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn write(&self, content: &str) {
        std::fs::write(&self.path, content).unwrap();
    }
}

/// A server reading the secret `name` from a mounted file holding `content` (the variable
/// itself unset), with `extra` settings; `None` when its database is unavailable.
fn serve_mounted(
    name: &str,
    content: &str,
    extra: &[(&str, Option<&str>)],
) -> Option<(Mounted, TestServer)> {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Mounted {
        path: dir.path().join("mounted.secret"),
        _dir: dir,
    };
    mounted.write(content);
    let file_variable = format!("{name}_FILE");
    let path = mounted.path.to_str().unwrap().to_owned();
    let mut overrides = vec![(name, None), (file_variable.as_str(), Some(path.as_str()))];
    overrides.extend_from_slice(extra);
    let server = TestServer::start(Backend::Sqlite, &overrides)?;
    Some((mounted, server))
}

fn primary(server: &TestServer) -> String {
    let ready = server.call("GET", "/ready", None, None);
    ready.body["primary_key_id"].as_str().unwrap().to_owned()
}

#[test]
fn sighup_reloads_the_ring_from_a_mounted_file_and_refuses_a_bad_one() {
    let Some((key_file, server)) = serve_mounted(
        "BROKER_CREDENTIALS_ENCRYPTION_KEY",
        &format!("{TEST_KEY}\n"),
        &[],
    ) else {
        return;
    };
    let (_, token) = server.user("reload@example.com", false);
    let put = |broker: &str, key: &str| {
        server.call(
            "PUT",
            PATH,
            Some(&token),
            Some(json!({"credentials": [{"broker": broker, "api_key": key}]})),
        )
    };
    assert_eq!(put("binance", "old-key-1111").status, 200);
    let old_primary = primary(&server);

    // Requests keep flowing while the ring changes under them: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut failures = Vec::new();
            let mut calls = 0;
            while !stop.load(Ordering::Relaxed) || calls < 20 {
                let answer = server.call("GET", PATH, Some(&token), None);
                if answer.status != 200 || answer.body["credentials"][0]["status"] != "ok" {
                    failures.push(answer.text);
                }
                calls += 1;
            }
            failures
        });

        // Promote a new key: the ring becomes [OTHER, TEST].
        key_file.write(&format!("{OTHER_KEY},{TEST_KEY}\n"));
        server.hang_up();
        server.wait_lines(RELOADED, 1);

        // A broken file is refused; the running ring stays.
        key_file.write("not-a-fernet-key\n");
        server.hang_up();
        server.wait_lines(REFUSED, 1);
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(
        failures.is_empty(),
        "requests failed during reloads: {failures:?}"
    );

    let output = server.output();
    assert!(
        output.contains("broker credentials encryption key misconfigured"),
        "{output}"
    );
    assert!(
        !output.contains(OTHER_KEY) && !output.contains(TEST_KEY),
        "a key reached the log"
    );
    assert!(
        !output.contains("not-a-fernet-key"),
        "the file content reached the log"
    );

    // The new primary is in use: new writes carry its key id, old rows still read.
    let new_primary = primary(&server);
    assert_ne!(new_primary, old_primary);
    assert_eq!(put("kraken", "new-key-2222").status, 200);
    let key_ids: Vec<String> = server
        .db
        .credential_key_ids()
        .into_iter()
        .map(|(broker, key_id)| format!("{broker}:{key_id}"))
        .collect();
    assert_eq!(
        key_ids,
        [
            format!("binance:{old_primary}"),
            format!("kraken:{new_primary}")
        ]
    );
    let list = server.call("GET", PATH, Some(&token), None);
    assert_eq!(
        list.body["credentials"][0]["api_key_masked"],
        "••••••••1111"
    );
    assert_eq!(
        list.body["credentials"][1]["api_key_masked"],
        "••••••••2222"
    );

    // The service keeps answering after the refused reload, with the same ring.
    let ready = server.call("GET", "/ready", None, None);
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["key_ids"], json!([new_primary, old_primary]));

    // The old key leaves the ring: the row it encrypted, shown just before, is not shown from
    // memory but found unreadable; the other still reads.
    key_file.write(&format!("{OTHER_KEY}\n"));
    server.hang_up();
    server.wait_lines(RELOADED, 2);
    let list = server.call("GET", PATH, Some(&token), None);
    assert_eq!(list.body["credentials"][0]["status"], "undecryptable");
    assert_eq!(list.body["credentials"][0]["api_key_masked"], json!(null));
    assert_eq!(list.body["credentials"][1]["status"], "ok");
}

#[test]
fn sighup_fixes_a_misconfigured_key_without_restart() {
    let Some((key_file, server)) = serve_mounted(
        "BROKER_CREDENTIALS_ENCRYPTION_KEY",
        "",
        &[("BROKER_CREDENTIALS_KEY_REQUIRED", Some("0"))],
    ) else {
        return;
    };
    let (_, token) = server.user("fix@example.com", false);
    assert_eq!(server.call("GET", PATH, Some(&token), None).status, 503);
    assert_eq!(server.call("GET", "/ready", None, None).status, 503);

    key_file.write(TEST_KEY);
    server.hang_up();
    server.wait_lines(RELOADED, 1);
    assert_eq!(server.call("GET", PATH, Some(&token), None).status, 200);
    assert_eq!(server.call("GET", "/ready", None, None).status, 200);
}

#[test]
fn ready_override_accepts_rows_on_retired_keys() {
    let Some(db) = TestDatabase::create(Backend::Sqlite) else {
        return;
    };
    let first = TestServer::start_on(
        db,
        &[("BROKER_CREDENTIALS_ENCRYPTION_KEY", Some(OTHER_KEY))],
    )
    .unwrap();
    let (_, token) = first.user("retired@example.com", false);
    let stored = first.call(
        "PUT",
        PATH,
        Some(&token),
        Some(json!({"credentials": [{"broker": "binance", "api_key": "k-123456"}]})),
    );
    assert_eq!(stored.status, 200);
    let alias = first.db.alias();

    let strict = TestServer::start_on(first.db.alias(), &[]).unwrap();
    let ready = strict.call("GET", "/ready", None, None);
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.body["rows_on_retired_keys"], 1);
    assert_eq!(ready.body["retired_key_rows_allowed"], false);

    let lenient =
        TestServer::start_on(alias, &[("READY_ALLOW_RETIRED_KEY_ROWS", Some("1"))]).unwrap();
    let ready = lenient.call("GET", "/ready", None, None);
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["rows_on_retired_keys"], 1);
    assert_eq!(ready.body["retired_key_rows_allowed"], true);
}

#[test]
fn sighup_reloads_the_jwt_secret() {
    let Some((secret_file, server)) = serve_mounted(
        "JWT_SECRET",
        "first-jwt-secret-first-jwt-secret-0001\n",
        &[],
    ) else {
        return;
    };
    let (_, old_token) = server.user("jwt@example.com", false);
    assert_eq!(server.call("GET", PATH, Some(&old_token), None).status, 200);

    secret_file.write("second-jwt-secret-second-jwt-secret-02\n");
    server.hang_up();
    server.wait_lines(RELOADED, 1);
    // Tokens signed with the old secret are refused; tokens signed with the new one pass.
    assert_eq!(server.call("GET", PATH, Some(&old_token), None).status, 401);
    let (_, new_token) = server.user("jwt2@example.com", false);
    assert_eq!(server.call("GET", PATH, Some(&new_token), None).status, 200);
    assert!(!server.output().contains("second-jwt-secret"));
}
