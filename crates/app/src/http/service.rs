//! Service routes: liveness, readiness, metrics.

use std::fmt::Write;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use user_service_domain::ports::CutoverRepository;

use crate::config::KeyStatus;
use crate::state::AppState;

/// `GET /health`: the process is alive. No dependency is checked.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// What `/ready` reports.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    /// `ok`, or why the key ring is not loaded (never a value).
    pub encryption_key: String,
    /// Fingerprint of the primary key.
    pub primary_key_id: Option<String>,
    /// Fingerprints of every configured key, primary first.
    pub key_ids: Vec<String>,
    /// Credential rows per key id (`legacy` for rows written without one).
    #[schema(value_type = Vec<Vec<serde_json::Value>>, example = json!([["3f9a1c2b7d4e8f01", 1200], ["legacy", 3]]))]
    pub rows_per_key_id: Vec<(String, u64)>,
    /// Rows encrypted under a key that is no longer configured.
    pub rows_on_retired_keys: u64,
    /// Whether `READY_ALLOW_RETIRED_KEY_ROWS` lets the service be ready despite such rows.
    pub retired_key_rows_allowed: bool,
    /// Cut-over mode as this replica applies it: `open` (rows without a binding tag are read)
    /// or `closed`; `unknown` when the database does not answer.
    pub cutover: &'static str,
    /// Whether `BROKER_CREDENTIALS_REQUIRE_BINDING` keeps this replica closed whatever the
    /// database says.
    pub cutover_forced_closed: bool,
}

/// Computes readiness: database reachable, key ring loaded, no row on a retired key.
pub async fn readiness(state: &AppState) -> Readiness {
    let ring = match state.keys.status() {
        KeyStatus::Ready(ring) => Ok(ring),
        KeyStatus::Misconfigured(reason) => Err(reason),
    };
    // The count is itself the database check: a separate ping would only repeat the round trip.
    let counts = state.credential_store.count_by_key_id().await;
    let database = if counts.is_ok() { "ok" } else { "unavailable" };
    let key_ids: Vec<String> = ring
        .as_ref()
        .map(|r| r.key_ids().iter().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    let mut rows_per_key_id = Vec::new();
    let mut retired = 0;
    for (key_id, count) in counts.unwrap_or_default() {
        match key_id {
            Some(id) => {
                if ring.is_ok() && !key_ids.iter().any(|k| k == id.as_str()) {
                    retired += count;
                }
                rows_per_key_id.push((id.to_string(), count));
            }
            None => rows_per_key_id.push(("legacy".to_owned(), count)),
        }
    }
    let forced_closed = state.settings.broker_credentials_require_binding;
    let cutover = match state.database.cutover().state().await {
        Ok(_) if forced_closed => "closed",
        Ok(stored) => stored.mode.as_str(),
        Err(_) => "unknown",
    };
    let allowed = state.settings.ready_allow_retired_key_rows;
    let ready = database == "ok" && ring.is_ok() && (retired == 0 || allowed);
    Readiness {
        status: if ready { "ready" } else { "not_ready" },
        database,
        encryption_key: ring.as_ref().err().cloned().unwrap_or_else(|| "ok".into()),
        primary_key_id: ring.as_ref().ok().map(|r| r.primary_key_id().to_string()),
        key_ids,
        rows_per_key_id,
        rows_on_retired_keys: retired,
        retired_key_rows_allowed: allowed,
        cutover,
        cutover_forced_closed: forced_closed,
    }
}

/// `GET /ready`: 200 when ready, 503 with the reasons otherwise.
#[utoipa::path(get, path = "/ready", tag = "service", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let report = readiness(&state).await;
    let mut response = if report.status == "ready" {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header(("Cache-Control", "no-store"))
        .json(report)
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let report = readiness(&state).await;
    let mut extra = String::new();
    extra.push_str("# HELP broker_credentials_stored Credential rows per key id.\n");
    extra.push_str("# TYPE broker_credentials_stored gauge\n");
    for (key_id, count) in &report.rows_per_key_id {
        let _ = writeln!(
            extra,
            "broker_credentials_stored{{key_id=\"{key_id}\"}} {count}"
        );
    }
    extra.push_str(
        "# HELP broker_credentials_on_retired_keys Rows under a key no longer configured.\n",
    );
    extra.push_str("# TYPE broker_credentials_on_retired_keys gauge\n");
    let _ = writeln!(
        extra,
        "broker_credentials_on_retired_keys {}",
        report.rows_on_retired_keys
    );
    extra.push_str(
        "# HELP cutover_open Whether rows without a binding tag are read (cut-over mode open).\n",
    );
    extra.push_str("# TYPE cutover_open gauge\n");
    let _ = writeln!(extra, "cutover_open {}", u8::from(report.cutover == "open"));
    extra.push_str("# HELP encryption_key_configured Whether a valid key ring is loaded.\n");
    extra.push_str("# TYPE encryption_key_configured gauge\n");
    let _ = writeln!(
        extra,
        "encryption_key_configured {}",
        u8::from(report.encryption_key == "ok")
    );
    for key_id in &report.key_ids {
        let primary = u8::from(report.primary_key_id.as_deref() == Some(key_id.as_str()));
        let _ = writeln!(
            extra,
            "encryption_key_info{{key_id=\"{key_id}\",primary=\"{primary}\"}} 1"
        );
    }
    let pool = state.database.pool_status();
    extra.push_str("# HELP database_pool_connections Open database connections, idle or busy.\n");
    extra.push_str("# TYPE database_pool_connections gauge\n");
    let _ = writeln!(
        extra,
        "database_pool_connections{{state=\"idle\"}} {}",
        pool.idle
    );
    let _ = writeln!(
        extra,
        "database_pool_connections{{state=\"busy\"}} {}",
        pool.connections.saturating_sub(pool.idle)
    );
    extra.push_str("# HELP database_pool_waiting Requests waiting for a database connection.\n");
    extra.push_str("# TYPE database_pool_waiting gauge\n");
    let _ = writeln!(extra, "database_pool_waiting {}", pool.waiting);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&extra))
}
