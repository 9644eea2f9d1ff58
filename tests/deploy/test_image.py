"""The Dockerfile and what the image runs (its healthcheck, the compose bootstrap). No Docker
engine here, so the image is never built: the Dockerfile is checked for its contract (one lock,
CPU and GPU variants, a non-root user, a healthcheck) and the two scripts it ships are run."""

from __future__ import annotations

import importlib.util
import re
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import boto3
import pytest

from driftloop.messaging import kafka_admin
from driftloop.settings import REPO_ROOT, Settings
from driftloop.stack import LocalStack
from driftloop.stack.process import free_port
from tests.deploy.manifests import COMPOSE, DOCKERFILE, SERVICES, compose_config, settings_class
from tests.deploy.tools import run, tool

DOCKER = REPO_ROOT / "docker"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docker_{name}", DOCKER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stages() -> dict[str, str]:
    """Each build stage's name and its instructions."""
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM .* AS (\S+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def lock_pin(package: str) -> str:
    found = re.search(
        rf"^{re.escape(package)}==(\S+)$", (REPO_ROOT / "requirements.lock").read_text(), re.M
    )
    assert found, f"{package} is not in requirements.lock"
    return found.group(1)


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_the_lock_and_nothing_else() -> None:
    steps = stages()
    assert "pip install --no-deps -r /tmp/requirements.lock" in steps["deps-cpu"]
    assert "pip install --no-deps -r /tmp/gpu.lock" in steps["deps-gpu"]
    assert "FROM deps-${VARIANT} AS build" in DOCKERFILE.read_text()


def test_the_gpu_variant_is_the_gpu_extra_at_the_locked_version() -> None:
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    version = lock_pin("tensorflow-cpu")
    assert extras["gpu"] == [f"tensorflow[and-cuda]=={version}"]
    assert extras["cpu"] == [f"tensorflow-cpu=={version}"]
    assert '"tensorflow[and-cuda]==${tf}"' in stages()["deps-gpu"]


def test_final_stages_run_as_a_user_and_check_health() -> None:
    text = DOCKERFILE.read_text()
    assert list(stages())[-1] == "runtime", "the default target is the CPU runtime image"
    for stage in ("runtime", "mlflow"):
        body = stages()[stage]
        [user] = re.findall(r"^USER (\S+)$", body, re.M)
        assert user.split(":")[0] not in ("0", "root")
        assert "HEALTHCHECK" in body
    assert 'ENTRYPOINT ["driftloop"]' in stages()["runtime"]
    assert "mlflow=$(sed -n 's/^mlflow==//p' /tmp/requirements.lock)" in text
    lock_pin("mlflow")


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    rules = [
        line
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*", "the context is an allow-list"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    sources = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M)
    for source in (s for line in sources for s in line.split()):
        top = Path(source).parts[0]
        assert top in allowed, f"COPY {source}: .dockerignore leaves it out"
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path"


def test_the_healthcheck_finds_the_service_and_its_readiness_endpoint() -> None:
    healthcheck = load("healthcheck")
    assert (
        healthcheck.service_of(["/sbin/docker-init", "--", "driftloop", "run", "serve"]) == "serve"
    )
    assert healthcheck.service_of(["driftloop", "run", "ingest"]) == "ingest"
    assert healthcheck.service_of(["python", "/opt/driftloop/bin/bootstrap.py"]) is None
    assert set(healthcheck.READINESS) == set(SERVICES)
    for service, (variable, port, path) in healthcheck.READINESS.items():
        field = settings_class(service).model_fields.get(f"{service}_port")
        assert variable == f"DRIFTLOOP_{service.upper()}_PORT"
        if field is not None:
            assert field.default == port
        assert path.endswith("/health/ready")


class Health(BaseHTTPRequestHandler):
    """A ready service's stand-in: 200 on the readiness path every service answers, 404
    elsewhere."""

    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


class NotReady(Health):
    """A service that runs but is not ready (its consumer stopped): 503."""

    status = 503


def test_the_healthcheck_asks_the_running_service(monkeypatch: pytest.MonkeyPatch) -> None:
    healthcheck = load("healthcheck")
    ready = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    not_ready = ThreadingHTTPServer(("127.0.0.1", 0), NotReady)
    for server in (ready, not_ready):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Each service is asked on its own port: serve's is ready, ingest's is not.
        monkeypatch.setenv("DRIFTLOOP_SERVE_PORT", str(ready.server_address[1]))
        monkeypatch.setenv("DRIFTLOOP_INGEST_PORT", str(not_ready.server_address[1]))
        monkeypatch.setattr(healthcheck, "running_service", lambda: "serve")
        assert healthcheck.main() == 0
        monkeypatch.setattr(healthcheck, "running_service", lambda: "ingest")
        assert healthcheck.main() == 1
    finally:
        for server in (ready, not_ready):
            server.shutdown()
            server.server_close()
    # Nothing listening: unhealthy, not a crash.
    monkeypatch.setenv("DRIFTLOOP_SERVE_PORT", str(free_port()))
    monkeypatch.setattr(healthcheck, "running_service", lambda: "serve")
    assert healthcheck.main() == 1
    # A container that runs no service (the bootstrap) has nothing to check.
    monkeypatch.setattr(healthcheck, "running_service", lambda: None)
    assert healthcheck.main() == 0


def test_compose_runs_the_bootstrap_from_the_image() -> None:
    bootstrap = compose_config(COMPOSE)["services"]["bootstrap"]
    assert bootstrap["entrypoint"] == ["python", "/opt/driftloop/bin/bootstrap.py"]
    assert (
        "COPY docker/healthcheck.py docker/bootstrap.py /opt/driftloop/bin/"
        in DOCKERFILE.read_text()
    )


@pytest.mark.integration
def test_bootstrap_makes_the_bucket_and_the_topics_and_can_run_again(
    stack: LocalStack, s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = load("bootstrap")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", stack.settings.kafka_bootstrap_servers)
    monkeypatch.setenv("DRIFTLOOP_S3_ENDPOINT_URL", s3)
    monkeypatch.setenv("DRIFTLOOP_S3_BUCKET", "bootstrap-test")
    # Topics of this test only, on the session's shared broker.
    for name, field in Settings.model_fields.items():
        if name.startswith("topic_") and isinstance(field.default, str):
            monkeypatch.setenv(f"DRIFTLOOP_{name.upper()}", f"bootstrap-test.{field.default}")
    assert bootstrap.main([], attempts=1) == 0
    buckets = {b["Name"] for b in boto3.client("s3", endpoint_url=s3).list_buckets()["Buckets"]}
    assert "bootstrap-test" in buckets
    admin = kafka_admin(Settings())
    try:
        topics = set(admin.list_topics())
    finally:
        admin.close()
    wanted = set(Settings().topics().values())
    assert wanted and all(t.startswith("bootstrap-test.") for t in wanted)
    assert wanted <= topics, f"missing topics: {sorted(wanted - topics)}"
    assert bootstrap.main([], attempts=1) == 0, "a second run changes nothing and succeeds"


def test_bootstrap_gives_up_with_a_clear_exit_when_nothing_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap = load("bootstrap")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_CLIENT_TIMEOUT_MS", "200")
    monkeypatch.setenv("DRIFTLOOP_S3_BUCKET", "")
    assert bootstrap.main([], attempts=2, pause_s=0) == 1
