//! Entitlements: the rule of the `local` provider, the provider itself over the repositories,
//! and a TTL cache with a bounded stale-if-error window that every provider sits behind, so that
//! the hot path pays no database or network round trip per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::capability::{Capabilities, Capability};
use crate::error::{chain, RepositoryError};
use crate::ports::{
    CapabilityRepository, EntitlementsProvider, EntitlementsUnavailable, UserRepository,
};
use crate::user::UserId;

/// Most users kept in the cache; past it, the cache is cleared (simple and bounded).
const CACHE_CAPACITY: usize = 100_000;

/// Capabilities of a user who is not deleted, given its explicit grants and revocations: the
/// dashboard default `can.use_users`, plus grants, minus revocations.
pub fn local_capabilities(overrides: &[(Capability, bool)]) -> Capabilities {
    let mut held: Capabilities = std::iter::once(Capability::use_users()).collect();
    for (capability, granted) in overrides {
        if *granted {
            held.insert(capability.clone());
        } else {
            held.remove(capability);
        }
    }
    held
}

/// The `local` provider: every user that is not deleted holds `can.use_users`, plus grants,
/// minus revocations; an unknown or deleted user holds nothing.
#[derive(Clone)]
pub struct LocalEntitlements {
    users: Arc<dyn UserRepository>,
    capabilities: Arc<dyn CapabilityRepository>,
}

impl std::fmt::Debug for LocalEntitlements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEntitlements").finish_non_exhaustive()
    }
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

fn unavailable(error: &RepositoryError) -> EntitlementsUnavailable {
    EntitlementsUnavailable(chain(error))
}

#[async_trait]
impl EntitlementsProvider for LocalEntitlements {
    async fn capabilities(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable> {
        match self.users.get(user).await {
            Ok(_) => {}
            Err(RepositoryError::NotFound) => return Ok(Capabilities::none()),
            Err(other) => return Err(unavailable(&other)),
        }
        let overrides = self
            .capabilities
            .overrides(user)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(local_capabilities(&overrides))
    }
}

/// Caches another provider's answers for `ttl`, and serves an expired answer for up to
/// `stale_if_error` more when the provider fails.
pub struct CachedEntitlements {
    inner: Box<dyn EntitlementsProvider>,
    ttl: Duration,
    stale_if_error: Duration,
    cache: Mutex<HashMap<UserId, (Instant, Capabilities)>>,
}

impl std::fmt::Debug for CachedEntitlements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedEntitlements")
            .field("ttl", &self.ttl)
            .field("stale_if_error", &self.stale_if_error)
            .finish_non_exhaustive()
    }
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

    fn lock(&self) -> MutexGuard<'_, HashMap<UserId, (Instant, Capabilities)>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached answer if still fresh.
    pub fn fresh(&self, user: UserId) -> Option<Capabilities> {
        self.lock()
            .get(&user)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, caps)| caps.clone())
    }
}

#[async_trait]
impl EntitlementsProvider for CachedEntitlements {
    async fn capabilities(&self, user: UserId) -> Result<Capabilities, EntitlementsUnavailable> {
        if let Some(fresh) = self.fresh(user) {
            return Ok(fresh);
        }
        match self.inner.capabilities(user).await {
            Ok(caps) => {
                let mut cache = self.lock();
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(user, (Instant::now(), caps.clone()));
                Ok(caps)
            }
            Err(error) => match self.lock().get(&user) {
                Some((at, caps)) if at.elapsed() < self.ttl + self.stale_if_error => {
                    log::warn!("{error}; serving cached entitlements of user {user}");
                    Ok(caps.clone())
                }
                _ => Err(error),
            },
        }
    }

    fn forget(&self, user: UserId) {
        self.lock().remove(&user);
        self.inner.forget(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockEntitlementsProvider;

    #[test]
    fn every_user_holds_the_dashboard_default() {
        assert!(local_capabilities(&[]).holds(&Capability::use_users()));
        assert!(!local_capabilities(&[]).holds(&Capability::manage_users()));
    }

    #[test]
    fn grants_add_and_revocations_withdraw() {
        let held = local_capabilities(&[
            (Capability::manage_users(), true),
            (Capability::use_users(), false),
        ]);
        assert!(held.holds(&Capability::manage_users()));
        assert!(!held.holds(&Capability::use_users()));
    }

    #[tokio::test]
    async fn fresh_answers_are_served_from_cache() {
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
                .await
                .unwrap()
                .holds(&Capability::use_users()));
        }
    }

    #[tokio::test]
    async fn stale_answer_is_served_when_the_provider_fails_within_the_window() {
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
        cached.capabilities(UserId(1)).await.unwrap();
        assert!(cached.capabilities(UserId(1)).await.is_ok());
    }

    #[tokio::test]
    async fn failure_with_nothing_cached_is_unavailable() {
        let mut inner = MockEntitlementsProvider::new();
        inner
            .expect_capabilities()
            .returning(|_| Err(EntitlementsUnavailable("down".into())));
        let cached = CachedEntitlements::new(
            Box::new(inner),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert!(cached.capabilities(UserId(1)).await.is_err());
    }

    #[tokio::test]
    async fn a_forgotten_user_is_asked_again() {
        let mut inner = MockEntitlementsProvider::new();
        inner
            .expect_capabilities()
            .times(2)
            .returning(|_| Ok(Capabilities::none()));
        inner.expect_forget().return_const(());
        let cached =
            CachedEntitlements::new(Box::new(inner), Duration::from_secs(60), Duration::ZERO);
        cached.capabilities(UserId(1)).await.unwrap();
        cached.forget(UserId(1));
        cached.capabilities(UserId(1)).await.unwrap();
    }
}
