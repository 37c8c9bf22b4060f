//! The `environment` provider: `NAME`, or the file named by `NAME_FILE`.

use secrecy::SecretString;
use user_service_domain::ports::{SecretSource, SecretSourceError};

use crate::mapping::KeyMapping;
use crate::variables::Variables;

const PROVIDER: &str = "environment";
const PREFIX_VARIABLE: &str = "SECRET_MANAGER_ENV_PREFIX";

/// Configuration of [`EnvironmentSource`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentConfig {
    /// Prepended to every variable name (`SECRET_MANAGER_ENV_PREFIX`), after the mapping.
    pub prefix: String,
    /// Renames secrets before the prefix is added (`SECRET_MANAGER_KEY_MAPPING`).
    pub mapping: KeyMapping,
}

impl EnvironmentConfig {
    /// The configuration of `SECRET_MANAGER_ENV_PREFIX` and `SECRET_MANAGER_KEY_MAPPING`.
    pub fn from_variables(variables: &Variables) -> Result<Self, SecretSourceError> {
        Ok(Self {
            prefix: variables
                .get(PREFIX_VARIABLE)
                .map(|prefix| prefix.as_str().to_owned())
                .unwrap_or_default(),
            mapping: KeyMapping::from_variables(variables, PROVIDER)?,
        })
    }
}

/// Reads secrets from environment variables and mounted files, at each fetch (so that a
/// reload sees a changed variable or file). Both `NAME` and `NAME_FILE` set is an error.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentSource {
    config: EnvironmentConfig,
    variables: Variables,
}

impl EnvironmentSource {
    /// A source reading the process environment with `config`.
    pub fn new(config: EnvironmentConfig) -> Self {
        Self::with_variables(config, Variables::process())
    }

    /// A source reading `variables` with `config`.
    pub fn with_variables(config: EnvironmentConfig, variables: Variables) -> Self {
        Self { config, variables }
    }

    /// A source configured from the process environment.
    pub fn from_env() -> Result<Self, SecretSourceError> {
        let variables = Variables::process();
        Ok(Self::with_variables(
            EnvironmentConfig::from_variables(&variables)?,
            variables,
        ))
    }

    /// The variable read for the secret `name`.
    pub fn variable(&self, name: &str) -> String {
        format!("{}{}", self.config.prefix, self.config.mapping.apply(name))
    }
}

impl SecretSource for EnvironmentSource {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn fetch(&self, name: &str) -> Result<Option<SecretString>, SecretSourceError> {
        let variable = self.variable(name);
        match self.variables.secret(&variable) {
            Ok(value) => Ok(value.map(|value| SecretString::from(value.as_str()))),
            Err(reason) => Err(SecretSourceError {
                provider: PROVIDER.into(),
                key: variable,
                reason,
            }),
        }
    }
}
