//! Repository benchmarks on both backends: a bare checkout and `SELECT 1`, listing a user's credentials (3, 30 and 300 rows) and
//! applying one credential write (compare-and-set update), each through the pool as the service
//! calls them. PostgreSQL runs in a database of its own; it is skipped (loudly) when unreachable.
//!
//! `cargo bench -p user-service-persistence -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use user_service_domain::ports::{CredentialMutation, CredentialRepository, CredentialWrite};
use user_service_domain::{KeyId, UserId};

use support::{at, broker, create_user, ApplyExt, TestDb};
use tokio::runtime::Runtime;

/// A Fernet-sized token (what a 20-character API key encrypts to).
fn token(seed: usize) -> String {
    format!("gAAAAAB{seed:0>133}")
}

fn write(name: &str, expected_version: Option<i64>) -> CredentialWrite {
    CredentialWrite {
        broker: broker(name),
        expected_version,
        version: expected_version.map_or(1, |v| v + 1),
        api_key_encrypted: Some(token(1)),
        api_secret_encrypted: Some(token(2)),
        key_id: KeyId::new("k1"),
        binding: "x".repeat(43),
        updated_at: at(0),
        trading_enabled: false,
        last_test_status: None,
        last_tested_at: None,
    }
}

fn user_with_rows(rt: &Runtime, t: &TestDb, name: &str, rows: usize) -> UserId {
    rt.block_on(async {
        let user = create_user(&t.db, name).await;
        let mutations: Vec<_> = (0..rows)
            .map(|i| CredentialMutation::Write(write(&format!("broker-{i:03}"), None)))
            .collect();
        t.db.credentials().apply(user, &mutations).await.unwrap();
        user
    })
}

fn bench_backend(c: &mut Criterion, rt: &Runtime, backend: &str, t: &TestDb) {
    let creds = t.db.credentials();

    // The floor of every repository call: a checkout and one statement.
    let mut floor = c.benchmark_group(format!("{backend}/checkout"));
    floor.throughput(Throughput::Elements(1));
    floor.bench_function("ping", |b| b.iter(|| rt.block_on(t.db.ping()).unwrap()));
    floor.finish();

    let mut list = c.benchmark_group(format!("{backend}/list"));
    list.throughput(Throughput::Elements(1));
    for rows in [3, 30, 300] {
        let user = user_with_rows(rt, t, &format!("list{rows}"), rows);
        list.bench_with_input(BenchmarkId::from_parameter(rows), &user, |b, user| {
            b.iter(|| {
                let listed = rt.block_on(creds.list(*user)).unwrap();
                assert_eq!(listed.len(), rows);
                listed
            })
        });
    }
    list.finish();

    let mut apply = c.benchmark_group(format!("{backend}/apply"));
    apply.throughput(Throughput::Elements(1));
    let user = user_with_rows(rt, t, "apply", 3);
    let mut version = 1;
    apply.bench_function("write_cas", |b| {
        b.iter(|| {
            let rows = rt
                .block_on(creds.apply(
                    user,
                    &[CredentialMutation::Write(write(
                        "broker-000",
                        Some(version),
                    ))],
                ))
                .unwrap();
            version += 1;
            rows
        })
    });
    apply.finish();
}

fn repositories(c: &mut Criterion) {
    // One thread: every call is driven where it is made, as on a server worker.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sqlite = rt.block_on(support::sqlite()).unwrap();
    bench_backend(c, &rt, "sqlite", &sqlite);
    if let Some(postgres) = rt.block_on(support::postgres()) {
        bench_backend(c, &rt, "postgres", &postgres);
    }
}

criterion_group!(benches, repositories);
criterion_main!(benches);
