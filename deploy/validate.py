#!/usr/bin/env python3
"""Validates the deployment files offline, without a Docker engine or a cluster.

    python3 deploy/validate.py [--verbose] [compose|k8s|dockerfile ...]

- compose: `docker compose config` (or the Python `docker-compose` v1, Debian's package) parses
  deploy/docker-compose.yml against the Compose schema; every required secret variable missing
  must stop it with its `:?` message; then the resolved file is checked against our rules.
- k8s: every manifest in deploy/k8s is validated against the Kubernetes JSON schemas shipped by
  the `kubernetes-validate` package (strict: unknown fields are errors), for the oldest and the
  newest Kubernetes version we support, then checked against our rules (probes, limits,
  non-root, read-only root, secret references, selectors). `kubectl kustomize` renders the
  kustomization when kubectl is installed.
- dockerfile: deploy/Dockerfile is parsed with BuildKit's parser (the `dockerfile` package) and
  checked: multi-stage, the build command's features exist, non-root user, HEALTHCHECK on
  /health, EXPOSE 8000, no secret-looking ENV or ARG; .dockerignore keeps secrets and builds out.

Prints every failed check (every check with --verbose) and a count per part; exits 1 when any
check failed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"

# The oldest Kubernetes minor we support, and the newest the schemas know.
OLDEST_KUBERNETES = "1.29"
# Secret variables the compose file must take from the environment (`${NAME:?message}`).
COMPOSE_SECRETS = ("BROKER_CREDENTIALS_ENCRYPTION_KEY", "JWT_SECRET", "POSTGRES_PASSWORD")
# A Fernet key: 32 bytes of url-safe base64. None may be committed in deploy/.
FERNET_KEY = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ENCRYPTION_KEY|API_KEY", re.IGNORECASE)

failures: list[str] = []
passed: list[str] = []
VERBOSE = False


def check(condition: bool, what: str) -> bool:
    """Records one check (printed when it fails, or always with --verbose); returns whether it
    passed."""
    if condition:
        passed.append(what)
        if VERBOSE:
            print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        failures.append(what)
    return condition


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def no_committed_key(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    check(not FERNET_KEY.search(text), f"{rel(path)}: no Fernet key committed")


# --- compose ---------------------------------------------------------------------------------


def compose_commands() -> list[list[str]]:
    """Every Compose implementation on this machine that can parse a file without an engine."""
    commands = []
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        commands.append([docker, "compose"])
    legacy = shutil.which("docker-compose")
    if legacy:
        commands.append([legacy])
    return commands


def compose_config(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    # A clean environment: only what the file is given here, so that a variable exported in
    # the caller's shell cannot hide a missing `:?`.
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
    return subprocess.run(
        [*command, "--project-directory", str(DEPLOY), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=DEPLOY,
        timeout=120,
    )


def validate_compose() -> None:
    no_committed_key(COMPOSE_FILE)
    commands = compose_commands()
    if not check(bool(commands), "a Compose implementation is installed (docker compose or docker-compose)"):
        return
    placeholders = {name: f"placeholder-{name.lower()}" for name in COMPOSE_SECRETS}
    resolved = None
    for command in commands:
        name = " ".join(Path(command[0]).name if i == 0 else part for i, part in enumerate(command))
        result = compose_config(command, placeholders)
        if not check(result.returncode == 0, f"{name} config accepts {rel(COMPOSE_FILE)}"):
            print(result.stderr.strip(), file=sys.stderr)
            continue
        resolved = yaml.safe_load(result.stdout)
        for missing in COMPOSE_SECRETS:
            env = {k: v for k, v in placeholders.items() if k != missing}
            result = compose_config(command, env)
            check(
                result.returncode != 0 and missing in result.stderr,
                f"{name} config stops with a message naming {missing} when it is unset",
            )
    if resolved is None:
        return
    services = resolved.get("services", {})
    service = services.get("user-service", {})
    postgres = services.get("postgres", {})
    migrate = services.get("migrate", {})
    environment = service.get("environment", {})
    check(service.get("container_name") == "user_service", "compose: the service's container is named user_service")
    for secret in ("BROKER_CREDENTIALS_ENCRYPTION_KEY", "JWT_SECRET"):
        check(
            environment.get(secret) == placeholders[secret],
            f"compose: {secret} comes from the environment (not written in the file)",
        )
    health = " ".join(service.get("healthcheck", {}).get("test", []))
    check("/health" in health, "compose: the service has a healthcheck on /health")
    check(bool(postgres.get("healthcheck", {}).get("test")), "compose: PostgreSQL has a healthcheck")
    check(migrate.get("command") == ["migrate"], "compose: a one-shot service runs `user-service migrate`")
    depends = service.get("depends_on", {})
    check(
        depends.get("migrate", {}).get("condition") == "service_completed_successfully",
        "compose: the service starts once the migrations completed",
    )
    volumes = resolved.get("volumes") or {}
    mounts = " ".join(str(v) for v in postgres.get("volumes", []))
    check(
        any(f"{volume}:" in mounts or f"'source': '{volume}'" in mounts for volume in volumes),
        "compose: PostgreSQL keeps its data in a named volume",
    )
    check(service.get("read_only") is True, "compose: the service's root filesystem is read-only")


# --- kubernetes ------------------------------------------------------------------------------


def k8s_documents() -> dict[Path, list[dict]]:
    documents = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents[path] = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return documents


def schema_check(path: Path, doc: dict, versions: list[str]) -> None:
    import kubernetes_validate

    # `generateName` resources (the Job started with `kubectl create`) have no name yet; the
    # validator needs one.
    data = dict(doc)
    metadata = dict(data.get("metadata") or {})
    metadata.setdefault("name", metadata.get("generateName", "x").rstrip("-") or "x")
    data["metadata"] = metadata
    what = f"{rel(path)}: {doc.get('kind')} {metadata['name']}"
    for version in versions:
        try:
            kubernetes_validate.validate(data, version, strict=True)
            check(True, f"{what} matches the Kubernetes {version} schema (strict)")
        except kubernetes_validate.ValidationError as error:
            location = "/".join(str(p) for p in error.path) if hasattr(error, "path") else ""
            check(False, f"{what} matches the Kubernetes {version} schema: {error.message} at {location}")
        except Exception as error:  # unknown kind or version: a failure too
            check(False, f"{what} matches the Kubernetes {version} schema: {type(error).__name__}: {error}")


def pod_spec(doc: dict) -> dict:
    spec = doc.get("spec", {})
    if doc.get("kind") == "Deployment" or doc.get("kind") == "Job":
        return spec.get("template", {}).get("spec", {})
    return {}


def env_sources(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_refs(container: dict) -> set[tuple[str, str]]:
    refs = set()
    for entry in container.get("env", []):
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            refs.add((ref["name"], ref["key"]))
    return refs


def container_rules(where: str, container: dict) -> None:
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        values = resources.get(kind, {})
        check("cpu" in values and "memory" in values, f"{where}: {kind} for cpu and memory")
    security = container.get("securityContext", {})
    check(security.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
    check(security.get("allowPrivilegeEscalation") is False, f"{where}: no privilege escalation")
    check("ALL" in security.get("capabilities", {}).get("drop", []), f"{where}: drops every capability")
    for name, entry in env_sources(container).items():
        if SECRET_NAME.search(name) or name == "DATABASE_URL":
            check(
                "value" not in entry and "secretKeyRef" in (entry.get("valueFrom") or {}),
                f"{where}: {name} comes from a Secret, not a literal",
            )


def validate_k8s() -> None:
    import kubernetes_validate

    versions = [OLDEST_KUBERNETES, ".".join(kubernetes_validate.utils.latest_version().split(".")[:2])]
    documents = k8s_documents()
    check(bool(documents), f"{rel(K8S)} holds manifests")
    by_kind: dict[str, list[tuple[Path, dict]]] = {}
    for path, docs in documents.items():
        no_committed_key(path)
        for doc in docs:
            schema_check(path, doc, versions)
            by_kind.setdefault(doc.get("kind", "?"), []).append((path, doc))

    deployments = [d for _, d in by_kind.get("Deployment", [])]
    if not check(len(deployments) == 1, "k8s: one Deployment"):
        return
    deployment = deployments[0]
    spec = pod_spec(deployment)
    pod_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    replicas = deployment["spec"].get("replicas", 1)
    if not isinstance(replicas, int):
        replicas = 0
    check(replicas >= 3, f"k8s: the Deployment runs several replicas ({replicas})")
    check(spec.get("securityContext", {}).get("runAsNonRoot") is True, "k8s: pods run as non-root")
    containers = spec.get("containers", [])
    main = next((c for c in containers if c.get("name") == "user-service"), {})
    check(bool(main), "k8s: the Deployment has a user-service container")
    liveness = main.get("livenessProbe", {}).get("httpGet", {}).get("path")
    readiness = main.get("readinessProbe", {}).get("httpGet", {}).get("path")
    check(liveness == "/health", "k8s: liveness probe on /health")
    check(readiness == "/ready", "k8s: readiness probe on /ready")
    refs = secret_refs(main)
    variables = env_sources(main)
    for secret in ("BROKER_CREDENTIALS_ENCRYPTION_KEY", "JWT_SECRET"):
        ref = (variables.get(secret, {}).get("valueFrom") or {}).get("secretKeyRef")
        check(bool(ref), f"k8s: {secret} comes from a secretKeyRef")
    for container in [*spec.get("initContainers", []), *containers]:
        container_rules(f"k8s: Deployment container {container.get('name')}", container)
    migrations = [c for c in spec.get("initContainers", []) if c.get("args") == ["migrate"]]
    jobs = [(p, d) for p, d in by_kind.get("Job", [])]
    migration_jobs = [d for _, d in jobs if any(c.get("args") == ["migrate"] for c in pod_spec(d).get("containers", []))]
    check(bool(migrations or migration_jobs), "k8s: migrations run (`user-service migrate` init container or Job)")

    rotate = [d for _, d in jobs if any(c.get("args") == ["keys", "rotate"] for c in pod_spec(d).get("containers", []))]
    if check(len(rotate) == 1, "k8s: a Job runs `user-service keys rotate`"):
        job_spec = pod_spec(rotate[0])
        check(job_spec.get("securityContext", {}).get("runAsNonRoot") is True, "k8s: the rotation Job runs as non-root")
        for container in job_spec.get("containers", []):
            container_rules(f"k8s: rotation Job container {container.get('name')}", container)
            job_refs = secret_refs(container)
            check(
                ("user-service-secrets", "broker-credentials-encryption-key") in job_refs
                and job_refs <= refs,
                "k8s: the rotation Job reads the same key ring and database as the Deployment",
            )
        images = {c.get("image") for c in job_spec.get("containers", [])}
        check(images == {main.get("image")}, "k8s: the rotation Job runs the Deployment's image")

    def selects_pods(selector: dict) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    for _, service in by_kind.get("Service", []):
        check(selects_pods(service["spec"].get("selector", {})), "k8s: the Service selects the Deployment's pods")
        ports = {p.get("targetPort") for p in service["spec"].get("ports", [])}
        named = {p.get("name") for p in main.get("ports", [])} | {p.get("containerPort") for p in main.get("ports", [])}
        check(bool(ports) and ports <= named, "k8s: the Service targets the container's port")
    check(bool(by_kind.get("Service")), "k8s: a Service")
    pdbs = [d for _, d in by_kind.get("PodDisruptionBudget", [])]
    if check(len(pdbs) == 1, "k8s: a PodDisruptionBudget"):
        pdb = pdbs[0]["spec"]
        check(selects_pods(pdb.get("selector", {}).get("matchLabels", {})), "k8s: the PodDisruptionBudget selects the pods")
        minimum = pdb.get("minAvailable", 0)
        check(
            isinstance(minimum, int) and 0 < minimum < replicas,
            "k8s: the PodDisruptionBudget keeps pods available and still lets a node drain",
        )

    # The example Secret documents every key the manifests read, with placeholders only.
    secrets = {d["metadata"]["name"]: d for _, d in by_kind.get("Secret", [])}
    for name, key in sorted(refs | {r for d in rotate for c in pod_spec(d).get("containers", []) for r in secret_refs(c)}):
        data = secrets.get(name, {}).get("stringData", {})
        check(key in data, f"k8s: secret.example.yaml documents {name}/{key}")
        check("REPLACE" in str(data.get(key, "REPLACE")), f"k8s: {name}/{key} in the example is a placeholder")

    kustomization_path = K8S / "kustomization.yaml"
    if kustomization_path.exists():
        kustomization = yaml.safe_load(kustomization_path.read_text(encoding="utf-8"))
        listed = set(kustomization.get("resources", []))
        on_purpose = {"secret.example.yaml", "job-keys-rotate.yaml"}
        expected = {p.name for p in documents} - on_purpose
        check(listed == expected, f"k8s: kustomization.yaml lists every manifest but {sorted(on_purpose)}")
        kubectl = shutil.which("kubectl")
        if kubectl:
            rendered = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
            if check(rendered.returncode == 0, "k8s: `kubectl kustomize` renders the kustomization"):
                for doc in yaml.safe_load_all(rendered.stdout):
                    if doc:
                        schema_check(kustomization_path, doc, versions[-1:])
        else:
            print("note: `kubectl kustomize` skipped (kubectl is not installed)")


# --- dockerfile ------------------------------------------------------------------------------


def validate_dockerfile() -> None:
    import dockerfile

    no_committed_key(DOCKERFILE)
    try:
        commands = dockerfile.parse_file(str(DOCKERFILE))
    except dockerfile.GoParseError as error:
        check(False, f"{rel(DOCKERFILE)} parses: {error}")
        return
    check(True, f"{rel(DOCKERFILE)} parses (BuildKit's parser)")
    stages: list[list] = []
    for command in commands:
        if command.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)
    check(len(stages) >= 2, f"Dockerfile: multi-stage ({len(stages)} stages)")
    runs = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    build = re.search(r"cargo build --release --locked -p user-service(?: --features ([\w,-]+))?", runs)
    if check(bool(build), "Dockerfile: `cargo build --release --locked -p user-service`"):
        manifest = tomllib.loads((ROOT / "crates/app/Cargo.toml").read_text(encoding="utf-8"))
        features = set(manifest.get("features", {}))
        wanted = set(filter(None, (build.group(1) or "").split(",")))
        check(wanted <= features, f"Dockerfile: the features it builds ({sorted(wanted)}) exist in crates/app/Cargo.toml")
    final = stages[-1] if stages else []
    final_text = " ".join(" ".join(c.value) for c in final if c.cmd == "RUN")
    users = [c.value[0] for c in final if c.cmd == "USER"]
    check(
        bool(users) and users[-1].split(":")[0] not in ("0", "root"),
        f"Dockerfile: the runtime runs as a non-root user ({users[-1] if users else 'none'})",
    )
    check(bool(users) and users[-1].split(":")[0].isdigit(), "Dockerfile: the user is numeric (runAsNonRoot can check it)")
    health = [" ".join(c.value) for c in final if c.cmd == "HEALTHCHECK"]
    check(bool(health) and "/health" in health[-1], "Dockerfile: HEALTHCHECK on /health")
    if health and "curl" in health[-1]:
        check("curl" in final_text, "Dockerfile: the runtime installs the healthcheck's curl")
    check(any(c.cmd == "EXPOSE" and "8000" in c.value for c in final), "Dockerfile: EXPOSE 8000")
    check("libpq5" in final_text and "ca-certificates" in final_text, "Dockerfile: the runtime has libpq5 and CA certificates")
    for command in commands:
        if command.cmd in ("ENV", "ARG"):
            names = command.value[0::2] if command.cmd == "ENV" else [v.split("=")[0] for v in command.value]
            for name in names:
                check(not SECRET_NAME.search(name), f"Dockerfile: {command.cmd} {name} is not a secret")
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split() if (ROOT / ".dockerignore").exists() else []
    for pattern in ("target", ".git", "data", ".env"):
        check(pattern in ignore, f".dockerignore excludes {pattern}")


def main() -> int:
    global VERBOSE
    steps = {"compose": validate_compose, "k8s": validate_k8s, "dockerfile": validate_dockerfile}
    arguments = sys.argv[1:]
    VERBOSE = "--verbose" in arguments or "-v" in arguments
    wanted = [a for a in arguments if not a.startswith("-")] or list(steps)
    for name in wanted:
        if name not in steps:
            print(f"unknown step {name!r}; choose from {', '.join(steps)}", file=sys.stderr)
            return 2
        before = (len(passed), len(failures))
        steps[name]()
        print(f"{name}: {len(passed) - before[0]} checks passed, {len(failures) - before[1]} failed")
    if failures:
        print(f"\n{len(failures)} deployment check(s) failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print("\nall deployment checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
