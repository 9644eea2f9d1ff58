from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftloop.services.monitor.budget import MAX_ALPHA, AlertBudget, FalseAlarmBudget


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


# --- the drift events' budget -----------------------------------------------------------------


@given(
    step=st.floats(1, 10_000),
    rate=st.floats(0, 10_000),
    ert_s=st.floats(60, 1e8),
    floor=st.floats(1_000, 1e7),
)
def test_the_alert_level_spends_at_most_the_budget_per_expected_time(
    step: float, rate: float, ert_s: float, floor: float
) -> None:
    budget = AlertBudget(ert_s=ert_s, min_events=floor)
    alpha = budget.window_alpha(step, rate)
    assert 0 < alpha <= MAX_ALPHA
    # Windows closing in the expected time between false alerts, times the chance of each:
    # at most one false alert in that time, and never more often than the floor allows.
    events = budget.expected_events(rate)
    assert events >= floor and events >= rate * ert_s * (1 - 1e-12)
    assert events / step * alpha <= 1 + 1e-9


@given(step=st.floats(1, 1_000), slow=st.floats(0.01, 100), factor=st.floats(1.01, 100))
def test_more_traffic_means_a_stricter_level_per_window(
    step: float, slow: float, factor: float
) -> None:
    budget = AlertBudget(ert_s=86_400, min_events=1)
    assert budget.window_alpha(step, slow * factor) <= budget.window_alpha(step, slow)


def test_an_alert_budget_needs_a_positive_time_and_floor() -> None:
    with pytest.raises(ValueError):
        AlertBudget(ert_s=0)
    with pytest.raises(ValueError):
        AlertBudget(min_events=0)
