//! What every handler shares: the domain services, the key ring, the token codec, metrics.

use std::sync::{Arc, PoisonError, RwLock};

use user_service_crypto::{KeyRing, TokenCodec};
use user_service_domain::entitlements::CachedEntitlements;
use user_service_domain::ports::{BrokerProbe, Clock, CredentialRepository};
use user_service_domain::RequestSigner;
use user_service_domain::{CredentialService, SignInService, UserService};
use user_service_persistence::Database;

use crate::config::{KeyHolder, Settings};
use crate::http::error::ApiError;
use crate::http::limits::{RequestLimits, SignInLimits, SigningLimits};
use crate::http::metrics::Metrics;

/// The application state, built once by `startup`: the [`Parts`] it was assembled from (reached
/// through `Deref`: `state.settings`, `state.database`, …) and what it derives from them.
pub struct AppState {
    parts: Parts,
    /// Request metrics.
    pub metrics: Metrics,
    /// Limits of the connection test (per user and global).
    pub connection_tests: RequestLimits,
    /// Sign-in throttling, in the database (shared by every replica).
    pub sign_in_limits: SignInLimits,
    /// Limits of the signing route (per trader and per service).
    pub signing_limits: SigningLimits,
    tokens: RwLock<Arc<TokenCodec>>,
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The parts [`AppState::new`] assembles.
#[allow(missing_debug_implementations)]
pub struct Parts {
    /// Effective configuration.
    pub settings: Settings,
    /// The database pool (readiness, pool metrics).
    pub database: Database,
    /// Credential use cases.
    pub credentials: CredentialService,
    /// User use cases.
    pub users: UserService,
    /// Sign-in use cases.
    pub sign_in: SignInService,
    /// Credential rows (readiness counts per key id).
    pub credential_store: Arc<dyn CredentialRepository>,
    /// Entitlements, cached.
    pub entitlements: Arc<CachedEntitlements>,
    /// The key ring (or why there is none).
    pub keys: Arc<KeyHolder>,
    /// Broker connection tests.
    pub probe: Arc<dyn BrokerProbe>,
    /// Broker request signatures.
    pub signer: Arc<dyn RequestSigner>,
    /// The time source (session expiry, throttling).
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    /// Assembles the state from `parts` and the token codec `tokens`.
    pub fn new(parts: Parts, tokens: TokenCodec) -> Self {
        let connection_tests = RequestLimits::new(
            "connection_test",
            parts.settings.connection_tests_per_user_per_minute,
            parts.settings.connection_tests_per_minute,
        );
        let sign_in_limits = SignInLimits::standard(
            Arc::new(parts.database.throttle()),
            Arc::clone(&parts.clock),
        );
        let signing_limits = SigningLimits::new(
            parts.settings.signatures_per_user_per_minute,
            parts.settings.signatures_per_service_per_minute,
        );
        Self {
            parts,
            metrics: Metrics::default(),
            connection_tests,
            sign_in_limits,
            signing_limits,
            tokens: RwLock::new(Arc::new(tokens)),
        }
    }

    /// The current token codec.
    pub fn tokens(&self) -> Arc<TokenCodec> {
        Arc::clone(&self.tokens.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the token codec (secret reload).
    pub fn replace_tokens(&self, codec: TokenCodec) {
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(codec);
    }

    /// The key ring, or the 503 of a missing or invalid key.
    pub fn ring(&self) -> Result<Arc<KeyRing>, ApiError> {
        self.keys.ring().ok_or_else(ApiError::key_not_configured)
    }
}
