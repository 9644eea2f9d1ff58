"""Concept drift: the model got worse on labelled examples, whatever its inputs did.

Labels reach the monitor as labelled examples (a prediction joined with its truth). Each one
adds a 0/1 error (classification; absolute error for regression) to two checks:

- a river detector on the error stream: ADWIN [1] (default), Page-Hinkley [2] or KSWIN [3];
  only a *rise* of the error counts (a model getting better is not a reason to refit), and
  for ADWIN and KSWIN only one of at least ``min_rise`` (a significant but tiny rise, say
  from 0.2% to 0.25% error, is not worth a refit either);
- :class:`HoldoutCusum`, a Bernoulli CUSUM [4] of the errors against the holdout accuracy
  the serving version was promoted with (its ModelCard's ``metrics``). A detector that knows
  the baseline needs fewer examples than one that must first learn it from the stream, and
  CUSUM is the fastest detector of a change between two known rates [5]. Once the live
  stream has measured the error on enough examples, its upper bound becomes the baseline
  where it is the tighter one.

Example:
    >>> detector = ErrorStreamDetector("adwin", delta=1e-5, holdout_accuracy=0.9)
    >>> alarms = [detector.update(float(i % 10 == 0)) for i in range(5000)]
    >>> any(alarms)
    False
    >>> alarms = [detector.update(float(i % 3 == 0)) for i in range(1000)]
    >>> first = next(i for i, a in enumerate(alarms) if a)
    >>> alarms[first].source in {"adwin", "holdout_cusum"}, first < 200
    (True, True)

References:
    [1] Bifet, Gavalda (2007), Learning from time-changing data with adaptive windowing, SDM.
    [2] Page (1954), Continuous inspection schemes, Biometrika 41(1/2).
    [3] Raab, Heusinger, Schleif (2020), Reactive soft prototype computing for concept drift
        streams, Neurocomputing 416.
    [4] Reynolds, Stoumbos (1999), A CUSUM chart for monitoring a proportion when inspecting
        continuously, Journal of Quality Technology 31(1).
    [5] Moustakides (1986), Optimal stopping times for detecting changes in distributions,
        Annals of Statistics 14(4).
    [6] Siegmund (1985), Sequential Analysis: Tests and Confidence Intervals, Springer, ch. 2.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from river import drift

DetectorName = Literal["adwin", "page_hinkley", "kswin"]
ROLLING = 500  # examples behind the rolling accuracy shown in /metrics
HOLDOUT_Z = 3.0  # standard errors above the holdout's error: a 0.13% chance it is worse
LIVE_FIRST_LOOK = 1000  # live examples before the live error rate may lower the baseline
ONSET_MEMORY = 65_536  # event times kept to date a change point (ADWIN may cut further back)


@dataclass(frozen=True)
class ConceptAlarm:
    """The error stream says the model got worse.

    Parameters:
        source: ``adwin``, ``page_hinkley``, ``kswin`` or ``holdout_cusum``.
        examples: labelled examples the detector had seen (for this version).
        evidence: what it measured (error rates, the baseline and the statistic).
        onset: event time (seconds) of the first example after the estimated change point:
            ADWIN's cut, the CUSUM's last reset (the argmin of its sum), KSWIN's newest
            sample; None when the detector does not say or no times were given.
        onset_examples: examples from the onset to the alarm, the alarm's own included.
    """

    source: str
    examples: int
    evidence: dict[str, Any] = field(default_factory=dict)
    onset: float | None = None
    onset_examples: int | None = None


def is_error(prediction: Any, label: Any, task: str = "classification") -> float:
    """The error of one labelled example: 0/1 for a class, absolute error for a value."""
    if task == "regression":
        try:
            return abs(float(prediction) - float(label))
        except (TypeError, ValueError):
            return 1.0
    return float(str(prediction) != str(label))


def wilson_upper(error: float, examples: float, z: float = HOLDOUT_Z) -> float:
    """Wilson's upper confidence bound on an error rate measured on ``examples`` examples.

    Sound at an error of 0 too, where the normal approximation's bound collapses.

    >>> round(wilson_upper(0.0, 800), 4), round(wilson_upper(0.2, 16_000), 4)
    (0.0111, 0.2097)
    """
    n = max(examples, 1)
    centre = error + z * z / (2 * n)
    spread = z * math.sqrt(error * (1 - error) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


def cusum_threshold(drift_per_step: float, run_length: float) -> float:
    """The CUSUM threshold ``h`` whose in-control run length is ``run_length`` examples.

    Siegmund's approximation [6] for a CUSUM of log-likelihood ratios, whose in-control mean
    step is ``drift_per_step`` (negative): ``ARL0 = (e^h - h - 1) / |drift_per_step|``. It
    ignores the overshoot past ``h``, which only lengthens the run, so it is a lower bound
    (simulated here: 1.03 to 2x the approximation, see the tests); Wald's ``e^h`` would be
    a looser one, tens of times too strict for error rates of a few percent.
    """
    target = run_length * abs(drift_per_step)
    low, high = 0.0, math.log(target + 2) + 1.0
    for _ in range(60):  # e^h - h - 1 grows with h: bisection
        middle = (low + high) / 2
        if math.exp(middle) - middle - 1 < target:
            low = middle
        else:
            high = middle
    return high


class HoldoutCusum:
    """Bernoulli CUSUMs of 0/1 errors against the error rate a holdout measured.

    The holdout's error rate is itself an estimate, often an optimistic one (the gate picked
    the candidate that scored best on it), so the in-control rate ``p0`` is its upper
    confidence bound (Wilson, three standard errors, from ``holdout_examples``). A holdout of
    a few hundred rows gives a loose bound, and a loose ``p0`` makes every rise look smaller
    than it is; the live stream measures the same error on many more examples. So after
    1,000, 2,000, 4,000... live examples (since the version started, or since the last
    alarm: an alarm means the rate moved), ``p0`` becomes the lower of the holdout's bound and
    the live errors' Wilson bound (again three standard errors; a handful of looks, each
    wrong with probability 0.13%). The live bound can only tighten ``p0``, never loosen it
    past the holdout's: errors that creep up while the baseline is learnt cannot hide a
    drift behind a raised baseline. Retuning restarts the sums. Two CUSUMs
    run side by side, tuned to a rise to ``p0 + min_rise`` and to ``p0 + 4 * min_rise``: the
    first catches small rises, the second catches large ones in fewer examples (a CUSUM is
    fastest for the change it is tuned to). Each error adds its log-likelihood ratio of the
    risen rate to ``p0``; a sum, floored at zero, alarms past its threshold, set by
    :func:`cusum_threshold` for an in-control run length of ``2 / alpha`` examples each:
    ``alpha`` bounds the pair's false alarms per example.

    Parameters:
        holdout_accuracy: the version's accuracy on its holdout.
        holdout_examples: the holdout's size.
        alpha: false alarms allowed per example.
        min_rise: the smallest rise of the error rate worth a trigger.
    """

    def __init__(
        self,
        holdout_accuracy: float,
        holdout_examples: int = 1000,
        alpha: float = 5e-6,
        min_rise: float = 0.05,
    ) -> None:
        error = min(max(1.0 - holdout_accuracy, 0.0), 1.0)
        self.holdout_p0 = wilson_upper(error, holdout_examples)
        self.alpha = alpha
        self.min_rise = min_rise
        self.live_examples = 0  # examples since the version started or the last alarm
        self._live_errors = 0.0
        self._next_look = LIVE_FIRST_LOOK
        self.detected: float | None = None  # the rate of the CUSUM that fired last
        self.seen = 0  # examples added, ever
        self.onset: int | None = None  # the example (1-based) the fired CUSUM's rise began at
        self._tune(self.holdout_p0)

    def _tune(self, p0: float) -> None:
        """Set the in-control rate, the risen rates, the LLR steps and the thresholds."""
        self.p0 = min(p0, 0.5)
        self.rates = [min(self.p0 + rise, 0.99) for rise in (self.min_rise, 4 * self.min_rise)]
        self._steps = [
            (math.log(p1 / self.p0), math.log((1 - p1) / (1 - self.p0))) for p1 in self.rates
        ]
        self.thresholds = [
            cusum_threshold(self.p0 * up + (1 - self.p0) * down, len(self.rates) / self.alpha)
            for up, down in self._steps
        ]
        self.statistics = [0.0] * len(self.rates)
        # Per CUSUM, the example after its sum last stood at zero: the change-point estimate.
        self._starts = [self.seen + 1] * len(self.rates)

    @property
    def level(self) -> float:
        """How far the nearer CUSUM is to its threshold, from 0 to 1."""
        return max(s / h for s, h in zip(self.statistics, self.thresholds, strict=True))

    def update(self, error: float) -> bool:
        """Add one 0/1 error; True when a CUSUM crosses its threshold (then all restart)."""
        wrong = min(max(error, 0.0), 1.0)
        self.seen += 1
        fired = None
        for i, (up, down) in enumerate(self._steps):
            self.statistics[i] = max(0.0, self.statistics[i] + wrong * up + (1 - wrong) * down)
            if self.statistics[i] == 0.0:
                self._starts[i] = self.seen + 1
            if self.statistics[i] > self.thresholds[i] and fired is None:
                fired = i
        if fired is not None:
            self.detected = self.rates[fired]
            self.onset = self._starts[fired]
            # The error rate changed: forget the live baseline, start again from the holdout's.
            self.live_examples, self._live_errors = 0, 0.0
            self._next_look = LIVE_FIRST_LOOK
            self._tune(self.holdout_p0)
            return True
        self.live_examples += 1
        self._live_errors += wrong
        if self.live_examples >= self._next_look:
            # Looks at 1000, 2000, 4000... examples: a handful of bounds, each at z = 3.
            self._next_look *= 2
            live = wilson_upper(self._live_errors / self.live_examples, self.live_examples)
            p0 = min(self.holdout_p0, live)
            if p0 != self.p0:
                self._tune(p0)
        return False


class ErrorStreamDetector:
    """A river detector and a holdout CUSUM on one model version's error stream.

    Parameters:
        method: ``adwin``, ``page_hinkley`` or ``kswin``.
        delta: ADWIN's confidence (its false-cut probability per step), KSWIN's ``alpha``
            and the CUSUM's false alarms per example; see
            :class:`~driftloop.services.monitor.budget.FalseAlarmBudget`.
        holdout_accuracy: the accuracy the version was promoted with; None turns the CUSUM
            off.
        holdout_examples: the size of that holdout.
        min_rise: the smallest rise of the error rate worth an alarm (ADWIN, KSWIN), and the
            one the CUSUM is tuned to.
    """

    def __init__(
        self,
        method: DetectorName = "adwin",
        delta: float = 0.002,
        holdout_accuracy: float | None = None,
        holdout_examples: int = 1000,
        min_rise: float = 0.05,
    ) -> None:
        self.method = method
        self.detector = self._detector(method, delta)
        self.min_rise = min_rise
        self.holdout_accuracy = holdout_accuracy
        self.cusum = (
            HoldoutCusum(holdout_accuracy, holdout_examples, delta, min_rise)
            if holdout_accuracy is not None
            else None
        )
        self.examples = 0
        self._window: deque[float] = deque(maxlen=ROLLING)
        self._times: deque[float | None] = deque(maxlen=ONSET_MEMORY)
        self._mean = 0.0  # running error mean, the baseline for "rise" of two-sided detectors

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
    def error_rate(self) -> float:
        """The detector's current estimate of the error (ADWIN's window mean, else running)."""
        if self.method == "adwin":
            return float(self.detector.estimation)
        return self._mean

    def state(self) -> dict[str, float]:
        """What /metrics shows of the detectors."""
        shown = {"error_rate": self.error_rate, "examples": float(self.examples)}
        if self.method == "adwin":
            shown["width"] = float(self.detector.width)
        if self._window:
            shown["rolling_accuracy"] = 1.0 - sum(self._window) / len(self._window)
        if self.cusum is not None:
            shown["cusum_level"] = self.cusum.level
            shown["cusum_in_control_error"] = self.cusum.p0
        return shown

    def _onset(self, back: int) -> tuple[float | None, int]:
        """The event time of the example ``back`` examples ago (1: this one), and ``back``."""
        back = max(1, min(back, self.examples))
        kept = min(back, len(self._times))
        return (self._times[-kept] if kept else None), back

    def update(self, error: float, time: float | None = None) -> ConceptAlarm | None:
        """Add one example's error (at event time ``time``); returns an alarm when either
        check fires, dated back to the change point it estimates."""
        self.examples += 1
        self._times.append(time)
        before = self.error_rate
        self._mean += (error - self._mean) / min(self.examples, 1000)
        self._window.append(error)
        self.detector.update(error)
        alarm = None
        if self.detector.drift_detected:
            after = self.error_rate
            rose = (
                after >= before + self.min_rise if self.method == "adwin" else self._recent_rise()
            )
            if rose:
                onset, back = self._onset(self._since_change())
                alarm = ConceptAlarm(
                    self.method,
                    self.examples,
                    {"error_rate_before": round(before, 6), "error_rate_after": round(after, 6)},
                    onset,
                    back,
                )
        if self.cusum is not None and self.cusum.update(error) and alarm is None:
            onset, back = self._onset(self.cusum.seen - (self.cusum.onset or 0) + 1)
            alarm = ConceptAlarm(
                "holdout_cusum",
                self.examples,
                {
                    "holdout_accuracy": self.holdout_accuracy,
                    "in_control_error": round(self.cusum.p0, 6),
                    "detected_error": round(self.cusum.detected or 0.0, 6),
                    "rolling_accuracy": round(1.0 - sum(self._window) / len(self._window), 6),
                },
                onset,
                back,
            )
        return alarm

    def _since_change(self) -> int:
        """Examples since the river detector's change point (this one included)."""
        if self.method == "adwin":
            # ADWIN dropped the part before its cut: what is left is the new concept.
            return int(self.detector.width)
        if self.method == "kswin":
            return int(self.detector.stat_size)
        return min(self.examples, ROLLING)  # Page-Hinkley does not say: the rolling window

    def _recent_rise(self) -> bool:
        # Page-Hinkley in "up" mode only fires on a rise; KSWIN is two-sided: compare the
        # newest examples with the running mean.
        if self.method == "page_hinkley":
            return True
        recent = list(self.detector.window)[-self.detector.stat_size :]
        return bool(recent) and sum(recent) / len(recent) >= self._mean + self.min_rise
