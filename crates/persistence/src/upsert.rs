//! `INSERT … ON CONFLICT …`, which PostgreSQL and SQLite (3.24+) spell the same way but which
//! diesel's query builder offers per backend only, not through `MultiConnection`.

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// A conflict clause both backends understand, as a type so that the statement keeps a static
/// query id (and stays in the prepared statement cache).
pub(crate) trait ConflictClause: 'static {
    /// The SQL appended to the `INSERT`.
    const SQL: &'static str;
}

/// `ON CONFLICT DO NOTHING`: the caller checks the affected row count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DoNothing;

impl ConflictClause for DoNothing {
    const SQL: &'static str = " ON CONFLICT DO NOTHING";
}

/// An `INSERT` statement followed by a conflict clause.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OnConflict<T, C> {
    statement: T,
    clause: PhantomData<C>,
}

impl<T, C: ConflictClause> OnConflict<T, C> {
    /// Appends clause `C` to `statement`, which must be a single-row `INSERT … VALUES`.
    pub(crate) fn new(statement: T) -> Self {
        Self {
            statement,
            clause: PhantomData,
        }
    }
}

impl<T, C, DB> QueryFragment<DB> for OnConflict<T, C>
where
    DB: Backend,
    T: QueryFragment<DB>,
    C: ConflictClause,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.statement.walk_ast(out.reborrow())?;
        out.push_sql(C::SQL);
        Ok(())
    }
}

impl<T: QueryId, C: ConflictClause> QueryId for OnConflict<T, C> {
    type QueryId = (T::QueryId, C);
    const HAS_STATIC_QUERY_ID: bool = T::HAS_STATIC_QUERY_ID;
}

impl<T, C, Conn> RunQueryDsl<Conn> for OnConflict<T, C> {}

/// Declares a `ConflictClause` marker type.
macro_rules! conflict_clause {
    ($(#[$doc:meta])* $name:ident = $sql:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct $name;

        impl $crate::upsert::ConflictClause for $name {
            const SQL: &'static str = $sql;
        }
    };
}

pub(crate) use conflict_clause;
