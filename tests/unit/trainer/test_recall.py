"""ConceptRecall: an earlier champion comes back only when it knows the concept and wins."""

from __future__ import annotations

import pytest

from driftloop.services.trainer.gate import PromotionGate
from driftloop.services.trainer.recall import ConceptRecall, RecallCandidate


def candidate(version: str, now: float, trained: float) -> RecallCandidate:
    return RecallCandidate(version, {"macro_f1": now}, {"macro_f1": trained})


@pytest.fixture
def recall() -> ConceptRecall:
    return ConceptRecall(PromotionGate("classification", "macro_f1", 0.01), tolerance=0.5)


def test_the_version_that_knows_the_concept_is_recalled(recall: ConceptRecall) -> None:
    chosen = recall.choose(
        {"macro_f1": 0.50},
        [candidate("3", 0.62, 0.95), candidate("1", 0.94, 0.95), candidate("2", 0.93, 0.96)],
    )
    assert chosen is not None and chosen.version == "1", "the best of those that know it"
    assert chosen.scores == {"macro_f1": 0.94}
    assert "recalled version 1" in chosen.reason and "0.9400" in chosen.reason


def test_beating_a_collapsed_champion_is_not_enough(recall: ConceptRecall) -> None:
    # 0.80 is far better than the champion's 0.50, but the version scored 0.97 on its own
    # holdout: its error here (0.20) is over 1.5 times that (0.03 * 1.5 + 0.02 = 0.065).
    assert recall.choose({"macro_f1": 0.50}, [candidate("1", 0.80, 0.97)]) is None


def test_a_version_no_better_than_the_champion_is_not_recalled(recall: ConceptRecall) -> None:
    assert recall.choose({"macro_f1": 0.95}, [candidate("1", 0.95, 0.95)]) is None


def test_the_tolerance_is_relative_to_the_holdout_error() -> None:
    gate = PromotionGate("classification", "macro_f1", 0.01)
    version = candidate("1", 0.85, 0.90)  # error 0.15 against 0.10 on its holdout
    assert ConceptRecall(gate, tolerance=0.5).choose({"macro_f1": 0.5}, [version]) is not None
    assert ConceptRecall(gate, tolerance=0.2).choose({"macro_f1": 0.5}, [version]) is None


def test_a_version_without_the_gate_metric_is_never_recalled(recall: ConceptRecall) -> None:
    old = RecallCandidate("1", {"macro_f1": 0.99}, {"accuracy": 0.99})
    assert recall.choose({"macro_f1": 0.5}, [old]) is None


def test_regression_errors_are_the_loss_itself() -> None:
    recall = ConceptRecall(PromotionGate("regression", "rmse", 0.01), tolerance=0.5)
    knows = RecallCandidate("1", {"rmse": 1.2}, {"rmse": 1.0})
    lost = RecallCandidate("2", {"rmse": 1.6}, {"rmse": 1.0})
    chosen = recall.choose({"rmse": 3.0}, [lost, knows])
    assert chosen is not None and chosen.version == "1"
