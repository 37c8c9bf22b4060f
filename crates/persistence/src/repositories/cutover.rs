//! `CutoverRepository` on `cutover_mode`.
//!
//! Changes of mode are audited by a trigger of the table itself (see the migration), so that a
//! change made with plain SQL is in the trail as well as one made by `user-service cutover`.

use async_trait::async_trait;
use diesel::dsl::{exists, not};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use user_service_domain::ports::{CutoverRepository, ModeChange};
use user_service_domain::{CutoverMode, CutoverState, RepositoryError};

use super::{count, CutoverStore};
use crate::connection::on_backend;
use crate::connection::DbConnection;
use crate::error::Failure;
use crate::schema::cutover_mode as cm;
use crate::schema::user_broker_credentials as ubc;
use crate::sql_types::DbTime;

/// The one row of `cutover_mode`.
const ROW: i16 = 1;

/// Rows holding a ciphertext without a binding tag.
macro_rules! unbound_rows {
    () => {
        ubc::table.filter(ubc::binding.is_null()).filter(
            ubc::api_key_encrypted
                .is_not_null()
                .or(ubc::api_secret_encrypted.is_not_null()),
        )
    };
}

async fn read_state(conn: &mut DbConnection) -> Result<CutoverState, Failure> {
    let row: Option<(bool, DbTime)> = on_backend!(conn, |c| {
        cm::table
            .filter(cm::id.eq(ROW))
            .select((cm::open, cm::changed_at))
            .first(c)
            .await
            .optional()
    })?;
    Ok(match row {
        Some((open, changed_at)) => CutoverState {
            mode: if open {
                CutoverMode::Open
            } else {
                CutoverMode::Closed
            },
            changed_at: Some(changed_at.0),
        },
        None => CutoverState {
            mode: CutoverMode::Closed,
            changed_at: None,
        },
    })
}

async fn count_unbound(conn: &mut DbConnection) -> Result<u64, Failure> {
    let n: i64 = on_backend!(conn, |c| unbound_rows!().count().get_result(c).await)?;
    Ok(count(n))
}

#[async_trait]
impl CutoverRepository for CutoverStore {
    async fn state(&self) -> Result<CutoverState, RepositoryError> {
        self.db.run("read cut-over mode", read_state).await
    }

    async fn set_mode(&self, mode: CutoverMode) -> Result<ModeChange, RepositoryError> {
        let now = DbTime::new(chrono::Utc::now());
        self.db
            .write("set cut-over mode", async |conn| {
                // A mode deleted by hand reads as closed: put the row back as such first.
                on_backend!(conn, |c| {
                    diesel::insert_into(cm::table)
                        .values((cm::id.eq(ROW), cm::open.eq(false), cm::changed_at.eq(now)))
                        .on_conflict_do_nothing()
                        .execute(c)
                        .await
                })?;
                let changed = match mode {
                    CutoverMode::Open => on_backend!(conn, |c| {
                        diesel::update(cm::table.filter(cm::id.eq(ROW)).filter(cm::open.eq(false)))
                            .set((cm::open.eq(true), cm::changed_at.eq(now)))
                            .execute(c)
                            .await
                    })?,
                    // One statement: the mode closes only if, as it runs, no row is unbound.
                    CutoverMode::Closed => on_backend!(conn, |c| {
                        diesel::update(
                            cm::table
                                .filter(cm::id.eq(ROW))
                                .filter(cm::open.eq(true))
                                .filter(not(exists(unbound_rows!().select(ubc::id)))),
                        )
                        .set((cm::open.eq(false), cm::changed_at.eq(now)))
                        .execute(c)
                        .await
                    })?,
                };
                if changed == 1 {
                    return Ok(ModeChange::Changed);
                }
                if read_state(conn).await?.mode == mode {
                    return Ok(ModeChange::Unchanged);
                }
                Ok(ModeChange::RefusedUnbound(count_unbound(conn).await?))
            })
            .await
    }

    async fn unbound_rows(&self) -> Result<u64, RepositoryError> {
        self.db.run("count unbound rows", count_unbound).await
    }
}
