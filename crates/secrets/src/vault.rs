//! The `vault` provider: HashiCorp Vault's KV version 2 secrets engine over HTTP.
//!
//! `GET {VAULT_ADDR}/v1/{mount}/data/{base_path}/{name}` with the `X-Vault-Token` header
//! answers `{"data": {"data": {<fields>}, "metadata": {…}}, …}`; the secret is the `value`
//! field, else the field named after the secret. 404 (no such secret, or its latest version
//! deleted or destroyed) means "not set".

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use user_service_domain::ports::{SecretSource, SecretSourceError};
use zeroize::Zeroizing;

use crate::http;
use crate::mapping::KeyMapping;
use crate::timeout::{timeout_from, DEFAULT_TIMEOUT};
use crate::variables::Variables;

const PROVIDER: &str = "vault";
/// Mount of the KV v2 engine unless `VAULT_KV_MOUNT` says.
pub const DEFAULT_MOUNT: &str = "secret";
/// Folder of the secrets inside the mount unless `VAULT_SECRET_BASE_PATH` says.
pub const DEFAULT_BASE_PATH: &str = "trading-bot";
/// Field read before the one named after the secret.
const VALUE_FIELD: &str = "value";

/// Configuration of [`VaultSource`]. Its `Debug` does not show the token.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `VAULT_ADDR`, e.g. `https://vault.internal:8200`.
    pub addr: String,
    /// `VAULT_TOKEN` (or the file named by `VAULT_TOKEN_FILE`).
    pub token: SecretString,
    /// `VAULT_KV_MOUNT`, default `secret`.
    pub mount: String,
    /// `VAULT_SECRET_BASE_PATH`, default `trading-bot`; empty reads at the mount's root.
    pub base_path: String,
    /// `SECRET_MANAGER_KEY_MAPPING`.
    pub mapping: KeyMapping,
    /// `SECRET_MANAGER_TIMEOUT_SECONDS`, default 5 s.
    pub timeout: Duration,
}

impl VaultConfig {
    /// A configuration with the default mount, base path and timeout and no mapping.
    pub fn new(addr: impl Into<String>, token: SecretString) -> Self {
        Self {
            addr: addr.into(),
            token,
            mount: DEFAULT_MOUNT.into(),
            base_path: DEFAULT_BASE_PATH.into(),
            mapping: KeyMapping::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The configuration of `VAULT_*`, `SECRET_MANAGER_KEY_MAPPING` and
    /// `SECRET_MANAGER_TIMEOUT_SECONDS`.
    pub fn from_variables(variables: &Variables) -> Result<Self, SecretSourceError> {
        let setting_error = |key: &str, reason: String| http::error(PROVIDER, key, reason);
        let addr = variables
            .non_blank("VAULT_ADDR")
            .ok_or_else(|| setting_error("VAULT_ADDR", "not set".into()))?;
        let token = variables
            .secret("VAULT_TOKEN")
            .map_err(|reason| setting_error("VAULT_TOKEN", reason))?
            .filter(|token| !token.trim().is_empty())
            .ok_or_else(|| setting_error("VAULT_TOKEN", "not set (nor VAULT_TOKEN_FILE)".into()))?;
        Ok(Self {
            addr: addr.as_str().to_owned(),
            token: SecretString::from(token.trim()),
            mount: variables
                .non_blank("VAULT_KV_MOUNT")
                .map_or_else(|| DEFAULT_MOUNT.to_owned(), |m| m.trim().to_owned()),
            // Set but empty is kept: secrets at the root of the mount.
            base_path: variables
                .get("VAULT_SECRET_BASE_PATH")
                .map_or_else(|| DEFAULT_BASE_PATH.to_owned(), |p| p.trim().to_owned()),
            mapping: KeyMapping::from_variables(variables, PROVIDER)?,
            timeout: timeout_from(variables, PROVIDER)?,
        })
    }
}

/// Reads secrets from a Vault KV v2 mount. Its `Debug` does not show the token.
pub struct VaultSource {
    /// `{addr}/v1/{mount}/data{/base_path}`, encoded.
    prefix: String,
    /// `{mount}/data{/base_path}`, for messages.
    location: String,
    token: SecretString,
    mapping: KeyMapping,
    timeout: Duration,
    agent: ureq::Agent,
}

impl VaultSource {
    /// A source for `config`; checks the address and the mount.
    pub fn new(config: VaultConfig) -> Result<Self, SecretSourceError> {
        let addr = http::base_url(&config.addr, "VAULT_ADDR")
            .map_err(|reason| http::error(PROVIDER, "VAULT_ADDR", reason))?;
        let mount = encode_path(&config.mount);
        if mount.is_empty() {
            return Err(http::error(PROVIDER, "VAULT_KV_MOUNT", "is empty".into()));
        }
        let base_path = encode_path(&config.base_path);
        let location = if base_path.is_empty() {
            format!("{mount}/data")
        } else {
            format!("{mount}/data/{base_path}")
        };
        Ok(Self {
            prefix: format!("{addr}/v1/{location}"),
            location,
            token: config.token,
            mapping: config.mapping,
            timeout: config.timeout,
            agent: http::agent(config.timeout),
        })
    }

    /// A source configured from the process environment.
    pub fn from_env() -> Result<Self, SecretSourceError> {
        Self::new(VaultConfig::from_variables(&Variables::process())?)
    }
}

impl fmt::Debug for VaultSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSource")
            .field("url", &self.prefix)
            .field("token", &"[redacted]")
            .field("mapping", &self.mapping)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `{"data": {"data": {…}, "metadata": {…}}}`; the other top-level fields are ignored.
#[derive(Deserialize)]
struct ReadResponse {
    data: KvData,
}

#[derive(Deserialize)]
struct KvData {
    /// Required (a KV version 1 answer has no `data.data`), but may be `null`.
    #[serde(deserialize_with = "Option::deserialize")]
    data: Option<HashMap<String, AnyValue>>,
}

impl SecretSource for VaultSource {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn fetch(&self, name: &str) -> Result<Option<SecretString>, SecretSourceError> {
        let key = self.mapping.apply(name);
        let error = |reason: String| http::error(PROVIDER, key, reason);
        let path = encode_path(key);
        if path.is_empty() {
            return Err(error("the secret name is empty".into()));
        }
        let request = self
            .agent
            .get(format!("{}/{path}", self.prefix))
            .header("X-Vault-Token", self.token.expose_secret())
            .header("Accept", "application/json");
        let answer = http::send(request, self.timeout)
            .map_err(|reason| error(format!("{} ({})", reason, self.location)))?;
        match answer.status {
            200 => {}
            404 => return Ok(None),
            403 => {
                return Err(error(format!(
                    "permission denied (HTTP 403): the token may not read {}/{path}, \
                     or it is invalid or expired",
                    self.location
                )))
            }
            status => {
                return Err(error(format!(
                    "Vault answered HTTP {status} for {}/{path}",
                    self.location
                )))
            }
        }
        let parsed: ReadResponse = serde_json::from_slice(&answer.body).map_err(|_| {
            error(format!(
                "Vault answered a body that is not a KV version 2 secret for {}/{path} \
                 (is VAULT_KV_MOUNT a KV version 2 mount?)",
                self.location
            ))
        })?;
        // `data.data: null` is a version that was deleted: not set.
        let Some(mut fields) = parsed.data.data else {
            return Ok(None);
        };
        let value = fields
            .remove(VALUE_FIELD)
            .map(|value| (VALUE_FIELD, value))
            .or_else(|| fields.remove(key).map(|value| (key, value)));
        match value {
            Some((_, AnyValue::Text(text))) => Ok(Some(secret(text))),
            Some((field, AnyValue::Other)) => Err(error(format!(
                "the field `{field}` of {}/{path} is not a string",
                self.location
            ))),
            None => Err(error(format!(
                "{}/{path} has neither a `{VALUE_FIELD}` nor a `{key}` field",
                self.location
            ))),
        }
    }
}

fn secret(text: Zeroizing<String>) -> SecretString {
    SecretString::from(text.as_str())
}

/// Percent-encodes each `/`-separated segment of `path` (unreserved characters kept) and
/// drops empty segments.
fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Any JSON value, keeping only a string (in a zeroizing buffer): the fields of a Vault secret
/// other than the one asked for may be numbers, objects or other secrets.
enum AnyValue {
    /// A string.
    Text(Zeroizing<String>),
    /// Anything else (its content is skipped, not kept).
    Other,
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<AnyValue, E> {
        Ok(AnyValue::Text(Zeroizing::new(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<AnyValue, E> {
        Ok(AnyValue::Text(Zeroizing::new(value)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyValue, E> {
        Ok(AnyValue::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyValue, E> {
        Ok(AnyValue::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyValue, E> {
        Ok(AnyValue::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyValue, E> {
        Ok(AnyValue::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(AnyValue::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(AnyValue::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded_and_slashes_kept() {
        assert_eq!(
            encode_path("trading-bot/JWT_SECRET"),
            "trading-bot/JWT_SECRET"
        );
        assert_eq!(encode_path("/a b/c?d#e/"), "a%20b/c%3Fd%23e");
        assert_eq!(encode_path("é"), "%C3%A9");
    }

    #[test]
    fn any_value_keeps_strings_and_skips_the_rest() {
        let parsed: std::collections::HashMap<String, AnyValue> =
            serde_json::from_str(r#"{"a":"x\"y","b":1,"c":{"d":[1,"z"]},"e":null,"f":true}"#)
                .unwrap_or_default();
        assert!(matches!(parsed.get("a"), Some(AnyValue::Text(t)) if t.as_str() == "x\"y"));
        for other in ["b", "c", "e", "f"] {
            assert!(
                matches!(parsed.get(other), Some(AnyValue::Other)),
                "{other}"
            );
        }
    }
}
