#!/usr/bin/env python3
"""Runs one load command (wrk or pgbench) and measures what it cost, for scripts/bench/run.sh.

CPU is read from /proc over the command's lifetime (snapshot before it starts, after it exits):
  - each service process: utime + stime of /proc/<pid>/stat (all its threads);
  - PostgreSQL: the postmaster's own time, plus every child process's (backends, WAL writer,
    checkpointer, ...; a child that started in the window counts from zero), plus the growth of
    the postmaster's cutime + cstime (children that exited in the window, e.g. backends of a
    pgbench run), less what those exited children had already used at the first snapshot;
  - the load generator: its own rusage (wait4), at microsecond resolution;
  - "kernel": kernel threads (kthreadd's children: the filesystem journal, block I/O workers,
    ksoftirqd, ...), i.e. work the kernel does on nobody's account, mostly for durable writes (a
    commit's WAL flush ends in the journal). Interrupt time is not added: with tick-based
    accounting it is already charged to whichever process was interrupted (loopback TCP's
    softirq work thus lands on the sender: the service, PostgreSQL or the load generator);
  - "other": the machine's busy time from /proc/stat less all of the above, i.e. what anything
    else (builds, other tests) took from the same 2 cores during the measurement.
Each is divided by the requests (wrk) or transactions (pgbench) the command reported.

With --versions, also counts how far the credential rows' versions advanced during the command
(each successful write of one credential advances one row by exactly one): for the service's PUT
this must equal the 2xx answers, for pgbench's write script the difference is the number of
compare-and-set UPDATEs that matched no row.

Appends one JSON object to --results and prints one short line.
"""

import argparse
import glob
import json
import os
import re
import sqlite3
import subprocess
import sys
import time

TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime, starttime) in clock ticks."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        data = f.read()
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    rest = data[data.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]), int(rest[19])


def cluster_snapshot(postmaster):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, used, _, start = proc_stat(entry)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == postmaster:
            children[(int(entry), start)] = used
    _, own, reaped, _ = proc_stat(postmaster)
    return {"own": own, "reaped": reaped, "children": children}


def cluster_delta(before, after):
    total = (after["own"] - before["own"]) + (after["reaped"] - before["reaped"])
    for key, used in after["children"].items():
        total += used - before["children"].get(key, 0)
    for key, used in before["children"].items():
        if key not in after["children"]:
            # Exited in the window: its whole life is in the cutime growth; keep only the part
            # used inside the window.
            total -= used
    return total


def machine_busy():
    """Busy time of the whole machine, in clock ticks."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal


def kernel_threads():
    """{(pid, starttime): utime+stime} of kthreadd and its children."""
    threads = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, used, _, start = proc_stat(entry)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == 2 or entry == "2":
            threads[(int(entry), start)] = used
    return threads


def service_time(name, pid):
    try:
        return proc_stat(pid)[1]
    except OSError:
        sys.exit(f"measure: service {name} (pid {pid}) is gone: it exited or crashed during the measurement")


def snapshot(services, postmaster):
    return {
        "services": {name: service_time(name, pid) for name, pid in services},
        "cluster": cluster_snapshot(postmaster) if postmaster else None,
        "busy": machine_busy(),
        "kthreads": kernel_threads(),
        "time": time.monotonic(),
    }


def versions(database):
    """Sum of the credential rows' versions; `database` is a PostgreSQL URL or a SQLite path."""
    sql = "SELECT coalesce(sum(version), 0) FROM user_broker_credentials"
    if database.startswith(("postgres://", "postgresql://")):
        out = subprocess.run(["psql", "-qAtX", database, "-c", sql], check=True, capture_output=True, text=True)
        return int(out.stdout.strip())
    conn = sqlite3.connect(database, timeout=30)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def foreign_transactions(database):
    """Transactions PostgreSQL has counted in the cluster's other databases (other tests, other
    users): their work would show in the PostgreSQL column."""
    sql = (
        "SELECT coalesce(sum(xact_commit + xact_rollback), 0) FROM pg_stat_database "
        "WHERE datname IS DISTINCT FROM current_database()"
    )
    out = subprocess.run(["psql", "-qAtX", database, "-c", sql], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def parse_wrk(output):
    result = re.search(r"^RESULT (.*)$", output, re.M)
    if not result:
        raise ValueError("wrk printed no RESULT line")
    fields = dict(item.split("=", 1) for item in result.group(1).split())
    targets = [
        dict(item.split("=", 1) for item in line.split())
        for line in re.findall(r"^TARGET (.*)$", output, re.M)
    ]
    requests = int(fields["requests"])
    return {
        "requests": requests,
        "rate": requests / (int(fields["duration_us"]) / 1e6),
        "p50_ms": int(fields["p50_us"]) / 1000,
        "p99_ms": int(fields["p99_us"]) / 1000,
        "errors": int(fields["non2xx"]) + int(fields["socket_errors"]),
        "codes": fields.get("codes", ""),
        "targets": targets,
    }


def parse_pgbench(output, log_prefix):
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if not processed or not tps:
        raise ValueError("pgbench printed no result")
    failed = re.search(r"number of failed transactions: (\d+)", output)
    aborted = re.search(r"number of clients aborted: (\d+)", output)
    latencies = []
    for path in glob.glob(f"{log_prefix}.*"):
        with open(path, encoding="ascii") as f:
            for line in f:
                parts = line.split()
                # client_id transaction_no time script_no time_epoch time_us [...]
                if len(parts) >= 3 and parts[2].isdigit():
                    latencies.append(int(parts[2]))
        os.unlink(path)
    latencies.sort()

    def percentile(p):
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] / 1000

    return {
        "requests": int(processed.group(1)),
        "rate": float(tps.group(1)),
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "errors": (int(failed.group(1)) if failed else 0) + (int(aborted.group(1)) if aborted else 0),
        "codes": "",
        "targets": [],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="JSON-lines file to append to")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--kind", choices=["wrk", "pgbench"], required=True)
    parser.add_argument("--service", action="append", default=[], metavar="NAME=PID")
    parser.add_argument("--postmaster", type=int, default=0)
    parser.add_argument("--pgbench-log-prefix", default="")
    parser.add_argument("--output", help="file to keep the command's output in")
    parser.add_argument("--versions", metavar="DATABASE", help="PostgreSQL URL or SQLite path")
    parser.add_argument("--pg-activity", metavar="URL", help="count other databases' transactions")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    services = [(name, int(pid)) for name, pid in (s.split("=", 1) for s in args.service)]
    if args.postmaster and not os.path.exists(f"/proc/{args.postmaster}"):
        args.postmaster = 0

    versions_before = versions(args.versions) if args.versions else None
    foreign_before = foreign_transactions(args.pg_activity) if args.pg_activity else None
    before = snapshot(services, args.postmaster)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    after = snapshot(services, args.postmaster)
    versions_advanced = versions(args.versions) - versions_before if args.versions else None
    foreign = foreign_transactions(args.pg_activity) - foreign_before if args.pg_activity else None
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(output)
    code = os.waitstatus_to_exitcode(status)
    try:
        if args.kind == "wrk":
            result = parse_wrk(output)
        else:
            result = parse_pgbench(output, args.pgbench_log_prefix)
    except ValueError as error:
        sys.stderr.write(output)
        sys.exit(f"measure: {args.scenario}: {error} (exit code {code})")
    if args.kind == "pgbench" and code != 0 and result["errors"] == 0:
        result["errors"] = 1

    requests = max(result["requests"], 1)
    per_request = lambda ticks: ticks * TICK_US / requests  # noqa: E731
    service_ticks = {
        name: after["services"][name] - before["services"][name] for name, _ in services
    }
    cluster_ticks = cluster_delta(before["cluster"], after["cluster"]) if args.postmaster else None
    generator_us = (usage.ru_utime + usage.ru_stime) * 1e6
    busy_ticks = after["busy"] - before["busy"]
    kernel_ticks = sum(
        used - before["kthreads"].get(key, 0) for key, used in after["kthreads"].items()
    )
    known_us = (sum(service_ticks.values()) + (cluster_ticks or 0) + kernel_ticks) * TICK_US + generator_us
    # Requests each service process answered (wrk threads are pinned to one target each).
    per_service_requests = {}
    for index, (name, _) in enumerate(services):
        mine = [t for i, t in enumerate(result["targets"]) if i % len(services) == index]
        per_service_requests[name] = sum(int(t["responses"]) for t in mine) if mine else requests

    row = {
        "backend": args.backend,
        "scenario": args.scenario,
        "connections": args.connections,
        "kind": args.kind,
        "wall_s": after["time"] - before["time"],
        **{k: v for k, v in result.items() if k != "targets"},
        "service_us": per_request(sum(service_ticks.values())) if services else None,
        "service_us_each": {
            name: service_ticks[name] * TICK_US / max(per_service_requests[name], 1)
            for name, _ in services
        },
        "service_requests_each": per_service_requests,
        "postgres_us": per_request(cluster_ticks) if cluster_ticks is not None else None,
        "generator_us": generator_us / requests,
        "kernel_us": per_request(kernel_ticks),
        "other_us": (busy_ticks * TICK_US - known_us) / requests,
        "versions_advanced": versions_advanced,
        "foreign_transactions": foreign,
    }
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")

    def show(value, digits=0):
        return "-" if value is None else f"{value:.{digits}f}"

    print(
        f"  {args.backend:<8} {args.scenario:<16} c={args.connections:<3} "
        f"{result['rate']:>8.0f}/s p50 {show(result['p50_ms'], 1)} ms p99 {show(result['p99_ms'], 1)} ms "
        f"errors {result['errors']}{' (' + result['codes'] + ')' if result['codes'] else ''}  "
        f"µs/req: service {show(row['service_us'])} "
        f"postgres {show(row['postgres_us'])} loadgen {show(row['generator_us'])} "
        f"kernel {show(row['kernel_us'])} other {show(row['other_us'])}",
        flush=True,
    )


if __name__ == "__main__":
    main()
