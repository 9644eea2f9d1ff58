"""The feature contract: its checks, its robust inference, ingest's guard, the log's rule."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.contract import (
    ContractCheck,
    ContractInference,
    FeatureContract,
    FeatureSpec,
    fits,
    infer_contract,
)
from driftloop.contract_log import resolve
from driftloop.services.ingest.guard import ADMIT, ContractGuard

LOANS = FeatureContract(
    model_name="loans",
    version=1,
    task="classification",
    classes=[0, 1],
    features=[
        FeatureSpec(name="amount", type="float"),
        FeatureSpec(name="term_months", type="int"),
        FeatureSpec(name="rate", type="float"),
        FeatureSpec(name="grade", kind="categorical", categories=list("ABCDEFG")),
        FeatureSpec(name="home", kind="categorical", categories=["rent", "own", "mortgage"]),
        FeatureSpec(name="verified", kind="boolean"),
        FeatureSpec(name="income", type="float", nullable=True),
    ],
)
GOOD = {
    "amount": 12000.5,
    "term_months": 36,
    "rate": 0.07,
    "grade": "B",
    "home": "own",
    "verified": True,
    "income": 52000.0,
}


@pytest.mark.parametrize(
    ("feature", "value", "rule"),
    [
        ("amount", "12,000", "feature_type"),
        ("income", "N/A", "feature_type"),
        ("term_months", "36 months", "feature_type"),
        ("verified", "yes", "feature_type"),
        ("verified", 1, "feature_type"),
        ("term_months", 36.5, "feature_type"),
        ("grade", 3, "feature_type"),
        ("amount", True, "feature_type"),
        ("amount", math.nan, "not_finite"),
        ("rate", math.inf, "not_finite"),
        ("amount", None, "null_feature"),
        ("term_months", 1 << 70, "not_finite"),
    ],
)
def test_an_ill_typed_feature_is_refused_naming_it_and_its_rule(
    feature: str, value: Any, rule: str
) -> None:
    violation = ContractCheck(LOANS).features(GOOD | {feature: value})
    assert violation is not None
    assert (violation.field, violation.rule) == (f"features.{feature}", rule)


def test_missing_and_unknown_features_and_what_null_means() -> None:
    check = ContractCheck(LOANS)
    missing = {k: v for k, v in GOOD.items() if k != "rate"}
    assert check.features(missing).rule == "missing_feature"  # type: ignore[union-attr]
    assert check.features(GOOD | {"zip": "12345"}).rule == "unknown_feature"  # type: ignore[union-attr]
    # A nullable feature may be null or left out; 36.0 is an integer, as in JSON Schema.
    assert check.features(GOOD | {"income": None}) is None
    assert check.features({k: v for k, v in GOOD.items() if k != "income"}) is None
    assert check.features(GOOD | {"term_months": 36.0, "amount": 12000}) is None


@pytest.mark.parametrize(
    ("label", "rule"),
    [(None, "null_label"), ("maybe", "label_type"), (7, "unknown_class"), (True, "label_type"),
     (0.5, "label_type")],
)  # fmt: skip
def test_a_label_outside_the_classes_is_refused(label: Any, rule: str) -> None:
    assert ContractCheck(LOANS).label(label).rule == rule  # type: ignore[union-attr]


def test_classes_keep_booleans_and_numbers_apart() -> None:
    flags = ContractCheck(LOANS.model_copy(update={"classes": [False, True], "label_type": "bool"}))
    assert flags.label(True) is None
    assert flags.label(1).rule == "label_type"  # type: ignore[union-attr]
    assert ContractCheck(LOANS).label(1.0) is None  # 1.0 is the integer 1


def test_an_unknown_category_is_not_an_error_but_is_named() -> None:
    check = ContractCheck(LOANS)
    assert check.features(GOOD | {"grade": "Z"}) is None
    assert check.unknown_categories(GOOD | {"grade": "Z"}) == ["grade"]


def test_the_store_schema_has_one_type_per_column() -> None:
    schema = LOANS.arrow_schema()
    types = {name: str(schema.field(name).type) for name in schema.names}
    assert types["feature.term_months"] == "int64"
    assert types["feature.verified"] == "bool"
    assert types["feature.grade"] == "string"
    assert types["label"] == types["prediction"] == "int64"


# --- inference, as a property: clean streams with a minority of bad records ------------------

SPECS = st.lists(st.sampled_from(["int", "float", "string", "bool"]), min_size=1, max_size=6).map(
    lambda types: [(f"f{i}", t) for i, t in enumerate(types)]
)


def clean_value(kind: str, rng: random.Random) -> Any:
    if kind == "int":
        return rng.randint(-1000, 1000)
    if kind == "float":
        return rng.uniform(-1e4, 1e4) + 0.25  # never integral
    if kind == "string":
        return rng.choice(["red", "green", "blue", "grey"])
    return rng.random() < 0.5


def bad_value(kind: str, rng: random.Random) -> Any:
    return {
        "int": rng.choice(["36 months", 36.5, True, None]),
        "float": rng.choice(["12,000", "N/A", False, None]),
        "string": rng.choice([3, 4.5, True, None]),
        "bool": rng.choice(["yes", 1, 0.0, None]),
    }[kind]


@settings(max_examples=40, deadline=None)
@given(
    specs=SPECS,
    classes=st.sampled_from([[0, 1], ["no", "yes"], [0, 1, 2, 3], [False, True]]),
    seed=st.integers(0, 2**32 - 1),
)
def test_inference_keeps_a_minority_of_bad_records_out_of_the_contract(
    specs: list[tuple[str, str]], classes: list[Any], seed: int
) -> None:
    rng = random.Random(seed)
    clean, bad = [], []
    for _ in range(600):
        features = {name: clean_value(kind, rng) for name, kind in specs}
        clean.append((features, rng.choice(classes)))
    # 1%: features of the wrong type, and labels that are no class (each value rarer than
    # min_class_share: a value as common as a class would be one)
    for bad_label in (None, "maybe", 7, 2.5, None, "maybe"):
        features = {name: clean_value(kind, rng) for name, kind in specs}
        name, kind = rng.choice(specs)
        bad.append((features | {name: bad_value(kind, rng)}, rng.choice(classes)))
        bad.append((features, bad_label))
    stream = clean + bad
    rng.shuffle(stream)

    contract = infer_contract("m", stream, sample=len(stream))

    kinds = {"int": "numeric", "float": "numeric", "string": "categorical", "bool": "boolean"}
    assert [(f.name, f.kind, f.type, f.nullable) for f in contract.features] == sorted(
        (name, kinds[kind], kind, False) for name, kind in specs
    )
    assert contract.task == "classification" and contract.classes == sorted(classes)
    check = ContractCheck(contract)
    for features, label in clean:
        assert check.features(features) is None and check.label(label) is None
    for features, label in bad:
        assert check.features(features) is not None or check.label(label) is not None


def test_a_feature_often_null_is_nullable_and_floats_make_a_regression() -> None:
    rng = random.Random(1)
    rows = [({"x": rng.random(), "note": None if i % 5 == 0 else "a"}, rng.random() * 100)
            for i in range(300)]  # fmt: skip
    contract = infer_contract("m", rows, sample=300)
    assert contract.task == "regression" and contract.label_type == "float"
    assert contract.feature("note").nullable and not contract.feature("x").nullable


def test_many_integer_labels_are_a_regression_and_one_class_is_no_contract() -> None:
    counts = [({"x": 1.5}, i) for i in range(100)]
    assert infer_contract("m", counts, sample=100).task == "regression"
    inference = ContractInference("m", sample=10)
    for _ in range(20):
        inference.add({"x": 1.5}, "yes")
    assert not inference.ready
    with pytest.raises(ValueError, match="fewer than two classes"):
        inference.freeze()


@given(value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()))
def test_fits_agrees_with_json_types(value: Any) -> None:
    if fits("int", value):
        assert not isinstance(value, bool) and float(value).is_integer()
    if fits("float", value):
        assert isinstance(value, int | float) and not isinstance(value, bool)
        assert math.isfinite(value)
    assert fits("string", value) == isinstance(value, str)
    assert fits("bool", value) == isinstance(value, bool)


# --- ingest's guard -----------------------------------------------------------------------


def example(features: dict[str, Any], label: Any, model: str = "m") -> dict[str, Any]:
    return {"model_name": model, "features": features, "label": label}


def test_the_guard_refuses_what_arrived_before_the_contract_was_frozen() -> None:
    guard = ContractGuard(sample=50)
    held = [example({"x": float(i) + 0.5}, i % 2) for i in range(49)]
    held.insert(3, example({"x": "N/A"}, 1))
    held.insert(7, example({"x": 2.5}, None))
    for number, item in enumerate(held):
        assert guard.admit(item, number).action == "hold"
    assert guard.holding and guard.held() == 51
    (contract,) = guard.inferred()
    guard.adopt([contract])
    released = guard.release()
    assert [token for _, token, _ in released] == list(range(51))  # in the order they came
    refused = {token: verdict.violation.rule for _, token, verdict in released if verdict.violation}
    assert refused == {3: "feature_type", 7: "null_label"}
    assert not guard.holding


def test_a_contract_from_the_log_wins_over_the_one_being_inferred() -> None:
    guard = ContractGuard(sample=100)
    guard.admit(example({"x": 1.5}, 1), "t")
    other = FeatureContract(
        model_name="m", version=1, task="classification", classes=[1, 2],
        features=[FeatureSpec(name="x")],
    )  # fmt: skip
    guard.adopt([other])
    assert guard.inferred() == []
    ((_, _, verdict),) = guard.release()
    assert verdict is ADMIT
    assert guard.admit(example({"x": 1.5}, 0)).violation.rule == "unknown_class"  # type: ignore[union-attr]


def test_examples_that_make_no_contract_are_refused_once_too_many_are_held() -> None:
    guard = ContractGuard(sample=5, max_held=8)
    for i in range(8):
        guard.admit(example({"x": 1.5}, "same"), i)
    released = guard.release()
    assert len(released) == 8
    assert {verdict.violation.rule for _, _, verdict in released} == {"no_contract"}  # type: ignore[union-attr]
    assert not guard.holding


def test_a_prediction_is_checked_only_once_its_model_has_a_contract() -> None:
    guard = ContractGuard({"loans": LOANS})
    assert guard.prediction({"model_name": "other", "features": {"x": "?"}}) is None
    broken = guard.prediction({"model_name": "loans", "features": GOOD | {"verified": "yes"}})
    assert broken is not None and broken.field == "features.verified"


# --- the contracts log's rule -----------------------------------------------------------------


@given(versions=st.lists(st.integers(1, 5), min_size=1, max_size=20))
def test_the_first_record_of_the_newest_version_is_in_force(versions: list[int]) -> None:
    contracts = [
        FeatureContract(
            model_name="m", version=v, task="regression", features=[FeatureSpec(name=f"x{i}")]
        )
        for i, v in enumerate(versions)
    ]
    in_force = resolve(contracts)["m"]
    # The newest version seen before any later, newer one: each record only ever moves it up.
    expected, best = None, 0
    for contract in contracts:
        if contract.version > best:
            expected, best = contract, contract.version
    assert in_force is expected


def test_a_sample_that_does_not_fill_is_inferred_from_after_the_wait() -> None:
    guard = ContractGuard(sample=1000, max_wait_s=30.0)
    for i in range(60):
        guard.admit(example({"x": i + 0.5}, i % 2), i, now=100.0 + i / 10)
    assert guard.inferred(now=129.0) == []  # 29 s after the first: still waiting
    (contract,) = guard.inferred(now=130.0)
    assert contract.classes == [0, 1]
    few = ContractGuard(sample=1000, max_wait_s=30.0)
    for i in range(10):  # under MIN_SAMPLE: wait on, however long
        few.admit(example({"x": i + 0.5}, i % 2), i, now=0.0)
    assert few.inferred(now=1e9) == []
