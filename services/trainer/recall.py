"""ConceptRecall: whether an earlier champion already knows the concept that just arrived.

Concepts come back: a season, a weekday pattern, a campaign that returns. When one does, a
version that was champion while it last held is as good as a fresh fit, and it is ready now:
it needs a few hundred labelled examples to be judged, where a fit needs thousands to learn.
The monitor sends an early *recall* (``evidence.action`` ``recall``) a few hundred examples
into a drift episode; the trainer scores the recent earlier champions on the examples since
the onset and promotes the best one that

- passes the promotion gate against the serving champion on those examples, and
- is about as good there as it was on its own holdout when it was trained: its error at
  most ``1 + tolerance`` times its holdout error (plus ``slack``, for a near-perfect
  holdout). A version that only beats a collapsed champion, on a concept it never saw, is
  not recalled: the drift's own fit will do better.

Nothing is fitted, so a recall is not a refit: it costs a few model loads and predictions.

Example:
    >>> from driftloop.services.trainer.gate import PromotionGate
    >>> gate = PromotionGate("classification", "accuracy", 0.01)
    >>> recall = ConceptRecall(gate, tolerance=0.5)
    >>> old = RecallCandidate("1", scores={"accuracy": 0.95}, trained={"accuracy": 0.96})
    >>> unknown = RecallCandidate("2", scores={"accuracy": 0.70}, trained={"accuracy": 0.97})
    >>> recall.choose({"accuracy": 0.55}, [unknown, old]).version
    '1'
    >>> recall.choose({"accuracy": 0.55}, [unknown]) is None
    True

References:
    J. Gama, P. Kosina (2014). Recurrent concepts in data streams classification.
    Knowledge and Information Systems 40(3). (reusing models of concepts seen before)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from driftloop.services.trainer.gate import PromotionGate, Scores


@dataclass(frozen=True)
class RecallCandidate:
    """An earlier champion, scored on the examples since the onset.

    Parameters:
        version: its registry version.
        scores: its scores on the examples since the onset.
        trained: its holdout scores when it was trained (its card's metrics).
    """

    version: str
    scores: Scores
    trained: Scores


@dataclass(frozen=True)
class Recalled:
    """The version to promote, and why."""

    version: str
    scores: Scores
    reason: str


class ConceptRecall:
    """Chooses the earlier champion to recall (see the module's docstring).

    Parameters:
        gate: the promotion gate (its metric and margin).
        tolerance: how much worse than its own holdout a version may do, relative to its
            holdout error, and still count as knowing the concept.
        slack: an absolute allowance on top, for versions whose holdout error was near 0.
    """

    def __init__(self, gate: PromotionGate, tolerance: float = 1.0, slack: float = 0.02) -> None:
        self.gate = gate
        self.tolerance = tolerance
        self.slack = slack

    def knows(self, candidate: RecallCandidate) -> bool:
        """Whether ``candidate`` does about as well here as on its own holdout."""
        if self.gate.metric not in candidate.trained:
            return False  # nothing to compare with: a version trained before the metric
        limit = self.gate.error(candidate.trained) * (1 + self.tolerance) + self.slack
        return self.gate.error(candidate.scores) <= limit

    def choose(self, champion: Scores, candidates: Sequence[RecallCandidate]) -> Recalled | None:
        """The best candidate that knows the concept and passes the gate; None if none does."""
        fitting = [c for c in candidates if self.knows(c)]
        for candidate in sorted(fitting, key=lambda c: self.gate.error(c.scores)):
            verdict = self.gate.judge(candidate.scores, champion, "the champion")
            if verdict.promote:
                metric = self.gate.metric
                return Recalled(
                    candidate.version,
                    candidate.scores,
                    f"recalled version {candidate.version}: {metric} "
                    f"{candidate.scores[metric]:.4f} since the onset (its holdout: "
                    f"{candidate.trained[metric]:.4f}); {verdict.reason}",
                )
        return None
