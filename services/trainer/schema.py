"""From stored examples to a contract, a :class:`~driftloop.model_card.ModelCard`, and inputs.

The store keeps one ``feature.<name>`` column per feature and a ``label`` column. A fit's
contract is the model's contract in force (the contracts topic's) when it has one; otherwise
it is inferred from the window's rows with :class:`~driftloop.contract.ContractInference`, so
that a minority of bad rows never types a column (numbers are numeric features, strings
categorical ones, booleans boolean ones; the labels decide the task). Settings may name the
features (a subset of the contract's) and, for an inferred contract, the task.

Rows that break the contract are left out before the fit and counted by the rule they broke
(:func:`check_rows`, with the contract's own :class:`~driftloop.contract.ContractCheck`): the
trainer never fails because of a row. The card is the contract with the categorical
vocabularies learnt from the training rows, and it turns any frame of examples into what the
model takes, one ``(n, 1)`` array per feature, so that training, evaluation and serving feed
the model alike.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"feature.age": [30, 40, 50, "n/a"] * 25,
    ...                       "feature.city": ["a", "b", "a", "b"] * 25,
    ...                       "feature.member": [True, False, None, True] * 25,
    ...                       "label": ["no", "yes", "no", "yes"] * 25})
    >>> contract = window_contract(frame, model_name="m")
    >>> [(f.name, f.type, f.nullable) for f in contract.features]
    [('age', 'int', False), ('city', 'string', False), ('member', 'bool', True)]
    >>> checked = check_rows(contract, frame)
    >>> len(checked.rows), checked.metrics()
    (75, {'excluded_rows': 25, 'excluded.feature_type': 25})
    >>> card = card_for(contract, checked.rows)
    >>> card.task, card.classes, card.feature("city").categories
    ('classification', ['no', 'yes'], ['a', 'b'])
    >>> inputs = model_inputs(card, checked.rows)
    >>> inputs["age"].shape, inputs["member"][:3, 0].tolist()
    ((75, 1), [1.0, 0.0, 0.0])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from driftloop.contract import (
    ContractCheck,
    ContractInference,
    FeatureContract,
    ValueType,
    value_type,
)
from driftloop.errors import TrainingError
from driftloop.model_card import FeatureSpec, ModelCard, Task

FEATURE_PREFIX = "feature."
# A categorical vocabulary keeps its most frequent values; the rest share the OOV bucket.
MAX_CATEGORIES = 1000
KINDS = ("numeric", "categorical", "boolean")
TaskSetting = Literal["auto", "classification", "regression"]


def parse_features(spec: str) -> list[FeatureSpec]:
    """Features from a setting: ``"age, city:categorical, member:boolean"``.

    A kind given is checked against the contract's (``kind`` is then in the spec's
    ``model_fields_set``); a bare name takes the feature as the contract has it.
    """
    features = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, kind = item.partition(":")
        if kind and kind not in KINDS:
            raise TrainingError(
                f"feature {item!r}: the kind must be numeric, categorical or boolean"
            )
        features.append(
            FeatureSpec(name=name.strip(), kind=kind) if kind else FeatureSpec(name=name.strip())
        )
    return features


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature names a frame of stored examples holds, in column order."""
    return [c.removeprefix(FEATURE_PREFIX) for c in frame.columns if c.startswith(FEATURE_PREFIX)]


# --- values -----------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A stored value as the app sent it: a Python scalar, None for any missing value.

    Example:
        >>> import numpy as np
        >>> [plain(v) for v in (np.int64(3), np.float64("nan"), np.True_, "a", pd.NA)]
        [3, None, True, 'a', None]
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return None if value != value else value
    if isinstance(value, np.generic):
        return plain(value.item())
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def column_values(frame: pd.DataFrame, column: str) -> list[Any] | None:
    """A column's values as sent (:func:`plain`), or None when ``frame`` lacks it."""
    if column not in frame.columns:
        return None
    return [plain(v) for v in frame[column].tolist()]


def _as_type(value: Any, kind: ValueType | None) -> Any:
    """A value that keeps its contract as the type's Python value (36.0 for an int is 36)."""
    if kind == "int" and type(value) is float:
        return int(value)
    if kind == "float" and type(value) is int:
        return float(value)
    return value


# --- the contract ---------------------------------------------------------------------------


def window_contract(
    frame: pd.DataFrame,
    contract: FeatureContract | None = None,
    *,
    model_name: str | None = None,
    task: TaskSetting = "auto",
    features: Sequence[FeatureSpec] = (),
    max_classes: int = 20,
    minority: float = 0.02,
    min_class_share: float = 0.005,
) -> FeatureContract:
    """The contract a fit on ``frame`` checks its rows against and builds its card from.

    Parameters:
        frame: the window's stored examples (``feature.*`` columns, ``label``).
        contract: the model's contract in force; None infers one from every row of ``frame``
            (version 0, source ``inferred``: it is no version of the contracts topic).
        model_name: the model, for an inferred contract.
        task: the task, or ``auto``; with a contract in force it must be the contract's.
        features: the features to fit on, a subset of the contract's (all of them when
            empty); a kind given must be the contract's.
        max_classes: most distinct integer labels an inferred contract still takes as classes.
        minority: the share under which an inferred type, null or feature is bad data.
        min_class_share: the share of labels under which a value is not an inferred class.
    """
    if contract is None:
        names = [spec.name for spec in features] or feature_columns(frame)
        missing = [name for name in names if FEATURE_PREFIX + name not in frame.columns]
        if missing:
            raise TrainingError(f"no examples carry the features {missing}")
        if not names:
            raise TrainingError("the examples carry no features")
        contract = _inferred(frame, names, model_name, task, max_classes, minority, min_class_share)
    elif task not in ("auto", contract.task):
        raise TrainingError(
            f"the contract of {contract.model_name} (version {contract.version}) is for "
            f"{contract.task}; the trainer's task setting says {task}"
        )
    return _selected(contract, features) if features else contract


def _inferred(
    frame: pd.DataFrame,
    names: list[str],
    model_name: str | None,
    task: TaskSetting,
    max_classes: int,
    minority: float,
    min_class_share: float,
) -> FeatureContract:
    """A contract inferred from every row of ``frame``: the features from their values, the
    task and classes from the labels (or the task setting)."""
    sample = max(len(frame), 1)
    options = {"minority": minority, "min_class_share": min_class_share}
    # Features and labels apart: a task set by hand needs the features' inference only.
    features = ContractInference(
        model_name or "", sample, minority=minority, min_class_share=min_class_share
    )
    columns = {name: column_values(frame, FEATURE_PREFIX + name) or [] for name in names}
    for values in zip(*columns.values(), strict=True):
        features.add(dict(zip(columns, values, strict=True)), 0.5)  # any float: regression
    labels = column_values(frame, "label") or [None] * len(frame)
    try:
        specs = features.freeze().features
    except ValueError as error:
        raise TrainingError(f"the examples make no contract: {error}") from error
    missing = sorted(set(names) - {spec.name for spec in specs})
    if missing:
        raise TrainingError(f"no examples carry the features {missing} (in most of them)")
    label_task, label_type, classes = _label_terms(labels, task, max_classes, options)
    return FeatureContract(
        task=label_task,
        features=specs,
        classes=classes,
        label_type=label_type,
        model_name=model_name,
        version=0,
        source="inferred",
    )


def _label_terms(
    labels: list[Any], task: TaskSetting, max_classes: int, options: dict[str, float]
) -> tuple[Task, ValueType, list[Any]]:
    if task == "regression":
        return "regression", "float", []
    inference = ContractInference(
        "",
        max(len(labels), 1),
        minority=options["minority"],
        min_class_share=options["min_class_share"],
        max_classes=max_classes,
    )
    for label in labels:
        inference.add({"label": 0}, label)
    try:
        inferred = inference.freeze()
    except ValueError as error:
        raise TrainingError(
            f"the window's labels make no task ({error}): nothing to learn"
        ) from error
    if task == "auto" or inferred.task == "classification":
        return inferred.task, inferred.label_type or "float", list(inferred.classes)
    # Classification asked of numbers that look like a quantity: every frequent value a class.
    numbers = [v for v in labels if type(v) in (int, float)]
    counts = Counter(int(v) if value_type(v) == "int" else v for v in numbers)
    least = max(2, options["min_class_share"] * len(numbers))
    classes = sorted(v for v, n in counts.items() if n >= least)
    if len(classes) < 2:
        raise TrainingError(f"the labels hold fewer than two classes {classes}: nothing to learn")
    kind: ValueType = "int" if all(type(c) is int for c in classes) else "float"
    return "classification", kind, classes


def _selected(contract: FeatureContract, features: Sequence[FeatureSpec]) -> FeatureContract:
    """``contract`` with only the ``features`` named (a kind given must be the contract's)."""
    specs = []
    for wanted in features:
        try:
            spec = contract.feature(wanted.name)
        except KeyError:
            raise TrainingError(
                f"{wanted.name!r} is not a feature of the contract of {contract.model_name} "
                f"(version {contract.version}); its features are "
                f"{', '.join(contract.feature_names)}"
            ) from None
        if "kind" in wanted.model_fields_set and wanted.kind != spec.kind:
            raise TrainingError(
                f"feature {wanted.name}: the trainer's features setting says {wanted.kind}, "
                f"its contract {spec.kind} ({spec.type})"
            )
        specs.append(spec)
    return contract.model_copy(update={"features": specs})


# --- the rows that keep it ----------------------------------------------------------------------


@dataclass(frozen=True)
class RowCheck:
    """The rows of a frame that keep a contract, and those left out.

    Parameters:
        rows: the rows that keep it, their contract's columns holding Python values of the
            contract's types (None for a null).
        excluded: rows left out, by the rule they broke first (features before the label).
    """

    rows: pd.DataFrame
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def excluded_rows(self) -> int:
        return sum(self.excluded.values())

    def metrics(self) -> dict[str, int]:
        """What :func:`exclusion_metrics` makes of :attr:`excluded`."""
        return exclusion_metrics(self.excluded)


def exclusion_metrics(excluded: Mapping[str, int]) -> dict[str, int]:
    """``excluded_rows`` and one ``excluded.<rule>`` per rule: the metrics a fit's run and its
    training result carry.

    Example:
        >>> exclusion_metrics({"null_label": 2, "feature_type": 3})
        {'excluded_rows': 5, 'excluded.feature_type': 3, 'excluded.null_label': 2}
    """
    by_rule = {f"excluded.{rule}": count for rule, count in sorted(excluded.items())}
    return {"excluded_rows": sum(excluded.values())} | by_rule


def check_rows(contract: FeatureContract, frame: pd.DataFrame) -> RowCheck:
    """The rows of ``frame`` that keep ``contract`` (checked with :class:`ContractCheck`: its
    features, then its label), and how many broke it, by rule.

    Only the contract's features are read: a column it does not name is no part of the fit.
    """
    check = ContractCheck(contract)
    columns = {
        spec.name: values
        for spec in contract.features
        if (values := column_values(frame, FEATURE_PREFIX + spec.name)) is not None
    }
    labels = column_values(frame, "label") or [None] * len(frame)
    names = list(columns)
    keep = np.zeros(len(frame), dtype=bool)
    excluded: Counter[str] = Counter()
    for i, row in enumerate(zip(*columns.values(), labels, strict=True)):
        problem = check.features(dict(zip(names, row, strict=False))) or check.label(row[-1])
        if problem is None:
            keep[i] = True
        else:
            excluded[problem.rule] += 1
    rows = frame.loc[keep].copy()
    index = rows.index
    for spec in contract.features:
        if spec.name in columns:
            typed = [
                _as_type(v, spec.type) for v, k in zip(columns[spec.name], keep, strict=True) if k
            ]
            rows[FEATURE_PREFIX + spec.name] = pd.Series(typed, index=index, dtype=object)
    label_type = contract.label_type
    typed_labels = [_as_type(v, label_type) for v, k in zip(labels, keep, strict=True) if k]
    rows["label"] = pd.Series(typed_labels, index=index, dtype=object)
    return RowCheck(rows, dict(sorted(excluded.items())))


# --- the card -------------------------------------------------------------------------------


def card_for(
    contract: FeatureContract,
    frame: pd.DataFrame,
    vocabulary_from: pd.DataFrame | None = None,
) -> ModelCard:
    """The card of a model fitted under ``contract`` on ``frame`` (rows that keep it).

    The features, their kinds, types and nullability, the task, the classes (every class the
    contract allows: the model has an output for each), the label's type, the contract's
    model, version and source are the contract's; a categorical feature's categories are the
    values of ``vocabulary_from`` (the training part; ``frame`` when not given), what the
    model knows.
    """
    vocabulary_rows = frame if vocabulary_from is None else vocabulary_from
    specs = [
        spec.model_copy(
            update={
                "categories": _vocabulary(vocabulary_rows, spec.name)
                if spec.kind == "categorical"
                else []
            }
        )
        for spec in contract.features
    ]
    if contract.task == "classification":
        present = {_key(plain(v)) for v in frame["label"] if plain(v) is not None}
        seen = [c for c in contract.classes if _key(c) in present]
        if len(seen) < 2:
            raise TrainingError(
                f"every label in the window is {seen[0]!r}: nothing to learn"
                if seen
                else "no label in the window is a class of the contract: nothing to learn"
            )
    terms = contract.contract().model_dump(exclude={"features"})
    return ModelCard(**terms, features=specs)


def infer_card(
    frame: pd.DataFrame,
    *,
    task: TaskSetting = "auto",
    features: Sequence[FeatureSpec] = (),
    max_classes: int = 20,
    vocabulary_from: pd.DataFrame | None = None,
    contract: FeatureContract | None = None,
    model_name: str | None = None,
) -> ModelCard:
    """The card of a model trained on ``frame``: :func:`window_contract`, then
    :func:`card_for` (no row is checked: see :func:`check_rows`)."""
    terms = window_contract(
        frame,
        contract,
        model_name=model_name,
        task=task,
        features=features,
        max_classes=max_classes,
    )
    return card_for(terms, frame, vocabulary_from)


def same_inputs(card: FeatureContract, other: FeatureContract) -> bool:
    """Whether a model of ``card`` answers what one of ``other`` does, from the same data: the
    same task and the same features, each of the same kind (whatever the vocabularies).

    Example:
        >>> a = ModelCard(task="regression", features=[FeatureSpec(name="x", type="int")])
        >>> b = ModelCard(task="regression", features=[FeatureSpec(name="x", nullable=True)])
        >>> same_inputs(a, b), same_inputs(a, a.model_copy(update={"task": "classification"}))
        (True, False)
    """
    kinds = {(spec.name, spec.kind) for spec in card.features}
    return card.task == other.task and kinds == {(spec.name, spec.kind) for spec in other.features}


def same_model(card: FeatureContract, other: FeatureContract) -> bool:
    """Whether a model built for ``other`` *is* one for ``card`` (a warm start's test): the same
    inputs in order, of the same kinds and vocabularies (its preprocessing), and the same
    outputs (the task, the classes with their types). Types of numbers and nullability do not
    change the model.
    """

    def shape(contract: FeatureContract) -> tuple[Any, ...]:
        features = [(spec.name, spec.kind, spec.categories) for spec in contract.features]
        return contract.task, features, [_key(c) for c in contract.classes]

    return shape(card) == shape(other)


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
    """One ``(n, 1)`` array per feature of ``card``: float32 for numeric and boolean features
    (true 1.0, false 0.0), str for categorical ones.

    A feature ``frame`` lacks, or a missing value, is fed as 0.0 (numeric, boolean) or ``""``
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
        elif spec.kind == "boolean":
            values = _flags(column)
        else:
            values = category_values(column).to_numpy(dtype=str)
        inputs[spec.name] = values.reshape(-1, 1)
    return inputs


def _flags(column: pd.Series) -> np.ndarray:
    """A boolean feature as float32: true 1.0; false, null (and anything else) 0.0."""
    if pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=np.float32)
    return np.fromiter(
        (1.0 if plain(v) is True else 0.0 for v in column.tolist()),
        dtype=np.float32,
        count=len(column),
    )


def targets(card: ModelCard, labels: pd.Series) -> np.ndarray:
    """What the loss takes: class indexes (-1 for a class the card lacks) or float32 values."""
    if card.task == "regression":
        return pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float32)
    index = {_key(c): i for i, c in enumerate(card.classes)}
    return np.array([index.get(_key(plain(v)), -1) for v in labels], dtype=np.int32)


def feature_rows(card: ModelCard, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The examples as feature dicts, for the reference sketch."""
    columns = {
        spec.name: frame[FEATURE_PREFIX + spec.name].tolist()
        if FEATURE_PREFIX + spec.name in frame.columns
        else [None] * len(frame)
        for spec in card.features
    }
    return [{name: plain(values[i]) for name, values in columns.items()} for i in range(len(frame))]


def _key(value: Any) -> tuple[str, Any]:
    # True == 1 in Python; a class key keeps booleans and numbers apart.
    return (type(value).__name__ if isinstance(value, bool) else "value", value)
