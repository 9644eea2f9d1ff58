"""A recall against the real MLflow server: an earlier champion comes back, nothing is fitted."""

from __future__ import annotations

from typing import Any

import pytest

from driftloop.events import RECALL
from driftloop.registry import PREVIOUS, ModelRegistry
from driftloop.services.trainer.coalesce import Refit
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.trainer import Trainer
from tests.integration.trainer.conftest import (
    Events,
    classification_rows,
    running,
    send,
    trigger,
    write_examples,
)

pytestmark = pytest.mark.integration


def flipped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Concept B: the same inputs, the other label."""
    return [row | {"label": 1 - row["label"]} for row in rows]


def drift(
    settings: TrainerSettings, onset: str, recall: bool = False, champion: str | None = None
) -> dict[str, Any]:
    evidence: dict[str, Any] = {"source": "concept", "onset": onset}
    if recall:
        evidence["action"] = RECALL
    return trigger(settings, reason="drift", evidence=evidence, model_version=champion)


def test_a_concept_that_comes_back_brings_its_champion_back(
    trainer_settings: TrainerSettings,
    trainer: Trainer,
) -> None:
    concept_a = classification_rows(600, seed=1)
    concept_b = flipped(classification_rows(600, seed=2, offset=600))
    again_a = classification_rows(300, seed=3, offset=1200)
    unknown = [  # concept C: the label is the feature both models learnt to ignore
        row | {"label": int(row["features"]["noise"] > 0)}
        for row in classification_rows(300, seed=4, offset=1500)
    ]
    registry = ModelRegistry(trainer_settings.mlflow_tracking_uri)
    name = trainer_settings.model_name

    write_examples(trainer_settings, concept_a)
    first = trainer.train(Refit(trigger(trainer_settings)))
    write_examples(trainer_settings, concept_b)
    second = trainer.train(Refit(drift(trainer_settings, concept_b[0]["event_time"])))
    assert (first.outcome, second.outcome) == ("promoted", "promoted"), second.reason
    assert registry.champion(name) == second.model_version

    write_examples(trainer_settings, again_a)
    recall = drift(trainer_settings, again_a[0]["event_time"], True, second.model_version)
    outcome = trainer.train(Refit(recall))

    assert outcome.outcome == "promoted", outcome.reason
    assert outcome.model_version == first.model_version
    assert outcome.reason.startswith(f"recalled version {first.model_version}")
    assert outcome.champion_version == outcome.previous_version == second.model_version
    assert outcome.metrics["accuracy"] > outcome.champion_metrics["accuracy"] + 0.5
    assert outcome.fit is None and outcome.run_id == registry.run_id(name, first.model_version)
    assert registry.champion(name) == first.model_version
    assert registry.version_of(name, PREVIOUS) == second.model_version
    assert len(registry.versions(name)) == 2, "nothing was fitted or registered"
    update = outcome.model_update(name)
    assert update is not None and update["model_version"] == first.model_version
    assert update["trigger_id"] == recall["trigger_id"]
    # The same recall again (a redelivery): its champion was replaced, it changes nothing.
    again = trainer.train(Refit(recall))
    assert again.outcome == "skipped" and f"not {second.model_version}" in again.reason
    assert registry.champion(name) == first.model_version

    write_examples(trainer_settings, unknown)
    lost = trainer.train(Refit(drift(trainer_settings, unknown[0]["event_time"], recall=True)))
    assert lost.outcome == "skipped", lost.reason
    assert "no earlier champion knows the concept" in lost.reason
    assert f"scored: {second.model_version}" in lost.reason
    assert registry.champion(name) == first.model_version, "the champion stays"


def test_a_recall_with_nothing_to_recall_is_skipped(
    trainer_settings: TrainerSettings,
    trainer: Trainer,
) -> None:
    rows = classification_rows(300, seed=1)
    write_examples(trainer_settings, rows)
    before = trainer.train(Refit(drift(trainer_settings, rows[0]["event_time"], recall=True)))
    assert before.outcome == "skipped" and "no champion" in before.reason

    first = trainer.train(Refit(trigger(trainer_settings)))
    assert first.outcome == "promoted", first.reason
    alone = trainer.train(Refit(drift(trainer_settings, rows[100]["event_time"], recall=True)))
    assert alone.outcome == "skipped" and "scored: none" in alone.reason
    no_onset = trainer.train(
        Refit(trigger(trainer_settings, evidence={"action": RECALL}, reason="drift"))
    )
    assert no_onset.outcome == "skipped" and "no onset" in no_onset.reason


def test_a_recall_trigger_on_kafka_is_answered_and_announced(
    trainer_settings: TrainerSettings, trainer: Trainer, results: Events, updates: Events
) -> None:
    concept_a = classification_rows(600, seed=1)
    concept_b = flipped(classification_rows(600, seed=2, offset=600))
    again_a = classification_rows(300, seed=3, offset=1200)
    write_examples(trainer_settings, concept_a)
    first = trainer.train(Refit(trigger(trainer_settings)))
    write_examples(trainer_settings, concept_b)
    second = trainer.train(Refit(drift(trainer_settings, concept_b[0]["event_time"])))
    assert (first.outcome, second.outcome) == ("promoted", "promoted"), second.reason
    write_examples(trainer_settings, again_a)

    recall = drift(trainer_settings, again_a[0]["event_time"], recall=True)
    with running(trainer_settings):
        send(trainer_settings, recall)
        (result,) = results.wait_for(lambda seen: len(seen) >= 1)
        (update,) = updates.wait_for(lambda seen: len(seen) >= 1)
    assert result["trigger_id"] == recall["trigger_id"] and result["outcome"] == "promoted"
    assert result["model_version"] == first.model_version
    assert result["reason"].startswith(f"recalled version {first.model_version}")
    assert update["model_version"] == first.model_version
    assert update["previous_version"] == second.model_version
    assert update["run_id"] == first.run_id and update["trigger_id"] == recall["trigger_id"]
    registry = ModelRegistry(trainer_settings.mlflow_tracking_uri)
    assert registry.champion(trainer_settings.model_name) == first.model_version
