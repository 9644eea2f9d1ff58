"""The refit pipeline against the real MLflow server: train, judge, log, register, promote."""

from __future__ import annotations

from typing import Any

import mlflow
import mlflow.tensorflow
import numpy as np
import pandas as pd
import pytest

from driftloop.model_card import ModelCard
from driftloop.registry import PREVIOUS, ModelRegistry, model_uri
from driftloop.services.trainer.coalesce import Refit
from driftloop.services.trainer.fit import predict
from driftloop.services.trainer.lineage import OUTCOME, TRIGGER_KEY, trigger_key
from driftloop.services.trainer.schema import model_inputs
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.trainer import DATA_MANIFEST_PATH, Trainer
from tests.integration.trainer.conftest import (
    classification_rows,
    regression_rows,
    train_once,
    trigger,
    write_examples,
)

pytestmark = pytest.mark.integration


def test_a_classifier_is_trained_promoted_and_loads_as_trained(
    trainer_settings: TrainerSettings,
    trainer: Trainer,
) -> None:
    write_examples(trainer_settings, classification_rows(400))
    event = trigger(trainer_settings)
    outcome = trainer.train(Refit(event))

    assert outcome.outcome == "promoted", outcome.reason
    assert "baseline: majority class" in outcome.reason
    assert outcome.metrics["accuracy"] > outcome.champion_metrics["accuracy"]
    registry = ModelRegistry(trainer_settings.mlflow_tracking_uri)
    name = trainer_settings.model_name
    assert registry.champion(name) == outcome.model_version
    card = registry.model_card(name, outcome.model_version)
    assert card.task == "classification" and card.classes == [0, 1]
    assert {f.name: f.kind for f in card.features}["region"] == "categorical"
    assert card.trigger_id == event["trigger_id"]
    holdout_rows = card.metrics.pop("holdout_rows")
    assert card.metrics == outcome.metrics and holdout_rows > 0
    reference = registry.reference(name, outcome.model_version)
    assert reference.count > 0 and set(reference.features) == set(card.feature_names)

    # What serve loads predicts exactly what the trainer judged.
    window = trainer.window()
    loaded = mlflow.tensorflow.load_model(model_uri(name, outcome.model_version))
    served = predict(loaded, card, window.holdout)
    np.testing.assert_allclose(served, predict(outcome.model, card, window.holdout), atol=1e-6)
    inputs = {
        f.name: np.array(window.holdout[f"feature.{f.name}"].astype(str if f.kind == "categorical"
                         else "float32").tolist()).reshape(-1, 1)
        for f in card.features
    }  # fmt: skip
    np.testing.assert_allclose(np.asarray(loaded(inputs)), served, atol=1e-5)

    # The run: lineage a reviewer can follow from the version back to the data.
    run = registry.client.get_run(registry.run_id(name, outcome.model_version))
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags[TRIGGER_KEY] == trigger_key(event["trigger_id"])
    assert tags[OUTCOME] == "promoted" and tags["driftloop.device"] == "CPU"
    assert tags["driftloop.code_version"] and tags["driftloop.trigger_reason"] == "manual"
    assert params["window_policy"] == "since_drift" and int(params["holdout_rows"]) > 0
    assert {"holdout_macro_f1", "baseline_macro_f1", "fit_epochs", "duration_s"} <= set(metrics)
    manifest = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{DATA_MANIFEST_PATH}")
    assert manifest["rows"] == 400 and len(manifest["files"]) >= 3
    assert all(len(f["sha256"]) == 64 and f["offsets"] for f in manifest["files"])


def test_a_regressor_is_trained_and_promoted(trainer_settings: TrainerSettings) -> None:
    write_examples(trainer_settings, regression_rows(400))
    outcome = train_once(trainer_settings)
    assert outcome.outcome == "promoted", outcome.reason
    assert outcome.metrics["rmse"] < 0.5 * outcome.champion_metrics["rmse"]
    card = ModelRegistry(trainer_settings.mlflow_tracking_uri).model_card(
        trainer_settings.model_name, str(outcome.model_version)
    )
    assert card.task == "regression" and card.classes == []


def test_the_gate_rejects_a_worse_candidate_and_keeps_the_champion(
    trainer_settings: TrainerSettings,
) -> None:
    write_examples(trainer_settings, classification_rows(400))
    champion = train_once(trainer_settings)
    assert champion.outcome == "promoted", champion.reason

    # The same window, but a model that sees one of the two features the label depends on.
    blind = trainer_settings.model_copy(update={"trainer_features": "x1"})
    candidate = train_once(blind)
    assert candidate.outcome == "rejected", candidate.reason
    assert f"champion {champion.model_version}" in candidate.reason
    assert candidate.champion_metrics == champion.metrics, "judged on the same holdout"
    registry = ModelRegistry(trainer_settings.mlflow_tracking_uri)
    name = trainer_settings.model_name
    assert registry.champion(name) == champion.model_version
    assert registry.version_of(name, PREVIOUS) is None
    rejected = registry.client.get_model_version(name, str(candidate.model_version))
    assert rejected.tags[OUTCOME] == "rejected" and not rejected.aliases


def test_too_few_examples_is_skipped_without_a_run(trainer_settings: TrainerSettings) -> None:
    write_examples(trainer_settings, classification_rows(50))
    outcome = train_once(trainer_settings)
    assert outcome.outcome == "skipped" and "needs 100" in outcome.reason
    assert outcome.run_id is None


def linear_builder(card: ModelCard, frame: pd.DataFrame) -> Any:
    """A user's builder: softmax regression on the numeric features, preprocessing inside."""
    import keras

    inputs = {f.name: keras.Input((1,), name=f.name, dtype="float32") for f in card.features}
    normalise = keras.layers.Normalization()
    normalise.adapt(np.hstack([model_inputs(card, frame)[name] for name in inputs]))
    joined = keras.layers.Concatenate()(list(inputs.values()))
    output = keras.layers.Dense(len(card.classes), activation="softmax")(normalise(joined))
    model = keras.Model(inputs, output)
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    return model


def test_a_users_builder_and_a_warm_start_from_the_champion(
    trainer_settings: TrainerSettings,
) -> None:
    write_examples(trainer_settings, classification_rows(400))
    own = trainer_settings.model_copy(
        update={
            "trainer_builder": f"{__name__}:linear_builder",
            "trainer_features": "x1,x2",
        }
    )
    first = train_once(own)
    assert first.outcome == "promoted", first.reason
    client = ModelRegistry(trainer_settings.mlflow_tracking_uri).client
    assert client.get_run(str(first.run_id)).data.params["builder"] == own.trainer_builder

    warm = own.model_copy(update={"trainer_warm_start": True})
    second = train_once(warm)
    assert second.outcome in ("promoted", "rejected"), second.reason
    assert client.get_run(str(second.run_id)).data.params["warm_start"] == "True"
