//! Key rotation without downtime (docs/operations.md#zero-downtime-key-rotation): rotate while users write, staged roll-out across
//! two processes, a rotation killed half-way, and the Python service's database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use user_service_test_support::ci::missing;

use crate::support::{Backend, TestDatabase, TestServer, OTHER_KEY, TEST_KEY};

const OLD: &str = TEST_KEY;
const NEW: &str = OTHER_KEY;
const PATH: &str = "/users/me/broker-credentials";

fn ring(keys: &[&str]) -> String {
    keys.join(",")
}

/// `users` users with `brokers` credentials each, written through the API.
fn seed(server: &TestServer, prefix: &str, users: usize, brokers: usize) -> Vec<String> {
    (0..users)
        .map(|u| {
            let (_, token) = server.user(&format!("{prefix}{u}@example.com"), false);
            let credentials: Vec<_> = (0..brokers)
                .map(|b| json!({"broker": format!("broker-{b}"), "api_key": format!("key-{u}-{b}-abcd"), "api_secret": format!("secret-{u}-{b}-wxyz")}))
                .collect();
            let answer = server.call("PUT", PATH, Some(&token), Some(json!({ "credentials": credentials })));
            assert_eq!(answer.status, 200, "{}", answer.text);
            token
        })
        .collect()
}

fn run_ok(server: &TestServer, args: &[&str], keys: &str) -> String {
    let out = server.cli_with(args, &[("BROKER_CREDENTIALS_ENCRYPTION_KEY", keys)]);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn key_id_of(server: &TestServer, key: &str) -> String {
    let alone = TestServer::start_on(
        server.db.alias(),
        &[("BROKER_CREDENTIALS_ENCRYPTION_KEY", Some(key))],
    )
    .unwrap();
    alone.call("GET", "/ready", None, None).body["primary_key_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn rotation_while_clients_write_loses_nothing() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let old_server =
        TestServer::start_on(db, &[("BROKER_CREDENTIALS_ENCRYPTION_KEY", Some(OLD))]).unwrap();
    seed(&old_server, "bulk", 20, 50);
    let writers: Vec<String> = seed(&old_server, "writer", 4, 3);
    let mut old_server = old_server;
    old_server.stop();
    // Promote the new key: it encrypts, the old one still decrypts.
    let db = std::mem::replace(
        &mut old_server.db,
        TestDatabase::create(Backend::Sqlite).unwrap(),
    );
    drop(old_server);
    let server = Arc::new(
        TestServer::start_on(
            db,
            &[(
                "BROKER_CREDENTIALS_ENCRYPTION_KEY",
                Some(&ring(&[NEW, OLD])),
            )],
        )
        .unwrap(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, token)| {
            let server = Arc::clone(&server);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut acknowledged: HashMap<String, String> = HashMap::new();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let broker = format!("broker-{}", n % 3);
                    let secret = format!("w{w}-{n:06}");
                    let answer = server.call(
                        "PUT",
                        PATH,
                        Some(&token),
                        Some(json!({"credentials": [{"broker": broker, "api_secret": secret}]})),
                    );
                    assert_eq!(answer.status, 200, "{}", answer.text);
                    acknowledged.insert(broker, secret);
                }
                (token, acknowledged, n)
            })
        })
        .collect();

    let started = Instant::now();
    let rotated = run_ok(&server, &["keys", "rotate"], &ring(&[NEW, OLD]));
    assert!(rotated.contains("rotated "), "{rotated}");
    // Keep the writers going for 10 s in all (the runbook's scenario), rotation included.
    while started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total_writes = 0;
    for handle in handles {
        let (token, acknowledged, writes) = handle.join().unwrap();
        total_writes += writes;
        let list = server.call("GET", PATH, Some(&token), None);
        for entry in list.body["credentials"].as_array().unwrap() {
            let broker = entry["broker"].as_str().unwrap();
            if let Some(secret) = acknowledged.get(broker) {
                let tail: String = secret
                    .chars()
                    .rev()
                    .take(4)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                assert!(
                    entry["api_secret_masked"]
                        .as_str()
                        .unwrap()
                        .ends_with(&tail),
                    "{broker}: {entry} vs {secret}"
                );
            }
            assert_eq!(entry["status"], "ok");
        }
    }
    assert!(
        total_writes > 20,
        "the writers really wrote during the rotation ({total_writes})"
    );

    // Nothing is left on the old key; a second rotation changes nothing.
    let verify = run_ok(&server, &["keys", "verify"], &ring(&[NEW, OLD]));
    let old_id = key_id_of(&server, OLD);
    assert!(
        !verify.contains(&format!("rows on key {old_id}")),
        "{verify}"
    );
    assert!(verify.contains("failed rows: 0"), "{verify}");
    let again = run_ok(&server, &["keys", "rotate"], &ring(&[NEW, OLD]));
    assert!(again.starts_with("rotated 0 rows"), "{again}");
    // The old key can now be removed.
    let verify_new_only = run_ok(&server, &["keys", "verify"], NEW);
    assert!(
        verify_new_only.contains("rows on keys no longer configured: 0"),
        "{verify_new_only}"
    );
}

#[test]
fn staged_rollout_across_two_processes() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    // A: old primary, new key decrypt-only. B: promoted.
    let a = TestServer::start_on(
        db,
        &[(
            "BROKER_CREDENTIALS_ENCRYPTION_KEY",
            Some(&ring(&[OLD, NEW])),
        )],
    )
    .unwrap();
    let b = TestServer::start_on(
        a.db.alias(),
        &[(
            "BROKER_CREDENTIALS_ENCRYPTION_KEY",
            Some(&ring(&[NEW, OLD])),
        )],
    )
    .unwrap();
    let (_, token) = a.user("rollout@example.com", false);
    let written = b.call(
        "PUT",
        PATH,
        Some(&token),
        Some(json!({"credentials": [{"broker": "binance", "api_key": "written-by-b-1234"}]})),
    );
    assert_eq!(written.status, 200);
    let read = a.call("GET", PATH, Some(&token), None);
    assert_eq!(
        read.body["credentials"][0]["api_key_masked"],
        "•••••••••••••1234"
    );
    assert_eq!(read.body["credentials"][0]["status"], "ok");
    // And the other way round.
    a.call(
        "PUT",
        PATH,
        Some(&token),
        Some(json!({"credentials": [{"broker": "kraken", "api_key": "written-by-a-5678"}]})),
    );
    assert_eq!(
        b.call("GET", PATH, Some(&token), None).body["credentials"][1]["status"],
        "ok"
    );

    // Negative control: a process that only knows the old key cannot read B's writes.
    let c = TestServer::start_on(
        a.db.alias(),
        &[("BROKER_CREDENTIALS_ENCRYPTION_KEY", Some(OLD))],
    )
    .unwrap();
    let blind = c.call("GET", PATH, Some(&token), None);
    assert_eq!(blind.status, 200);
    assert_eq!(blind.body["credentials"][0]["status"], "undecryptable");
    assert_eq!(blind.body["credentials"][1]["status"], "ok");
    // /ready on C reports the rows under a key it does not hold.
    let ready = c.call("GET", "/ready", None, None);
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.body["rows_on_retired_keys"], 1);
}

#[test]
fn rotation_killed_half_way_resumes() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    // 60 credentials a user, past the default cap: many rows in few requests.
    let old = TestServer::start_on(
        db,
        &[
            ("BROKER_CREDENTIALS_ENCRYPTION_KEY", Some(OLD)),
            ("MAX_CREDENTIALS_PER_USER", Some("60")),
        ],
    )
    .unwrap();
    seed(&old, "kill", 40, 60);
    let total = old.db.count_credentials("1 = 1");
    let new_id = key_id_of(&old, NEW);

    let mut child = old.spawn_cli(
        &["keys", "rotate"],
        &[("BROKER_CREDENTIALS_ENCRYPTION_KEY", &ring(&[NEW, OLD]))],
    );
    // Kill it as soon as some rows (but not all) are rotated; bounded wait.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = old.db.count_credentials(&format!("key_id = '{new_id}'"));
        if done > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "rotation made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = old.db.count_credentials(&format!("key_id = '{new_id}'"));
    assert!(partial > 0, "killed after some progress");

    let resumed = run_ok(&old, &["keys", "rotate"], &ring(&[NEW, OLD]));
    assert!(resumed.contains("already current"), "{resumed}");
    assert_eq!(
        old.db.count_credentials(&format!("key_id = '{new_id}'")),
        total
    );
    let verify = run_ok(&old, &["keys", "verify"], NEW);
    assert!(verify.contains("failed rows: 0"), "{verify}");
}

#[test]
fn python_database_is_upgraded_by_rotation_and_stays_readable_by_python() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/legacy");
    for file in ["legacy-schema.postgres.sql", "legacy-data.postgres.sql"] {
        let sql = std::fs::read_to_string(testdata.join(file)).unwrap();
        for statement in sql
            .split(";\n")
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.lines().all(|l| l.starts_with("--")))
        {
            db.execute(statement);
        }
    }
    let legacy_key = std::fs::read_to_string(testdata.join("legacy-key.txt"))
        .unwrap()
        .trim()
        .to_owned();
    let server = TestServer::start_on(
        db,
        &[(
            "BROKER_CREDENTIALS_ENCRYPTION_KEY",
            Some(&ring(&[NEW, &legacy_key])),
        )],
    )
    .unwrap();
    assert_eq!(
        server
            .db
            .count_credentials("key_id IS NULL AND binding IS NULL"),
        3
    );

    // Upgraded from the Python schema: cut-over is open, and closing it is refused while the
    // Python rows are unbound.
    assert_eq!(
        server.call("GET", "/ready", None, None).body["cutover"],
        "open"
    );
    let refused = server.cli_with(
        &["cutover", "close"],
        &[(
            "BROKER_CREDENTIALS_ENCRYPTION_KEY",
            &ring(&[NEW, &legacy_key]),
        )],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("3 row(s) are unbound"));

    let rotated = run_ok(&server, &["keys", "rotate"], &ring(&[NEW, &legacy_key]));
    assert!(rotated.contains("rotated 3 rows"), "{rotated}");
    let closed = run_ok(&server, &["cutover", "close"], &ring(&[NEW, &legacy_key]));
    assert!(
        closed.contains("cut-over closed: 3 row(s) verified"),
        "{closed}"
    );
    assert_eq!(
        server.call("GET", "/ready", None, None).body["cutover"],
        "closed"
    );
    assert_eq!(
        server
            .db
            .count_credentials("key_id IS NOT NULL AND binding IS NOT NULL"),
        3
    );

    // Through the API, the Python user's rows read back.
    let token = user_service_crypto::TokenCodec::new(
        &user_service_domain::secrecy::SecretString::from(crate::support::JWT_SECRET),
        None,
        None,
    )
    .issue_access(&user_service_domain::Principal::User(
        user_service_domain::UserId(1),
    ));
    let list = server.call(
        "GET",
        PATH,
        Some(user_service_domain::secrecy::ExposeSecret::expose_secret(
            &token,
        )),
        None,
    );
    assert_eq!(
        list.body["credentials"][0]["api_key_masked"],
        "••••••••••••••••1234"
    );

    // Python `cryptography` reads the rotated rows with the new key alone.
    let plaintexts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(testdata.join("legacy-plaintexts.json")).unwrap(),
    )
    .unwrap();
    let tokens: Vec<(String, Option<String>, Option<String>)> = server
        .db
        .credential_rows()
        .into_iter()
        .map(|(_, broker, key, secret)| (broker, key, secret))
        .collect();
    let script = r#"
import json, sys
from cryptography.fernet import Fernet
data = json.load(sys.stdin)
f = Fernet(data["key"].encode())
out = {}
for broker, key, secret in data["rows"]:
    out[broker] = [f.decrypt(t.encode()).decode() if t else None for t in (key, secret)]
print(json.dumps(out))
"#;
    let input = json!({"key": NEW, "rows": tokens}).to_string();
    let mut python = match std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            missing::<()>("python3", &error);
            return;
        }
    };
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("No module named 'cryptography'") {
        missing::<()>("Python's cryptography", &"pip install cryptography");
        return;
    }
    assert!(output.status.success(), "{stderr}");
    let decrypted: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for row in plaintexts.as_array().unwrap() {
        let broker = row["broker"].as_str().unwrap();
        assert_eq!(
            decrypted[broker],
            json!([row["api_key"], row["api_secret"]]),
            "{broker}"
        );
    }
}
