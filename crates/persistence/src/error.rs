//! Errors of this crate, and their translation into the domain's [`RepositoryError`].
//!
//! [`DatabaseError`] is what setting a database up returns (URL, pool, migrations);
//! repository methods return the domain's [`RepositoryError`], translated from diesel's and the
//! pool's errors in [`repository_error`]. No message carries a value: neither a row's content
//! nor a password of the database URL (PostgreSQL's `detail`, which quotes the offending value,
//! is never used).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use thiserror::Error;
use user_service_domain::{Cause, RepositoryError, Unique};

/// Setting up or migrating a database failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DatabaseError {
    /// The database URL cannot be used.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The directory of the SQLite file cannot be created or protected.
    #[error("cannot prepare the SQLite database file: {0}")]
    Directory(#[source] std::io::Error),
    /// No connection could be opened (the URL is redacted).
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What went wrong.
        #[source]
        cause: Cause,
    },
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[source] Cause),
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
    /// A compare-and-set lost against a concurrent writer.
    pub(crate) fn stale() -> Self {
        Self::Repository(RepositoryError::StaleVersion)
    }

    /// A stored value that cannot be read back (never quoting it).
    pub(crate) fn corrupt(operation: &'static str, what: String) -> Self {
        Self::Repository(RepositoryError::other(operation, what))
    }

    /// Translates into the domain's error; `operation` names what was attempted.
    pub(crate) fn into_repository(self, operation: &'static str) -> RepositoryError {
        match self {
            Self::Db(error) => repository_error(operation, error),
            Self::Repository(error) => error,
        }
    }
}

/// Messages PostgreSQL and SQLite send when the server cannot serve the connection now: it is
/// shutting down, starting, in recovery (a standby), or a lock could not be had in time.
const UNAVAILABLE_MESSAGES: &[&str] = &[
    "terminating connection",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "recovery is in progress",
    "server closed the connection",
    "connection closed",
    "database is locked",
    "database table is locked",
];

/// Translates a diesel error into the domain's error. The cause names the kind of failure
/// and, for constraint violations, the constraint; never a value.
pub(crate) fn repository_error(operation: &'static str, error: DieselError) -> RepositoryError {
    match error {
        DieselError::NotFound => RepositoryError::NotFound,
        DieselError::DatabaseError(kind, info) => {
            let message = info.message().to_owned();
            let constraint = info.constraint_name().unwrap_or_default().to_owned();
            let cause = |text: String| Cause::message(text);
            match kind {
                DatabaseErrorKind::UniqueViolation => RepositoryError::Duplicate(
                    unique_of(&constraint, &message).unwrap_or(Unique::Broker),
                ),
                DatabaseErrorKind::ForeignKeyViolation => RepositoryError::NotFound,
                DatabaseErrorKind::SerializationFailure => RepositoryError::StaleVersion,
                _ if message.contains("deadlock detected") => RepositoryError::StaleVersion,
                // A demoted primary, a standby, a connection the server or the network closed:
                // the operation may succeed elsewhere or later; the connection is discarded.
                DatabaseErrorKind::ReadOnlyTransaction
                | DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand => RepositoryError::Unavailable {
                    operation,
                    cause: cause(message),
                },
                _ if is_unavailable_message(&message) => RepositoryError::Unavailable {
                    operation,
                    cause: cause(message),
                },
                _ => RepositoryError::Other {
                    operation,
                    cause: cause(if constraint.is_empty() {
                        message
                    } else {
                        format!("{message} ({constraint})")
                    }),
                },
            }
        }
        DieselError::BrokenTransactionManager => RepositoryError::unavailable(
            operation,
            "connection left in an unknown transaction state",
        ),
        DieselError::DeserializationError(_) => {
            RepositoryError::other(operation, "a stored value cannot be read")
        }
        DieselError::SerializationError(_) => {
            RepositoryError::other(operation, "a value cannot be written")
        }
        other => RepositoryError::other(operation, kind_name(&other)),
    }
}

fn is_unavailable_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    UNAVAILABLE_MESSAGES.iter().any(|m| message.contains(m))
}

/// Which uniqueness rule a unique violation broke, from the constraint (PostgreSQL) or the
/// message (SQLite names the columns).
fn unique_of(constraint: &str, message: &str) -> Option<Unique> {
    let text = format!("{constraint} {message}");
    if text.contains("email") {
        Some(Unique::Email)
    } else if text.contains("users_pkey") || text.contains("users.id") {
        Some(Unique::UserId)
    } else if text.contains("uq_user_broker_credentials") || text.contains("broker") {
        Some(Unique::Broker)
    } else {
        None
    }
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

/// A `tokio-postgres` error in one line: its message and its source's (the I/O error behind a
/// refused connection, say).
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    user_service_domain::chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Info(&'static str, Option<&'static str>);

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
            self.1
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn db_error(
        kind: DatabaseErrorKind,
        message: &'static str,
        constraint: Option<&'static str>,
    ) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(Info(message, constraint)))
    }

    #[test]
    fn a_unique_violation_names_its_rule_without_the_value() {
        let error = repository_error(
            "create user",
            db_error(
                DatabaseErrorKind::UniqueViolation,
                "duplicate key value",
                Some("users_email_key"),
            ),
        );
        assert_eq!(error, RepositoryError::Duplicate(Unique::Email));
        let sqlite = repository_error(
            "create user",
            db_error(
                DatabaseErrorKind::UniqueViolation,
                "UNIQUE constraint failed: users.id",
                None,
            ),
        );
        assert_eq!(sqlite, RepositoryError::Duplicate(Unique::UserId));
        assert!(!user_service_domain::chain(&error).contains("ann@example.com"));
    }

    #[test]
    fn lost_connections_standbys_and_locks_are_unavailable() {
        for (kind, message) in [
            (DatabaseErrorKind::ClosedConnection, "gone"),
            (DatabaseErrorKind::UnableToSendCommand, "connection reset"),
            (
                DatabaseErrorKind::ReadOnlyTransaction,
                "cannot execute INSERT in a read-only transaction",
            ),
            (
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            (DatabaseErrorKind::Unknown, "database is locked"),
        ] {
            assert!(
                repository_error("x", db_error(kind, message, None)).is_unavailable(),
                "{message}"
            );
        }
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_stale() {
        assert_eq!(
            repository_error(
                "x",
                db_error(DatabaseErrorKind::SerializationFailure, "x", None)
            ),
            RepositoryError::StaleVersion
        );
        assert_eq!(
            repository_error(
                "x",
                db_error(DatabaseErrorKind::Unknown, "deadlock detected", None)
            ),
            RepositoryError::StaleVersion
        );
    }

    #[test]
    fn not_found_and_foreign_keys_are_not_found() {
        assert_eq!(
            repository_error("x", DieselError::NotFound),
            RepositoryError::NotFound
        );
        assert_eq!(
            repository_error(
                "x",
                db_error(DatabaseErrorKind::ForeignKeyViolation, "fk", None)
            ),
            RepositoryError::NotFound
        );
    }
}
