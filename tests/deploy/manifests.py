"""What the deploy files say, read once: the compose stack as Compose resolves it, the
Kustomize builds, and the settings classes of every service."""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from driftloop.settings import ENV_PREFIX, REPO_ROOT, SERVICES, Settings, service_settings
from tests.deploy.tools import kustomize_command, run, tool

K8S = REPO_ROOT / "deploy" / "k8s"
BUILDS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod-gpu": K8S / "overlays" / "prod-gpu",
}
COMPOSE = REPO_ROOT / "docker-compose.yml"
COMPOSE_GPU = REPO_ROOT / "docker" / "compose.gpu.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DRIFTLOOP_IMAGE = re.compile(r"^(ghcr\.io/driftloop/)?driftloop:")


def settings_class(service: str | None) -> type[Settings]:
    """The settings class of ``service``, or the shared :class:`Settings` for a process that
    runs no service."""
    return Settings if service is None else service_settings()[service]


def variables(service: str | None) -> dict[str, str]:
    """``{DRIFTLOOP_VARIABLE: field}`` that ``service`` reads. Until a service's settings class
    exists, only its port (the documented contract) is known beyond the shared settings."""
    cls = settings_class(service)
    names = {f"{ENV_PREFIX}{name.upper()}": name for name in cls.model_fields}
    if service is not None and cls is Settings:
        names[f"{ENV_PREFIX}{service.upper()}_PORT"] = f"{service}_port"
    return names


@dataclass
class Workload:
    """One driftloop container: where it is declared, what it runs, and its environment
    (a value is None where it comes from a Secret the build does not hold)."""

    origin: str
    service: str | None
    env: dict[str, str | None] = field(default_factory=dict)


def service_of(argv: list[str]) -> str | None:
    for before, after in itertools.pairwise(argv):
        if before == "run" and after in SERVICES:
            return after
    return None


def dockerfile_env() -> dict[str, str]:
    """The DRIFTLOOP_* defaults the runtime image sets with ENV."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    runtime = text[text.index("AS runtime") :]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env |= dict(re.findall(r"(\w+)=(\S+)", line))
    return {name: value for name, value in env.items() if name.startswith(ENV_PREFIX)}


@functools.cache
def compose_config(*files: Path) -> dict[str, Any]:
    """The compose file as Compose itself resolves it (anchors, merges, interpolation)."""
    argv = [tool("docker-compose")]
    for path in files:
        argv += ["-f", str(path)]
    result = run([*argv, "config", "--format", "json"], cwd=REPO_ROOT)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


def compose_workloads() -> list[Workload]:
    workloads = []
    for name, spec in compose_config(COMPOSE)["services"].items():
        if not DRIFTLOOP_IMAGE.match(spec.get("image", "")):
            continue
        argv = [*(spec.get("entrypoint") or []), *(spec.get("command") or [])]
        env = dockerfile_env() | {k: v for k, v in (spec.get("environment") or {}).items()}
        workloads.append(Workload(f"docker-compose.yml: {name}", service_of(argv), env))
    return workloads


@functools.cache
def build(name: str) -> tuple[dict[str, Any], ...]:
    """The documents ``kustomize build`` makes of deploy/k8s/<name>."""
    result = run([*kustomize_command(), str(BUILDS[name])])
    assert result.returncode == 0, f"kustomize build {BUILDS[name]} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def build_text(name: str) -> str:
    return yaml.safe_dump_all(build(name), sort_keys=False)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert found, f"no {kind} {name} in the build"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def k8s_workloads(name: str) -> list[Workload]:
    docs = build(name)
    data = {
        (doc["kind"], doc["metadata"]["name"]): {
            key: (base64.b64decode(value).decode() if doc["kind"] == "Secret" else value)
            for key, value in (doc.get("data") or {}).items()
        }
        for doc in docs
        if doc["kind"] in ("ConfigMap", "Secret")
    }
    workloads = []
    for doc in docs:
        spec = pod_spec(doc)
        for container in (spec or {}).get("containers", []):
            if not DRIFTLOOP_IMAGE.match(container["image"]):
                continue
            env: dict[str, str | None] = dockerfile_env()
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    ref = source["configMapRef"]["name"]
                    assert ("ConfigMap", ref) in data, (
                        f"{doc['metadata']['name']}: no ConfigMap {ref}"
                    )
                    env |= data["ConfigMap", ref]
                elif ("Secret", source["secretRef"]["name"]) in data:
                    env |= data["Secret", source["secretRef"]["name"]]
            for variable in container.get("env", []):
                env[variable["name"]] = variable.get("value")
            argv = [*(container.get("command") or []), *(container.get("args") or [])]
            origin = f"{name}: {doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            workloads.append(Workload(origin, service_of(argv), env))
    return workloads
