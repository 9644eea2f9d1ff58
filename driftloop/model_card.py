"""What travels with every registered model version: its contract, and what its fit measured.

A :class:`ModelCard` *is* the model's :class:`~driftloop.contract.FeatureContract` (features,
their kinds and types, the label's classes, the contract's version) plus the holdout metrics
the version was judged on. The trainer writes it next to each model it logs; serve reads it to
check requests (with the contract's own check) and to turn the model's outputs back into
labels; the monitor reads the :class:`~driftloop.reference.ReferenceSketch` stored beside it.
Both are JSON artifacts of the MLflow run that registered the version (see
:mod:`driftloop.registry`).

The served model's inputs, whatever builds it: a Keras model whose inputs are named after the
features, one ``(batch, 1)`` tensor each (``float32`` for numeric and boolean features,
``string`` for categorical ones), and whose output is ``(batch, len(classes))`` class
probabilities for classification or ``(batch, 1)`` values for regression.

Example:
    >>> card = ModelCard(
    ...     task="classification",
    ...     features=[FeatureSpec(name="age"), FeatureSpec(name="region", kind="categorical",
    ...                                                   categories=["north", "south"])],
    ...     classes=[0, 1],
    ... )
    >>> card.feature_names, card.label_type
    (['age', 'region'], 'int')
    >>> ModelCard.model_validate_json(card.model_dump_json()) == card
    True
"""

from __future__ import annotations

from pydantic import Field

from driftloop.contract import FeatureContract, FeatureSpec, Task

__all__ = ["FeatureSpec", "ModelCard", "Task"]


class ModelCard(FeatureContract):
    """A model version's contract, saved with it in the registry, and its fit's outcome.

    Parameters:
        metrics: the holdout metrics the version was judged on.
        trigger_id: the trigger that led to the fit, if any.
    """

    metrics: dict[str, float] = Field(default_factory=dict)
    trigger_id: str | None = None
