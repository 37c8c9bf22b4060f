//! The credential row as read, and the query of every credential `GET` and `PUT` that reads a
//! user's rows, with its SQL text rendered once per process instead of on every execution.
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
use user_service_domain::{BrokerId, KeyId, StoredCredential, UserId};

use crate::error::Failure;
use crate::schema::user_broker_credentials as ubc;
use crate::sql_types::DbTime;

/// A credential row as read.
#[derive(Queryable, Selectable)]
#[diesel(table_name = ubc)]
pub(crate) struct CredentialRow {
    id: i64,
    user_id: i64,
    broker: String,
    label: Option<String>,
    api_key_encrypted: Option<String>,
    api_secret_encrypted: Option<String>,
    key_id: Option<String>,
    binding: Option<String>,
    version: i64,
    last_test_status: Option<String>,
    last_tested_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
    trading_enabled: bool,
}

impl CredentialRow {
    pub(crate) fn into_domain(self) -> Result<StoredCredential, Failure> {
        let broker = BrokerId::from_stored(&self.broker).map_err(|_| {
            Failure::corrupt(
                "read broker credentials",
                format!(
                    "broker credential row {} has an invalid broker identifier",
                    self.id
                ),
            )
        })?;
        Ok(StoredCredential {
            id: self.id,
            user_id: UserId(self.user_id),
            broker,
            label: self.label,
            api_key_encrypted: self.api_key_encrypted,
            api_secret_encrypted: self.api_secret_encrypted,
            key_id: self.key_id.map(KeyId::new),
            binding: self.binding,
            version: self.version,
            last_test_status: self.last_test_status,
            last_tested_at: self.last_tested_at.map(|t| t.0),
            trading_enabled: self.trading_enabled,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        })
    }
}

/// The rows of a user, unordered (the repository sorts them by broker).
macro_rules! rows_query {
    ($user:expr) => {
        ubc::table
            .filter(ubc::user_id.eq($user.0))
            .select(CredentialRow::as_select())
    };
}

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
