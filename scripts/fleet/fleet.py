#!/usr/bin/env python3
"""The fleet harness: several replicas of the service, one PostgreSQL primary with a synchronous
streaming standby, HAProxy in front, a load that writes uniquely numbered credentials and reads
them back through the balancer, and the production scenarios of docs/operations.md run under it.

Everything runs on this machine, in a temporary folder, and is torn down at the end:

- PostgreSQL: a primary and a standby made with `pg_basebackup`, each its own cluster (initdb /
  pg_ctl of the installed server) on a free loopback port, `synchronous_standby_names = '*'` on
  the primary, so that an acknowledged commit is on the standby too;
- N replicas (default 3) of the service, `APP_ENV=production`, the key ring and the JWT secret in
  mounted-style files (`*_FILE`), `DATABASE_URL` naming both hosts with
  `target_session_attrs=read-write`;
- HAProxy (Debian's package) with health checks on `/ready`, layer-7 retries of requests that
  failed before an answer, and a JSON 503 with `Retry-After` when no replica is ready.

The load: a few client threads over keep-alive connections to the balancer. Each thread owns a
set of users, so every (user, broker) pair is written by one thread, in order. A write stores an
`api_key` whose last four characters (what the masked answer shows) encode the write's unique
number; a read checks every entry: status `ok` (never `undecryptable`) and the masked value of
the last acknowledged write (or of a later one whose answer was lost). A final sweep reads every
user back after the last scenario: an acknowledged write missing there is a lost write.

Scenarios, in this order (the last one leaves the standby as the primary):
  rotation        the five-step key rotation with ring files and SIGHUP, under load
  rotation-wrong  the old key removed too early on a new replica: /ready refuses it, the balancer
                  keeps serving from the others; then the rotation is finished properly
  replica-killed  one replica killed with SIGKILL under load, then started again
  sign-in         wrong passwords for one account: allowed attempts through the balancer with
                  all replicas equal those against one replica
  failover        the primary stopped (immediate), the standby promoted; writes succeed again
                  without restarting a replica; only 503 + Retry-After meanwhile

One line per scenario with its figures; exit status 1 on any violation. See docs/operations.md
("Many replicas" and "PostgreSQL failover").
"""

import argparse
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from platform_jwt import b64url, mint  # noqa: E402  (scripts/lib, shared by both harnesses)

BROKERS = ("binance", "kraken", "alpaca", "fleet-one")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SIGN_IN_ATTEMPTS_PER_ACCOUNT = 5  # ATTEMPTS_PER_ACCOUNT_AND_ADDRESS_PER_MINUTE
FAILOVER_WINDOW_LIMIT_S = 10.0
PASSWORD = "Fleet-Password-9!"


def log(message):
    print(f"fleet: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tag(number):
    """Four base-62 characters: what the masked answer shows of a value."""
    chars = []
    for _ in range(4):
        number, digit = divmod(number, 62)
        chars.append(BASE62[digit])
    return "".join(reversed(chars))


def get_json(port, path, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else None
    finally:
        conn.close()


def wait_for(what, predicate, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError, http.client.HTTPException) as error:
            last_error = error
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what} (last error: {last_error})")


class Postgres:
    """A primary and a synchronous streaming standby, each a cluster of its own."""

    def __init__(self, root):
        self.root = root
        self.bin = self._bindir()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.sockets = os.path.join(root, "pg-sockets")
        self.primary_dir = os.path.join(root, "pg-primary")
        self.standby_dir = os.path.join(root, "pg-standby")
        self.logs = os.path.join(root, "pg-logs")
        self.primary_port = free_port()
        self.standby_port = free_port()
        self.database = "fleet"

    @staticmethod
    def _bindir():
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
            candidate = out.stdout.strip()
            if os.path.exists(os.path.join(candidate, "initdb")):
                return candidate
        except (OSError, subprocess.CalledProcessError):
            pass
        versions = sorted(
            (d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int, reverse=True
        )
        return os.path.join("/usr/lib/postgresql", versions[0], "bin")

    def _run(self, *args, check=True):
        out = subprocess.run(
            self.as_postgres + [os.path.join(self.bin, args[0]), *args[1:]],
            capture_output=True, text=True,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {(out.stderr or out.stdout).strip()[-500:]}")
        return out

    def sql(self, port, statement, database="postgres"):
        out = subprocess.run(
            ["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             "-d", database, "-c", statement],
            capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()

    def url(self):
        return (
            f"postgres://postgres@127.0.0.1:{self.primary_port},127.0.0.1:{self.standby_port}"
            f"/{self.database}?target_session_attrs=read-write"
        )

    def start(self):
        for folder in (self.sockets, self.primary_dir, self.standby_dir, self.logs):
            os.makedirs(folder, mode=0o700)
            if self.as_postgres:
                shutil.chown(folder, "postgres")
        self._run("initdb", "-D", self.primary_dir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        with open(os.path.join(self.primary_dir, "postgresql.conf"), "a") as conf:
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockets}'\n"
                "fsync = off\nfull_page_writes = off\n"
                "wal_level = replica\nmax_wal_senders = 8\nwal_keep_size = '256MB'\n"
                "hot_standby = on\nmax_connections = 200\nshared_buffers = '64MB'\n"
            )
        self._pg_ctl(self.primary_dir, self.primary_port, "primary")
        self.sql(self.primary_port, f"CREATE DATABASE {self.database}")
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
                  "-D", self.standby_dir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
        self._pg_ctl(self.standby_dir, self.standby_port, "standby")
        wait_for(
            "the standby to stream",
            lambda: self.sql(self.primary_port, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1",
        )
        self.sql(self.primary_port, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.sql(self.primary_port, "SELECT pg_reload_conf()")
        wait_for(
            "the standby to be synchronous",
            lambda: self.sql(self.primary_port, "SELECT sync_state FROM pg_stat_replication") == "sync",
        )

    def _pg_ctl(self, datadir, port, name):
        self._run("pg_ctl", "-D", datadir, "-l", os.path.join(self.logs, f"{name}.log"), "-w",
                  "-o", f"-p {port} -k {self.sockets}", "start")

    def stop_primary(self):
        self._run("pg_ctl", "-D", self.primary_dir, "-m", "immediate", "-w", "stop")

    def promote_standby(self):
        self._run("pg_ctl", "-D", self.standby_dir, "-w", "promote")

    def stop_all(self):
        for datadir in (self.primary_dir, self.standby_dir):
            if os.path.exists(os.path.join(datadir, "postmaster.pid")):
                self._run("pg_ctl", "-D", datadir, "-m", "immediate", "-w", "stop", check=False)


class Fleet:
    """The service's replicas and the balancer in front of them."""

    def __init__(self, root, binary, database_url, replicas):
        self.root = root
        self.binary = binary
        self.database_url = database_url
        self.ring_file = os.path.join(root, "ring")
        self.jwt_file = os.path.join(root, "jwt-secret")
        self.jwt_secret = b64url(os.urandom(48))
        self.ports = [free_port() for _ in range(replicas)]
        self.processes = [None] * replicas
        self.balancer_port = free_port()
        self.haproxy = None
        self.haproxy_socket = os.path.join(root, "haproxy.sock")
        self.keys = []
        write_private(self.jwt_file, self.jwt_secret)

    def env(self, ring_file=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "JWT_", "DATABASE_", "SECRET_MANAGER"))}
        env.update(
            APP_ENV="production",
            HOST="127.0.0.1",
            DATABASE_URL=self.database_url,
            DATABASE_POOL_SIZE="8",
            BROKER_CREDENTIALS_ENCRYPTION_KEY_FILE=ring_file or self.ring_file,
            JWT_SECRET_FILE=self.jwt_file,
            TRUSTED_PROXIES="127.0.0.1",
            WORKERS="2",
            SHUTDOWN_TIMEOUT_SECS="5",
            RUST_LOG="info",
            USER_SERVICE_DATA_DIR=os.path.join(self.root, "data"),
        )
        return env

    def cli(self, *args, ring_file=None, stdin=None):
        return subprocess.run([self.binary, *args], env=self.env(ring_file), capture_output=True, text=True,
                              input=stdin)

    def generate_key(self):
        out = self.cli("keys", "generate")
        if out.returncode != 0:
            raise RuntimeError(f"keys generate failed: {out.stderr.strip()}")
        key = out.stdout.strip()
        self.keys.append(key)
        return key

    def write_ring(self, *keys, path=None):
        write_private(path or self.ring_file, ",".join(keys))

    def start_replica(self, index, ring_file=None):
        logfile = open(os.path.join(self.root, f"replica-{index + 1}.log"), "a")
        env = self.env(ring_file)
        env["PORT"] = str(self.ports[index])
        self.processes[index] = subprocess.Popen([self.binary], env=env, stdout=logfile, stderr=subprocess.STDOUT)
        logfile.close()

    def wait_listening(self, index):
        wait_for(f"replica {index + 1} to answer /health",
                 lambda: get_json(self.ports[index], "/health")[0] == 200, timeout=60)

    def ready(self, index):
        return get_json(self.ports[index], "/ready")

    def wait_ready(self, index, predicate=lambda body: True):
        def check():
            status, body = self.ready(index)
            return status == 200 and predicate(body)

        wait_for(f"replica {index + 1} to be ready", check, timeout=60)

    def stop_replica(self, index, sig=signal.SIGTERM):
        process = self.processes[index]
        process.send_signal(sig)
        process.wait(timeout=30)
        self.processes[index] = None

    def reload_all(self):
        for process in self.processes:
            process.send_signal(signal.SIGHUP)

    def start_balancer(self):
        errorfile = os.path.join(self.root, "503.http")
        body = json.dumps({"detail": "Service temporarily unavailable; retry later", "code": "service_unavailable"})
        with open(errorfile, "w") as f:
            f.write(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                "Cache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}"
            )
        servers = "\n".join(
            f"  server r{i + 1} 127.0.0.1:{port} check" for i, port in enumerate(self.ports)
        )
        config = os.path.join(self.root, "haproxy.cfg")
        with open(config, "w") as f:
            with open(HAPROXY_TEMPLATE) as template:
                text = template.read()
            f.write(text.format(
                socket=self.haproxy_socket, port=self.balancer_port, errorfile=errorfile, servers=servers,
            ))
        logfile = open(os.path.join(self.root, "haproxy.log"), "a")
        self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", config], stdout=logfile, stderr=subprocess.STDOUT)
        logfile.close()
        wait_for("every replica UP in HAProxy", lambda: all(s == "UP" for s in self.balancer_states().values()))

    def balancer_states(self):
        """`{server: UP|DOWN|…}` from HAProxy's stats socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(self.haproxy_socket)
            s.sendall(b"show stat\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        states = {}
        lines = raw.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            fields = dict(zip(header, line.split(",")))
            if fields.get("pxname") == "replicas" and fields.get("svname", "").startswith("r"):
                states[fields["svname"]] = fields["status"].split(" ")[0]
        return states

    def stop_all(self):
        for i, process in enumerate(self.processes):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
            self.processes[i] = None
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait()


HAPROXY_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "haproxy.cfg")


def write_private(path, content):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content + "\n")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = 0
            self.failures = []  # (time, method, status or error, retry_after)
            self.undecryptable = 0
            self.mismatches = []
            self.acks = 0

    def snapshot(self):
        with self.lock:
            return dict(requests=self.requests, failures=list(self.failures), undecryptable=self.undecryptable,
                        mismatches=list(self.mismatches), acks=self.acks)


class Pair:
    """What one (user, broker) pair must read as: the last acknowledged write, or a later one
    whose answer was lost."""

    __slots__ = ("acked", "pending")

    def __init__(self):
        self.acked = None
        self.pending = []

    def accepts(self, shown):
        if shown is None:
            return self.acked is None
        if self.acked is not None and tag(self.acked) == shown:
            return True
        for i, number in enumerate(self.pending):
            if tag(number) == shown:
                self.acked, self.pending = number, self.pending[i + 1:]
                return True
        return False


class Load:
    """Client threads writing and reading credentials through the balancer."""

    def __init__(self, port, hot, cold, threads, stats):
        self.port = port
        self.stats = stats
        self.stop = threading.Event()
        self.numbers = itertools.count(1)
        self.cold = cold
        self.owned = [list(hot.items())[i::threads] for i in range(threads)]
        self.pairs = {(user, broker): Pair() for user in (*hot, *cold) for broker in BROKERS}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        self.running = threading.Event()
        self.running.set()
        self.parked = 0
        self.parking = threading.Condition()

    def start(self):
        for t in self.threads:
            t.start()

    def pause(self):
        """Holds every thread between two requests (none in flight), for a sweep."""
        self.running.clear()
        with self.parking:
            self.parking.wait_for(lambda: self.parked == len(self.threads) or self.stop.is_set(), timeout=30)

    def resume(self):
        self.running.set()

    def _park(self):
        if self.running.is_set():
            return
        with self.parking:
            self.parked += 1
            self.parking.notify_all()
        self.running.wait()
        with self.parking:
            self.parked -= 1

    def finish(self):
        self.stop.set()
        self.running.set()
        for t in self.threads:
            t.join(timeout=30)

    def _connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)

    def _request(self, conn, method, path, token, body=None):
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("Retry-After"), response.read()

    def seed_cold(self):
        """Writes every broker of the cold users once: rows the load does not rewrite, which a
        rotation has to move and a wrong ring cannot read."""
        conn = self._connect()
        for user, token in self.cold.items():
            numbers = {broker: next(self.numbers) for broker in BROKERS}
            body = json.dumps({"credentials": [
                {"broker": b, "api_key": f"fleet-key-{n}-{tag(n)}", "api_secret": f"fleet-secret-{n}-{tag(n)}"}
                for b, n in numbers.items()
            ]})
            status, _, raw = self._request(conn, "PUT", "/users/me/broker-credentials", token, body)
            if status != 200:
                raise RuntimeError(f"seeding cold user {user} answered {status}: {raw[:200]!r}")
            for broker, number in numbers.items():
                self.pairs[(user, broker)].acked = number
        conn.close()

    def _run(self, index):
        conn = self._connect()
        conn.connect()
        users = self.owned[index]
        for step in itertools.count():
            if self.stop.is_set():
                break
            self._park()
            # Writes and reads alternate; each write is read back by the next request, then the
            # thread moves to its next user, and to the next broker once every user had one.
            write = step % 2 == 0
            n = step // 2
            user, token = users[n % len(users)]
            broker = BROKERS[(n // len(users)) % len(BROKERS)]
            pair = self.pairs[(user, broker)]
            number = next(self.numbers) if write else None
            local = conn.sock.getsockname()[1] if conn.sock else "-"
            try:
                if write:
                    body = json.dumps({"credentials": [{
                        "broker": broker, "api_key": f"fleet-key-{number}-{tag(number)}",
                        "api_secret": f"fleet-secret-{number}-{tag(number)}",
                    }]})
                    pair.pending.append(number)
                    status, retry_after, raw = self._request(conn, "PUT", "/users/me/broker-credentials", token, body)
                else:
                    status, retry_after, raw = self._request(conn, "GET", "/users/me/broker-credentials", token)
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                conn = self._connect()
                self._failed("PUT" if write else "GET", f"{type(error).__name__} (client port {local})", None)
                continue
            if status != 200:
                self._failed("PUT" if write else "GET", status, retry_after)
                continue
            if write:
                pair.acked, pair.pending = number, [n for n in pair.pending if n > number]
            self._check(user, json.loads(raw)["credentials"], write)

    def _failed(self, method, what, retry_after):
        with self.stats.lock:
            self.stats.requests += 1
            self.stats.failures.append((time.monotonic(), method, what, retry_after))

    def _check(self, user, entries, acked_write):
        undecryptable = 0
        mismatches = []
        seen = {}
        for entry in entries:
            if entry.get("status") != "ok":
                undecryptable += 1
            masked = entry.get("api_key_masked")
            seen[entry["broker"]] = masked[-4:] if masked else None
        for broker in BROKERS:
            if not self.pairs[(user, broker)].accepts(seen.get(broker)):
                mismatches.append((user, broker, seen.get(broker)))
        with self.stats.lock:
            self.stats.requests += 1
            self.stats.acks += int(acked_write)
            self.stats.undecryptable += undecryptable
            self.stats.mismatches.extend(mismatches)

    def sweep(self, tokens):
        """Reads every user back; returns (users read, lost writes, undecryptable, errors)."""
        conn = self._connect()
        lost = undecryptable = errors = 0
        for user, token in tokens.items():
            status, _, raw = self._request(conn, "GET", "/users/me/broker-credentials", token)
            if status != 200:
                errors += 1
                continue
            entries = {e["broker"]: e for e in json.loads(raw)["credentials"]}
            for broker in BROKERS:
                pair = self.pairs[(user, broker)]
                entry = entries.get(broker)
                if entry is not None and entry.get("status") != "ok":
                    undecryptable += 1
                masked = entry.get("api_key_masked") if entry else None
                if not pair.accepts(masked[-4:] if masked else None):
                    lost += 1
        conn.close()
        return len(tokens), lost, undecryptable, errors


class Harness:
    def __init__(self, args):
        self.args = args
        self.root = tempfile.mkdtemp(prefix="user-service-fleet.")
        os.chmod(self.root, 0o755)
        self.pg = Postgres(self.root)
        self.fleet = None
        self.stats = Stats()
        self.load = None
        self.tokens = {}
        self.results = []
        self.violations = []

    # ---- set-up -------------------------------------------------------------------------------

    def setup(self):
        started = time.monotonic()
        self.pg.start()
        self.fleet = Fleet(self.root, self.args.binary, self.pg.url(), self.args.replicas)
        migrated = self.fleet.cli("migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"migrate failed: {migrated.stderr.strip()}")
        old = self.fleet.generate_key()
        self.fleet.write_ring(old)
        for i in range(self.args.replicas):
            self.fleet.start_replica(i)
        for i in range(self.args.replicas):
            self.fleet.wait_ready(i)
        self.fleet.start_balancer()
        ids = self.pg.sql(
            self.pg.primary_port,
            "INSERT INTO users (email, is_active) SELECT 'fleet' || g || '@example.com', TRUE "
            f"FROM generate_series(1, {self.args.users + self.args.cold_users}) g RETURNING id",
            self.pg.database,
        ).split()
        self.tokens = {int(i): mint(self.fleet.jwt_secret, i) for i in ids}
        users = list(self.tokens.items())
        hot, cold = dict(users[: self.args.users]), dict(users[self.args.users:])
        self.load = Load(self.fleet.balancer_port, hot, cold, self.args.threads, self.stats)
        self.load.seed_cold()
        log(f"set up in {time.monotonic() - started:.1f} s: PostgreSQL primary :{self.pg.primary_port} "
            f"+ synchronous standby :{self.pg.standby_port}, {self.args.replicas} replicas "
            f"{self.fleet.ports}, HAProxy :{self.fleet.balancer_port}, {len(hot)} users under load and "
            f"{len(cold)} written once, "
            f"{self.args.threads} client threads; work folder {self.root}")

    def teardown(self):
        if self.load is not None:
            self.load.finish()
        if self.fleet is not None:
            self.fleet.stop_all()
        self.pg.stop_all()
        if self.args.keep:
            log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------------------------

    def dwell(self, seconds):
        """Lets the load run for a while between two steps of a scenario."""
        time.sleep(seconds)

    def reload_and_wait(self, predicate):
        self.fleet.reload_all()
        for i in range(self.args.replicas):
            self.fleet.wait_ready(i, predicate)

    def expect(self, condition, message):
        if not condition:
            self.violations.append(message)
            log(f"VIOLATION: {message}")

    def report(self, name, extra="", allow_503=False, window_from=None):
        self.load.pause()
        try:
            _, lost, sweep_undecryptable, sweep_errors = self.load.sweep(self.tokens)
        finally:
            self.load.resume()
        snap = self.stats.snapshot()
        failures = snap["failures"]
        tolerated = [f for f in failures if allow_503 and f[2] == 503 and f[3] is not None]
        hard = [f for f in failures if f not in tolerated]
        window = "-"
        if window_from is not None and failures:
            window = f"{max(f[0] for f in failures) - window_from:.2f}s"
        line = (f"{name:<15} requests={snap['requests']} writes_acked={snap['acks']} "
                f"failed={len(hard)} retry_503={len(tolerated)} undecryptable={snap['undecryptable']} "
                f"mismatched={len(snap['mismatches'])} lost={lost} window={window}{extra}")
        print(f"fleet: {line}", flush=True)
        self.results.append(line)
        kinds = sorted({f"{f[1]} {f[2]}" for f in hard})
        self.expect(not hard, f"{name}: {len(hard)} failed request(s): {', '.join(kinds)}")
        self.expect(snap["undecryptable"] == 0, f"{name}: {snap['undecryptable']} entries read as undecryptable")
        self.expect(not snap["mismatches"], f"{name}: reads disagree with acknowledged writes: {snap['mismatches'][:3]}")
        self.expect(snap["requests"] > 0, f"{name}: no request was made")
        self.expect(lost == 0, f"{name}: {lost} acknowledged write(s) missing when every user was read back")
        self.expect(sweep_undecryptable == 0 and sweep_errors == 0,
                    f"{name}: read-back found {sweep_undecryptable} undecryptable, {sweep_errors} errors")
        self.stats.reset()

    # ---- scenarios ----------------------------------------------------------------------------

    def rotation(self):
        """docs/operations.md, "Zero-downtime key rotation", the five steps, under load."""
        old = self.fleet.keys[-1]
        new = self.fleet.generate_key()
        self.stats.reset()
        self.dwell(1.0)
        # 1. Add the new key, decrypt-only, everywhere.
        self.fleet.write_ring(old, new)
        self.reload_and_wait(lambda body: len(body["key_ids"]) == 2)
        _, body = self.fleet.ready(0)
        old_id, new_id = body["key_ids"]
        self.dwell(0.5)
        # 2. Promote.
        self.fleet.write_ring(new, old)
        self.reload_and_wait(lambda body: body["primary_key_id"] == new_id)
        self.dwell(0.5)
        # 3. Re-encrypt.
        rotated = self.fleet.cli("keys", "rotate")
        self.expect(rotated.returncode == 0, f"rotation: keys rotate failed: {rotated.stderr.strip()[-300:]}")
        # 4. Verify.
        verified = self.fleet.cli("keys", "verify")
        self.expect(verified.returncode == 0 and f"rows on key {old_id}" not in verified.stdout,
                    f"rotation: keys verify: {verified.stdout.strip()[-300:]} {verified.stderr.strip()[-300:]}")
        # 5. Remove the old key.
        self.fleet.write_ring(new)
        self.reload_and_wait(lambda body: body["key_ids"] == [new_id] and body["rows_on_retired_keys"] == 0)
        self.dwell(1.0)
        self.report("rotation", f" keys={old_id[:8]}→{new_id[:8]}")

    def rotation_wrong(self):
        """Step 5 done before step 3: a new replica with the old key removed is refused by
        /ready and gets no traffic; the rotation is then finished properly."""
        current = self.fleet.keys[-1]
        newer = self.fleet.generate_key()
        last = self.args.replicas - 1
        self.stats.reset()
        self.fleet.write_ring(current, newer)
        self.reload_and_wait(lambda body: len(body["key_ids"]) == 2)
        _, body = self.fleet.ready(0)
        current_id, newer_id = body["key_ids"]
        self.fleet.write_ring(newer, current)
        self.reload_and_wait(lambda body: body["primary_key_id"] == newer_id)
        self.dwell(0.5)
        # The mistake: a replica rolled out with the new key only, rows still on the old one.
        wrong_ring = os.path.join(self.root, "ring-wrong")
        self.fleet.write_ring(newer, path=wrong_ring)
        self.fleet.stop_replica(last)
        self.fleet.start_replica(last, ring_file=wrong_ring)
        self.fleet.wait_listening(last)
        status, body = self.fleet.ready(last)
        refused = status == 503 and body.get("rows_on_retired_keys", 0) > 0
        self.expect(refused, f"rotation-wrong: the new replica's /ready answered {status} {body}")
        self.dwell(1.5)
        state = self.fleet.balancer_states().get(f"r{last + 1}")
        self.expect(state == "DOWN", f"rotation-wrong: HAProxy holds the refused replica as {state}")
        # Put it right: the new replica gets the promoted ring, then steps 3-5.
        self.fleet.stop_replica(last)
        self.fleet.start_replica(last)
        self.fleet.wait_ready(last)
        wait_for("the replica back in HAProxy", lambda: self.fleet.balancer_states().get(f"r{last + 1}") == "UP")
        rotated = self.fleet.cli("keys", "rotate")
        self.expect(rotated.returncode == 0, f"rotation-wrong: keys rotate failed: {rotated.stderr.strip()[-300:]}")
        self.fleet.write_ring(newer)
        self.reload_and_wait(lambda body: body["key_ids"] == [newer_id] and body["rows_on_retired_keys"] == 0)
        self.dwell(0.5)
        self.report("rotation-wrong", f" refused_replica_ready={status} balancer_state={state}")

    def replica_killed(self):
        victim = 1 if self.args.replicas > 1 else 0
        self.stats.reset()
        self.dwell(1.0)
        killed_at = time.monotonic()
        self.fleet.stop_replica(victim, signal.SIGKILL)
        wait_for("HAProxy to mark the killed replica DOWN",
                 lambda: self.fleet.balancer_states().get(f"r{victim + 1}") == "DOWN")
        detected = time.monotonic() - killed_at
        self.dwell(1.5)
        self.fleet.start_replica(victim)
        self.fleet.wait_ready(victim)
        wait_for("the restarted replica UP", lambda: self.fleet.balancer_states().get(f"r{victim + 1}") == "UP")
        self.dwell(0.5)
        self.report("replica-killed", f" marked_down_after={detected:.2f}s")

    def sign_in(self):
        """The attempts allowed for one account are the same through the balancer (all
        replicas) as against one replica."""
        def allowed(port, email):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = json.dumps({"email": email, "password": "Wrong-password-0!"})
            answered = []
            for _ in range(SIGN_IN_ATTEMPTS_PER_ACCOUNT * self.args.replicas + 1):
                conn.request("POST", "/auth/login", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                answered.append((response.status, response.getheader("Retry-After")))
                if [status for status, _ in answered].count(429) == 2:
                    break
            conn.close()
            statuses = [s for s, _ in answered]
            first_refusal = statuses.index(429) if 429 in statuses else len(statuses)
            refusals_have_retry_after = all(r is not None for s, r in answered if s == 429)
            return first_refusal, statuses, refusals_have_retry_after

        for email in ("one-replica@example.com", "all-replicas@example.com"):
            made = self.fleet.cli("users", "create", "--email", email, "--password", PASSWORD)
            self.expect(made.returncode == 0, f"sign-in: users create failed: {made.stderr.strip()[-200:]}")
        one, statuses_one, retry_one = allowed(self.fleet.ports[0], "one-replica@example.com")
        many, statuses_many, retry_many = allowed(self.fleet.balancer_port, "all-replicas@example.com")
        line = (f"{'sign-in':<15} allowed_one_replica={one} allowed_through_balancer={many} "
                f"replicas={self.args.replicas} expected={SIGN_IN_ATTEMPTS_PER_ACCOUNT}")
        print(f"fleet: {line}", flush=True)
        self.results.append(line)
        self.expect(one == many == SIGN_IN_ATTEMPTS_PER_ACCOUNT,
                    f"sign-in: allowed {one} against one replica, {many} through the balancer "
                    f"(answers {statuses_one} / {statuses_many})")
        self.expect(set(statuses_one + statuses_many) <= {401, 429}, "sign-in: answers other than 401/429")
        self.expect(retry_one and retry_many, "sign-in: a 429 without Retry-After")

    def failover(self):
        self.stats.reset()
        self.dwell(1.0)
        stopped_at = time.monotonic()
        self.pg.stop_primary()
        self.pg.promote_standby()
        promoted = time.monotonic() - stopped_at

        def written_since():
            # A write acknowledged after the stop, by any thread.
            return self.stats.snapshot()["acks"] > acks_at_stop

        acks_at_stop = self.stats.snapshot()["acks"]
        wait_for("a write to succeed on the promoted standby", written_since,
                 timeout=FAILOVER_WINDOW_LIMIT_S + 5)
        first_write = time.monotonic() - stopped_at
        self.dwell(2.0)
        snap = self.stats.snapshot()
        after = [f for f in snap["failures"] if f[0] >= stopped_at]
        window = max((f[0] for f in after), default=stopped_at) - stopped_at
        self.expect(window < FAILOVER_WINDOW_LIMIT_S,
                    f"failover: failures for {window:.2f} s after the primary stopped")
        self.expect(first_write < FAILOVER_WINDOW_LIMIT_S,
                    f"failover: first write {first_write:.2f} s after the primary stopped")
        self.report("failover", f" promoted_after={promoted:.2f}s first_write_after={first_write:.2f}s",
                    allow_503=True, window_from=stopped_at)

    def final(self):
        self.load.finish()
        users, lost, undecryptable, errors = self.load.sweep(self.tokens)
        verified = self.fleet.cli("keys", "verify")
        acked = sum(1 for p in self.load.pairs.values() if p.acked is not None)
        line = (f"{'final':<15} users={users} pairs_written={acked} lost={lost} undecryptable={undecryptable} "
                f"read_errors={errors} keys_verify={'ok' if verified.returncode == 0 else 'FAILED'}")
        print(f"fleet: {line}", flush=True)
        self.results.append(line)
        self.expect(lost == 0, f"final: {lost} acknowledged write(s) lost")
        self.expect(undecryptable == 0 and errors == 0, f"final: {undecryptable} undecryptable, {errors} read errors")
        self.expect(verified.returncode == 0, f"final: keys verify: {verified.stdout.strip()[-300:]}")
        self.check_logs()

    def check_logs(self):
        """No key, JWT secret, token (nor a token's signature alone) or stored value in any log the
        fleet wrote."""
        tokens = list(self.tokens.values())
        secrets = list(self.fleet.keys) + [self.fleet.jwt_secret] + tokens + [t.rsplit(".", 1)[-1] for t in tokens]
        pattern = re.compile(r"fleet-(key|secret)-\d+")
        logs = [os.path.join(d, n) for d, _, names in os.walk(self.root) for n in names if n.endswith(".log")]
        for name in sorted(logs):
            with open(name, errors="replace") as f:
                text = f.read()
            leaked = [s[:6] + "…" for s in secrets if s in text]
            self.expect(not leaked and not pattern.search(text), f"logs: {name} holds a secret ({leaked})")

    def run(self):
        scenarios = {
            "rotation": self.rotation,
            "rotation-wrong": self.rotation_wrong,
            "replica-killed": self.replica_killed,
            "sign-in": self.sign_in,
            "failover": self.failover,
        }
        chosen = self.args.scenarios or list(scenarios)
        self.setup()
        self.load.start()
        for name in chosen:
            started = time.monotonic()
            try:
                scenarios[name]()
            except Exception as error:  # a scenario that cannot finish is a violation, not a crash
                self.expect(False, f"{name}: {type(error).__name__}: {error}")
            log(f"{name} took {time.monotonic() - started:.1f} s")
        self.final()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.environ.get("USER_SERVICE_BIN", "target/debug/user-service"))
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--cold-users", type=int, default=200, help="users written once, before the scenarios")
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    parser.add_argument("scenarios", nargs="*", help="rotation rotation-wrong replica-killed sign-in failover")
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)
    for tool in ("haproxy", "psql", "runuser" if os.geteuid() == 0 else "psql"):
        if shutil.which(tool) is None:
            sys.exit(f"fleet: {tool} is not installed (scripts/fleet/run.sh installs what is missing)")
    harness = Harness(args)
    started = time.monotonic()
    try:
        harness.run()
    except Exception as error:
        harness.violations.append(f"set-up: {type(error).__name__}: {error}")
        log(f"VIOLATION: set-up: {error}")
    finally:
        harness.teardown()
    log(f"finished in {time.monotonic() - started:.1f} s")
    if harness.violations:
        log(f"{len(harness.violations)} violation(s):")
        for v in harness.violations:
            log(f"  - {v}")
        sys.exit(1)
    log("every scenario held")


if __name__ == "__main__":
    main()
