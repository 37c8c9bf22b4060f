//! Benchmarks of the key ring: encryption, decryption (also under the last key of a ring) and
//! row binding. `Throughput::Elements(1)` makes criterion print operations per second.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secrecy::ExposeSecret;
use user_service_crypto::KeyRing;
use user_service_domain::ports::CredentialCipher;
use user_service_domain::test_support::stored_row;
use user_service_domain::{BindingCheck, PlainSecret, UserId};

const SECRET_64: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYwJalrXUtnFEMI/K7MDENG/bP";

fn new_ring(keys: usize) -> (KeyRing, Vec<String>) {
    let keys: Vec<String> = (0..keys)
        .map(|_| KeyRing::generate_key().expose_secret().to_owned())
        .collect();
    (keys.join(",").parse().unwrap(), keys)
}

fn cipher(c: &mut Criterion) {
    assert_eq!(SECRET_64.len(), 64);
    let mut group = c.benchmark_group("crypto");
    group.throughput(Throughput::Elements(1));

    let (ring, _) = new_ring(1);
    let secret = PlainSecret::new(SECRET_64);
    group.bench_function("encrypt 64-byte secret", |b| {
        b.iter(|| ring.encrypt(black_box(&secret)).unwrap())
    });

    let token = ring.encrypt(&secret).unwrap().token;
    group.bench_function("decrypt 64-byte secret", |b| {
        b.iter(|| ring.decrypt(black_box(&token)).unwrap())
    });

    let (ring3, keys) = new_ring(3);
    let last: KeyRing = keys[2].parse().unwrap();
    let old_token = last.encrypt(&secret).unwrap().token;
    assert_eq!(
        ring3.decrypt(&old_token).unwrap().key_id,
        ring3.key_ids()[2]
    );
    group.bench_function("decrypt 64-byte secret, last key of 3", |b| {
        b.iter(|| ring3.decrypt(black_box(&old_token)).unwrap())
    });

    let api_key = ring
        .encrypt(&PlainSecret::new("AKIAIOSFODNN7EXAMPLE"))
        .unwrap()
        .token;
    let mut row = stored_row("binance", true, true, 3);
    row.user_id = UserId(42);
    row.api_key_encrypted = Some(api_key);
    row.api_secret_encrypted = Some(token.clone());
    row.key_id = Some(ring.primary_key_id());
    row.binding = Some(ring.bind(&row.binding_input()));
    assert_eq!(ring.verify_binding(&row), BindingCheck::Bound);
    group.bench_function("bind row", |b| {
        b.iter(|| ring.bind(black_box(&row.binding_input())))
    });
    group.bench_function("verify row binding", |b| {
        b.iter(|| assert_eq!(ring.verify_binding(black_box(&row)), BindingCheck::Bound))
    });
    group.bench_function("bind + verify row binding", |b| {
        b.iter(|| {
            let tag = ring.bind(black_box(&row.binding_input()));
            assert_eq!(ring.verify_binding(black_box(&row)), BindingCheck::Bound);
            tag
        })
    });
    group.finish();
}

criterion_group!(benches, cipher);
criterion_main!(benches);
