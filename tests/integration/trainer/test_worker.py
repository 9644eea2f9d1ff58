"""The trainer's loop against the real broker and MLflow: bootstrap, coalescing, redelivery,
a crash in the middle of a fit, rollback and the CLI."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from driftloop.cli import main as cli
from driftloop.registry import PREVIOUS, ModelRegistry
from driftloop.services.trainer.lineage import TRIGGER_KEY, Lineage, trigger_key
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.settings import as_environment
from tests.integration.trainer.conftest import (
    Events,
    classification_rows,
    running,
    send,
    train_once,
    trigger,
    write_examples,
)
from tests.processes import ServiceProcess

pytestmark = pytest.mark.integration


def results_for(seen: list[dict], trigger_id: str) -> list[dict]:
    return [event for event in seen if event["trigger_id"] == trigger_id]


def runs_for(lineage: Lineage, trigger_id: str) -> list:
    query = f"tags.`{TRIGGER_KEY}` = '{trigger_key(trigger_id)}'"
    return lineage.client.search_runs([lineage.experiment_id], query)


def test_bootstrap_then_coalesced_triggers_then_a_redelivery_that_trains_nothing(
    trainer_settings: TrainerSettings, results: Events, updates: Events
) -> None:
    settings = trainer_settings.model_copy(update={"trainer_bootstrap_poll_s": 0.5})
    write_examples(settings, classification_rows(400))
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    with running(settings) as worker:
        # No champion and enough examples: the first model, with no trigger at all.
        seen = results.wait_for(lambda seen: len(seen) >= 1)
        assert seen[0]["trigger_id"].startswith("bootstrap-")
        assert seen[0]["outcome"] == "promoted", seen[0]["reason"]
        first = seen[0]["model_version"]
        update = updates.wait_for(lambda seen: len(seen) >= 1)[0]
        assert update["model_version"] == first and update["previous_version"] is None
        assert update["trigger_id"] == seen[0]["trigger_id"]

        # Three triggers in one burst: one fit answers them all.
        burst = [trigger(settings, f"burst-{i}") for i in range(3)]
        send(settings, *burst)
        ids = [event["trigger_id"] for event in burst]
        seen = results.wait_for(lambda seen: all(results_for(seen, i) for i in ids))
        verdicts = [results_for(seen, i)[0] for i in ids]
        assert len({v["run_id"] for v in verdicts}) == 1, "one fit for the burst"
        assert {v["outcome"] for v in verdicts} <= {"promoted", "rejected"}
        assert verdicts[0]["champion_version"] == first
        assert len(runs_for(worker.trainer.lineage, ids[0])) == 1

        # A redelivered trigger (same id, new event) is answered without training.
        versions = len(registry.versions(settings.model_name))
        send(settings, trigger(settings, ids[1]))
        seen = results.wait_for(lambda seen: len(results_for(seen, ids[1])) >= 2)
        again = results_for(seen, ids[1])[1]
        assert again["outcome"] == "skipped"
        assert verdicts[0]["run_id"] in again["reason"]
    assert len(registry.versions(settings.model_name)) == versions, "nothing trained"
    assert sum(e["outcome"] != "skipped" for e in results.seen) == 4, "bootstrap + burst of 3"


def test_a_crash_mid_fit_leaves_the_champion_and_the_trigger_runs_after_restart(
    trainer_settings: TrainerSettings, results: Events, tmp_path: Path
) -> None:
    write_examples(trainer_settings, classification_rows(300))
    champion = train_once(trainer_settings)
    assert champion.outcome == "promoted", champion.reason
    registry = ModelRegistry(trainer_settings.mlflow_tracking_uri)
    lineage = Lineage(trainer_settings.mlflow_tracking_uri, trainer_settings.trainer_experiment)
    event = trigger(trainer_settings, reason="drift")
    send(trainer_settings, event)

    # A fit that would run for minutes: killed once its run exists.
    slow = trainer_settings.model_copy(
        update={"trainer_max_epochs": 100_000, "trainer_patience": 100_000,
                "trainer_max_fit_s": 300, "trainer_batch_size": 4}
    )  # fmt: skip
    log = tmp_path / "trainer.log"
    first = ServiceProcess("trainer", slow, log)
    first.start(ready_path=None)
    deadline = time.monotonic() + 120
    while not runs_for(lineage, event["trigger_id"]):
        assert first.alive(), log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(2)
    first.kill()
    assert registry.champion(trainer_settings.model_name) == champion.model_version
    assert lineage.handled(event["trigger_id"]) is None, "no verdict was recorded"
    assert not results_for(results.seen, event["trigger_id"])

    second = ServiceProcess(
        "trainer", trainer_settings.model_copy(update={"trainer_max_epochs": 10}), log
    )
    second.start(ready_path=None)
    try:
        seen = results.wait_for(lambda seen: bool(results_for(seen, event["trigger_id"])), 180)
        verdict = results_for(seen, event["trigger_id"])[0]
        assert verdict["outcome"] in ("promoted", "rejected"), verdict["reason"]
        assert verdict["champion_version"] == champion.model_version
        assert lineage.handled(event["trigger_id"]) is not None
        url = f"http://127.0.0.1:{trainer_settings.trainer_port}"
        with urllib.request.urlopen(f"{url}/health/ready", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'driftloop_trainer_fits_total{outcome="' in metrics
        assert "driftloop_trainer_stage_seconds_bucket" in metrics
    finally:
        assert second.stop() == 0, log.read_text()[-3000:]


def test_rollback_moves_champion_back_and_announces_it(
    trainer_settings: TrainerSettings,
    updates: Events,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_examples(trainer_settings, classification_rows(400))
    weaker = trainer_settings.model_copy(update={"trainer_features": "x1"})
    first = train_once(weaker)
    second = train_once(trainer_settings)
    assert (first.outcome, second.outcome) == ("promoted", "promoted"), second.reason
    registry = ModelRegistry(trainer_settings.mlflow_tracking_uri)
    name = trainer_settings.model_name
    assert registry.version_of(name, PREVIOUS) == first.model_version

    for variable, value in as_environment(trainer_settings).items():
        monkeypatch.setenv(variable, value)
    assert cli(["rollback"]) == 0
    assert registry.champion(name) == first.model_version
    assert registry.version_of(name, PREVIOUS) is None
    seen = updates.wait_for(lambda seen: any(e["trigger_id"] is None for e in seen))
    announced = next(e for e in seen if e["trigger_id"] is None)
    assert announced["model_version"] == first.model_version
    assert announced["previous_version"] == second.model_version
    assert announced["run_id"] == first.run_id and "accuracy" in announced["metrics"]
    assert cli(["rollback"]) == 4, "nothing left to roll back to"
    assert "no previous version" in capsys.readouterr().err

    assert cli(["models"]) == 0
    table = capsys.readouterr().out
    assert "champion" in table and "rejected" not in table and second.model_version in table

    assert cli(["train", "--note", "after rollback"]) == 0
    triggers = Events(trainer_settings, trainer_settings.topic_triggers)
    try:
        manual = triggers.wait_for(lambda seen: bool(seen))[0]
    finally:
        triggers.close()
    assert manual["reason"] == "manual" and manual["model_version"] == first.model_version
    assert manual["evidence"]["note"] == "after rollback"
