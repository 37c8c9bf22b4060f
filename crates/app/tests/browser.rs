//! The `/account` page in headless Chromium (docs/account-page.md): starts real servers, runs the
//! Node scenarios of `tests/browser/account.test.js` (playwright-core driving Debian's
//! `/usr/bin/chromium`), then checks in the database that what the page stored is ciphertext
//! and that the trading consent it set is the one the scenarios expect.
//!
//! Needs `node`, Chromium and `npm ci` in `tests/browser/`. When one is missing the test fails
//! under `CI=true` and is skipped with a loud `SKIPPED:` line otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Backend, TestServer};

/// Values the page types in; none of them may reach the database in clear.
const TYPED: [(&str, &str); 10] = [
    ("E2E_BINANCE_KEY", "bnc-key-7Hq2LmZp94RtXw3A"),
    ("E2E_BINANCE_SECRET", "bnc-secret-Vd81KqPz0sYh5JtN"),
    ("E2E_IBKR_KEY", "ibkr-key-Qm42XcLp7Ew0"),
    ("E2E_IBKR_SECRET", "ibkr-secret-Fz61TbNo3Ka8"),
    ("E2E_IBKR_SECRET_2", "ibkr-secret-two-Lr57GuYd2Vc9"),
    ("E2E_KRAKEN_KEY", "krk-key-Pw38HsJe6Dm1"),
    ("E2E_KRAKEN_SECRET", "krk-secret-Ua94NcQt5Bx7"),
    ("E2E_TRADING_KEY", "trd-key-Hn25WqBv8Rk4"),
    ("E2E_TRADING_SECRET", "trd-secret-Jm73ZpFs1Lc6"),
    ("E2E_TRADING_SECRET_2", "trd-secret-two-Xe49DgTy0Qa2"),
];
/// The trader of the main scenario (the page registers this account).
const TRADER_EMAIL: &str = "alice@example.com";
/// The trader of the trading-consent scenarios (the page registers this account).
const TRADING_EMAIL: &str = "ivan@example.com";
const UNDECRYPTABLE_EMAIL: &str = "carol@example.com";
const UNDECRYPTABLE_PASSWORD: &str = "Carol-Horse-9-battery";
const OUTAGE_EMAIL: &str = "dave@example.com";
const OUTAGE_PASSWORD: &str = "Dave-Horse-9-battery";

/// Fails under CI, prints a loud line and returns `None` otherwise.
fn missing(what: &str) -> Option<()> {
    user_service_test_support::ci::missing(what, &"the /account browser test needs it")
}

struct Tools {
    chromium: PathBuf,
    scripts: PathBuf,
}

fn tools() -> Option<Tools> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = PathBuf::from(
        std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
    );
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|out| out.status.success()) {
        missing("node on the PATH")?;
    }
    if !chromium.exists() {
        missing(&format!(
            "Chromium at {} (apt-get install chromium)",
            chromium.display()
        ))?;
    }
    if !scripts
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing(&format!(
            "playwright-core (npm ci in {})",
            scripts.display()
        ))?;
    }
    Some(Tools { chromium, scripts })
}

/// A stand-in for Binance's REST API that accepts every key: `200 {}` to any request.
fn fake_binance() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut stream = reader.into_inner();
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
                  Connection: close\r\n\r\n{}",
            );
        }
    });
    url
}

/// Creates the user `email` with `password` through the CLI, signs in and stores `credentials`
/// (the body of `PUT /users/me/broker-credentials`).
fn create_user_with_credentials(
    server: &TestServer,
    email: &str,
    password: &str,
    credentials: Value,
) {
    server.cli(&["users", "create", "--email", email, "--password", password]);
    let login = server.call(
        "POST",
        "/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
    );
    assert_eq!(login.status, 200, "{}", login.text);
    let token = login.body["access_token"].as_str().unwrap();
    let put = server.call(
        "PUT",
        "/users/me/broker-credentials",
        Some(token),
        Some(credentials),
    );
    assert_eq!(put.status, 200, "{}", put.text);
}

/// A user with a Binance key and secret and a custom broker's key, for the key-outage scenario
/// (read through a second server on the same database that has no key).
fn prepare_outage_user(server: &TestServer) {
    create_user_with_credentials(
        server,
        OUTAGE_EMAIL,
        OUTAGE_PASSWORD,
        json!({"credentials": [
            {"broker": "binance", "api_key": "dave-key-1234", "api_secret": "dave-secret-5678"},
            {"broker": "my-exchange", "api_key": "dave-custom-key-9999"},
        ]}),
    );
}

/// A user whose stored key no longer decrypts (the row was altered behind the service's back).
fn prepare_undecryptable_user(server: &TestServer) {
    create_user_with_credentials(
        server,
        UNDECRYPTABLE_EMAIL,
        UNDECRYPTABLE_PASSWORD,
        json!({"credentials": [{"broker": "binance", "api_key": "carol-key-1234", "api_secret": "carol-secret-5678"}]}),
    );
    // A well-formed Fernet token under a key the service does not hold.
    server.db.execute(
        "UPDATE user_broker_credentials SET api_key_encrypted = \
         'gAAAAABpKQ0zYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFk' \
         , version = version + 1 WHERE broker = 'binance'",
    );
}

/// Runs `node --test` with `env`, killing it after `limit`; returns (success, output).
fn run_node(tools: &Tools, env: &[(String, String)], limit: Duration) -> (bool, String) {
    let mut child = Command::new("node")
        .args([
            "--test",
            "--test-reporter=spec",
            "--test-concurrency=1",
            "account.test.js",
        ])
        .current_dir(&tools.scripts)
        .env("CHROMIUM_PATH", &tools.chromium)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = format!(
        "{}{}",
        out_reader.join().unwrap(),
        err_reader.join().unwrap()
    );
    match status {
        Some(status) => (status.success(), output),
        None => (
            false,
            format!("{output}\nnode --test did not finish within {limit:?}"),
        ),
    }
}

#[test]
fn account_page_in_headless_chromium() {
    let Some(tools) = tools() else { return };
    let binance = fake_binance();
    let server = TestServer::start(
        Backend::Sqlite,
        &[
            ("BROKER_PROBE_BINANCE_URL", Some(&binance)),
            ("BROKER_PROBE_TIMEOUT_SECS", Some("5")),
        ],
    )
    .expect("SQLite is always available");
    // The same database without a key: a key outage as traders would meet it.
    let no_key = TestServer::start_on(
        server.db.alias(),
        &[
            ("BROKER_CREDENTIALS_ENCRYPTION_KEY", None),
            ("BROKER_CREDENTIALS_KEY_REQUIRED", Some("0")),
        ],
    )
    .unwrap();
    let external = TestServer::start(Backend::Sqlite, &[("AUTH_MODE", Some("external"))]).unwrap();
    let (_, external_token) = external.user("platform-user@example.com", false);
    prepare_undecryptable_user(&server);
    prepare_outage_user(&server);

    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut env: Vec<(String, String)> = vec![
        ("BASE_URL".into(), server.base.clone()),
        ("DATABASE_URL".into(), server.db.url.clone()),
        ("NO_KEY_BASE_URL".into(), no_key.base.clone()),
        ("EXTERNAL_BASE_URL".into(), external.base.clone()),
        ("EXTERNAL_TOKEN".into(), external_token),
        ("JWT_SECRET".into(), support::JWT_SECRET.into()),
        ("TRADER_EMAIL".into(), TRADER_EMAIL.into()),
        ("TRADING_EMAIL".into(), TRADING_EMAIL.into()),
        ("UNDECRYPTABLE_EMAIL".into(), UNDECRYPTABLE_EMAIL.into()),
        (
            "UNDECRYPTABLE_PASSWORD".into(),
            UNDECRYPTABLE_PASSWORD.into(),
        ),
        ("OUTAGE_EMAIL".into(), OUTAGE_EMAIL.into()),
        ("OUTAGE_PASSWORD".into(), OUTAGE_PASSWORD.into()),
        ("SCREENSHOT_DIR".into(), screenshots.display().to_string()),
    ];
    env.extend(
        TYPED
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );

    let (passed, output) = run_node(&tools, &env, Duration::from_secs(300));
    println!("{output}");
    assert!(
        passed,
        "the browser scenarios failed:\n{output}\n--- server log ---\n{}",
        server.output()
    );
    let tests = summary_count(&output, "tests");
    assert!(tests > 0, "node ran no scenario:\n{output}");
    assert_eq!(
        summary_count(&output, "pass"),
        tests,
        "not every scenario passed:\n{output}"
    );
    assert!(screenshots.join("account-page.png").exists());

    // What the page stored is Fernet ciphertext, and no typed value is anywhere in the table.
    let rows = server.db.credential_rows();
    let trader = user_id(&server, TRADER_EMAIL);
    let alice: Vec<_> = rows.iter().filter(|(user, ..)| *user == trader).collect();
    let brokers: Vec<&str> = alice.iter().map(|(_, b, _, _)| b.as_str()).collect();
    assert_eq!(
        brokers,
        ["binance", "kraken"],
        "ibkr was deleted on the page: {rows:?}"
    );
    for (_, broker, key, secret) in &alice {
        for value in [key, secret] {
            let value = value
                .as_deref()
                .unwrap_or_else(|| panic!("{broker}: both halves set"));
            assert!(
                value.starts_with("gAAAAA"),
                "{broker}: not a Fernet token: {value}"
            );
        }
    }
    for (_, broker, key, secret) in &rows {
        let stored = format!(
            "{} {}",
            key.as_deref().unwrap_or(""),
            secret.as_deref().unwrap_or("")
        );
        for (name, typed) in TYPED {
            assert!(!stored.contains(typed), "{broker}: {name} stored in clear");
        }
    }
    // The trading consent the page left: Binance off again (its secret was replaced, then the
    // French scenario turned it on and off), Interactive Brokers on; Alice never allowed any.
    let ivan = user_id(&server, TRADING_EMAIL);
    for (broker, enabled) in [("binance", 0), ("ibkr", 1)] {
        assert_eq!(
            server.db.count_credentials(&format!(
                "user_id = {ivan} AND broker = '{broker}' \
                 AND CAST(trading_enabled AS INTEGER) = {enabled}"
            )),
            1,
            "{broker}: trading_enabled should be {enabled}"
        );
    }
    assert_eq!(
        server.db.count_credentials(&format!(
            "user_id = {trader} AND CAST(trading_enabled AS INTEGER) <> 0"
        )),
        0,
        "the main scenario never allowed trading"
    );
    // And nothing typed reached the log either.
    let log = server.output();
    for (name, typed) in TYPED {
        assert!(!log.contains(typed), "{name} appears in the server log");
    }
}

/// A count of the closing summary of `node --test` (`ℹ pass 7` with the spec reporter,
/// `# pass 7` with TAP); 0 when absent.
fn summary_count(output: &str, name: &str) -> u64 {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches(['ℹ', '#', ' ']);
            line.strip_prefix(name)?.trim().parse().ok()
        })
        .next_back()
        .unwrap_or(0)
}

fn user_id(server: &TestServer, email: &str) -> i64 {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let path = server.db.url.trim_start_matches("sqlite://");
    let mut conn = diesel::SqliteConnection::establish(path).unwrap();
    let rows: Vec<Row> =
        diesel::sql_query("SELECT CAST(id AS BIGINT) AS id FROM users WHERE email = ?")
            .bind::<diesel::sql_types::Text, _>(email)
            .load(&mut conn)
            .unwrap();
    rows.first()
        .map(|r| r.id)
        .expect("the page registered the trader")
}
