#![doc = include_str!("../README.md")]

mod connection;
mod database;
mod error;
mod files;
mod prepared;
mod repositories;
pub mod schema;
pub mod sql_types;
mod url;

pub use connection::{DbConnection, InPlace, PoolSettings, SqliteConn};
pub use database::{Database, PoolStatus, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
pub use error::DatabaseError;
pub use repositories::{
    AuditStore, CapabilityStore, CredentialStore, CutoverStore, OnboardingStore, PreferenceStore,
    SessionStore, ThrottleStore, UserStore,
};
pub use url::{redact, Backend, DatabaseUrl, SqliteLocation};
