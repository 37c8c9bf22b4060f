# Longer recipes. The README's two commands need only cargo.

# Run the service locally (SQLite, development key).
run:
    APP_ENV=local cargo run

# All tests, as CI runs them.
test:
    cargo test --workspace

# What CI runs, on this checkout.
ci:
    bash .ci/run

# Criterion benchmarks of the domain, crypto and persistence paths (short settings).
bench:
    cargo bench -p user-service-domain -p user-service-crypto -p user-service-persistence -- --warm-up-time 1 --measurement-time 3

# Format and lint.
lint:
    cargo fmt --all
    cargo clippy --workspace --all-targets -- -D warnings

# HTTP load test on loopback (wrk + pgbench), SQLite and PostgreSQL: requests/s and p50/p99.
bench-http duration="15" connections="64" users="200":
    bash scripts/bench/run.sh {{duration}} {{connections}} {{users}}

# Rotation throughput on PostgreSQL: `keys rotate` over N rows seeded like the Python service.
bench-rotation rows="100000":
    bash scripts/bench/rotation.sh {{rows}}
