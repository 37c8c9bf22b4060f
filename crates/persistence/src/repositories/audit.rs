//! `AuditRepository` on `credential_audit_events`.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use user_service_domain::ports::AuditRepository;
use user_service_domain::{AuditAction, AuditEvent, KeyId, Page, RepositoryError, UserId};

use super::{limit_offset, page_of, AuditStore};
use crate::connection::on_backend;
use crate::connection::DbConnection;
use crate::error::Failure;
use crate::prepared::KeepPrepared;
use crate::schema::credential_audit_events as events;
use crate::sql_types::DbTime;

/// Longest request id kept (the column is `varchar(255)`); request ids come from clients.
const REQUEST_ID_MAX_CHARS: usize = 255;

#[derive(Queryable, Selectable)]
#[diesel(table_name = events)]
struct EventRow {
    id: i64,
    occurred_at: DbTime,
    actor_id: Option<i64>,
    target_user_id: i64,
    action: String,
    broker: Option<String>,
    outcome: String,
    key_id: Option<String>,
    request_id: Option<String>,
    actor_service: Option<String>,
    detail: Option<String>,
}

impl EventRow {
    fn into_domain(self) -> Result<AuditEvent, Failure> {
        let action = AuditAction::parse(&self.action).ok_or_else(|| {
            Failure::corrupt(
                "read audit events",
                format!("audit event {} has an unknown action", self.id),
            )
        })?;
        Ok(AuditEvent {
            occurred_at: self.occurred_at.0,
            actor_id: self.actor_id.map(UserId),
            target_user_id: UserId(self.target_user_id),
            action,
            broker: self.broker,
            outcome: self.outcome,
            key_id: self.key_id.map(KeyId::new),
            request_id: self.request_id,
            actor_service: self.actor_service,
            detail: self.detail,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = events)]
struct NewEventRow<'a> {
    occurred_at: DbTime,
    actor_id: Option<i64>,
    target_user_id: i64,
    action: &'a str,
    broker: Option<&'a str>,
    outcome: &'a str,
    key_id: Option<&'a str>,
    request_id: Option<String>,
    actor_service: Option<&'a str>,
    detail: Option<&'a str>,
}

impl<'a> NewEventRow<'a> {
    fn of(event: &'a AuditEvent) -> Self {
        NewEventRow {
            occurred_at: DbTime::new(event.occurred_at),
            actor_id: event.actor_id.map(|a| a.0),
            target_user_id: event.target_user_id.0,
            action: event.action.as_str(),
            broker: event.broker.as_deref(),
            outcome: &event.outcome,
            key_id: event.key_id.as_ref().map(KeyId::as_str),
            request_id: event
                .request_id
                .as_ref()
                .map(|id| id.chars().take(REQUEST_ID_MAX_CHARS).collect()),
            actor_service: event.actor_service.as_deref(),
            detail: event.detail.as_deref(),
        }
    }
}

/// Inserts `events` on `conn` (inside the caller's transaction, if any), in one statement.
pub(crate) async fn insert_events(
    conn: &mut DbConnection,
    events: &[AuditEvent],
) -> Result<(), Failure> {
    if events.is_empty() {
        return Ok(());
    }
    // One single-row statement per event: its text never changes, so it is kept prepared on the
    // connection (a multi-row insert is a new statement text for each count of rows, parsed
    // and planned anew). A request writes one event per broker it changes, usually one.
    for event in events {
        let row = NewEventRow::of(event);
        on_backend!(conn, |c| {
            diesel::insert_into(events::table)
                .values(&row)
                .keep_prepared()
                .execute(c)
                .await
        })?;
    }
    Ok(())
}

/// Inserts `events` on PostgreSQL through a shared reference, all statements in flight at once
/// (with the other statements of the caller's transaction).
pub(crate) async fn insert_events_pipelined(
    c: &diesel_async::pg::AsyncPgConnection,
    events: &[AuditEvent],
) -> Result<(), Failure> {
    futures_util::future::try_join_all(events.iter().map(|event| async move {
        let mut c = c;
        diesel::insert_into(events::table)
            .values(&NewEventRow::of(event))
            .keep_prepared()
            .execute(&mut c)
            .await
    }))
    .await?;
    Ok(())
}

#[async_trait]
impl AuditRepository for AuditStore {
    async fn record(&self, event: &AuditEvent) -> Result<(), RepositoryError> {
        self.db
            .run("record audit event", async |conn| {
                insert_events(conn, std::slice::from_ref(event)).await
            })
            .await
    }

    async fn list(
        &self,
        target: UserId,
        page: Page,
    ) -> Result<(Vec<AuditEvent>, u64), RepositoryError> {
        let (limit, offset) = limit_offset(page);
        self.db
            .run("list audit events", async |conn| {
                let (total, rows): (i64, Vec<EventRow>) = on_backend!(conn, |c| {
                    let total = events::table
                        .filter(events::target_user_id.eq(target.0))
                        .count()
                        .get_result(c)
                        .await?;
                    let rows = events::table
                        .filter(events::target_user_id.eq(target.0))
                        .order((events::occurred_at.desc(), events::id.desc()))
                        .limit(limit)
                        .offset(offset)
                        .select(EventRow::as_select())
                        .load(c)
                        .await?;
                    diesel::QueryResult::Ok((total, rows))
                })?;
                page_of(total, rows, EventRow::into_domain)
            })
            .await
    }
}
