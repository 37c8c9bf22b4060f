//! `SessionRepository` on `auth_sessions`.
//!
//! Storing a user's new sign-in deletes that user's expired sessions, so the table holds at most
//! the sessions of one refresh-token lifetime.
//!
//! Rotation is one conditional `UPDATE` (not replaced, not revoked, not expired) whose affected
//! rows decide, followed in the same transaction by the insert of the next session: of two
//! concurrent rotations of one session, only one succeeds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use user_service_domain::ports::SessionRepository;
use user_service_domain::{NewSession, RepositoryError, Session, UserId};

use super::{count, SessionStore};
use crate::connection::on_backend;
use crate::connection::DbConnection;
use crate::error::Failure;
use crate::prepared::KeepPrepared;
use crate::schema::auth_sessions as s;
use crate::sql_types::DbTime;

#[derive(Queryable, Selectable)]
#[diesel(table_name = s)]
struct SessionRow {
    id: String,
    family: String,
    user_id: i64,
    created_at: DbTime,
    expires_at: DbTime,
    replaced_at: Option<DbTime>,
    revoked_at: Option<DbTime>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Self {
            id: row.id,
            family: row.family,
            user: UserId(row.user_id),
            created_at: row.created_at.0,
            expires_at: row.expires_at.0,
            replaced_at: row.replaced_at.map(|t| t.0),
            revoked_at: row.revoked_at.map(|t| t.0),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = s)]
struct NewSessionRow<'a> {
    id: &'a str,
    family: &'a str,
    user_id: i64,
    created_at: DbTime,
    expires_at: DbTime,
}

impl<'a> NewSessionRow<'a> {
    fn of(session: &'a NewSession, at: DateTime<Utc>) -> Self {
        Self {
            id: &session.id,
            family: &session.family,
            user_id: session.user.0,
            created_at: DbTime::new(at),
            expires_at: DbTime::new(session.expires_at),
        }
    }
}

async fn insert(conn: &mut DbConnection, row: &NewSessionRow<'_>) -> Result<(), Failure> {
    on_backend!(conn, |c| {
        diesel::insert_into(s::table)
            .values(row)
            .keep_prepared()
            .execute(c)
            .await
    })?;
    Ok(())
}

#[async_trait]
impl SessionRepository for SessionStore {
    async fn create(&self, session: &NewSession) -> Result<(), RepositoryError> {
        let now = Utc::now();
        let row = NewSessionRow::of(session, now);
        let expired = DbTime::new(now);
        let user = session.user.0;
        self.db
            .write("store session", async |conn| {
                // The user's expired sessions go first: they can no longer be used, and the table
                // stays bounded by the sessions of the last refresh-token lifetime.
                on_backend!(conn, |c| {
                    diesel::delete(
                        s::table
                            .filter(s::user_id.eq(user))
                            .filter(s::expires_at.le(expired)),
                    )
                    .execute(c)
                    .await
                })?;
                insert(conn, &row).await
            })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Session>, RepositoryError> {
        self.db
            .run("read session", async |conn| {
                let row: Option<SessionRow> = on_backend!(conn, |c| {
                    s::table
                        .filter(s::id.eq(id))
                        .select(SessionRow::as_select())
                        .first(c)
                        .await
                        .optional()
                })?;
                Ok(row.map(Session::from))
            })
            .await
    }

    async fn rotate(
        &self,
        old: &str,
        next: &NewSession,
        at: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        let now = DbTime::new(at);
        let row = NewSessionRow::of(next, at);
        self.db
            .write("rotate session", async |conn| {
                let replaced = on_backend!(conn, |c| {
                    diesel::update(
                        s::table
                            .filter(s::id.eq(old))
                            .filter(s::replaced_at.is_null())
                            .filter(s::revoked_at.is_null())
                            .filter(s::expires_at.gt(now)),
                    )
                    .set(s::replaced_at.eq(Some(now)))
                    .keep_prepared()
                    .execute(c)
                    .await
                })?;
                if replaced != 1 {
                    return Ok(false);
                }
                insert(conn, &row).await?;
                Ok(true)
            })
            .await
    }

    async fn revoke_family(&self, family: &str, at: DateTime<Utc>) -> Result<u64, RepositoryError> {
        self.revoke("revoke session family", Whose::Family(family), at)
            .await
    }

    async fn revoke_user(&self, user: UserId, at: DateTime<Utc>) -> Result<u64, RepositoryError> {
        self.revoke("revoke user sessions", Whose::User(user), at)
            .await
    }
}

/// Whose live sessions [`SessionStore::revoke`] ends.
#[derive(Clone, Copy)]
enum Whose<'a> {
    /// Every session of one family.
    Family(&'a str),
    /// Every session of one user.
    User(UserId),
}

impl SessionStore {
    /// Revokes, as of `at`, the sessions of `whose` not revoked yet; answers how many.
    async fn revoke(
        &self,
        operation: &'static str,
        whose: Whose<'_>,
        at: DateTime<Utc>,
    ) -> Result<u64, RepositoryError> {
        let now = DbTime::new(at);
        self.db
            .write(operation, async |conn| {
                let n = on_backend!(conn, |c| {
                    let live = diesel::update(s::table)
                        .set(s::revoked_at.eq(Some(now)))
                        .filter(s::revoked_at.is_null())
                        .into_boxed();
                    match whose {
                        Whose::Family(family) => live.filter(s::family.eq(family)),
                        Whose::User(user) => live.filter(s::user_id.eq(user.0)),
                    }
                    .execute(c)
                    .await
                })?;
                Ok(count(i64::try_from(n).unwrap_or(i64::MAX)))
            })
            .await
    }
}
