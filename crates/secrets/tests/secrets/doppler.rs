//! The `doppler` provider against a loopback server answering as Doppler's "retrieve secret"
//! API documents: `GET /v3/configs/config/secret?project&config&name` →
//! `{"success": true, "name": …, "value": {"raw": …, "computed": …, …}}`.

use secrecy::SecretString;
use user_service_domain::ports::SecretSourceError;
use user_service_secrets::{DopplerConfig, DopplerSource, KeyMapping, JWT_SECRET};

use crate::support::{
    assert_leaks_nothing, checked_error, closed_port_url, fetch_from, fetch_from_a_stalling_server,
    Server, SECRET_VALUE, TOKEN,
};

/// A "retrieve secret" answer; `raw` and `computed` are JSON (a string or `null`).
fn retrieve_answer(name: &str, raw: &str, computed: &str) -> String {
    format!(
        r#"{{"success":true,"name":"{name}","value":{{"raw":{raw},"computed":{computed},
"note":"","rawVisibility":"masked","computedVisibility":"masked",
"rawValueType":{{"type":"string"}},"computedValueType":{{"type":"string"}}}}}}"#
    )
}

fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

fn config(server: &Server) -> DopplerConfig {
    DopplerConfig {
        api_url: server.url.clone(),
        ..DopplerConfig::new(
            SecretString::from(TOKEN),
            Some("user-service".into()),
            Some("prd".into()),
        )
    }
}

fn fetch(config: DopplerConfig, name: &str) -> Result<Option<String>, SecretSourceError> {
    fetch_from(&DopplerSource::new(config).unwrap(), "doppler", name)
}

/// The error of fetching `name`, checked to leak neither the value nor the token.
fn fetch_error(config: DopplerConfig, name: &str) -> SecretSourceError {
    let error = checked_error(fetch(config, name).unwrap_err(), "doppler");
    assert_eq!(error.key, name);
    error
}

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn reads_the_computed_value_with_a_bearer_token_and_the_documented_query() {
    let body = retrieve_answer(JWT_SECRET, &quoted("${shared.JWT}"), &quoted(SECRET_VALUE));
    let server = Server::answering(200, &body);
    assert_eq!(
        fetch(config(&server), JWT_SECRET).unwrap().as_deref(),
        Some(SECRET_VALUE)
    );
    let request = server.request();
    assert_eq!(request.method, "GET");
    assert_eq!(request.path(), "/v3/configs/config/secret");
    assert_eq!(
        request.query(),
        query(&[
            ("project", "user-service"),
            ("config", "prd"),
            ("name", JWT_SECRET)
        ])
    );
    assert_eq!(
        request.header("Authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[test]
fn raw_value_is_used_when_there_is_no_computed_one() {
    let body = retrieve_answer(JWT_SECRET, &quoted(SECRET_VALUE), "null");
    let server = Server::answering(200, &body);
    assert_eq!(
        fetch(config(&server), JWT_SECRET).unwrap().as_deref(),
        Some(SECRET_VALUE)
    );
}

#[test]
fn service_token_sends_neither_project_nor_config() {
    let body = retrieve_answer(JWT_SECRET, &quoted(SECRET_VALUE), &quoted(SECRET_VALUE));
    let server = Server::answering(200, &body);
    let config = DopplerConfig {
        api_url: format!("{}/", server.url),
        ..DopplerConfig::new(SecretString::from(TOKEN), None, None)
    };
    assert!(fetch(config, JWT_SECRET).unwrap().is_some());
    let request = server.request();
    assert_eq!(request.path(), "/v3/configs/config/secret");
    assert_eq!(request.query(), query(&[("name", JWT_SECRET)]));
}

#[test]
fn mapping_renames_the_secret_asked_for_and_the_name_is_encoded() {
    let body = retrieve_answer("A&B", &quoted(SECRET_VALUE), &quoted(SECRET_VALUE));
    let server = Server::answering(200, &body);
    let config = DopplerConfig {
        mapping: KeyMapping::from_pairs([(JWT_SECRET, "A&B=C D")]),
        ..config(&server)
    };
    assert!(fetch(config, JWT_SECRET).unwrap().is_some());
    let request = server.request();
    assert_eq!(request.query().len(), 3, "{:?}", request.query());
    assert_eq!(
        request.query()[2],
        ("name".to_owned(), "A&B=C D".to_owned())
    );
}

#[test]
fn missing_secret_is_not_set() {
    let server = Server::answering(
        404,
        r#"{"messages":["Could not find requested secret 'JWT_SECRET'"],"success":false}"#,
    );
    assert_eq!(fetch(config(&server), JWT_SECRET).unwrap(), None);
}

#[test]
fn rejected_token_is_an_error() {
    let server = Server::answering(
        401,
        r#"{"messages":["Invalid Auth token"],"success":false}"#,
    );
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(error.reason.contains("HTTP 401"), "{error}");
    assert!(error.reason.contains("DOPPLER_TOKEN"), "{error}");
}

#[test]
fn forbidden_is_an_error() {
    let server = Server::answering(
        403,
        r#"{"messages":["You do not have access to this config"],"success":false}"#,
    );
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(
        error.reason.contains("permission denied (HTTP 403)"),
        "{error}"
    );
    assert!(error.reason.contains("user-service/prd"), "{error}");
}

#[test]
fn other_status_is_an_error_naming_it() {
    let server = Server::answering(500, r#"{"messages":["oops"],"success":false}"#);
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(error.reason.contains("HTTP 500"), "{error}");
}

#[test]
fn malformed_body_is_an_error_that_quotes_nothing_of_it() {
    let truncated = format!(r#"{{"success":true,"value":{{"raw":"{SECRET_VALUE}"#);
    let server = Server::answering(200, &truncated);
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(error.reason.contains("not a secret"), "{error}");
}

#[test]
fn value_of_the_wrong_type_is_an_error() {
    let body = retrieve_answer(JWT_SECRET, "42", &format!("[\"{SECRET_VALUE}\"]"));
    let server = Server::answering(200, &body);
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(error.reason.contains("not a secret"), "{error}");
}

#[test]
fn answer_without_a_value_is_an_error() {
    let server = Server::answering(200, &retrieve_answer(JWT_SECRET, "null", "null"));
    let error = fetch_error(config(&server), JWT_SECRET);
    assert!(error.reason.contains("no readable value"), "{error}");
}

#[test]
fn slow_server_is_an_error_after_the_timeout() {
    let server = fetch_from_a_stalling_server(|server, timeout| {
        let config = DopplerConfig {
            timeout,
            ..config(server)
        };
        fetch_error(config, JWT_SECRET)
    });
    assert_eq!(server.request().path(), "/v3/configs/config/secret");
}

#[test]
fn unreachable_api_is_an_error() {
    let config = DopplerConfig {
        api_url: closed_port_url(),
        ..DopplerConfig::new(SecretString::from(TOKEN), None, None)
    };
    let error = fetch_error(config, JWT_SECRET);
    assert!(error.reason.contains("cannot connect"), "{error}");
}

#[test]
fn debug_shows_no_token() {
    let config = DopplerConfig::new(SecretString::from(TOKEN), Some("p".into()), None);
    assert_leaks_nothing(&format!("{config:?}"));
    let config = DopplerConfig {
        api_url: "http://doppler.test".into(),
        ..config
    };
    let printed = format!("{:?}", DopplerSource::new(config).unwrap());
    assert!(printed.contains("http://doppler.test"), "{printed}");
    assert_leaks_nothing(&printed);
}
