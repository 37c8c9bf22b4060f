//! The served OpenAPI document is the committed snapshot `docs/openapi.json`.

use crate::support::{Backend, TestServer};

#[test]
fn served_document_matches_the_committed_snapshot() {
    let Some(server) = TestServer::spawn_app(Backend::Sqlite, &[]) else {
        return;
    };
    let served = server.call("GET", "/openapi.json", None, None);
    assert_eq!(served.status, 200);
    let snapshot_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&snapshot_path, &served.text).unwrap();
    }
    let committed = std::fs::read_to_string(&snapshot_path).unwrap_or_default();
    assert!(
        served.text == committed,
        "/openapi.json differs from docs/openapi.json; if the change is intended, run \
         `UPDATE_SNAPSHOTS=1 cargo test -p user-service --test api openapi` and commit the file"
    );
    // Every route of the contract is documented.
    for path in [
        "/users/me/broker-credentials",
        "/users/me/api-credentials",
        "/users/me/api-credentials/test",
        "/users/{user_id}/broker-credentials",
        "/users/{user_id}/broker-credentials/{broker}",
        "/users",
        "/ready",
    ] {
        assert!(
            served.body["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
    let docs = server.call("GET", "/docs/", None, None);
    assert_eq!(docs.status, 200);
    assert!(docs.text.contains("swagger"), "Swagger UI is served");
}
