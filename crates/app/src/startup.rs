//! Wiring: the one place that knows the concrete adapters. Builds the state from the settings
//! and starts the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use user_service_domain::ports::{
    AuditRepository, CapabilityRepository, CredentialRepository, OnboardingRepository,
    PreferenceRepository, UserRepository,
};
use user_service_persistence::{
    AuditStore, CapabilityStore, CredentialStore, Database, OnboardingStore, PoolSettings,
    PreferenceStore, UserStore,
};

use crate::auth::TokenCodec;
use crate::entitlements::{CachedEntitlements, LocalEntitlements, RemoteEntitlements};
use crate::keys::{load_jwt_secret, load_key_ring, KeyHolder, KeyStatus};
use crate::probe::{HttpBrokerProbe, ProbeUrls};
use crate::secrets::source_for;
use crate::settings::{EntitlementsKind, Settings};
use crate::state::{AppState, Parts};

/// Why the service cannot start. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Configuration problem.
    #[error("{0}")]
    Config(String),
    /// The database cannot be reached or migrated.
    #[error("database: {0}")]
    Database(String),
    /// The port cannot be bound.
    #[error("cannot listen on {0}")]
    Bind(String),
}

/// Connects the server's pool to the database, applying migrations when `migrate` is true.
pub fn connect(settings: &Settings, migrate: bool) -> Result<Database, StartupError> {
    let pool = PoolSettings {
        max_size: settings.database_pool_size,
        ..PoolSettings::default()
    };
    connect_with(settings, pool, migrate)
}

/// Connects a short-lived command: a small pool that opens no connection in the background,
/// so that no pool thread is inside libpq when the process exits.
pub fn connect_for_command(settings: &Settings, migrate: bool) -> Result<Database, StartupError> {
    let pool = PoolSettings {
        max_size: 2,
        min_idle: Some(0),
        ..PoolSettings::default()
    };
    connect_with(settings, pool, migrate)
}

fn connect_with(
    settings: &Settings,
    pool: PoolSettings,
    migrate: bool,
) -> Result<Database, StartupError> {
    let database = Database::connect(&settings.database_url, &pool)
        .map_err(|e| StartupError::Database(e.to_string()))?;
    if migrate {
        let applied = database
            .run_migrations()
            .map_err(|e| StartupError::Database(e.to_string()))?;
        if !applied.is_empty() {
            log::info!("applied migrations: {}", applied.join(", "));
        }
    }
    Ok(database)
}

/// Every repository port, implemented by the diesel adapters over one pool.
#[allow(missing_debug_implementations)]
pub struct Repositories {
    /// Credential rows.
    pub credentials: Arc<dyn CredentialRepository>,
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
}

impl Repositories {
    /// The diesel adapters over `database`.
    pub fn new(database: &Database) -> Self {
        Self {
            credentials: Arc::new(CredentialStore::new(database.clone())),
            users: Arc::new(UserStore::new(database.clone())),
            preferences: Arc::new(PreferenceStore::new(database.clone())),
            onboarding: Arc::new(OnboardingStore::new(database.clone())),
            capabilities: Arc::new(CapabilityStore::new(database.clone())),
            audit: Arc::new(AuditStore::new(database.clone())),
        }
    }
}

/// Builds the application state: secrets, key ring, database, repositories, entitlements.
/// Refuses (before any port is bound) when the key is required and misconfigured.
pub fn build_state(settings: Settings) -> Result<AppState, StartupError> {
    let source = source_for(&settings.secret_manager_provider);
    let (key_status, jwt_secret) = match &source {
        Ok(source) => (
            load_key_ring(&settings, source.as_ref()),
            load_jwt_secret(&settings, source.as_ref()),
        ),
        Err(error) => {
            log::error!("{}: {error}", crate::keys::MISCONFIGURED);
            (
                KeyStatus::Misconfigured(error.to_string()),
                Err(error.to_string()),
            )
        }
    };
    if let KeyStatus::Misconfigured(reason) = &key_status {
        if settings.key_required() {
            return Err(StartupError::Config(format!(
                "{}: {reason} (BROKER_CREDENTIALS_KEY_REQUIRED is on)",
                crate::keys::MISCONFIGURED
            )));
        }
        log::warn!("credential routes answer 503 until the encryption key is fixed");
    }
    let jwt_secret = jwt_secret.map_err(StartupError::Config)?;
    let tokens = TokenCodec::new(
        &jwt_secret,
        settings.jwt_issuer.clone(),
        settings.jwt_audience.clone(),
    );

    let database = connect(&settings, settings.run_migrations())?;
    let repositories = Repositories::new(&database);
    let provider: Box<dyn user_service_domain::ports::EntitlementsProvider> = match settings
        .entitlements_provider
    {
        EntitlementsKind::Local => Box::new(LocalEntitlements::new(
            Arc::clone(&repositories.users),
            Arc::clone(&repositories.capabilities),
        )),
        EntitlementsKind::Remote => {
            let url = settings.entitlements_service_url.clone().ok_or_else(|| {
                StartupError::Config(
                    "ENTITLEMENTS_SERVICE_URL is required with ENTITLEMENTS_PROVIDER=remote".into(),
                )
            })?;
            let api_key = source
                .as_ref()
                .ok()
                .and_then(|s| s.fetch("ENTITLEMENTS_SERVICE_API_KEY").ok().flatten());
            Box::new(RemoteEntitlements::new(
                &url,
                api_key,
                std::time::Duration::from_secs(2),
            ))
        }
    };
    let entitlements = Arc::new(CachedEntitlements::new(
        provider,
        settings.entitlements_ttl(),
        std::time::Duration::from_secs(settings.entitlements_stale_if_error_secs),
    ));
    let probe = Arc::new(HttpBrokerProbe::new(
        ProbeUrls {
            binance: settings.broker_probe_binance_url.clone(),
            kraken: settings.broker_probe_kraken_url.clone(),
            alpaca: settings.broker_probe_alpaca_url.clone(),
        },
        std::time::Duration::from_secs(settings.broker_probe_timeout_secs),
    ));
    Ok(AppState::new(Parts {
        settings,
        repositories,
        entitlements,
        keys: Arc::new(KeyHolder::new(key_status)),
        tokens,
        probe,
    }))
}

/// A bound, not yet awaited server.
pub struct Application {
    /// The port actually bound (useful with `PORT=0`).
    pub port: u16,
    /// The shared state.
    pub state: web::Data<AppState>,
    server: Server,
    #[cfg(unix)]
    hangups: Option<actix_web::rt::signal::unix::Signal>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds the listener and builds the server.
    pub fn build(state: AppState) -> Result<Self, StartupError> {
        let address = format!("{}:{}", state.settings.host, state.settings.port);
        let listener = TcpListener::bind(&address)
            .map_err(|e| StartupError::Bind(format!("{address}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| StartupError::Bind(e.to_string()))?
            .port();
        let max_body = state.settings.max_body_bytes;
        let workers = state.settings.workers;
        let shutdown = state.settings.shutdown_timeout_secs;
        let state = web::Data::new(state);
        let shared = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .wrap(from_fn(crate::http::middleware::request_context))
                .configure(|cfg| crate::http::configure(cfg, max_body))
                .default_service(web::to(crate::http::not_found))
        })
        .shutdown_timeout(shutdown)
        .listen(listener)
        .map_err(|e| StartupError::Bind(e.to_string()))?;
        if let Some(workers) = workers {
            server = server.workers(workers);
        }
        // Registered before the caller announces the port, so that a SIGHUP sent as soon as
        // the service is up reloads instead of killing the process.
        #[cfg(unix)]
        let hangups =
            actix_web::rt::signal::unix::signal(actix_web::rt::signal::unix::SignalKind::hangup())
                .map_err(|e| log::warn!("SIGHUP reload unavailable: {e}"))
                .ok();
        Ok(Self {
            port,
            state,
            server: server.run(),
            #[cfg(unix)]
            hangups,
        })
    }

    /// Serves until SIGTERM / SIGINT (graceful: requests in flight finish). `SIGHUP` reloads
    /// the key ring and the JWT secret ([`crate::keys::reload`]).
    pub async fn run(self) -> std::io::Result<()> {
        #[cfg(unix)]
        if let Some(mut hangups) = self.hangups {
            let state = self.state.clone();
            actix_web::rt::spawn(async move {
                while hangups.recv().await.is_some() {
                    log::info!("SIGHUP: reloading the key ring and the JWT secret");
                    let state = state.clone();
                    let reloaded =
                        actix_web::rt::task::spawn_blocking(move || crate::keys::reload(&state))
                            .await;
                    if let Err(error) = reloaded {
                        log::error!("key reload task failed: {error}");
                    }
                }
            });
        }
        self.server.await
    }
}
