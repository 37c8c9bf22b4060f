//! Behaviour specific to PostgreSQL: surviving a restart, time zones, real `jsonb`, and URLs with
//! passwords. Each test skips loudly when PostgreSQL is unreachable, and fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::json;
use user_service_domain::ports::{
    CredentialRepository, OnboardingRepository, PreferenceRepository, UserRepository,
};
use user_service_domain::{OnboardingProgress, RepositoryError, UserId};
use user_service_persistence::{Database, PoolSettings};

use support::{at, create_user, postgres, postgres_admin_execute, test_settings, write, ApplyExt};

/// Terminates every session on database `name` and waits until they are gone (the server
/// ends them asynchronously); answers how many there were.
fn terminate_backends_of(name: &str) -> usize {
    let killed = postgres_admin_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while postgres_admin_execute(&format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )) > 0
    {
        assert!(Instant::now() < deadline, "sessions of {name} still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_by_the_server_are_replaced_without_a_new_pool() {
    let Some(t) = postgres().await else { return };
    let name = t.name.clone().unwrap();
    // Every checkout checked: not one operation fails.
    let settings = PoolSettings {
        validate_idle_after: Duration::ZERO,
        ..test_settings()
    };
    let db = Database::connect(&t.url, &settings).await.unwrap();
    let user = create_user(&db, "ann").await;
    let creds = db.credentials();
    creds
        .apply_one(user, write("binance", None, Some("k"), None))
        .await
        .unwrap();
    assert!(db.pool_status().idle >= 1);

    let killed = terminate_backends_of(&name);
    assert!(killed >= 1, "the pool had connections to kill");

    for round in 0..20 {
        assert_eq!(creds.list(user).await.unwrap().len(), 1, "round {round}");
    }
    let rows = creds
        .apply_one(user, write("binance", Some(1), Some("k2"), None))
        .await
        .unwrap();
    assert_eq!(rows[0].version, 2);
    db.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connections_killed_by_the_server_fail_once_each_and_are_discarded() {
    let Some(t) = postgres().await else { return };
    let name = t.name.clone().unwrap();
    // Recently used connections are trusted at checkout (the default): no `SELECT 1` per call.
    let settings = PoolSettings {
        validate_idle_after: Duration::from_secs(3600),
        ..test_settings()
    };
    let db = Database::connect(&t.url, &settings).await.unwrap();
    let user = create_user(&db, "ann").await;
    let creds = db.credentials();
    assert!(creds.list(user).await.unwrap().is_empty());
    let killed = terminate_backends_of(&name);
    assert!(killed >= 1, "the pool had connections to kill");

    // A dead connection fails at most one operation, as unavailable (never anything else), and
    // is discarded: the pool holds at most `max_size` of them, so after that many failures at
    // most, every call succeeds on fresh connections. (Most often none fails: the connection's
    // driver saw the server close it, and the pool drops it at checkout without a round
    // trip.)
    let mut failures = 0;
    for round in 0..(settings.max_size as usize + 20) {
        match creds.list(user).await {
            Ok(rows) => assert!(rows.is_empty()),
            Err(RepositoryError::Unavailable { .. }) => failures += 1,
            Err(other) => panic!("round {round}: {other:?}"),
        }
    }
    assert!(
        failures <= settings.max_size as usize,
        "{failures} failures: dead connections went back to the pool"
    );
    for _ in 0..20 {
        assert!(creds.list(user).await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_as_unavailable_and_recovers_by_itself() {
    let Some(t) = postgres().await else { return };
    let name = t.name.clone().unwrap();
    let user = create_user(&t.db, "ann").await;
    let settings = PoolSettings {
        connection_timeout: Duration::from_secs(1),
        ..PoolSettings::default()
    };
    let db = Database::connect(&t.url, &settings).await.unwrap();
    let creds = db.credentials();
    assert!(creds.list(user).await.unwrap().is_empty());

    // The database goes away: no new connection is accepted and the open ones are killed.
    postgres_admin_execute(&format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    ));
    terminate_backends_of(&name);
    let started = Instant::now();
    let outcome = creds.list(user).await;
    assert!(
        matches!(outcome, Err(RepositoryError::Unavailable { .. })),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed fast: {:?}",
        started.elapsed()
    );
    assert!(matches!(
        db.ping().await,
        Err(RepositoryError::Unavailable { .. })
    ));

    // It comes back: the same pool serves again.
    postgres_admin_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match creds
            .apply_one(user, write("binance", None, Some("k"), None))
            .await
        {
            Ok(rows) => {
                assert_eq!(rows.len(), 1);
                break;
            }
            Err(RepositoryError::Unavailable { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(other) => panic!("did not recover: {other:?}"),
        }
    }
    db.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_are_instants_whatever_the_session_time_zone() {
    let Some(t) = postgres().await else { return };
    // A database whose default zone is not UTC (as an operator may set it) must not change
    // what is stored: instants travel in binary, whatever the session's zone.
    let name = t.name.clone().unwrap();
    t.with_connection(|c| {
        diesel::sql_query(format!(
            "ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'"
        ))
        .execute(c)
    })
    .unwrap();
    let setting: String = t
        .with_connection(|c| {
            diesel::select(sql::<Text>(
                "(SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting \
                 WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            ))
            .get_result(c)
        })
        .unwrap();
    assert_eq!(setting, "TimeZone=America/New_York");
    let db = Database::connect(
        &t.url,
        &PoolSettings {
            max_size: 1,
            ..test_settings()
        },
    )
    .await
    .unwrap();

    let user = create_user(&db, "ann").await;
    let rows = db
        .credentials()
        .apply_one(user, write("binance", None, Some("k"), None))
        .await
        .unwrap();
    assert_eq!(rows[0].updated_at, at(0));
    assert_eq!(
        db.credentials().list(user).await.unwrap()[0].updated_at,
        at(0)
    );
    let epoch: i64 = t
        .with_connection(|c| {
            diesel::select(sql::<BigInt>(
                "(SELECT CAST(EXTRACT(EPOCH FROM updated_at) AS BIGINT) FROM user_broker_credentials)",
            ))
            .get_result(c)
        })
        .unwrap();
    assert_eq!(epoch, at(0).timestamp(), "stored as the same instant");
    // `now()` defaults and our values agree on what "now" is.
    let skew: i64 = t
        .with_connection(|c| {
            diesel::select(sql::<BigInt>(
                "(SELECT CAST(ABS(EXTRACT(EPOCH FROM (now() - created_at))) AS BIGINT) FROM users)",
            ))
            .get_result(c)
        })
        .unwrap();
    assert!(skew < 60, "created_at is {skew} s away from now()");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_columns_are_real_jsonb() {
    let Some(t) = postgres().await else { return };
    let user = create_user(&t.db, "ann").await;
    t.db.preferences()
        .put(user, &json!({"theme": "dark", "n": 1}))
        .await
        .unwrap();
    let mut progress = OnboardingProgress::start();
    progress.complete("api-keys").unwrap();
    t.db.onboarding().save(user, &progress).await.unwrap();
    let (theme, steps_type, first_step): (String, String, String) = t
        .with_connection(|c| {
            diesel::select((
                sql::<Text>("(SELECT preferences->>'theme' FROM user_preferences)"),
                sql::<Text>("(SELECT jsonb_typeof(completed_steps) FROM onboarding_progress)"),
                sql::<Text>("(SELECT completed_steps->>0 FROM onboarding_progress)"),
            ))
            .get_result(c)
        })
        .unwrap();
    assert_eq!(
        (theme.as_str(), steps_type.as_str(), first_step.as_str()),
        ("dark", "array", "api-keys")
    );

    // A document written by another client (the Python service) reads back as JSON.
    t.with_connection(|c| {
        diesel::sql_query(format!(
            "UPDATE user_preferences SET preferences = '{{\"currency\": \"EUR\"}}'::jsonb WHERE user_id = {}",
            user.0
        ))
        .execute(c)
    })
    .unwrap();
    assert_eq!(
        t.db.preferences().get(user).await.unwrap(),
        json!({"currency": "EUR"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_in_the_url_never_show() {
    let Some(t) = postgres().await else { return };
    // Trust authentication ignores the password, so the URL still connects.
    let with_password = t
        .url
        .replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    assert_ne!(with_password, t.url, "the test URL has the expected form");
    let db = Database::connect(&with_password, &test_settings())
        .await
        .unwrap();
    let shown = format!("{db:?} {}", db.redacted_url());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("postgres:***@"), "{shown}");
    assert!(db.users().get(UserId(1)).await.is_err());

    let unreachable = Database::connect(
        "postgres://postgres:hunter2@127.0.0.1:1/nothing",
        &PoolSettings {
            connection_timeout: Duration::from_millis(500),
            ..PoolSettings::default()
        },
    )
    .await
    .unwrap_err();
    let message = format!("{unreachable} {unreachable:?}");
    assert!(!message.contains("hunter2"), "{message}");
}
