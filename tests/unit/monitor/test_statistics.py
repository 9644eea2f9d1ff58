from __future__ import annotations

import numpy as np
import pytest

from driftloop.reference import FeatureSketch
from driftloop.services.monitor.statistics import (
    categorical_test,
    compare_window,
    numeric_test,
    reference_cdf,
)
from tests.unit.monitor.streams import reference, row


@pytest.fixture(scope="module")
def sketch() -> FeatureSketch:
    return FeatureSketch.numeric(np.random.default_rng(0).normal(0, 1, 20_000).tolist())


def test_reference_cdf_runs_through_the_quantiles() -> None:
    quantiles = np.linspace(0, 100, 101)
    assert reference_cdf(quantiles, np.array([-1.0, 0.0, 50.0, 50.5, 100.0, 101.0])).tolist() == [
        0.0,
        0.0,
        0.5,
        0.505,
        1.0,
        1.0,
    ]


def test_reference_cdf_jumps_at_repeated_quantiles() -> None:
    quantiles = np.array([0.0] * 51 + [1.0] * 50)  # half zeros, half ones
    assert reference_cdf(quantiles, np.array([0.0]), "left")[0] == 0.0
    assert reference_cdf(quantiles, np.array([0.0]), "right")[0] == pytest.approx(0.5)


def test_same_distribution_is_not_drift(sketch: FeatureSketch) -> None:
    rng = np.random.default_rng(1)
    rejections = sum(
        numeric_test("x", sketch, rng.normal(0, 1, 500).tolist(), alpha=0.01).drifted
        for _ in range(200)
    )
    assert rejections <= 8  # about 2 expected at 1%


def test_discrete_values_with_ties_are_not_drift() -> None:
    rng = np.random.default_rng(2)
    sketch = FeatureSketch.numeric(rng.integers(0, 5, 10_000).tolist())
    result = numeric_test("x", sketch, rng.integers(0, 5, 1000).tolist(), alpha=0.01)
    assert not result.drifted, result


def test_a_shift_is_drift_with_every_score_moved(sketch: FeatureSketch) -> None:
    live = np.random.default_rng(3).normal(0.5, 1, 500).tolist()
    result = numeric_test("x", sketch, live, alpha=0.001)
    assert result.drifted and result.statistic == "ks"
    assert result.score > result.threshold and result.p_value < 0.001
    assert result.scores["wasserstein"] == pytest.approx(0.5, abs=0.15)
    assert result.scores["psi"] > 0.1


def test_strings_and_nulls_in_a_numeric_feature_are_not_tested(sketch: FeatureSketch) -> None:
    result = numeric_test("x", sketch, [0.1, None, "oops", float("nan"), -0.2], alpha=0.01)
    assert result.size == 2 and not result.drifted


def test_unseen_categories_are_drift_mass() -> None:
    sketch = FeatureSketch.categorical(["a"] * 500 + ["b"] * 500)
    live = ["a"] * 200 + ["b"] * 200 + ["c"] * 100
    result = categorical_test("c", sketch, live, alpha=0.001)
    assert result.drifted
    assert result.scores["unseen"] == pytest.approx(0.2)
    assert 0 < result.scores["js"] < 1


def test_same_categories_are_not_drift() -> None:
    rng = np.random.default_rng(4)
    sketch = FeatureSketch.categorical(rng.choice(list("abcd"), 5000).tolist())
    assert not categorical_test("c", sketch, rng.choice(list("abcd"), 500).tolist(), 0.01).drifted


def test_a_window_tests_every_feature_and_the_prediction() -> None:
    ref = reference().sketch
    assert ref is not None
    rng = np.random.default_rng(5)
    rows = [row(rng, age_shift=8) for _ in range(500)]
    tests = compare_window(ref, rows, [int(r["income"] > 3000) for r in rows], alpha=0.01)
    assert [t.feature for t in tests] == ["age", "income", "region", "prediction"]
    assert [t.drifted for t in tests] == [True, False, False, False]


def test_holm_rejects_at_least_what_bonferroni_does() -> None:
    ref = reference().sketch
    assert ref is not None
    rng = np.random.default_rng(6)
    rows = [row(rng, age_shift=1.5, income_scale=1.1) for _ in range(500)]
    holm = compare_window(ref, rows, None, alpha=0.05, correction="holm")
    bonferroni = compare_window(ref, rows, None, alpha=0.05, correction="bonferroni")
    assert sum(t.drifted for t in holm) >= sum(t.drifted for t in bonferroni)
    assert all(t.alpha == pytest.approx(0.05 / 3) for t in bonferroni)
    assert {t.alpha for t in holm if t.drifted} <= {0.05 / 3, 0.05 / 2, 0.05}
