//! Statements kept prepared on their connection although diesel would not keep them.
//!
//! diesel keeps a prepared statement for every query it can prove has a bounded number of
//! texts, and prepares the others anew on each execution: every `UPDATE`, every `INSERT` of a
//! row with an optional column, every upsert and every `sql_query`. On PostgreSQL a new
//! statement costs a `Parse`/`Describe` round trip and a parse and plan in the server before the
//! statement runs, and a `Close` after it; on SQLite a `sqlite3_prepare`. A `PUT` of one
//! credential sends an `UPDATE` and an audit `INSERT`, and preparing them anew made PostgreSQL
//! spend about twice the CPU per `PUT` that the same statements cost it when prepared once
//! (docs/performance.md).
//!
//! [`KeepPrepared::keep_prepared`] marks a query whose text is fixed by the code that builds it
//! (a bounded set of texts: an optional column is either a parameter or `DEFAULT`). diesel's
//! cache then keys it by its SQL text and bind types, so each distinct text is prepared once per
//! connection. Never use it on a query whose text depends on the data in an unbounded way (a
//! multi-row `INSERT` of a variable count of rows, an `IN` list): the cache would grow with it.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// A query that diesel's statement cache keeps by its SQL text (see the module).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepared<Q>(Q);

/// Marks a query of fixed text as one to keep prepared on the connection.
pub(crate) trait KeepPrepared: Sized {
    /// This query, kept prepared on the connection that runs it.
    fn keep_prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q> KeepPrepared for Q {}

impl<Q, DB> QueryFragment<DB> for Prepared<Q>
where
    Q: QueryFragment<DB>,
    DB: Backend,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the cache keys the statement by its SQL text and bind types.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

#[cfg(test)]
mod tests {
    //! Each backend is asked what it kept: PostgreSQL's `pg_prepared_statements` of the session,
    //! and SQLite's statement cache through diesel's instrumentation.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use diesel::connection::InstrumentationEvent;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    use diesel_async::pg::AsyncPgConnection;
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
    use user_service_test_support::ci::missing;
    use user_service_test_support::db::postgres_admin_url;

    use super::KeepPrepared;
    use crate::connection::{on_backend, DbConnection, SqliteConn};

    diesel::table! {
        prepared_probe (id) {
            id -> Integer,
            note -> Nullable<Text>,
        }
    }

    /// A row with an optional column: diesel would prepare its `INSERT` anew every time.
    #[derive(Insertable)]
    #[diesel(table_name = prepared_probe)]
    struct Probe<'a> {
        id: i32,
        note: Option<&'a str>,
    }

    const CREATE: &str =
        "CREATE TEMPORARY TABLE prepared_probe (id INTEGER PRIMARY KEY, note TEXT)";

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// The statements of `text` that PostgreSQL keeps prepared for this session.
    async fn kept(conn: &mut AsyncPgConnection, text: &str) -> i64 {
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE $1",
        )
        .bind::<diesel::sql_types::Text, _>(format!("{text}%"))
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .n
    }

    /// A connection to the test server; when it is unreachable, fails under `CI=true` and
    /// otherwise says loudly that the test is skipped.
    async fn postgres() -> Option<AsyncPgConnection> {
        let url = postgres_admin_url();
        match AsyncPgConnection::establish(&url).await {
            Ok(conn) => Some(conn),
            Err(error) => missing("PostgreSQL (TEST_DATABASE_URL)", &error),
        }
    }

    /// Inserts row `id` and sets its note, both statements marked to be kept prepared.
    async fn insert_and_note_kept(conn: &mut DbConnection, id: i32) {
        let row = Probe { id, note: None };
        on_backend!(conn, |c| {
            diesel::insert_into(prepared_probe::table)
                .values(&row)
                .keep_prepared()
                .execute(c)
                .await
                .unwrap();
            diesel::update(prepared_probe::table.filter(prepared_probe::id.eq(id)))
                .set(prepared_probe::note.eq("kept"))
                .keep_prepared()
                .execute(c)
                .await
                .unwrap();
        });
    }

    /// Sets the note of row `id` to `note` by a statement not marked to be kept.
    async fn note_unmarked(conn: &mut DbConnection, id: i32, note: Option<&str>) {
        on_backend!(conn, |c| {
            diesel::update(prepared_probe::table.filter(prepared_probe::id.eq(id)))
                .set(prepared_probe::note.eq(note))
                .execute(c)
                .await
                .unwrap();
        });
    }

    #[tokio::test]
    async fn postgres_keeps_marked_statements_prepared_and_not_the_others() {
        let Some(mut pg) = postgres().await else {
            return;
        };
        pg.batch_execute(CREATE).await.unwrap();
        let mut conn = DbConnection::Postgres(pg);
        for id in 1..=2 {
            insert_and_note_kept(&mut conn, id).await;
            note_unmarked(&mut conn, id, None).await;
        }
        let DbConnection::Postgres(conn) = &mut conn else {
            unreachable!("a PostgreSQL connection")
        };
        // Run twice, each marked statement is prepared once; the unmarked one is not kept.
        assert_eq!(kept(conn, "INSERT INTO \"prepared_probe\"").await, 1);
        assert_eq!(kept(conn, "UPDATE \"prepared_probe\"").await, 1);
    }

    #[tokio::test]
    async fn sqlite_caches_marked_statements_and_not_the_others() {
        let mut sqlite = SqliteConn::establish(":memory:").await.unwrap();
        sqlite.batch_execute(CREATE).await.unwrap();
        let cached = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&cached);
        sqlite.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::CacheQuery { .. }) {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut conn = DbConnection::Sqlite(sqlite);
        for id in 1..=2 {
            note_unmarked(&mut conn, id, Some("not kept")).await;
        }
        assert_eq!(
            AtomicUsize::load(&cached, Ordering::Relaxed),
            0,
            "an unmarked UPDATE is never cached"
        );
        for id in 1..=2 {
            insert_and_note_kept(&mut conn, id).await;
        }
        // Entered into the cache once each, then found there.
        assert_eq!(AtomicUsize::load(&cached, Ordering::Relaxed), 2);
    }
}
