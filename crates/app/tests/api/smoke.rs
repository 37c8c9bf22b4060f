//! `user-service smoke`: the post-deployment checks (docs/contract.md#post-deployment-checks) run against a real server.

use serde_json::json;

use crate::support::{Backend, TestServer, JWT_SECRET, TEST_KEY, WITHOUT_KEY};

/// Every check `smoke` runs when it creates its own test user.
const ALL_CHECKS: &[&str] = &[
    "health",
    "create test user",
    "new user has no credentials",
    "store credential",
    "stored as ciphertext",
    "read back masked",
    "delete credential",
    "ready",
    "clean up test user",
];

/// stdout and stderr of a finished command, as text.
fn texts(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn smoke_against_a_healthy_server_passes_every_check(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let output = server.cli_with(&["smoke", &server.base], &[]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "smoke failed:\n{stdout}\n{stderr}");
    for check in ALL_CHECKS {
        assert!(
            stdout.lines().any(|l| l == format!("PASS {check}")),
            "no PASS {check}:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("FAIL") && !stdout.contains("SKIP"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(&format!("smoke: all {} checks passed\n", ALL_CHECKS.len())),
        "{stdout}"
    );
    // The smoke credential is gone and its values never reached the output or the logs.
    assert_eq!(server.db.count_credentials("1 = 1"), 0);
    let logs = server.output_with("DELETE /users/me 204");
    for text in [&stdout, &stderr, &logs] {
        for needle in [
            "SmokeKey-",
            "SmokeSecret-",
            "gAAAAA",
            TEST_KEY,
            JWT_SECRET,
            "eyJ",
        ] {
            assert!(
                !text.contains(needle),
                "{needle:?} reached the output:\n{text}"
            );
        }
    }
}

fn smoke_with_a_wrong_token_fails_and_never_prints_it(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    // Well formed, but signed with another secret.
    let (_, good) = server.user("smoke-wrong@example.com", false);
    let (head_and_claims, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head_and_claims}.c2lnbmVkLXdpdGgtYW5vdGhlci1zZWNyZXQ");
    for (args, env) in [
        (
            vec!["smoke", server.base.as_str(), "--token", forged.as_str()],
            vec![],
        ),
        (
            vec!["smoke", server.base.as_str()],
            vec![("SMOKE_TOKEN", forged.as_str())],
        ),
        (
            vec!["smoke", server.base.as_str(), "--token", "not-a-jwt-at-all"],
            vec![],
        ),
    ] {
        let output = server.cli_with(&args, &env);
        let (stdout, stderr) = texts(&output);
        assert!(
            !output.status.success(),
            "smoke passed with a wrong token:\n{stdout}"
        );
        assert!(stdout.contains("PASS health"), "{stdout}");
        assert!(
            stdout.contains("FAIL list credentials: expected 200, got 401 (Invalid token)"),
            "{stdout}"
        );
        assert!(stdout.contains("FAIL store credential"), "{stdout}");
        assert!(
            stderr.contains("checks failed"),
            "one-line reason on stderr: {stderr}"
        );
        for text in [&stdout, &stderr] {
            assert!(
                !text.contains(&forged) && !text.contains(head_and_claims),
                "the token was printed:\n{text}"
            );
            assert!(
                !text.contains("not-a-jwt-at-all"),
                "the token was printed:\n{text}"
            );
        }
    }
    assert_eq!(
        server.db.count_credentials("1 = 1"),
        0,
        "nothing was stored"
    );
}

fn smoke_with_a_user_token_leaves_the_user_credentials_alone(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("smoke-user@example.com", false);
    let (key, secret) = ("SMOKEUSERKEY-a1b2c3d4e5", "SMOKEUSERSECRET-f6g7h8i9j0");
    let path = "/users/me/broker-credentials";
    let body =
        json!({"credentials": [{"broker": "binance", "api_key": key, "api_secret": secret}]});
    assert_eq!(
        server.call("PUT", path, Some(&token), Some(body)).status,
        200
    );
    let before = server.call("GET", path, Some(&token), None).body;

    let output = server.cli_with(&["smoke", &server.base], &[("SMOKE_TOKEN", token.as_str())]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "smoke failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("PASS list credentials"), "{stdout}");
    assert!(
        stdout.contains("PASS store credential") && stdout.contains("PASS delete credential"),
        "{stdout}"
    );
    assert!(stdout.contains("SKIP stored as ciphertext"), "{stdout}");
    assert!(
        !stdout.contains("create test user") && !stdout.contains("FAIL"),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        for needle in [
            token.as_str(),
            key,
            secret,
            &key[key.len() - 4..],
            &secret[secret.len() - 4..],
        ] {
            assert!(
                !text.contains(needle),
                "{needle:?} reached the output:\n{text}"
            );
        }
    }
    // The user's own credential is untouched; only the smoke broker came and went.
    assert_eq!(server.call("GET", path, Some(&token), None).body, before);
    assert_eq!(server.db.count_credentials("broker = 'smoke-test'"), 0);
}

fn smoke_fails_when_the_key_is_missing(backend: Backend) {
    let Some(server) = TestServer::start(backend, &WITHOUT_KEY) else {
        return;
    };
    let output = server.cli_with(&["smoke", &server.base], &[]);
    let (stdout, stderr) = texts(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("PASS health"), "{stdout}");
    assert!(
        stdout.contains("FAIL store credential: expected 200, got 503 (Broker credentials encryption key is not configured)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL ready: expected 200, got 503"),
        "{stdout}"
    );
    assert!(
        stdout.contains("encryption_key: BROKER_CREDENTIALS_ENCRYPTION_KEY is not set"),
        "{stdout}"
    );
    assert!(stderr.contains("checks failed"), "{stderr}");
}

crate::test_on_both_backends!(
    smoke_against_a_healthy_server_passes_every_check,
    smoke_with_a_wrong_token_fails_and_never_prints_it,
    smoke_with_a_user_token_leaves_the_user_credentials_alone,
    smoke_fails_when_the_key_is_missing,
);

#[test]
fn smoke_against_a_stopped_server_fails() {
    let Some(server) = TestServer::start(crate::support::Backend::Sqlite, &[]) else {
        return;
    };
    // A port nothing listens on: the server's own port, once it is stopped.
    let base = server.base.clone();
    let mut server = server;
    server.stop();
    let output = server.cli_with(&["smoke", &base, "--no-create-user"], &[]);
    let (stdout, stderr) = texts(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.starts_with("FAIL health: GET /health: "), "{stdout}");
    assert!(
        stdout.contains("SKIP list credentials: no token (--no-create-user without --token)"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL ready"), "{stdout}");
    assert!(
        stderr.contains("smoke: 2 of 2 checks failed, 5 skipped"),
        "{stderr}"
    );
}
