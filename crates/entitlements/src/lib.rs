#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use user_service_domain::ports::{EntitlementsProvider, EntitlementsUnavailable};
use user_service_domain::{Capabilities, Capability, UserId};

/// The `remote` provider: `GET {base}/entitlements/resolve?customer_id=<id>`.
#[derive(Clone)]
pub struct RemoteEntitlements {
    inner: Arc<Client>,
}

struct Client {
    base_url: String,
    api_key: Option<SecretString>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for RemoteEntitlements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEntitlements")
            .field("base_url", &self.inner.base_url)
            .field(
                "api_key",
                &self.inner.api_key.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

impl RemoteEntitlements {
    /// A client of the entitlements service at `base_url`, with an optional bearer key.
    pub fn new(base_url: &str, api_key: Option<SecretString>, timeout: Duration) -> Self {
        // No redirect: it would carry the bearer key elsewhere.
        let agent = user_service_outbound::agent(timeout);
        Self {
            inner: Arc::new(Client {
                base_url: base_url.trim_end_matches('/').to_owned(),
                api_key,
                agent,
            }),
        }
    }
}

#[derive(Deserialize)]
struct Resolved {
    #[serde(default)]
    capabilities: HashMap<String, bool>,
}

#[async_trait]
impl EntitlementsProvider for RemoteEntitlements {
    async fn capabilities(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable> {
        let client = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || client.resolve(user))
            .await
            .map_err(|_| EntitlementsUnavailable("entitlements service: call aborted".into()))?
    }
}

impl Client {
    fn resolve(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable> {
        let url = format!("{}/entitlements/resolve?customer_id={user}", self.base_url);
        let mut request = self.agent.get(&url);
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", &format!("Bearer {}", key.expose_secret()));
        }
        let unavailable =
            |reason: String| EntitlementsUnavailable(format!("entitlements service: {reason}"));
        let mut response = request.call().map_err(|e| unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(Capabilities::none());
        }
        if status != 200 {
            return Err(unavailable(format!("answered HTTP {status}")));
        }
        let resolved: Resolved = response
            .body_mut()
            .read_json()
            .map_err(|_| unavailable("answered a malformed body".into()))?;
        Ok(resolved
            .capabilities
            .into_iter()
            .filter(|(_, held)| *held)
            .filter_map(|(code, _)| Capability::parse(&code))
            .collect())
    }
}
