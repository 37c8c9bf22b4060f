//! What every handler shares: repositories, services, keys, token codec, metrics.

use std::sync::{Arc, RwLock};

use user_service_crypto::KeyRing;
use user_service_domain::ports::{
    AuditRepository, BrokerProbe, CapabilityRepository, CredentialRepository, OnboardingRepository,
    PreferenceRepository, UserRepository,
};
use user_service_domain::CredentialService;

use crate::auth::TokenCodec;
use crate::entitlements::CachedEntitlements;
use crate::error::ApiError;
use crate::keys::KeyHolder;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::startup::Repositories;

/// The application state, built once by [`crate::startup`].
pub struct AppState {
    /// Effective configuration.
    pub settings: Settings,
    /// Credential use cases.
    pub credentials: CredentialService,
    /// Credential rows (readiness counts per key id).
    pub credential_store: Arc<dyn CredentialRepository>,
    /// User profiles.
    pub users: Arc<dyn UserRepository>,
    /// Preferences.
    pub preferences: Arc<dyn PreferenceRepository>,
    /// Onboarding progress.
    pub onboarding: Arc<dyn OnboardingRepository>,
    /// Capability grants.
    pub capabilities: Arc<dyn CapabilityRepository>,
    /// Audit events.
    pub audit: Arc<dyn AuditRepository>,
    /// Entitlements, cached.
    pub entitlements: Arc<CachedEntitlements>,
    /// The key ring (or why there is none).
    pub keys: Arc<KeyHolder>,
    /// Broker connection tests.
    pub probe: Arc<dyn BrokerProbe>,
    /// Request metrics.
    pub metrics: Metrics,
    /// Admits database work in arrival order, as many at once as the pool has connections.
    pub db_gate: tokio::sync::Semaphore,
    tokens: RwLock<Arc<TokenCodec>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The parts [`AppState::new`] needs.
#[allow(missing_debug_implementations)]
pub struct Parts {
    /// Effective configuration.
    pub settings: Settings,
    /// Every repository over that database.
    pub repositories: Repositories,
    /// Entitlements, cached.
    pub entitlements: Arc<CachedEntitlements>,
    /// The key ring.
    pub keys: Arc<KeyHolder>,
    /// The token codec.
    pub tokens: TokenCodec,
    /// Broker connection tests.
    pub probe: Arc<dyn BrokerProbe>,
}

impl AppState {
    /// Runs blocking database work on the blocking pool once the gate admits it. Requests wait
    /// in the gate (first come, first served) rather than all blocking on the connection pool,
    /// whose waiters are woken in no particular order: that unfairness is what made the slowest
    /// requests slow under load.
    pub async fn blocking<T, F>(state: &actix_web::web::Data<Self>, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&AppState) -> T + Send + 'static,
        T: Send + 'static,
    {
        let _permit = state.db_gate.acquire().await.map_err(|_| {
            ApiError::from(user_service_domain::RepositoryError::Unavailable(
                "shutting down".into(),
            ))
        })?;
        let state = state.clone();
        Ok(actix_web::web::block(move || work(&state)).await?)
    }

    /// Assembles the state.
    pub fn new(parts: Parts) -> Self {
        let pool_size = usize::try_from(parts.settings.database_pool_size.max(1)).unwrap_or(1);
        let Repositories {
            credentials: credential_store,
            users,
            preferences,
            onboarding,
            capabilities,
            audit,
        } = parts.repositories;
        let credentials = CredentialService::new(
            Arc::clone(&credential_store),
            Arc::clone(&audit),
            Arc::new(user_service_domain::ports::SystemClock),
        );
        Self {
            settings: parts.settings,
            credentials,
            credential_store,
            users,
            preferences,
            onboarding,
            capabilities,
            audit,
            entitlements: parts.entitlements,
            keys: parts.keys,
            probe: parts.probe,
            metrics: Metrics::default(),
            db_gate: tokio::sync::Semaphore::new(pool_size),
            tokens: RwLock::new(Arc::new(parts.tokens)),
        }
    }

    /// The current token codec.
    pub fn tokens(&self) -> Arc<TokenCodec> {
        Arc::clone(
            &self
                .tokens
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Replaces the token codec (secret reload).
    pub fn replace_tokens(&self, codec: TokenCodec) {
        *self
            .tokens
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(codec);
    }

    /// The key ring, or the 503 of SPEC §4.3.
    pub fn ring(&self) -> Result<Arc<KeyRing>, ApiError> {
        self.keys.ring().ok_or_else(ApiError::key_not_configured)
    }
}
