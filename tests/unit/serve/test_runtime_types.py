"""The model's call paths take what the decoders make: booleans and nulls as float32 inputs."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.services.serve.protocol import PACKED, decode_records
from driftloop.services.serve.runtime import compile_model, pack, probe_inputs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CARD = ModelCard(
    task="classification",
    classes=[0, 1],
    # in the names' order: TFLite does not convert a Keras model with a string input whose
    # inputs are in another order (TF 2.21)
    features=[
        FeatureSpec(name="grade", kind="categorical", categories=["A", "B"], nullable=True),
        FeatureSpec(name="income", nullable=True),
        FeatureSpec(name="term", type="int"),
        FeatureSpec(name="verified", kind="boolean"),
    ],
)


def keras_model(card: ModelCard) -> Any:
    """A model per the card: float32 inputs for numeric and boolean features, strings else."""
    import keras

    inputs, parts = {}, []
    for spec in card.features:
        if spec.kind == "categorical":
            inputs[spec.name] = keras.Input(shape=(1,), name=spec.name, dtype="string")
            lookup = keras.layers.StringLookup(vocabulary=spec.categories, output_mode="one_hot")
            parts.append(lookup(inputs[spec.name]))
        else:
            inputs[spec.name] = keras.Input(shape=(1,), name=spec.name, dtype="float32")
            parts.append(inputs[spec.name])
    x = keras.layers.Dense(4, activation="relu", kernel_initializer="ones")(
        keras.layers.Concatenate()(parts)
    )
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_probe_and_pack_treat_booleans_as_numbers() -> None:
    probe = probe_inputs(CARD, 4)
    assert probe["verified"].dtype == np.float32 and set(probe["verified"].ravel()) == {0.0, 1.0}
    packed = pack(probe, CARD)
    assert set(packed) == {PACKED, "grade"}
    assert packed[PACKED].shape == (4, 3)  # income, term, verified
    assert packed[PACKED][:, 2].tolist() == probe["verified"].ravel().tolist()


NUMBERS = ModelCard(task="classification", classes=[0, 1], features=CARD.features[1:])


@pytest.mark.parametrize(
    ("card", "path", "packed"),
    [(CARD, "function", False), (CARD, "tflite", False), (NUMBERS, "tflite", True)],
)
def test_a_boolean_feature_reaches_the_model_as_one_or_zero(
    card: ModelCard, path: str, packed: bool
) -> None:
    model = keras_model(card)
    runtime = compile_model(model, card, max_batch_size=4, path=path)
    assert (runtime.path, runtime.packed) == (path, packed)
    records = [
        {"term": 36, "verified": True, "grade": "A", "income": 10.0},
        {"term": 60, "verified": False},  # nullable ones left out
    ]
    if card is NUMBERS:
        records[0].pop("grade")
    batch, _ = decode_records(records, card)
    outputs = runtime.predict(batch.arrays(card, runtime.packed))
    inputs = {
        "grade": np.array([["A"], [""]]),
        "income": np.array([[10.0], [0.0]], dtype=np.float32),
        "term": np.array([[36.0], [60.0]], dtype=np.float32),
        "verified": np.array([[1.0], [0.0]], dtype=np.float32),
    }
    expected = model({name: inputs[name] for name in card.feature_names}, training=False)
    assert np.allclose(outputs, np.asarray(expected), atol=1e-4)
