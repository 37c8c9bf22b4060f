//! Configuration (SPEC §7): defaults → optional TOML file (`USER_SERVICE_CONFIG`) → environment.
//!
//! Secrets (encryption key, JWT secret) are not part of [`Settings`]: they are read through the
//! secret source ([`crate::secrets`]) so that they never sit in a plain `String`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Where the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    /// The default: the key is required and never generated.
    Production,
    /// Local development: a development key may be generated, migrations run at start-up.
    Local,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which entitlements provider resolves capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntitlementsKind {
    /// Capabilities stored in `user_capabilities`.
    Local,
    /// The platform's entitlements service.
    Remote,
}

/// Who issues tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// This service signs users in (`/auth/*`).
    Embedded,
    /// The platform's auth service issues tokens; `/auth/*` is disabled.
    External,
}

/// The effective configuration. Field names are the lower-cased environment variable names.
#[derive(Clone, Deserialize)]
pub struct Settings {
    /// `APP_ENV`: `production` (default) or `local`.
    pub app_env: AppEnv,
    /// `HOST` to bind (default `127.0.0.1`).
    pub host: String,
    /// `PORT` to bind (default 8000; 0 picks a free port).
    pub port: u16,
    /// `DATABASE_URL` (default `sqlite://./data/user-service.db`).
    pub database_url: String,
    /// `DATABASE_POOL_SIZE` (default 16).
    pub database_pool_size: u32,
    /// `RUN_MIGRATIONS`: apply migrations at start-up (default: on with `APP_ENV=local`).
    pub run_migrations: Option<bool>,
    /// `BROKER_CREDENTIALS_KEY_REQUIRED`: refuse to start without a valid key (default: on
    /// outside `APP_ENV=local`).
    pub broker_credentials_key_required: Option<bool>,
    /// `DEV_KEY_PATH`: where the development key is kept (default `./data/dev-encryption.key`).
    pub dev_key_path: String,
    /// `SECRET_MANAGER_PROVIDER` (default `environment`).
    pub secret_manager_provider: String,
    /// `ENTITLEMENTS_PROVIDER`: `local` (default) or `remote`.
    pub entitlements_provider: EntitlementsKind,
    /// `ENTITLEMENTS_SERVICE_URL`, for the remote provider.
    pub entitlements_service_url: Option<String>,
    /// `ENTITLEMENTS_CACHE_TTL_SECS` (default 10).
    pub entitlements_cache_ttl_secs: u64,
    /// `ENTITLEMENTS_STALE_IF_ERROR_SECS` (default 300).
    pub entitlements_stale_if_error_secs: u64,
    /// `JWT_ISSUER`: when set, tokens must carry this `iss`.
    pub jwt_issuer: Option<String>,
    /// `JWT_AUDIENCE`: when set, tokens must carry this `aud`.
    pub jwt_audience: Option<String>,
    /// `AUTH_MODE`: `embedded` (default) or `external`.
    pub auth_mode: AuthMode,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `MAX_BODY_BYTES` (default 65536).
    pub max_body_bytes: usize,
    /// `WORKERS`: HTTP worker threads (default: number of cores).
    pub workers: Option<usize>,
    /// `SHUTDOWN_TIMEOUT_SECS`: grace period for requests in flight (default 30).
    pub shutdown_timeout_secs: u64,
    /// `BROKER_PROBE_BINANCE_URL` (default `https://api.binance.com`).
    pub broker_probe_binance_url: String,
    /// `BROKER_PROBE_KRAKEN_URL` (default `https://api.kraken.com`).
    pub broker_probe_kraken_url: String,
    /// `BROKER_PROBE_ALPACA_URL` (default `https://api.alpaca.markets`).
    pub broker_probe_alpaca_url: String,
    /// `BROKER_PROBE_TIMEOUT_SECS` (default 5).
    pub broker_probe_timeout_secs: u64,
    /// `READY_ALLOW_RETIRED_KEY_ROWS`: `/ready` stays 200 while rows remain under a key that
    /// is no longer configured (default off; see docs/operations.md).
    pub ready_allow_retired_key_rows: bool,
    /// `MAX_CREDENTIALS_PER_USER`: most broker credentials one user may store (default 50).
    pub max_credentials_per_user: usize,
    /// `CONNECTION_TESTS_PER_USER_PER_MINUTE`: connection tests one user may run a minute
    /// (default 5).
    pub connection_tests_per_user_per_minute: u32,
    /// `CONNECTION_TESTS_PER_MINUTE`: connection tests all users together may run a minute, per
    /// replica (default 60).
    pub connection_tests_per_minute: u32,
    /// `BROKER_CREDENTIALS_REQUIRE_BINDING`: rows without a binding tag read as undecryptable
    /// (default off: the Python service writes none; turn on once `keys rotate` bound them all).
    pub broker_credentials_require_binding: bool,
}

/// Names of the settings, as read from the environment (lower-cased).
const FIELDS: &[&str] = &[
    "app_env",
    "host",
    "port",
    "database_url",
    "database_pool_size",
    "run_migrations",
    "broker_credentials_key_required",
    "dev_key_path",
    "secret_manager_provider",
    "entitlements_provider",
    "entitlements_service_url",
    "entitlements_cache_ttl_secs",
    "entitlements_stale_if_error_secs",
    "jwt_issuer",
    "jwt_audience",
    "auth_mode",
    "log_format",
    "max_body_bytes",
    "workers",
    "shutdown_timeout_secs",
    "broker_probe_binance_url",
    "broker_probe_kraken_url",
    "broker_probe_alpaca_url",
    "broker_probe_timeout_secs",
    "ready_allow_retired_key_rows",
    "broker_credentials_require_binding",
    "max_credentials_per_user",
    "connection_tests_per_user_per_minute",
    "connection_tests_per_minute",
];

/// The configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(String);

impl Settings {
    /// Reads defaults, then the TOML file named by `USER_SERVICE_CONFIG` if set, then the
    /// environment.
    pub fn load() -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder()
            .set_default("app_env", "production")
            .and_then(|b| b.set_default("host", "127.0.0.1"))
            .and_then(|b| b.set_default("port", 8000))
            .and_then(|b| b.set_default("database_url", "sqlite://./data/user-service.db"))
            .and_then(|b| b.set_default("database_pool_size", 16))
            .and_then(|b| b.set_default("dev_key_path", "./data/dev-encryption.key"))
            .and_then(|b| b.set_default("secret_manager_provider", "environment"))
            .and_then(|b| b.set_default("entitlements_provider", "local"))
            .and_then(|b| b.set_default("entitlements_cache_ttl_secs", 10))
            .and_then(|b| b.set_default("entitlements_stale_if_error_secs", 300))
            .and_then(|b| b.set_default("auth_mode", "embedded"))
            .and_then(|b| b.set_default("log_format", "text"))
            .and_then(|b| b.set_default("max_body_bytes", 64 * 1024))
            .and_then(|b| b.set_default("shutdown_timeout_secs", 30))
            .and_then(|b| b.set_default("broker_probe_binance_url", "https://api.binance.com"))
            .and_then(|b| b.set_default("broker_probe_kraken_url", "https://api.kraken.com"))
            .and_then(|b| b.set_default("broker_probe_alpaca_url", "https://api.alpaca.markets"))
            .and_then(|b| b.set_default("broker_probe_timeout_secs", 5))
            .and_then(|b| b.set_default("ready_allow_retired_key_rows", false))
            .and_then(|b| b.set_default("broker_credentials_require_binding", false))
            .and_then(|b| b.set_default("max_credentials_per_user", 50))
            .and_then(|b| b.set_default("connection_tests_per_user_per_minute", 5))
            .and_then(|b| b.set_default("connection_tests_per_minute", 60))
            .map_err(|e| SettingsError(e.to_string()))?;
        if let Ok(path) = std::env::var("USER_SERVICE_CONFIG") {
            builder = builder.add_source(config::File::new(&path, config::FileFormat::Toml));
        }
        // Flat names (`DATABASE_URL`) as the platform uses them. Only the names of the fields
        // are read, so that no secret variable ever enters the configuration map.
        let known: config::Map<String, String> = std::env::vars()
            .filter(|(name, _)| FIELDS.contains(&name.to_ascii_lowercase().as_str()))
            .collect();
        builder = builder.add_source(
            config::Environment::default()
                .separator("__")
                .try_parsing(true)
                .ignore_empty(true)
                .source(Some(known)),
        );
        let settings: Settings = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| SettingsError(e.to_string()))?;
        Ok(settings)
    }

    /// Whether migrations run at start-up.
    pub fn run_migrations(&self) -> bool {
        self.run_migrations.unwrap_or(self.app_env == AppEnv::Local)
    }

    /// Whether a missing or invalid key stops the process.
    pub fn key_required(&self) -> bool {
        self.broker_credentials_key_required
            .unwrap_or(self.app_env != AppEnv::Local)
    }

    /// Time-to-live of cached entitlements.
    pub fn entitlements_ttl(&self) -> Duration {
        Duration::from_secs(self.entitlements_cache_ttl_secs)
    }

    /// One line describing the effective configuration, secrets redacted.
    pub fn summary(&self) -> String {
        format!(
            "app_env={:?} bind={}:{} database={} pool={} run_migrations={} key_required={} require_binding={} \
             secret_manager={} entitlements={:?} auth_mode={:?} log_format={:?} max_body_bytes={}",
            self.app_env,
            self.host,
            self.port,
            redact_url(&self.database_url),
            self.database_pool_size,
            self.run_migrations(),
            self.key_required(),
            self.broker_credentials_require_binding,
            self.secret_manager_provider,
            self.entitlements_provider,
            self.auth_mode,
            self.log_format,
            self.max_body_bytes,
        )
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// A database URL with its password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_password_is_redacted() {
        assert_eq!(
            redact_url("postgres://svc:hunter2@db:5432/users"),
            "postgres://svc:***@db:5432/users"
        );
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
