//! The [`Database`]: a connection pool over one backend, its migrations, and the transaction
//! helpers the repositories use.

use std::fmt;
use std::sync::Arc;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::r2d2::{Pool, PooledConnection, R2D2Connection};
use diesel::result::Error as DieselError;
use diesel::{Connection, QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use log::info;
use user_service_domain::RepositoryError;

use crate::connection::{
    with_connect_timeout, Connector, DbConnection, Manager, PoolSettings, SqliteSetup,
};
use crate::error::{pool_error, DatabaseError, Failure};
use crate::url::{Backend, DatabaseUrl, SqliteLocation};

/// PostgreSQL migrations, embedded at compile time.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
/// SQLite migrations, embedded at compile time.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Key of the PostgreSQL advisory lock held while migrating, so that replicas starting together
/// migrate one after the other ("usersvc" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0075_7365_7273_7663;

/// A pool of connections to one database. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    url: Arc<DatabaseUrl>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("Database")
            .field("url", &self.url.redacted())
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .finish()
    }
}

/// Connections of the pool, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open.
    pub connections: u32,
    /// Of which idle.
    pub idle: u32,
}

impl Database {
    /// Opens a pool on `url` (see [`DatabaseUrl::parse`] for the forms) and waits until
    /// `min_idle` connections are open, so that a wrong URL or an unreachable server is reported
    /// here. Creates the directory of a SQLite file when missing.
    pub fn connect(url: &str, settings: &PoolSettings) -> Result<Self, DatabaseError> {
        Self::open(url, settings, true)
    }

    /// Like [`Database::connect`], but opens connections only when first needed: the service can
    /// start while the database is still down (and report it on its readiness route).
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<Self, DatabaseError> {
        Self::open(url, settings, false)
    }

    fn open(url: &str, settings: &PoolSettings, eager: bool) -> Result<Self, DatabaseError> {
        let url = DatabaseUrl::parse(url)?;
        let mut settings = settings.clone();
        let connector = match &url {
            DatabaseUrl::Postgres(raw) => {
                Connector::Postgres(with_connect_timeout(raw, settings.connection_timeout))
            }
            DatabaseUrl::Sqlite(SqliteLocation::Memory) => {
                // Each connection to `:memory:` is a database of its own: keep exactly one, forever.
                settings.max_size = 1;
                settings.min_idle = Some(1);
                settings.idle_timeout = None;
                settings.max_lifetime = None;
                Connector::Sqlite(":memory:".into())
            }
            DatabaseUrl::Sqlite(SqliteLocation::File(path)) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(DatabaseError::Directory)?;
                }
                Connector::Sqlite(path.clone())
            }
        };
        let mut builder = Pool::builder()
            .max_size(settings.max_size.max(1))
            .min_idle(settings.min_idle)
            .connection_timeout(settings.connection_timeout)
            .idle_timeout(settings.idle_timeout)
            .max_lifetime(settings.max_lifetime)
            // A connection broken by a database restart is found and replaced at checkout when
            // it has been idle; a busy one is trusted (see `PoolSettings::validate_idle_after`).
            .test_on_check_out(true);
        if url.backend() == Backend::Sqlite {
            builder = builder.connection_customizer(Box::new(SqliteSetup {
                busy_timeout: settings.sqlite_busy_timeout,
            }));
        }
        let manager = Manager {
            connector,
            validate_idle_after: settings.validate_idle_after,
        };
        let pool = if eager {
            builder
                .build(manager)
                .map_err(|error| DatabaseError::Connect {
                    url: url.redacted(),
                    reason: crate::url::redact(&error.to_string()),
                })?
        } else {
            builder.build_unchecked(manager)
        };
        info!(
            "database pool on {} ({} connections at most)",
            url.redacted(),
            settings.max_size.max(1)
        );
        Ok(Self {
            pool,
            url: Arc::new(url),
        })
    }

    /// The backend the URL selected.
    pub fn backend(&self) -> Backend {
        self.url.backend()
    }

    /// The URL, password redacted.
    pub fn redacted_url(&self) -> String {
        self.url.redacted()
    }

    /// Open and idle connections.
    pub fn pool_status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus {
            connections: state.connections,
            idle: state.idle_connections,
        }
    }

    /// Whether the database answers (for readiness): checks a connection out and runs
    /// `SELECT 1`.
    pub fn ping(&self) -> Result<(), RepositoryError> {
        self.run("ping", |conn| conn.ping().map_err(Failure::from))
    }

    /// Applies the pending migrations of this backend; returns the versions applied.
    ///
    /// On PostgreSQL an advisory lock serialises replicas that start together.
    pub fn run_migrations(&self) -> Result<Vec<String>, DatabaseError> {
        self.migrate(|conn| match conn {
            DbConnection::Postgres(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.iter().map(ToString::to_string).collect()),
            DbConnection::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(ToString::to_string).collect()),
        })
        .inspect(|applied| {
            if !applied.is_empty() {
                info!("applied migrations: {}", applied.join(", "));
            }
        })
    }

    /// Reverts every applied migration, dropping the service's tables and their rows. For tests
    /// and development only: on a database upgraded from the Python service it also drops the
    /// tables that service created.
    pub fn revert_all_migrations(&self) -> Result<Vec<String>, DatabaseError> {
        self.migrate(|conn| match conn {
            DbConnection::Postgres(c) => c
                .revert_all_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.iter().map(ToString::to_string).collect()),
            DbConnection::Sqlite(c) => c
                .revert_all_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(ToString::to_string).collect()),
        })
    }

    /// Versions of the migrations not applied yet.
    pub fn pending_migrations(&self) -> Result<Vec<String>, DatabaseError> {
        self.migrate(|conn| {
            Ok(match conn {
                DbConnection::Postgres(c) => c
                    .pending_migrations(POSTGRES_MIGRATIONS)?
                    .iter()
                    .map(|m| m.name().version().to_string())
                    .collect(),
                DbConnection::Sqlite(c) => c
                    .pending_migrations(SQLITE_MIGRATIONS)?
                    .iter()
                    .map(|m| m.name().version().to_string())
                    .collect(),
            })
        })
    }

    fn migrate(
        &self,
        work: impl FnOnce(
            &mut DbConnection,
        ) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<Vec<String>, DatabaseError> {
        let mut pooled = self.connection("migrate")?;
        let conn = &mut pooled.conn;
        let locked = matches!(conn, DbConnection::Postgres(_));
        if locked {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .execute(conn)
                .map_err(|e| DatabaseError::Migration(e.to_string()))?;
        }
        let outcome = work(conn).map_err(|e| DatabaseError::Migration(e.to_string()));
        if locked {
            // A failure to unlock closes nothing: the lock ends with the session at worst.
            let _ = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .execute(conn);
        }
        outcome
    }

    /// Runs `work` on a pooled connection, outside any explicit transaction. For work the
    /// repositories do not cover (administration commands, tests).
    pub fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> QueryResult<T>,
    ) -> Result<T, RepositoryError> {
        self.run("query", |conn| work(conn).map_err(Failure::from))
    }

    fn connection(&self, operation: &str) -> Result<PooledConnection<Manager>, RepositoryError> {
        self.pool.get().map_err(|e| pool_error(operation, e))
    }

    /// Runs `work` on a pooled connection (reads and single statements).
    pub(crate) fn run<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut DbConnection) -> Result<T, Failure>,
    ) -> Result<T, RepositoryError> {
        let mut pooled = self.connection(operation)?;
        let outcome = work(&mut pooled.conn).map_err(|f| f.into_repository(operation));
        pooled.record(matches!(outcome, Err(RepositoryError::Unavailable(_))));
        outcome
    }

    /// Runs `work` in a write transaction, committed when it returns `Ok`, rolled back otherwise.
    ///
    /// On SQLite the transaction starts with `BEGIN IMMEDIATE`, taking the write lock up front:
    /// a deferred transaction that reads then writes can fail with `SQLITE_BUSY` at once (a
    /// reader cannot be upgraded while another writer waits), whereas waiting for the write lock
    /// honours `busy_timeout`.
    pub(crate) fn write<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut DbConnection) -> Result<T, Failure>,
    ) -> Result<T, RepositoryError> {
        self.run(operation, |conn| write_transaction(conn, work))
    }
}

fn write_transaction<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, Failure>,
) -> Result<T, Failure> {
    // Begin on the inner connection (SQLite needs its own `BEGIN IMMEDIATE`); the multi
    // connection's transaction manager shares the inner connection's state, so commit and
    // rollback through it stay consistent, and a connection dropped mid-transaction (panic) is
    // seen as broken by the pool and discarded.
    match conn {
        DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
    }
    match work(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(failure) => {
            match <DbConnection as Connection>::TransactionManager::rollback_transaction(conn) {
                Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(failure),
                Err(rollback) => Err(rollback.into()),
            }
        }
    }
}
