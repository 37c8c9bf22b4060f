//! What an adversarial review found, each closed: control characters in profile fields,
//! unbounded credentials per user, keys left behind by a deleted account, service principals,
//! ids that would exhaust the sequence, unchecked `nbf`, every actor header value, unaudited
//! audit reads, missing cache and framing headers, an unthrottled connection test, weak
//! secrets and unmigrated schemas accepted at start-up, world-readable files.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::support::{Backend, TestDatabase, TestServer, JWT_SECRET};

const PATH: &str = "/users/me/broker-credentials";

/// A token signed with the servers' secret for arbitrary claims.
fn token(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

fn control_characters_in_text_fields_are_422(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (id, user) = server.user("nul@example.com", false);
    let (_, operator) = server.user("nul-op@example.com", true);
    let platform = token(json!({"sub": "77", "exp": in_an_hour()}));
    for value in ["a\u{0}b", "line\nbreak", "bell\u{7}", "\u{202e}reversed"] {
        let email = format!("x{}@example.com", value);
        let cases: [(&str, String, Option<&str>, Value); 6] = [
            (
                "POST",
                "/auth/register".into(),
                None,
                json!({"email": email, "password": "Correct-Horse-9!"}),
            ),
            (
                "POST",
                "/auth/login".into(),
                None,
                json!({"email": email, "password": "Correct-Horse-9!"}),
            ),
            (
                "POST",
                "/users/register".into(),
                Some(&platform),
                json!({"email": email}),
            ),
            (
                "PUT",
                "/users/me".into(),
                Some(&user),
                json!({"first_name": value}),
            ),
            (
                "PATCH",
                format!("/users/{id}"),
                Some(&operator),
                json!({"last_name": value}),
            ),
            (
                "POST",
                "/users".into(),
                Some(&operator),
                json!({"email": "ok@example.com", "phone": value}),
            ),
        ];
        for (method, path, auth, body) in cases {
            let answer = server.call(method, &path, auth, Some(body));
            assert_eq!(
                answer.status, 422,
                "{method} {path} {value:?}: {}",
                answer.text
            );
            assert!(
                answer.detail().contains("control characters"),
                "{}",
                answer.text
            );
        }
    }
}

#[test]
fn control_characters_in_text_fields_are_422_sqlite() {
    control_characters_in_text_fields_are_422(Backend::Sqlite);
}

#[test]
fn control_characters_in_text_fields_are_422_postgres() {
    control_characters_in_text_fields_are_422(Backend::Postgres);
}

fn stored_credentials_are_capped_per_user(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[("MAX_CREDENTIALS_PER_USER", Some("3"))])
    else {
        return;
    };
    let (_, token) = server.user("cap@example.com", false);
    let entries: Vec<Value> = (0..3)
        .map(|i| json!({"broker": format!("b{i}"), "api_key": "k"}))
        .collect();
    let full = server.call(
        "PUT",
        PATH,
        Some(&token),
        Some(json!({ "credentials": entries })),
    );
    assert_eq!(full.status, 200, "{}", full.text);
    let over = server.call(
        "PUT",
        PATH,
        Some(&token),
        Some(json!({"credentials": [{"broker": "b3", "api_key": "k"}]})),
    );
    assert_eq!(over.status, 422, "{}", over.text);
    assert_eq!(
        over.detail(),
        "At most 3 broker credentials may be stored per user"
    );
    // Nothing was written, and replacing a stored one is still allowed at the cap.
    assert_eq!(server.db.count_credentials("1 = 1"), 3);
    let replace = server.call(
        "PUT",
        PATH,
        Some(&token),
        Some(json!({"credentials": [{"broker": "b0", "api_key": "k2"}]})),
    );
    assert_eq!(replace.status, 200, "{}", replace.text);
}

#[test]
fn stored_credentials_are_capped_per_user_sqlite() {
    stored_credentials_are_capped_per_user(Backend::Sqlite);
}

#[test]
fn stored_credentials_are_capped_per_user_postgres() {
    stored_credentials_are_capped_per_user(Backend::Postgres);
}

fn a_deleted_account_leaves_no_key_behind(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (id, token) = server.user("gone@example.com", false);
    let (other, other_token) = server.user("stays@example.com", false);
    let (_, operator) = server.user("gone-op@example.com", true);
    for t in [&token, &other_token] {
        let body = json!({"credentials": [{"broker": "binance", "api_key": "k", "api_secret": "s"}, {"broker": "kraken", "api_key": "k"}]});
        assert_eq!(server.call("PUT", PATH, Some(t), Some(body)).status, 200);
    }
    assert_eq!(
        server
            .call("DELETE", "/users/me", Some(&token), None)
            .status,
        204
    );
    assert_eq!(server.db.count_credentials(&format!("user_id = {id}")), 0);
    assert_eq!(
        server.db.count_credentials(&format!("user_id = {other}")),
        2
    );
    // Each deletion is in the deleted account's trail, for operators to see.
    let trail = server.call(
        "GET",
        &format!("/users/{id}/broker-credentials/audit"),
        Some(&operator),
        None,
    );
    // The account is gone for the API (404), so the trail is read from the table.
    assert_eq!(trail.status, 404, "{}", trail.text);
    let deletions = server.db.count_rows(
        "credential_audit_events",
        &format!("target_user_id = {id} AND outcome = 'account_deleted'"),
    );
    assert_eq!(deletions, 2);
}

#[test]
fn a_deleted_account_leaves_no_key_behind_sqlite() {
    a_deleted_account_leaves_no_key_behind(Backend::Sqlite);
}

#[test]
fn a_deleted_account_leaves_no_key_behind_postgres() {
    a_deleted_account_leaves_no_key_behind(Backend::Postgres);
}

fn a_service_principal_may_only_register_users(backend: Backend) {
    let Some(server) = TestServer::start(backend, &[]) else {
        return;
    };
    let (first, _) = server.user("first@example.com", false);
    // The original service's own tests register users with such a token.
    let service = token(json!({"sub": "auth-service", "exp": in_an_hour()}));
    let created = server.call(
        "POST",
        "/users/register",
        Some(&service),
        Some(json!({"email": "Registered@Example.com"})),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["id"], first + 1, "the next free id");
    assert_eq!(created.body["email"], "registered@example.com");
    let again = server.call(
        "POST",
        "/users/register",
        Some(&service),
        Some(json!({"email": "registered@example.com"})),
    );
    assert_eq!(
        (again.status, again.detail()),
        (409, "Email already registered")
    );
    for (method, path) in [
        ("GET", "/users/me"),
        ("GET", PATH),
        ("GET", "/users"),
        ("GET", &format!("/users/{first}") as &str),
        ("POST", &format!("/users/{first}/activate") as &str),
        ("GET", &format!("/users/{first}/broker-credentials") as &str),
    ] {
        let answer = server.call(method, path, Some(&service), None);
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.text);
        assert_eq!(answer.body["code"], "service_principal", "{}", answer.text);
    }
}

#[test]
fn a_service_principal_may_only_register_users_sqlite() {
    a_service_principal_may_only_register_users(Backend::Sqlite);
}

#[test]
fn a_service_principal_may_only_register_users_postgres() {
    a_service_principal_may_only_register_users(Backend::Postgres);
}

#[test]
fn the_largest_user_id_does_not_exhaust_the_sequence() {
    let Some(server) = TestServer::start(Backend::Postgres, &[]) else {
        return;
    };
    let largest = (1_i64 << 53) - 1;
    let at_limit = token(json!({"sub": largest.to_string(), "exp": in_an_hour()}));
    let created = server.call(
        "POST",
        "/users/register",
        Some(&at_limit),
        Some(json!({"email": "max@example.com"})),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    for sub in [(largest + 1).to_string(), i64::MAX.to_string(), "0".into()] {
        let beyond = token(json!({"sub": sub, "exp": in_an_hour()}));
        let answer = server.call(
            "POST",
            "/users/register",
            Some(&beyond),
            Some(json!({"email": "beyond@example.com"})),
        );
        assert_eq!(answer.status, 401, "{sub}: {}", answer.text);
    }
    // Sign-ups keep working: the sequence was never moved to the end.
    for i in 0..3 {
        let signed_up = server.call(
            "POST",
            "/auth/register",
            None,
            Some(json!({"email": format!("after{i}@example.com"), "password": "Correct-Horse-9!"})),
        );
        assert_eq!(signed_up.status, 201, "{}", signed_up.text);
    }
}

#[test]
fn tokens_are_checked_strictly() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    let (id, user) = server.user("strict@example.com", false);
    let tomorrow = chrono::Utc::now().timestamp() + 86_400;
    let not_yet = token(json!({"sub": id.to_string(), "exp": tomorrow + 60, "nbf": tomorrow}));
    assert_eq!(server.call("GET", PATH, Some(&not_yet), None).status, 401);
    // Every value of both actor headers must name the token's subject.
    let me = id.to_string();
    let other = (id + 1).to_string();
    for headers in [
        vec![
            ("X-Customer-ID", me.as_str()),
            ("X-User-ID", other.as_str()),
        ],
        vec![("X-User-ID", other.as_str())],
        vec![
            ("X-Customer-ID", me.as_str()),
            ("X-Customer-ID", other.as_str()),
        ],
    ] {
        let answer = server.call_with("GET", PATH, Some(&user), None, &headers);
        assert_eq!(
            (answer.status, answer.detail()),
            (403, "Actor mismatch"),
            "{headers:?}"
        );
    }
    let both = [("X-Customer-ID", me.as_str()), ("X-User-ID", me.as_str())];
    assert_eq!(
        server
            .call_with("GET", PATH, Some(&user), None, &both)
            .status,
        200
    );
}

#[test]
fn reading_someone_elses_audit_trail_is_audited() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    let (id, token) = server.user("watched@example.com", false);
    let (operator_id, operator) = server.user("watcher@example.com", true);
    let path = format!("/users/{id}/broker-credentials/audit");
    assert_eq!(server.call("GET", &path, Some(&operator), None).status, 200);
    let own = server.call(
        "GET",
        "/users/me/broker-credentials/audit",
        Some(&token),
        None,
    );
    let reads: Vec<&Value> = own.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "operator_audit_read")
        .collect();
    assert_eq!(reads.len(), 1, "{}", own.text);
    assert_eq!(reads[0]["actor_id"], operator_id);
}

#[test]
fn personal_answers_are_not_cached_and_the_docs_cannot_be_framed() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    let (_, token) = server.user("headers@example.com", false);
    let me = server.call("GET", "/users/me", Some(&token), None);
    assert_eq!(me.header("cache-control"), Some("no-store"));
    assert_eq!(me.header("x-content-type-options"), Some("nosniff"));
    let docs = server.call("GET", "/docs/", None, None);
    assert_eq!(docs.status, 200);
    let policy = docs.header("content-security-policy").unwrap_or_default();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert_eq!(docs.header("x-frame-options"), Some("DENY"));
}

#[test]
fn the_connection_test_is_rate_limited() {
    let Some(server) = TestServer::start(
        Backend::Sqlite,
        &[
            ("CONNECTION_TESTS_PER_USER_PER_MINUTE", Some("3")),
            // A closed port: the calls fail fast, the limit is what is tested.
            ("BROKER_PROBE_BINANCE_URL", Some("http://127.0.0.1:9")),
        ],
    ) else {
        return;
    };
    let (_, token) = server.user("oracle@example.com", false);
    let (_, other) = server.user("honest@example.com", false);
    let body = json!({"broker": "binance", "api_key": "stolen-key", "api_secret": "stolen-secret"});
    for _ in 0..3 {
        let answer = server.call(
            "POST",
            "/users/me/api-credentials/test",
            Some(&token),
            Some(body.clone()),
        );
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let refused = server.call(
        "POST",
        "/users/me/api-credentials/test",
        Some(&token),
        Some(body.clone()),
    );
    assert_eq!(refused.status, 429, "{}", refused.text);
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Another user is not affected.
    let answer = server.call(
        "POST",
        "/users/me/api-credentials/test",
        Some(&other),
        Some(body),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    let metrics = server.call("GET", "/metrics", None, None);
    assert!(
        metrics
            .text
            .contains("rate_limited_total{limit=\"connection_test\"} 1"),
        "{}",
        metrics.text
    );
}

#[test]
fn a_weak_jwt_secret_is_refused_in_production() {
    for secret in [
        "xq7Zk-tiny",
        "REPLACE-with-the-auth-service-jwt-secret",
        "dev-secret-change-me-dev-secret-change-me",
    ] {
        let db = TestDatabase::create(Backend::Sqlite).unwrap();
        let output = TestServer::start_on(db, &[("JWT_SECRET", Some(secret))])
            .err()
            .unwrap_or_else(|| panic!("started with {secret:?}"));
        assert!(output.contains("JWT_SECRET"), "{output}");
        assert!(!output.contains(secret), "the value was printed: {output}");
    }
}

fn an_unmigrated_database_is_refused_at_start(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let output = TestServer::start_on(db, &[("RUN_MIGRATIONS", Some("0"))])
        .err()
        .expect("refused to start");
    assert!(output.contains("run `user-service migrate`"), "{output}");
}

#[test]
fn an_unmigrated_database_is_refused_at_start_sqlite() {
    an_unmigrated_database_is_refused_at_start(Backend::Sqlite);
}

#[test]
fn an_unmigrated_database_is_refused_at_start_postgres() {
    an_unmigrated_database_is_refused_at_start(Backend::Postgres);
}

#[cfg(unix)]
#[test]
fn files_the_service_creates_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(Backend::Sqlite).unwrap();
    let db_path = db.url.trim_start_matches("sqlite://").to_owned();
    let key_path = dir.path().join("keys/dev-encryption.key");
    let key = key_path.to_str().unwrap();
    let server = TestServer::start_on(
        db,
        &[
            ("APP_ENV", Some("local")),
            ("BROKER_CREDENTIALS_ENCRYPTION_KEY", None),
            ("JWT_SECRET", None),
            ("DEV_KEY_PATH", Some(key)),
        ],
    )
    .unwrap();
    let (_, token) = server.user("files@example.com", false);
    let body = json!({"credentials": [{"broker": "binance", "api_key": "k"}]});
    assert_eq!(
        server.call("PUT", PATH, Some(&token), Some(body)).status,
        200
    );
    for path in [
        db_path.clone(),
        format!("{db_path}-wal"),
        key.to_owned(),
        dir.path().join("keys/dev-jwt.secret").display().to_string(),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path}");
    }
}

#[test]
fn failed_sign_ins_from_one_address_do_not_lock_the_owner_out() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    let registered = server.call(
        "POST",
        "/auth/register",
        None,
        Some(json!({"email": "target@example.com", "password": "Correct-Horse-9!"})),
    );
    assert_eq!(registered.status, 201, "{}", registered.text);
    let wrong = json!({"email": "target@example.com", "password": "Wrong-Guess-000"});
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 3);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(server.post_from(attacker, "/auth/login", &wrong).0);
    }
    assert!(
        statuses.contains(&401) && statuses.ends_with(&[429, 429]),
        "the guesser is stopped: {statuses:?}"
    );
    // The owner, from another address, still gets in with the right password.
    let owner = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let right = json!({"email": "target@example.com", "password": "Correct-Horse-9!"});
    let (status, body) = server.post_from(owner, "/auth/login", &right);
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    // And the guesser is still refused, even with the right password.
    assert_eq!(server.post_from(attacker, "/auth/login", &right).0, 429);
}

/// Sends wrong passwords for `email` as `clients` (one `X-Forwarded-For` value each, from the
/// usual 127.0.0.1 peer); returns the statuses.
fn guesses(server: &TestServer, email: &str, clients: &[String]) -> Vec<u16> {
    let wrong = json!({"email": email, "password": "Wrong-Guess-000"});
    clients
        .iter()
        .map(|client| {
            server
                .call_with(
                    "POST",
                    "/auth/login",
                    None,
                    Some(wrong.clone()),
                    &[("X-Forwarded-For", client)],
                )
                .status
        })
        .collect()
}

#[test]
fn behind_a_trusted_balancer_sign_in_counts_the_forwarded_client() {
    let Some(server) =
        TestServer::start(Backend::Sqlite, &[("TRUSTED_PROXIES", Some("127.0.0.1"))])
    else {
        return;
    };
    let right = json!({"email": "target@example.com", "password": "Correct-Horse-9!"});
    let registered = server.call("POST", "/auth/register", None, Some(right.clone()));
    assert_eq!(registered.status, 201, "{}", registered.text);
    // The guesser writes a different left-most entry each time; the balancer's own entry (the
    // right-most) is what counts, so the guesser is stopped all the same.
    let spoofed: Vec<String> = (0..7)
        .map(|n| format!("198.51.100.{n}, 203.0.113.9"))
        .collect();
    let statuses = guesses(&server, "target@example.com", &spoofed);
    assert!(
        statuses.contains(&401) && statuses.ends_with(&[429, 429]),
        "the guesser is stopped: {statuses:?}"
    );
    // The owner, another client of the same balancer, is not.
    let owner = server.call_with(
        "POST",
        "/auth/login",
        None,
        Some(right),
        &[("X-Forwarded-For", "203.0.113.20")],
    );
    assert_eq!(owner.status, 200, "{}", owner.text);
}

#[test]
fn without_trusted_proxies_a_forwarded_header_changes_nothing() {
    let Some(server) = TestServer::start(Backend::Sqlite, &[]) else {
        return;
    };
    let rotating: Vec<String> = (0..7).map(|n| format!("203.0.113.{n}")).collect();
    let statuses = guesses(&server, "anyone@example.com", &rotating);
    assert!(
        statuses.ends_with(&[429, 429]),
        "a rotated header does not buy attempts: {statuses:?}"
    );
}

/// Two servers on one database count one account's attempts together: replicas behind a
/// balancer allow no more than one process does.
fn replicas_share_sign_in_throttling(backend: Backend) {
    let Some(first) = TestServer::start(backend, &[]) else {
        return;
    };
    let second = TestServer::start_on(first.db.alias(), &[]).unwrap();
    let wrong = json!({"email": "shared@example.com", "password": "Wrong-Guess-000"});
    let statuses: Vec<u16> = (0..7)
        .map(|n| {
            let server = if n % 2 == 0 { &first } else { &second };
            server
                .call("POST", "/auth/login", None, Some(wrong.clone()))
                .status
        })
        .collect();
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 429, 429],
        "five attempts in all, whichever replica answers"
    );
}

#[test]
fn replicas_share_sign_in_throttling_sqlite() {
    replicas_share_sign_in_throttling(Backend::Sqlite);
}

#[test]
fn replicas_share_sign_in_throttling_postgres() {
    replicas_share_sign_in_throttling(Backend::Postgres);
}
