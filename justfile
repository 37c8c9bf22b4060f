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
bench-micro:
    cargo bench -p user-service-domain -p user-service-crypto -p user-service-persistence -- --warm-up-time 1 --measurement-time 3

# Format and lint.
lint:
    cargo fmt --all
    cargo clippy --workspace --all-targets -- -D warnings

# HTTP benchmark on loopback, SQLite and PostgreSQL: requests/s, p50/p99, errors, CPU µs per request
# of the service, PostgreSQL and the load generator, and the ratios to pgbench running the service's
# own statements (docs/benchmarking.md). E.g. `just bench 30 64 2000`, `just bench 10 "16 64" 1000 2`.
bench duration="10" connections="16 64" users="1000" replicas="1":
    DURATION={{duration}} CONNECTIONS="{{connections}}" USERS={{users}} REPLICAS={{replicas}} bash scripts/bench/run.sh

# The SQL the service sends for one GET and one PUT, beside what the benchmark's pgbench scripts send.
bench-statements:
    bash scripts/bench/capture.sh

# perf profile of the service under load (top symbols, flamegraph): SCENARIO=get|put BACKEND=postgres|sqlite.
profile scenario="get" duration="10" connections="64":
    SCENARIO={{scenario}} DURATION={{duration}} CONNECTIONS={{connections}} bash scripts/bench/profile.sh

# Instructions per request under callgrind (repeatable whatever the machine's load).
callgrind scenario="get" requests="1000":
    SCENARIO={{scenario}} REQUESTS={{requests}} bash scripts/bench/callgrind.sh

# Rotation throughput on PostgreSQL: `keys rotate` over N rows seeded like the Python service.
bench-rotation rows="100000":
    bash scripts/bench/rotation.sh {{rows}}

# Several replicas behind HAProxy on a PostgreSQL primary with a synchronous standby: key rotation,
# a wrong rotation, a killed replica, shared sign-in throttling and a failover, under load; one line
# per scenario (docs/operations.md). E.g. `just fleet`, `just fleet failover`.
fleet *scenarios:
    bash scripts/fleet/run.sh {{scenarios}}

# schemathesis against a real server: the served OpenAPI document must be exact (docs/contract.md).
schemathesis seconds="150":
    cargo build -q -p user-service
    bash scripts/schemathesis/run.sh {{seconds}}

# The order router's path end to end: user-service, the Binance stand-in and the client's example
# placing a test order through the signing route (docs/signing.md).
signing-demo:
    scripts/dev/signing_demo.sh
