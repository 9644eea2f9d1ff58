"""PromotionGate and its metrics: same holdout, same metrics, margin, sanity, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.services.trainer.gate import (
    PromotionGate,
    classification_scores,
    naive_classification,
    naive_regression,
    regression_scores,
    sanity_problem,
)


def test_classification_metrics_match_hand_computed_values() -> None:
    truth = np.array(["a", "a", "b", "c"], dtype=object)
    probabilities = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    scores = classification_scores(truth, probabilities, ["a", "b", "c"])
    assert scores["accuracy"] == pytest.approx(0.75)
    # F1: a = 2/3 (1 tp, 1 fn), b = 2/3 (1 tp, 1 fp), c = 1
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert scores["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.4, 0.7, 0.4])))


def test_a_label_the_model_has_no_class_for_counts_as_wrong() -> None:
    scores = classification_scores(np.array([1, 2]), np.array([[0.9, 0.1], [0.9, 0.1]]), [1, 0])
    assert scores["accuracy"] == 0.5
    assert scores["log_loss"] > 10, "probability 0 for the unknown class, clipped"


def test_regression_metrics() -> None:
    scores = regression_scores(np.array([1.0, 2.0, 3.0]), np.array([[1.0], [2.0], [5.0]]))
    assert scores["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert scores["mae"] == pytest.approx(2 / 3)


def test_the_candidate_must_beat_the_champion_by_the_margin() -> None:
    gate = PromotionGate("regression", margin=0.05)
    assert gate.judge({"rmse": 0.90, "mae": 1}, {"rmse": 1.0, "mae": 1}, "champion 1").promote
    close = gate.judge({"rmse": 0.97, "mae": 1}, {"rmse": 1.0, "mae": 1}, "champion 1")
    assert not close.promote and "needs a reduction of at least 5.0%" in close.reason
    assert close.improvement == pytest.approx(0.03)
    worse = gate.judge({"rmse": 1.2, "mae": 1}, {"rmse": 1.0, "mae": 1}, "champion 1")
    assert not worse.promote and "champion 1" in worse.reason


def test_scores_are_compared_as_errors() -> None:
    gate = PromotionGate("classification", metric="accuracy", margin=0.1)
    # accuracy 0.90 -> 0.92: the error falls from 0.10 to 0.08, by 20%
    verdict = gate.judge({"accuracy": 0.92}, {"accuracy": 0.90}, "champion 2")
    assert verdict.promote and verdict.improvement == pytest.approx(0.2)


def test_an_equal_candidate_is_not_promoted_even_with_no_margin() -> None:
    gate = PromotionGate("classification", margin=0.0)
    assert not gate.judge({"macro_f1": 0.8}, {"macro_f1": 0.8}, "champion 1").promote


def test_an_insane_candidate_is_rejected_whatever_its_scores() -> None:
    gate = PromotionGate("classification")
    verdict = gate.judge({"macro_f1": 1.0}, {"macro_f1": 0.1}, "champion 1", problem="collapsed")
    assert not verdict.promote and verdict.reason == "rejected: collapsed"


def test_sanity_checks_catch_non_finite_and_collapsed_outputs() -> None:
    truth = np.array([0, 1, 0, 1])
    assert sanity_problem("classification", np.array([[0.9, 0.1]] * 4), truth).startswith(
        "collapsed"
    )
    assert "finite" in sanity_problem("regression", np.array([[1.0], [np.nan]]), truth[:2])
    assert sanity_problem("regression", np.full((4, 1), 3.0), truth).startswith("collapsed")
    assert sanity_problem("classification", np.array([[0.9, 0.1], [0.1, 0.9]] * 2), truth) is None
    assert sanity_problem("classification", np.array([[0.9, 0.1]] * 2), np.array([0, 0])) is None


def test_baselines_are_the_majority_class_and_the_better_constant() -> None:
    name, scores = naive_classification(np.array(["x", "y", "y"]), np.array(["y", "y", "x", "y"]))
    assert name == "majority class 'y'" and scores["accuracy"] == 0.75
    assert scores["log_loss"] == pytest.approx(-np.mean(np.log([2 / 3] * 3 + [1 / 3])))
    name, scores = naive_regression(np.array([0.0, 10.0, 2.0]), np.array([2.0, 2.0]))
    assert name == "last training label" and scores["rmse"] == 0.0
    name, _ = naive_regression(np.array([0.0, 10.0, 2.0]), np.array([4.0, 4.0]))
    assert name == "mean of the training labels"


def test_the_metric_must_fit_the_task() -> None:
    with pytest.raises(ValueError, match="not a regression metric"):
        PromotionGate("regression", metric="accuracy")
