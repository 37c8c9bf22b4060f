//! Wiring: the one place that knows the concrete adapters. Builds the domain services over a
//! database (for the server and for every command alike), the application state, and the HTTP
//! server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use user_service_brokers::{BrokerProbeAdapter, BrokerProtocols, HttpBrokerProbe, ProbeUrls};
use user_service_crypto::Passwords;
use user_service_domain::entitlements::{CachedEntitlements, LocalEntitlements};
use user_service_domain::ports::{
    AuditRepository, Clock, CredentialRepository, CutoverRepository, EntitlementsProvider,
    SystemClock, UserRepository,
};
use user_service_domain::{CredentialService, CutoverGate, SignInService, UserPorts, UserService};
use user_service_entitlements::RemoteEntitlements;
use user_service_persistence::{Database, DatabaseError, PoolSettings};

use crate::config::{self, EntitlementsKind, KeyHolder, KeyStatus, Secrets, Settings};
use crate::state::{AppState, Parts};

/// Why the service (or a command) cannot start. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Configuration problem; the message names the variable, never its value.
    #[error("{0}")]
    Config(String),
    /// The database cannot be reached or migrated.
    #[error("database")]
    Database(#[from] DatabaseError),
    /// The database's schema is missing or older than this program's migrations.
    #[error(
        "the database schema is behind this program ({pending} migration(s) pending, from {first}): \
         run `user-service migrate` (or set RUN_MIGRATIONS=1)"
    )]
    SchemaBehind {
        /// How many migrations are pending.
        pending: usize,
        /// The first of them.
        first: String,
    },
    /// The port cannot be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// `host:port`.
        address: String,
        /// Why.
        #[source]
        cause: std::io::Error,
    },
}

/// Connects to the database with the server's pool, applying migrations when `migrate` is true.
pub async fn connect(settings: &Settings, migrate: bool) -> Result<Database, StartupError> {
    connect_with(settings, pool_settings(settings), migrate).await
}

/// Connects to the database without looking at its schema (`user-service migrate`).
pub async fn connect_unchecked(settings: &Settings) -> Result<Database, StartupError> {
    let pool = PoolSettings {
        max_size: 1,
        ..pool_settings(settings)
    };
    Ok(Database::connect(settings.database_url(), &pool).await?)
}

/// Connects a short-lived command: a small pool.
pub async fn connect_for_command(
    settings: &Settings,
    migrate: bool,
) -> Result<Database, StartupError> {
    let pool = PoolSettings {
        max_size: 2,
        ..pool_settings(settings)
    };
    connect_with(settings, pool, migrate).await
}

fn pool_settings(settings: &Settings) -> PoolSettings {
    PoolSettings {
        max_size: settings.database_pool_size,
        threads: u32::try_from(worker_count(settings)).unwrap_or(1),
        ..PoolSettings::default()
    }
}

/// The HTTP workers: `WORKERS`, or one per available core (actix-web's own default).
fn worker_count(settings: &Settings) -> usize {
    settings.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    })
}

async fn connect_with(
    settings: &Settings,
    pool: PoolSettings,
    migrate: bool,
) -> Result<Database, StartupError> {
    let database = Database::connect(settings.database_url(), &pool).await?;
    if migrate {
        database.run_migrations().await?;
    } else {
        // Never serve (nor run a command) on a schema this program does not know: every query
        // would fail with a 500 naming a missing table.
        let pending = database.pending_migrations().await?;
        if let Some(first) = pending.first() {
            return Err(StartupError::SchemaBehind {
                pending: pending.len(),
                first: first.clone(),
            });
        }
    }
    Ok(database)
}

/// The domain services over one database, as the server and every command use them.
#[derive(Clone)]
pub struct Services {
    /// Credential use cases.
    pub credentials: CredentialService,
    /// User use cases.
    pub users: UserService,
    /// Sign-in use cases.
    pub sign_in: SignInService,
    /// Credential rows, for readiness and key rotation.
    pub credential_store: Arc<dyn CredentialRepository>,
    /// The stored cut-over mode.
    pub cutover_store: Arc<dyn CutoverRepository>,
    /// The cut-over mode that applies (the stored one, unless closed by configuration).
    pub cutover: CutoverGate,
    /// Entitlements, cached.
    pub entitlements: Arc<CachedEntitlements>,
    /// The time source every service uses.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Services {
    /// Wires the diesel repositories of `database`, the entitlements provider the settings name
    /// (behind its cache), the password hasher and the clock into the domain services.
    pub fn new(
        database: &Database,
        settings: &Settings,
        secrets: &Secrets,
    ) -> Result<Self, StartupError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let users: Arc<dyn UserRepository> = Arc::new(database.users());
        let credential_store: Arc<dyn CredentialRepository> = Arc::new(database.credentials());
        let audit: Arc<dyn AuditRepository> = Arc::new(database.audit());
        let capabilities = Arc::new(database.capabilities());
        let provider: Box<dyn EntitlementsProvider> = match settings.entitlements_provider {
            EntitlementsKind::Local => Box::new(LocalEntitlements::new(
                Arc::clone(&users),
                capabilities.clone(),
            )),
            EntitlementsKind::Remote => {
                let url = settings.entitlements_service_url.clone().ok_or_else(|| {
                    StartupError::Config(
                        "ENTITLEMENTS_SERVICE_URL is required with ENTITLEMENTS_PROVIDER=remote"
                            .into(),
                    )
                })?;
                let api_key =
                    secrets
                        .optional("ENTITLEMENTS_SERVICE_API_KEY")
                        .map_err(|reason| {
                            StartupError::Config(format!(
                                "ENTITLEMENTS_SERVICE_API_KEY cannot be read: {reason}"
                            ))
                        })?;
                Box::new(RemoteEntitlements::new(
                    &url,
                    api_key,
                    Duration::from_secs(2),
                ))
            }
        };
        let entitlements = Arc::new(CachedEntitlements::new(
            provider,
            settings.entitlements_ttl(),
            Duration::from_secs(settings.entitlements_stale_if_error_secs),
        ));
        let user_service = UserService::new(UserPorts {
            users: Arc::clone(&users),
            preferences: Arc::new(database.preferences()),
            onboarding: Arc::new(database.onboarding()),
            capabilities,
            entitlements: entitlements.clone(),
            passwords: Arc::new(Passwords),
            clock: clock.clone(),
        });
        let cutover_store: Arc<dyn CutoverRepository> = Arc::new(database.cutover());
        let cutover = CutoverGate::stored(
            Arc::clone(&cutover_store),
            settings.broker_credentials_require_binding,
        );
        Ok(Self {
            credentials: CredentialService::new(
                Arc::clone(&credential_store),
                audit,
                clock.clone(),
            )
            .with_max_per_user(settings.max_credentials_per_user)
            .with_cutover(cutover.clone()),
            cutover_store,
            cutover,
            sign_in: SignInService::new(user_service.clone(), Arc::new(database.sessions())),
            users: user_service,
            credential_store,
            entitlements,
            clock,
        })
    }
}

/// Builds the application state: secrets, key ring, database, services. Refuses (before any
/// port is bound) when the key is required and misconfigured.
pub async fn build_state(settings: Settings) -> Result<AppState, StartupError> {
    let secrets = config::load(&settings);
    build_state_with(settings, secrets).await
}

/// [`build_state`] with the secrets already read (from a fixed set of variables, say, for an
/// application served inside a test process).
pub async fn build_state_with(
    settings: Settings,
    secrets: config::Secrets,
) -> Result<AppState, StartupError> {
    if let KeyStatus::Misconfigured(_) = &secrets.keys {
        if settings.key_required() {
            // The reason is the misconfiguration line just logged.
            return Err(StartupError::Config(
                "the broker credentials encryption key is required (BROKER_CREDENTIALS_KEY_REQUIRED is on)"
                    .into(),
            ));
        }
        log::warn!("credential routes answer 503 until the encryption key is fixed");
    }
    let tokens = secrets
        .token_codec(&settings)
        .map_err(StartupError::Config)?;
    let database = connect(&settings, settings.run_migrations()).await?;
    let services = Services::new(&database, &settings, &secrets)?;
    let probe = Arc::new(BrokerProbeAdapter::new(HttpBrokerProbe::new(
        ProbeUrls {
            binance: settings.broker_probe_binance_url.clone(),
            kraken: settings.broker_probe_kraken_url.clone(),
            alpaca: settings.broker_probe_alpaca_url.clone(),
        },
        Duration::from_secs(settings.broker_probe_timeout_secs),
    )));
    Ok(AppState::new(
        Parts {
            settings,
            database,
            credentials: services.credentials,
            users: services.users,
            sign_in: services.sign_in,
            credential_store: services.credential_store,
            entitlements: services.entitlements,
            keys: Arc::new(KeyHolder::new(secrets.keys)),
            probe,
            signer: Arc::new(BrokerProtocols::new()),
            clock: services.clock,
        },
        tokens,
    ))
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
        let bind_error = |cause| StartupError::Bind {
            address: address.clone(),
            cause,
        };
        let listener = TcpListener::bind(&address).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let max_body = state.settings.max_body_bytes;
        let workers = worker_count(&state.settings);
        let shutdown = state.settings.shutdown_timeout_secs;
        let state = web::Data::new(state);
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .wrap(from_fn(crate::http::middleware::request_context))
                .configure(|cfg| crate::http::configure(cfg, max_body))
                .default_service(web::to(crate::http::not_found))
        })
        .shutdown_timeout(shutdown)
        .listen(listener)
        .map_err(bind_error)?
        .workers(workers);
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

    /// A handle that stops the server (for a caller serving it in process, such as tests).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM / SIGINT (graceful: requests in flight finish). `SIGHUP` reloads
    /// the key ring and the JWT secret ([`config::reload`]).
    pub async fn run(self) -> std::io::Result<()> {
        #[cfg(unix)]
        if let Some(mut hangups) = self.hangups {
            let state = self.state.clone();
            actix_web::rt::spawn(async move {
                while hangups.recv().await.is_some() {
                    log::info!("SIGHUP: reloading the key ring and the JWT secret");
                    let state = state.clone();
                    // A remote secret source may be asked: off the serving threads.
                    let reloaded = actix_web::rt::task::spawn_blocking(move || {
                        config::reload(&state.settings, &state.keys, |codec| {
                            state.replace_tokens(codec);
                        })
                    })
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
