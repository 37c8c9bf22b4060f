//! Fixtures shared by the persistence integration tests: throw-away databases on both backends, a
//! deterministic test cipher, and row builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use diesel::{Connection, PgConnection, QueryResult, SqliteConnection};
use user_service_domain::ports::{
    CredentialMutation, CredentialRepository, CredentialWrite, WritePlan,
};
use user_service_domain::{
    AuditEvent, BrokerId, Email, KeyId, NewUser, RepositoryError, StoredCredential, UserId,
};
use user_service_persistence::{CredentialStore, Database, PoolSettings};
use user_service_test_support::db::{admin_execute, Backend, ScratchDatabase};

/// A synchronous connection of the test's own, to look at and tamper with rows directly.
#[derive(diesel::MultiConnection)]
pub enum SyncConn {
    /// PostgreSQL (libpq).
    Postgres(PgConnection),
    /// SQLite.
    Sqlite(SqliteConnection),
}

impl SyncConn {
    /// Opens a connection to `url` (a `postgres://` URL or `sqlite://path`).
    pub fn open(url: &str) -> Self {
        match url.strip_prefix("sqlite://") {
            Some(path) => Self::Sqlite(SqliteConnection::establish(path).unwrap()),
            None => Self::Postgres(PgConnection::establish(url).unwrap()),
        }
    }
}

/// The old shape of a write, kept for the tests: one transaction applying `mutations` and
/// recording `events`, built on `update`.
pub trait ApplyExt {
    /// Applies `mutations` with no event.
    async fn apply(
        &self,
        user: UserId,
        mutations: &[CredentialMutation],
    ) -> Result<Vec<StoredCredential>, RepositoryError>;
    /// Applies the one write `write` with no event.
    async fn apply_one(
        &self,
        user: UserId,
        write: CredentialWrite,
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.apply(user, &[CredentialMutation::Write(write)]).await
    }
    /// Applies the writes `writes`, in order, with no event.
    async fn apply_writes<const N: usize>(
        &self,
        user: UserId,
        writes: [CredentialWrite; N],
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.apply(user, &writes.map(CredentialMutation::Write))
            .await
    }
    /// Applies `mutations` and records `events` in one transaction.
    async fn apply_audited(
        &self,
        user: UserId,
        mutations: &[CredentialMutation],
        events: &[AuditEvent],
    ) -> Result<Vec<StoredCredential>, RepositoryError>;
}

impl ApplyExt for CredentialStore {
    async fn apply(
        &self,
        user: UserId,
        mutations: &[CredentialMutation],
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.apply_audited(user, mutations, &[]).await
    }

    async fn apply_audited(
        &self,
        user: UserId,
        mutations: &[CredentialMutation],
        events: &[AuditEvent],
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        let mut planner = |_: &[StoredCredential]| WritePlan::Apply {
            mutations: mutations.to_vec(),
            events: events.to_vec(),
        };
        self.update(user, &mut planner).await
    }
}

/// Where the PostgreSQL tests connect to create their databases.
/// A database that exists for one test, migrated, with a pool on it; dropped at the end.
pub struct TestDb {
    /// The pool on it, migrated.
    pub db: Database,
    /// Its URL.
    pub url: String,
    /// Its name on the PostgreSQL server (`None` for SQLite).
    pub name: Option<String>,
    _scratch: ScratchDatabase,
}

/// Pool settings for tests: a longer checkout wait than production, since 50 threads share it.
pub fn test_settings() -> PoolSettings {
    PoolSettings {
        max_size: 8,
        connection_timeout: Duration::from_secs(30),
        ..PoolSettings::default()
    }
}

impl TestDb {
    /// Runs `work` on a synchronous connection of the test's own.
    pub fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut SyncConn) -> QueryResult<T>,
    ) -> QueryResult<T> {
        work(&mut SyncConn::open(&self.url))
    }
}

async fn migrated(backend: Backend) -> Option<TestDb> {
    let scratch = ScratchDatabase::create(backend)?;
    let db = Database::connect(&scratch.url, &test_settings())
        .await
        .unwrap();
    db.run_migrations().await.unwrap();
    Some(TestDb {
        db,
        url: scratch.url.clone(),
        name: scratch.pg_name().map(str::to_owned),
        _scratch: scratch,
    })
}

/// A fresh, migrated SQLite database in a temporary directory (its folder does not exist
/// before: `connect` creates it).
pub async fn sqlite() -> Option<TestDb> {
    migrated(Backend::Sqlite).await
}

/// A fresh, empty PostgreSQL database (no migrations run); dropped with the value.
pub fn postgres_empty() -> Option<ScratchDatabase> {
    ScratchDatabase::create(Backend::Postgres)
}

/// A fresh, migrated PostgreSQL database.
pub async fn postgres() -> Option<TestDb> {
    migrated(Backend::Postgres).await
}

/// Runs `sql` on the PostgreSQL server through the admin URL.
pub fn postgres_admin_execute(sql: &str) -> usize {
    admin_execute(sql)
}

/// Creates a user with e-mail `name@example.com`.
pub async fn create_user(db: &Database, name: &str) -> UserId {
    use user_service_domain::ports::UserRepository;
    let email = Email::parse(&format!("{name}@example.com")).unwrap();
    db.users()
        .create(&NewUser::with_email(email), None)
        .await
        .unwrap()
        .id
}

/// Creates user `ann` with one `binance` row holding `key` and `secret`: the credential store, her
/// id and the row.
pub async fn ann_with_binance(
    db: &Database,
    key: &str,
    secret: Option<&str>,
) -> (CredentialStore, UserId, StoredCredential) {
    let creds = db.credentials();
    let user = create_user(db, "ann").await;
    let row = creds
        .apply_one(user, write("binance", None, Some(key), secret))
        .await
        .unwrap()
        .remove(0);
    (creds, user, row)
}

/// A broker id.
pub fn broker(name: &str) -> BrokerId {
    BrokerId::parse(name).unwrap()
}

/// A fixed instant (microsecond precision, so it round-trips on both backends).
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + seconds, 123_456_000)
        .unwrap()
}

/// A write of `broker` with placeholder tokens.
pub fn write(
    broker_name: &str,
    expected_version: Option<i64>,
    key: Option<&str>,
    secret: Option<&str>,
) -> CredentialWrite {
    CredentialWrite {
        broker: broker(broker_name),
        expected_version,
        version: expected_version.map_or(1, |v| v + 1),
        api_key_encrypted: key.map(str::to_owned),
        api_secret_encrypted: secret.map(str::to_owned),
        key_id: KeyId::new("k1"),
        binding: format!(
            "bind-{broker_name}-{}",
            expected_version.map_or(1, |v| v + 1)
        ),
        updated_at: at(expected_version.unwrap_or(0)),
        trading_enabled: false,
        last_test_status: None,
        last_tested_at: None,
    }
}
