//! A database outage seen from HTTP (docs/persistence.md#outages): requests fail fast with 503 and a JSON detail,
//! liveness stays up, readiness says why, a failed write changes nothing, and the service
//! recovers by itself when the database returns, without losing an acknowledged write.

use std::time::{Duration, Instant};

use serde_json::json;

use user_service_test_support::db::admin_execute;

use crate::support::{Backend, TestDatabase, TestServer};

const PATH: &str = "/users/me/broker-credentials";

#[test]
fn an_outage_answers_503_fast_and_the_service_recovers_by_itself() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let name = db.pg_name().unwrap().to_owned();
    let server = TestServer::start_on(db, &[("DATABASE_POOL_SIZE", Some("4"))]).unwrap();
    let (_, token) = server.user("outage@example.com", false);
    let body = |key: &str| Some(json!({"credentials": [{"broker": "binance", "api_key": key}]}));
    assert_eq!(
        server
            .call("PUT", PATH, Some(&token), body("before-1234"))
            .status,
        200
    );
    assert_eq!(server.call("GET", PATH, Some(&token), None).status, 200);

    // The database goes away: no new connection, and the open ones are killed.
    admin_execute(&format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    ));
    admin_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    for (method, body) in [("GET", None), ("PUT", body("during-5678")), ("GET", None)] {
        let started = Instant::now();
        let answer = server.call(method, PATH, Some(&token), body);
        assert_eq!(answer.status, 503, "{method}: {}", answer.text);
        assert!(!answer.detail().is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{method} failed fast: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(server.call("GET", "/health", None, None).status, 200);
    let ready = server.call("GET", "/ready", None, None);
    assert_eq!(
        (ready.status, ready.body["database"].as_str()),
        (503, Some("unavailable"))
    );

    // It comes back: the same process serves again, with the acknowledged write and without
    // the one that failed.
    admin_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let answer = server.call("GET", PATH, Some(&token), None);
        if answer.status == 200 {
            break answer;
        }
        assert_eq!(answer.status, 503, "{}", answer.text);
        assert!(Instant::now() < deadline, "the service did not recover");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(list.body["credentials"][0]["api_key_masked"], "•••••••1234");
    assert_eq!(server.call("GET", "/ready", None, None).status, 200);
    assert_eq!(
        server
            .call("PUT", PATH, Some(&token), body("after-9012"))
            .status,
        200
    );
}
