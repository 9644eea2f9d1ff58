"""Fits under the model's contract, against the real broker and MLflow server: the contract in
force types the card, rows that break it are left out and counted (in the training result and
the run), a store holding files written before contracts is read anyway."""

from __future__ import annotations

from typing import Any

import mlflow
import mlflow.tensorflow
import numpy as np
import pyarrow as pa
import pytest

from driftloop.contract import FeatureContract, FeatureSpec
from driftloop.contract_log import ContractLog
from driftloop.events import EventType
from driftloop.registry import ModelRegistry, model_uri
from driftloop.schemas import EventSchemas, dumps
from driftloop.services.trainer.coalesce import Refit
from driftloop.services.trainer.fit import predict
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.trainer import DATA_MANIFEST_PATH, Trainer
from driftloop.stack.process import free_port
from driftloop.store import ExampleStore
from tests.integration.trainer.conftest import (
    Events,
    classification_rows,
    example,
    running,
    train_once,
    trigger,
    write_examples,
)

pytestmark = pytest.mark.integration

LOANS = [
    FeatureSpec(name="amount", type="float"),
    FeatureSpec(name="term", type="int"),
    FeatureSpec(name="grade", kind="categorical", nullable=True),
    FeatureSpec(name="verified", kind="boolean"),
    FeatureSpec(name="income", type="float", nullable=True),
]


def loans(model: str, n: int, seed: int = 0, offset: int = 0) -> list[dict[str, Any]]:
    """Repaid (1) when the amount is small for the term, better with a verified income."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        amount = float(rng.uniform(1, 20))
        term = int(rng.choice([36, 60]))
        verified = bool(rng.integers(2))
        grade = [None, "A", "B", "C"][int(rng.integers(4))]
        income = None if rng.random() < 0.3 else float(rng.uniform(20, 80))
        label = int(amount / term * 36 - 4 * verified < 8)
        features = {"amount": amount, "term": term, "grade": grade, "verified": verified}
        row = example(offset + i, features | {"income": income}, label)
        rows.append(row | {"model_name": model})
    return rows


def test_a_declared_contract_types_the_fit_and_the_card_keeps_its_types(
    trainer_settings: TrainerSettings,
) -> None:
    name = trainer_settings.model_name
    declared = FeatureContract(
        model_name=name, task="classification", classes=[0, 1], features=LOANS
    )
    contracts = ContractLog(trainer_settings, "test")
    try:
        in_force = contracts.register(declared)
    finally:
        contracts.close()
    assert (in_force.version, in_force.source) == (1, "declared")

    store = ExampleStore(trainer_settings.store_uri)
    rows = loans(name, 480)
    for start in range(0, 400, 200):  # as ingest writes them: the contract's schema
        store.write(rows[start : start + 200], contracts={name: in_force})
    # A file from before the contract: the term as text in some rows, a null where none may be.
    old = [
        row | {"features": row["features"] | {"term": "36 months"}} if i % 4 == 0 else row
        for i, row in enumerate(rows[400:])
    ]
    old[1] = old[1] | {"features": old[1]["features"] | {"verified": None}}
    store.write(old)

    with Trainer(trainer_settings) as trainer:
        outcome = trainer.train(Refit(trigger(trainer_settings)))
        window = trainer.window()
    assert outcome.outcome == "promoted", outcome.reason
    assert outcome.excluded == {"feature_type": 20, "null_feature": 1}

    registry = ModelRegistry(trainer_settings.mlflow_tracking_uri)
    card = registry.model_card(name, str(outcome.model_version))
    assert [(f.name, f.kind, f.type, f.nullable) for f in card.features] == [
        ("amount", "numeric", "float", False),
        ("term", "numeric", "int", False),
        ("grade", "categorical", "string", True),
        ("verified", "boolean", "bool", False),
        ("income", "numeric", "float", True),
    ]
    assert (card.version, card.source, card.model_name) == (1, "declared", name)
    assert (card.task, card.classes, card.label_type) == ("classification", [0, 1], "int")
    assert card.feature("grade").categories == ["", "A", "B", "C"], "learnt from the rows"
    assert card.contract().same_terms(in_force.model_copy(update={"features": card.features}))

    # What serve loads takes booleans as 0/1 floats and predicts what the trainer judged.
    loaded = mlflow.tensorflow.load_model(model_uri(name, str(outcome.model_version)))
    np.testing.assert_allclose(
        predict(loaded, card, window.holdout), predict(outcome.model, card, window.holdout),
        atol=1e-6,
    )  # fmt: skip
    run = registry.client.get_run(str(outcome.run_id))
    assert run.data.params["contract_version"] == "1"
    assert run.data.params["contract_source"] == "declared"
    assert "verified:boolean:bool" in run.data.params["features"]
    assert run.data.metrics["excluded_rows"] == 21
    assert run.data.metrics["excluded.feature_type"] == 20

    # A task the contract does not have: failed, with the reason, before any run.
    failed = train_once(trainer_settings.model_copy(update={"trainer_task": "regression"}))
    assert failed.outcome == "failed" and "is for classification" in failed.reason
    assert failed.run_id is None


def test_a_store_with_an_old_mixed_type_file_trains_and_reports_the_rows_left_out(
    trainer_settings: TrainerSettings, results: Events
) -> None:
    """The failures of the issue: a store file whose feature column is text (a string among
    numbers), whose label column is text: no fit could read the window."""
    write_examples(trainer_settings, classification_rows(400))
    old = classification_rows(60, seed=9, offset=400)
    for i in range(0, 60, 6):  # ten rows with a text amount, five with a text label
        old[i] = old[i] | {"features": old[i]["features"] | {"x1": "12,000"}}
        if i % 12 == 0:
            old[i + 1] = old[i + 1] | {"label": "yes"}
    store = ExampleStore(trainer_settings.store_uri)
    store.write(old)
    tables = [store.read([m]) for m in store.manifests()]
    with pytest.raises(pa.ArrowTypeError, match="incompatible types"):
        pa.concat_tables(tables, promote_options="permissive")

    with running(trainer_settings) as worker:  # no champion: the bootstrap fit
        [result] = results.wait_for(lambda seen: len(seen) >= 1)
    assert result["outcome"] == "promoted", result["reason"]
    assert result["metrics"]["excluded_rows"] == 15
    assert result["metrics"]["excluded.feature_type"] == 10
    assert result["metrics"]["excluded.label_type"] == 5
    assert result["metrics"]["accuracy"] > 0.7
    EventSchemas(trainer_settings.schemas_dir).decode(EventType.TRAINING_RESULT, dumps(result))
    assert worker.outcomes[-1].excluded == {"feature_type": 10, "label_type": 5}

    run = ModelRegistry(trainer_settings.mlflow_tracking_uri).client.get_run(result["run_id"])
    assert run.data.metrics["excluded_rows"] == 15
    assert run.data.params["contract_source"] == "inferred"
    manifest = mlflow.artifacts.load_dict(f"runs:/{result['run_id']}/{DATA_MANIFEST_PATH}")
    assert manifest["excluded"] == {"feature_type": 10, "label_type": 5}
    assert manifest["rows"] == 445


def test_without_a_contract_the_types_are_inferred_from_most_rows(
    trainer_settings: TrainerSettings,
) -> None:
    name = trainer_settings.model_name
    rows = loans(name, 400, seed=3)
    rows[5] = rows[5] | {"features": rows[5]["features"] | {"term": 36.5}}  # one bad row
    write_examples(trainer_settings, rows)
    outcome = train_once(trainer_settings)
    assert outcome.outcome == "promoted", outcome.reason
    assert outcome.excluded == {"feature_type": 1}
    card = ModelRegistry(trainer_settings.mlflow_tracking_uri).model_card(
        name, str(outcome.model_version)
    )
    assert {f.name: (f.kind, f.type, f.nullable) for f in card.features} == {
        "amount": ("numeric", "float", False),
        "term": ("numeric", "int", False),
        "grade": ("categorical", "string", True),
        "verified": ("boolean", "bool", False),
        "income": ("numeric", "float", True),
    }
    assert (card.version, card.source, card.classes) == (0, "inferred", [0, 1])


def test_a_window_whose_rows_all_break_the_contract_is_skipped_with_the_reason(
    trainer_settings: TrainerSettings,
) -> None:
    name = trainer_settings.model_name
    strict = FeatureContract(
        model_name=name, task="classification", classes=[0, 1],
        features=[FeatureSpec(name="x1", type="int"), FeatureSpec(name="x2")],
    )  # fmt: skip
    contracts = ContractLog(trainer_settings, "test")
    try:
        contracts.register(strict)
    finally:
        contracts.close()
    write_examples(trainer_settings, classification_rows(300))  # x1 is never an integer
    outcome = train_once(trainer_settings)
    assert outcome.outcome == "skipped", outcome.reason
    assert "0 labelled examples in the store keep the model's contract" in outcome.reason
    assert "300 left out: feature_type 300" in outcome.reason
    assert outcome.run_id is None and outcome.excluded == {"feature_type": 300}
    result = outcome.training_result(name)
    assert result["metrics"] == {"excluded_rows": 300, "excluded.feature_type": 300}
    EventSchemas(trainer_settings.schemas_dir).validate(EventType.TRAINING_RESULT, result)


def test_a_broker_that_does_not_answer_fails_the_fit_not_the_trainer(
    trainer_settings: TrainerSettings,
) -> None:
    write_examples(trainer_settings, classification_rows(200))
    away = trainer_settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}
    )
    outcome = train_once(away)
    assert outcome.outcome == "failed" and outcome.run_id is None
    assert "could not be read" in outcome.reason, outcome.reason
