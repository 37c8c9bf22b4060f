#!/usr/bin/env python3
"""Prints the table and the ratios of one scripts/bench/run.sh run from its JSON-lines results.

  report.py RESULTS [NOTES...]

The budgets printed beside the figures are the project's (docs/benchmarking.md says where they
come from and how to read them).
"""

import json
import sys

LABELS = {
    "get": "GET list (service)",
    "put": "PUT one (service)",
    "pgbench-list": "list query (pgbench)",
    "pgbench-write": "write txn (pgbench)",
    "floor-get": "GET floor (HTTP + DB)",
    "floor-put": "PUT floor (HTTP + DB)",
    "floor-http-get": "GET floor (HTTP only)",
}
PAIRS = [("get", "pgbench-list", "GET list"), ("put", "pgbench-write", "PUT one")]
CPU_BUDGET_US = {"get": 40, "put": 80}
THROUGHPUT_BUDGET = 0.5
P99_BUDGET_MS = 25
P99_AT = 64


def fmt(value, digits=0, width=7):
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width},.{digits}f}"


def verdict(ok):
    return "met" if ok else "NOT MET"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    if not rows:
        sys.exit("no results")
    print()
    print(
        f"{'backend':<9}{'load':<23}{'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" | CPU µs per request: {'service':>7} {'postgres':>8} {'loadgen':>7} {'kernel':>7} {'other':>7}"
    )
    print("-" * 125)
    for row in rows:
        print(
            f"{row['backend']:<9}{LABELS.get(row['scenario'], row['scenario']):<23}{row['connections']:>5} "
            f"{fmt(row['rate'], 0, 8)} {fmt(row['p50_ms'], 1)} {fmt(row['p99_ms'], 1)} {row['errors']:>6}"
            f" | {'':<20}{fmt(row['service_us'])} {fmt(row['postgres_us'], 0, 8)} "
            f"{fmt(row['generator_us'])} {fmt(row.get('kernel_us'))} {fmt(row['other_us'])}"
        )
        if len(row.get("service_us_each") or {}) > 1:
            each = ", ".join(
                f"{name}: {row['service_requests_each'][name]:,} requests, {us:.0f} µs/request"
                for name, us in row["service_us_each"].items()
            )
            print(f"{'':<9}  per process: {each}")
        if row["errors"] and row.get("codes"):
            print(f"{'':<9}  errors by status or socket error: {row['codes']}")
    print()

    def find(backend, scenario, connections):
        for row in rows:
            if (row["backend"], row["scenario"], row["connections"]) == (backend, scenario, connections):
                return row
        return None

    lines = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        for service, direct, name in PAIRS:
            for connections in sorted({r["connections"] for r in rows if r["backend"] == backend}):
                s = find(backend, service, connections)
                d = find(backend, direct, connections)
                if not s or not d:
                    continue
                ratio = s["rate"] / d["rate"] if d["rate"] else 0
                pg = (
                    f"; PostgreSQL CPU per request {s['postgres_us'] / d['postgres_us']:.2f}x pgbench's"
                    if s["postgres_us"] and d["postgres_us"]
                    else ""
                )
                lines.append(
                    f"  {backend} {name:<8} / pgbench, {connections:>3} connections: throughput "
                    f"{ratio:.2f} (budget >= {THROUGHPUT_BUDGET} at 64: "
                    f"{verdict(ratio >= THROUGHPUT_BUDGET) if connections == P99_AT else 'informative'}){pg}"
                )
    if lines:
        print("Ratios, same run (service requests/s ÷ pgbench transactions/s at the same concurrency):")
        print("\n".join(lines))
        print()

    floor_lines = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        for scenario, name in (("get", "GET"), ("put", "PUT")):
            for connections in sorted({r["connections"] for r in rows if r["backend"] == backend}):
                s = find(backend, scenario, connections)
                f = find(backend, f"floor-{scenario}", connections)
                if not s or not f or s["service_us"] is None or f["service_us"] is None:
                    continue
                h = find(backend, f"floor-http-{scenario}", connections)
                http = f"; HTTP alone {h['service_us']:.0f} µs" if h and h["service_us"] is not None else ""
                floor_lines.append(
                    f"  {backend} {name} c={connections:<3} service {s['service_us']:.0f} µs = floor "
                    f"{f['service_us']:.0f} µs (same server, pool and statements{http}) + "
                    f"{s['service_us'] - f['service_us']:.0f} µs of the service's own work; floor "
                    f"throughput {f['rate'] / s['rate']:.2f}x the service's"
                )
    if floor_lines:
        print("Floor (crates/app/examples/floor.rs), service CPU per request:")
        print("\n".join(floor_lines))
        print()

    print("Per-request budgets:")
    for row in rows:
        if row["scenario"] in CPU_BUDGET_US and row["service_us"] is not None:
            budget = CPU_BUDGET_US[row["scenario"]]
            extra = ""
            if row["connections"] == P99_AT and row["p99_ms"] is not None:
                extra = f"; p99 {row['p99_ms']:.1f} ms (budget <= {P99_BUDGET_MS}: {verdict(row['p99_ms'] <= P99_BUDGET_MS)})"
            print(
                f"  {row['backend']:<8} {LABELS[row['scenario']]:<20} c={row['connections']:<3} service CPU "
                f"{row['service_us']:.0f} µs (budget <= {budget}: {verdict(row['service_us'] <= budget)}); "
                f"errors {row['errors']} ({verdict(row['errors'] == 0)}){extra}"
            )
    checks = []
    for row in rows:
        advanced = row.get("versions_advanced")
        if advanced is None:
            continue
        if row["scenario"] == "put":
            ok = row["requests"] - row["errors"]
            # Requests in flight when wrk stops are served and written but not counted by wrk:
            # at most one per connection.
            in_flight = advanced - ok
            sound = 0 <= in_flight <= row["connections"]
            checks.append(
                f"  {row['backend']} PUT c={row['connections']}: {ok:,} PUTs answered 2xx, rows' versions "
                f"advanced {advanced:,}"
                + (f" ({in_flight} in flight when wrk stopped)" if sound else "  <-- MISMATCH: a write was lost or doubled")
            )
        elif row["scenario"] == "pgbench-write":
            missed = row["requests"] - advanced
            checks.append(
                f"  {row['backend']} pgbench write c={row['connections']}: {row['requests']:,} transactions, "
                f"{missed:,} UPDATEs matched no row (another client changed the row first: cheaper, "
                f"so the pgbench rate is slightly flattered)"
            )
    if checks:
        print()
        print("Writes:")
        print("\n".join(checks))
    busy = [r for r in rows if r["other_us"] is not None and r["service_us"] and r["other_us"] > 0.25 * r["service_us"]]
    busy += [r for r in rows if r["other_us"] is not None and not r["service_us"] and r["postgres_us"] and r["other_us"] > 0.25 * r["postgres_us"]]
    if busy:
        print()
        print(
            f"WARNING: something else used the CPU during {len(busy)} measurement(s) (column 'other'): "
            "absolute rates are depressed there; ratios taken in the same run stay comparable only if "
            "both sides were hit alike."
        )
    foreign = [r for r in rows if (r.get("foreign_transactions") or 0) > 0.01 * r["requests"]]
    if foreign:
        print()
        print(
            "WARNING: other databases of the PostgreSQL cluster ran transactions during "
            + ", ".join(
                f"{r['backend']} {r['scenario']} c={r['connections']} ({r['foreign_transactions']:,})"
                for r in foreign
            )
            + ": their work is in the 'postgres' column there."
        )
    for path in sys.argv[2:]:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
        except FileNotFoundError:
            continue
        if text:
            print()
            print(text)


if __name__ == "__main__":
    main()
