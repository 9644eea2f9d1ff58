"""Arbitration: which model answers requests, the batch champion or the online learner, and
whether a new champion must give way to the one it replaced, decided by live evidence.

:class:`PairedEvidence` holds two models' answers on the same examples; :class:`Arbiter` and
:class:`RollbackRule` judge it with one test (and so does the live trial of a challenger,
:mod:`driftloop.services.trainer.live`).

Both models are scored on the same labelled examples: the champion's answer is the one the
example carries (serve's answer, or its shadow while the online model answers), the online
learner's is its own prediction of the example before it learns from it (prequential). Where
both are right or both wrong, the example says nothing about which is better; the evidence is
the **discordant** pairs of the last examples, over a short window (500) and a long one
(2,000): ``online_wins`` where only the online learner was right, ``champion_wins`` where only
the champion was. Under "neither is better" each
discordant pair is a fair coin, so the rule is the one-sided sign test (McNemar's exact test)
on them:

- the online learner takes over when, in either window,
  ``P(Binomial(n, 1/2) >= online_wins) <= switch_alpha / 2`` (default 0.001 in all), ``n`` the
  discordant pairs, at least ``min_discordant`` of them;
- the champion takes back over once that p-value is at least ``return_alpha`` (default 0.5)
  in both: the online learner is no longer ahead. Between the two levels nothing changes
  (hysteresis: no flapping on the boundary).

The champion is preferred (it passed the offline gate, is registered and reproducible): the
online learner takes over only when it is evidently better, and answers while it stays ahead.
A newly promoted champion starts with no evidence (:meth:`Arbiter.reset`): the online learner,
if it answers, goes on answering until the new champion's answers take its lead away.

Checked at every example, the test is a sequential one, so its level is low: between two
equally good models (85% right each, independently) it made 0 to 2 false switches in 50,000
examples, and a false switch costs little: two equal models answer equally well. The short
window sees an abrupt change within a few hundred examples, where the long one would still
hold the champion's wins from before it; the long one sees a steady, moderate advantage the
short one has too few pairs for (on ten noisy LED classes the online learner is about 6 points
better for good).

References:
    McNemar (1947), Note on the sampling error of the difference between correlated
    proportions or percentages, Psychometrika 12(2).

Example:
    >>> arbiter = Arbiter(windows=(200,), min_discordant=10)
    >>> outcomes = [arbiter.observe(champion_correct=False, online_correct=True)
    ...             for _ in range(30)]
    >>> outcomes.index("online") + 1  # after a drift: 10 wins of 10, p = 2 ** -10, switch
    10
    >>> arbiter.answerer
    'online'
    >>> for _ in range(200):  # the refit: both right from now on; the old evidence slides out
    ...     switched = arbiter.observe(champion_correct=True, online_correct=True)
    >>> arbiter.answerer
    'champion'
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from scipy.stats import binom

Answerer = Literal["champion", "online"]


@dataclass
class PairedEvidence:
    """Two models' answers on the same labelled examples, the last ``window`` of them: how
    often only the challenger was right, how often only the incumbent.

    Parameters:
        window: the examples kept.
    """

    window: int = 500
    _pairs: deque[int] = field(default_factory=deque, repr=False)
    challenger_wins: int = 0
    incumbent_wins: int = 0

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("the window must hold at least one example")

    def observe(self, incumbent_correct: bool, challenger_correct: bool) -> None:
        """Add one example's pair of outcomes (the oldest slides out of a full window)."""
        pair = int(challenger_correct) - int(incumbent_correct)
        self._pairs.append(pair)
        self._count(pair, 1)
        if len(self._pairs) > self.window:
            self._count(self._pairs.popleft(), -1)

    def clear(self) -> None:
        self._pairs.clear()
        self.challenger_wins = self.incumbent_wins = 0

    @property
    def examples(self) -> int:
        return len(self._pairs)

    @property
    def discordant(self) -> int:
        """Examples of the window where exactly one of the two was right."""
        return self.challenger_wins + self.incumbent_wins

    def p_value(self, incumbent: bool = False) -> float:
        """The one-sided sign test's p-value for "the challenger is better" ("the incumbent
        is better" with ``incumbent``); 1.0 without discordant pairs."""
        if not self.discordant:
            return 1.0
        wins = self.incumbent_wins if incumbent else self.challenger_wins
        return float(binom.sf(wins - 1, self.discordant, 0.5))

    def evident(self, alpha: float, min_discordant: int, incumbent: bool = False) -> bool:
        """Whether the challenger (the incumbent, with ``incumbent``) is evidently better: at
        least ``min_discordant`` discordant pairs, more of them its wins, and the sign test's
        p-value at most ``alpha``."""
        wins, losses = self.challenger_wins, self.incumbent_wins
        if incumbent:
            wins, losses = losses, wins
        return (
            self.discordant >= min_discordant and wins > losses and self.p_value(incumbent) <= alpha
        )

    def _count(self, pair: int, sign: int) -> None:
        if pair > 0:
            self.challenger_wins += sign
        elif pair < 0:
            self.incumbent_wins += sign


@dataclass
class Arbiter:
    """Decides, example by example, whether the batch champion or the online learner answers.

    The evidence is kept at two time scales, each its own :class:`PairedEvidence`: the last
    ``windows[0]`` examples see an abrupt change soon, the last ``windows[-1]`` see a steady,
    moderate advantage (Bonferroni: each is tested at ``switch_alpha`` over the number of
    windows). The online learner takes over when any window says it is evidently better, and
    hands back when no window says it is ahead.

    Parameters:
        windows: the lengths, in labelled examples, of the windows the evidence is kept over.
        switch_alpha: the sign test's family-wise level for the online learner to take over.
        return_alpha: the p-value at or above which, in every window, the champion takes back
            over.
        min_discordant: discordant pairs a window needs before its test may move the answerer.
    """

    windows: tuple[int, ...] = (500, 2_000)
    switch_alpha: float = 0.001
    return_alpha: float = 0.5
    min_discordant: int = 20
    answerer: Answerer = "champion"
    evidence: tuple[PairedEvidence, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.windows or self.min_discordant < 1:
            raise ValueError("need at least one window and one discordant pair")
        if not 0 < self.switch_alpha < self.return_alpha < 1:
            raise ValueError("need 0 < switch_alpha < return_alpha < 1")
        self.evidence = tuple(PairedEvidence(window) for window in sorted(self.windows))

    def observe(self, champion_correct: bool, online_correct: bool) -> Answerer | None:
        """Add one labelled example's paired outcome; returns the new answerer on a switch."""
        for evidence in self.evidence:
            evidence.observe(champion_correct, online_correct)
        return self._decide()

    def reset(self) -> None:
        """Forget the evidence (a new champion: nothing is known of its answers yet); the
        answerer stays until new evidence moves it."""
        for evidence in self.evidence:
            evidence.clear()

    @property
    def discordant(self) -> int:
        """Discordant pairs in the longest window."""
        return self.evidence[-1].discordant

    def p_value(self) -> float:
        """The smallest of the windows' p-values for "the online learner is better"."""
        return min(evidence.p_value() for evidence in self.evidence)

    def _decide(self) -> Answerer | None:
        if self.answerer == "champion":
            level = self.switch_alpha / len(self.evidence)
            if any(e.evident(level, self.min_discordant) for e in self.evidence):
                self.answerer = "online"
                return self.answerer
        elif all(evidence.p_value() >= self.return_alpha for evidence in self.evidence):
            self.answerer = "champion"
            return self.answerer
        return None


@dataclass
class RollbackRule:
    """After a promotion, whether the previous champion (kept in shadow, scored on the same
    requests) is evidently better than the new one: then the loop rolls back by itself.

    The same sign test as :class:`Arbiter`, the previous champion as the challenger, at a
    level for an action that is rarely needed (``alpha`` 0.001), and only while the new
    champion is on probation (its first ``probation`` labelled examples): after that the
    previous champion's concept is too old to judge it by.

    Parameters:
        probation: labelled examples after a promotion during which a rollback can happen.
        alpha: the sign test's level.
        min_discordant: discordant pairs needed before a rollback.

    Example:
        >>> rule = RollbackRule(min_discordant=10)
        >>> verdicts = [rule.observe(new_correct=False, previous_correct=True) for _ in range(12)]
        >>> verdicts.index(True) + 1  # 10 answers the previous champion got right alone
        10
    """

    probation: int = 2_000
    alpha: float = 0.001
    min_discordant: int = 20
    evidence: PairedEvidence = field(init=False, repr=False)
    seen: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1 or self.min_discordant < 1 or self.probation < 1:
            raise ValueError("need 0 < alpha < 1, min_discordant >= 1, probation >= 1")
        self.evidence = PairedEvidence(self.probation)

    def observe(self, new_correct: bool, previous_correct: bool) -> bool:
        """Add one labelled example answered by both; whether to roll back now."""
        if self.seen >= self.probation:
            return False
        self.seen += 1
        self.evidence.observe(new_correct, previous_correct)
        return self.evidence.evident(self.alpha, self.min_discordant)

    @property
    def on_probation(self) -> bool:
        return self.seen < self.probation
