//! `UserRepository` on `users` (soft delete through `deleted_at`).

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use secrecy::{ExposeSecret, SecretString};
use user_service_domain::ports::UserRepository;
use user_service_domain::{
    AuditEvent, Email, NewUser, Page, RepositoryError, Unique, User, UserId, UserPatch,
};

use super::{limit_offset, page_of, UserStore};
use crate::connection::on_backend;
use crate::error::Failure;
use crate::schema::user_broker_credentials as ubc;
use crate::schema::users;
use crate::sql_types::DbTime;

/// A profile as read (never the password hash).
#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct UserRow {
    id: i64,
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    marketing_opt_in: bool,
    is_active: bool,
    is_superuser: bool,
    created_at: DbTime,
    updated_at: DbTime,
}

impl UserRow {
    fn into_domain(self) -> Result<User, Failure> {
        let email = Email::parse(&self.email).map_err(|_| {
            Failure::corrupt(
                "read user",
                format!("user {} has an invalid stored e-mail", self.id),
            )
        })?;
        Ok(User {
            id: UserId(self.id),
            email,
            first_name: self.first_name,
            last_name: self.last_name,
            phone: self.phone,
            marketing_opt_in: self.marketing_opt_in,
            is_active: self.is_active,
            is_superuser: self.is_superuser,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow<'a> {
    id: Option<i64>,
    email: &'a str,
    password_hash: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    phone: Option<&'a str>,
    marketing_opt_in: bool,
    is_active: bool,
    created_at: DbTime,
    updated_at: DbTime,
}

/// A patch: `None` leaves a column alone, `Some(None)` sets it NULL.
#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChanges<'a> {
    email: Option<&'a str>,
    first_name: Option<Option<&'a str>>,
    last_name: Option<Option<&'a str>>,
    phone: Option<Option<&'a str>>,
    marketing_opt_in: Option<bool>,
    is_active: Option<bool>,
    updated_at: DbTime,
}

/// How many times an insert with a generated id is tried again when the id the sequence gave
/// was already taken by a user created with an explicit id.
const ID_ATTEMPTS: usize = 16;

/// A user that is not soft-deleted.
macro_rules! live {
    () => {
        users::table.filter(users::deleted_at.is_null())
    };
}

#[async_trait]
impl UserRepository for UserStore {
    async fn create(
        &self,
        user: &NewUser,
        password_hash: Option<SecretString>,
    ) -> Result<User, RepositoryError> {
        let now = DbTime::now();
        let row = NewUserRow {
            id: user.id.map(|id| id.0),
            email: user.email.as_str(),
            password_hash: password_hash.as_ref().map(|h| h.expose_secret()),
            first_name: user.first_name.as_deref(),
            last_name: user.last_name.as_deref(),
            phone: user.phone.as_deref(),
            marketing_opt_in: user.marketing_opt_in,
            is_active: user.is_active,
            created_at: now,
            updated_at: now,
        };
        // A generated id is taken from the sequence and nothing else moves it: an id a user was
        // created with explicitly (the platform's id of a token's subject) may collide with one
        // the sequence hands out later, in which case the next one is taken.
        let attempts = if user.id.is_some() { 1 } else { ID_ATTEMPTS };
        let mut outcome = Err(RepositoryError::Duplicate(Unique::UserId));
        for _ in 0..attempts {
            outcome = self
                .db
                .run("create user", async |conn| {
                    let created: UserRow = on_backend!(conn, |c| {
                        diesel::insert_into(users::table)
                            .values(&row)
                            .returning(UserRow::as_returning())
                            .get_result(c)
                            .await
                    })?;
                    created.into_domain()
                })
                .await;
            if outcome != Err(RepositoryError::Duplicate(Unique::UserId)) {
                break;
            }
        }
        outcome
    }

    async fn get(&self, id: UserId) -> Result<User, RepositoryError> {
        self.db
            .run("read user", async |conn| {
                let row: UserRow = on_backend!(conn, |c| {
                    live!()
                        .filter(users::id.eq(id.0))
                        .select(UserRow::as_select())
                        .first(c)
                        .await
                })?;
                row.into_domain()
            })
            .await
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepositoryError> {
        self.db
            .run("find user by e-mail", async |conn| {
                let row: Option<UserRow> = on_backend!(conn, |c| {
                    live!()
                        .filter(users::email.eq(email.as_str()))
                        .select(UserRow::as_select())
                        .first(c)
                        .await
                        .optional()
                })?;
                row.map(UserRow::into_domain).transpose()
            })
            .await
    }

    async fn password_hash(&self, id: UserId) -> Result<Option<SecretString>, RepositoryError> {
        self.db
            .run("read password hash", async |conn| {
                let hash: Option<String> = on_backend!(conn, |c| {
                    live!()
                        .filter(users::id.eq(id.0))
                        .select(users::password_hash)
                        .first(c)
                        .await
                })?;
                Ok(hash.map(SecretString::from))
            })
            .await
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        hash: SecretString,
    ) -> Result<(), RepositoryError> {
        self.db
            .run("set password hash", async |conn| {
                let updated = on_backend!(conn, |c| {
                    diesel::update(live!().filter(users::id.eq(id.0)))
                        .set((
                            users::password_hash.eq(hash.expose_secret()),
                            users::updated_at.eq(DbTime::now()),
                        ))
                        .execute(c)
                        .await
                })?;
                if updated == 1 {
                    Ok(())
                } else {
                    Err(RepositoryError::NotFound.into())
                }
            })
            .await
    }

    async fn list(&self, page: Page) -> Result<(Vec<User>, u64), RepositoryError> {
        let (limit, offset) = limit_offset(page);
        self.db
            .run("list users", async |conn| {
                let (total, rows): (i64, Vec<UserRow>) = on_backend!(conn, |c| {
                    let total = live!().count().get_result(c).await?;
                    let rows = live!()
                        .order(users::id.asc())
                        .limit(limit)
                        .offset(offset)
                        .select(UserRow::as_select())
                        .load(c)
                        .await?;
                    diesel::QueryResult::Ok((total, rows))
                })?;
                page_of(total, rows, UserRow::into_domain)
            })
            .await
    }

    async fn update(&self, id: UserId, patch: &UserPatch) -> Result<User, RepositoryError> {
        let changes = UserChanges {
            email: patch.email.as_ref().map(Email::as_str),
            first_name: patch.first_name.as_ref().map(Option::as_deref),
            last_name: patch.last_name.as_ref().map(Option::as_deref),
            phone: patch.phone.as_ref().map(Option::as_deref),
            marketing_opt_in: patch.marketing_opt_in,
            is_active: patch.is_active,
            updated_at: DbTime::now(),
        };
        self.db
            .run("update user", async |conn| {
                let row: UserRow = on_backend!(conn, |c| {
                    diesel::update(live!().filter(users::id.eq(id.0)))
                        .set(&changes)
                        .returning(UserRow::as_returning())
                        .get_result(c)
                        .await
                })?;
                row.into_domain()
            })
            .await
    }

    async fn soft_delete(&self, id: UserId, event: &AuditEvent) -> Result<u64, RepositoryError> {
        self.db
            .write("delete user", async |conn| {
                let now = DbTime::now();
                let updated = on_backend!(conn, |c| {
                    diesel::update(live!().filter(users::id.eq(id.0)))
                        .set((users::deleted_at.eq(now), users::updated_at.eq(now)))
                        .execute(c)
                        .await
                })?;
                if updated != 1 {
                    return Err(RepositoryError::NotFound.into());
                }
                // The account's broker keys go with it: nothing decryptable stays behind.
                let brokers: Vec<String> = on_backend!(conn, |c| {
                    diesel::delete(ubc::table.filter(ubc::user_id.eq(id.0)))
                        .returning(ubc::broker)
                        .get_results(c)
                        .await
                })?;
                let events: Vec<AuditEvent> = brokers
                    .iter()
                    .map(|broker| AuditEvent {
                        broker: Some(broker.clone()),
                        ..event.clone()
                    })
                    .collect();
                super::audit::insert_events(conn, &events).await?;
                Ok(brokers.len() as u64)
            })
            .await
    }
}
