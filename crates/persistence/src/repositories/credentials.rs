//! `CredentialRepository` on `user_broker_credentials`.

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use user_service_domain::ports::{
    CredentialMutation, CredentialRepository, CredentialWrite, KeyIdCount,
};
use user_service_domain::{AuditEvent, BrokerId, KeyId, RepositoryError, StoredCredential, UserId};

use super::{count, CredentialStore};
use crate::connection::DbConnection;
use crate::error::Failure;
use crate::schema::user_broker_credentials as ubc;
use crate::sql_types::DbTime;
use crate::upsert::{DoNothing, OnConflict};

/// A row as read.
#[derive(Queryable, Selectable)]
#[diesel(table_name = ubc)]
struct CredentialRow {
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
}

impl CredentialRow {
    fn into_domain(self) -> Result<StoredCredential, Failure> {
        let broker = BrokerId::parse(&self.broker).map_err(|_| {
            RepositoryError::Other(format!(
                "broker credential row {} has an invalid broker identifier",
                self.id
            ))
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
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        })
    }
}

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
}

fn rows_of(conn: &mut DbConnection, user: UserId) -> Result<Vec<StoredCredential>, Failure> {
    let rows = ubc::table
        .filter(ubc::user_id.eq(user.0))
        .select(CredentialRow::as_select())
        .load(conn)?;
    let mut rows = rows
        .into_iter()
        .map(CredentialRow::into_domain)
        .collect::<Result<Vec<_>, _>>()?;
    // Sorted here rather than with ORDER BY: the database's collation (PostgreSQL's may ignore
    // punctuation) would order brokers differently on each backend.
    rows.sort_by(|a, b| a.broker.cmp(&b.broker));
    Ok(rows)
}

fn write_row(
    conn: &mut DbConnection,
    user: UserId,
    write: &CredentialWrite,
) -> Result<(), Failure> {
    let written = match write.expected_version {
        None => OnConflict::<_, DoNothing>::new(diesel::insert_into(ubc::table).values(
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
            },
        ))
        .execute(conn)?,
        Some(expected) => diesel::update(
            ubc::table
                .filter(ubc::user_id.eq(user.0))
                .filter(ubc::broker.eq(write.broker.as_str()))
                .filter(ubc::version.eq(expected)),
        )
        .set((
            ubc::api_key_encrypted.eq(write.api_key_encrypted.as_deref()),
            ubc::api_secret_encrypted.eq(write.api_secret_encrypted.as_deref()),
            ubc::key_id.eq(write.key_id.as_str()),
            ubc::binding.eq(&write.binding),
            ubc::version.eq(write.version),
            ubc::updated_at.eq(DbTime::new(write.updated_at)),
            ubc::last_test_status.eq(None::<String>),
            ubc::last_tested_at.eq(None::<DbTime>),
        ))
        .execute(conn)?,
    };
    if written == 1 {
        Ok(())
    } else {
        Err(Failure::conflict("broker credential changed concurrently"))
    }
}

fn delete_row(
    conn: &mut DbConnection,
    user: UserId,
    broker: &BrokerId,
    expected_version: i64,
) -> Result<(), Failure> {
    let deleted = diesel::delete(
        ubc::table
            .filter(ubc::user_id.eq(user.0))
            .filter(ubc::broker.eq(broker.as_str()))
            .filter(ubc::version.eq(expected_version)),
    )
    .execute(conn)?;
    if deleted == 1 {
        Ok(())
    } else {
        Err(Failure::conflict("broker credential changed concurrently"))
    }
}

impl CredentialRepository for CredentialStore {
    fn list(&self, user: UserId) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.db
            .run("list broker credentials", |conn| rows_of(conn, user))
    }

    fn apply_audited(
        &self,
        user: UserId,
        mutations: &[CredentialMutation],
        events: &[AuditEvent],
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.db.write("apply broker credential changes", |conn| {
            for mutation in mutations {
                match mutation {
                    CredentialMutation::Write(write) => write_row(conn, user, write)?,
                    CredentialMutation::Delete {
                        broker,
                        expected_version,
                    } => delete_row(conn, user, broker, *expected_version)?,
                }
            }
            super::audit::insert_events(conn, events)?;
            rows_of(conn, user)
        })
    }

    fn delete(&self, user: UserId, broker: &BrokerId) -> Result<bool, RepositoryError> {
        self.db.run("delete broker credential", |conn| {
            let deleted = diesel::delete(
                ubc::table
                    .filter(ubc::user_id.eq(user.0))
                    .filter(ubc::broker.eq(broker.as_str())),
            )
            .execute(conn)?;
            Ok(deleted > 0)
        })
    }

    fn record_test(
        &self,
        user: UserId,
        broker: &BrokerId,
        status: &str,
        tested_at: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        self.db.run("record broker credential test", |conn| {
            let updated = diesel::update(
                ubc::table
                    .filter(ubc::user_id.eq(user.0))
                    .filter(ubc::broker.eq(broker.as_str())),
            )
            .set((
                ubc::last_test_status.eq(status),
                ubc::last_tested_at.eq(DbTime::new(tested_at)),
            ))
            .execute(conn)?;
            Ok(updated > 0)
        })
    }

    fn batch_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredCredential>, RepositoryError> {
        self.db.run("read broker credential batch", |conn| {
            ubc::table
                .filter(ubc::id.gt(after_id))
                .order(ubc::id.asc())
                .limit(i64::from(limit))
                .select(CredentialRow::as_select())
                .load(conn)?
                .into_iter()
                .map(CredentialRow::into_domain)
                .collect()
        })
    }

    fn rewrite(&self, rows: &[(i64, CredentialWrite)]) -> Result<Vec<bool>, RepositoryError> {
        if rows
            .iter()
            .any(|(_, write)| write.expected_version.is_none())
        {
            return Err(RepositoryError::Other(
                "rewrite of a broker credential needs the version it expects".into(),
            ));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction for the whole batch: one commit (one WAL flush) instead of one per
        // row, which is what bounds `keys rotate` on PostgreSQL.
        self.db.write("rewrite broker credentials", |conn| {
            rows.iter()
                .map(|(id, write)| {
                    let updated = diesel::update(
                        ubc::table
                            .filter(ubc::id.eq(id))
                            .filter(ubc::broker.eq(write.broker.as_str()))
                            .filter(ubc::version.eq(write.expected_version.unwrap_or_default())),
                    )
                    .set((
                        ubc::api_key_encrypted.eq(write.api_key_encrypted.as_deref()),
                        ubc::api_secret_encrypted.eq(write.api_secret_encrypted.as_deref()),
                        ubc::key_id.eq(write.key_id.as_str()),
                        ubc::binding.eq(&write.binding),
                        ubc::version.eq(write.version),
                    ))
                    .execute(conn)?;
                    Ok(updated == 1)
                })
                .collect()
        })
    }

    fn count_by_key_id(&self) -> Result<Vec<KeyIdCount>, RepositoryError> {
        self.db.run("count broker credentials per key", |conn| {
            let mut counts = ubc::table
                .group_by(ubc::key_id)
                .select((ubc::key_id, count_star()))
                .load::<(Option<String>, i64)>(conn)?
                .into_iter()
                .map(|(key_id, n)| (key_id.map(KeyId::new), count(n)))
                .collect::<Vec<_>>();
            counts.sort();
            Ok(counts)
        })
    }
}
