"""The Kustomize builds (base, dev, prod-gpu): valid for the Kubernetes API, and wired the way
driftloop needs (probes on the real endpoints, autoscaling on the right groups and topics, a
GPU for the trainer in prod, topics that match the settings).

Built-in kinds are checked with kubernetes-validate --strict (its bundled schemas, offline);
the custom resources with the structural schemas in tests/deploy/crds.py. No cluster here:
nothing is applied, admitted by the API server, or reconciled by the operators."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from driftloop.settings import Settings
from tests.deploy.crds import SCHEMAS
from tests.deploy.manifests import (
    BUILDS,
    DRIFTLOOP_IMAGE,
    SERVICES,
    build,
    build_text,
    k8s_workloads,
    named,
    of_kind,
    pod_spec,
    settings_class,
    variables,
)
from tests.deploy.tools import run, tool

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# (liveness, readiness) paths of each service: the same for all four.
HEALTH = {
    "serve": ("/health/live", "/health/ready"),
    "ingest": ("/health/live", "/health/ready"),
    "monitor": ("/health/live", "/health/ready"),
    "trainer": ("/health/live", "/health/ready"),
}

builds = pytest.mark.parametrize("name", list(BUILDS))


def deployment(name: str, service: str) -> dict[str, Any]:
    return named(build(name), "Deployment", f"driftloop-{service}")


def container(name: str, service: str) -> dict[str, Any]:
    return deployment(name, service)["spec"]["template"]["spec"]["containers"][0]


def config(name: str) -> dict[str, str]:
    [config_map] = [
        doc
        for doc in of_kind(build(name), "ConfigMap")
        if doc["metadata"]["name"].startswith("driftloop-config")
    ]
    return config_map["data"]


@builds
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_kinds_validate_strictly(name: str, version: str, tmp_path) -> None:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(build_text(name))
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(manifest)])
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and "ERROR" not in output, output
    # A kind it has no schema for is only a warning: allow exactly the custom resources that
    # crds.py checks, so a misspelt apiVersion of a built-in kind cannot slip through.
    skipped = {
        line.split(" kind ")[1].split(" for ")[0]
        for line in output.splitlines()
        if "Couldn't find schema" in line
    }
    custom = {f"{kind} with api version {api}" for api, kind in SCHEMAS}
    assert skipped <= custom, f"no schema for {sorted(skipped - custom)}"


def test_the_strict_validator_rejects_an_unknown_field(tmp_path) -> None:
    docs = [dict(doc) for doc in build("dev")]
    spec = named(tuple(docs), "Deployment", "driftloop-serve")["spec"]["template"]["spec"]
    spec["containers"][0]["livenesProbe"] = spec["containers"][0]["livenessProbe"]
    import yaml

    manifest = tmp_path / "typo.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", str(manifest)])
    assert result.returncode != 0 and "livenesProbe" in result.stdout + result.stderr


@builds
def test_custom_resources_match_their_structure(name: str) -> None:
    custom = [doc for doc in build(name) if (doc["apiVersion"], doc["kind"]) in SCHEMAS]
    assert {doc["kind"] for doc in custom} == {kind for _, kind in SCHEMAS}
    for doc in custom:
        schema = SCHEMAS[doc["apiVersion"], doc["kind"]]
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)
        ]
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"


def test_custom_resource_schemas_reject_a_wrong_field() -> None:
    topic = dict(named(build("dev"), "KafkaTopic", "driftloop-labels"))
    topic["spec"] = {**topic["spec"], "partition": 3}
    assert not jsonschema.Draft202012Validator(
        SCHEMAS["kafka.strimzi.io/v1", "KafkaTopic"]
    ).is_valid(topic)


@builds
def test_every_object_is_in_the_namespace_and_images_are_pinned(name: str) -> None:
    for doc in build(name):
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "driftloop", doc["metadata"]["name"]
        for item in (pod_spec(doc) or {}).get("containers", []):
            image = item["image"]
            assert ":" in image and not image.endswith(":latest"), (
                f"{doc['metadata']['name']}: {image}"
            )
            # A bare image name means the `images:` of the kustomization did not reach it.
            assert image.split(":")[0] not in ("driftloop", "driftloop-mlflow", "driftloop-gpu"), (
                f"{doc['metadata']['name']}: {image} was not given its registry"
            )


@builds
@pytest.mark.parametrize("service", SERVICES)
def test_probes_use_the_service_health_endpoints_on_its_port(name: str, service: str) -> None:
    item = container(name, service)
    [port] = [p for p in item["ports"] if p["name"] == "http"]
    env = {e["name"]: e.get("value") for e in item.get("env", [])}
    port_variable = f"DRIFTLOOP_{service.upper()}_PORT"
    assert port_variable in variables(service)
    assert env[port_variable] == str(port["containerPort"])
    default = settings_class(service).model_fields.get(f"{service}_port")
    if default is not None:
        assert default.default == port["containerPort"], "the image and the settings disagree"
    live, ready = HEALTH[service]
    for probe, path in (("startupProbe", live), ("livenessProbe", live), ("readinessProbe", ready)):
        assert item[probe]["httpGet"] == {"path": path, "port": "http"}, f"{service} {probe}"


@builds
def test_every_container_has_requests_and_limits(name: str) -> None:
    for doc in build(name):
        for item in (pod_spec(doc) or {}).get("containers", []):
            resources = item.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                    f"{doc['metadata']['name']}/{item['name']} has no {kind}"
                )


@builds
def test_driftloop_containers_run_unprivileged(name: str) -> None:
    for doc in build(name):
        spec = pod_spec(doc)
        for item in (spec or {}).get("containers", []):
            if not DRIFTLOOP_IMAGE.match(item["image"]):
                continue
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["runAsUser"] != 0
            context = item["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"] for m in item["volumeMounts"]}
            assert {"/tmp", "/var/lib/driftloop"} <= mounts or doc["kind"] == "Job"


@builds
def test_serve_scales_on_an_hpa_and_consumers_on_kafka_lag(name: str) -> None:
    docs = build(name)
    [hpa] = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "driftloop-serve",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    topics = {doc["spec"]["topicName"]: doc["spec"] for doc in of_kind(docs, "KafkaTopic")}
    bootstrap = config(name)["DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"]
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in of_kind(docs, "ScaledObject")}
    assert set(scaled) == {"driftloop-ingest", "driftloop-monitor"}
    for service in ("ingest", "monitor"):
        spec = scaled[f"driftloop-{service}"]["spec"]
        group = settings_class(service).model_fields.get(f"{service}_group_id")
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            assert trigger["type"] == "kafka"
            # KEDA runs in its own namespace: the broker address must be qualified.
            host, port = meta["bootstrapServers"].rsplit(":", 1)
            assert (
                host == f"{bootstrap.split(':')[0]}.driftloop.svc"
                and port == bootstrap.split(":")[1]
            )
            if group is not None:
                assert meta["consumerGroup"] == group.default, f"{service} consumer group"
            assert meta["topic"] in topics, f"{service} scales on {meta['topic']}, not a KafkaTopic"
            # More consumers than partitions would sit idle.
            assert spec["maxReplicaCount"] <= topics[meta["topic"]]["partitions"]
            assert int(meta["lagThreshold"]) > 0


@builds
def test_autoscaled_deployments_leave_the_replica_count_to_the_autoscaler(name: str) -> None:
    for service in ("serve", "ingest", "monitor"):
        assert "replicas" not in deployment(name, service)["spec"], (
            f"{service}: a replica count in the manifest fights the autoscaler on every apply"
        )


@builds
def test_every_scaled_deployment_has_a_disruption_budget(name: str) -> None:
    docs = build(name)
    budgets = of_kind(docs, "PodDisruptionBudget")
    for service in ("serve", "ingest", "monitor"):
        labels = deployment(name, service)["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, f"{service} has {len(matching)} PodDisruptionBudgets"


def test_the_trainer_gets_a_gpu_node_only_in_prod() -> None:
    trainer = deployment("prod-gpu", "trainer")
    spec = trainer["spec"]["template"]["spec"]
    item = spec["containers"][0]
    assert item["image"].endswith("-gpu")
    assert item["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    for name in ("base", "dev"):
        item = container(name, "trainer")
        assert "nvidia.com/gpu" not in item["resources"]["limits"]
        assert not item["image"].endswith("-gpu")
    for name in BUILDS:
        # One fit at a time: one replica, never two during a rollout.
        assert deployment(name, "trainer")["spec"]["replicas"] == 1
        assert deployment(name, "trainer")["spec"]["strategy"]["type"] == "Recreate"


@builds
def test_kafka_topics_match_the_settings(name: str) -> None:
    docs = build(name)
    env = config(name)
    topics = {doc["spec"]["topicName"]: doc["spec"] for doc in of_kind(docs, "KafkaTopic")}
    wanted: dict[str, str] = {}
    for cls in {settings_class(s) for s in SERVICES} | {Settings}:
        for field_name, field in cls.model_fields.items():
            if field_name.startswith("topic_") and isinstance(field.default, str):
                wanted[field_name] = field.default
    missing = {f: t for f, t in wanted.items() if t not in topics}
    assert not missing, f"no KafkaTopic for {missing}"
    [pool] = of_kind(docs, "KafkaNodePool")
    contracts = wanted.get("topic_contracts")
    for topic, spec in topics.items():
        # The contracts topic has one partition whatever the size: one order of versions.
        partitions = 1 if topic == contracts else int(env["DRIFTLOOP_TOPIC_PARTITIONS"])
        assert spec["partitions"] == partitions, topic
        assert spec["replicas"] == int(env["DRIFTLOOP_TOPIC_REPLICATION_FACTOR"]), topic
        assert spec["replicas"] <= pool["spec"]["replicas"], topic
    changelog = topics.get(wanted.get("topic_ingest_changelog", ""))
    if changelog is not None:
        assert changelog["config"]["cleanup.policy"] == "compact"
    if contracts is not None:  # kept forever, not compacted: a version's first record wins
        assert topics[contracts]["config"] == {"retention.ms": -1, "cleanup.policy": "delete"}


@builds
def test_the_service_monitor_scrapes_the_four_services(name: str) -> None:
    docs = build(name)
    [monitor] = of_kind(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = {
        doc["metadata"]["name"]
        for doc in of_kind(docs, "Service")
        if selector.items() <= doc["metadata"].get("labels", {}).items()
        and any(p["name"] == "http" for p in doc["spec"]["ports"])
    }
    assert scraped == {f"driftloop-{service}" for service in SERVICES}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@builds
def test_config_maps_and_secrets_are_referenced_by_what_needs_them(name: str) -> None:
    workloads = k8s_workloads(name)
    for workload in workloads:
        assert "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS" in workload.env, workload.origin
        assert "DRIFTLOOP_MLFLOW_TRACKING_URI" in workload.env, workload.origin
    mlflow = container(name, "mlflow")
    [backend] = [e for e in mlflow["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI"]
    assert backend["valueFrom"]["secretKeyRef"]["name"].startswith("driftloop-mlflow")
