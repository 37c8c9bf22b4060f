#![doc = include_str!("../README.md")]

mod environment;
mod mapping;
mod timeout;
mod variables;

#[cfg(feature = "doppler")]
mod doppler;
#[cfg(any(feature = "vault", feature = "doppler"))]
mod http;
#[cfg(feature = "vault")]
mod vault;

use user_service_domain::ports::{SecretSource, SecretSourceError};

pub use environment::{EnvironmentConfig, EnvironmentSource};
pub use mapping::KeyMapping;
pub use timeout::DEFAULT_TIMEOUT;
pub use variables::Variables;

#[cfg(feature = "doppler")]
pub use doppler::{DopplerConfig, DopplerSource};
#[cfg(feature = "vault")]
pub use vault::{VaultConfig, VaultSource};

/// Name of the encryption key secret.
pub const ENCRYPTION_KEY: &str = "BROKER_CREDENTIALS_ENCRYPTION_KEY";
/// Name of the JWT signing secret.
pub const JWT_SECRET: &str = "JWT_SECRET";

/// Every provider name `SECRET_MANAGER_PROVIDER` accepts, whether compiled in or not.
pub const PROVIDERS: [&str; 3] = ["environment", "vault", "doppler"];

/// The secret source named by `SECRET_MANAGER_PROVIDER`, configured from the process
/// environment.
pub fn source_for(provider: &str) -> Result<Box<dyn SecretSource>, SecretSourceError> {
    source_from(provider, &Variables::process())
}

/// The secret source named `provider`, configured from `variables`.
///
/// The name is case-insensitive; blank means `environment`. A known provider whose cargo
/// feature is compiled out is an error naming that feature.
pub fn source_from(
    provider: &str,
    variables: &Variables,
) -> Result<Box<dyn SecretSource>, SecretSourceError> {
    match provider.trim().to_ascii_lowercase().as_str() {
        "" | "environment" | "env" => Ok(Box::new(EnvironmentSource::with_variables(
            EnvironmentConfig::from_variables(variables)?,
            variables.clone(),
        ))),
        "vault" => vault_source(variables),
        "doppler" => doppler_source(variables),
        other => Err(SecretSourceError {
            provider: other.to_owned(),
            key: "SECRET_MANAGER_PROVIDER".into(),
            reason: format!(
                "unknown provider; the supported ones are `{}`",
                PROVIDERS.join("`, `")
            ),
        }),
    }
}

#[cfg(feature = "vault")]
fn vault_source(variables: &Variables) -> Result<Box<dyn SecretSource>, SecretSourceError> {
    Ok(Box::new(VaultSource::new(VaultConfig::from_variables(
        variables,
    )?)?))
}

#[cfg(not(feature = "vault"))]
fn vault_source(_: &Variables) -> Result<Box<dyn SecretSource>, SecretSourceError> {
    Err(compiled_out("vault"))
}

#[cfg(feature = "doppler")]
fn doppler_source(variables: &Variables) -> Result<Box<dyn SecretSource>, SecretSourceError> {
    Ok(Box::new(DopplerSource::new(
        DopplerConfig::from_variables(variables)?,
    )?))
}

#[cfg(not(feature = "doppler"))]
fn doppler_source(_: &Variables) -> Result<Box<dyn SecretSource>, SecretSourceError> {
    Err(compiled_out("doppler"))
}

#[cfg(any(not(feature = "vault"), not(feature = "doppler")))]
fn compiled_out(provider: &'static str) -> SecretSourceError {
    SecretSourceError {
        provider: provider.into(),
        key: "SECRET_MANAGER_PROVIDER".into(),
        reason: format!(
            "this build does not include the `{provider}` provider; \
             build with the `{provider}` cargo feature to use it"
        ),
    }
}
