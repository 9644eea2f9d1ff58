"""The registry as the services use it, against the real MLflow server."""

from __future__ import annotations

import json
import uuid

import keras
import mlflow
import mlflow.tensorflow
import numpy as np

from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.reference import ReferenceSketch
from driftloop.registry import CHAMPION, ModelRegistry, model_uri, register_model
from driftloop.settings import Settings

CARD = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="x"),
        FeatureSpec(name="c", kind="categorical", categories=["a", "b"]),
    ],
    classes=["no", "yes"],
)


def contract_model() -> keras.Model:
    """The smallest model obeying the card's contract: named (batch, 1) inputs, softmax out."""
    x = keras.Input(shape=(1,), name="x", dtype="float32")
    c = keras.Input(shape=(1,), name="c", dtype="string")
    one_hot = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(c)
    hidden = keras.layers.Concatenate()([x, one_hot])
    return keras.Model({"x": x, "c": c}, keras.layers.Dense(2, activation="softmax")(hidden))


def test_a_registered_version_carries_its_card_and_reference(settings: Settings) -> None:
    name = f"registry-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    assert registry.champion(name) is None  # no such model yet

    model = contract_model()
    rows = [{"x": float(i), "c": "ab"[i % 2]} for i in range(40)]
    reference = ReferenceSketch.build(CARD, rows, predictions=["no"] * 40)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run():
        version = register_model(model, CARD, reference, name)
    assert registry.champion(name) is None  # registering promotes nothing

    registry.client.set_registered_model_alias(name, CHAMPION, version)
    assert registry.champion(name) == version
    assert registry.model_card(name, version) == CARD
    assert registry.reference(name, version) == reference

    inputs = {"x": np.array([[3.0], [4.0]], dtype="float32"), "c": np.array([["a"], ["z"]])}
    loaded = mlflow.tensorflow.load_model(model_uri(name, version))
    np.testing.assert_allclose(loaded(inputs), model(inputs), rtol=1e-6)

    # Logged with the contract's signature (given: MLflow did not run the model to infer it)
    # and one typical row of the reference as its input example.
    uri = model_uri(name, version)
    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None
    signature = info.signature.to_dict()
    assert json.loads(signature["inputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1]}, "name": "x"},
        {"type": "tensor", "tensor-spec": {"dtype": "str", "shape": [-1, 1]}, "name": "c"},
    ]
    assert json.loads(signature["outputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, len(CARD.classes)]}}
    ]
    assert info.saved_input_example_info is not None
    example = mlflow.models.Model.load(uri).load_input_example(uri)
    assert {k: v.tolist() for k, v in example.items()} == {"x": [[19.5]], "c": [["a"]]}
    np.testing.assert_allclose(loaded(example), model(example), rtol=1e-6)  # the model takes it
