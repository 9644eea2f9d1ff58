"""What travels with every registered model version: its feature schema and its task.

The trainer writes a :class:`ModelCard` next to each model it logs; serve reads it to validate
requests and to turn the model's outputs back into labels; the monitor reads the
:class:`~driftloop.reference.ReferenceSketch` stored beside it. Both are JSON artifacts of the
MLflow run that registered the version (see :mod:`driftloop.registry`).

The served model's contract, whatever builds it: a Keras model whose inputs are named after the
features, one ``(batch, 1)`` tensor each (``float32`` for numeric features, ``string`` for
categorical ones), and whose output is ``(batch, len(classes))`` class probabilities for
classification or ``(batch, 1)`` values for regression.

Example:
    >>> card = ModelCard(
    ...     task="classification",
    ...     features=[FeatureSpec(name="age"), FeatureSpec(name="region", kind="categorical",
    ...                                                   categories=["north", "south"])],
    ...     classes=[0, 1],
    ... )
    >>> card.feature_names
    ['age', 'region']
    >>> ModelCard.model_validate_json(card.model_dump_json()) == card
    True
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from driftloop.events import Scalar

Task = Literal["classification", "regression"]


class FeatureSpec(BaseModel):
    """One input feature.

    Parameters:
        name: the feature's key in requests and events.
        kind: ``numeric`` (sent as a number) or ``categorical`` (sent as a string).
        categories: for a categorical feature, the values seen in training; others are mapped
            to an out-of-vocabulary bucket by the model, and count as drift in the monitor.
    """

    name: str = Field(min_length=1, max_length=256)
    kind: Literal["numeric", "categorical"] = "numeric"
    categories: list[str] = Field(default_factory=list)


class ModelCard(BaseModel):
    """A model version's task, features and output classes, saved with it in the registry.

    Parameters:
        task: ``classification`` or ``regression``.
        features: the inputs, in the order the model was built with.
        classes: for classification, the label value of each output column.
        target: name of the label, for reports.
        metrics: the holdout metrics the version was judged on.
        trigger_id: the trigger that led to the fit, if any.
    """

    task: Task
    features: list[FeatureSpec] = Field(min_length=1)
    classes: list[Scalar] = Field(default_factory=list)
    target: str = "label"
    metrics: dict[str, float] = Field(default_factory=dict)
    trigger_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = self.feature_names
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.task == "classification" and len(self.classes) < 2:
            raise ValueError("a classification model needs at least two classes")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    def feature(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)
