//! Choosing and configuring a provider from `SECRET_MANAGER_PROVIDER` and the environment.

#![allow(unused_imports)] // what a build without the HTTP providers does not use

use std::time::Duration;

use secrecy::ExposeSecret;
use user_service_secrets::{source_from, Variables, DEFAULT_TIMEOUT, JWT_SECRET};

use crate::support::{assert_leaks_nothing, Server, SECRET_VALUE, TOKEN};

fn error_of(
    provider: &str,
    pairs: &[(&str, &str)],
) -> user_service_domain::ports::SecretSourceError {
    match source_from(provider, &Variables::from_pairs(pairs.iter().copied())) {
        Ok(source) => panic!("{provider}: expected an error, got {:?}", source.provider()),
        Err(error) => {
            assert_leaks_nothing(&error.to_string());
            error
        }
    }
}

#[test]
fn blank_and_environment_names_choose_the_environment_provider() {
    for name in ["", "  ", "environment", "Environment", " env "] {
        let source = source_from(name, &Variables::from_pairs([(JWT_SECRET, SECRET_VALUE)]))
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(source.provider(), "environment", "{name:?}");
        let value = source.fetch(JWT_SECRET).unwrap().unwrap();
        assert_eq!(value.expose_secret(), SECRET_VALUE);
    }
}

#[test]
fn unknown_provider_is_an_error_listing_the_supported_ones() {
    let error = error_of("aws-secrets-manager", &[]);
    assert_eq!(error.provider, "aws-secrets-manager");
    assert_eq!(error.key, "SECRET_MANAGER_PROVIDER");
    assert!(
        error.reason.contains("`environment`, `vault`, `doppler`"),
        "{error}"
    );
}

#[test]
fn malformed_mapping_is_an_error_for_the_environment_provider() {
    let error = error_of("environment", &[("SECRET_MANAGER_KEY_MAPPING", "[1]")]);
    assert_eq!(error.key, "SECRET_MANAGER_KEY_MAPPING");
}

#[cfg(not(feature = "vault"))]
#[test]
fn vault_without_its_feature_names_the_feature() {
    let error = error_of(
        "vault",
        &[("VAULT_ADDR", "http://vault:8200"), ("VAULT_TOKEN", TOKEN)],
    );
    assert_eq!(error.provider, "vault");
    assert!(error.reason.contains("`vault` cargo feature"), "{error}");
}

#[cfg(not(feature = "doppler"))]
#[test]
fn doppler_without_its_feature_names_the_feature() {
    let error = error_of("doppler", &[("DOPPLER_TOKEN", TOKEN)]);
    assert_eq!(error.provider, "doppler");
    assert!(error.reason.contains("`doppler` cargo feature"), "{error}");
}

#[cfg(all(feature = "vault", not(feature = "tls")))]
#[test]
fn https_address_without_the_tls_feature_is_an_error_naming_it() {
    let error = error_of(
        "vault",
        &[("VAULT_ADDR", "https://vault:8200"), ("VAULT_TOKEN", TOKEN)],
    );
    assert_eq!(error.key, "VAULT_ADDR");
    assert!(error.reason.contains("`tls` cargo feature"), "{error}");
}

#[cfg(feature = "vault")]
mod vault {
    use std::io::Write;

    use user_service_secrets::{KeyMapping, VaultConfig};

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> VaultConfig {
        VaultConfig::from_variables(&Variables::from_pairs(pairs.iter().copied())).unwrap()
    }

    #[test]
    fn vault_needs_an_address_and_a_token() {
        let error = error_of("vault", &[("VAULT_TOKEN", TOKEN)]);
        assert_eq!(
            (error.provider.as_str(), error.key.as_str()),
            ("vault", "VAULT_ADDR")
        );
        let error = error_of(
            "vault",
            &[("VAULT_ADDR", "http://vault:8200"), ("VAULT_TOKEN", " ")],
        );
        assert_eq!(error.key, "VAULT_TOKEN");
    }

    #[test]
    fn vault_defaults_to_the_secret_mount_and_the_trading_bot_folder() {
        let config = config(&[("VAULT_ADDR", "http://vault:8200"), ("VAULT_TOKEN", TOKEN)]);
        assert_eq!(config.addr, "http://vault:8200");
        assert_eq!(config.token.expose_secret(), TOKEN);
        assert_eq!(config.mount, "secret");
        assert_eq!(config.base_path, "trading-bot");
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(config.mapping, KeyMapping::default());
    }

    #[test]
    fn vault_reads_its_settings_and_the_token_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "{TOKEN}").unwrap();
        let config = config(&[
            ("VAULT_ADDR", "http://vault:8200"),
            ("VAULT_TOKEN_FILE", file.path().to_str().unwrap()),
            ("VAULT_KV_MOUNT", "kv"),
            ("VAULT_SECRET_BASE_PATH", "apps/user-service"),
            ("SECRET_MANAGER_TIMEOUT_SECONDS", "0.5"),
            ("SECRET_MANAGER_KEY_MAPPING", r#"{"JWT_SECRET":"AUTH_JWT"}"#),
        ]);
        assert_eq!(config.token.expose_secret(), TOKEN);
        assert_eq!(config.mount, "kv");
        assert_eq!(config.base_path, "apps/user-service");
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.mapping.apply(JWT_SECRET), "AUTH_JWT");
    }

    #[test]
    fn vault_token_and_token_file_both_set_is_an_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let error = error_of(
            "vault",
            &[
                ("VAULT_ADDR", "http://vault:8200"),
                ("VAULT_TOKEN", TOKEN),
                ("VAULT_TOKEN_FILE", file.path().to_str().unwrap()),
            ],
        );
        assert_eq!(error.key, "VAULT_TOKEN");
        assert!(error.reason.contains("set only one"), "{error}");
    }

    #[test]
    fn timeout_must_be_a_positive_number_of_seconds() {
        for timeout in ["0", "-1", "five", "NaN", "inf", "1e300"] {
            let error = error_of(
                "vault",
                &[
                    ("VAULT_ADDR", "http://vault:8200"),
                    ("VAULT_TOKEN", TOKEN),
                    ("SECRET_MANAGER_TIMEOUT_SECONDS", timeout),
                ],
            );
            assert_eq!(error.key, "SECRET_MANAGER_TIMEOUT_SECONDS", "{timeout}");
        }
    }

    #[test]
    fn vault_chosen_by_name_reads_through_the_mapping() {
        let body = format!(
            r#"{{"data":{{"data":{{"value":"{SECRET_VALUE}"}},"metadata":{{"version":1}}}}}}"#
        );
        let server = Server::answering(200, &body);
        let source = source_from(
            "Vault",
            &Variables::from_pairs([
                ("VAULT_ADDR", server.url.as_str()),
                ("VAULT_TOKEN", TOKEN),
                ("SECRET_MANAGER_KEY_MAPPING", r#"{"JWT_SECRET":"AUTH_JWT"}"#),
                // The prefix is the environment provider's only.
                ("SECRET_MANAGER_ENV_PREFIX", "PROD_"),
            ]),
        )
        .unwrap();
        assert_eq!(source.provider(), "vault");
        let value = source.fetch(JWT_SECRET).unwrap().unwrap();
        assert_eq!(value.expose_secret(), SECRET_VALUE);
        assert_eq!(
            server.request().path(),
            "/v1/secret/data/trading-bot/AUTH_JWT"
        );
    }
}

#[cfg(feature = "doppler")]
mod doppler {
    use user_service_secrets::DopplerConfig;

    use super::*;

    #[test]
    fn doppler_needs_a_token() {
        let error = error_of("doppler", &[("DOPPLER_PROJECT", "p")]);
        assert_eq!(
            (error.provider.as_str(), error.key.as_str()),
            ("doppler", "DOPPLER_TOKEN")
        );
    }

    #[test]
    fn doppler_reads_its_settings_with_the_public_api_as_default() {
        let variables = Variables::from_pairs([
            ("DOPPLER_TOKEN", format!(" {TOKEN}\n").as_str()),
            ("DOPPLER_PROJECT", "user-service"),
            ("DOPPLER_CONFIG", "prd"),
        ]);
        let config = DopplerConfig::from_variables(&variables).unwrap();
        assert_eq!(config.token.expose_secret(), TOKEN);
        assert_eq!(config.project.as_deref(), Some("user-service"));
        assert_eq!(config.config.as_deref(), Some("prd"));
        assert_eq!(config.api_url, "https://api.doppler.com");
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        let variables = Variables::from_pairs([
            ("DOPPLER_TOKEN", TOKEN),
            ("DOPPLER_API_URL", "http://doppler.internal"),
            ("SECRET_MANAGER_TIMEOUT_SECONDS", "2"),
        ]);
        let config = DopplerConfig::from_variables(&variables).unwrap();
        assert_eq!((config.project, config.config), (None, None));
        assert_eq!(config.api_url, "http://doppler.internal");
        assert_eq!(config.timeout, Duration::from_secs(2));
    }

    #[test]
    fn doppler_chosen_by_name_reads_through_the_mapping() {
        let body = format!(
            r#"{{"success":true,"name":"AUTH_JWT","value":{{"raw":"{SECRET_VALUE}","computed":"{SECRET_VALUE}"}}}}"#
        );
        let server = Server::answering(200, &body);
        let source = source_from(
            "doppler",
            &Variables::from_pairs([
                ("DOPPLER_TOKEN", TOKEN),
                ("DOPPLER_API_URL", server.url.as_str()),
                ("DOPPLER_PROJECT", "user-service"),
                ("DOPPLER_CONFIG", "prd"),
                ("SECRET_MANAGER_KEY_MAPPING", r#"{"JWT_SECRET":"AUTH_JWT"}"#),
            ]),
        )
        .unwrap();
        assert_eq!(source.provider(), "doppler");
        let value = source.fetch(JWT_SECRET).unwrap().unwrap();
        assert_eq!(value.expose_secret(), SECRET_VALUE);
        let request = server.request();
        assert_eq!(
            request.query().last(),
            Some(&("name".to_owned(), "AUTH_JWT".to_owned()))
        );
    }
}
