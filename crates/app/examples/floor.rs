//! The floor of the HTTP benchmark (`just bench-floor`, docs/benchmarking.md): what serving
//! `GET` and `PUT /users/me/broker-credentials` costs on this stack with none of the service's
//! own work. The same actix-web server (workers, one per core unless `WORKERS`), the same
//! `Database` pool (`DATABASE_POOL_SIZE`, per-thread on PostgreSQL) and the same repository
//! calls as the service, so the same statements and round trips; but no authentication, no
//! entitlements, no decryption or binding check, no masking, no middleware, and a short
//! answer. With `FLOOR_DATABASE=0` it does not touch the database either: HTTP alone.
//!
//! Whatever CPU this costs per request, the service cannot cost less; the difference between
//! the two is the service's own work. The user of each request is taken in turn from
//! `FLOOR_USERS` (`first-last`, the benchmark's seeded ids), not from the token wrk sends.
//!
//! Not part of the service: an example program, built by `cargo test` so that it keeps compiling.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, App, HttpResponse, HttpServer};
use chrono::Utc;
use user_service_domain::ports::{
    CredentialMutation, CredentialRepository, CredentialWrite, WritePlan,
};
use user_service_domain::UserId;
use user_service_domain::{AuditAction, AuditEvent, KeyId, RepositoryError, StoredCredential};
use user_service_persistence::{CredentialStore, Database, PoolSettings};

/// What every worker shares.
struct Floor {
    store: Option<CredentialStore>,
    first_user: i64,
    users: u64,
    next: AtomicU64,
}

impl Floor {
    fn user(&self) -> UserId {
        let offset = self.next.fetch_add(1, Ordering::Relaxed) % self.users;
        UserId(self.first_user + i64::try_from(offset).unwrap_or(0))
    }
}

/// A short answer naming each row, so that the rows are read and used.
fn answer(rows: &[StoredCredential]) -> HttpResponse {
    let mut body = String::from("{\"credentials\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"broker\":\"{}\",\"version\":{}}}",
            row.broker.as_str(),
            row.version
        ));
    }
    body.push_str("]}");
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

fn failed(error: &RepositoryError) -> HttpResponse {
    HttpResponse::ServiceUnavailable().body(error.to_string())
}

async fn list(floor: web::Data<Floor>) -> HttpResponse {
    let Some(store) = &floor.store else {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(r#"{"credentials":[{"broker":"alpaca","version":1},{"broker":"binance","version":1},{"broker":"kraken","version":1}]}"#);
    };
    match store.list(floor.user()).await {
        Ok(rows) => answer(&rows),
        Err(error) => failed(&error),
    }
}

/// The service's `PUT` of one credential as the repository sees it: one transaction that reads
/// the user's rows, rewrites one of them (compare-and-set) and records one audit event. The
/// row is written back as it was, version included: nothing is encrypted, and the row's binding
/// tag (over its version and tokens) stays valid, so the service reads it as before.
async fn put(floor: web::Data<Floor>) -> HttpResponse {
    let Some(store) = &floor.store else {
        return HttpResponse::Ok().finish();
    };
    let user = floor.user();
    let mut planner = |rows: &[StoredCredential]| {
        let Some(row) = rows.first() else {
            return WritePlan::Nothing;
        };
        let key_id = row.key_id.clone().unwrap_or_else(|| KeyId::new("floor"));
        let now = Utc::now();
        WritePlan::Apply {
            mutations: vec![CredentialMutation::Write(CredentialWrite {
                broker: row.broker.clone(),
                expected_version: Some(row.version),
                version: row.version,
                api_key_encrypted: row.api_key_encrypted.clone(),
                api_secret_encrypted: row.api_secret_encrypted.clone(),
                key_id: key_id.clone(),
                binding: row.binding.clone().unwrap_or_default(),
                updated_at: now,
                trading_enabled: row.trading_enabled,
                last_test_status: row.last_test_status.clone(),
                last_tested_at: row.last_tested_at,
            })],
            events: vec![AuditEvent {
                occurred_at: now,
                actor_id: Some(user),
                target_user_id: user,
                action: AuditAction::Write,
                broker: Some(row.broker.as_str().to_owned()),
                outcome: "success".to_owned(),
                key_id: Some(key_id),
                request_id: Some("floor".to_owned()),
                actor_service: None,
                detail: None,
            }],
        }
    };
    match store.update(user, &mut planner).await {
        Ok(rows) => answer(&rows),
        Err(error) => failed(&error),
    }
}

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn main() -> std::io::Result<()> {
    let port = setting("PORT").unwrap_or_else(|| "8000".to_owned());
    let workers = setting("WORKERS")
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let (first_user, last_user) = setting("FLOOR_USERS")
        .and_then(|range| {
            let (first, last) = range.split_once('-')?;
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .unwrap_or((1_i64, 1000_i64));
    let users = u64::try_from(last_user - first_user + 1)
        .unwrap_or(1)
        .max(1);
    let with_database = setting("FLOOR_DATABASE").is_none_or(|v| v != "0");
    actix_web::rt::System::new().block_on(async move {
        let store = match (with_database, setting("DATABASE_URL")) {
            (true, Some(url)) => {
                let pool = PoolSettings {
                    max_size: setting("DATABASE_POOL_SIZE")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(16),
                    threads: u32::try_from(workers).unwrap_or(1),
                    ..PoolSettings::default()
                };
                let db = Database::connect(&url, &pool)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                Some(db.credentials())
            }
            _ => None,
        };
        let floor = web::Data::new(Floor {
            store,
            first_user,
            users,
            next: AtomicU64::new(0),
        });
        HttpServer::new(move || {
            App::new()
                .app_data(floor.clone())
                .route("/health", web::get().to(HttpResponse::Ok))
                .route("/users/me/broker-credentials", web::get().to(list))
                .route("/users/me/broker-credentials", web::put().to(put))
        })
        .workers(workers)
        .bind(("127.0.0.1", port.parse::<u16>().unwrap_or(8000)))?
        .run()
        .await
    })
}
