"""Rows that break the fit's contract are left out and counted by rule, never a failure, from
frames as the store gives them back (files written before contracts included)."""

from __future__ import annotations

import tempfile
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.contract import ContractCheck, FeatureContract, FeatureSpec
from driftloop.services.trainer.schema import check_rows, exclusion_metrics
from driftloop.store import ExampleStore

CONTRACT = FeatureContract(
    model_name="m", version=1, task="classification", classes=[0, 1],
    features=[
        FeatureSpec(name="amount", type="float"),
        FeatureSpec(name="term", type="int"),
        FeatureSpec(name="grade", kind="categorical", nullable=True),
        FeatureSpec(name="verified", kind="boolean"),
    ],
)  # fmt: skip
MISSING = object()  # a feature left out of the event


def stored(i: int, features: dict[str, Any], label: Any) -> dict[str, Any]:
    time = f"2026-11-22T10:{i // 60 % 60:02d}:{i % 60:02d}Z"
    return {
        "event_id": f"e{i}", "request_id": f"r{i}", "model_name": "m", "model_version": "1",
        "event_time": time, "prediction_time": time, "label_time": time,
        "features": {k: v for k, v in features.items() if v is not MISSING},
        "prediction": 0, "label": label,
    }  # fmt: skip


def test_each_rule_is_counted_and_kept_rows_hold_the_contracts_types() -> None:
    good = {"amount": 10.5, "term": 36.0, "grade": None, "verified": True}
    frame = pd.DataFrame(
        {
            "feature.amount": [10.5, "12,000", 1.0, 2.0, 3.0, np.inf, 4.0, 5.0, np.nan],
            "feature.term": [36.0, 36, 36, None, 36, 36, 36, 36, 36],
            "feature.grade": [None, "A", "B", "A", "A", "A", "A", "A", "A"],
            "feature.verified": [True, True, False, True, "yes", True, True, True, True],
            "feature.unknown": ["ignored"] * 9,
            "label": [1, 0, 1, 0, 1, 1, None, "1", 0],
        },
        dtype=object,
    )
    checked = check_rows(CONTRACT, frame)
    assert checked.excluded == {
        "feature_type": 2,  # "12,000"; "yes" for a boolean
        "label_type": 1,  # "1"
        "not_finite": 1,
        "null_feature": 2,  # term None; NaN is how pandas holds a null
        "null_label": 1,
    }
    assert len(checked.rows) == 2 and checked.excluded_rows == 7
    first = checked.rows.iloc[0]
    assert {name: first[f"feature.{name}"] for name in good} == {
        "amount": 10.5, "term": 36, "grade": None, "verified": True
    }  # fmt: skip
    assert type(first["feature.term"]) is int and type(checked.rows["label"].iloc[1]) is int
    assert checked.metrics() == exclusion_metrics(checked.excluded)
    assert checked.metrics()["excluded_rows"] == 7


def test_a_feature_no_row_carries_is_missing_unless_nullable() -> None:
    frame = pd.DataFrame({"feature.amount": [1.0], "feature.term": [3], "label": [1]})
    assert check_rows(CONTRACT, frame).excluded == {"missing_feature": 1}
    nullable = CONTRACT.model_copy(
        update={"features": [*CONTRACT.features[:3], FeatureSpec(name="verified", kind="boolean",
                                                                  nullable=True)]}
    )  # fmt: skip
    checked = check_rows(nullable, frame)
    assert checked.excluded == {} and len(checked.rows) == 1


def test_a_window_of_nothing_but_bad_rows_leaves_an_empty_frame() -> None:
    frame = pd.DataFrame({"feature.amount": ["x"] * 3, "label": [1, 0, 1]})
    checked = check_rows(CONTRACT, frame)
    assert checked.rows.empty and checked.excluded == {"feature_type": 3}
    assert check_rows(CONTRACT, pd.DataFrame()).excluded == {}


def values(integers: int) -> st.SearchStrategy[Any]:
    """Feature values as events carry them (JSON's), integers within ``±integers``."""
    return st.one_of(
        st.just(MISSING),
        st.none(),
        st.booleans(),
        st.integers(-integers, integers),
        st.floats(allow_nan=False),  # JSON has no NaN; an infinity may still come from Python
        st.integers(-100, 100).map(float),
        st.sampled_from(["A", "B", "12,000", "N/A", "", "36 months"]),
    )


def rows(integers: int = 2**64) -> st.SearchStrategy[list[tuple[dict[str, Any], Any]]]:
    features = st.fixed_dictionaries({n: values(integers) for n in CONTRACT.feature_names})
    labels = st.one_of(st.none(), st.sampled_from([0, 1, 2, 1.0, "1", "yes"]), st.booleans())
    return st.lists(st.tuples(features, labels), min_size=1, max_size=40)


def expected(rows: list[tuple[dict[str, Any], Any]], columns: set[str]) -> Counter[str]:
    """What ContractCheck says of each row as sent, a feature of ``columns`` left out of it
    being null (the frame has a column for it), any other left out."""
    check = ContractCheck(CONTRACT)
    rules: Counter[str] = Counter()
    for features, label in rows:
        sent = {
            name: None if value is MISSING else value
            for name, value in features.items()
            if name in columns or value is not MISSING
        }
        problem = check.features(sent) or check.label(label)
        if problem is not None:
            rules[problem.rule] += 1
    return rules


@settings(max_examples=80, deadline=None)
@given(rows())
def test_the_counts_are_the_contracts_own_check_of_each_row(
    rows: list[tuple[dict[str, Any], Any]],
) -> None:
    # A frame of the Python values the events had, a column per feature.
    frame = pd.DataFrame(
        [
            {f"feature.{n}": (None if v is MISSING else v) for n, v in features.items()}
            | {"label": label}
            for features, label in rows
        ],
        dtype=object,
    )
    checked = check_rows(CONTRACT, frame)
    assert Counter(checked.excluded) == expected(rows, set(CONTRACT.feature_names))
    assert len(checked.rows) + checked.excluded_rows == len(rows)
    check = ContractCheck(CONTRACT)
    for _, row in checked.rows.iterrows():
        features = {n: row[f"feature.{n}"] for n in CONTRACT.feature_names}
        assert check.features(features) is None and check.label(row["label"]) is None


@settings(max_examples=60, deadline=None)
@given(rows(integers=2**53), st.integers(1, 4))
def test_types_survive_the_store_whatever_files_were_written_before_contracts(
    rows: list[tuple[dict[str, Any], Any]], files: int
) -> None:
    """Written in batches as the store did before contracts (each file typed by its rows, mixed
    columns as JSON text), read back as one window: every row is judged on what was sent.

    Integers within 2**53: Arrow stores a larger one beside floats, or one past int64, as
    text of numbers alone, which cannot be told from a column of strings such as "3".
    """
    events = [stored(i, features, label) for i, (features, label) in enumerate(rows)]
    with tempfile.TemporaryDirectory() as folder:
        store = ExampleStore(folder)
        size = -(-len(events) // files)
        for start in range(0, len(events), size):
            store.write(events[start : start + size])
        frame = store.read_frame(store.manifests())
    checked = check_rows(CONTRACT, frame)
    carried = {name for features, _ in rows for name, v in features.items() if v is not MISSING}
    assert Counter(checked.excluded) == expected(rows, carried)
