//! Configuration: the settings (defaults, an optional TOML file, the environment) and the
//! secrets (encryption key ring, JWT secret) read through the configured secret source.

mod keys;
mod proxies;
mod settings;

pub use keys::{
    load, load_from, load_jwt_secret, load_key_ring, reload, KeyHolder, KeyStatus, Secrets,
    MISCONFIGURED,
};
pub use proxies::TrustedProxies;
pub use settings::{
    AppEnv, AuthMode, Declared, EntitlementsKind, LogFormat, Settings, SettingsError, DECLARED,
};
