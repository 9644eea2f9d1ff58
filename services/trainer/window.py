"""TrainingWindow: which stored examples a fit learns from, and how they are split by time.

A window has a *recent* part, chosen by the policy, and an older *history* part:

- ``last_n``: the last ``size`` examples; ``last_t``: the last ``seconds`` of event time;
  ``since_drift``: everything since the drift onset the trigger names (``last_n`` without one).
  The recent part never has fewer than ``min_examples`` rows when the store has them: a drift
  caught early has few labelled examples after its onset, and the older ones are better than
  none.
- History (off by default): up to ``history_share`` times as many examples from just before
  the recent part, with the sample weight ``history_weight``. It helps a fit on a few hundred
  post-drift examples, which was measured worse than not retraining; but after an abrupt
  concept switch the older examples carry the old labels, and with a share of 1 at weight 0.3
  a fit on 1,000-2,000 post-drift examples was 7 points less accurate than one on those
  alone (:mod:`bench.adaptation`). The monitor now holds a drift trigger until enough
  post-drift examples exist (``DRIFTLOOP_MONITOR_TRIGGER_MIN_EXAMPLES``), so the recent part
  alone is trained on.

Split by time, never at random (a random split leaks the future into training): the holdout
is the most recent ``holdout_fraction`` of the recent part (the data most like tomorrow's, on
which the gate judges candidate and champion alike); the validation slice for early stopping
is the ``validation_fraction`` just before it; the rest, with the history, is trained on.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"event_time": pd.date_range("2026-01-01", periods=100, freq="min"),
    ...                       "event_id": [str(i) for i in range(100)], "label": [0, 1] * 50})
    >>> policy = WindowPolicy(kind="last_n", size=50, min_examples=20, history_share=0.5)
    >>> window = TrainingWindow.split(frame, policy)
    >>> len(window.train), len(window.validation), len(window.holdout), window.history_rows
    (65, 5, 5, 25)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from driftloop.contract import FeatureContract
from driftloop.events import epoch
from driftloop.store import ExampleStore, Manifest

Policy = Literal["last_n", "last_t", "since_drift"]


@dataclass(frozen=True)
class WindowPolicy:
    """How a window is chosen and split (see the module's docstring).

    Parameters:
        kind: ``last_n``, ``last_t`` or ``since_drift``.
        size: examples in a ``last_n`` window.
        seconds: event-time span of a ``last_t`` window.
        min_examples: fewest examples a window trains on; fewer means no fit.
        max_examples: most examples a window holds, history included.
        history_share: older examples added, as a multiple of the recent part's size.
        history_weight: the older examples' sample weight.
        holdout_fraction: the most recent share of the recent part, held out.
        validation_fraction: the share just before the holdout, for early stopping.
    """

    kind: Policy = "last_n"
    size: int = 20_000
    seconds: float = 7 * 86_400
    min_examples: int = 200
    max_examples: int = 200_000
    history_share: float = 0.0
    history_weight: float = 0.3
    holdout_fraction: float = 0.1
    validation_fraction: float = 0.1

    @classmethod
    def from_settings(cls, settings: Any) -> WindowPolicy:
        return cls(
            kind=settings.trainer_window_policy,
            size=settings.trainer_window_size,
            seconds=settings.trainer_window_seconds,
            min_examples=settings.trainer_min_examples,
            max_examples=settings.trainer_window_max_examples,
            history_share=settings.trainer_history_share,
            history_weight=settings.trainer_history_weight,
            holdout_fraction=settings.trainer_holdout_fraction,
            validation_fraction=settings.trainer_validation_fraction,
        )

    def plan(self, manifests: Sequence[Manifest], onset: str | None = None) -> list[Manifest]:
        """The files (oldest first) that hold the window, so that only they are read.

        Decided per file from the manifests' row counts and event-time ranges; :meth:`split`
        then picks the rows exactly.
        """
        files = sorted(manifests, key=lambda m: (epoch(m.first_event_time), m.file))
        if not files:
            return []
        newest = max(epoch(m.last_event_time) for m in files)
        cutoff = self._cutoff(newest, onset)
        # Without a cutoff, the last `size` rows; with one, at least `min_examples` rows.
        floor = self.size if cutoff is None else self.min_examples
        recent_rows, start = 0, len(files)
        for i in range(len(files) - 1, -1, -1):
            overlaps = cutoff is not None and epoch(files[i].last_event_time) >= cutoff
            if not overlaps and recent_rows >= min(floor, self.max_examples):
                break
            recent_rows += files[i].rows
            start = i
        history_wanted = math.ceil(self.history_share * min(recent_rows, self.max_examples))
        history_rows = 0
        while start > 0 and history_rows < history_wanted:
            start -= 1
            history_rows += files[start].rows
        return files[start:]

    def _cutoff(self, newest: float, onset: str | None) -> float | None:
        """Earliest event time of the recent part, for the time-based policies."""
        if self.kind == "last_t":
            return newest - self.seconds
        if self.kind == "since_drift" and onset is not None:
            return epoch(onset)
        return None


@dataclass
class TrainingWindow:
    """The examples of one fit, split by time.

    Parameters:
        train: examples fitted on, oldest first (history, then the recent part).
        weights: one sample weight per ``train`` row.
        validation: the slice before the holdout, for early stopping.
        holdout: the most recent slice; candidate and champion are judged on it.
        history_rows: how many ``train`` rows are older history (down-weighted).
        onset: the drift onset the recent part starts at, if the policy used one.
        manifests: the files the rows came from (for the run's data manifest).
        contract: the contract every row keeps (the one in force, or inferred), if checked.
        excluded: rows of the files left out for breaking it, by rule.
    """

    train: pd.DataFrame
    weights: np.ndarray
    validation: pd.DataFrame
    holdout: pd.DataFrame
    history_rows: int = 0
    onset: str | None = None
    manifests: list[Manifest] = field(default_factory=list)
    contract: FeatureContract | None = None
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.train) + len(self.validation) + len(self.holdout)

    @property
    def recent(self) -> pd.DataFrame:
        """The recent part: what the reference sketch of the new model describes."""
        return pd.concat([self.train.iloc[self.history_rows :], self.validation, self.holdout])

    @property
    def everything(self) -> pd.DataFrame:
        return pd.concat([self.train, self.validation, self.holdout])

    @classmethod
    def split(
        cls,
        frame: pd.DataFrame,
        policy: WindowPolicy,
        onset: str | None = None,
        manifests: Sequence[Manifest] = (),
    ) -> TrainingWindow:
        """Choose and split the window from ``frame`` (stored examples, any order).

        Raises :class:`NotEnoughExamples` when fewer than ``policy.min_examples`` labelled
        examples are available.
        """
        frame = frame[frame["label"].notna()] if "label" in frame.columns else frame
        frame = frame.sort_values(["event_time", "event_id"], kind="stable")
        frame = frame.reset_index(drop=True)
        if len(frame) < policy.min_examples:
            raise NotEnoughExamples(len(frame), policy.min_examples)
        total = len(frame)
        if policy.kind == "last_t" or (policy.kind == "since_drift" and onset is not None):
            newest = _seconds(frame["event_time"].iloc[-1])
            cutoff = newest - policy.seconds if policy.kind == "last_t" else epoch(onset or "")
            times = event_seconds(frame["event_time"])
            recent = int(np.count_nonzero(times >= cutoff))
        else:
            recent = policy.size
        recent = min(max(recent, policy.min_examples), policy.max_examples, total)
        history = min(
            math.ceil(policy.history_share * recent), policy.max_examples - recent, total - recent
        )
        chosen = frame.iloc[total - recent - history :].reset_index(drop=True)
        holdout_rows = max(1, math.ceil(policy.holdout_fraction * recent))
        validation_rows = max(1, math.ceil(policy.validation_fraction * recent))
        train_end = len(chosen) - holdout_rows - validation_rows
        weights = np.ones(train_end, dtype=np.float32)
        weights[:history] = policy.history_weight
        return cls(
            train=chosen.iloc[:train_end],
            weights=weights,
            validation=chosen.iloc[train_end : train_end + validation_rows],
            holdout=chosen.iloc[train_end + validation_rows :],
            history_rows=history,
            onset=onset if policy.kind == "since_drift" else None,
            manifests=list(manifests),
        )

    def data_manifest(self) -> dict[str, Any]:
        """What the run logs as its data: the files with their hashes and offsets, the split."""
        return {
            "window_sha256": ExampleStore.window_hash(self.manifests),
            "rows": self.rows,
            "train_rows": len(self.train),
            "history_rows": self.history_rows,
            "validation_rows": len(self.validation),
            "holdout_rows": len(self.holdout),
            "onset": self.onset,
            "excluded_rows": sum(self.excluded.values()),
            "excluded": dict(self.excluded),
            "contract_version": None if self.contract is None else self.contract.version,
            "first_event_time": _iso(self.train["event_time"].iloc[0]),
            "holdout_first_event_time": _iso(self.holdout["event_time"].iloc[0]),
            "last_event_time": _iso(self.holdout["event_time"].iloc[-1]),
            "files": [
                {
                    "file": m.file,
                    "sha256": m.sha256,
                    "rows": m.rows,
                    "first_event_time": m.first_event_time,
                    "last_event_time": m.last_event_time,
                    "offsets": m.offsets,
                }
                for m in self.manifests
            ],
        }


class NotEnoughExamples(Exception):
    """Fewer labelled examples than a fit needs (not an error: the trigger is skipped).

    Parameters:
        found: the labelled examples there are (that keep the contract, when it was checked).
        needed: the fewest a fit needs.
        excluded: rows left out for breaking the contract, by rule.
    """

    def __init__(self, found: int, needed: int, excluded: dict[str, int] | None = None) -> None:
        self.found = found
        self.needed = needed
        self.excluded = dict(excluded or {})
        if self.excluded:
            rules = ", ".join(f"{rule} {count}" for rule, count in sorted(self.excluded.items()))
            message = (
                f"{found} labelled examples in the store keep the model's contract, a fit "
                f"needs {needed} ({sum(self.excluded.values())} left out: {rules})"
            )
        else:
            message = f"{found} labelled examples in the store, a fit needs {needed}"
        super().__init__(message)


def onset_of(trigger: dict[str, Any]) -> str | None:
    """The drift onset a trigger names: ``evidence.onset``, else its window's start."""
    onset = (trigger.get("evidence") or {}).get("onset")
    if isinstance(onset, str):
        return onset
    window = trigger.get("window")
    if trigger.get("reason") == "drift" and window:
        return str(window["start"])
    return None


def _seconds(value: Any) -> float:
    if isinstance(value, str):
        return epoch(value)
    return pd.Timestamp(value).timestamp()


def event_seconds(column: pd.Series) -> np.ndarray:
    """Seconds since the epoch of an ``event_time`` column (timestamps or RFC 3339 text)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    return column.map(_seconds).to_numpy(dtype=np.float64)


def _iso(value: Any) -> str:
    return pd.Timestamp(value).isoformat()
