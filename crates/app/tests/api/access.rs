//! Authentication, capabilities and account isolation on every route.

use serde_json::json;
use user_service_crypto::{TokenCodec, TokenKind};
use user_service_domain::secrecy::{ExposeSecret, SecretString};
use user_service_domain::Principal;
use user_service_domain::UserId;

use crate::support::{Backend, TestServer, JWT_SECRET};

/// Every protected route with a body it accepts; `{id}` is replaced by another user's id.
const ROUTES: &[(&str, &str, Option<&str>, &str)] = &[
    ("GET", "/users/me/broker-credentials", None, "own"),
    (
        "PUT",
        "/users/me/broker-credentials",
        Some(r#"{"credentials":[{"broker":"binance","api_key":"k"}]}"#),
        "own",
    ),
    ("GET", "/users/me/api-credentials", None, "own"),
    (
        "POST",
        "/users/me/api-credentials",
        Some(r#"{"credentials":[]}"#),
        "own",
    ),
    (
        "PUT",
        "/users/me/api-credentials",
        Some(r#"{"credentials":[]}"#),
        "own",
    ),
    ("DELETE", "/users/me/api-credentials/binance", None, "own"),
    (
        "DELETE",
        "/users/me/broker-credentials/binance",
        None,
        "own",
    ),
    ("GET", "/users/me", None, "own"),
    (
        "PUT",
        "/users/me/preferences",
        Some(r#"{"preferences":{"theme":"dark"}}"#),
        "own",
    ),
    ("GET", "/users/me/onboarding", None, "own"),
    ("POST", "/users/me/onboarding/steps/api-keys", None, "own"),
    ("POST", "/users/me/onboarding/reset", None, "own"),
    ("GET", "/users/{id}/broker-credentials", None, "operator"),
    (
        "PUT",
        "/users/{id}/broker-credentials",
        Some(r#"{"credentials":[]}"#),
        "operator",
    ),
    (
        "DELETE",
        "/users/{id}/broker-credentials/binance",
        None,
        "operator",
    ),
    ("GET", "/users?limit=5", None, "operator"),
    ("GET", "/users/{id}", None, "operator"),
    (
        "PATCH",
        "/users/{id}",
        Some(r#"{"first_name":"Ann"}"#),
        "operator",
    ),
];

fn codec() -> TokenCodec {
    TokenCodec::new(&SecretString::from(JWT_SECRET), None, None)
}

fn route_capability_matrix(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (user, user_token) = server.user("user@example.com", false);
    let (other, _) = server.user("other@example.com", false);
    let (_, operator_token) = server.user("op@example.com", true);
    server.cli(&["revoke", "user@example.com", "can.use_users"]);
    let (_, plain_token) = server.user("plain@example.com", false);
    let expired =
        codec().issue_with_expiry(&Principal::User(UserId(user)), TokenKind::Access, 1_000);
    let refresh = codec().issue_with_expiry(
        &Principal::User(UserId(user)),
        TokenKind::Refresh,
        chrono::Utc::now().timestamp() + 600,
    );
    let forged = TokenCodec::new(&SecretString::from("not-the-secret"), None, None)
        .issue_access(&Principal::User(UserId(user)));

    for (method, path, body, kind) in ROUTES {
        let path = path.replace("{id}", &other.to_string());
        let body: Option<serde_json::Value> = body.map(|b| serde_json::from_str(b).unwrap());
        let call = |token: Option<&str>| server.call(method, &path, token, body.clone());

        let missing = call(None);
        assert_eq!(
            (missing.status, missing.detail()),
            (401, "Missing token"),
            "{method} {path}"
        );
        for bad in [
            expired.expose_secret(),
            refresh.expose_secret(),
            forged.expose_secret(),
            "garbage",
        ] {
            let answer = call(Some(bad));
            assert_eq!(
                (answer.status, answer.detail()),
                (401, "Invalid token"),
                "{method} {path}"
            );
        }
        // `user` lost can.use_users: every route is refused with the dashboard message.
        let denied = call(Some(&user_token));
        assert_eq!(
            (denied.status, denied.detail()),
            (403, "Missing capabilities: can.use_users"),
            "{method} {path}"
        );
        let plain = call(Some(&plain_token));
        let operator = call(Some(&operator_token));
        match *kind {
            "own" => {
                // Allowed: success, or 404 for deleting a broker that is not stored.
                let allowed = |status: u16| status < 300 || (*method == "DELETE" && status == 404);
                assert!(allowed(plain.status), "{method} {path}: {}", plain.text);
                assert!(
                    allowed(operator.status),
                    "{method} {path}: {}",
                    operator.text
                );
            }
            _ => {
                assert_eq!(
                    (plain.status, plain.detail()),
                    (403, "Missing capability: can.manage_users"),
                    "{method} {path}"
                );
                assert!(
                    operator.status < 300 || operator.status == 404,
                    "{method} {path}: {}",
                    operator.text
                );
            }
        }
    }
}

fn neither_user_reaches_the_others_credentials(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (a, token_a) = server.user("alice@example.com", false);
    let (b, token_b) = server.user("bob@example.com", false);
    let put_b = server.call("PUT", "/users/me/broker-credentials", Some(&token_b), Some(json!({"credentials": [{"broker": "binance", "api_key": "bob-key-7777", "api_secret": "bob-secret"}]})));
    assert_eq!(put_b.status, 200);

    // A tries every shape: other's path, user_id in body and query, actor headers.
    assert_eq!(
        server
            .call(
                "GET",
                &format!("/users/{b}/broker-credentials"),
                Some(&token_a),
                None
            )
            .status,
        403
    );
    assert_eq!(
        server
            .call(
                "PUT",
                &format!("/users/{b}/broker-credentials"),
                Some(&token_a),
                Some(json!({"credentials": [{"broker": "binance", "api_key": "x"}]}))
            )
            .status,
        403
    );
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/users/{b}/broker-credentials/binance"),
                Some(&token_a),
                None
            )
            .status,
        403
    );
    let with_body_id = server.call("PUT", &format!("/users/me/broker-credentials?user_id={b}"), Some(&token_a), Some(json!({"user_id": b, "credentials": [{"broker": "binance", "api_key": "alice-key", "user_id": b}]})));
    assert_eq!(with_body_id.status, 200);
    let spoof = server.call_with(
        "GET",
        "/users/me/broker-credentials",
        Some(&token_a),
        None,
        &[("X-Customer-ID", &b.to_string())],
    );
    assert_eq!((spoof.status, spoof.detail()), (403, "Actor mismatch"));
    let bad_header = server.call_with(
        "GET",
        "/users/me/broker-credentials",
        Some(&token_a),
        None,
        &[("X-Customer-ID", "abc")],
    );
    assert_eq!(
        (bad_header.status, bad_header.detail()),
        (400, "Invalid x-customer-id header")
    );
    let same = server.call_with(
        "GET",
        "/users/me/broker-credentials",
        Some(&token_a),
        None,
        &[("X-User-ID", &a.to_string())],
    );
    assert_eq!(same.status, 200);
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/users/me/broker-credentials/binance?user_id={b}"),
                Some(&token_a),
                None
            )
            .status,
        204
    );

    // B's credential is untouched.
    let own = server.call("GET", "/users/me/broker-credentials", Some(&token_b), None);
    assert_eq!(own.body["credentials"][0]["api_key_masked"], "••••••••7777");
}

fn operators_manage_other_accounts(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (user, token) = server.user("trader@example.com", false);
    let (_, op) = server.user("operator@example.com", true);
    let path = format!("/users/{user}/broker-credentials");
    let put = server.call(
        "PUT",
        &path,
        Some(&op),
        Some(json!({"credentials": [{"broker": "kraken", "api_key": "set-by-operator-1"}]})),
    );
    assert_eq!(put.status, 200, "{}", put.text);
    let mine = server.call("GET", "/users/me/broker-credentials", Some(&token), None);
    assert_eq!(mine.body["credentials"][0]["broker"], "kraken");
    assert_eq!(
        server
            .call("DELETE", &format!("{path}/kraken"), Some(&op), None)
            .status,
        204
    );
    assert_eq!(
        server
            .call("GET", "/users/999999/broker-credentials", Some(&op), None)
            .status,
        404
    );
}

fn method_not_allowed_lists_allowed_methods(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (_, token) = server.user("m@example.com", false);
    let answer = server.call("PATCH", "/users/me/broker-credentials", Some(&token), None);
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow"), Some("GET, PUT"));
    let unknown = server.call("GET", "/nope", None, None);
    assert_eq!(unknown.status, 404);
    assert!(unknown.header("x-request-id").is_some());
    let echoed = server.call_with(
        "GET",
        "/health",
        None,
        None,
        &[("X-Request-ID", "trace-abc-123")],
    );
    assert_eq!(echoed.header("x-request-id"), Some("trace-abc-123"));
}

crate::test_on_both_backends!(
    route_capability_matrix,
    neither_user_reaches_the_others_credentials,
    operators_manage_other_accounts,
    method_not_allowed_lists_allowed_methods,
);
