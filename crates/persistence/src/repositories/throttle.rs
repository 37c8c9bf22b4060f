//! `ThrottleRepository` on `sign_in_throttle`: GCRA buckets shared by every replica.
//!
//! One attempt is one upsert: the row's theoretical arrival time (`tat`) moves to
//! `max(tat, now) + interval` only when that stays within the burst (`per_minute` intervals
//! ahead of `now`), and `RETURNING` tells whether it moved. Refused, nothing is written and a
//! second statement reads the row to say how long to wait. The row lock of the upsert (the write
//! lock on SQLite) orders concurrent attempts, so the last slot goes to exactly one of them.
//! Rows whose `tat` has passed hold nothing: every [`SWEEP_EVERY`]th attempt of a process
//! deletes them, so the table stays at about the buckets of the last minute.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use user_service_domain::ports::ThrottleRepository;
use user_service_domain::RepositoryError;

use super::ThrottleStore;
use crate::connection::{on_backend, DbConnection};
use crate::prepared::KeepPrepared;

/// Delete the buckets that hold nothing every this many attempts (per process).
const SWEEP_EVERY: u32 = 64;

const ADMIT_POSTGRES: &str = "INSERT INTO sign_in_throttle (bucket, tat) VALUES ($1, $2 + $3) \
     ON CONFLICT (bucket) DO UPDATE \
     SET tat = (CASE WHEN sign_in_throttle.tat > $2 THEN sign_in_throttle.tat ELSE $2 END) + $3 \
     WHERE (CASE WHEN sign_in_throttle.tat > $2 THEN sign_in_throttle.tat ELSE $2 END) + $3 <= $2 + $4 \
     RETURNING tat";
const ADMIT_SQLITE: &str = "INSERT INTO sign_in_throttle (bucket, tat) VALUES (?1, ?2 + ?3) \
     ON CONFLICT (bucket) DO UPDATE \
     SET tat = (CASE WHEN sign_in_throttle.tat > ?2 THEN sign_in_throttle.tat ELSE ?2 END) + ?3 \
     WHERE (CASE WHEN sign_in_throttle.tat > ?2 THEN sign_in_throttle.tat ELSE ?2 END) + ?3 <= ?2 + ?4 \
     RETURNING tat";
const READ_POSTGRES: &str = "SELECT tat FROM sign_in_throttle WHERE bucket = $1";
const READ_SQLITE: &str = "SELECT tat FROM sign_in_throttle WHERE bucket = ?1";
const SWEEP_POSTGRES: &str = "DELETE FROM sign_in_throttle WHERE tat < $1";
const SWEEP_SQLITE: &str = "DELETE FROM sign_in_throttle WHERE tat < ?1";

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[derive(QueryableByName)]
struct Tat {
    #[diesel(sql_type = BigInt)]
    tat: i64,
}

/// `postgres` or `sqlite`, the same statement with each backend's parameter markers.
fn for_backend(conn: &DbConnection, postgres: &'static str, sqlite: &'static str) -> &'static str {
    match conn {
        DbConnection::Postgres(_) => postgres,
        DbConnection::Sqlite(_) => sqlite,
    }
}

async fn admit_sql(
    conn: &mut DbConnection,
    bucket: &str,
    now: i64,
    interval: i64,
    burst: i64,
) -> Result<Vec<Tat>, diesel::result::Error> {
    let sql = for_backend(conn, ADMIT_POSTGRES, ADMIT_SQLITE);
    on_backend!(conn, |c| {
        diesel::sql_query(sql)
            .bind::<Text, _>(bucket)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(interval)
            .bind::<BigInt, _>(burst)
            .keep_prepared()
            .load::<Tat>(c)
            .await
    })
}

async fn read_sql(
    conn: &mut DbConnection,
    bucket: &str,
) -> Result<Vec<Tat>, diesel::result::Error> {
    let sql = for_backend(conn, READ_POSTGRES, READ_SQLITE);
    on_backend!(conn, |c| {
        diesel::sql_query(sql)
            .bind::<Text, _>(bucket)
            .keep_prepared()
            .load::<Tat>(c)
            .await
    })
}

async fn sweep_sql(conn: &mut DbConnection, now: i64) -> Result<usize, diesel::result::Error> {
    let sql = for_backend(conn, SWEEP_POSTGRES, SWEEP_SQLITE);
    on_backend!(conn, |c| {
        diesel::sql_query(sql)
            .bind::<BigInt, _>(now)
            .execute(c)
            .await
    })
}

#[async_trait]
impl ThrottleRepository for ThrottleStore {
    async fn admit(
        &self,
        bucket: &str,
        per_minute: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, RepositoryError> {
        let now = now.timestamp_micros();
        let interval = 60_000_000 / i64::from(per_minute.max(1));
        let burst = interval * i64::from(per_minute.max(1));
        let sweep = ATTEMPTS.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1;
        self.db
            .write("count a sign-in attempt", async |conn| {
                if sweep {
                    sweep_sql(conn, now).await?;
                }
                if !admit_sql(conn, bucket, now, interval, burst)
                    .await?
                    .is_empty()
                {
                    return Ok(None);
                }
                // Refused: the next attempt fits once `tat + interval - burst` has passed.
                let rows = read_sql(conn, bucket).await?;
                let tat = rows.iter().map(|row| row.tat).next().unwrap_or(now);
                let wait = (tat + interval - burst - now).max(1);
                Ok(Some(Duration::from_micros(wait.unsigned_abs())))
            })
            .await
    }
}
