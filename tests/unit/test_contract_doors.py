"""Every door gives one verdict: serve's decoding agrees with the contract's check.

Random contracts, random records (valid ones, and mutated: a wrong type, a null, a feature left
out or unknown, NaN or infinity, ``36.5`` for an integer, a boolean for a number, a number for
a boolean, strings): serve accepts a record, as plain records or as OIP tensors, exactly when
:meth:`~driftloop.contract.ContractCheck.features` does, and names the field the check names.
What it accepts it logs as sent, in prediction events that ingest's door admits after the trip
through JSON; the model gets the values as the trainer feeds them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from driftloop.contract import INT64_MAX, ContractCheck, FeatureSpec
from driftloop.errors import InvalidInput
from driftloop.model_card import ModelCard
from driftloop.services.ingest.guard import ContractGuard
from driftloop.services.serve import protocol
from driftloop.services.serve.protocol import (
    PACKED,
    Predictions,
    decode_infer,
    decode_records,
    prediction_event,
    prediction_rows,
)

MODEL = "doors"
# Feature names: never a body's own keys (`records`, `request_id`, `id`); dots test the
# translation of the contract's `features.x` into serve's field names.
NAMES = st.text(alphabet="abcxyz_.", min_size=1, max_size=6)
KINDS = st.sampled_from(
    [("numeric", "float"), ("numeric", "int"), ("categorical", "string"), ("boolean", "bool")]
)


@st.composite
def contracts(draw: st.DrawFn) -> ModelCard:
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    features = []
    for name in names:
        kind, value_type = draw(KINDS)
        categories = ["A", "B"] if kind == "categorical" and draw(st.booleans()) else []
        features.append(
            FeatureSpec(
                name=name,
                kind=kind,
                type=value_type,
                nullable=draw(st.booleans()),
                categories=categories,
            )
        )
    return ModelCard(
        model_name=MODEL, version=1, task="classification", classes=[0, 1], features=features
    )


# Values each type takes, as orjson parses a body into them, past float32 too (0 for the model).
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
SMALL_INTS = st.integers(-INT64_MAX, INT64_MAX)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "float": FLOATS | SMALL_INTS | st.sampled_from([0, -0.0, 3.4e38, 3.5e38, 1e300]),
    "int": SMALL_INTS | st.integers(-(2**53), 2**53).map(float) | st.sampled_from([36, 36.0]),
    "string": st.text(max_size=4) | st.sampled_from(["A", "B", ""]),
    "bool": st.booleans(),
}
# The values at the edges of the types: where a bulk test and the contract could part.
EDGES = st.sampled_from(
    [
        *(math.nan, math.inf, -math.inf, 36.5, 36.0, 36, -0.0, 1e39, -3.5e38, 3.4e38),
        *(2**62, 2**63 - 1, 2**63, -(2**63), 2**64, 2**1000 - 1, 2**1000, -(2**1010)),
        *(True, False, 1, 0, "36", "true", "", None),
    ]
)
# Anything a JSON body holds, what no feature takes included.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**1100), 2**1100),
    st.floats(),  # NaN and infinities too
    st.sampled_from([36.5, math.nan, math.inf, -math.inf, 1, 0, "36", "true", "", 2**63, 2**64]),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


@st.composite
def records(draw: st.DrawFn, card: ModelCard, valid: bool) -> dict[str, Any]:
    """A record of ``card``: valid, or each feature valid, mutated or left out (and unknown
    keys added), at random."""
    record: dict[str, Any] = {}
    for spec in card.features:
        value_type = spec.type or "float"
        if valid:
            choice = draw(
                st.sampled_from(["value", "null", "left out"] if spec.nullable else ["value"])
            )
        else:
            choice = draw(st.sampled_from(["value", "value", "null", "left out", "any", "edge"]))
        if choice == "value":
            record[spec.name] = draw(VALID[value_type])
        elif choice == "null":
            record[spec.name] = None
        elif choice == "any":
            record[spec.name] = draw(ANY_VALUE)
        elif choice == "edge":
            record[spec.name] = draw(EDGES)
    if not valid and draw(st.integers(0, 4)) == 0:
        for name in draw(st.lists(NAMES, min_size=1, max_size=2)):
            record.setdefault(name, draw(ANY_VALUE))
    return record


def model_number(value: Any) -> float:
    """What the model gets for an accepted numeric or boolean value: float32, as the trainer
    feeds it (null, or past float32, is 0)."""
    if value is None:
        return 0.0
    with np.errstate(over="ignore"):
        number = np.float32(float(value))
    return float(number) if np.isfinite(number) else 0.0


def assert_decoded(card: ModelCard, record: dict[str, Any], batch: Any, row: int) -> None:
    """The accepted row is logged as sent (nulls for what was left out), and fed as the
    trainer feeds it."""
    logged = batch.row_features()[row]
    sent = {spec.name: record.get(spec.name) for spec in card.features}
    assert logged == sent
    assert [type(value) for value in logged.values()] == [type(value) for value in sent.values()]
    arrays = batch.arrays(card)
    packed = batch.arrays(card, packed=True)
    numeric = [spec for spec in card.features if spec.kind != "categorical"]
    for index, spec in enumerate(numeric):
        expected = model_number(sent[spec.name])
        assert arrays[spec.name].dtype == np.float32
        assert float(arrays[spec.name][row, 0]) == expected
        assert float(packed[PACKED][row, index]) == expected
    for spec in card.features:
        if spec.kind == "categorical":
            expected_text = "" if sent[spec.name] is None else sent[spec.name]
            assert arrays[spec.name][row, 0] == expected_text == packed[spec.name][row, 0]


def encodable(value: Any) -> bool:
    """Whether an event can carry ``value`` (orjson: integers of 64 bits at most; over HTTP
    a wider one arrives as a float)."""
    return type(value) is not int or -(1 << 63) <= value < 1 << 64


def assert_ingest_admits(card: ModelCard, batch: Any) -> None:
    """The prediction events of an accepted batch pass ingest's door after the trip through
    JSON, their features unchanged."""
    if not all(encodable(v) for row in batch.row_features() for v in row.values()):
        return
    outputs = np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (batch.rows, 1))
    ids = [f"r-{i}" for i in range(batch.rows)]
    rows = prediction_rows(MODEL, "1", ids, batch, Predictions.decode(card, outputs), 0.1)
    guard = ContractGuard({MODEL: card.contract()})
    for row, features in zip(rows, batch.row_features(), strict=True):
        event = orjson.loads(orjson.dumps(prediction_event(row)))
        assert event["features"] == features
        assert guard.prediction(event) is None


def verdict(card: ModelCard, body: Any, record: dict[str, Any], prefix: str, row: int) -> None:
    """serve's verdict on ``body`` (``record`` at ``row``, among valid ones) is the contract's."""
    violation = ContractCheck(card).features(record)
    if violation is None:
        batch, _ = decode_records(body, card)
        assert_decoded(card, record, batch, row)
        assert_ingest_admits(card, batch)
        return
    with pytest.raises(InvalidInput) as raised:
        decode_records(body, card)
    field = prefix + violation.field.removeprefix("features.")
    assert raised.value.field == field, (record, violation)
    assert str(raised.value).startswith(field)
    assert str(raised.value).endswith(f"(rule: {violation.rule})")


@st.composite
def cases(draw: st.DrawFn, valid: bool) -> tuple[ModelCard, dict[str, Any], list[Any], int]:
    card = draw(contracts())
    record = draw(records(card, valid))
    others = draw(st.lists(records(card, valid=True), max_size=3))
    row = draw(st.integers(0, len(others)))
    return card, record, others, row


DOORS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@DOORS
@given(cases(valid=False), st.sampled_from([protocol._FEW, 0]))
def test_serve_accepts_exactly_what_the_contract_accepts_and_names_its_field(
    case: tuple[ModelCard, dict[str, Any], list[Any], int], few: int
) -> None:
    card, record, others, row = case
    default, protocol._FEW = protocol._FEW, few  # 0: numpy tests every body's magnitudes
    try:
        verdict(card, record, record, "", 0)  # one record
        verdict(card, {"records": [record]}, record, "records[0].", 0)
        batch = [*others[:row], record, *others[row:]]  # among valid records
        verdict(card, batch, record, f"records[{row}].", row)
    finally:
        protocol._FEW = default


@DOORS
@given(cases(valid=True))
def test_valid_records_are_accepted_logged_as_sent_and_admitted_by_ingest(
    case: tuple[ModelCard, dict[str, Any], list[Any], int],
) -> None:
    card, record, others, row = case
    assert ContractCheck(card).features(record) is None
    verdict(card, record, record, "", 0)
    verdict(card, [*others[:row], record, *others[row:]], record, f"records[{row}].", row)


# An OIP tensor's datatype per contract type, and the JSON values its data may hold.
DATATYPES = {"float": "FP64", "int": "FP64", "bool": "BOOL", "string": "BYTES"}
DATA_TYPES = {"FP64": {int, float}, "BOOL": {bool}, "BYTES": {str}}


@DOORS
@given(cases(valid=False))
def test_oip_tensors_get_the_contracts_verdict_row_by_row(
    case: tuple[ModelCard, dict[str, Any], list[Any], int],
) -> None:
    card, record, others, row = case
    # Tensors hold every feature (a nullable one left out is null) and values of their
    # datatype: serve's own checks, before the contract's.
    names = card.feature_names
    assume(set(record) <= set(names))
    rows = [{name: r.get(name) for name in names} for r in [*others[:row], record, *others[row:]]]
    datatypes = {spec.name: DATATYPES[spec.type or "float"] for spec in card.features}
    assume(
        all(
            value is None or type(value) in DATA_TYPES[datatypes[name]]
            for r in rows
            for name, value in r.items()
        )
    )
    body = {
        "inputs": [
            {
                "name": name,
                "datatype": datatypes[name],
                "shape": [len(rows), 1],
                "data": [r[name] for r in rows],
            }
            for name in names
        ]
    }
    check = ContractCheck(card)
    violations = [v for v in map(check.features, rows) if v is not None]
    if not violations:
        batch, _ = decode_infer(body, card)
        assert batch.row_features() == rows
        by_records, _ = decode_records(rows, card)
        for packed in (False, True):
            ours, theirs = batch.arrays(card, packed), by_records.arrays(card, packed)
            assert list(ours) == list(theirs)
            for name, array in ours.items():
                assert array.dtype == theirs[name].dtype
                assert array.tolist() == theirs[name].tolist()
        return
    with pytest.raises(InvalidInput) as raised:
        decode_infer(body, card)
    first = violations[0]
    assert raised.value.field == "inputs." + first.field.removeprefix("features.")
    assert str(raised.value).endswith(f"rule: {first.rule})")


@pytest.mark.parametrize(
    ("value_type", "value", "rule"),
    [
        ("int", 36.5, "feature_type"),
        ("int", True, "feature_type"),
        ("int", "36", "feature_type"),
        ("int", 1 << 63, "not_finite"),
        ("float", True, "feature_type"),
        ("float", math.nan, "not_finite"),
        ("float", -math.inf, "not_finite"),
        ("float", 1 << 1000, "not_finite"),
        ("bool", 1, "feature_type"),
        ("bool", "true", "feature_type"),
        ("string", 1, "feature_type"),
        ("string", False, "feature_type"),
        ("int", None, "null_feature"),
    ],
)
@pytest.mark.parametrize("rows", [1, 40])  # 40 rows: numpy tests the magnitudes
def test_the_issues_cases_get_the_contracts_rule_at_serve(
    value_type: str, value: Any, rule: str, rows: int
) -> None:
    kind = {"int": "numeric", "float": "numeric", "bool": "boolean", "string": "categorical"}
    card = ModelCard(
        task="regression",
        features=[
            FeatureSpec(name="x", kind=kind[value_type], type=value_type),
            FeatureSpec(name="y"),
        ],
    )
    valid = {"x": {"int": 1, "float": 1.5, "bool": True, "string": "a"}[value_type], "y": 1.0}
    with pytest.raises(InvalidInput) as raised:
        decode_records([valid] * (rows - 1) + [{"x": value, "y": 1.0}], card)
    assert raised.value.field == f"records[{rows - 1}].x"
    assert str(raised.value).endswith(f"(rule: {rule})")
    assert ContractCheck(card).features({"x": value, "y": 1.0}).rule == rule  # type: ignore[union-attr]
