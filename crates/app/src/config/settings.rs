//! Settings: defaults → optional TOML file (`USER_SERVICE_CONFIG`) → environment.
//!
//! Every setting is declared once, in [`settings!`]: its field (the lower-cased variable name),
//! its type, its default and its documentation; the struct, the list of variables read from the
//! environment and the defaults all come from that one declaration, and a test checks that
//! `docs/configuration.md` documents each of them. Every invalid setting is reported at once.
//!
//! Secrets (encryption key, JWT secret, entitlements key) are not settings: they are read through
//! the secret source (`config::load`) so that they never sit in a plain `String`.
//! `DATABASE_URL`, which holds a password, may come from a file (`DATABASE_URL_FILE`) and is only
//! ever shown redacted.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use user_service_persistence::redact;

use user_service_domain::SigningServices;

use super::proxies::TrustedProxies;

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

/// One declared setting: its variable, its default as text (`None`: unset), its meaning.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    /// The environment variable.
    pub variable: &'static str,
    /// The default, as it would be written in the environment.
    pub default: Option<&'static str>,
    /// What it does.
    pub doc: &'static str,
}

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident : $ty:ty = $default:expr;
    )*) => {
        /// The effective configuration. Field names are the lower-cased environment variable
        /// names.
        #[derive(Clone, Deserialize)]
        pub struct Settings {
            $(
                $(#[doc = $doc])+
                pub $field: $ty,
            )*
        }

        /// Every setting, in declaration order.
        pub const DECLARED: &[Declared] = &[
            $(Declared {
                variable: const_upper::upper!($field),
                default: $default,
                doc: concat!($($doc),+),
            },)*
        ];

        impl Settings {
            /// Reads each field on its own, so that every invalid one is reported.
            fn field_errors(config: &config::Config) -> Vec<String> {
                let mut errors = Vec::new();
                $(
                    match config.get::<$ty>(stringify!($field)) {
                        // Unset: only optional settings have no default.
                        Ok(_) | Err(config::ConfigError::NotFound(_)) => {}
                        Err(error) => {
                            // serde names the valid values of an enum; `config` does not.
                            let raw = config.get_string(stringify!($field)).unwrap_or_default();
                            let message = match serde_json::from_value::<$ty>(
                                serde_json::Value::String(raw),
                            ) {
                                Err(e) if e.to_string().contains("unknown variant") => {
                                    e.to_string()
                                }
                                _ => error.to_string(),
                            };
                            errors.push(describe(stringify!($field), &message));
                        }
                    }
                )*
                errors
            }
        }
    };
}

/// `UPPER_CASE` of a lower-case identifier, at compile time.
mod const_upper {
    /// The upper-cased name of a field, as a `&'static str`.
    macro_rules! upper {
        ($field:ident) => {{
            const LOWER: &str = stringify!($field);
            const BYTES: [u8; LOWER.len()] = {
                let mut out = [0u8; LOWER.len()];
                let bytes = LOWER.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    out[i] = bytes[i].to_ascii_uppercase();
                    i += 1;
                }
                out
            };
            match std::str::from_utf8(&BYTES) {
                Ok(text) => text,
                Err(_) => panic!("an identifier is ASCII"),
            }
        }};
    }
    pub(crate) use upper;
}

settings! {
    /// `production` (the key is required and never generated) or `local` (a development key
    /// and JWT secret are created once in `USER_SERVICE_DATA_DIR`, migrations run at start-up).
    app_env: AppEnv = Some("production");
    /// Address to bind.
    host: String = Some("127.0.0.1");
    /// Port to bind (`0` picks a free port).
    port: u16 = Some("8000");
    /// Where the default SQLite database and the development key and JWT secret live, so that
    /// the server and every command find the same ones whatever their working directory.
    /// Default: `$XDG_DATA_HOME/user-service`, else `~/.local/share/user-service`, else `./data`.
    user_service_data_dir: Option<String> = None;
    /// `postgres://…` (one or several hosts), `sqlite://PATH` or a path. Default: SQLite at
    /// `USER_SERVICE_DATA_DIR/user-service.db`. Holds a password: may be given as a file with
    /// `DATABASE_URL_FILE`, and is only ever shown redacted.
    database_url: Option<String> = None;
    /// Most database connections of this process.
    database_pool_size: u32 = Some("16");
    /// Apply migrations at start-up (default: on with `APP_ENV=local`; otherwise run
    /// `user-service migrate`; a schema behind the program is refused at start-up).
    run_migrations: Option<bool> = None;
    /// Exit before binding when the key is missing or invalid (default: on outside
    /// `APP_ENV=local`); off, the service answers 503 on credential routes instead.
    broker_credentials_key_required: Option<bool> = None;
    /// The development key file (`APP_ENV=local` only); the development JWT secret sits beside
    /// it (`dev-jwt.secret`). Default: `USER_SERVICE_DATA_DIR/dev-encryption.key`.
    dev_key_path: Option<String> = None;
    /// Where secrets come from: `environment`, `vault` or `doppler`.
    secret_manager_provider: String = Some("environment");
    /// `local` (the `user_capabilities` table) or `remote` (the platform's entitlements
    /// service).
    entitlements_provider: EntitlementsKind = Some("local");
    /// Base URL of the entitlements service (`remote` provider).
    entitlements_service_url: Option<String> = None;
    /// How long capabilities are cached per user, in seconds.
    entitlements_cache_ttl_secs: u64 = Some("10");
    /// How long past its TTL a cached answer is served while the provider fails, in seconds.
    entitlements_stale_if_error_secs: u64 = Some("300");
    /// When set, tokens must carry this `iss`.
    jwt_issuer: Option<String> = None;
    /// When set, tokens must carry this `aud`.
    jwt_audience: Option<String> = None;
    /// `embedded` (this service signs users in, `/auth/*`) or `external` (the platform's auth
    /// service issues tokens).
    auth_mode: AuthMode = Some("embedded");
    /// Log line format: `text` or `json`.
    log_format: LogFormat = Some("text");
    /// Largest request body, in bytes (413 above).
    max_body_bytes: usize = Some("65536");
    /// HTTP worker threads (default: one per core).
    workers: Option<usize> = None;
    /// Grace period for requests in flight on SIGTERM, in seconds.
    shutdown_timeout_secs: u64 = Some("30");
    /// Binance API base URL of the connection test.
    broker_probe_binance_url: String = Some("https://api.binance.com");
    /// Kraken API base URL of the connection test.
    broker_probe_kraken_url: String = Some("https://api.kraken.com");
    /// Alpaca trading API base URL of the connection test.
    broker_probe_alpaca_url: String = Some("https://api.alpaca.markets");
    /// How long one connection test may take (connection, TLS, request and answer), in seconds.
    broker_probe_timeout_secs: u64 = Some("5");
    /// `/ready` stays 200 while rows remain under a key no longer configured (during a
    /// rotation; see operations.md).
    ready_allow_retired_key_rows: bool = Some("false");
    /// Rows without a binding tag read as undecryptable and are not re-bound by `keys rotate`,
    /// whatever the cut-over mode of the database (security.md).
    broker_credentials_require_binding: bool = Some("false");
    /// Most broker credentials one user may store (a request adding more is refused with 422).
    max_credentials_per_user: usize = Some("50");
    /// Connection tests one user may run a minute (429 above).
    connection_tests_per_user_per_minute: u32 = Some("5");
    /// Connection tests all users together may run a minute, per replica (429 above).
    connection_tests_per_minute: u32 = Some("60");
    /// Platform services (token `sub` names, comma-separated) that may have broker requests
    /// signed with a trader's stored key (signing.md). Empty: the signing route is off.
    signing_services: SigningServices = Some("");
    /// Signatures one trader's keys may give a minute, per replica (429 above).
    signatures_per_user_per_minute: u32 = Some("600");
    /// Signatures one platform service may obtain a minute, per replica (429 above).
    signatures_per_service_per_minute: u32 = Some("6000");
    /// Balancers whose `X-Forwarded-For` is believed: comma-separated addresses or CIDR blocks.
    /// From such a peer, the client is the right-most forwarded address that is not one of them
    /// (sign-in throttling counts it); unset, the TCP peer is the client.
    trusted_proxies: Option<TrustedProxies> = None;
}

/// The variable, with the value only when it is not the database URL (which holds a password).
fn describe(field: &str, error: &str) -> String {
    let variable = field.to_ascii_uppercase();
    if field == "database_url" {
        return format!("{variable} is invalid");
    }
    format!("{variable}: {error}")
}

/// The configuration could not be read: every problem, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .0.join("; "))]
pub struct SettingsError(pub Vec<String>);

impl Settings {
    /// Reads defaults, then the TOML file named by `USER_SERVICE_CONFIG` if set, then the
    /// environment (and `DATABASE_URL_FILE`).
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(std::env::vars())
    }

    /// [`Settings::load`] with the environment given.
    pub fn load_from(env: impl Iterator<Item = (String, String)>) -> Result<Self, SettingsError> {
        let env: Vec<(String, String)> = env.collect();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let mut builder = config::Config::builder();
        for declared in DECLARED {
            if let Some(default) = declared.default {
                builder = builder
                    .set_default(declared.variable.to_ascii_lowercase(), default)
                    .map_err(|e| SettingsError(vec![e.to_string()]))?;
            }
        }
        if let Some(path) = get("USER_SERVICE_CONFIG") {
            builder = builder.add_source(config::File::new(&path, config::FileFormat::Toml));
        }
        // Flat names (`DATABASE_URL`) as the platform uses them. Only declared names are read,
        // so that no secret variable ever enters the configuration map.
        let mut known: config::Map<String, String> = env
            .iter()
            .filter(|(name, _)| DECLARED.iter().any(|d| d.variable == name.as_str()))
            .cloned()
            .collect();
        let mut problems = Vec::new();
        if let Some(path) = get("DATABASE_URL_FILE") {
            if get("DATABASE_URL").is_some() {
                problems
                    .push("both DATABASE_URL and DATABASE_URL_FILE are set; set only one".into());
            }
            match std::fs::read_to_string(&path) {
                Ok(url) => {
                    known.insert("DATABASE_URL".into(), url.trim().to_owned());
                }
                Err(e) => problems.push(format!(
                    "cannot read {path} (named by DATABASE_URL_FILE): {}",
                    e.kind()
                )),
            }
        }
        builder = builder.add_source(
            config::Environment::default()
                .separator("__")
                .try_parsing(true)
                .ignore_empty(true)
                .source(Some(known)),
        );
        let config = builder
            .build()
            .map_err(|e| SettingsError(vec![e.to_string()]))?;
        problems.extend(Self::field_errors(&config));
        if !problems.is_empty() {
            return Err(SettingsError(problems));
        }
        let mut settings: Settings = config
            .try_deserialize()
            .map_err(|e| SettingsError(vec![e.to_string()]))?;
        let data_dir = settings.data_dir_from(get("XDG_DATA_HOME"), get("HOME"));
        settings.user_service_data_dir = Some(data_dir.display().to_string());
        settings.database_url.get_or_insert_with(|| {
            format!("sqlite://{}", data_dir.join("user-service.db").display())
        });
        settings
            .dev_key_path
            .get_or_insert_with(|| data_dir.join("dev-encryption.key").display().to_string());
        Ok(settings)
    }

    fn data_dir_from(&self, xdg: Option<String>, home: Option<String>) -> PathBuf {
        if let Some(dir) = &self.user_service_data_dir {
            return PathBuf::from(dir);
        }
        match (
            xdg.filter(|d| !d.is_empty()),
            home.filter(|h| !h.is_empty()),
        ) {
            (Some(xdg), _) => PathBuf::from(xdg).join("user-service"),
            (None, Some(home)) => PathBuf::from(home).join(".local/share/user-service"),
            (None, None) => PathBuf::from("./data"),
        }
    }

    /// The database URL (resolved at load).
    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or_default()
    }

    /// The development key file (resolved at load).
    pub fn dev_key_path(&self) -> &str {
        self.dev_key_path.as_deref().unwrap_or_default()
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
             secret_manager={} entitlements={:?} auth_mode={:?} log_format={:?} max_body_bytes={} trusted_proxies={:?} signing_services=[{}]",
            self.app_env,
            self.host,
            self.port,
            redact(self.database_url()),
            self.database_pool_size,
            self.run_migrations(),
            self.key_required(),
            self.broker_credentials_require_binding,
            self.secret_manager_provider,
            self.entitlements_provider,
            self.auth_mode,
            self.log_format,
            self.max_body_bytes,
            self.trusted_proxies.clone().unwrap_or_default(),
            self.signing_services.names().collect::<Vec<_>>().join(","),
        )
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load_from(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn every_invalid_setting_is_reported_at_once_with_the_valid_values() {
        let error = load(&[
            ("APP_ENV", "dev"),
            ("PORT", "eighty"),
            ("AUTH_MODE", "both"),
        ])
        .unwrap_err()
        .to_string();
        for part in ["APP_ENV", "`production`", "`local`", "PORT", "AUTH_MODE"] {
            assert!(error.contains(part), "{part}: {error}");
        }
    }

    #[test]
    fn the_data_dir_places_the_database_and_the_development_files_together() {
        let settings = load(&[("HOME", "/home/ann")]).unwrap();
        assert_eq!(
            settings.database_url(),
            "sqlite:///home/ann/.local/share/user-service/user-service.db"
        );
        assert_eq!(
            settings.dev_key_path(),
            "/home/ann/.local/share/user-service/dev-encryption.key"
        );
        let settings = load(&[("USER_SERVICE_DATA_DIR", "/srv/us"), ("HOME", "/h")]).unwrap();
        assert_eq!(settings.database_url(), "sqlite:///srv/us/user-service.db");
        let settings = load(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")]).unwrap();
        assert_eq!(
            settings.dev_key_path(),
            "/x/user-service/dev-encryption.key"
        );
    }

    #[test]
    fn the_database_url_may_come_from_a_file_and_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "postgres://svc:hunter2@db/users\n").unwrap();
        let settings = load(&[("DATABASE_URL_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(settings.database_url(), "postgres://svc:hunter2@db/users");
        assert!(!format!("{settings:?}").contains("hunter2"));
        let both = load(&[
            ("DATABASE_URL_FILE", path.to_str().unwrap()),
            ("DATABASE_URL", "sqlite://x.db"),
        ])
        .unwrap_err()
        .to_string();
        assert!(both.contains("set only one"), "{both}");
        let missing = load(&[("DATABASE_URL_FILE", "/nonexistent/url")])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/url"), "{missing}");
    }

    #[test]
    fn the_configuration_document_lists_every_setting() {
        let doc = include_str!("../../../../docs/configuration.md");
        for declared in DECLARED {
            assert!(
                doc.contains(&format!("`{}`", declared.variable)),
                "docs/configuration.md does not document {}",
                declared.variable
            );
        }
    }
}
