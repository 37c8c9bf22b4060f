//! Users, preferences and onboarding routes (docs/contract.md#users-preferences-onboarding).

use serde_json::json;
use user_service_crypto::TokenCodec;
use user_service_domain::secrecy::{ExposeSecret, SecretString};
use user_service_domain::Principal;
use user_service_domain::UserId;

use crate::support::{Backend, TestServer, JWT_SECRET};

fn profile_lifecycle(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    // A platform token for an id that has no profile yet registers itself.
    let token = TokenCodec::new(&SecretString::from(JWT_SECRET), None, None)
        .issue_access(&Principal::User(UserId(4242)));
    let token = token.expose_secret();
    let created = server.call(
        "POST",
        "/users/register",
        Some(token),
        Some(json!({"email": "Reg@Example.com", "first_name": "Reg"})),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["id"], 4242);
    assert_eq!(created.body["email"], "reg@example.com");
    let again = server.call(
        "POST",
        "/users/register",
        Some(token),
        Some(json!({"email": "reg@example.com"})),
    );
    assert_eq!(
        (again.status, again.detail()),
        (409, "Email already registered")
    );

    assert_eq!(
        server
            .call("POST", "/users/4242/activate", Some(token), None)
            .body["is_active"],
        true
    );
    let updated = server.call(
        "PUT",
        "/users/me",
        Some(token),
        Some(json!({"last_name": "Ister", "phone": "+33 1 23"})),
    );
    assert_eq!(updated.body["last_name"], "Ister");
    let long = server.call(
        "PUT",
        "/users/me",
        Some(token),
        Some(json!({"phone": "1".repeat(33)})),
    );
    assert_eq!(long.status, 422);

    let prefs = server.call(
        "PUT",
        "/users/me/preferences",
        Some(token),
        Some(json!({"preferences": {"theme": "dark"}})),
    );
    assert_eq!(prefs.body["preferences"]["theme"], "dark");
    let step = server.call(
        "POST",
        "/users/me/onboarding/steps/account-profile",
        Some(token),
        None,
    );
    assert_eq!(step.body["current_step"], "api-keys");
    let bad = server.call("POST", "/users/me/onboarding/steps/nope", Some(token), None);
    assert_eq!(bad.status, 422);
    let reset = server.call("POST", "/users/me/onboarding/reset", Some(token), None);
    assert_eq!(reset.body["completed_steps"], json!([]));

    assert_eq!(
        server.call("DELETE", "/users/me", Some(token), None).status,
        204
    );
    let gone = server.call("GET", "/users/me", Some(token), None);
    assert!(gone.status == 404 || gone.status == 403, "{}", gone.text);
}

fn operators_list_and_manage_users(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (_, op) = server.user("boss@example.com", true);
    let (other, other_token) = server.user("staff@example.com", false);
    for i in 0..3 {
        assert_eq!(
            server
                .call(
                    "POST",
                    "/users",
                    Some(&op),
                    Some(json!({"email": format!("u{i}@example.com")}))
                )
                .status,
            201
        );
    }
    let page = server.call("GET", "/users?limit=2&offset=1", Some(&op), None);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.body["pagination"],
        json!({"total": 5, "count": 2, "limit": 2, "offset": 1})
    );
    assert_eq!(
        server.call("GET", "/users?limit=0", Some(&op), None).status,
        422
    );
    assert_eq!(
        server
            .call("GET", "/users?limit=abc", Some(&op), None)
            .status,
        422
    );
    assert_eq!(
        server.call("GET", "/users/abc", Some(&op), None).status,
        422
    );
    assert_eq!(
        server
            .call(
                "PATCH",
                &format!("/users/{other}"),
                Some(&op),
                Some(json!({"first_name": "S"}))
            )
            .body["first_name"],
        "S"
    );
    let not_permitted = server.call(
        "POST",
        &format!("/users/{other}/activate"),
        Some(&other_token),
        None,
    );
    assert_eq!(not_permitted.status, 200);
    let (third, third_token) = server.user("third@example.com", false);
    let _ = third;
    let denied = server.call(
        "POST",
        &format!("/users/{other}/activate"),
        Some(&third_token),
        None,
    );
    assert_eq!(
        (denied.status, denied.detail()),
        (403, "Operation not permitted")
    );
    assert_eq!(
        server
            .call("DELETE", &format!("/users/{other}"), Some(&op), None)
            .status,
        204
    );
    let missing = server.call("GET", &format!("/users/{other}"), Some(&op), None);
    assert_eq!((missing.status, missing.detail()), (404, "User not found"));
}

crate::test_on_both_backends!(profile_lifecycle, operators_list_and_manage_users,);

fn users_token_prints_a_token_for_an_existing_user(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (id, _) = server.user("again@example.com", false);
    for name in ["again@example.com", "AGAIN@example.com", &id.to_string()] {
        let out = server.cli(&["users", "token", name]);
        let token = out.trim();
        assert_eq!(out.lines().count(), 1, "one line: {out}");
        let me = server.call("GET", "/users/me", Some(token), None);
        assert_eq!(
            (me.status, me.body["id"].as_i64()),
            (200, Some(id)),
            "{}",
            me.text
        );
    }
    for unknown in ["nobody@example.com", "999999"] {
        let out = server.cli_with(&["users", "token", unknown], &[]);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "no token printed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("user not found: {unknown}")),
            "{stderr}"
        );
    }
}

crate::test_on_both_backends!(users_token_prints_a_token_for_an_existing_user,);
