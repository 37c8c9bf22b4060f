//! Connections: one enum over both backends, the pool settings, and what every new connection is
//! set up with.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, CustomizeConnection, ManageConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};

use crate::url::{redact, Backend};

/// A connection to either backend; diesel queries written once run on both.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// A PostgreSQL connection.
    Postgres(PgConnection),
    /// A SQLite connection.
    Sqlite(SqliteConnection),
}

impl fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(_) => f.write_str("DbConnection::Postgres"),
            Self::Sqlite(_) => f.write_str("DbConnection::Sqlite"),
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
}

/// Settings of the connection pool. `Default` gives the values documented on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once. Default 16: enough for the blocking pool of a 2-core
    /// server, well under PostgreSQL's default `max_connections` of 100 for a few replicas.
    pub max_size: u32,
    /// Idle connections kept open. Default 2 (`None` keeps `max_size` idle connections).
    pub min_idle: Option<u32>,
    /// How long a caller waits for a connection before the operation fails as unavailable.
    /// Default 3 s, so that requests fail fast (503) while the database is down.
    pub connection_timeout: Duration,
    /// Idle connections beyond `min_idle` are closed after this long. Default 10 min.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long. Default 30 min.
    pub max_lifetime: Option<Duration>,
    /// How long a SQLite statement waits for another connection's lock (`busy_timeout`).
    /// Default 5 s.
    pub sqlite_busy_timeout: Duration,
    /// A connection idle for longer than this is checked with `SELECT 1` when it is checked
    /// out; one used more recently is trusted (no extra round trip on a busy service). A
    /// trusted connection that turns out dead fails its operation as unavailable once and is
    /// discarded. Default 1 s; `Duration::ZERO` checks every checkout.
    pub validate_idle_after: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            min_idle: Some(2),
            connection_timeout: Duration::from_secs(3),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            sqlite_busy_timeout: Duration::from_secs(5),
            validate_idle_after: Duration::from_secs(1),
        }
    }
}

/// What the pool opens: the backend is known from the URL, so no other driver is tried.
pub(crate) enum Connector {
    /// A libpq URL.
    Postgres(String),
    /// A SQLite file path or `:memory:`.
    Sqlite(PathBuf),
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(url) => write!(f, "Connector::Postgres({})", redact(url)),
            Self::Sqlite(path) => write!(f, "Connector::Sqlite({})", path.display()),
        }
    }
}

impl Connector {
    fn open(&self) -> Result<DbConnection, r2d2::Error> {
        match self {
            Self::Postgres(url) => PgConnection::establish(url).map(DbConnection::Postgres),
            Self::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    ConnectionError::InvalidConnectionUrl(
                        "the SQLite path is not valid UTF-8".into(),
                    )
                })?;
                SqliteConnection::establish(path).map(DbConnection::Sqlite)
            }
        }
        .map_err(r2d2::Error::ConnectionError)
    }
}

/// A pooled connection and what the pool knows of its health.
#[derive(Debug)]
pub struct Pooled {
    /// The connection.
    pub conn: DbConnection,
    /// When it last completed an operation (or was opened, or passed a check).
    last_ok: Instant,
    /// An operation on it failed as if the connection were gone: discard it.
    lost: bool,
}

impl Pooled {
    /// Records the outcome of an operation: an "unavailable" failure marks the connection for
    /// discarding; any other outcome (the database answered) refreshes its health.
    pub(crate) fn record(&mut self, unavailable: bool) {
        if unavailable {
            self.lost = true;
        } else {
            self.last_ok = Instant::now();
        }
    }
}

/// The pool's connection manager: opens connections, and checks at checkout only those idle
/// for longer than [`PoolSettings::validate_idle_after`].
#[derive(Debug)]
pub(crate) struct Manager {
    pub(crate) connector: Connector,
    pub(crate) validate_idle_after: Duration,
}

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<Pooled, r2d2::Error> {
        Ok(Pooled {
            conn: self.connector.open()?,
            last_ok: Instant::now(),
            lost: false,
        })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), r2d2::Error> {
        if pooled.last_ok.elapsed() < self.validate_idle_after {
            return Ok(());
        }
        pooled.conn.ping().map_err(r2d2::Error::QueryError)?;
        pooled.last_ok = Instant::now();
        Ok(())
    }

    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        pooled.lost || pooled.conn.is_broken()
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

impl CustomizeConnection<Pooled, r2d2::Error> for SqliteSetup {
    fn on_acquire(&self, pooled: &mut Pooled) -> Result<(), r2d2::Error> {
        let conn = &mut pooled.conn;
        conn.batch_execute(&self.sql())
            .map_err(r2d2::Error::QueryError)
    }
}

/// Adds libpq's `connect_timeout` to a URL that sets none, so a connection attempt to an
/// unreachable host does not hang a pool thread for the system's TCP timeout.
pub(crate) fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let seconds = timeout.as_secs().max(2);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}connect_timeout={seconds}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_is_added_once() {
        let d = Duration::from_secs(3);
        assert_eq!(
            with_connect_timeout("postgres://h/db", d),
            "postgres://h/db?connect_timeout=3"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=disable", d),
            "postgres://h/db?sslmode=disable&connect_timeout=3"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?connect_timeout=9", d),
            "postgres://h/db?connect_timeout=9"
        );
    }

    #[test]
    fn connector_debug_hides_the_password() {
        let shown = format!(
            "{:?}",
            Connector::Postgres("postgres://u:hunter2@h/db".into())
        );
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
