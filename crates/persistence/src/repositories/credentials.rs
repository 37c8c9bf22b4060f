//! `CredentialRepository` on `user_broker_credentials`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use diesel_async::pg::AsyncPgConnection;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use user_service_domain::ports::{
    CredentialMutation, CredentialRepository, CredentialWrite, KeyIdCount, WritePlan, WritePlanner,
};
use user_service_domain::{AuditEvent, BrokerId, KeyId, RepositoryError, StoredCredential, UserId};

use super::user_rows::{CredentialRow, UserRows};
use super::{count, CredentialStore};
use crate::connection::on_backend;
use crate::connection::{DbConnection, SqliteConn};
use crate::database::{begin_statement, Opening};
use crate::error::Failure;
use crate::prepared::KeepPrepared;
use crate::schema::user_broker_credentials as ubc;
use crate::sql_types::DbTime;

/// A row as inserted.
#[derive(Insertable)]
#[diesel(table_name = ubc)]
struct NewCredentialRow<'a> {
    user_id: i64,
    broker: &'a str,
    api_key_encrypted: Option<&'a str>,
    api_secret_encrypted: Option<&'a str>,
    key_id: &'a str,
    binding: &'a str,
    version: i64,
    created_at: DbTime,
    updated_at: DbTime,
    trading_enabled: bool,
}

/// Inserts a new row unless one exists for its broker (then nothing: the caller sees a lost
/// race), returning it as stored.
macro_rules! insert_query {
    ($row:expr) => {
        diesel::insert_into(ubc::table)
            .values($row)
            .on_conflict_do_nothing()
            .returning(CredentialRow::as_returning())
            .keep_prepared()
    };
}

/// Rewrites a row if its version is still `$expected` (compare-and-set), with the test result
/// the write carries (reset, or kept when only the consent changes), returning it as stored.
macro_rules! update_query {
    ($user:expr, $write:expr, $expected:expr) => {
        diesel::update(
            ubc::table
                .filter(ubc::user_id.eq($user.0))
                .filter(ubc::broker.eq($write.broker.as_str()))
                .filter(ubc::version.eq($expected)),
        )
        .set((
            ubc::api_key_encrypted.eq($write.api_key_encrypted.as_deref()),
            ubc::api_secret_encrypted.eq($write.api_secret_encrypted.as_deref()),
            ubc::key_id.eq($write.key_id.as_str()),
            ubc::binding.eq(&$write.binding),
            ubc::version.eq($write.version),
            ubc::updated_at.eq(DbTime::new($write.updated_at)),
            ubc::last_test_status.eq($write.last_test_status.as_deref()),
            ubc::last_tested_at.eq($write.last_tested_at.map(DbTime::new)),
            ubc::trading_enabled.eq($write.trading_enabled),
        ))
        .returning(CredentialRow::as_returning())
        .keep_prepared()
    };
}

/// Deletes a row if its version is still `$expected`.
macro_rules! delete_query {
    ($user:expr, $broker:expr, $expected:expr) => {
        diesel::delete(
            ubc::table
                .filter(ubc::user_id.eq($user.0))
                .filter(ubc::broker.eq($broker.as_str()))
                .filter(ubc::version.eq($expected)),
        )
    };
}

fn new_row<'a>(user: UserId, write: &'a CredentialWrite) -> NewCredentialRow<'a> {
    NewCredentialRow {
        user_id: user.0,
        broker: write.broker.as_str(),
        api_key_encrypted: write.api_key_encrypted.as_deref(),
        api_secret_encrypted: write.api_secret_encrypted.as_deref(),
        key_id: write.key_id.as_str(),
        binding: &write.binding,
        version: write.version,
        created_at: DbTime::new(write.updated_at),
        updated_at: DbTime::new(write.updated_at),
        trading_enabled: write.trading_enabled,
    }
}

/// Rows as the domain knows them, ordered by broker. Sorted here rather than with ORDER BY:
/// the database's collation (PostgreSQL's may ignore punctuation) would order brokers
/// differently on each backend.
fn sorted(rows: Vec<CredentialRow>) -> Result<Vec<StoredCredential>, Failure> {
    let mut rows = rows
        .into_iter()
        .map(CredentialRow::into_domain)
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_by(|a, b| a.broker.cmp(&b.broker));
    Ok(rows)
}

async fn rows_of(conn: &mut DbConnection, user: UserId) -> Result<Vec<StoredCredential>, Failure> {
    let rows: Vec<CredentialRow> = match conn {
        DbConnection::Postgres(c) => UserRows::<Pg>::new(user).load(c).await?,
        DbConnection::Sqlite(c) => UserRows::<Sqlite>::new(user).load(c).await?,
    };
    sorted(rows)
}

/// Opens the write transaction and reads the user's rows in it. PostgreSQL receives `BEGIN`
/// and the `SELECT` together: one round trip.
async fn begin_and_read(
    conn: &mut DbConnection,
    user: UserId,
) -> Result<Vec<StoredCredential>, Failure> {
    let begin = begin_statement(conn.backend());
    let rows: Vec<CredentialRow> = match conn {
        DbConnection::Postgres(c) => {
            let c: &AsyncPgConnection = c;
            let (_, rows) = futures_util::future::try_join(
                async {
                    let mut c = c;
                    c.batch_execute(begin).await
                },
                async {
                    let mut c = c;
                    UserRows::<Pg>::new(user).load(&mut c).await
                },
            )
            .await?;
            rows
        }
        DbConnection::Sqlite(c) => {
            c.batch_execute(begin).await?;
            UserRows::<Sqlite>::new(user).load(c).await?
        }
    };
    sorted(rows)
}

/// Applies one write (compare-and-set on the version) on SQLite, answering the row as stored.
async fn write_row_sqlite(
    c: &mut SqliteConn,
    user: UserId,
    write: &CredentialWrite,
) -> Result<StoredCredential, Failure> {
    let written: Option<CredentialRow> = match write.expected_version {
        None => insert_query!(&new_row(user, write))
            .get_result(c)
            .await
            .optional()?,
        Some(expected) => update_query!(user, write, expected)
            .get_result(c)
            .await
            .optional()?,
    };
    written.ok_or_else(Failure::stale)?.into_domain()
}

/// The same on PostgreSQL, through a shared reference so that several statements are in
/// flight at once.
async fn write_row_pg(
    c: &AsyncPgConnection,
    user: UserId,
    write: &CredentialWrite,
) -> Result<StoredCredential, Failure> {
    let mut c = c;
    let written: Option<CredentialRow> = match write.expected_version {
        None => insert_query!(&new_row(user, write))
            .get_result(&mut c)
            .await
            .optional()?,
        Some(expected) => update_query!(user, write, expected)
            .get_result(&mut c)
            .await
            .optional()?,
    };
    written.ok_or_else(Failure::stale)?.into_domain()
}

/// A lost compare-and-set unless exactly one row was deleted.
fn deleted_one(count: usize) -> Result<(), Failure> {
    if count == 1 {
        Ok(())
    } else {
        Err(Failure::stale())
    }
}

/// Applies every mutation and records every event. On PostgreSQL every statement is sent at
/// once (pipelined: one round trip); a lost compare-and-set among them rolls all back.
async fn apply(
    conn: &mut DbConnection,
    user: UserId,
    mutations: &[CredentialMutation],
    events: &[AuditEvent],
) -> Result<Vec<StoredCredential>, Failure> {
    let writes = mutations.iter().filter_map(|m| match m {
        CredentialMutation::Write(write) => Some(write),
        CredentialMutation::Delete { .. } => None,
    });
    let deletes = mutations.iter().filter_map(|m| match m {
        CredentialMutation::Delete {
            broker,
            expected_version,
        } => Some((broker, *expected_version)),
        CredentialMutation::Write(_) => None,
    });
    match conn {
        DbConnection::Postgres(c) => {
            let c: &AsyncPgConnection = c;
            let (written, _, ()) = futures_util::future::try_join3(
                futures_util::future::try_join_all(writes.map(|w| write_row_pg(c, user, w))),
                futures_util::future::try_join_all(deletes.map(|(broker, expected)| async move {
                    let mut c = c;
                    deleted_one(
                        delete_query!(user, broker, expected)
                            .execute(&mut c)
                            .await?,
                    )
                })),
                super::audit::insert_events_pipelined(c, events),
            )
            .await?;
            Ok(written)
        }
        DbConnection::Sqlite(c) => {
            let mut written = Vec::new();
            for write in writes {
                written.push(write_row_sqlite(c, user, write).await?);
            }
            for (broker, expected) in deletes {
                deleted_one(delete_query!(user, broker, expected).execute(c).await?)?;
            }
            super::audit::insert_events(conn, events).await?;
            Ok(written)
        }
    }
}

/// The rows after `mutations` were applied to `rows`, from what each statement returned: no
/// second read.
fn merge(
    mut rows: Vec<StoredCredential>,
    written: Vec<StoredCredential>,
    mutations: &[CredentialMutation],
) -> Vec<StoredCredential> {
    rows.retain(|row| {
        !mutations.iter().any(
            |m| matches!(m, CredentialMutation::Delete { broker, .. } if *broker == row.broker),
        )
    });
    for row in written {
        match rows.iter_mut().find(|r| r.broker == row.broker) {
            Some(slot) => *slot = row,
            None => rows.push(row),
        }
    }
    rows.sort_by(|a, b| a.broker.cmp(&b.broker));
    rows
}

#[async_trait]
impl CredentialRepository for CredentialStore {
    async fn list(&self, user: UserId) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.db
            .run("list broker credentials", async |conn| {
                rows_of(conn, user).await
            })
            .await
    }

    async fn update<'p>(
        &self,
        user: UserId,
        planner: &'p mut (dyn WritePlanner + 'p),
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.db
            .transaction(
                "apply broker credential changes",
                Opening::ByWork,
                async |conn| {
                    let rows = begin_and_read(conn, user).await?;
                    let (mutations, events) = match planner.plan(&rows) {
                        WritePlan::Apply { mutations, events } => (mutations, events),
                        // Nothing to write: the transaction ends with nothing in it.
                        WritePlan::Nothing | WritePlan::Abort => return Ok(rows),
                    };
                    let written = apply(conn, user, &mutations, &events).await?;
                    Ok(merge(rows, written, &mutations))
                },
            )
            .await
    }

    async fn delete(
        &self,
        user: UserId,
        broker: &BrokerId,
        event: &AuditEvent,
    ) -> Result<bool, RepositoryError> {
        self.db
            .write("delete broker credential", async |conn| {
                let deleted = on_backend!(conn, |c| {
                    diesel::delete(
                        ubc::table
                            .filter(ubc::user_id.eq(user.0))
                            .filter(ubc::broker.eq(broker.as_str())),
                    )
                    .execute(c)
                    .await
                })?;
                if deleted > 0 {
                    super::audit::insert_events(conn, std::slice::from_ref(event)).await?;
                }
                Ok(deleted > 0)
            })
            .await
    }

    async fn record_test(
        &self,
        user: UserId,
        broker: &BrokerId,
        status: &str,
        tested_at: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        self.db
            .run("record broker credential test", async |conn| {
                let updated = on_backend!(conn, |c| {
                    diesel::update(
                        ubc::table
                            .filter(ubc::user_id.eq(user.0))
                            .filter(ubc::broker.eq(broker.as_str())),
                    )
                    .set((
                        ubc::last_test_status.eq(status),
                        ubc::last_tested_at.eq(DbTime::new(tested_at)),
                    ))
                    .keep_prepared()
                    .execute(c)
                    .await
                })?;
                Ok(updated > 0)
            })
            .await
    }

    async fn batch_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.db
            .run("read broker credential batch", async |conn| {
                let rows: Vec<CredentialRow> = on_backend!(conn, |c| {
                    ubc::table
                        .filter(ubc::id.gt(after_id))
                        .order(ubc::id.asc())
                        .limit(i64::from(limit))
                        .select(CredentialRow::as_select())
                        .load(c)
                        .await
                })?;
                rows.into_iter().map(CredentialRow::into_domain).collect()
            })
            .await
    }

    async fn rewrite(&self, rows: &[(i64, CredentialWrite)]) -> Result<Vec<bool>, RepositoryError> {
        if rows
            .iter()
            .any(|(_, write)| write.expected_version.is_none())
        {
            return Err(RepositoryError::other(
                "rewrite broker credentials",
                "a rewrite needs the version it expects",
            ));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction for the whole batch: one commit (one WAL flush) instead of one per
        // row, which is what bounds `keys rotate` on PostgreSQL.
        self.db
            .write("rewrite broker credentials", async |conn| {
                let mut applied = Vec::with_capacity(rows.len());
                for (id, write) in rows {
                    let updated = on_backend!(conn, |c| {
                        diesel::update(
                            ubc::table
                                .filter(ubc::id.eq(id))
                                .filter(ubc::broker.eq(write.broker.as_str()))
                                .filter(
                                    ubc::version.eq(write.expected_version.unwrap_or_default()),
                                ),
                        )
                        .set((
                            ubc::api_key_encrypted.eq(write.api_key_encrypted.as_deref()),
                            ubc::api_secret_encrypted.eq(write.api_secret_encrypted.as_deref()),
                            ubc::key_id.eq(write.key_id.as_str()),
                            ubc::binding.eq(&write.binding),
                            ubc::version.eq(write.version),
                        ))
                        .keep_prepared()
                        .execute(c)
                        .await
                    })?;
                    applied.push(updated == 1);
                }
                Ok(applied)
            })
            .await
    }

    async fn count_by_key_id(&self) -> Result<Vec<KeyIdCount>, RepositoryError> {
        self.db
            .run("count broker credentials per key", async |conn| {
                let counted: Vec<(Option<String>, i64)> = on_backend!(conn, |c| {
                    ubc::table
                        .group_by(ubc::key_id)
                        .select((ubc::key_id, count_star()))
                        .load(c)
                        .await
                })?;
                let mut counts = counted
                    .into_iter()
                    .map(|(key_id, n)| (key_id.map(KeyId::new), count(n)))
                    .collect::<Vec<_>>();
                counts.sort();
                Ok(counts)
            })
            .await
    }
}
