"""The local stack's refusals: each is one clear line, before anything is started."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from driftloop.cli import main
from driftloop.errors import BrokerUnavailable, StackError
from driftloop.messaging import EventProducer
from driftloop.settings import Settings
from driftloop.stack import KafkaBroker, MlflowServer
from driftloop.stack.kafka import new_cluster_id, require_tool
from driftloop.stack.process import free_port
from tests.conftest import local_settings


def test_a_taken_broker_port_is_named(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.kafka_port))
        squatter.listen()
        with pytest.raises(StackError) as caught:
            KafkaBroker(settings).up()
    message = str(caught.value)
    assert f"port {settings.kafka_port}" in message
    assert "DRIFTLOOP_KAFKA_PORT" in message
    assert "\n" not in message


def test_a_taken_mlflow_port_is_named(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.mlflow_port))
        squatter.listen()
        with pytest.raises(StackError, match="DRIFTLOOP_MLFLOW_PORT"):
            MlflowServer(settings).up()


@pytest.mark.parametrize("tool", ["java", "mvn"])
def test_a_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch, tool: str) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StackError, match=f"`{tool}` is not on PATH"):
        require_tool(tool)


def test_cli_prints_a_stack_error_as_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("DRIFTLOOP_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PORT", str(port))
    monkeypatch.setenv("DRIFTLOOP_KAFKA_CONTROLLER_PORT", str(free_port()))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        assert main(["stack", "up"]) == StackError.exit_code
    err = capsys.readouterr().err.strip()
    assert err.startswith("driftloop: port") and err.count("\n") == 0


def test_no_broker_is_a_clear_error_not_a_hang() -> None:
    settings = Settings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_client_timeout_ms=300
    )
    with pytest.raises(BrokerUnavailable, match=settings.kafka_bootstrap_servers):
        EventProducer(settings, service="test")


def test_cluster_ids_never_look_like_an_option() -> None:
    assert not any(new_cluster_id().startswith("-") for _ in range(2000))


def test_a_command_against_an_absent_mlflow_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_PORT", str(free_port()))
    monkeypatch.setenv("DRIFTLOOP_LOG_LEVEL", "ERROR")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    assert main(["models"]) == 4
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("driftloop: MLflow at http://127.0.0.1:")
