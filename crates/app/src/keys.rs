//! Loading the encryption key ring and the JWT secret once at start-up (SPEC §6.2).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};
use user_service_crypto::KeyRing;
use user_service_domain::ports::SecretSource;

use crate::secrets::{ENCRYPTION_KEY, JWT_SECRET};
use crate::settings::{AppEnv, Settings};

/// Prefix of the log line operators watch for (SPEC §1, check 3).
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

/// Re-reads the key ring and the JWT secret (on `SIGHUP`, SPEC §6.2) and swaps them in only
/// when both are valid: a bad new configuration is refused with the misconfiguration line and
/// the previous ring and secret stay in use. Requests in flight keep the `Arc` they hold.
/// Blocking (a remote secret source may be asked): call it off the async workers.
pub fn reload(state: &crate::state::AppState) -> Result<(), String> {
    let settings = &state.settings;
    let outcome = crate::secrets::source_for(&settings.secret_manager_provider)
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
            state.keys.replace(KeyStatus::Ready(Arc::new(ring)));
            state.replace_tokens(crate::auth::TokenCodec::new(
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
            development_secret(Path::new(&settings.dev_key_path), "encryption key", || {
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
    let ring = KeyRing::parse(&value).map_err(|e| format!("{ENCRYPTION_KEY} is invalid: {e}"))?;
    Ok(if settings.broker_credentials_require_binding {
        ring.refusing_unbound_rows()
    } else {
        ring
    })
}

/// Reads the JWT secret; with `APP_ENV=local` and none configured, a development secret kept
/// beside the development key.
pub fn load_jwt_secret(
    settings: &Settings,
    source: &dyn SecretSource,
) -> Result<SecretString, String> {
    match source.fetch(JWT_SECRET).map_err(|e| e.to_string())? {
        Some(secret) if !secret.expose_secret().is_empty() => Ok(secret),
        _ if settings.app_env == AppEnv::Local => {
            let path = Path::new(&settings.dev_key_path).with_file_name("dev-jwt.secret");
            development_secret(&path, "JWT secret", KeyRing::generate_key)
        }
        _ => Err(format!(
            "{JWT_SECRET} is not set ({} provider)",
            source.provider()
        )),
    }
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
