from __future__ import annotations

import pytest

from services.monitor.budget import MAX_ALPHA, FalseAlarmBudget


def test_window_level_spends_the_data_share_of_the_budget() -> None:
    budget = FalseAlarmBudget(rate=1e-5, data_share=0.5)
    # 200 tumbling windows of 500 per 100k events, 2 in a row open an episode:
    # 200 * alpha**2 = 0.5 false triggers per 100k events.
    alpha = budget.window_alpha(step=500, size=500, consecutive=2)
    assert alpha == pytest.approx(0.05)
    assert budget.expected_false_triggers(alpha, 500, 500, 2) == pytest.approx(0.5)


def test_one_window_episode_spends_it_in_one_test() -> None:
    alpha = FalseAlarmBudget(rate=1e-5).window_alpha(step=1000, size=1000, consecutive=1)
    assert alpha == pytest.approx(0.005)


def test_overlapping_windows_count_as_fewer_independent_ones() -> None:
    budget = FalseAlarmBudget()
    assert budget.independent_windows(step=250, size=1000, consecutive=4) == 1
    assert budget.independent_windows(step=500, size=1000, consecutive=3) == 2
    assert budget.independent_windows(step=1000, size=1000, consecutive=3) == 3
    # Sliding windows are tested more strictly than tumbling ones of the same size.
    sliding = budget.window_alpha(step=250, size=1000, consecutive=4)
    tumbling = budget.window_alpha(step=1000, size=1000, consecutive=4)
    assert sliding < tumbling


def test_level_is_capped() -> None:
    assert FalseAlarmBudget(rate=0.5).window_alpha(1000, 1000, 3) == MAX_ALPHA


def test_concept_share_is_split_between_detector_and_cusum() -> None:
    budget = FalseAlarmBudget(rate=1e-5, data_share=0.5)
    assert budget.detector_delta == pytest.approx(2.5e-6)


@pytest.mark.parametrize("rate", [0, 1, -1e-5])
def test_bad_rates_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        FalseAlarmBudget(rate=rate)
