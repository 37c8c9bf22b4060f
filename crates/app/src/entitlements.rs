//! Entitlements providers (SPEC §5): `local` (the `user_capabilities` table) and `remote` (the
//! platform's entitlements service), both behind a TTL cache with a bounded stale-if-error window
//! so that the hot path does not pay a database or network round trip per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use user_service_domain::entitlements::local_capabilities;
use user_service_domain::ports::{
    CapabilityRepository, EntitlementsProvider, EntitlementsUnavailable, UserRepository,
};
use user_service_domain::{Capabilities, Capability, RepositoryError, UserId};

/// Most users kept in the cache; past it, the cache is cleared (simple and bounded).
const CACHE_CAPACITY: usize = 100_000;

/// The `local` provider: every user that is not deleted holds `can.use_users`, plus grants,
/// minus revocations.
#[allow(missing_debug_implementations)]
pub struct LocalEntitlements {
    users: Arc<dyn UserRepository>,
    capabilities: Arc<dyn CapabilityRepository>,
}

impl LocalEntitlements {
    /// A provider over the user and capability repositories.
    pub fn new(
        users: Arc<dyn UserRepository>,
        capabilities: Arc<dyn CapabilityRepository>,
    ) -> Self {
        Self {
            users,
            capabilities,
        }
    }
}

impl EntitlementsProvider for LocalEntitlements {
    fn capabilities(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable> {
        let unavailable = |e: RepositoryError| EntitlementsUnavailable(e.to_string());
        match self.users.get(user) {
            Ok(_) => {}
            Err(RepositoryError::NotFound) => return Ok(Capabilities::none()),
            Err(other) => return Err(unavailable(other)),
        }
        let overrides = self.capabilities.overrides(user).map_err(unavailable)?;
        Ok(local_capabilities(&overrides))
    }
}

/// The `remote` provider: `GET {base}/entitlements/resolve?customer_id=<id>`.
#[allow(missing_debug_implementations)]
pub struct RemoteEntitlements {
    base_url: String,
    api_key: Option<SecretString>,
    agent: ureq::Agent,
}

impl RemoteEntitlements {
    /// A client of the entitlements service at `base_url`, with an optional bearer key.
    pub fn new(base_url: &str, api_key: Option<SecretString>, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            agent,
        }
    }
}

#[derive(Deserialize)]
struct Resolved {
    #[serde(default)]
    capabilities: HashMap<String, bool>,
}

impl EntitlementsProvider for RemoteEntitlements {
    fn capabilities(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable> {
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

/// Caches another provider's answers for `ttl`, and serves an expired answer for up to
/// `stale_if_error` more when the provider fails.
#[allow(missing_debug_implementations)]
pub struct CachedEntitlements {
    inner: Box<dyn EntitlementsProvider>,
    ttl: Duration,
    stale_if_error: Duration,
    cache: Mutex<HashMap<UserId, (Instant, Capabilities)>>,
}

impl CachedEntitlements {
    /// Wraps `inner`.
    pub fn new(
        inner: Box<dyn EntitlementsProvider>,
        ttl: Duration,
        stale_if_error: Duration,
    ) -> Self {
        Self {
            inner,
            ttl,
            stale_if_error,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets what is cached for `user` (after a grant or revoke in this process).
    pub fn invalidate(&self, user: UserId) {
        self.lock().remove(&user);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, (Instant, Capabilities)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached answer if still fresh.
    pub fn fresh(&self, user: UserId) -> Option<Capabilities> {
        let cache = self.lock();
        cache
            .get(&user)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, caps)| caps.clone())
    }
}

impl EntitlementsProvider for CachedEntitlements {
    fn capabilities(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable> {
        if let Some(fresh) = self.fresh(user) {
            return Ok(fresh);
        }
        match self.inner.capabilities(user) {
            Ok(caps) => {
                let mut cache = self.lock();
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(user, (Instant::now(), caps.clone()));
                Ok(caps)
            }
            Err(error) => {
                let cache = self.lock();
                match cache.get(&user) {
                    Some((at, caps)) if at.elapsed() < self.ttl + self.stale_if_error => {
                        log::warn!("{error}; serving cached entitlements of user {user}");
                        Ok(caps.clone())
                    }
                    _ => Err(error),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use user_service_domain::ports::MockEntitlementsProvider;

    #[test]
    fn fresh_answers_are_served_from_cache() {
        let mut inner = MockEntitlementsProvider::new();
        inner
            .expect_capabilities()
            .times(1)
            .returning(|_| Ok([Capability::use_users()].into_iter().collect()));
        let cached =
            CachedEntitlements::new(Box::new(inner), Duration::from_secs(60), Duration::ZERO);
        for _ in 0..3 {
            assert!(cached
                .capabilities(UserId(1))
                .unwrap()
                .holds(&Capability::use_users()));
        }
    }

    #[test]
    fn stale_answer_is_served_when_the_provider_fails_within_the_window() {
        let mut inner = MockEntitlementsProvider::new();
        let mut seq = mockall::Sequence::new();
        inner
            .expect_capabilities()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok([Capability::use_users()].into_iter().collect()));
        inner
            .expect_capabilities()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Err(EntitlementsUnavailable("down".into())));
        let cached =
            CachedEntitlements::new(Box::new(inner), Duration::ZERO, Duration::from_secs(60));
        cached.capabilities(UserId(1)).unwrap();
        assert!(cached.capabilities(UserId(1)).is_ok());
    }

    #[test]
    fn failure_with_nothing_cached_is_unavailable() {
        let mut inner = MockEntitlementsProvider::new();
        inner
            .expect_capabilities()
            .returning(|_| Err(EntitlementsUnavailable("down".into())));
        let cached = CachedEntitlements::new(
            Box::new(inner),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert!(cached.capabilities(UserId(1)).is_err());
    }
}
