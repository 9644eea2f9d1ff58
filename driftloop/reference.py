"""The reference a model version's live data is compared with: a sketch of its training data.

The trainer builds a :class:`ReferenceSketch` from the rows it trained on and saves it with the
model version; the monitor compares each window of live data with the sketch of the version
that made the predictions. A sketch keeps, per feature, what the drift statistics need and no
more: quantiles for a numeric feature (KS, Wasserstein and PSI against the reference
distribution), category frequencies for a categorical one (chi-squared, Jensen-Shannon), the
same for the model's output (prediction drift), and a small uniform sample of whole rows for
the full report.

Example:
    >>> from driftloop.model_card import FeatureSpec
    >>> card = ModelCard(task="regression", features=[FeatureSpec(name="x")])
    >>> sketch = ReferenceSketch.build(card, [{"x": float(i)} for i in range(101)],
    ...                                predictions=[0.0] * 101)
    >>> sketch.features["x"].quantiles[50], sketch.count
    (50.0, 101)
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from driftloop.events import Scalar
from driftloop.model_card import ModelCard

# 101 points (every percentile) bound the error of a CDF read from them by 1%, well under the
# KS critical values of the window sizes the monitor uses.
QUANTILES = 101
SAMPLE_ROWS = 1000
OTHER = "__other__"


class FeatureSketch(BaseModel):
    """One column's distribution.

    Parameters:
        kind: ``numeric`` or ``categorical``.
        count: values seen, missing ones included.
        missing: values that were null.
        quantiles: for numeric columns, the 0th to 100th percentiles.
        mean, std: for numeric columns.
        frequencies: for categorical columns, the share of each category among non-null values.
    """

    kind: str
    count: int
    missing: int = 0
    quantiles: list[float] = Field(default_factory=list)
    mean: float | None = None
    std: float | None = None
    frequencies: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def numeric(cls, values: Sequence[Any]) -> FeatureSketch:
        present = np.array([float(v) for v in values if v is not None], dtype=np.float64)
        present = present[np.isfinite(present)]
        if present.size == 0:
            return cls(kind="numeric", count=len(values), missing=len(values))
        return cls(
            kind="numeric",
            count=len(values),
            missing=len(values) - int(present.size),
            quantiles=np.quantile(present, np.linspace(0, 1, QUANTILES)).tolist(),
            mean=float(present.mean()),
            std=float(present.std()),
        )

    @classmethod
    def categorical(cls, values: Sequence[Any]) -> FeatureSketch:
        present = [str(v) for v in values if v is not None]
        counts = Counter(present)
        total = max(len(present), 1)
        return cls(
            kind="categorical",
            count=len(values),
            missing=len(values) - len(present),
            frequencies={key: n / total for key, n in sorted(counts.items())},
        )


class ReferenceSketch(BaseModel):
    """The reference of one model version.

    Parameters:
        count: training rows the sketch was built from.
        features: one :class:`FeatureSketch` per feature of the model card.
        prediction: the model's outputs on those rows (categorical for classification).
        sample: up to ``SAMPLE_ROWS`` rows drawn uniformly, for reports that need raw data.
    """

    count: int
    features: dict[str, FeatureSketch]
    prediction: FeatureSketch | None = None
    sample: list[dict[str, Scalar]] = Field(default_factory=list)

    @classmethod
    def build(
        cls,
        card: ModelCard,
        rows: Sequence[Mapping[str, Any]],
        predictions: Sequence[Any] | None = None,
        seed: int = 0,
    ) -> ReferenceSketch:
        """Sketch ``rows`` (feature dicts) and the model's ``predictions`` on them."""
        features = {}
        for spec in card.features:
            column = [row.get(spec.name) for row in rows]
            features[spec.name] = (
                FeatureSketch.categorical(column)
                if spec.kind == "categorical"
                else FeatureSketch.numeric(column)
            )
        prediction = None
        if predictions is not None:
            prediction = (
                FeatureSketch.categorical(predictions)
                if card.task == "classification"
                else FeatureSketch.numeric(predictions)
            )
        picked = random.Random(seed).sample(range(len(rows)), min(SAMPLE_ROWS, len(rows)))
        sample = [{name: rows[i].get(name) for name in card.feature_names} for i in sorted(picked)]
        return cls(count=len(rows), features=features, prediction=prediction, sample=sample)
