//! Sessions of the embedded sign-in (docs/security.md, "Sessions"): refresh tokens rotate, a
//! spent one presented again revokes its family, sign-out and password changes end sessions, on
//! both backends and against the spawned binary.

use serde_json::{json, Value};

use crate::support::{Answer, Backend, TestServer};

const PASSWORD: &str = "Correct-Horse-9-battery";
const NEW_PASSWORD: &str = "Another-Staple-7-horse";

fn post(server: &TestServer, path: &str, body: Value) -> Answer {
    server.call("POST", path, None, Some(body))
}

fn register(server: &TestServer, email: &str) -> Answer {
    let answer = post(
        server,
        "/auth/register",
        json!({"email": email, "password": PASSWORD}),
    );
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer
}

fn login(server: &TestServer, email: &str, password: &str) -> Answer {
    post(
        server,
        "/auth/login",
        json!({"email": email, "password": password}),
    )
}

fn pair(answer: &Answer) -> (String, String) {
    assert_eq!(answer.body["token_type"], "bearer", "{}", answer.text);
    (
        answer.body["access_token"].as_str().unwrap().to_owned(),
        answer.body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

fn refresh(server: &TestServer, token: &str) -> Answer {
    post(server, "/auth/refresh", json!({"refresh_token": token}))
}

fn assert_invalid_token(answer: &Answer) {
    assert_eq!(answer.status, 401, "{}", answer.text);
    assert_eq!(answer.detail(), "Invalid token", "{}", answer.text);
}

fn refresh_rotates_and_reusing_a_spent_token_revokes_its_family(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (_, first) = pair(&register(&server, "rotate@example.com"));
    let (_, elsewhere) = pair(&login(&server, "rotate@example.com", PASSWORD));

    let renewed = refresh(&server, &first);
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    let (access, second) = pair(&renewed);
    assert_ne!(second, first, "a new refresh token is issued");
    assert_eq!(
        server.call("GET", "/auth/me", Some(&access), None).status,
        200
    );
    assert_eq!(
        server
            .db
            .count_rows("auth_sessions", "replaced_at IS NOT NULL"),
        1
    );

    // The spent token is refused, and its reuse ends the whole family: the token it was
    // exchanged for no longer works either.
    assert_invalid_token(&refresh(&server, &first));
    assert_invalid_token(&refresh(&server, &second));
    // Another sign-in (another family) is not affected.
    let other = refresh(&server, &elsewhere);
    assert_eq!(other.status, 200, "{}", other.text);
}

fn two_refreshes_with_one_token_cannot_both_succeed(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (_, token) = pair(&register(&server, "race@example.com"));
    let barrier = std::sync::Barrier::new(4);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    refresh(&server, &token).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 200).count() <= 1,
        "{statuses:?}"
    );
}

fn logout_ends_the_session_and_is_idempotent(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (access, token) = pair(&register(&server, "bye@example.com"));
    let (_, other) = pair(&login(&server, "bye@example.com", PASSWORD));

    let out = post(&server, "/auth/logout", json!({"refresh_token": token}));
    assert_eq!(out.status, 204, "{}", out.text);
    assert!(out
        .header("set-cookie")
        .unwrap_or_default()
        .contains("Max-Age=0"));
    assert_invalid_token(&refresh(&server, &token));
    let again = post(&server, "/auth/logout", json!({"refresh_token": token}));
    assert_eq!(again.status, 204, "{}", again.text);
    // Not a refresh token of a stored session: 401.
    assert_invalid_token(&post(
        &server,
        "/auth/logout",
        json!({"refresh_token": "a.b.c"}),
    ));
    assert_invalid_token(&post(
        &server,
        "/auth/logout",
        json!({"refresh_token": access}),
    ));
    assert_invalid_token(&post(&server, "/auth/logout", json!({})));
    // The other sign-in still works.
    assert_eq!(refresh(&server, &other).status, 200);
}

fn changing_the_password_ends_every_other_session(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (access, mine) = pair(&register(&server, "change@example.com"));
    let (_, other) = pair(&login(&server, "change@example.com", PASSWORD));
    let change = |current: &str, new: &str| {
        server.call(
            "POST",
            "/auth/password",
            Some(&access),
            Some(json!({"current_password": current, "new_password": new})),
        )
    };

    let wrong = change("Not-The-Password-1", NEW_PASSWORD);
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert_eq!(wrong.body["code"], "invalid_credentials", "{}", wrong.text);
    let weak = change(PASSWORD, "short");
    assert_eq!(weak.status, 422, "{}", weak.text);
    assert!(!weak.text.contains("short"), "{}", weak.text);
    // Nothing changed so far. (Later sign-ins come from another address: the password
    // change counts against the sign-in limits of this one.)
    let elsewhere = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let sign_in = |password: &str| {
        server
            .post_from(
                elsewhere,
                "/auth/login",
                &json!({"email": "change@example.com", "password": password}),
            )
            .0
    };
    assert_eq!(sign_in(PASSWORD), 200);

    let changed = change(PASSWORD, NEW_PASSWORD);
    assert_eq!(changed.status, 200, "{}", changed.text);
    let (_, fresh) = pair(&changed);
    assert_eq!(sign_in(PASSWORD), 401);
    assert_eq!(sign_in(NEW_PASSWORD), 200);
    assert_invalid_token(&refresh(&server, &mine));
    assert_invalid_token(&refresh(&server, &other));
    assert_eq!(
        refresh(&server, &fresh).status,
        200,
        "the new pair keeps the caller signed in"
    );
    // A refresh token cannot change the password.
    let with_refresh = server.call(
        "POST",
        "/auth/password",
        Some(&fresh),
        Some(json!({"current_password": NEW_PASSWORD, "new_password": PASSWORD})),
    );
    assert_eq!(with_refresh.status, 401, "{}", with_refresh.text);
}

fn set_password_from_the_command_line_ends_every_session(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (_, token) = pair(&register(&server, "operator-reset@example.com"));
    let run = server.cli_with(
        &[
            "users",
            "set-password",
            "operator-reset@example.com",
            "--password",
            NEW_PASSWORD,
        ],
        &[],
    );
    assert!(run.status.success(), "{run:?}");
    let out = String::from_utf8_lossy(&run.stdout);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(out.contains("1 sessions revoked"), "{out}");
    assert!(
        log.contains("set from the command line"),
        "the operator action is logged: {log}"
    );
    assert!(
        !out.contains(NEW_PASSWORD) && !log.contains(NEW_PASSWORD),
        "the password is never shown"
    );
    assert_invalid_token(&refresh(&server, &token));
    assert_eq!(
        login(&server, "operator-reset@example.com", PASSWORD).status,
        401
    );
    assert_eq!(
        login(&server, "operator-reset@example.com", NEW_PASSWORD).status,
        200
    );

    let weak = server.cli_with(
        &[
            "users",
            "set-password",
            "operator-reset@example.com",
            "--password",
            "weak",
        ],
        &[],
    );
    assert!(!weak.status.success());
    let unknown = server.cli_with(
        &[
            "users",
            "set-password",
            "nobody@example.com",
            "--password",
            NEW_PASSWORD,
        ],
        &[],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("user not found"));
}

fn set_password_reads_the_password_from_standard_input(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (access, token) = pair(&register(&server, "piped@example.com"));
    let id = server.call("GET", "/auth/me", Some(&access), None).body["id"].to_string();
    let piped = server.cli_with_input(
        &["users", "set-password", &id, "--password-stdin"],
        &format!("{NEW_PASSWORD}\n"),
    );
    assert!(piped.status.success(), "{piped:?}");
    assert_invalid_token(&refresh(&server, &token));
    assert_eq!(
        login(&server, "piped@example.com", NEW_PASSWORD).status,
        200
    );
    let without = server.cli_with(&["users", "set-password", &id], &[]);
    assert!(!without.status.success(), "a password source is required");
}

fn the_refresh_cookie_works_only_with_the_marker_header(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let signed_in = register(&server, "cookie@example.com");
    let set = signed_in.header("set-cookie").unwrap().to_owned();
    let (_, token) = pair(&signed_in);
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/auth"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(
        set.starts_with(&format!("user_service_refresh={token};")),
        "the cookie holds the refresh token"
    );
    let cookie = format!("user_service_refresh={token}");

    // Without the marker header (what a cross-site form could send): refused, nothing spent.
    let forged = server.call_with(
        "POST",
        "/auth/refresh",
        None,
        Some(json!({})),
        &[("Cookie", &cookie)],
    );
    assert_eq!(forged.status, 403, "{}", forged.text);
    let marked = [
        ("Cookie", cookie.as_str()),
        ("X-Requested-With", "user-service"),
    ];
    let renewed = server.call_with("POST", "/auth/refresh", None, Some(json!({})), &marked);
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    let (_, next) = pair(&renewed);
    assert!(renewed
        .header("set-cookie")
        .unwrap()
        .starts_with(&format!("user_service_refresh={next};")));

    let cookie = format!("user_service_refresh={next}");
    let marked = [
        ("Cookie", cookie.as_str()),
        ("X-Requested-With", "user-service"),
    ];
    let out = server.call_with("POST", "/auth/logout", None, Some(json!({})), &marked);
    assert_eq!(out.status, 204, "{}", out.text);
    assert_invalid_token(&refresh(&server, &next));
}

crate::test_on_both_backends!(
    refresh_rotates_and_reusing_a_spent_token_revokes_its_family,
    two_refreshes_with_one_token_cannot_both_succeed,
    logout_ends_the_session_and_is_idempotent,
    changing_the_password_ends_every_other_session,
    set_password_from_the_command_line_ends_every_session,
    set_password_reads_the_password_from_standard_input,
    the_refresh_cookie_works_only_with_the_marker_header,
);
