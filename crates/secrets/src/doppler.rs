//! The `doppler` provider: Doppler's "retrieve secret" API.
//!
//! `GET {DOPPLER_API_URL}/v3/configs/config/secret?project=…&config=…&name=…` with
//! `Authorization: Bearer {DOPPLER_TOKEN}` answers `{"name": …, "value": {"raw": …,
//! "computed": …, …}}`. The secret is `value.computed` (references to other secrets
//! resolved, as `doppler run` injects it), else `value.raw`. 404 means "not set".

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use user_service_domain::ports::{SecretSource, SecretSourceError};
use zeroize::Zeroizing;

use crate::http;
use crate::mapping::KeyMapping;
use crate::timeout::{timeout_from, DEFAULT_TIMEOUT};
use crate::variables::Variables;

const PROVIDER: &str = "doppler";
/// Doppler's API unless `DOPPLER_API_URL` says.
pub const DEFAULT_API_URL: &str = "https://api.doppler.com";

/// Configuration of [`DopplerSource`]. Its `Debug` does not show the token.
#[derive(Debug, Clone)]
pub struct DopplerConfig {
    /// `DOPPLER_TOKEN` (or the file named by `DOPPLER_TOKEN_FILE`).
    pub token: SecretString,
    /// `DOPPLER_PROJECT`; not needed with a service token, which implies it.
    pub project: Option<String>,
    /// `DOPPLER_CONFIG`; not needed with a service token, which implies it.
    pub config: Option<String>,
    /// `DOPPLER_API_URL`, default `https://api.doppler.com`.
    pub api_url: String,
    /// `SECRET_MANAGER_KEY_MAPPING`.
    pub mapping: KeyMapping,
    /// `SECRET_MANAGER_TIMEOUT_SECONDS`, default 5 s.
    pub timeout: Duration,
}

impl DopplerConfig {
    /// A configuration for Doppler's API with the default timeout and no mapping.
    pub fn new(token: SecretString, project: Option<String>, config: Option<String>) -> Self {
        Self {
            token,
            project,
            config,
            api_url: DEFAULT_API_URL.into(),
            mapping: KeyMapping::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The configuration of `DOPPLER_*`, `SECRET_MANAGER_KEY_MAPPING` and
    /// `SECRET_MANAGER_TIMEOUT_SECONDS`.
    pub fn from_variables(variables: &Variables) -> Result<Self, SecretSourceError> {
        let setting_error = |key: &str, reason: String| http::error(PROVIDER, key, reason);
        let token = variables
            .secret("DOPPLER_TOKEN")
            .map_err(|reason| setting_error("DOPPLER_TOKEN", reason))?
            .filter(|token| !token.trim().is_empty())
            .ok_or_else(|| {
                setting_error("DOPPLER_TOKEN", "not set (nor DOPPLER_TOKEN_FILE)".into())
            })?;
        let text = |name: &str| {
            variables
                .non_blank(name)
                .map(|value| value.trim().to_owned())
        };
        Ok(Self {
            token: SecretString::from(token.trim()),
            project: text("DOPPLER_PROJECT"),
            config: text("DOPPLER_CONFIG"),
            api_url: text("DOPPLER_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
            mapping: KeyMapping::from_variables(variables, PROVIDER)?,
            timeout: timeout_from(variables, PROVIDER)?,
        })
    }
}

/// Reads secrets from one Doppler config. Its `Debug` does not show the token.
pub struct DopplerSource {
    url: String,
    token: SecretString,
    project: Option<String>,
    config: Option<String>,
    mapping: KeyMapping,
    timeout: Duration,
    agent: ureq::Agent,
}

impl DopplerSource {
    /// A source for `config`; checks the API address.
    pub fn new(config: DopplerConfig) -> Result<Self, SecretSourceError> {
        let api_url = http::base_url(&config.api_url, "DOPPLER_API_URL")
            .map_err(|reason| http::error(PROVIDER, "DOPPLER_API_URL", reason))?;
        Ok(Self {
            url: format!("{api_url}/v3/configs/config/secret"),
            token: config.token,
            project: config.project,
            config: config.config,
            mapping: config.mapping,
            timeout: config.timeout,
            agent: http::agent(config.timeout),
        })
    }

    /// A source configured from the process environment.
    pub fn from_env() -> Result<Self, SecretSourceError> {
        Self::new(DopplerConfig::from_variables(&Variables::process())?)
    }

    /// `project/config`, for messages.
    fn location(&self) -> String {
        format!(
            "{}/{}",
            self.project.as_deref().unwrap_or("<token's project>"),
            self.config.as_deref().unwrap_or("<token's config>")
        )
    }
}

impl fmt::Debug for DopplerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DopplerSource")
            .field("url", &self.url)
            .field("token", &"[redacted]")
            .field("project", &self.project)
            .field("config", &self.config)
            .field("mapping", &self.mapping)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `{"name": …, "value": {"raw": …, "computed": …, "note": …, …}, "success": true}`.
#[derive(Deserialize)]
struct RetrieveResponse {
    value: SecretValue,
}

#[derive(Deserialize)]
struct SecretValue {
    #[serde(default)]
    raw: Option<SecretText>,
    #[serde(default)]
    computed: Option<SecretText>,
}

impl SecretSource for DopplerSource {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn fetch(&self, name: &str) -> Result<Option<SecretString>, SecretSourceError> {
        let key = self.mapping.apply(name);
        let error = |reason: String| http::error(PROVIDER, key, reason);
        let mut request = self
            .agent
            .get(&self.url)
            .header(
                "Authorization",
                format!("Bearer {}", self.token.expose_secret()),
            )
            .header("Accept", "application/json");
        if let Some(project) = &self.project {
            request = request.query("project", project);
        }
        if let Some(config) = &self.config {
            request = request.query("config", config);
        }
        let request = request.query("name", key);
        let answer = http::send(request, self.timeout)
            .map_err(|reason| error(format!("{reason} ({})", self.location())))?;
        match answer.status {
            200 => {}
            404 => return Ok(None),
            401 => {
                return Err(error(
                    "Doppler rejected the token (HTTP 401): DOPPLER_TOKEN is invalid or revoked"
                        .into(),
                ))
            }
            403 => {
                return Err(error(format!(
                    "permission denied (HTTP 403): the token may not read {}",
                    self.location()
                )))
            }
            status => {
                return Err(error(format!(
                    "Doppler answered HTTP {status} for {}",
                    self.location()
                )))
            }
        }
        let parsed: RetrieveResponse = serde_json::from_slice(&answer.body).map_err(|_| {
            error(format!(
                "Doppler answered a body that is not a secret for {}",
                self.location()
            ))
        })?;
        let SecretValue { raw, computed } = parsed.value;
        match computed.or(raw) {
            Some(SecretText(text)) => Ok(Some(SecretString::from(text.as_str()))),
            None => Err(error(format!(
                "Doppler answered no readable value for {}",
                self.location()
            ))),
        }
    }
}

/// A JSON string copied straight into a zeroizing buffer.
struct SecretText(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = SecretText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<SecretText, E> {
        Ok(SecretText(Zeroizing::new(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<SecretText, E> {
        Ok(SecretText(Zeroizing::new(value)))
    }
}
