"""Data quality: invalid shares per stream, the verdict's hysteresis, what the event says."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.events import EventType
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.schemas import EventSchemas
from driftloop.services.monitor.quality import RECOVER_FRACTION, DataQuality, QualityChange
from tests.unit.monitor.streams import CARD, predictions

NULLABLE = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="age"),
        FeatureSpec(name="income", nullable=True),
        FeatureSpec(name="region", kind="categorical", categories=["n", "s", "e", "w"]),
    ],
    classes=[0, 1],
)
CARDS = {("m", "1"): CARD, ("m", "2"): NULLABLE}


def lookup(name: str, version: str) -> ModelCard | None:
    return CARDS.get((name, version))


def make(**options: Any) -> DataQuality:
    return DataQuality(lookup, **({"window": 100, "min_events": 50} | options))


def example(label: Any = 1, version: str = "1", name: str = "m") -> dict[str, Any]:
    return {"model_name": name, "model_version": version, "label": label}


def letter(rule: str = "unknown_class", field: str = "label", name: str | None = "m") -> dict:
    event: dict[str, Any] = {"error": {"message": "", "field": field, "rule": rule}}
    if name is not None:
        event["model_name"] = name
    return event


def prediction(features: dict[str, Any], version: str = "1") -> dict[str, Any]:
    return {"model_name": "m", "model_version": version, "features": features, "prediction": 1}


def changes(quality: DataQuality, events: list[tuple[str, dict[str, Any]]]) -> list[QualityChange]:
    observe = {
        "prediction": quality.observe_prediction,
        "example": quality.observe_example,
        "letter": quality.observe_dead_letter,
    }
    return [c for kind, event in events if (c := observe[kind](event)) is not None]


def test_a_burst_of_invalid_labels_degrades_and_its_end_recovers() -> None:
    quality = make()
    clean = [("example", example(i % 2)) for i in range(100)]
    # 30% of the labels broken: 3 in every 10.
    burst = [("letter", letter()) if i % 10 < 3 else ("example", example()) for i in range(100)]
    (degraded,) = changes(quality, clean + burst)
    assert degraded.status == "degraded" and degraded.stream == "labels"
    assert degraded.holding and quality.degraded("m")
    assert degraded.invalid_share > 0.1 and degraded.threshold == 0.1
    (recovered,) = changes(quality, clean)
    assert recovered.status == "recovered" and not recovered.holding
    assert recovered.invalid_share <= 0.1 * RECOVER_FRACTION and not quality.degraded("m")
    # Above half the threshold the burst still counts: 30 broken of 100 leave after ~83 clean.
    assert 80 <= 100 - quality.window("m")["invalid"] / 0.3 <= 100


def test_no_verdict_before_a_stream_holds_min_events() -> None:
    quality = make(min_events=50)
    assert changes(quality, [("letter", letter())] * 49) == []
    (change,) = changes(quality, [("letter", letter())])
    assert change.status == "degraded" and change.invalid_share == 1.0


def test_each_stream_is_judged_apart_so_predictions_do_not_dilute_labels() -> None:
    # One prediction in ten gets a label, and every label is broken: 9% of all events.
    quality = make(window=1000, min_events=50)
    stream = list(predictions(900))
    events = [("prediction", p) for p in stream]
    events[::9] = [("letter", letter())] * len(events[::9])
    (change,) = changes(quality, events)
    assert change.stream == "labels" and change.invalid_share == 1.0
    assert quality.shares("m")["features"] == 0.0


def test_a_dead_letter_without_a_model_is_no_models() -> None:
    quality = make(min_events=1)
    assert changes(quality, [("letter", letter(name=None))] * 10) == []
    assert quality.models == {}


def test_a_feature_rule_counts_against_the_features_stream() -> None:
    quality = make(min_events=10)
    rows = [("prediction", p) for p in predictions(10)]
    (change,) = changes(quality, rows + [("letter", letter("feature_type", "features.age"))] * 2)
    assert change.stream == "features" and change.window["invalid_by_rule"] == {"feature_type": 2}


def test_a_prediction_that_breaks_its_card_is_left_to_its_dead_letter() -> None:
    quality = make()
    row = next(predictions(1))
    broken = prediction(row["features"] | {"age": "forty"})
    assert quality.observe_prediction(broken) is None
    assert len(quality.models["m"].windows["features"]) == 0
    quality.observe_prediction(row)
    assert len(quality.models["m"].windows["features"]) == 1


def test_nulls_unknown_categories_and_label_balance_describe_the_window() -> None:
    quality = make(min_events=1, max_invalid_share=1.0)
    rows = [{"age": 40.0, "income": None if i % 4 == 0 else 1.0, "region": "n"} for i in range(8)]
    rows[1]["region"] = "atlantis"
    for row in rows:
        quality.observe_prediction(prediction(row, version="2"))
    for label in (0, 1, 1, 1):
        quality.observe_example(example(label, version="2"))
    window = quality.window("m")
    assert window["null_share"] == {"age": 0.0, "income": 0.25, "region": 0.0}
    assert window["unknown_category_share"] == {"region": 0.125}
    assert window["label_balance"] == {"0": 0.25, "1": 0.75}
    assert window["size"] == 12 and window["invalid"] == 0


def test_a_regression_model_has_no_label_balance() -> None:
    card = ModelCard(task="regression", features=[FeatureSpec(name="x")])
    quality = DataQuality(lambda name, version: card, window=10, min_events=1)
    for label in (1.5, 2.0, 3):
        quality.observe_example(example(label))
    assert quality.window("m")["label_balance"] == {}


def test_the_events_are_valid_data_quality_events() -> None:
    quality = make()
    events = [("prediction", p) for p in predictions(60)] + [("example", example())] * 60
    events += [("letter", letter())] * 20 + [("example", example(0))] * 100
    degraded, recovered = changes(quality, events)
    schemas = EventSchemas()
    for change in (degraded, recovered):
        event = change.event()
        schemas.validate(EventType.DATA_QUALITY, event)
        assert event["holding_triggers"] is (change.status == "degraded")
    assert degraded.event()["window"]["null_share"] == {"age": 0.0, "income": 0.0, "region": 0.0}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        DataQuality(lookup, window=0)
    with pytest.raises(ValueError):
        DataQuality(lookup, max_invalid_share=0)


# --- properties ------------------------------------------------------------------------------

kinds = st.lists(st.sampled_from(["example", "letter", "prediction"]), max_size=400)


@settings(max_examples=60, deadline=None)
@given(kinds=kinds, window=st.integers(1, 60), min_events=st.integers(1, 60))
def test_the_running_counts_are_those_of_the_last_events(
    kinds: list[str], window: int, min_events: int
) -> None:
    quality = make(window=window, min_events=min_events, max_invalid_share=1.0)
    rows = iter(predictions(len(kinds)))
    seen: dict[str, list[bool]] = {"features": [], "labels": []}
    for kind in kinds:
        if kind == "prediction":
            quality.observe_prediction(next(rows))
            seen["features"].append(False)
        else:
            changes(quality, [(kind, letter() if kind == "letter" else example())])
            seen["labels"].append(kind == "letter")
    for stream, flags in seen.items():
        last = flags[-window:]
        expected = sum(last) / len(last) if last else 0.0
        assert quality.shares("m").get(stream, 0.0) == pytest.approx(expected)


@settings(max_examples=100, deadline=None)
@given(
    broken=st.lists(st.booleans(), min_size=1, max_size=600),
    threshold=st.sampled_from([0.05, 0.1, 0.3]),
)
def test_the_verdict_alternates_and_each_change_is_past_its_bound(
    broken: list[bool], threshold: float
) -> None:
    quality = make(window=50, min_events=20, max_invalid_share=threshold)
    found = changes(
        quality, [("letter", letter()) if b else ("example", example()) for b in broken]
    )
    assert [c.status for c in found] == [
        ("degraded", "recovered")[i % 2] for i in range(len(found))
    ]
    for change in found:
        if change.status == "degraded":
            assert change.invalid_share > threshold
        else:
            assert change.invalid_share <= threshold * RECOVER_FRACTION
    assert quality.degraded("m") == (len(found) % 2 == 1)


def test_a_share_hovering_at_the_threshold_degrades_once() -> None:
    # The defaults' window: a share of 0.05 is 5 standard errors under a true 0.1.
    rng = random.Random(5)
    quality = make(window=1000, min_events=200)
    crossings, above = 0, False
    found: list[QualityChange] = []
    for _ in range(10_000):
        broken = rng.random() < 0.1
        found += changes(quality, [("letter", letter()) if broken else ("example", example())])
        now_above = quality.shares("m")["labels"] > 0.1
        crossings += now_above != above
        above = now_above
    assert crossings > 20, "the share does cross the threshold, back and forth"
    assert [c.status for c in found] == ["degraded"]


def test_a_prediction_that_breaks_its_card_is_not_drift_data() -> None:
    quality = make()
    assert quality.breaks_card(prediction({"age": "old", "income": 1.0, "region": "n"}, "2"))
    assert not quality.breaks_card(prediction({"age": 30.0, "income": None, "region": "z"}, "2"))
    # A version whose card is not loaded yet: nothing to judge by.
    assert not quality.breaks_card(prediction({"age": "old"}, "9"))
