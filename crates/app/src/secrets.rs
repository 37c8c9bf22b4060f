//! Secret sources (SPEC §6.2): where the encryption key and the JWT secret come from.
//!
//! The `environment` source reads `NAME`, or the file named by `NAME_FILE` (mounted secrets);
//! both set is an error. `SECRET_MANAGER_ENV_PREFIX` prefixes every name and
//! `SECRET_MANAGER_KEY_MAPPING` (a JSON object) renames keys before lookup.

use std::collections::HashMap;

use secrecy::SecretString;
use user_service_domain::ports::{SecretSource, SecretSourceError};
use zeroize::Zeroizing;

/// Name of the encryption key secret.
pub const ENCRYPTION_KEY: &str = "BROKER_CREDENTIALS_ENCRYPTION_KEY";
/// Name of the JWT signing secret.
pub const JWT_SECRET: &str = "JWT_SECRET";

/// Reads secrets from the process environment and mounted files.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentSource {
    prefix: String,
    mapping: HashMap<String, String>,
}

impl EnvironmentSource {
    /// A source configured from `SECRET_MANAGER_ENV_PREFIX` and `SECRET_MANAGER_KEY_MAPPING`.
    pub fn from_env() -> Result<Self, SecretSourceError> {
        let prefix = std::env::var("SECRET_MANAGER_ENV_PREFIX").unwrap_or_default();
        let mapping = match std::env::var("SECRET_MANAGER_KEY_MAPPING") {
            Ok(json) if !json.trim().is_empty() => {
                serde_json::from_str(&json).map_err(|e| SecretSourceError {
                    provider: "environment".into(),
                    key: "SECRET_MANAGER_KEY_MAPPING".into(),
                    reason: format!("not a JSON object of strings ({e})"),
                })?
            }
            _ => HashMap::new(),
        };
        Ok(Self { prefix, mapping })
    }

    fn variable(&self, name: &str) -> String {
        let mapped = self.mapping.get(name).map_or(name, String::as_str);
        format!("{}{}", self.prefix, mapped)
    }
}

impl SecretSource for EnvironmentSource {
    fn provider(&self) -> &'static str {
        "environment"
    }

    fn fetch(&self, name: &str) -> Result<Option<SecretString>, SecretSourceError> {
        let variable = self.variable(name);
        let file_variable = format!("{variable}_FILE");
        let error = |reason: String| SecretSourceError {
            provider: "environment".into(),
            key: variable.clone(),
            reason,
        };
        let direct = std::env::var(&variable).ok().map(Zeroizing::new);
        let file = std::env::var(&file_variable).ok();
        match (direct, file) {
            (Some(_), Some(_)) => Err(error(format!(
                "both {variable} and {file_variable} are set; set only one"
            ))),
            (Some(value), None) => Ok(Some(SecretString::from(value.as_str().to_owned()))),
            (None, Some(path)) => {
                let content = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                    error(format!(
                        "cannot read the file named by {file_variable}: {}",
                        e.kind()
                    ))
                })?);
                // Mounted files usually end with a newline that is not part of the secret.
                Ok(Some(SecretString::from(
                    content.trim_end_matches(['\n', '\r']).to_owned(),
                )))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The secret source named by `SECRET_MANAGER_PROVIDER`.
pub fn source_for(provider: &str) -> Result<Box<dyn SecretSource>, SecretSourceError> {
    match provider.trim().to_ascii_lowercase().as_str() {
        "" | "environment" | "env" => Ok(Box::new(EnvironmentSource::from_env()?)),
        other => Err(SecretSourceError {
            provider: other.to_owned(),
            key: "SECRET_MANAGER_PROVIDER".into(),
            reason: "unknown provider; this build supports `environment`".into(),
        }),
    }
}
