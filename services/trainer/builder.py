"""The model a card describes: Keras 3, with its preprocessing inside.

The built-in builder makes a small multilayer perceptron whose first layers are the
preprocessing, so that what serve loads is exactly what was trained:

- a numeric feature goes through ``Normalization`` adapted on the training rows;
- a boolean one is taken as it comes, 1.0 for true and 0.0 for false (or null);
- a categorical one through ``StringLookup`` with one out-of-vocabulary bucket, one-hot for
  a small vocabulary, an ``Embedding`` for a large one;
- the output is a softmax over ``card.classes`` (classification) or one unit rescaled to the
  training labels' mean and spread (regression, so the net learns a standardised target).

A user's builder is named in settings as ``module:function``; it is called as
``function(card, frame)`` with the training frame (``feature.<name>`` columns, ``label``) and
returns a *compiled* Keras model with the same contract (see :mod:`driftloop.model_card`). The
loss must take what :func:`driftloop.services.trainer.schema.targets` gives: class indexes for
classification (``sparse_categorical_crossentropy``), float values for regression.

Example:
    >>> import pandas as pd  # doctest: +SKIP
    >>> from driftloop.model_card import FeatureSpec, ModelCard  # doctest: +SKIP
    >>> card = ModelCard(task="regression", features=[FeatureSpec(name="x")])  # doctest: +SKIP
    >>> model = build_model(card, pd.DataFrame({"feature.x": [1.0, 2.0], "label": [0.5, 1.0]}))
    ... # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from driftloop.errors import TrainingError
from driftloop.model_card import ModelCard
from driftloop.services.trainer.schema import model_inputs, targets

Builder = Callable[[ModelCard, pd.DataFrame], Any]
# Above this many categories an Embedding is smaller than a one-hot block.
ONE_HOT_LIMIT = 32


def build_model(
    card: ModelCard,
    frame: pd.DataFrame,
    hidden: Sequence[int] = (64, 32),
    learning_rate: float = 1e-2,
) -> Any:
    """The built-in model for ``card``, its preprocessing adapted on ``frame``; compiled."""
    import keras

    inputs, encoded = {}, []
    arrays = model_inputs(card, frame)
    for spec in card.features:
        if spec.kind == "numeric":
            tensor = keras.Input((1,), name=spec.name, dtype="float32")
            normalise = keras.layers.Normalization(name=f"normalise_{spec.name}")
            normalise.adapt(arrays[spec.name])
            encoded.append(normalise(tensor))
        elif spec.kind == "boolean":
            tensor = keras.Input((1,), name=spec.name, dtype="float32")
            encoded.append(tensor)  # already 0 or 1: nothing to scale
        else:
            tensor = keras.Input((1,), name=spec.name, dtype="string")
            vocabulary = spec.categories or [""]
            if len(vocabulary) <= ONE_HOT_LIMIT:
                lookup = keras.layers.StringLookup(
                    vocabulary=vocabulary, num_oov_indices=1, output_mode="one_hot",
                    name=f"lookup_{spec.name}",
                )  # fmt: skip
                encoded.append(lookup(tensor))
            else:
                lookup = keras.layers.StringLookup(
                    vocabulary=vocabulary, num_oov_indices=1, name=f"lookup_{spec.name}"
                )
                width = int(min(16, np.ceil(np.sqrt(len(vocabulary)))))
                embed = keras.layers.Embedding(
                    len(vocabulary) + 1, width, name=f"embed_{spec.name}"
                )
                encoded.append(keras.layers.Flatten()(embed(lookup(tensor))))
        inputs[spec.name] = tensor
    x = encoded[0] if len(encoded) == 1 else keras.layers.Concatenate(name="features")(encoded)
    for units in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
    if card.task == "classification":
        # float32 outputs even under mixed precision: softmax in float16 loses small classes.
        output = keras.layers.Dense(
            len(card.classes), activation="softmax", dtype="float32", name="probabilities"
        )(x)
        loss = "sparse_categorical_crossentropy"
    else:
        y = targets(card, frame["label"])
        y = y[np.isfinite(y)]
        scale = float(np.std(y)) or 1.0
        unit = keras.layers.Dense(1, dtype="float32", name="standardised")(x)
        output = keras.layers.Rescaling(
            scale=scale, offset=float(np.mean(y)), dtype="float32", name="value"
        )(unit)
        loss = "mse"
    model = keras.Model(inputs=inputs, outputs=output, name="driftloop_model")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    return model


def load_builder(path: str) -> Builder:
    """The function ``module:function`` names."""
    module_name, _, function_name = path.partition(":")
    if not module_name or not function_name:
        raise TrainingError(f"builder {path!r} must look like `module:function`")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise TrainingError(f"cannot load the builder {path!r}: {error}") from error
    if not callable(function):
        raise TrainingError(f"builder {path!r} is not callable")
    return function
