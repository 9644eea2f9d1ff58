"""Settings: the environment, derived defaults, and the README's table."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from driftloop.cli import main
from driftloop.events import EventType
from driftloop.settings import REPO_ROOT, Settings


def readme_table() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    found = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", readme, re.S)
    assert found, "README.md has no settings table between the settings markers"
    return found.group(1).strip()


def test_readme_table_is_the_settings_class(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    generated = capsys.readouterr().out.strip()
    assert readme_table() == generated, "run `make settings-table` and commit README.md"


def test_readme_table_lists_every_field() -> None:
    table = readme_table()
    for name in Settings.model_fields:
        assert f"`DRIFTLOOP_{name.upper()}`" in table


def test_environment_is_read_with_the_prefix_and_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PORT", "19092")
    monkeypatch.setenv("DRIFTLOOP_TOPIC_PARTITIONS", "6")
    settings = Settings()
    assert settings.kafka_port == 19092
    assert settings.topic_partitions == 6
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"


def test_explicit_endpoints_win_over_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka-1:9092")
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "kafka-0:9092,kafka-1:9092"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"


def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()
    assert main(["stack", "status"]) == 2
    assert "DRIFTLOOP_KAFKA_PORT" in capsys.readouterr().err


def test_broker_and_controller_ports_must_differ() -> None:
    with pytest.raises(ValidationError, match="must differ"):
        Settings(kafka_port=9092, kafka_controller_port=9092)


def test_every_event_type_has_its_own_topic() -> None:
    topics = Settings().topics()
    assert set(topics) == set(EventType)
    assert len(set(topics.values())) == len(EventType)


def test_artifacts_go_to_s3_when_a_bucket_is_set() -> None:
    assert Settings(s3_bucket="models", s3_prefix="team/").mlflow_artifacts_destination == (
        "s3://models/team/mlflow"
    )
    assert not Settings().mlflow_artifacts_destination.startswith("s3://")
