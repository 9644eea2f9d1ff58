"""The model card and the reference sketch: what travels with every model version."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.reference import SAMPLE_ROWS, ReferenceSketch

CARD = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="age"),
        FeatureSpec(name="region", kind="categorical", categories=["north", "south"]),
    ],
    classes=[0, 1],
)


def test_a_card_round_trips_through_json() -> None:
    assert ModelCard.model_validate_json(CARD.model_dump_json()) == CARD
    assert CARD.feature("region").categories == ["north", "south"]
    with pytest.raises(KeyError):
        CARD.feature("income")


def test_a_card_refuses_duplicate_features_and_a_single_class() -> None:
    with pytest.raises(ValidationError, match="unique"):
        ModelCard(task="regression", features=[FeatureSpec(name="x"), FeatureSpec(name="x")])
    with pytest.raises(ValidationError, match="two classes"):
        ModelCard(task="classification", features=[FeatureSpec(name="x")], classes=[1])


def test_the_sketch_keeps_quantiles_frequencies_and_missing_counts() -> None:
    rows = [{"age": float(i), "region": "north" if i < 750 else "south"} for i in range(1000)]
    rows += [{"age": None, "region": None}] * 10
    sketch = ReferenceSketch.build(CARD, rows, predictions=[0] * 500 + [1] * 510)
    age, region = sketch.features["age"], sketch.features["region"]
    assert (age.count, age.missing) == (1010, 10)
    assert age.quantiles[0] == 0.0 and age.quantiles[-1] == 999.0
    assert math.isclose(age.quantiles[50], 499.5)
    assert region.frequencies == {"north": 0.75, "south": 0.25}
    assert sketch.prediction is not None and sketch.prediction.kind == "categorical"
    assert sketch.prediction.frequencies["1"] == pytest.approx(510 / 1010)


def test_the_sample_is_bounded_and_holds_only_the_cards_features() -> None:
    rows = [{"age": float(i), "region": "north", "secret": i} for i in range(5000)]
    sketch = ReferenceSketch.build(CARD, rows)
    assert len(sketch.sample) == SAMPLE_ROWS
    assert set(sketch.sample[0]) == {"age", "region"}
    assert sketch.prediction is None


def test_a_column_with_no_finite_value_has_no_quantiles() -> None:
    card = ModelCard(task="regression", features=[FeatureSpec(name="x")])
    sketch = ReferenceSketch.build(card, [{"x": None}, {"x": float("nan")}])
    assert sketch.features["x"].quantiles == []
    assert sketch.features["x"].missing == 2  # NaN counts as missing, like null
