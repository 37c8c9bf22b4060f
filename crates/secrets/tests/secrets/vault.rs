//! The `vault` provider against a loopback server answering as Vault's KV v2 API documents:
//! `GET /v1/{mount}/data/{path}` → `{"data": {"data": {…}, "metadata": {…}}, …}`.

use secrecy::SecretString;
use user_service_domain::ports::SecretSourceError;
use user_service_secrets::{KeyMapping, VaultConfig, VaultSource, ENCRYPTION_KEY, JWT_SECRET};

use crate::support::{
    assert_leaks_nothing, checked_error, closed_port_url, fetch_from, fetch_from_a_stalling_server,
    Server, SECRET_VALUE, TOKEN,
};

/// A "read secret version" answer holding `fields` (a JSON object) as its data.
fn read_answer(fields: &str) -> String {
    format!(
        r#"{{"request_id":"0a7ba5b1-2e6f-4b55-a1a3-55c4b3e54c41","lease_id":"","renewable":false,
"lease_duration":0,"data":{{"data":{fields},"metadata":{{"created_time":"2018-03-22T02:24:06.945319214Z",
"custom_metadata":{{"owner":"platform"}},"deletion_time":"","destroyed":false,"version":2}}}},
"wrap_info":null,"warnings":null,"auth":null}}"#
    )
}

fn config(server: &Server) -> VaultConfig {
    VaultConfig::new(&server.url, SecretString::from(TOKEN))
}

fn fetch(config: VaultConfig, name: &str) -> Result<Option<String>, SecretSourceError> {
    fetch_from(&VaultSource::new(config).unwrap(), "vault", name)
}

/// The error of fetching `name`, checked to leak neither the value nor the token.
fn fetch_error(config: VaultConfig, name: &str) -> SecretSourceError {
    checked_error(fetch(config, name).unwrap_err(), "vault")
}

#[test]
fn reads_the_value_field_with_the_token_in_the_vault_header() {
    let server = Server::answering(
        200,
        &read_answer(&format!(r#"{{"value":"{SECRET_VALUE}"}}"#)),
    );
    let value = fetch(config(&server), ENCRYPTION_KEY).unwrap();
    assert_eq!(value.as_deref(), Some(SECRET_VALUE));
    let request = server.request();
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.path(),
        "/v1/secret/data/trading-bot/BROKER_CREDENTIALS_ENCRYPTION_KEY"
    );
    assert!(request.query().is_empty(), "{:?}", request.query());
    assert_eq!(request.header("X-Vault-Token"), Some(TOKEN));
    assert_eq!(request.header("Authorization"), None);
}

#[test]
fn reads_the_field_named_after_the_secret_when_there_is_no_value_field() {
    let fields = format!(r#"{{"JWT_SECRET":"{SECRET_VALUE}","rotated":3,"tags":["a"]}}"#);
    let server = Server::answering(200, &read_answer(&fields));
    assert_eq!(
        fetch(config(&server), JWT_SECRET).unwrap().as_deref(),
        Some(SECRET_VALUE)
    );
}

#[test]
fn value_field_wins_over_the_field_named_after_the_secret() {
    let fields = format!(r#"{{"JWT_SECRET":"older","value":"{SECRET_VALUE}"}}"#);
    let server = Server::answering(200, &read_answer(&fields));
    assert_eq!(
        fetch(config(&server), JWT_SECRET).unwrap().as_deref(),
        Some(SECRET_VALUE)
    );
}

#[test]
fn mount_base_path_and_mapping_make_the_path() {
    let fields = format!(r#"{{"AUTH_JWT":"{SECRET_VALUE}"}}"#);
    let server = Server::answering(200, &read_answer(&fields));
    let config = VaultConfig {
        mount: "kv/team".into(),
        base_path: "/apps/user service/".into(),
        mapping: KeyMapping::from_pairs([(JWT_SECRET, "AUTH_JWT")]),
        ..config(&server)
    };
    assert_eq!(
        fetch(config, JWT_SECRET).unwrap().as_deref(),
        Some(SECRET_VALUE)
    );
    assert_eq!(
        server.request().path(),
        "/v1/kv/team/data/apps/user%20service/AUTH_JWT"
    );
}

#[test]
fn empty_base_path_reads_at_the_root_of_the_mount() {
    let server = Server::answering(
        200,
        &read_answer(&format!(r#"{{"value":"{SECRET_VALUE}"}}"#)),
    );
    let config = VaultConfig {
        base_path: String::new(),
        ..config(&server)
    };
    assert!(fetch(config, JWT_SECRET).unwrap().is_some());
    assert_eq!(server.request().path(), "/v1/secret/data/JWT_SECRET");
}

#[test]
fn missing_secret_is_not_set() {
    let server = Server::answering(404, r#"{"errors":[]}"#);
    assert_eq!(fetch(config(&server), JWT_SECRET).unwrap(), None);
}

#[test]
fn deleted_latest_version_is_not_set() {
    // Vault answers 404 with the version's metadata and `data: null`.
    let body = r#"{"request_id":"1","lease_id":"","renewable":false,"lease_duration":0,
"data":{"data":null,"metadata":{"created_time":"2018-03-22T02:24:06.945319214Z",
"custom_metadata":null,"deletion_time":"2018-03-22T02:36:43.986212308Z","destroyed":false,
"version":3}},"wrap_info":null,"warnings":null,"auth":null}"#;
    let server = Server::answering(404, body);
    assert_eq!(fetch(config(&server), JWT_SECRET).unwrap(), None);
}

#[test]
fn null_data_in_a_success_answer_is_not_set() {
    let server = Server::answering(200, &read_answer("null"));
    assert_eq!(fetch(config(&server), JWT_SECRET).unwrap(), None);
}

#[test]
fn permission_denied_is_an_error() {
    let server = Server::answering(403, r#"{"errors":["permission denied"]}"#);
    let error = fetch_error(config(&server), JWT_SECRET);
    assert_eq!(error.key, JWT_SECRET);
    assert!(error.reason.contains("permission denied"), "{error}");
    assert!(
        error.reason.contains("secret/data/trading-bot/JWT_SECRET"),
        "{error}"
    );
}

#[test]
fn other_status_is_an_error_naming_it() {
    let server = Server::answering(503, r#"{"errors":["Vault is sealed"]}"#);
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(error.reason.contains("HTTP 503"), "{error}");
}

#[test]
fn redirect_is_not_followed() {
    // Following it would need a second connection, which the server refuses.
    let server = Server::answering_with_header(
        307,
        "",
        "Location: http://127.0.0.1:1/v1/secret/data/trading-bot/JWT_SECRET",
    );
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(error.reason.contains("HTTP 307"), "{error}");
}

#[test]
fn malformed_body_is_an_error_that_quotes_nothing_of_it() {
    let truncated = format!(r#"{{"data":{{"data":{{"value":"{SECRET_VALUE}"#);
    let server = Server::answering(200, &truncated);
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(
        error.reason.contains("not a KV version 2 secret"),
        "{error}"
    );
}

#[test]
fn kv_version_1_answer_is_an_error() {
    let body = format!(r#"{{"data":{{"value":"{SECRET_VALUE}"}},"lease_duration":2764800}}"#);
    let server = Server::answering(200, &body);
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(
        error.reason.contains("not a KV version 2 secret"),
        "{error}"
    );
}

#[test]
fn value_that_is_not_a_string_is_an_error() {
    let server = Server::answering(200, &read_answer(r#"{"value":{"nested":"x"}}"#));
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(error.reason.contains("`value`"), "{error}");
    assert!(error.reason.contains("not a string"), "{error}");
}

#[test]
fn secret_without_either_field_is_an_error() {
    let fields = format!(r#"{{"password":"{SECRET_VALUE}"}}"#);
    let server = Server::answering(200, &read_answer(&fields));
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(
        error
            .reason
            .contains("neither a `value` nor a `JWT_SECRET` field"),
        "{error}"
    );
}

#[test]
fn slow_server_is_an_error_after_the_timeout() {
    let server = fetch_from_a_stalling_server(|server, timeout| {
        let config = VaultConfig {
            timeout,
            ..config(server)
        };
        fetch_error(config, JWT_SECRET)
    });
    // The request did reach the server: it is the answer that was late.
    assert_eq!(server.request().header("X-Vault-Token"), Some(TOKEN));
}

#[test]
fn unreachable_server_is_an_error() {
    let config = VaultConfig::new(closed_port_url(), SecretString::from(TOKEN));
    let error = fetch_error(config, JWT_SECRET);
    assert!(error.reason.contains("cannot connect"), "{error}");
}

#[test]
fn address_must_be_http() {
    let config = VaultConfig::new("vault:8200", SecretString::from(TOKEN));
    let error = VaultSource::new(config).unwrap_err();
    assert_eq!(error.key, "VAULT_ADDR");
}

#[test]
fn debug_shows_no_token() {
    let config = VaultConfig::new("http://vault:8200", SecretString::from(TOKEN));
    assert_leaks_nothing(&format!("{config:?}"));
    let source = VaultSource::new(config).unwrap();
    let printed = format!("{source:?}");
    assert!(printed.contains("http://vault:8200"), "{printed}");
    assert_leaks_nothing(&printed);
}
