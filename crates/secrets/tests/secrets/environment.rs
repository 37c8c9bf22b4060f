//! The `environment` provider: `NAME` or `NAME_FILE`, prefix and mapping.

use std::io::Write;

use secrecy::ExposeSecret;
use user_service_domain::ports::SecretSource;
use user_service_secrets::{
    EnvironmentConfig, EnvironmentSource, KeyMapping, Variables, JWT_SECRET,
};

use crate::support::{assert_leaks_nothing, SECRET_VALUE};

fn source(pairs: &[(&str, &str)]) -> EnvironmentSource {
    let variables = Variables::from_pairs(pairs.iter().copied());
    let config = EnvironmentConfig::from_variables(&variables).unwrap();
    EnvironmentSource::with_variables(config, variables)
}

fn fetched(source: &EnvironmentSource, name: &str) -> Option<String> {
    source
        .fetch(name)
        .unwrap()
        .map(|secret| secret.expose_secret().to_owned())
}

fn file_holding(content: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file
}

#[test]
fn reads_the_variable_named_after_the_secret() {
    let source = source(&[(JWT_SECRET, SECRET_VALUE)]);
    assert_eq!(source.provider(), "environment");
    assert_eq!(fetched(&source, JWT_SECRET).as_deref(), Some(SECRET_VALUE));
}

#[test]
fn unset_secret_is_none() {
    let source = source(&[("OTHER", "x")]);
    assert_eq!(fetched(&source, JWT_SECRET), None);
}

#[test]
fn reads_the_file_named_by_name_file_without_its_trailing_newline() {
    let file = file_holding(&format!("{SECRET_VALUE}\r\n"));
    let path = file.path().to_str().unwrap();
    let source = source(&[("JWT_SECRET_FILE", path)]);
    assert_eq!(fetched(&source, JWT_SECRET).as_deref(), Some(SECRET_VALUE));
}

#[test]
fn variable_and_file_both_set_is_an_error_naming_both() {
    let file = file_holding(SECRET_VALUE);
    let path = file.path().to_str().unwrap();
    let source = source(&[(JWT_SECRET, SECRET_VALUE), ("JWT_SECRET_FILE", path)]);
    let error = source.fetch(JWT_SECRET).unwrap_err();
    assert_eq!(error.provider, "environment");
    assert_eq!(error.key, JWT_SECRET);
    assert!(
        error.reason.contains("JWT_SECRET and JWT_SECRET_FILE"),
        "{error}"
    );
    assert_leaks_nothing(&error.to_string());
}

#[test]
fn unreadable_file_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let missing = directory.path().join("missing");
    let source = source(&[("JWT_SECRET_FILE", missing.to_str().unwrap())]);
    let error = source.fetch(JWT_SECRET).unwrap_err();
    let expected = format!(
        "cannot read {} (named by JWT_SECRET_FILE)",
        missing.display()
    );
    assert!(error.reason.contains(&expected), "{error}");
}

#[test]
fn prefix_is_prepended_to_every_name() {
    let source = source(&[
        ("SECRET_MANAGER_ENV_PREFIX", "PROD_"),
        (JWT_SECRET, "unprefixed"),
        ("PROD_JWT_SECRET", SECRET_VALUE),
    ]);
    assert_eq!(source.variable(JWT_SECRET), "PROD_JWT_SECRET");
    assert_eq!(fetched(&source, JWT_SECRET).as_deref(), Some(SECRET_VALUE));
}

#[test]
fn mapping_renames_the_secret_before_the_prefix_is_added() {
    let source = source(&[
        ("SECRET_MANAGER_ENV_PREFIX", "PROD_"),
        ("SECRET_MANAGER_KEY_MAPPING", r#"{"JWT_SECRET":"AUTH_JWT"}"#),
        ("PROD_JWT_SECRET", "not this one"),
        ("PROD_AUTH_JWT", SECRET_VALUE),
    ]);
    assert_eq!(fetched(&source, JWT_SECRET).as_deref(), Some(SECRET_VALUE));
    // Names the mapping does not list are read as they are.
    assert_eq!(fetched(&source, "OTHER"), None);
}

#[test]
fn mapping_that_is_not_an_object_of_strings_is_an_error() {
    for mapping in [r#"["JWT_SECRET"]"#, r#"{"JWT_SECRET": 1}"#, "{"] {
        let variables = Variables::from_pairs([("SECRET_MANAGER_KEY_MAPPING", mapping)]);
        let error = EnvironmentConfig::from_variables(&variables).unwrap_err();
        assert_eq!(error.key, "SECRET_MANAGER_KEY_MAPPING", "{mapping}");
        assert!(
            error.reason.contains("not a JSON object of strings"),
            "{error}"
        );
    }
}

#[test]
fn blank_mapping_is_no_mapping() {
    let variables = Variables::from_pairs([("SECRET_MANAGER_KEY_MAPPING", "  ")]);
    let config = EnvironmentConfig::from_variables(&variables).unwrap();
    assert_eq!(config.mapping, KeyMapping::default());
}

#[test]
fn debug_shows_variable_names_but_no_value() {
    let source = source(&[(JWT_SECRET, SECRET_VALUE)]);
    let printed = format!("{source:?}");
    assert!(printed.contains(JWT_SECRET), "{printed}");
    assert_leaks_nothing(&printed);
}

#[test]
fn process_environment_is_read_at_each_fetch() {
    // A name used by this test only, so that no other test sees it change.
    const NAME: &str = "USER_SERVICE_SECRETS_TEST_PROCESS_READ_AT_EACH_FETCH";
    let source = EnvironmentSource::new(EnvironmentConfig::default());
    assert_eq!(fetched(&source, NAME), None);
    std::env::set_var(NAME, SECRET_VALUE);
    assert_eq!(fetched(&source, NAME).as_deref(), Some(SECRET_VALUE));
    std::env::remove_var(NAME);
    assert_eq!(fetched(&source, NAME), None);
}
