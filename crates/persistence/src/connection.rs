//! Connections: one enum over both backends, how each is opened and set up, the pool settings,
//! and the pool's manager.
//!
//! PostgreSQL speaks through `tokio-postgres` (diesel-async's `AsyncPgConnection`): a request
//! waits for its rows where it runs, with no hand-off to another thread. SQLite calls take
//! microseconds on a local file, so its connection runs each statement in place, on the calling
//! thread (diesel-async's `SyncConnectionWrapper` with an in-place runtime): a hand-off would
//! cost more than the statement.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_async::pg::AsyncPgConnection;
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use diesel_async::RunQueryDsl;
use futures_util::future::BoxFuture;

use crate::url::{redact, Backend};

/// A SQLite connection whose statements run in place, on the calling thread.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, InPlace>;

/// A connection to either backend. Queries are written once and compiled for each backend with
/// `on_backend!`.
// Both variants live in the pool and are never moved around: boxing the larger one would only
// add an indirection to every query.
#[allow(clippy::large_enum_variant)]
pub enum DbConnection {
    /// A PostgreSQL connection.
    Postgres(AsyncPgConnection),
    /// A SQLite connection.
    Sqlite(SqliteConn),
}

impl fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(_) => f.write_str("DbConnection::Postgres"),
            Self::Sqlite(_) => f.write_str("DbConnection::Sqlite"),
        }
    }
}

/// Runs `$body` with `$c` bound to the connection of whichever backend `$conn` holds. The body
/// is written once and compiled once per backend, so one query text serves both.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Postgres($c) => $body,
            $crate::connection::DbConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_backend;

/// Runs SQLite statements in place: the "blocking" work of diesel-async's wrapper is done on
/// the calling thread, and its future is ready at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct InPlace;

impl SpawnBlocking for InPlace {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn StdError + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        Box::pin(std::future::ready(Ok(task())))
    }

    fn get_runtime() -> Self {
        Self
    }
}

/// Settings of the connection pool. `Default` gives the values documented on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once. Default 16: well under PostgreSQL's default
    /// `max_connections` of 100 for a few replicas.
    pub max_size: u32,
    /// How long a caller waits for a connection (and a connection attempt may take) before the
    /// operation fails as unavailable. Default 3 s, so that requests fail fast (503) while the
    /// database is down.
    pub connection_timeout: Duration,
    /// A connection idle for longer than this is closed at its next checkout and replaced.
    /// Default 10 min.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long. Default 30 min.
    pub max_lifetime: Option<Duration>,
    /// How long a SQLite statement waits for another process's lock (`busy_timeout`). Writers
    /// of this process queue before taking the lock. Default 5 s.
    pub sqlite_busy_timeout: Duration,
    /// A connection idle for longer than this is checked with `SELECT 1` when it is checked
    /// out; one used more recently is trusted (no extra round trip on a busy service). A
    /// trusted connection that turns out dead fails its operation as unavailable once and is
    /// discarded. Default 1 s; `Duration::ZERO` checks every checkout.
    pub validate_idle_after: Duration,
    /// How many threads share `max_size` (PostgreSQL): each thread that uses the database
    /// keeps a pool of its own of `max_size / threads` connections (at least one), so that a
    /// connection is always driven by the thread that uses it. Default 1; the server sets its
    /// number of workers.
    pub threads: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            connection_timeout: Duration::from_secs(3),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            sqlite_busy_timeout: Duration::from_secs(5),
            validate_idle_after: Duration::from_secs(1),
            threads: 1,
        }
    }
}

/// What the pool opens: the backend is known from the URL, so no other driver is tried.
pub(crate) enum Connector {
    /// A PostgreSQL URL (one or several hosts; `target_session_attrs` honoured).
    Postgres(Box<tokio_postgres::Config>),
    /// A SQLite file path or `:memory:`.
    Sqlite(PathBuf),
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(config) => {
                write!(
                    f,
                    "Connector::Postgres(hosts: {})",
                    config.get_hosts().len()
                )
            }
            Self::Sqlite(path) => write!(f, "Connector::Sqlite({})", path.display()),
        }
    }
}

/// A connection could not be opened or set up. The message never holds a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub(crate) String);

impl Connector {
    /// The PostgreSQL connector for `url`, with `connect_timeout` set when the URL sets none,
    /// so that an attempt to reach an unreachable host does not wait for the system's TCP
    /// timeout.
    pub(crate) fn postgres(url: &str, timeout: Duration) -> Result<Self, ConnectError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            ConnectError(format!(
                "invalid PostgreSQL URL: {}",
                redact(&e.to_string())
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout.max(Duration::from_secs(1)));
        }
        if config.get_application_name().is_none() {
            config.application_name("user-service");
        }
        // Keepalives find a peer that vanished (failover, network cut) on an idle connection.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        Ok(Self::Postgres(Box::new(config)))
    }

    pub(crate) async fn open(&self, sqlite: SqliteSetup) -> Result<DbConnection, ConnectError> {
        match self {
            Self::Postgres(config) => {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| ConnectError(redact(&crate::error::describe(&e))))?;
                AsyncPgConnection::try_from_client_and_connection(client, connection)
                    .await
                    .map(DbConnection::Postgres)
                    .map_err(|e| ConnectError(redact(&e.to_string())))
            }
            Self::Sqlite(path) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| ConnectError("the SQLite path is not valid UTF-8".into()))?;
                let mut conn =
                    SqliteConnection::establish(path).map_err(|e| ConnectError(e.to_string()))?;
                conn.batch_execute(&sqlite.sql())
                    .map_err(|e| ConnectError(format!("cannot set up SQLite: {e}")))?;
                Ok(DbConnection::Sqlite(SyncConnectionWrapper::with_runtime(
                    conn, InPlace,
                )))
            }
        }
    }
}

impl DbConnection {
    /// The backend of this connection.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// `SELECT 1`.
    pub(crate) async fn ping(&mut self) -> diesel::QueryResult<()> {
        use diesel::IntoSql;
        let one = diesel::select(1_i32.into_sql::<diesel::sql_types::Integer>());
        on_backend!(self, |c| one.execute(c).await).map(|_| ())
    }

    fn is_broken(&mut self) -> bool {
        use diesel_async::pooled_connection::PoolableConnection;
        on_backend!(self, |c| c.is_broken())
    }
}

/// A pooled connection and what the pool knows of its health.
#[derive(Debug)]
pub struct Pooled {
    /// The connection.
    pub(crate) conn: DbConnection,
    /// When it last completed an operation (or was opened, or passed a check).
    last_ok: Instant,
    /// A transaction was begun on it and not ended: it must not be handed out again.
    pub(crate) in_transaction: bool,
}

impl Pooled {
    /// Records that the database answered on this connection.
    pub(crate) fn answered(&mut self) {
        self.last_ok = Instant::now();
    }
}

/// Per-connection SQLite settings (pragmas are per connection, so every new one gets them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqliteSetup {
    /// `busy_timeout`.
    pub(crate) busy_timeout: Duration,
}

impl SqliteSetup {
    /// The pragmas: wait for locks rather than fail at once, write-ahead log (readers do not
    /// block the writer), enforce foreign keys (ON DELETE CASCADE), and fsync at checkpoints
    /// rather than at every commit (safe with WAL: a power loss may lose the last commits, never
    /// corrupt the file).
    pub(crate) fn sql(self) -> String {
        format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
             PRAGMA synchronous = NORMAL;",
            self.busy_timeout.as_millis()
        )
    }
}

/// The pool's manager: opens connections, and at checkout replaces those too old or idle too
/// long, and checks with `SELECT 1` only those idle for longer than
/// [`PoolSettings::validate_idle_after`].
#[derive(Debug, Clone)]
pub(crate) struct ConnectionManager {
    pub(crate) connector: std::sync::Arc<Connector>,
    pub(crate) sqlite: SqliteSetup,
    pub(crate) validate_idle_after: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
}

impl Manager for ConnectionManager {
    type Type = Pooled;
    type Error = ConnectError;

    async fn create(&self) -> Result<Pooled, ConnectError> {
        Ok(Pooled {
            conn: self.connector.open(self.sqlite).await?,
            last_ok: Instant::now(),
            in_transaction: false,
        })
    }

    async fn recycle(&self, pooled: &mut Pooled, metrics: &Metrics) -> RecycleResult<ConnectError> {
        if pooled.in_transaction || pooled.conn.is_broken() {
            return Err(RecycleError::message("connection left in a transaction"));
        }
        if self
            .max_lifetime
            .is_some_and(|max| metrics.created.elapsed() > max)
        {
            return Err(RecycleError::message(
                "connection reached its maximum lifetime",
            ));
        }
        let idle = pooled.last_ok.elapsed();
        if self.idle_timeout.is_some_and(|max| idle > max) {
            return Err(RecycleError::message("connection idle for too long"));
        }
        if idle >= self.validate_idle_after {
            pooled
                .conn
                .ping()
                .await
                .map_err(|e| RecycleError::message(format!("connection check failed: {e}")))?;
            pooled.answered();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_is_added_when_missing_and_kept_when_set() {
        let d = Duration::from_secs(3);
        let Connector::Postgres(config) = Connector::postgres("postgres://h/db", d).unwrap() else {
            unreachable!()
        };
        assert_eq!(config.get_connect_timeout(), Some(&d));
        let Connector::Postgres(config) =
            Connector::postgres("postgres://h/db?connect_timeout=9", d).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(9)));
    }

    #[test]
    fn several_hosts_and_read_write_sessions_are_understood() {
        let Connector::Postgres(config) = Connector::postgres(
            "postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write",
            Duration::from_secs(3),
        )
        .unwrap() else {
            unreachable!()
        };
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(config.get_ports(), [5432, 5433]);
        assert_eq!(
            config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
    }

    #[test]
    fn an_invalid_url_error_hides_the_password() {
        let error = Connector::postgres("postgres://u:hunter2@h/db?sslmode=bogus", Duration::ZERO)
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn connector_debug_hides_the_password() {
        let connector =
            Connector::postgres("postgres://u:hunter2@h/db", Duration::from_secs(1)).unwrap();
        let shown = format!("{connector:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn sqlite_setup_sets_every_pragma() {
        let sql = SqliteSetup {
            busy_timeout: Duration::from_millis(5000),
        }
        .sql();
        for pragma in [
            "busy_timeout = 5000",
            "journal_mode = WAL",
            "foreign_keys = ON",
            "synchronous = NORMAL",
        ] {
            assert!(sql.contains(pragma), "{pragma}");
        }
    }
}
