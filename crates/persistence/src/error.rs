//! Errors of this crate, and their translation into the domain's [`RepositoryError`].
//!
//! [`DatabaseError`] is what setting a database up returns (URL, pool, migrations);
//! repository methods return the domain's [`RepositoryError`], translated from diesel and r2d2
//! errors in [`repository_error`]. No message carries a value: neither a row's content nor a
//! password of the database URL.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use thiserror::Error;
use user_service_domain::RepositoryError;

/// Setting up or migrating a database failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DatabaseError {
    /// The database URL cannot be used.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The directory of the SQLite file cannot be created.
    #[error("cannot create the directory of the SQLite database: {0}")]
    Directory(#[source] std::io::Error),
    /// No connection could be opened (the URL is redacted).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A query run while setting up failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Internal failure of a repository operation: a driver error, or an outcome the repository
/// decided (a lost compare-and-set) that must roll the transaction back.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Diesel reported an error.
    Db(DieselError),
    /// The repository decided the outcome.
    Repository(RepositoryError),
}

impl From<DieselError> for Failure {
    fn from(error: DieselError) -> Self {
        Self::Db(error)
    }
}

impl From<RepositoryError> for Failure {
    fn from(error: RepositoryError) -> Self {
        Self::Repository(error)
    }
}

impl Failure {
    /// A compare-and-set lost against a concurrent writer, or a row that must not exist does.
    pub(crate) fn conflict(what: &str) -> Self {
        Self::Repository(RepositoryError::Conflict(what.to_owned()))
    }

    /// Translates into the domain's error; `operation` names what was attempted.
    pub(crate) fn into_repository(self, operation: &str) -> RepositoryError {
        match self {
            Self::Db(error) => repository_error(operation, error),
            Self::Repository(error) => error,
        }
    }
}

/// Translates a diesel error into the domain's error. The message names the operation and, for
/// constraint violations, the constraint; never a value (PostgreSQL's `detail`, which quotes the
/// offending value, is not used).
pub(crate) fn repository_error(operation: &str, error: DieselError) -> RepositoryError {
    match error {
        DieselError::NotFound => RepositoryError::NotFound,
        DieselError::DatabaseError(kind, info) => {
            let constraint = info
                .constraint_name()
                .map(|name| format!(" ({name})"))
                .unwrap_or_default();
            match kind {
                DatabaseErrorKind::UniqueViolation => {
                    RepositoryError::Conflict(format!("{operation}: already exists{constraint}"))
                }
                DatabaseErrorKind::ForeignKeyViolation => RepositoryError::NotFound,
                DatabaseErrorKind::SerializationFailure => {
                    RepositoryError::Conflict(format!("{operation}: concurrent transaction, retry"))
                }
                DatabaseErrorKind::ClosedConnection => RepositoryError::Unavailable(format!(
                    "{operation}: connection to the database lost"
                )),
                _ if is_busy(info.message()) => {
                    RepositoryError::Unavailable(format!("{operation}: database is busy"))
                }
                _ => RepositoryError::Other(format!("{operation}: {}", info.message())),
            }
        }
        DieselError::BrokenTransactionManager => RepositoryError::Unavailable(format!(
            "{operation}: connection left in an unknown transaction state"
        )),
        DieselError::DeserializationError(_) => {
            RepositoryError::Other(format!("{operation}: a stored value cannot be read"))
        }
        DieselError::SerializationError(_) => {
            RepositoryError::Other(format!("{operation}: a value cannot be written"))
        }
        other => RepositoryError::Other(format!("{operation}: {}", kind_name(&other))),
    }
}

/// SQLite reports a lock it waited `busy_timeout` for as `database is locked` / `busy`.
fn is_busy(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("database is locked") || message.contains("database table is locked")
}

fn kind_name(error: &DieselError) -> &'static str {
    match error {
        DieselError::InvalidCString(_) => "a value contains a NUL character",
        DieselError::QueryBuilderError(_) => "query cannot be built",
        DieselError::RollbackErrorOnCommit { .. } => "commit and rollback failed",
        DieselError::RollbackTransaction => "transaction rolled back",
        DieselError::AlreadyInTransaction => "already in a transaction",
        DieselError::NotInTransaction => "not in a transaction",
        _ => "unexpected database error",
    }
}

/// Translates a pool error (no connection within the checkout timeout).
pub(crate) fn pool_error(operation: &str, _error: diesel::r2d2::PoolError) -> RepositoryError {
    // r2d2's message embeds the last connection error; it is logged by the pool's error handler
    // (see `connection.rs`) and not repeated here.
    RepositoryError::Unavailable(format!("{operation}: no database connection available"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Info(&'static str);

    impl diesel::result::DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            Some("Key (email)=(ann@example.com) already exists.")
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            Some("users_email_key")
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn db_error(kind: DatabaseErrorKind, message: &'static str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(Info(message)))
    }

    #[test]
    fn unique_violation_is_a_conflict_without_the_value() {
        let error = repository_error(
            "create user",
            db_error(DatabaseErrorKind::UniqueViolation, "duplicate key value"),
        );
        assert_eq!(
            error,
            RepositoryError::Conflict("create user: already exists (users_email_key)".into())
        );
        assert!(!error.to_string().contains("ann@example.com"));
    }

    #[test]
    fn lost_connections_and_locks_are_unavailable() {
        assert!(matches!(
            repository_error("x", db_error(DatabaseErrorKind::ClosedConnection, "gone")),
            RepositoryError::Unavailable(_)
        ));
        assert!(matches!(
            repository_error(
                "x",
                db_error(DatabaseErrorKind::Unknown, "database is locked")
            ),
            RepositoryError::Unavailable(_)
        ));
    }

    #[test]
    fn not_found_and_foreign_keys_are_not_found() {
        assert_eq!(
            repository_error("x", DieselError::NotFound),
            RepositoryError::NotFound
        );
        assert_eq!(
            repository_error("x", db_error(DatabaseErrorKind::ForeignKeyViolation, "fk")),
            RepositoryError::NotFound
        );
    }
}
