"""PromotionGate: a candidate replaces the champion only if it is better on the same holdout.

Both models are scored on the same holdout with the same metrics:

- classification: accuracy, macro-F1 (unweighted mean of per-class F1 over the classes in the
  labels or the predictions, so a rare class counts as much as a common one), log loss (mean
  negative log-probability of the true class, clipped at 1e-15);
- regression: RMSE and MAE.

The gate compares one of them (``metric``) as an *error*: ``1 - score`` for accuracy and
macro-F1, the value itself for the losses. A candidate passes when it reduces the error by at
least the relative ``margin``: ``(error_champion - error_candidate) / error_champion >= margin``,
and strictly. The first model has no champion: it must beat a naive baseline instead (the
training labels' class frequencies, predicting the majority class; for regression the better
on the holdout of the training mean and the last training value). Before any comparison, the
candidate must be sane: finite outputs, and not collapsed (one class for every holdout row, or
one constant value, while the holdout's labels vary).

References: macro-F1: Sokolova & Lapalme, "A systematic analysis of performance measures for
classification tasks", Information Processing & Management 45(4), 2009. Log loss: the
cross-entropy of the predicted distribution, as in scikit-learn's ``log_loss``.

Example:
    >>> import numpy as np
    >>> gate = PromotionGate("classification", margin=0.05)
    >>> truth = np.array(["a", "b", "a", "b"], dtype=object)
    >>> good = classification_scores(truth, np.array([[.9, .1], [.2, .8], [.7, .3], [.4, .6]]),
    ...                              ["a", "b"])
    >>> bad = classification_scores(truth, np.array([[.6, .4], [.6, .4], [.6, .4], [.4, .6]]),
    ...                             ["a", "b"])
    >>> gate.judge(good, bad, "champion 1").promote
    True
    >>> gate.judge(bad, good, "champion 1").promote
    False
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.model_card import Task

Scores = dict[str, float]
EPSILON = 1e-15
HIGHER_IS_BETTER = frozenset({"accuracy", "macro_f1"})
METRICS: dict[Task, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae"),
}
DEFAULT_METRIC: dict[Task, str] = {"classification": "macro_f1", "regression": "rmse"}


def classification_scores(
    truth: np.ndarray, probabilities: np.ndarray, classes: Sequence[Any]
) -> Scores:
    """Accuracy, macro-F1 and log loss of ``probabilities`` (one column per class) on ``truth``.

    ``truth`` holds label values; one the model has no class for counts as wrong, with
    probability 0 (clipped) in the log loss.
    """
    labels = [_hashable(v) for v in truth]
    keys = [_hashable(c) for c in classes]
    column = {key: i for i, key in enumerate(keys)}
    predicted = [keys[i] for i in np.argmax(probabilities, axis=1)]
    true_column = np.array([column.get(label, -1) for label in labels])
    rows = np.arange(len(labels))
    p_true = np.where(
        true_column >= 0, probabilities[rows, np.maximum(true_column, 0)], 0.0
    ).astype(np.float64)
    hits = np.array([p == t for p, t in zip(predicted, labels, strict=True)])
    f1 = []
    for key in set(labels) | set(predicted):
        tp = sum(1 for p, t in zip(predicted, labels, strict=True) if p == key and t == key)
        fp = sum(1 for p in predicted if p == key) - tp
        fn = sum(1 for t in labels if t == key) - tp
        f1.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {
        "accuracy": float(hits.mean()),
        "macro_f1": float(np.mean(f1)),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, EPSILON, 1.0)))),
    }


def regression_scores(truth: np.ndarray, predictions: np.ndarray) -> Scores:
    """RMSE and MAE of ``predictions`` on ``truth``."""
    error = np.asarray(predictions, np.float64).reshape(-1) - np.asarray(truth, np.float64)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def naive_classification(
    train_labels: np.ndarray, holdout_labels: np.ndarray
) -> tuple[str, Scores]:
    """The majority-class baseline: the training class frequencies for every holdout row."""
    counts = Counter(_hashable(v) for v in train_labels).most_common()
    classes = [label for label, _ in counts]
    shares = np.array([n for _, n in counts], dtype=np.float64) / sum(n for _, n in counts)
    probabilities = np.tile(shares, (len(holdout_labels), 1))
    return f"majority class {_plain(classes[0])!r}", classification_scores(
        np.asarray(holdout_labels, dtype=object), probabilities, classes
    )


def naive_regression(
    train_targets: np.ndarray, holdout_targets: np.ndarray, metric: str = "rmse"
) -> tuple[str, Scores]:
    """The better on the holdout of two constant predictions: the training mean, the last value."""
    candidates = {
        "mean of the training labels": float(np.mean(train_targets)),
        "last training label": float(train_targets[-1]),
    }
    scored = {
        name: regression_scores(holdout_targets, np.full(len(holdout_targets), value))
        for name, value in candidates.items()
    }
    name = min(scored, key=lambda n: scored[n][metric])
    return name, scored[name]


def card_metrics(scores: Scores, holdout_rows: int) -> Scores:
    """What a promoted model's card carries: its holdout scores and the holdout's size, by
    which the monitor judges how far to trust them (see ``HoldoutCusum``).

    >>> card_metrics({"accuracy": 0.9}, 200)
    {'accuracy': 0.9, 'holdout_rows': 200.0}
    """
    return scores | {"holdout_rows": float(holdout_rows)}


def sanity_problem(task: Task, outputs: np.ndarray, holdout_truth: np.ndarray) -> str | None:
    """Why ``outputs`` (a model's on the holdout) cannot be promoted, or None when they can."""
    if outputs.size == 0:
        return "the model produced no outputs"
    if not np.all(np.isfinite(outputs)):
        return "the model's outputs are not all finite"
    varied = len({_hashable(v) for v in holdout_truth}) > 1
    if task == "classification":
        if varied and len(np.unique(np.argmax(outputs, axis=1))) == 1:
            return "collapsed: the model predicts one class for every holdout example"
    elif varied and float(np.std(outputs)) == 0.0:
        return "collapsed: the model predicts one value for every holdout example"
    return None


@dataclass(frozen=True)
class Verdict:
    """The gate's decision.

    Parameters:
        promote: whether the candidate replaces the reference.
        reason: a sentence for the run, the event and the operator.
        metric: the metric compared.
        candidate: the candidate's value of it.
        reference: the champion's (or baseline's) value of it, None when not compared.
        improvement: the relative reduction of the error, None when not compared.
    """

    promote: bool
    reason: str
    metric: str
    candidate: float | None = None
    reference: float | None = None
    improvement: float | None = None


class PromotionGate:
    """Decides whether a candidate's scores beat the champion's (see the module's docstring).

    Parameters:
        task: ``classification`` or ``regression``.
        metric: the metric compared; empty means macro-F1 or RMSE.
        margin: the least relative reduction of the error that promotes.
    """

    def __init__(self, task: Task, metric: str = "", margin: float = 0.01) -> None:
        self.task = task
        self.metric = metric or DEFAULT_METRIC[task]
        if self.metric not in METRICS[task]:
            raise ValueError(f"{self.metric!r} is not a {task} metric: {METRICS[task]}")
        if not 0 <= margin < 1:
            raise ValueError("margin must be in [0, 1)")
        self.margin = margin

    def error(self, scores: Scores) -> float:
        value = scores[self.metric]
        return 1.0 - value if self.metric in HIGHER_IS_BETTER else value

    def judge(
        self,
        candidate: Scores,
        reference: Scores,
        reference_name: str,
        problem: str | None = None,
    ) -> Verdict:
        """Compare ``candidate`` with ``reference`` (the champion's or the baseline's scores).

        Parameters:
            candidate: the candidate's holdout scores.
            reference: the scores to beat, on the same holdout.
            reference_name: what ``reference`` is, for the reason (``champion 3``).
            problem: the candidate's :func:`sanity_problem`, if any: it is rejected.
        """
        if problem is not None:
            return Verdict(False, f"rejected: {problem}", self.metric)
        mine, theirs = self.error(candidate), self.error(reference)
        if not np.isfinite(theirs):
            return Verdict(True, f"{reference_name} has no finite {self.metric}", self.metric)
        improvement = (theirs - mine) / theirs if theirs > 0 else (0.0 if mine == 0 else -1.0)
        values = (
            f"{self.metric} {candidate[self.metric]:.4f} vs {reference[self.metric]:.4f} "
            f"({reference_name})"
        )
        if improvement > 0 and improvement >= self.margin:
            return Verdict(
                True,
                f"promoted: {values}, error down {improvement:.1%} (margin {self.margin:.1%})",
                self.metric,
                candidate[self.metric],
                reference[self.metric],
                improvement,
            )
        return Verdict(
            False,
            f"rejected: {values}, error change {-improvement:+.1%}, needs a reduction of at "
            f"least {self.margin:.1%}",
            self.metric,
            candidate[self.metric],
            reference[self.metric],
            improvement,
        )


def _hashable(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return ("bool", value) if isinstance(value, bool) else value


def _plain(value: Any) -> Any:
    return value[1] if isinstance(value, tuple) and value[:1] == ("bool",) else value
