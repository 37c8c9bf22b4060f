//! Throw-away databases on both backends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};

use crate::ci;

/// The PostgreSQL server tests use when `TEST_DATABASE_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// The URL of the PostgreSQL server on which tests create their databases.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// `url` with its database name replaced by `name` (the query string is kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A database name unique to this process and call.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A connection to the PostgreSQL server as administrator, or `None` when it is unreachable
/// (see [`ci::missing`]: a failure under CI).
pub fn postgres_admin() -> Option<PgConnection> {
    let url = postgres_admin_url();
    match PgConnection::establish(&url) {
        Ok(conn) => Some(conn),
        Err(error) => ci::missing(
            &format!("PostgreSQL (TEST_DATABASE_URL or {DEFAULT_POSTGRES_URL})"),
            &error,
        ),
    }
}

/// Runs `sql` on the PostgreSQL server as administrator (outside any test database); the number
/// of rows it touched.
pub fn admin_execute(sql: &str) -> usize {
    let mut admin = postgres_admin().expect("PostgreSQL was reachable a moment ago");
    diesel::sql_query(sql)
        .execute(&mut admin)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs `$body` on a new connection `$c` of `$db` (its backend's own connection type); connection
/// and query errors as text.
macro_rules! on_connection {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db.backend {
            Backend::Sqlite => SqliteConnection::establish($db.sqlite_path())
                .map_err(|e| e.to_string())
                .and_then(|mut conn| {
                    let $c = &mut conn;
                    $body.map_err(|e| e.to_string())
                }),
            Backend::Postgres => PgConnection::establish(&$db.url)
                .map_err(|e| e.to_string())
                .and_then(|mut conn| {
                    let $c = &mut conn;
                    $body.map_err(|e| e.to_string())
                }),
        }
    };
}

/// A database that exists for one test: a SQLite file (not created yet) in a temporary
/// directory, or an empty PostgreSQL database, dropped (with `FORCE`) when the value is.
/// Nothing is migrated: the code under test does that.
#[derive(Debug)]
pub struct ScratchDatabase {
    /// Its URL (`sqlite://…/data/test.db`, or `postgres://…/<name>`).
    pub url: String,
    /// Its backend.
    pub backend: Backend,
    /// The PostgreSQL database name this value drops (`None` for SQLite and for an alias).
    name: Option<String>,
    _dir: tempfile::TempDir,
}

impl ScratchDatabase {
    /// A fresh database, or `None` when PostgreSQL is unreachable outside CI.
    pub fn create(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temporary directory");
        match backend {
            Backend::Sqlite => Some(Self {
                // A sub-directory that does not exist yet: the code under test creates it.
                url: format!("sqlite://{}/data/test.db", dir.path().display()),
                backend,
                name: None,
                _dir: dir,
            }),
            Backend::Postgres => {
                let mut admin = postgres_admin()?;
                let name = unique_name("us_test");
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .expect("create the test database");
                Some(Self {
                    url: with_database(&postgres_admin_url(), &name),
                    backend,
                    name: Some(name),
                    _dir: dir,
                })
            }
        }
    }

    /// Another handle on the same database; the original keeps it and drops it.
    pub fn alias(&self) -> Self {
        Self {
            url: self.url.clone(),
            backend: self.backend,
            name: None,
            _dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// The PostgreSQL database name (`None` on SQLite and for an alias).
    pub fn pg_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The path of the SQLite file (the URL without its scheme).
    fn sqlite_path(&self) -> &str {
        self.url.trim_start_matches("sqlite://")
    }

    /// Runs `query` on this database and loads its rows.
    pub fn load<R>(&self, query: &str) -> Vec<R>
    where
        R: diesel::QueryableByName<diesel::sqlite::Sqlite>
            + diesel::QueryableByName<diesel::pg::Pg>
            + 'static,
    {
        on_connection!(self, |c| diesel::sql_query(query).load(c))
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// Counts the rows of `table` matching the SQL `condition`.
    pub fn count_rows(&self, table: &str, condition: &str) -> i64 {
        use diesel::sql_types::BigInt;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let query = format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table} WHERE {condition}");
        let rows: Vec<Count> = self.load(&query);
        rows[0].n
    }

    /// Executes a statement directly on the database (to tamper with rows).
    pub fn execute(&self, sql: &str) {
        if let Err(error) = self.try_execute(sql) {
            panic!("{sql}: {error}");
        }
    }

    /// Executes a statement directly on the database; the database's refusal as text.
    pub fn try_execute(&self, sql: &str) -> Result<usize, String> {
        on_connection!(self, |c| diesel::sql_query(sql).execute(c))
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let Some(name) = &self.name else { return };
        match PgConnection::establish(&postgres_admin_url()) {
            Ok(mut admin) => {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut admin);
            }
            Err(e) => eprintln!("cannot drop test database {name}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/test?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn names_are_unique_within_a_process() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
