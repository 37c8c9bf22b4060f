//! The two column types whose storage differs between the backends, declared once so that one
//! `schema.rs` serves both backends.
//!
//! - [`UtcTimestamp`]: `timestamptz` on PostgreSQL (sent and read in binary, an absolute instant,
//!   so the session's `TimeZone` plays no part), `TEXT` `YYYY-MM-DD HH:MM:SS.ffffff` in UTC on
//!   SQLite. Both keep microseconds.
//! - [`JsonDocument`]: `jsonb` on PostgreSQL (binary format: a version byte then the text),
//!   `TEXT` holding JSON on SQLite.
//!
//! Inside the crate, Rust values go through the newtypes `DbTime` and `DbJson`.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::query_builder::QueryId;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::SqlType;
use diesel::sqlite::Sqlite;

/// An instant in UTC: `timestamptz` on PostgreSQL, UTC text on SQLite.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Text"))]
pub struct UtcTimestamp;

/// A JSON document: `jsonb` on PostgreSQL, JSON text on SQLite.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(postgres_type(oid = 3802, array_oid = 3807))]
#[diesel(sqlite_type(name = "Text"))]
pub struct JsonDocument;

/// A stored instant, truncated to microseconds (what PostgreSQL keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = UtcTimestamp)]
pub(crate) struct DbTime(pub(crate) DateTime<Utc>);

impl DbTime {
    /// Wraps an instant, dropping what is below a microsecond so both backends store the same.
    pub(crate) fn new(at: DateTime<Utc>) -> Self {
        Self(at.trunc_subsecs(6))
    }

    /// Now, to the microsecond.
    pub(crate) fn now() -> Self {
        Self::new(Utc::now())
    }
}

/// How SQLite stores an instant: fixed width, so text order is time order.
const SQLITE_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

impl ToSql<UtcTimestamp, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<diesel::sql_types::Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<UtcTimestamp, Pg> for DbTime {
    fn from_sql(bytes: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<diesel::sql_types::Timestamptz, Pg>>::from_sql(bytes).map(Self)
    }
}

impl ToSql<UtcTimestamp, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.naive_utc().format(SQLITE_FORMAT).to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<UtcTimestamp, Sqlite> for DbTime {
    fn from_sql(bytes: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        // Accepts what we write and what SQLite's CURRENT_TIMESTAMP default writes.
        <NaiveDateTime as FromSql<diesel::sql_types::Timestamp, Sqlite>>::from_sql(bytes)
            .map(|naive| Self(naive.and_utc()))
    }
}

/// A stored JSON document.
#[derive(Debug, Clone, PartialEq, AsExpression, FromSqlRow)]
#[diesel(sql_type = JsonDocument)]
pub(crate) struct DbJson(pub(crate) serde_json::Value);

impl ToSql<JsonDocument, Pg> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <serde_json::Value as ToSql<diesel::sql_types::Jsonb, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<JsonDocument, Pg> for DbJson {
    fn from_sql(bytes: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <serde_json::Value as FromSql<diesel::sql_types::Jsonb, Pg>>::from_sql(bytes).map(Self)
    }
}

impl ToSql<JsonDocument, Sqlite> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(serde_json::to_string(&self.0)?);
        Ok(IsNull::No)
    }
}

impl FromSql<JsonDocument, Sqlite> for DbJson {
    fn from_sql(bytes: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(bytes)?;
        Ok(Self(serde_json::from_str(&text)?))
    }
}
