"""FalseAlarmBudget: from "at most r false triggers per N events" to per-test levels.

The monitor fires a drift trigger when ``k`` windows in a row drift (hysteresis). On a
stationary stream each window is called drifted with probability ``alpha`` (the family-wise
level of its feature tests, held by Holm's or Bonferroni's correction over features). Windows
that share no event are independent, so a run of ``k`` drifted windows starts at a given
window with probability at most ``alpha ** k``; with ``W`` windows closing per ``N`` events
the expected false triggers per ``N`` events are at most ``W * alpha ** k``. Setting that to
the data-drift share of the budget gives

    alpha = (share * rate * step) ** (1 / k_independent)

where ``step`` is the events between two verdicts and ``k_independent`` the number of
non-overlapping windows inside ``k`` consecutive sliding ones (``k`` for tumbling windows: a
conservative count, since overlapping windows are positively correlated).

The concept-drift detectors get the rest of the budget, half each: ADWIN's ``delta`` bounds
its chance of a false cut at each step [1], so ``delta = share * rate`` bounds its false
alarms per labelled example; KSWIN tests at every step, so its ``alpha`` is the same; the
holdout CUSUM's threshold is set for an in-control run length of at least ``1 / alpha``
examples [2]. That run length holds while the CUSUM's in-control error rate is at least the
model's true one: it is an upper confidence bound (three standard errors), the holdout's, or
the live stream's once that is tighter (:class:`~driftloop.services.monitor.concept.HoldoutCusum`).
Each bound lies below the true rate with probability 0.13%: that much is left to chance at
the holdout and at each of the live stream's few looks (1,000, 2,000, 4,000... examples).
The live bound makes the CUSUM faster without a larger share of the budget.

This is analytic, not calibrated: it assumes the reference describes the stationary stream
(a reference from a few hundred rows is itself noisy: the two-sample effective size in the
KS test accounts for that) and a 1% resolution of the quantile CDF, which matters only for
windows of many thousands of events. :mod:`bench.drift_detection` measures the rate.

References:
    [1] Bifet, Gavalda (2007), Learning from time-changing data with adaptive windowing, SDM.
    [2] Siegmund (1985), Sequential Analysis: Tests and Confidence Intervals, Springer.

Example:
    >>> budget = FalseAlarmBudget(rate=1e-5)
    >>> round(budget.window_alpha(step=500, size=500, consecutive=2), 4)
    0.05
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_ALPHA = 0.25  # beyond this a "drifted" window would mean little


@dataclass(frozen=True)
class FalseAlarmBudget:
    """Allowed false triggers per event on a stationary stream, split between detectors.

    Parameters:
        rate: false triggers per event allowed in all (1e-5: one per 100,000 events).
        data_share: the part of ``rate`` given to data drift; the rest goes to the
            concept-drift detectors on the error stream, split evenly between the error-stream
            detector and the holdout CUSUM.
    """

    rate: float = 1e-5
    data_share: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.rate < 1:
            raise ValueError(f"the false-alarm rate must be in (0, 1), not {self.rate}")
        if not 0 < self.data_share <= 1:
            raise ValueError(f"data_share must be in (0, 1], not {self.data_share}")

    @property
    def concept_rate(self) -> float:
        """False alarms per labelled example allowed to each of the two concept checks."""
        return self.rate * (1 - self.data_share) / 2 or self.rate * 1e-3

    @staticmethod
    def independent_windows(step: float, size: float, consecutive: int) -> int:
        """Non-overlapping windows inside ``consecutive`` windows ``step`` apart."""
        span = size + (consecutive - 1) * step
        return max(1, min(consecutive, math.floor(span / size)))

    def window_alpha(self, step: float, size: float, consecutive: int) -> float:
        """Family-wise level of one window's tests.

        Parameters:
            step: events between two verdicts (for time windows, the expected events per step).
            size: events in a window.
            consecutive: drifted windows in a row that open an episode.
        """
        per_window = self.rate * self.data_share * step
        k = self.independent_windows(step, size, consecutive)
        return min(MAX_ALPHA, per_window ** (1 / k))

    def expected_false_triggers(
        self, alpha: float, step: float, size: float, consecutive: int, events: float = 1e5
    ) -> float:
        """Upper bound on false drift triggers in ``events`` events for a window level."""
        k = self.independent_windows(step, size, consecutive)
        return events / step * alpha**k

    @property
    def detector_delta(self) -> float:
        """False alarms per labelled example of each concept check: ADWIN's ``delta``,
        KSWIN's ``alpha``, the holdout CUSUM's ``alpha``."""
        return self.concept_rate


@dataclass(frozen=True)
class AlertBudget:
    """How often a drift event may be a false alarm: the drift topic's budget, apart from the
    triggers'.

    Operators page on drift events, so their false-alarm rate is stated the way an operator
    thinks of it: the expected time between two false alerts on a stationary stream (the
    average run length to a false alarm, ARL0, of calibrated online detectors), at the
    traffic rate the monitor observes. A window raises a drift event only when its tests reject
    at the alert level, which splits that budget over the windows (each window's share is the
    events it steps over) and, by the monitor's correction, over the window's features::

        alpha_alert = step / max(events_per_s * ert_s, min_events)

    ``min_events`` is a floor in events (by default the triggers' budget, 100,000): at a low
    traffic rate the time-based budget alone would allow more false alerts per event than
    false triggers. Windows drifted at the trigger level but not at the alert level still count
    towards a trigger (two in a row open an episode); they are listed on the monitor's page,
    not published.

    Parameters:
        ert_s: expected seconds between false drift events per model (default: a week).
        min_events: expected events between false drift events, at least.

    Example:
        >>> budget = AlertBudget(ert_s=7 * 86_400, min_events=1e5)
        >>> budget.window_alpha(step=500, events_per_s=10)  # 6.05M events a week
        8.26...e-05
        >>> budget.window_alpha(step=500, events_per_s=0.01)  # a week is 6,048 events: floor
        0.005
    """

    ert_s: float = 7 * 86_400.0
    min_events: float = 1e5

    def __post_init__(self) -> None:
        if self.ert_s <= 0 or self.min_events <= 0:
            raise ValueError("the expected time and events between false alerts must be > 0")

    def expected_events(self, events_per_s: float) -> float:
        """Expected events between two false drift events at ``events_per_s``."""
        return max(events_per_s * self.ert_s, self.min_events)

    def window_alpha(self, step: float, events_per_s: float) -> float:
        """Family-wise level at which a window's tests raise a drift event.

        Parameters:
            step: events between two verdicts.
            events_per_s: the model's observed traffic (0 when not known yet: the floor holds).
        """
        return min(MAX_ALPHA, max(step, 1.0) / self.expected_events(events_per_s))
