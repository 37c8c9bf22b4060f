//! `UserRepository` on `users` (soft delete through `deleted_at`).

use diesel::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use user_service_domain::ports::UserRepository;
use user_service_domain::{Email, NewUser, Page, RepositoryError, User, UserId, UserPatch};

use super::{count, limit_offset, UserStore};
use crate::error::Failure;
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
            RepositoryError::Other(format!("user {} has an invalid stored e-mail", self.id))
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

/// The columns of [`UserRow`], for `RETURNING` (diesel's `as_returning` cannot be used through
/// `MultiConnection`: its returning clause is rendered per backend).
#[allow(clippy::type_complexity)]
fn returned_columns() -> (
    users::id,
    users::email,
    users::first_name,
    users::last_name,
    users::phone,
    users::marketing_opt_in,
    users::is_active,
    users::is_superuser,
    users::created_at,
    users::updated_at,
) {
    (
        users::id,
        users::email,
        users::first_name,
        users::last_name,
        users::phone,
        users::marketing_opt_in,
        users::is_active,
        users::is_superuser,
        users::created_at,
        users::updated_at,
    )
}

const EMAIL_TAKEN: &str = "Email already registered";

/// A unique violation on `users` can only be the e-mail.
fn email_conflict(failure: Failure) -> Failure {
    match failure {
        Failure::Db(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Failure::conflict(EMAIL_TAKEN),
        other => other,
    }
}

impl UserRepository for UserStore {
    fn create(
        &self,
        user: &NewUser,
        password_hash: Option<SecretString>,
    ) -> Result<User, RepositoryError> {
        let now = DbTime::now();
        self.db.run("create user", |conn| {
            diesel::insert_into(users::table)
                .values(NewUserRow {
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
                })
                .returning(returned_columns())
                .get_result::<UserRow>(conn)
                .map_err(|e| email_conflict(e.into()))
                .and_then(|row| {
                    if user.id.is_some() {
                        advance_identity(conn)?;
                    }
                    row.into_domain()
                })
        })
    }

    fn get(&self, id: UserId) -> Result<User, RepositoryError> {
        self.db.run("read user", |conn| {
            users::table
                .filter(users::id.eq(id.0))
                .filter(users::deleted_at.is_null())
                .select(UserRow::as_select())
                .first(conn)?
                .into_domain()
        })
    }

    fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepositoryError> {
        self.db.run("find user by e-mail", |conn| {
            users::table
                .filter(users::email.eq(email.as_str()))
                .filter(users::deleted_at.is_null())
                .select(UserRow::as_select())
                .first(conn)
                .optional()?
                .map(UserRow::into_domain)
                .transpose()
        })
    }

    fn password_hash(&self, id: UserId) -> Result<Option<SecretString>, RepositoryError> {
        self.db.run("read password hash", |conn| {
            let hash: Option<String> = users::table
                .filter(users::id.eq(id.0))
                .filter(users::deleted_at.is_null())
                .select(users::password_hash)
                .first(conn)?;
            Ok(hash.map(SecretString::from))
        })
    }

    fn set_password_hash(&self, id: UserId, hash: SecretString) -> Result<(), RepositoryError> {
        self.db.run("set password hash", |conn| {
            let updated = diesel::update(
                users::table
                    .filter(users::id.eq(id.0))
                    .filter(users::deleted_at.is_null()),
            )
            .set((
                users::password_hash.eq(hash.expose_secret()),
                users::updated_at.eq(DbTime::now()),
            ))
            .execute(conn)?;
            if updated == 1 {
                Ok(())
            } else {
                Err(RepositoryError::NotFound.into())
            }
        })
    }

    fn list(&self, page: Page) -> Result<(Vec<User>, u64), RepositoryError> {
        let (limit, offset) = limit_offset(page);
        self.db.run("list users", |conn| {
            let total: i64 = users::table
                .filter(users::deleted_at.is_null())
                .count()
                .get_result(conn)?;
            let items = users::table
                .filter(users::deleted_at.is_null())
                .order(users::id.asc())
                .limit(limit)
                .offset(offset)
                .select(UserRow::as_select())
                .load(conn)?
                .into_iter()
                .map(UserRow::into_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((items, count(total)))
        })
    }

    fn update(&self, id: UserId, patch: &UserPatch) -> Result<User, RepositoryError> {
        let changes = UserChanges {
            email: patch.email.as_ref().map(Email::as_str),
            first_name: patch.first_name.as_ref().map(Option::as_deref),
            last_name: patch.last_name.as_ref().map(Option::as_deref),
            phone: patch.phone.as_ref().map(Option::as_deref),
            marketing_opt_in: patch.marketing_opt_in,
            is_active: patch.is_active,
            updated_at: DbTime::now(),
        };
        self.db.run("update user", |conn| {
            diesel::update(
                users::table
                    .filter(users::id.eq(id.0))
                    .filter(users::deleted_at.is_null()),
            )
            .set(changes)
            .returning(returned_columns())
            .get_result::<UserRow>(conn)
            .map_err(|e| email_conflict(e.into()))?
            .into_domain()
        })
    }

    fn soft_delete(&self, id: UserId) -> Result<(), RepositoryError> {
        self.db.run("delete user", |conn| {
            let now = DbTime::now();
            let updated = diesel::update(
                users::table
                    .filter(users::id.eq(id.0))
                    .filter(users::deleted_at.is_null()),
            )
            .set((users::deleted_at.eq(now), users::updated_at.eq(now)))
            .execute(conn)?;
            if updated == 1 {
                Ok(())
            } else {
                Err(RepositoryError::NotFound.into())
            }
        })
    }
}

/// After an insert with an explicit id, moves PostgreSQL's identity sequence past it so that the
/// next generated id cannot collide (SQLite's rowid does this by itself).
fn advance_identity(conn: &mut crate::DbConnection) -> Result<(), Failure> {
    if let crate::DbConnection::Postgres(pg) = conn {
        diesel::sql_query(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), \
             GREATEST((SELECT MAX(id) FROM users), 1))",
        )
        .execute(pg)
        .map_err(Failure::from)?;
    }
    Ok(())
}
