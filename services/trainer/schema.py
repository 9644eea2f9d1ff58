"""From stored examples to a :class:`~driftloop.model_card.ModelCard`, and to model inputs.

The store keeps one ``feature.<name>`` column per feature and a ``label`` column. The card is
inferred from them (numbers are numeric features, strings and booleans categorical ones; the
label decides the task) unless settings name the features or the task. The same card then
turns any frame of examples into what the model takes, one ``(n, 1)`` array per feature, so
that training, evaluation and serving feed the model alike.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"feature.age": [30, 40, 50], "feature.city": ["a", "b", "a"],
    ...                       "label": ["no", "yes", "no"]})
    >>> card = infer_card(frame)
    >>> card.task, [(f.name, f.kind) for f in card.features], card.classes
    ('classification', [('age', 'numeric'), ('city', 'categorical')], ['no', 'yes'])
    >>> model_inputs(card, frame)["age"].shape
    (3, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from driftloop.errors import TrainingError
from driftloop.model_card import FeatureSpec, ModelCard, Task

FEATURE_PREFIX = "feature."
# A categorical vocabulary keeps its most frequent values; the rest share the OOV bucket.
MAX_CATEGORIES = 1000


def parse_features(spec: str) -> list[FeatureSpec]:
    """Features from a setting: ``"age, city:categorical"``."""
    features = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, kind = item.partition(":")
        if kind not in ("", "numeric", "categorical"):
            raise TrainingError(f"feature {item!r}: the kind must be numeric or categorical")
        features.append(FeatureSpec(name=name.strip(), kind=kind or "numeric"))
    return features


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature names a frame of stored examples holds, in column order."""
    return [c.removeprefix(FEATURE_PREFIX) for c in frame.columns if c.startswith(FEATURE_PREFIX)]


def infer_task(
    labels: pd.Series, task: Literal["auto", "classification", "regression"] = "auto",
    max_classes: int = 20,
) -> Task:  # fmt: skip
    """The task ``labels`` call for: strings, booleans or few integers mean classes."""
    if task != "auto":
        return task
    values = labels.dropna()
    if values.empty:
        raise TrainingError("no labelled examples to infer the task from")
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "classification"
    numbers = values.to_numpy(dtype=np.float64)
    integral = bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))
    if integral and values.nunique() <= max_classes:
        return "classification"
    return "regression"


def infer_card(
    frame: pd.DataFrame,
    *,
    task: Literal["auto", "classification", "regression"] = "auto",
    features: Sequence[FeatureSpec] = (),
    max_classes: int = 20,
    vocabulary_from: pd.DataFrame | None = None,
) -> ModelCard:
    """The card of a model trained on ``frame`` (stored examples with ``label``).

    Parameters:
        frame: every example of the window; the classes come from all of it, so that the
            model has an output for each label of the holdout.
        task: the task, or ``auto`` to infer it from the labels.
        features: the features to use; empty infers them from the ``feature.*`` columns.
        max_classes: most distinct integer labels ``auto`` still treats as classes.
        vocabulary_from: the rows categorical vocabularies are learnt from (the training
            part); ``frame`` when not given.
    """
    kind = infer_task(frame["label"], task, max_classes)
    vocabulary_rows = frame if vocabulary_from is None else vocabulary_from
    specs = list(features) or [
        FeatureSpec(name=name, kind=_kind(frame[FEATURE_PREFIX + name]))
        for name in feature_columns(frame)
    ]
    if not specs:
        raise TrainingError("the examples carry no features")
    missing = [s.name for s in specs if FEATURE_PREFIX + s.name not in frame.columns]
    if missing:
        raise TrainingError(f"no examples carry the features {missing}")
    specs = [
        spec.model_copy(update={"categories": _vocabulary(vocabulary_rows, spec.name)})
        if spec.kind == "categorical"
        else spec
        for spec in specs
    ]
    classes: list[Any] = []
    if kind == "classification":
        classes = sorted(_python(v) for v in frame["label"].dropna().unique())
        if len(classes) < 2:
            raise TrainingError(f"every label in the window is {classes[0]!r}: nothing to learn")
    return ModelCard(task=kind, features=specs, classes=classes)


def _kind(column: pd.Series) -> Literal["numeric", "categorical"]:
    values = column.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "categorical"
    return "numeric"


def _vocabulary(frame: pd.DataFrame, name: str) -> list[str]:
    column = FEATURE_PREFIX + name
    if column not in frame.columns:
        return []
    counts = category_values(frame[column]).value_counts()
    return sorted(counts.index[:MAX_CATEGORIES].tolist())


def category_values(column: pd.Series) -> pd.Series:
    """A column as the strings a categorical input takes (``str(value)``; missing is ``""``)."""
    return column.map(lambda v: "" if v is None or v is pd.NA or v != v else str(v))


def model_inputs(card: ModelCard, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """One ``(n, 1)`` array per feature of ``card``: float32 for numeric, str for categorical.

    A feature ``frame`` lacks, or a missing value, is fed as 0.0 (numeric) or ``""``
    (categorical, which the model maps to its out-of-vocabulary bucket).
    """
    inputs = {}
    for spec in card.features:
        column = frame.get(FEATURE_PREFIX + spec.name)
        if column is None:
            column = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        if spec.kind == "numeric":
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float32)
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            values = category_values(column).to_numpy(dtype=str)
        inputs[spec.name] = values.reshape(-1, 1)
    return inputs


def targets(card: ModelCard, labels: pd.Series) -> np.ndarray:
    """What the loss takes: class indexes (-1 for a class the card lacks) or float32 values."""
    if card.task == "regression":
        return pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float32)
    index = {_key(c): i for i, c in enumerate(card.classes)}
    return np.array([index.get(_key(_python(v)), -1) for v in labels], dtype=np.int32)


def feature_rows(card: ModelCard, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The examples as feature dicts, for the reference sketch."""
    columns = {
        spec.name: frame[FEATURE_PREFIX + spec.name].tolist()
        if FEATURE_PREFIX + spec.name in frame.columns
        else [None] * len(frame)
        for spec in card.features
    }
    return [
        {name: _python(values[i]) for name, values in columns.items()} for i in range(len(frame))
    ]


def _python(value: Any) -> Any:
    """A plain Python scalar (numpy and pandas scalars are not JSON)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def _key(value: Any) -> tuple[str, Any]:
    # True == 1 in Python; a class key keeps booleans and numbers apart.
    return (type(value).__name__ if isinstance(value, bool) else "value", value)
