//! The one loader of the encryption key ring and the JWT secret: at start-up, on `SIGHUP`, and
//! for every command that needs them.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};
use user_service_crypto::KeyRing;
use user_service_domain::ports::SecretSource;

use user_service_crypto::TokenCodec;
use user_service_secrets::{source_for, source_from, Variables, ENCRYPTION_KEY, JWT_SECRET};

use crate::config::settings::{AppEnv, Settings};

/// Prefix of the log line operators watch for (the operating document's third check).
pub const MISCONFIGURED: &str = "broker credentials encryption key misconfigured";

/// The key ring, or why there is none.
#[derive(Debug, Clone)]
pub enum KeyStatus {
    /// A valid ring is loaded.
    Ready(Arc<KeyRing>),
    /// Missing or invalid; the reason names the variable or provider, never the value.
    Misconfigured(String),
}

/// The current key status, replaceable at run time (reload).
#[derive(Debug)]
pub struct KeyHolder(RwLock<KeyStatus>);

impl KeyHolder {
    /// Holds `status`.
    pub fn new(status: KeyStatus) -> Self {
        Self(RwLock::new(status))
    }

    /// The current ring, if one is loaded. A cheap `Arc` clone: no per-request parsing.
    pub fn ring(&self) -> Option<Arc<KeyRing>> {
        match &*self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            KeyStatus::Ready(ring) => Some(Arc::clone(ring)),
            KeyStatus::Misconfigured(_) => None,
        }
    }

    /// The current status.
    pub fn status(&self) -> KeyStatus {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the status.
    pub fn replace(&self, status: KeyStatus) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }
}

/// Re-reads the key ring and the JWT secret (on `SIGHUP`) and swaps them in only
/// when both are valid, the ring into `keys` and the secret as a new codec given to
/// `replace_tokens`: a bad new configuration is refused with the misconfiguration line and
/// the previous ring and secret stay in use. Requests in flight keep the `Arc` they hold.
/// Blocking (a remote secret source may be asked): call it off the async workers.
pub fn reload(
    settings: &Settings,
    keys: &KeyHolder,
    replace_tokens: impl FnOnce(TokenCodec),
) -> Result<(), String> {
    let outcome = source_for(&settings.secret_manager_provider)
        .map_err(|e| e.to_string())
        .and_then(|source| {
            let ring = read_key_ring(settings, source.as_ref())?;
            let secret = load_jwt_secret(settings, source.as_ref())?;
            Ok((ring, secret))
        });
    match outcome {
        Ok((ring, secret)) => {
            let ids: Vec<String> = ring.key_ids().iter().map(ToString::to_string).collect();
            let primary = ring.primary_key_id();
            keys.replace(KeyStatus::Ready(Arc::new(ring)));
            replace_tokens(TokenCodec::new(
                &secret,
                settings.jwt_issuer.clone(),
                settings.jwt_audience.clone(),
            ));
            log::info!(
                "reloaded the key ring (primary {primary}, keys [{}]) and the JWT secret",
                ids.join(", ")
            );
            Ok(())
        }
        Err(reason) => {
            log::error!(
                "{MISCONFIGURED}: {reason} (reload refused: the previous key ring and JWT secret stay in use)"
            );
            Err(reason)
        }
    }
}

/// Reads and parses the key ring. With `APP_ENV=local` and no key configured, uses (creating it
/// once) the development key file. Logs the misconfiguration line when it fails.
pub fn load_key_ring(settings: &Settings, source: &dyn SecretSource) -> KeyStatus {
    let status = match read_key_ring(settings, source) {
        Ok(ring) => KeyStatus::Ready(Arc::new(ring)),
        Err(reason) => KeyStatus::Misconfigured(reason),
    };
    if let KeyStatus::Misconfigured(reason) = &status {
        log::error!("{MISCONFIGURED}: {reason}");
    }
    status
}

fn read_key_ring(settings: &Settings, source: &dyn SecretSource) -> Result<KeyRing, String> {
    let configured = source.fetch(ENCRYPTION_KEY).map_err(|e| e.to_string())?;
    let value = match configured {
        Some(value) if !value.expose_secret().trim().is_empty() => value,
        Some(_) => return Err(format!("{ENCRYPTION_KEY} is empty ({} provider)", source.provider())),
        None if settings.app_env == AppEnv::Local => {
            development_secret(Path::new(settings.dev_key_path()), "encryption key", || {
                KeyRing::generate_key()
            })?
        }
        None => {
            return Err(format!(
                "{ENCRYPTION_KEY} is not set ({} provider); generate one with `user-service keys generate`",
                source.provider()
            ))
        }
    };
    KeyRing::parse(&value).map_err(|e| format!("{ENCRYPTION_KEY} is invalid: {e}"))
}

/// Reads the JWT secret; with `APP_ENV=local` and none configured, a development secret kept
/// beside the development key.
pub fn load_jwt_secret(
    settings: &Settings,
    source: &dyn SecretSource,
) -> Result<SecretString, String> {
    match source.fetch(JWT_SECRET).map_err(|e| e.to_string())? {
        Some(secret) if !secret.expose_secret().is_empty() => match weak_jwt_secret(&secret) {
            Some(reason) if settings.app_env == AppEnv::Production => Err(reason),
            Some(reason) => {
                log::warn!("{reason} (accepted because APP_ENV=local)");
                Ok(secret)
            }
            None => Ok(secret),
        },
        _ if settings.app_env == AppEnv::Local => {
            let path = Path::new(settings.dev_key_path()).with_file_name("dev-jwt.secret");
            development_secret(&path, "JWT secret", KeyRing::generate_key)
        }
        _ => Err(format!(
            "{JWT_SECRET} is not set ({} provider)",
            source.provider()
        )),
    }
}

/// Shortest JWT secret accepted outside local development, in bytes (HS256 uses a 256-bit key).
pub const JWT_SECRET_MIN_BYTES: usize = 32;

/// Parts of the placeholders of this repository's example files and of the platform's defaults:
/// a secret that contains one is a placeholder nobody replaced.
const PLACEHOLDERS: &[&str] = &[
    "replace-with",
    "replace_with",
    "replace-me",
    "replaceme",
    "change-me",
    "changeme",
    "change_me",
    "dev-secret",
    "placeholder",
    "your-secret",
    "your_secret",
    "example",
];

/// Why a JWT secret must not be used in production, if it must not: shorter than
/// [`JWT_SECRET_MIN_BYTES`], a known placeholder, or too few distinct characters to be random.
/// The answer names the variable, never the value.
pub fn weak_jwt_secret(secret: &SecretString) -> Option<String> {
    let value = secret.expose_secret().trim();
    if value.len() < JWT_SECRET_MIN_BYTES {
        return Some(format!(
            "{JWT_SECRET} is shorter than {JWT_SECRET_MIN_BYTES} bytes; use a random secret \
             (e.g. `openssl rand -base64 48`)"
        ));
    }
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDERS.iter().any(|p| lower.contains(p))
        || ["secret", "password"].contains(&lower.as_str())
    {
        return Some(format!(
            "{JWT_SECRET} is a placeholder from an example file; set the real secret"
        ));
    }
    let distinct: std::collections::BTreeSet<char> = value.chars().collect();
    if distinct.len() < 8 {
        return Some(format!(
            "{JWT_SECRET} has fewer than 8 distinct characters; use a random secret"
        ));
    }
    None
}

/// Reads a development secret from `path`, creating it (mode 0600) on first use.
fn development_secret(
    path: &Path,
    what: &str,
    generate: impl FnOnce() -> SecretString,
) -> Result<SecretString, String> {
    if let Ok(content) = fs::read_to_string(path) {
        log::warn!(
            "USING A DEVELOPMENT {} from {} (APP_ENV=local): never use it in production",
            what.to_uppercase(),
            path.display()
        );
        return Ok(SecretString::from(content.trim().to_owned()));
    }
    let secret = generate();
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {}", parent.display(), e.kind()))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {}", path.display(), e.kind()))?;
    file.write_all(secret.expose_secret().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.kind()))?;
    log::warn!(
        "GENERATED A DEVELOPMENT {} in {} (APP_ENV=local): never use it in production",
        what.to_uppercase(),
        path.display()
    );
    Ok(secret)
}

/// What start-up and every command read from the secret source: the key ring (or why there is
/// none) and the JWT secret (or why there is none). Reading them is the job of [`load`] alone.
pub struct Secrets {
    /// The key ring, or why it could not be loaded (already logged).
    pub keys: KeyStatus,
    /// The JWT secret, or why it could not be read.
    pub jwt_secret: Result<SecretString, String>,
    /// The source itself, for the other secrets a component needs.
    pub source: Result<Box<dyn SecretSource>, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("keys", &self.keys)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

/// Reads the key ring and the JWT secret from the configured secret source. A misconfigured key
/// is logged with the line operators watch for.
pub fn load(settings: &Settings) -> Secrets {
    load_with(settings, source_for(&settings.secret_manager_provider))
}

/// [`load`], the secret source configured from `variables` instead of the process environment
/// (an application served inside a test process).
pub fn load_from(settings: &Settings, variables: &Variables) -> Secrets {
    load_with(
        settings,
        source_from(&settings.secret_manager_provider, variables),
    )
}

fn load_with(
    settings: &Settings,
    source: Result<Box<dyn SecretSource>, user_service_domain::ports::SecretSourceError>,
) -> Secrets {
    match source {
        Ok(source) => Secrets {
            keys: load_key_ring(settings, source.as_ref()),
            jwt_secret: load_jwt_secret(settings, source.as_ref()),
            source: Ok(source),
        },
        Err(error) => {
            log::error!("{MISCONFIGURED}: {error}");
            Secrets {
                keys: KeyStatus::Misconfigured(error.to_string()),
                jwt_secret: Err(error.to_string()),
                source: Err(error.to_string()),
            }
        }
    }
}

impl Secrets {
    /// The key ring, or the misconfiguration line as an error.
    pub fn ring(&self) -> Result<Arc<KeyRing>, String> {
        match &self.keys {
            KeyStatus::Ready(ring) => Ok(Arc::clone(ring)),
            KeyStatus::Misconfigured(reason) => Err(format!("{MISCONFIGURED}: {reason}")),
        }
    }

    /// The token codec over the JWT secret.
    pub fn token_codec(&self, settings: &Settings) -> Result<TokenCodec, String> {
        let secret = self.jwt_secret.as_ref().map_err(Clone::clone)?;
        Ok(TokenCodec::new(
            secret,
            settings.jwt_issuer.clone(),
            settings.jwt_audience.clone(),
        ))
    }

    /// An optional secret of the source (`None` when not set); a source that fails is an error,
    /// never taken for "not set".
    pub fn optional(&self, name: &str) -> Result<Option<SecretString>, String> {
        let source = self.source.as_ref().map_err(Clone::clone)?;
        source.fetch(name).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak(value: &str) -> Option<String> {
        weak_jwt_secret(&SecretString::from(value))
    }

    #[test]
    fn short_placeholder_and_repetitive_secrets_are_weak() {
        for value in [
            "short",
            "secret",
            "dev-secret-change-me",
            "REPLACE-with-the-auth-service-jwt-secret",
            "changeme-changeme-changeme-changeme",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababababababab",
        ] {
            assert!(weak(value).is_some(), "{value}");
        }
        assert_eq!(weak("q3Jm9vX2bT7pL0sW4yR8cE1uK6hN5aD2fG3jZ9xQ"), None);
    }

    #[test]
    fn the_reason_names_the_variable_never_the_value() {
        let reason = weak("REPLACE-with-the-auth-service-jwt-secret").unwrap();
        assert!(reason.contains("JWT_SECRET"));
        assert!(!reason.contains("auth-service-jwt"), "{reason}");
    }
}
