"""TrainingWindow: policies, history share and weights, time-ordered splits, file planning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from driftloop.services.trainer.window import (
    NotEnoughExamples,
    TrainingWindow,
    WindowPolicy,
    onset_of,
)
from driftloop.store import Manifest

START = datetime(2026, 11, 22, tzinfo=UTC)


def frame(n: int, shuffled: bool = True) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "event_time": [START + timedelta(minutes=i) for i in range(n)],
            "event_id": [f"e{i:05d}" for i in range(n)],
            "feature.x": np.arange(n, dtype=float),
            "label": [i % 2 for i in range(n)],
        }
    )
    return rows.sample(frac=1, random_state=0) if shuffled else rows


def at(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def test_splits_are_time_ordered_and_the_holdout_is_the_most_recent() -> None:
    policy = WindowPolicy(kind="last_n", size=400, min_examples=50, history_share=0.0)
    window = TrainingWindow.split(frame(1000), policy)
    assert window.rows == 400 and window.history_rows == 0
    assert window.train["feature.x"].is_monotonic_increasing
    assert window.train["feature.x"].max() < window.validation["feature.x"].min()
    assert window.validation["feature.x"].max() < window.holdout["feature.x"].min()
    assert window.holdout["feature.x"].max() == 999
    assert len(window.holdout) == 40 and len(window.validation) == 40  # 10% each


def test_the_defaults_train_on_the_recent_part_alone() -> None:
    # After an abrupt switch the older examples carry the old labels (see the module).
    window = TrainingWindow.split(frame(1000), WindowPolicy(kind="since_drift", min_examples=50),
                                  onset=at(800))  # fmt: skip
    assert window.history_rows == 0 and window.train["feature.x"].iloc[0] == 800


def test_history_is_bounded_and_down_weighted() -> None:
    policy = WindowPolicy(
        kind="since_drift", min_examples=50, history_share=0.5, history_weight=0.25
    )
    window = TrainingWindow.split(frame(1000), policy, onset=at(800))
    assert window.onset == at(800)
    assert window.history_rows == 100, "half as many older examples as post-drift ones"
    assert window.train["feature.x"].iloc[0] == 700
    assert np.all(window.weights[:100] == 0.25) and np.all(window.weights[100:] == 1.0)
    assert len(window.weights) == len(window.train)
    recent = window.recent["feature.x"]
    assert recent.min() == 800 and len(recent) == 200


def test_every_post_drift_example_is_kept_and_older_ones_fill_up_to_min_examples() -> None:
    policy = WindowPolicy(kind="since_drift", min_examples=300, history_share=0.0)
    window = TrainingWindow.split(frame(1000), policy, onset=at(900))
    assert window.recent["feature.x"].min() == 700, "100 post-drift rows, widened to 300"


def test_since_drift_without_an_onset_falls_back_to_last_n() -> None:
    policy = WindowPolicy(kind="since_drift", size=250, min_examples=50, history_share=0.0)
    assert TrainingWindow.split(frame(1000), policy).rows == 250


def test_last_t_takes_a_span_of_event_time() -> None:
    policy = WindowPolicy(kind="last_t", seconds=99 * 60, min_examples=50, history_share=1.0)
    window = TrainingWindow.split(frame(1000), policy)
    assert window.recent["feature.x"].min() == 900
    assert window.history_rows == 100


def test_the_cap_bounds_everything() -> None:
    policy = WindowPolicy(kind="last_n", size=5000, min_examples=50, max_examples=300)
    window = TrainingWindow.split(frame(1000), policy)
    assert window.rows == 300 and window.history_rows == 0


def test_too_few_labelled_examples_is_not_enough() -> None:
    rows = frame(100)
    rows.loc[rows.index[:60], "label"] = None
    with pytest.raises(NotEnoughExamples, match="40 labelled examples"):
        TrainingWindow.split(rows, WindowPolicy(min_examples=50))


def manifest(i: int, rows: int = 100) -> Manifest:
    return Manifest(
        file=f"examples/part-{i}.parquet", rows=rows, sha256=f"{i:064x}", bytes=1,
        first_event_time=at(i * 100), last_event_time=at(i * 100 + 99),
        offsets={"t:0": [i * 100, i * 100 + 99]}, written_at=at(0),
    )  # fmt: skip


def test_plan_reads_only_the_files_the_window_needs() -> None:
    files = [manifest(i) for i in range(10)]
    last_n = WindowPolicy(kind="last_n", size=250, min_examples=50, history_share=1.0)
    assert [m.file for m in last_n.plan(files)] == [f.file for f in files[4:]]
    drift = WindowPolicy(kind="since_drift", min_examples=50, history_share=0.0)
    assert drift.plan(files, onset=at(750)) == files[7:]
    assert WindowPolicy().plan([]) == []


def test_the_data_manifest_names_files_hashes_and_offsets() -> None:
    files = [manifest(i) for i in range(10)]
    policy = WindowPolicy(kind="last_n", size=500, min_examples=50, history_share=0.0)
    window = TrainingWindow.split(frame(1000), policy, manifests=files[5:])
    document = window.data_manifest()
    assert document["rows"] == 500 and len(document["files"]) == 5
    assert document["files"][0]["sha256"] == files[5].sha256
    assert document["files"][0]["offsets"] == {"t:0": [500, 599]}
    assert len(document["window_sha256"]) == 64


def test_the_onset_comes_from_the_evidence_or_the_drift_window() -> None:
    assert onset_of({"reason": "manual", "evidence": {"onset": at(5)}}) == at(5)
    window = {"kind": "count", "start": at(7), "end": at(9), "size": 3}
    assert onset_of({"reason": "drift", "evidence": {}, "window": window}) == at(7)
    assert onset_of({"reason": "data_arrival", "evidence": {}, "window": window}) is None


def test_since_drift_without_an_onset_plans_like_last_n() -> None:
    files = [manifest(i) for i in range(10)]
    policy = WindowPolicy(kind="since_drift", size=450, min_examples=50, history_share=0.0)
    assert policy.plan(files) == files[5:]


def test_too_few_rows_that_keep_the_contract_say_how_many_were_left_out() -> None:
    error = NotEnoughExamples(12, 100, {"null_label": 3, "feature_type": 385})
    assert str(error) == (
        "12 labelled examples in the store keep the model's contract, a fit needs 100 "
        "(388 left out: feature_type 385, null_label 3)"
    )
    assert error.excluded == {"null_label": 3, "feature_type": 385}
    assert str(NotEnoughExamples(5, 10)) == "5 labelled examples in the store, a fit needs 10"
