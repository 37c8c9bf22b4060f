//! Embedded sign-in (docs/contract.md#authentication-and-entitlements) and the `/account` page headers, black-box against the spawned
//! binary.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use support::{Answer, Backend, TestServer};

const PASSWORD: &str = "Correct-Horse-9-battery";

fn register(server: &TestServer, email: &str, password: &str) -> Answer {
    server.call(
        "POST",
        "/auth/register",
        None,
        Some(json!({"email": email, "password": password})),
    )
}

fn login(server: &TestServer, email: &str, password: &str) -> Answer {
    server.call(
        "POST",
        "/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
}

fn tokens(answer: &Answer) -> (String, String) {
    assert_eq!(answer.body["token_type"], "bearer", "{}", answer.text);
    (
        answer.body["access_token"].as_str().unwrap().to_owned(),
        answer.body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// The parts of an answer that must not differ between a wrong password and an unknown e-mail.
fn shape(answer: &Answer) -> (u16, Value, Vec<(String, String)>) {
    let mut body = answer.body.clone();
    body.as_object_mut().unwrap().remove("request_id");
    let mut headers: Vec<_> = answer
        .headers
        .iter()
        .filter(|(name, _)| !["x-request-id", "date"].contains(&name.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    headers.sort();
    (answer.status, body, headers)
}

fn register_login_refresh_and_me(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let created = register(&server, " Trader@Example.com ", PASSWORD);
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let (access, refresh) = tokens(&created);

    let me = server.call("GET", "/auth/me", Some(&access), None);
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["email"], "trader@example.com");
    assert_eq!(me.body["is_active"], true);
    assert!(me.body.get("password_hash").is_none(), "{}", me.text);
    // A registered user holds the dashboard capability: the credential list answers.
    let list = server.call("GET", "/users/me/broker-credentials", Some(&access), None);
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body, json!({"credentials": []}));

    let signed_in = login(&server, "trader@example.com", PASSWORD);
    assert_eq!(signed_in.status, 200, "{}", signed_in.text);
    let (access2, _) = tokens(&signed_in);
    assert_eq!(
        server.call("GET", "/auth/me", Some(&access2), None).body["email"],
        "trader@example.com"
    );

    let renewed = server.call(
        "POST",
        "/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    );
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    let (access3, refresh3) = tokens(&renewed);
    assert_eq!(
        server.call("GET", "/auth/me", Some(&access3), None).status,
        200
    );
    // The refresh token grants no API access, and an access token does not refresh.
    assert_eq!(
        server.call("GET", "/auth/me", Some(&refresh3), None).status,
        401
    );
    let wrong_kind = server.call(
        "POST",
        "/auth/refresh",
        None,
        Some(json!({"refresh_token": access3})),
    );
    assert_eq!(wrong_kind.status, 401);
    assert_eq!(wrong_kind.detail(), "Invalid token");
    let forged = server.call(
        "POST",
        "/auth/refresh",
        None,
        Some(json!({"refresh_token": "a.b.c"})),
    );
    assert_eq!(forged.status, 401);

    // Nothing secret in the log (once the access line of the last call has arrived).
    let output = server.output_with("POST /auth/refresh 401");
    for secret in [PASSWORD, &access, &refresh, &access3, &refresh3] {
        assert!(
            !output.contains(secret),
            "the log shows a password or a token"
        );
    }
    assert!(!output.contains("$argon2"), "the log shows a hash");
}

fn stored_password_is_an_argon2id_phc_string(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    assert_eq!(register(&server, "hash@example.com", PASSWORD).status, 201);
    let hashes = password_hashes(&server);
    assert_eq!(hashes.len(), 1);
    assert!(hashes[0].starts_with("$argon2id$v=19$"), "{}", hashes[0]);
    assert!(!hashes[0].contains(PASSWORD));
}

fn wrong_password_and_unknown_email_get_the_same_answer(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    assert_eq!(register(&server, "known@example.com", PASSWORD).status, 201);
    let wrong = login(&server, "known@example.com", "Wrong-Horse-9-battery");
    let unknown = login(&server, "nobody@example.com", PASSWORD);
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert_eq!(wrong.detail(), "Invalid email or password");
    assert_eq!(shape(&wrong), shape(&unknown));
    // An account without a password (created for platform tokens) answers the same.
    server.cli(&["users", "create", "--email", "tokenonly@example.com"]);
    assert_eq!(
        shape(&login(&server, "tokenonly@example.com", PASSWORD)),
        shape(&wrong)
    );
}

fn bcrypt_hashes_of_the_platform_verify(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    server.cli(&["users", "create", "--email", "legacy@example.com"]);
    // Python `bcrypt` 5.0: bcrypt.hashpw(b"Platform-Pass-1", bcrypt.gensalt(rounds=4)).
    server.db.execute(
        "UPDATE users SET password_hash = '$2b$04$9kdl8i.bIGPmPTt7cFJPxu3/WEKhcNZnSZl3XFvW8Mz/oH2CzfCXG' \
         WHERE email = 'legacy@example.com'",
    );
    assert_eq!(
        login(&server, "legacy@example.com", "Platform-Pass-1").status,
        200
    );
    assert_eq!(
        login(&server, "legacy@example.com", "Platform-Pass-2").status,
        401
    );
}

crate::test_on_both_backends!(
    register_login_refresh_and_me,
    stored_password_is_an_argon2id_phc_string,
    wrong_password_and_unknown_email_get_the_same_answer,
    bcrypt_hashes_of_the_platform_verify,
);

fn password_hashes(server: &TestServer) -> Vec<String> {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        password_hash: String,
    }
    let query = "SELECT password_hash FROM users WHERE password_hash IS NOT NULL";
    let rows: Vec<Row> = match server.db.backend {
        Backend::Sqlite => {
            let path = server.db.url.trim_start_matches("sqlite://");
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            diesel::sql_query(query).load(&mut conn).unwrap()
        }
        Backend::Postgres => {
            let mut conn = diesel::PgConnection::establish(&server.db.url).unwrap();
            diesel::sql_query(query).load(&mut conn).unwrap()
        }
    };
    rows.into_iter().map(|r| r.password_hash).collect()
}

#[test]
fn password_rules_are_named_and_the_password_never_echoed() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    for (password, missing) in [
        ("Sh0rt!", "at least 12 characters"),
        ("no-uppercase-123", "an upper-case letter"),
        ("NO-LOWERCASE-123", "a lower-case letter"),
        ("No-Digits-Here!", "a digit"),
        ("NoSymbolsAtAll123", "a symbol"),
    ] {
        let answer = register(&server, "rules@example.com", password);
        assert_eq!(answer.status, 422, "{password}: {}", answer.text);
        assert!(
            answer
                .detail()
                .contains("Password must be 12 to 256 characters"),
            "{}",
            answer.text
        );
        assert!(answer.detail().contains(missing), "{}", answer.text);
        assert_eq!(answer.body["errors"][0]["field"], "password");
        assert!(
            !answer.text.contains(password),
            "the answer quotes the password"
        );
    }
    let bad_email = register(&server, "not-an-email", PASSWORD);
    assert_eq!(bad_email.status, 422, "{}", bad_email.text);
    assert!(!server
        .output_with("POST /auth/register 422")
        .contains("NoSymbolsAtAll123"));
}

#[test]
fn a_taken_email_is_a_conflict() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    assert_eq!(register(&server, "twice@example.com", PASSWORD).status, 201);
    let again = register(&server, "TWICE@example.com", "Another-Horse-9-battery");
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(again.detail(), "Email already registered");
    // The first password still signs in; the second never replaced it.
    assert_eq!(login(&server, "twice@example.com", PASSWORD).status, 200);
}

#[test]
fn sign_in_is_rate_limited_per_account() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    assert_eq!(
        register(&server, "target@example.com", PASSWORD).status,
        201
    );
    // Register counted one attempt on this account: four more are allowed.
    for _ in 0..4 {
        assert_eq!(
            login(&server, "target@example.com", "Wrong-Horse-9-battery").status,
            401
        );
    }
    let limited = login(&server, "target@example.com", PASSWORD);
    assert_eq!(limited.status, 429, "{}", limited.text);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Other accounts from the same address still sign in.
    assert_eq!(register(&server, "other@example.com", PASSWORD).status, 201);
}

#[test]
fn sign_in_is_rate_limited_per_address() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    // 20 attempts at once, then one more every 3 s: the attempts below take a few seconds
    // (argon2 work for each unknown e-mail), so a few more may pass before the first 429.
    let mut first_refused = None;
    for n in 0..40 {
        let answer = login(&server, &format!("user{n}@example.com"), PASSWORD);
        if answer.status == 429 {
            assert!(answer.header("retry-after").is_some());
            first_refused = Some(n);
            break;
        }
        assert_eq!(answer.status, 401, "attempt {n}: {}", answer.text);
    }
    let first_refused = first_refused.expect("one address is limited across accounts");
    assert!(
        first_refused >= 20,
        "refused after {first_refused} attempts"
    );
}

#[test]
fn external_auth_mode_has_no_auth_routes_but_keeps_the_page() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[("AUTH_MODE", Some("external"))])
    else {
        return;
    };
    for (method, path) in [
        ("POST", "/auth/register"),
        ("POST", "/auth/login"),
        ("POST", "/auth/refresh"),
        ("GET", "/auth/me"),
    ] {
        let body =
            (method == "POST").then(|| json!({"email": "a@example.com", "password": PASSWORD}));
        let answer = server.call(method, path, None, body);
        assert_eq!(answer.status, 404, "{method} {path}: {}", answer.text);
    }
    assert_eq!(server.call("GET", "/account", None, None).status, 200);
}

#[test]
fn command_line_users_get_an_argon2id_password() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    let out = server.cli(&[
        "users",
        "create",
        "--email",
        "ops@example.com",
        "--password",
        PASSWORD,
        "--operator",
    ]);
    assert!(!out.contains(PASSWORD));
    let signed_in = login(&server, "ops@example.com", PASSWORD);
    assert_eq!(signed_in.status, 200, "{}", signed_in.text);
    assert!(password_hashes(&server)[0].starts_with("$argon2id$"));

    // A weak password is refused with the rule, and the user is not created.
    let weak = std::process::Command::new(env!("CARGO_BIN_EXE_user-service"))
        .args([
            "users",
            "create",
            "--email",
            "weak@example.com",
            "--password",
            "weakpassword",
        ])
        .env("DATABASE_URL", &server.db.url)
        .env("APP_ENV", "production")
        .env("BROKER_CREDENTIALS_ENCRYPTION_KEY", support::TEST_KEY)
        .env("JWT_SECRET", support::JWT_SECRET)
        .output()
        .unwrap();
    assert!(!weak.status.success());
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(stderr.contains("Password must be"), "{stderr}");
    assert!(!stderr.contains("weakpassword"), "{stderr}");
    assert_eq!(
        login(&server, "weak@example.com", "weakpassword").status,
        401
    );
}

#[test]
fn the_account_page_is_served_with_a_strict_policy() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    let page = server.call("GET", "/account", None, None);
    assert_eq!(page.status, 200);
    assert!(page
        .text
        .contains("<script src=\"/account/account.js\" defer></script>"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(
        page.header("content-security-policy"),
        Some(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    );
    for asset in ["/account/account.js", "/account/account.css"] {
        let answer = server.call("GET", asset, None, None);
        assert_eq!(answer.status, 200, "{asset}");
        assert!(
            answer.header("content-security-policy").is_some(),
            "{asset}"
        );
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{asset}"
        );
    }
    assert_eq!(
        server
            .call("POST", "/account", None, Some(json!({})))
            .status,
        405
    );
}
