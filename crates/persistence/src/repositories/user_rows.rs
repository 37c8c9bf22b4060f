//! The credential rows of a user, the query of every credential `GET` and `PUT`, with its SQL
//! text rendered once per process instead of on every execution.
//!
//! diesel-async renders a query's text on every execution, even when the statement is already
//! prepared on the connection, because it finds the statement by walking the query: for this
//! query, thirty-one quoted identifiers, each an allocation: 16,000 of the 143,000 instructions
//! a `GET` cost the service (docs/performance.md). [`UserRows`] stands for
//! `rows_query!`: the first use on each backend renders that diesel query, and every execution
//! then pushes the rendered text, split around its one parameter. The query stays written once,
//! in diesel's DSL; a test holds both texts and their parameters equal on both backends.

use std::marker::PhantomData;
use std::sync::OnceLock;

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::BigInt;
use diesel::sqlite::Sqlite;
use user_service_domain::UserId;

use super::credentials::{rows_query, CredentialRow};
use crate::schema::user_broker_credentials as ubc;

/// `rows_query!(user)`, its text rendered once per backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserRows<DB> {
    user: i64,
    backend: PhantomData<DB>,
}

impl<DB> UserRows<DB> {
    pub(crate) fn new(user: UserId) -> Self {
        Self {
            user: user.0,
            backend: PhantomData,
        }
    }
}

/// The text of `rows_query!` on a backend, before and after its parameter.
pub(crate) struct Text {
    head: String,
    tail: String,
}

/// A backend whose text of `rows_query!` is kept.
pub(crate) trait RowsText: Backend {
    /// The text, rendered on first use.
    fn rows_text() -> &'static Text;
}

/// `rows_query!` as `debug_query` renders it on `$backend`.
macro_rules! rendered {
    ($backend:ty, $user:expr) => {
        diesel::debug_query::<$backend, _>(&rows_query!($user)).to_string()
    };
}

/// Splits `rendered` (`debug_query`'s text of `rows_query!`) at `placeholder`, its one
/// parameter.
fn split(rendered: &str, placeholder: &str) -> Text {
    let sql = rendered
        .rsplit_once(" -- binds: ")
        .map_or(rendered, |(sql, _)| sql);
    // A fixed query of this crate: a second parameter or none is a programming error, which
    // the tests below catch before any build ships.
    let (head, tail) = sql
        .split_once(placeholder)
        .filter(|(_, tail)| !tail.contains(placeholder))
        .unwrap_or_else(|| unreachable!("rows_query! has exactly one parameter"));
    Text {
        head: head.to_owned(),
        tail: tail.to_owned(),
    }
}

impl RowsText for Pg {
    fn rows_text() -> &'static Text {
        static TEXT: OnceLock<Text> = OnceLock::new();
        TEXT.get_or_init(|| split(&rendered!(Pg, UserId(0)), "$1"))
    }
}

impl RowsText for Sqlite {
    fn rows_text() -> &'static Text {
        static TEXT: OnceLock<Text> = OnceLock::new();
        TEXT.get_or_init(|| split(&rendered!(Sqlite, UserId(0)), "?"))
    }
}

impl<DB> QueryFragment<DB> for UserRows<DB>
where
    DB: RowsText,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let text = DB::rows_text();
        out.push_sql(&text.head);
        out.push_bind_param::<BigInt, i64>(&self.user)?;
        out.push_sql(&text.tail);
        Ok(())
    }
}

/// One text per backend: the statement is found by this type, with no text to compare.
impl<DB: 'static> QueryId for UserRows<DB> {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB: Backend> Query for UserRows<DB> {
    type SqlType = diesel::dsl::AsSelect<CredentialRow, DB>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours<DB>(user: UserId) -> String
    where
        DB: RowsText + Default,
        DB::QueryBuilder: Default,
        i64: ToSql<BigInt, DB>,
    {
        diesel::debug_query::<DB, _>(&UserRows::<DB>::new(user)).to_string()
    }

    #[test]
    fn the_kept_text_is_what_diesel_renders_on_both_backends() {
        let user = UserId(42);
        for (ours, diesels) in [
            (ours::<Pg>(user), rendered!(Pg, user)),
            (ours::<Sqlite>(user), rendered!(Sqlite, user)),
        ] {
            assert_eq!(ours, diesels);
            assert!(ours.ends_with(" -- binds: [42]"), "{ours}");
            assert!(ours.starts_with("SELECT "), "{ours}");
        }
    }
}
