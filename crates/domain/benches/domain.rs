//! Benchmarks of the pure domain paths: masking and the update plan.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secrecy::SecretString;
use user_service_domain::test_support::stored_row;
use user_service_domain::{
    mask, plan_update, BrokerId, CredentialUpdate, SecretInput, StoredCredential,
};

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("domain");
    group.throughput(Throughput::Elements(1));
    let value = "AKIAIOSFODNN7EXAMPLEwJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY1234";
    group.bench_function("mask 64-char value", |b| b.iter(|| mask(black_box(value))));
    group.finish();
}

fn update_plan(c: &mut Criterion) {
    let stored: Vec<StoredCredential> = (0..5)
        .map(|i| StoredCredential {
            id: i,
            ..stored_row(&format!("broker-{i}"), true, true, 3)
        })
        .collect();
    let request: Vec<CredentialUpdate> = (0..10)
        .map(|i| CredentialUpdate {
            broker: BrokerId::parse(&format!("Broker-{i}")).unwrap(),
            trading_enabled: None,
            api_key: SecretInput::from_field(
                "api_key",
                Some(Some(SecretString::from(format!("key-{i}-abcdefgh")))),
            )
            .unwrap(),
            api_secret: if i % 3 == 0 {
                SecretInput::Clear
            } else {
                SecretInput::Keep
            },
        })
        .collect();
    let mut group = c.benchmark_group("domain");
    group.throughput(Throughput::Elements(1));
    group.bench_function("update plan for 10 entries", |b| {
        b.iter(|| plan_update(black_box(&stored), black_box(request.clone())).unwrap())
    });
    group.finish();
}

criterion_group!(benches, masking, update_plan);
criterion_main!(benches);
