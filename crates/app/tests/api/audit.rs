//! The audit trail (docs/contract.md#encryption, docs/operations.md#audit-trail): every write, delete, operator read and binding failure is
//! recorded, visible to the user and to operators, paginated, and never holds a value.

use serde_json::json;

use crate::support::{Backend, TestServer};

const PATH: &str = "/users/me/broker-credentials";

fn audit_trail_records_writes_deletes_and_operator_reads(backend: Backend) {
    let Some(server) = TestServer::spawn_app(backend, &[]) else {
        return;
    };
    let (user, token) = server.user("audited@example.com", false);
    let (_, op) = server.user("auditor@example.com", true);
    let (_, other) = server.user("nosy@example.com", false);
    let put = server.call_with(
        "PUT",
        PATH,
        Some(&token),
        Some(json!({"credentials": [{"broker": "binance", "api_key": "AUDIT-KEY-9876", "api_secret": "AUDIT-SECRET-5432"}]})),
        &[("X-Request-ID", "audit-req-1")],
    );
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(
        server
            .call("DELETE", &format!("{PATH}/binance"), Some(&token), None)
            .status,
        204
    );
    let other_path = format!("/users/{user}/broker-credentials");
    assert_eq!(server.call("GET", &other_path, Some(&op), None).status, 200);

    let own = server.call("GET", &format!("{PATH}/audit"), Some(&token), None);
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.header("cache-control"), Some("no-store"));
    let actions: Vec<&str> = own.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["operator_read", "delete", "write"],
        "newest first: {}",
        own.text
    );
    assert_eq!(
        own.body["pagination"],
        json!({"total": 3, "count": 3, "limit": 50, "offset": 0})
    );
    let write = &own.body["items"][2];
    assert_eq!(write["target_user_id"], user);
    assert_eq!(write["actor_id"], user);
    assert_eq!(write["broker"], "binance");
    assert_eq!(write["outcome"], "success");
    assert_eq!(write["request_id"], "audit-req-1");
    assert!(write["key_id"].as_str().is_some_and(|k| !k.is_empty()));
    assert_ne!(
        own.body["items"][0]["actor_id"], user,
        "the operator is the actor"
    );
    assert!(
        !own.text.contains("AUDIT-KEY") && !own.text.contains("AUDIT-SECRET"),
        "no value in the trail"
    );

    // Pagination.
    let page = server.call(
        "GET",
        &format!("{PATH}/audit?limit=1&offset=1"),
        Some(&token),
        None,
    );
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["items"][0]["action"], "delete");
    assert_eq!(
        page.body["pagination"],
        json!({"total": 3, "count": 1, "limit": 1, "offset": 1})
    );
    for bad in ["limit=0", "limit=201", "limit=abc", "offset=-1"] {
        let answer = server.call("GET", &format!("{PATH}/audit?{bad}"), Some(&token), None);
        assert!(
            matches!(answer.status, 400 | 422),
            "{bad}: {} {}",
            answer.status,
            answer.text
        );
        assert!(!answer.detail().is_empty());
    }

    // Operators read anyone's trail; others cannot.
    let audit_path = format!("{other_path}/audit");
    let seen = server.call("GET", &audit_path, Some(&op), None);
    assert_eq!(seen.status, 200, "{}", seen.text);
    assert_eq!(seen.body["pagination"]["total"], 3);
    assert_eq!(
        server.call("GET", &audit_path, Some(&other), None).status,
        403
    );
    assert_eq!(server.call("GET", &audit_path, None, None).status, 401);
    assert_eq!(
        server
            .call(
                "GET",
                "/users/999999/broker-credentials/audit",
                Some(&op),
                None
            )
            .status,
        404
    );
    // A user's own trail is only theirs.
    let theirs = server.call("GET", &format!("{PATH}/audit"), Some(&other), None);
    assert_eq!(theirs.body["pagination"]["total"], 0);
}

crate::test_on_both_backends!(audit_trail_records_writes_deletes_and_operator_reads,);
