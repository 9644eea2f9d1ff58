"""A run's isolation: its own topics, groups, model, store and ports."""

from __future__ import annotations

from pathlib import Path

from driftloop.loop.services import ServiceSupervisor, isolated_environment
from driftloop.settings import Settings
from driftloop.stack.settings import LocalStackSettings


def test_every_topic_and_group_is_the_runs_own(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    fields = isolated_environment(settings, "run-1", tmp_path / "store", ingest_flush_s=1.0)
    topics = {k: v for k, v in fields.items() if k.startswith("topic_")}
    assert topics["topic_labels"] == "run-1.labels"
    assert topics["topic_model_updates"] == "run-1.model-updates"
    assert all(v.startswith("run-1.") for v in topics.values())
    assert "topic_partitions" not in fields and "topic_replication_factor" not in fields
    assert fields["model_name"] == "driftloop-model-run-1"
    assert fields["store_uri"] == str((tmp_path / "store").resolve())
    assert fields.get("ingest_flush_s") == 1.0
    groups = [k for k in fields if k.endswith("_group_id")]
    assert "ingest_group_id" in groups
    assert all(fields[k].endswith("-run-1") for k in groups)
    ports = [fields[k] for k in fields if k.endswith("_port") and k.split("_")[0] in
             ("ingest", "monitor", "trainer", "serve")]  # fmt: skip
    assert len(set(ports)) == len(ports)
    # Fields no service knows are left out rather than passed along.
    assert "nonsense" not in isolated_environment(settings, "x", tmp_path, nonsense=1)


def test_the_services_get_the_overrides_in_their_environment(tmp_path: Path) -> None:
    settings = LocalStackSettings(state_dir=tmp_path, kafka_port=19999)
    supervisor = ServiceSupervisor(settings, {"serve_port": 18080, "model_name": "m-1"})
    environment = supervisor.environment()
    assert environment["DRIFTLOOP_SERVE_PORT"] == "18080"
    assert environment["DRIFTLOOP_MODEL_NAME"] == "m-1"
    assert environment["DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19999"
    assert environment["DRIFTLOOP_STATE_DIR"] == str(tmp_path.resolve())
    assert supervisor.url("serve") == "http://127.0.0.1:18080"
    assert supervisor.processes["serve"].pidfile == tmp_path / "services" / "serve.pid"
