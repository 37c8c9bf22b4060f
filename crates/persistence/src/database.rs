//! The [`Database`]: a connection pool over one backend, its migrations, and the helpers the
//! repositories run their statements through.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use deadpool::managed::{Object, Pool, PoolError, QueueMode, Timeouts, WeakPool};
use diesel_async::pg::AsyncPgConnection;
use diesel_async::SimpleAsyncConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use log::info;
use user_service_domain::{Cause, RepositoryError};

use crate::connection::{
    on_backend, ConnectError, ConnectionManager, Connector, DbConnection, PoolSettings, SqliteSetup,
};
use crate::error::{DatabaseError, Failure};
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
    inner: Arc<Inner>,
}

struct Inner {
    pools: Pools,
    url: DatabaseUrl,
    /// The connector, for work that needs a connection of its own (migrations).
    connector: Arc<Connector>,
    sqlite: SqliteSetup,
    /// SQLite has one writer at a time: this process's writers queue here, in arrival order,
    /// rather than wait inside SQLite's busy handler on the thread that serves requests.
    sqlite_writer: tokio::sync::Semaphore,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool_status();
        f.debug_struct("Database")
            .field("url", &self.inner.url.redacted())
            .field("connections", &status.connections)
            .field("idle", &status.idle)
            .finish()
    }
}

/// Where connections are kept.
enum Pools {
    /// One pool for every thread: SQLite runs its statements in place, so any thread may use
    /// any connection at no cost.
    Shared(Pool<ConnectionManager>),
    /// One pool per thread (PostgreSQL): a connection's I/O is driven by the thread that opened
    /// it, so a request's queries are sent and answered on its own thread, never waiting for
    /// another thread to be woken. Each thread's pool is made on its first use.
    PerThread {
        /// Database id, the key of this database's pools in the threads' tables.
        id: u64,
        /// Makes the pool of a thread.
        build: Box<dyn Fn() -> Pool<ConnectionManager> + Send + Sync>,
        /// Every thread's pool, for the status.
        pools: Mutex<Vec<WeakPool<ConnectionManager>>>,
    },
}

/// One thread's pool of one database: the database's id, the database (an entry whose
/// database is gone is dropped, closing its connections), the pool.
type ThreadPool = (u64, Weak<Inner>, Pool<ConnectionManager>);

thread_local! {
    /// This thread's pools.
    static THREAD_POOLS: RefCell<Vec<ThreadPool>> = const { RefCell::new(Vec::new()) };
}

/// Ids of the databases of this process.
static NEXT_DATABASE_ID: AtomicU64 = AtomicU64::new(1);

/// Connections of the pool, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open.
    pub connections: u32,
    /// Of which idle.
    pub idle: u32,
    /// Callers waiting for a connection.
    pub waiting: u32,
}

impl Database {
    /// Opens a pool on `url` (see [`DatabaseUrl::parse`] for the forms) and one connection, so
    /// that a wrong URL or an unreachable server is reported here. Creates the directory of a
    /// SQLite file when missing; the file and its journals are readable by this user only.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, DatabaseError> {
        let database = Self::connect_lazy(url, settings)?;
        let pooled = database.pool().get().await.map_err(|error| {
            let cause = match error {
                PoolError::Backend(ConnectError(text)) => Cause::message(text),
                other => Cause::message(pool_failure(&other)),
            };
            DatabaseError::Connect {
                url: database.redacted_url(),
                cause,
            }
        })?;
        drop(pooled);
        // The thread that connects (start-up, a command) keeps nothing idle for the threads
        // that serve: each of those opens its own.
        database.release_thread_pool();
        Ok(database)
    }

    /// Like [`Database::connect`], but opens connections only when first needed: the service can
    /// start while the database is still down (and report it on its readiness route).
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<Self, DatabaseError> {
        let url = DatabaseUrl::parse(url)?;
        let mut max_size = settings.max_size.max(1);
        let connector = match &url {
            DatabaseUrl::Postgres(raw) => Connector::postgres(raw, settings.connection_timeout)
                .map_err(|e| DatabaseError::InvalidUrl(e.0))?,
            DatabaseUrl::Sqlite(SqliteLocation::Memory) => {
                // Each connection to `:memory:` is a database of its own: keep exactly one.
                max_size = 1;
                Connector::Sqlite(":memory:".into())
            }
            DatabaseUrl::Sqlite(SqliteLocation::File(path)) => {
                crate::files::prepare_sqlite_file(path).map_err(DatabaseError::Directory)?;
                Connector::Sqlite(path.clone())
            }
        };
        let connector = Arc::new(connector);
        let sqlite = SqliteSetup {
            busy_timeout: settings.sqlite_busy_timeout,
        };
        let keeps_forever = matches!(url, DatabaseUrl::Sqlite(SqliteLocation::Memory));
        let manager = ConnectionManager {
            connector: Arc::clone(&connector),
            sqlite,
            validate_idle_after: settings.validate_idle_after,
            idle_timeout: settings.idle_timeout.filter(|_| !keeps_forever),
            max_lifetime: settings.max_lifetime.filter(|_| !keeps_forever),
        };
        let timeout = Some(settings.connection_timeout);
        let per_thread = !matches!(url, DatabaseUrl::Sqlite(_));
        let size = if per_thread {
            max_size.div_ceil(settings.threads.max(1)).max(1)
        } else {
            max_size
        };
        let build = move || {
            Pool::builder(manager.clone())
                .max_size(usize::try_from(size).unwrap_or(1))
                // Waiters are served first come, first served; the most recently used
                // connection is handed out first, so that idle ones age and are checked or
                // closed.
                .queue_mode(QueueMode::Lifo)
                .timeouts(Timeouts {
                    wait: timeout,
                    create: timeout,
                    recycle: timeout,
                })
                .runtime(deadpool::Runtime::Tokio1)
                .build()
        };
        let pools = if per_thread {
            // Building checks only the settings: once it succeeded, it succeeds on every thread.
            let first = build().map_err(|e| DatabaseError::InvalidUrl(e.to_string()))?;
            drop(first);
            Pools::PerThread {
                id: NEXT_DATABASE_ID.fetch_add(1, Ordering::Relaxed),
                build: Box::new(move || {
                    build().unwrap_or_else(|_| unreachable!("the same settings built a pool"))
                }),
                pools: Mutex::new(Vec::new()),
            }
        } else {
            Pools::Shared(build().map_err(|e| DatabaseError::InvalidUrl(e.to_string()))?)
        };
        info!(
            "database pool on {} ({max_size} connections at most)",
            url.redacted()
        );
        Ok(Self {
            inner: Arc::new(Inner {
                pools,
                url,
                connector,
                sqlite,
                sqlite_writer: tokio::sync::Semaphore::new(1),
            }),
        })
    }

    /// The backend the URL selected.
    pub fn backend(&self) -> Backend {
        self.inner.url.backend()
    }

    /// The URL, password redacted.
    pub fn redacted_url(&self) -> String {
        self.inner.url.redacted()
    }

    /// Open and idle connections, over every thread's pool.
    pub fn pool_status(&self) -> PoolStatus {
        let statuses: Vec<deadpool::Status> = match &self.inner.pools {
            Pools::Shared(pool) => vec![pool.status()],
            Pools::PerThread { pools, .. } => pools
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter_map(WeakPool::upgrade)
                .map(|pool| pool.status())
                .collect(),
        };
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        PoolStatus {
            connections: clamp(statuses.iter().map(|s| s.size).sum()),
            idle: clamp(statuses.iter().map(|s| s.available).sum()),
            waiting: clamp(statuses.iter().map(|s| s.waiting).sum()),
        }
    }

    /// The pool of the calling thread (the shared one for SQLite).
    fn pool(&self) -> Pool<ConnectionManager> {
        let (id, build, registry) = match &self.inner.pools {
            Pools::Shared(pool) => return pool.clone(),
            Pools::PerThread { id, build, pools } => (*id, build, pools),
        };
        THREAD_POOLS.with(|table| {
            let mut table = table.borrow_mut();
            table.retain(|(_, database, _)| database.strong_count() > 0);
            if let Some((_, _, pool)) = table.iter().find(|(key, _, _)| *key == id) {
                return pool.clone();
            }
            let pool = build();
            let mut all = registry.lock().unwrap_or_else(PoisonError::into_inner);
            all.retain(|weak| weak.upgrade().is_some());
            all.push(pool.weak());
            table.push((id, Arc::downgrade(&self.inner), pool.clone()));
            pool
        })
    }

    /// Closes the calling thread's pool (PostgreSQL), when this thread is done with the
    /// database.
    pub fn release_thread_pool(&self) {
        if let Pools::PerThread { id, .. } = &self.inner.pools {
            THREAD_POOLS.with(|table| table.borrow_mut().retain(|(key, _, _)| key != id));
        }
    }

    /// Whether the database answers: checks a connection out and runs `SELECT 1`.
    pub async fn ping(&self) -> Result<(), RepositoryError> {
        self.run("ping", async |conn| Ok(conn.ping().await?)).await
    }

    /// Applies the pending migrations of this backend; returns the versions applied.
    ///
    /// On PostgreSQL an advisory lock serialises replicas that start together.
    pub async fn run_migrations(&self) -> Result<Vec<String>, DatabaseError> {
        let applied = self.migrate(Migrations::Run).await?;
        if !applied.is_empty() {
            info!("applied migrations: {}", applied.join(", "));
        }
        Ok(applied)
    }

    /// Reverts every applied migration, dropping the service's tables and their rows. For tests
    /// and development only: on a database upgraded from the Python service it also drops the
    /// tables that service created.
    pub async fn revert_all_migrations(&self) -> Result<Vec<String>, DatabaseError> {
        self.migrate(Migrations::RevertAll).await
    }

    /// Versions of the migrations not applied yet.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, DatabaseError> {
        self.migrate(Migrations::Pending).await
    }

    /// Runs `work` on a connection of its own, synchronously, on a thread of its own: diesel's
    /// migration harness is synchronous.
    async fn migrate(&self, what: Migrations) -> Result<Vec<String>, DatabaseError> {
        if self.backend() == Backend::Sqlite {
            // On a pooled connection: an in-memory database exists on that connection only.
            // SQLite's statements run in place, on this thread, which is what the harness
            // wants.
            let mut pooled = self.checkout("migrate").await?;
            let DbConnection::Sqlite(conn) = &mut pooled.conn else {
                unreachable!("a SQLite database holds SQLite connections")
            };
            let outcome = conn
                .spawn_blocking(move |inner| Ok(harness(inner, SQLITE_MIGRATIONS, what)))
                .await
                .map_err(|e| DatabaseError::Migration(Cause::new(e)))?;
            return outcome.map_err(|e| DatabaseError::Migration(Cause::message(e.to_string())));
        }
        let connector = Arc::clone(&self.inner.connector);
        let sqlite = self.inner.sqlite;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("migrations".into())
            .spawn(move || {
                let _ = sender.send(migrate_blocking(&connector, sqlite, what));
            })
            .map_err(|e| DatabaseError::Migration(Cause::new(e)))?;
        receiver
            .await
            .map_err(|_| DatabaseError::Migration(Cause::message("the migration thread died")))?
    }

    /// Runs `work` on a pooled connection, outside any explicit transaction (reads, single
    /// statements). A connection that failed as unavailable is discarded, not returned.
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        work: impl AsyncFnOnce(&mut DbConnection) -> Result<T, Failure>,
    ) -> Result<T, RepositoryError> {
        let mut pooled = self.checkout(operation).await?;
        let outcome = work(&mut pooled.conn)
            .await
            .map_err(|f| f.into_repository(operation));
        self.give_back(pooled, &outcome);
        outcome
    }

    /// Runs `work` in a write transaction, committed when it returns `Ok`, rolled back otherwise.
    ///
    /// On SQLite, writers of this process queue in arrival order, then the transaction starts
    /// with `BEGIN IMMEDIATE`, taking the write lock up front: a deferred transaction that reads
    /// then writes could fail with `SQLITE_BUSY` at once (a reader cannot be upgraded while
    /// another writer waits), whereas waiting for the write lock honours `busy_timeout`.
    pub(crate) async fn write<T>(
        &self,
        operation: &'static str,
        work: impl AsyncFnOnce(&mut DbConnection) -> Result<T, Failure>,
    ) -> Result<T, RepositoryError> {
        self.transaction(operation, Opening::Now, work).await
    }

    /// Like [`Database::write`], opened as `opening` says.
    pub(crate) async fn transaction<T>(
        &self,
        operation: &'static str,
        opening: Opening,
        work: impl AsyncFnOnce(&mut DbConnection) -> Result<T, Failure>,
    ) -> Result<T, RepositoryError> {
        let _turn = match self.backend() {
            Backend::Sqlite => Some(self.inner.sqlite_writer.acquire().await.map_err(|_| {
                RepositoryError::unavailable(operation, "the database is shutting down")
            })?),
            Backend::Postgres => None,
        };
        let mut pooled = self.checkout(operation).await?;
        let outcome = transaction(&mut pooled, opening, work)
            .await
            .map_err(|f| f.into_repository(operation));
        self.give_back(pooled, &outcome);
        outcome
    }

    async fn checkout(
        &self,
        operation: &'static str,
    ) -> Result<Object<ConnectionManager>, RepositoryError> {
        self.pool().get().await.map_err(|error| {
            let cause = match error {
                PoolError::Backend(ConnectError(text)) => text,
                other => pool_failure(&other),
            };
            RepositoryError::unavailable(operation, cause)
        })
    }

    /// Returns a connection to the pool, or drops it when the database was unreachable on it.
    fn give_back<T>(
        &self,
        mut pooled: Object<ConnectionManager>,
        outcome: &Result<T, RepositoryError>,
    ) {
        match outcome {
            Err(error) if error.is_unavailable() => drop(Object::take(pooled)),
            _ => pooled.answered(),
        }
    }
}

/// What a pool error means, in words (never a URL).
fn pool_failure<E>(error: &PoolError<E>) -> String {
    match error {
        PoolError::Timeout(_) => "no database connection available in time".into(),
        PoolError::Closed => "the connection pool is closed".into(),
        PoolError::NoRuntimeSpecified => "no runtime for the connection pool".into(),
        PoolError::PostCreateHook(_) | PoolError::Backend(_) => {
            "cannot open a database connection".into()
        }
    }
}

/// How a transaction is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// `BEGIN` (SQLite: `BEGIN IMMEDIATE`) is sent, and answered, before the work runs.
    Now,
    /// The work's first statement sends it, with [`begin_statement`], so that PostgreSQL can
    /// receive both in one round trip.
    ByWork,
}

/// The statement that opens a write transaction on `backend`.
pub(crate) fn begin_statement(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "BEGIN",
        Backend::Sqlite => "BEGIN IMMEDIATE",
    }
}

/// Runs `work` in a transaction, committed when it returns `Ok`, rolled back otherwise. The
/// transaction is managed here with plain statements; the connection is marked as in a
/// transaction until it ends, so that one abandoned in the middle (a request cancelled by its
/// client) is discarded by the pool rather than reused.
async fn transaction<T>(
    pooled: &mut crate::connection::Pooled,
    opening: Opening,
    work: impl AsyncFnOnce(&mut DbConnection) -> Result<T, Failure>,
) -> Result<T, Failure> {
    pooled.in_transaction = true;
    let conn = &mut pooled.conn;
    if opening == Opening::Now {
        let begin = begin_statement(conn.backend());
        on_backend!(&mut *conn, |c| c.batch_execute(begin).await)?;
    }
    let outcome = work(conn).await;
    let end = if outcome.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = on_backend!(&mut *conn, |c| c.batch_execute(end).await);
    match (outcome, ended) {
        (Ok(value), Ok(())) => {
            pooled.in_transaction = false;
            Ok(value)
        }
        (Ok(_), Err(commit)) => Err(commit.into()),
        (Err(failure), Ok(())) => {
            pooled.in_transaction = false;
            Err(failure)
        }
        // The rollback failed too: the connection stays marked and is discarded.
        (Err(failure), Err(_)) => Err(failure),
    }
}

/// What to do with the migrations.
#[derive(Debug, Clone, Copy)]
enum Migrations {
    /// Apply the pending ones.
    Run,
    /// Revert every applied one.
    RevertAll,
    /// List the pending ones.
    Pending,
}

type Harnessed = Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>;

fn harness<DB, C>(conn: &mut C, source: EmbeddedMigrations, what: Migrations) -> Harnessed
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
{
    match what {
        Migrations::Run => conn
            .run_pending_migrations(source)
            .map(|v| v.iter().map(ToString::to_string).collect()),
        Migrations::RevertAll => conn
            .revert_all_migrations(source)
            .map(|v| v.iter().map(ToString::to_string).collect()),
        Migrations::Pending => Ok(conn
            .pending_migrations(source)?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect()),
    }
}

/// Opens a connection of its own and runs the migration work on it. PostgreSQL's connection is
/// driven by a runtime of this thread's own, wrapped to look synchronous to diesel's harness.
fn migrate_blocking(
    connector: &Connector,
    sqlite: SqliteSetup,
    what: Migrations,
) -> Result<Vec<String>, DatabaseError> {
    use diesel::RunQueryDsl;
    let failed =
        |e: &dyn std::fmt::Display| DatabaseError::Migration(Cause::message(e.to_string()));
    match connector {
        Connector::Postgres(_) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| DatabaseError::Migration(Cause::new(e)))?;
            let _entered = runtime.enter();
            let conn = match runtime
                .block_on(connector.open(sqlite))
                .map_err(|e| failed(&e))?
            {
                DbConnection::Postgres(conn) => conn,
                DbConnection::Sqlite(_) => unreachable!("a PostgreSQL connector opens PostgreSQL"),
            };
            let mut conn = diesel_async::async_connection_wrapper::AsyncConnectionWrapper::<
                AsyncPgConnection,
            >::from(conn);
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .execute(&mut conn)
                .map_err(|e| failed(&e))?;
            let outcome = harness(&mut conn, POSTGRES_MIGRATIONS, what);
            // A failure to unlock closes nothing: the lock ends with the session.
            let _ = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .execute(&mut conn);
            outcome.map_err(|e| failed(&e))
        }
        Connector::Sqlite(_) => Err(failed(&"SQLite is migrated on a pooled connection")),
    }
}
