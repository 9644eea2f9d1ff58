"""Concept drift: the model got worse on labelled examples, whatever its inputs did.

Labels reach the monitor as labelled examples (a prediction joined with its truth). Each one
adds a 0/1 error (classification; absolute error for regression) to two checks:

- a river detector on the error stream: ADWIN [1] (default), Page-Hinkley [2] or KSWIN [3];
  only a *rise* of the error counts (a model getting better is not a reason to refit);
- a rolling accuracy against the holdout accuracy the serving version was promoted with
  (its ModelCard's ``metrics``): every ``size`` examples, a one-sided binomial test of the
  window's accuracy against it. With a known baseline this test needs fewer examples than a
  detector that must first learn the baseline from the stream.

Example:
    >>> detector = ErrorStreamDetector("adwin", delta=1e-5, holdout_accuracy=0.9, size=200)
    >>> alarms = [detector.update(float(i % 10 == 0)) for i in range(1000)]
    >>> any(alarms)
    False
    >>> alarms = [detector.update(float(i % 2 == 0)) for i in range(1000)]
    >>> next(a for a in alarms if a).source in {"adwin", "accuracy"}
    True

References:
    [1] Bifet, Gavalda (2007), Learning from time-changing data with adaptive windowing, SDM.
    [2] Page (1954), Continuous inspection schemes, Biometrika 41(1/2).
    [3] Raab, Heusinger, Schleif (2020), Reactive soft prototype computing for concept drift
        streams, Neurocomputing 416.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from river import drift
from scipy import stats

DetectorName = Literal["adwin", "page_hinkley", "kswin"]


@dataclass(frozen=True)
class ConceptAlarm:
    """The error stream says the model got worse.

    Parameters:
        source: ``adwin``, ``page_hinkley``, ``kswin`` or ``accuracy``.
        examples: labelled examples the detector had seen (for this version).
        evidence: what it measured (error rates, accuracy and its threshold).
    """

    source: str
    examples: int
    evidence: dict[str, Any] = field(default_factory=dict)


def is_error(prediction: Any, label: Any, task: str = "classification") -> float:
    """The error of one labelled example: 0/1 for a class, absolute error for a value."""
    if task == "regression":
        try:
            return abs(float(prediction) - float(label))
        except (TypeError, ValueError):
            return 1.0
    return float(str(prediction) != str(label))


class ErrorStreamDetector:
    """A river detector and a rolling-accuracy check on one model version's error stream.

    Parameters:
        method: ``adwin``, ``page_hinkley`` or ``kswin``.
        delta: ADWIN's confidence (its false-cut probability per step) and KSWIN's ``alpha``;
            see :class:`~services.monitor.budget.FalseAlarmBudget`.
        holdout_accuracy: the accuracy the version was promoted with; None turns the
            rolling-accuracy check off.
        size: labelled examples per rolling-accuracy test.
        accuracy_alpha: level of that test.
    """

    def __init__(
        self,
        method: DetectorName = "adwin",
        delta: float = 0.002,
        holdout_accuracy: float | None = None,
        size: int = 500,
        accuracy_alpha: float = 1e-3,
    ) -> None:
        self.method = method
        self.detector = self._detector(method, delta)
        self.holdout_accuracy = holdout_accuracy
        self.size = size
        # One-sided: how far below the holdout accuracy a window of ``size`` may fall by chance.
        self.z = float(stats.norm.isf(accuracy_alpha))
        self.examples = 0
        self._window: deque[float] = deque(maxlen=size)
        self._since_test = 0
        self._mean = 0.0  # running error mean, the detector's baseline for "rise"

    @staticmethod
    def _detector(method: DetectorName, delta: float) -> Any:
        if method == "adwin":
            return drift.ADWIN(delta=delta)
        if method == "page_hinkley":
            # "up": only a rise of the error; the threshold scales with the budget's strictness.
            return drift.PageHinkley(threshold=max(20.0, 4 * math.log(1 / delta)), mode="up")
        if method == "kswin":
            # A strict alpha needs more than the default 30-vs-70 examples to see anything.
            return drift.KSWIN(alpha=delta, window_size=500, stat_size=100, seed=0)
        raise ValueError(f"unknown detector {method!r}; choose adwin, page_hinkley or kswin")

    @property
    def accuracy_threshold(self) -> float | None:
        """The rolling accuracy below which the check fires."""
        if self.holdout_accuracy is None:
            return None
        a = min(max(self.holdout_accuracy, 1e-6), 1 - 1e-6)
        return a - self.z * math.sqrt(a * (1 - a) / self.size)

    @property
    def error_rate(self) -> float:
        """The detector's current estimate of the error (ADWIN's window mean, else running)."""
        if self.method == "adwin":
            return float(self.detector.estimation)
        return self._mean

    def state(self) -> dict[str, float]:
        """What /metrics shows of the detector."""
        shown = {"error_rate": self.error_rate, "examples": float(self.examples)}
        if self.method == "adwin":
            shown["width"] = float(self.detector.width)
        if self._window:
            shown["rolling_accuracy"] = 1.0 - sum(self._window) / len(self._window)
        return shown

    def update(self, error: float) -> ConceptAlarm | None:
        """Add one example's error; returns an alarm when either check fires."""
        self.examples += 1
        before = self.error_rate
        self._mean += (error - self._mean) / min(self.examples, 1000)
        self.detector.update(error)
        alarm = None
        if self.detector.drift_detected:
            after = self.error_rate
            rose = after > before if self.method == "adwin" else self._recent_rise()
            if rose:
                alarm = ConceptAlarm(
                    self.method,
                    self.examples,
                    {"error_rate_before": round(before, 6), "error_rate_after": round(after, 6)},
                )
        self._window.append(error)
        self._since_test += 1
        threshold = self.accuracy_threshold
        full = len(self._window) == self.size
        if threshold is not None and full and self._since_test >= self.size:
            self._since_test = 0
            accuracy = 1.0 - sum(self._window) / self.size
            if accuracy < threshold and alarm is None:
                alarm = ConceptAlarm(
                    "accuracy",
                    self.examples,
                    {
                        "rolling_accuracy": round(accuracy, 6),
                        "holdout_accuracy": self.holdout_accuracy,
                        "threshold": round(threshold, 6),
                        "window": self.size,
                    },
                )
        return alarm

    def _recent_rise(self) -> bool:
        # Page-Hinkley in "up" mode only fires on a rise; KSWIN is two-sided: compare the
        # newest examples with the running mean.
        if self.method == "page_hinkley":
            return True
        recent = list(self.detector.window)[-self.detector.stat_size :]
        return bool(recent) and sum(recent) / len(recent) > self._mean
