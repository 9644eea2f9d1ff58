"""Settings: the environment, the local stack's own settings and what they derive, and the
README's tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from driftloop.cli import STACK_SETTINGS_NOTE, main
from driftloop.events import EventType
from driftloop.loop.services import ServiceSupervisor
from driftloop.settings import ENV_PREFIX, REPO_ROOT, Settings, service_settings
from driftloop.stack.settings import LocalStackSettings

# The local stack's own settings: no service has them.
STACK_ONLY = set(LocalStackSettings.model_fields) - set(Settings.model_fields)


def readme_block() -> str:
    """The generated settings reference (docs/settings.md, linked from the README)."""
    page = (REPO_ROOT / "docs" / "settings.md").read_text()
    found = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", page, re.S)
    assert found, "docs/settings.md has no settings table between the settings markers"
    return found.group(1).strip()


def readme_tables() -> tuple[str, str]:
    """The services' table and the local stack's."""
    services, heading, stack = readme_block().partition(STACK_SETTINGS_NOTE.splitlines()[0])
    assert heading, "the README's settings have no section for the local stack"
    return services, stack


def variable(name: str) -> str:
    return f"`{ENV_PREFIX}{name.upper()}`"


def test_readme_table_is_the_settings_class(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    generated = capsys.readouterr().out.strip()
    assert readme_block() == generated, "run `make settings-table` and commit docs/settings.md"


def test_readme_table_lists_every_field() -> None:
    services, stack = readme_tables()
    for cls in (Settings, *service_settings().values()):
        for name in cls.model_fields:
            assert variable(name) in services and variable(name) not in stack, name
    assert {"kafka_port", "kafka_heap", "mlflow_port", "mlflow_backend_store_uri"} <= STACK_ONLY
    for name in STACK_ONLY:
        assert variable(name) in stack and variable(name) not in services, name


def test_no_service_reads_the_local_stacks_settings() -> None:
    for service, cls in service_settings().items():
        assert not STACK_ONLY & set(cls.model_fields), service
        assert not hasattr(cls(kafka_heap="1g"), "kafka_heap"), service


def test_environment_is_read_with_the_prefix_and_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PORT", "19092")
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_PORT", "15000")
    monkeypatch.setenv("DRIFTLOOP_TOPIC_PARTITIONS", "6")
    local = LocalStackSettings()
    assert local.kafka_port == 19092
    assert local.topic_partitions == 6
    # The port alone moves the stack's clients too...
    assert local.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert local.mlflow_tracking_uri == "http://127.0.0.1:15000"
    # ... not a service's: it reads where the broker is, not how the local one is started.
    settings = Settings()
    assert settings.topic_partitions == 6
    assert not hasattr(settings, "kafka_port")
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"


def test_the_services_defaults_are_the_local_stacks_addresses() -> None:
    settings, local = Settings(), LocalStackSettings()
    assert settings.kafka_bootstrap_servers == local.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.mlflow_tracking_uri == local.mlflow_tracking_uri == "http://127.0.0.1:5000"


def test_explicit_endpoints_win_over_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka-1:9092")
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PORT", "19092")
    for settings in (Settings(), LocalStackSettings()):
        assert settings.kafka_bootstrap_servers == "kafka-0:9092,kafka-1:9092"
        assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    local = LocalStackSettings(kafka_bootstrap_servers="elsewhere:9092")
    assert local.kafka_bootstrap_servers == "elsewhere:9092"


def test_an_empty_endpoint_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "")
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_TRACKING_URI", "")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PORT", "19092")
    assert Settings().kafka_bootstrap_servers == "127.0.0.1:9092"
    assert Settings().mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert LocalStackSettings().kafka_bootstrap_servers == "127.0.0.1:19092"


def test_the_services_of_the_stack_get_its_addresses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI", "KAFKA_PORT", "KAFKA_HEAP"):
        monkeypatch.delenv(f"{ENV_PREFIX}{name}", raising=False)
    local = LocalStackSettings(state_dir=tmp_path, kafka_port=19999, mlflow_port=15000)
    environment = ServiceSupervisor(local).environment()
    assert environment["DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19999"
    assert environment["DRIFTLOOP_MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"
    assert not {f"{ENV_PREFIX}{name.upper()}" for name in STACK_ONLY} & set(environment)
    # A service started with that environment finds the stack.
    for name, value in environment.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, value)
    for cls in service_settings().values():
        assert cls().kafka_bootstrap_servers == "127.0.0.1:19999"
        assert cls().mlflow_tracking_uri == "http://127.0.0.1:15000"


def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        LocalStackSettings()
    assert main(["stack", "status"]) == 2
    assert "DRIFTLOOP_KAFKA_PORT" in capsys.readouterr().err


def test_broker_and_controller_ports_must_differ() -> None:
    with pytest.raises(ValidationError, match="must differ"):
        LocalStackSettings(kafka_port=9092, kafka_controller_port=9092)


def test_every_event_type_has_its_own_topic() -> None:
    topics = Settings().topics()
    assert set(topics) == set(EventType)
    assert len(set(topics.values())) == len(EventType)


def test_the_local_mlflow_keeps_its_store_under_the_state_folder(tmp_path: Path) -> None:
    local = LocalStackSettings(state_dir=tmp_path)
    assert local.mlflow_backend_store_uri == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert LocalStackSettings(mlflow_backend_store_uri="sqlite:///x.db").mlflow_backend_store_uri


def test_artifacts_go_to_s3_when_a_bucket_is_set() -> None:
    local = LocalStackSettings(s3_bucket="models", s3_prefix="team/")
    assert local.mlflow_artifacts_destination == "s3://models/team/mlflow"
    assert not LocalStackSettings().mlflow_artifacts_destination.startswith("s3://")


def test_every_setting_the_readme_names_exists() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Settings") :]
    section = section[: section.index("\n## ", 1)]
    named = set(re.findall(rf"`({ENV_PREFIX}[A-Z0-9_]+)`", section))
    assert len(named) >= 5
    known = set(re.findall(rf"`({ENV_PREFIX}[A-Z0-9_]+)`", readme_block()))
    assert named <= known, f"README.md names settings that do not exist: {named - known}"
