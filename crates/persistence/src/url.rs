//! Database URLs: which backend a URL names, where a SQLite file lives, and how a URL is shown.

use std::fmt;
use std::path::PathBuf;

use crate::error::DatabaseError;

/// The database engine behind a `Database`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL, through libpq.
    Postgres,
    /// SQLite, bundled into the binary.
    Sqlite,
}

impl Backend {
    /// Stable name (`postgres`, `sqlite`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    /// A file (created, with its parent directory, when missing).
    File(PathBuf),
    /// A private in-memory database (`sqlite::memory:`), kept on a single pooled connection.
    Memory,
}

/// A parsed database URL: the backend and what to hand its driver.
///
/// `Debug` and `Display` show the URL with its password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A libpq URL (`postgres://` or `postgresql://`).
    Postgres(String),
    /// A SQLite database.
    Sqlite(SqliteLocation),
}

impl DatabaseUrl {
    /// Parses `postgres://…`, `postgresql://…` (also SQLAlchemy's `postgresql+driver://…`),
    /// `sqlite://path`, `sqlite:path`, `sqlite::memory:` or a plain file path.
    ///
    /// ```
    /// use user_service_persistence::{Backend, DatabaseUrl};
    /// assert_eq!(DatabaseUrl::parse("postgres://u:pw@db/app").unwrap().backend(), Backend::Postgres);
    /// assert_eq!(DatabaseUrl::parse("sqlite://./data/app.db").unwrap().backend(), Backend::Sqlite);
    /// assert_eq!(DatabaseUrl::parse("./data/app.db").unwrap().backend(), Backend::Sqlite);
    /// assert!(DatabaseUrl::parse("mysql://db/app").is_err());
    /// ```
    pub fn parse(raw: &str) -> Result<Self, DatabaseError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(DatabaseError::InvalidUrl(
                "the database URL is empty".into(),
            ));
        }
        match raw.split_once(':') {
            Some((scheme, rest)) if is_scheme(scheme) => {
                // SQLAlchemy names a driver after a `+` (`postgresql+psycopg://`): libpq does not.
                let base = scheme
                    .split_once('+')
                    .map_or(scheme, |(base, _)| base)
                    .to_ascii_lowercase();
                match base.as_str() {
                    "postgres" | "postgresql" => {
                        if !rest.starts_with("//") {
                            return Err(DatabaseError::InvalidUrl(
                                "a PostgreSQL URL starts with postgres://".into(),
                            ));
                        }
                        Ok(Self::Postgres(format!("{base}:{rest}")))
                    }
                    "sqlite" => Self::sqlite(rest.strip_prefix("//").unwrap_or(rest)),
                    _ => Err(DatabaseError::InvalidUrl(format!(
                        "unsupported database URL scheme `{base}` (use postgres://, postgresql:// or sqlite://)"
                    ))),
                }
            }
            _ => Self::sqlite(raw),
        }
    }

    fn sqlite(path: &str) -> Result<Self, DatabaseError> {
        // sqlx-style options (`?mode=rwc`) are not part of the file name.
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        match path {
            "" => Err(DatabaseError::InvalidUrl(
                "the SQLite URL names no file".into(),
            )),
            ":memory:" => Ok(Self::Sqlite(SqliteLocation::Memory)),
            path => Ok(Self::Sqlite(SqliteLocation::File(PathBuf::from(path)))),
        }
    }

    /// The backend this URL names.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The URL with any password replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        match self {
            Self::Postgres(url) => redact(url),
            Self::Sqlite(SqliteLocation::Memory) => "sqlite::memory:".into(),
            Self::Sqlite(SqliteLocation::File(path)) => format!("sqlite://{}", path.display()),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A URL scheme is a letter followed by letters, digits, `+`, `-` or `.`; a Windows drive letter
/// (`C:`) is a path, not a scheme.
fn is_scheme(candidate: &str) -> bool {
    let mut chars = candidate.chars();
    candidate.len() > 1
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Replaces the password of `scheme://user:password@host/…` and of a `password=` query parameter
/// with `***`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = authority_start + colon + 1;
                out.replace_range(start..authority_start + at, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_file(raw: &str) -> PathBuf {
        match DatabaseUrl::parse(raw).unwrap() {
            DatabaseUrl::Sqlite(SqliteLocation::File(path)) => path,
            other => panic!("expected a SQLite file, got {other:?}"),
        }
    }

    #[test]
    fn postgres_schemes_select_postgres() {
        for raw in [
            "postgres://u@h/db",
            "postgresql://u@h:5432/db?sslmode=disable",
            "PostgreSQL://u@h/db",
        ] {
            assert_eq!(
                DatabaseUrl::parse(raw).unwrap().backend(),
                Backend::Postgres
            );
        }
    }

    #[test]
    fn sqlalchemy_driver_suffix_is_dropped() {
        assert_eq!(
            DatabaseUrl::parse("postgresql+psycopg://u:p@h/db").unwrap(),
            DatabaseUrl::Postgres("postgresql://u:p@h/db".into())
        );
    }

    #[test]
    fn sqlite_forms_name_a_file() {
        assert_eq!(
            sqlite_file("sqlite://./data/x.db"),
            PathBuf::from("./data/x.db")
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/x.db"),
            PathBuf::from("/var/lib/x.db")
        );
        assert_eq!(sqlite_file("sqlite:data/x.db"), PathBuf::from("data/x.db"));
        assert_eq!(sqlite_file("sqlite://x.db?mode=rwc"), PathBuf::from("x.db"));
        assert_eq!(sqlite_file("./data/x.db"), PathBuf::from("./data/x.db"));
        assert_eq!(sqlite_file("/tmp/x.db"), PathBuf::from("/tmp/x.db"));
        assert_eq!(sqlite_file(r"C:\data\x.db"), PathBuf::from(r"C:\data\x.db"));
    }

    #[test]
    fn sqlite_memory_is_recognised() {
        for raw in ["sqlite::memory:", "sqlite://:memory:", ":memory:"] {
            assert_eq!(
                DatabaseUrl::parse(raw).unwrap(),
                DatabaseUrl::Sqlite(SqliteLocation::Memory),
                "{raw}"
            );
        }
    }

    #[test]
    fn unsupported_or_empty_urls_are_refused() {
        for raw in ["", "  ", "mysql://h/db", "sqlite://", "postgres:db"] {
            assert!(DatabaseUrl::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let url =
            DatabaseUrl::parse("postgres://app:s3cr3t@db:5432/users?password=other&x=1").unwrap();
        let shown = format!("{url} {url:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("other"),
            "{shown}"
        );
        assert_eq!(
            url.redacted(),
            "postgres://app:***@db:5432/users?password=***&x=1"
        );
        assert_eq!(redact("postgres://app@db/users"), "postgres://app@db/users");
        assert_eq!(redact("postgres://a:b:c@db/x@y"), "postgres://a:***@db/x@y");
    }
}
