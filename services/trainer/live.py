"""Live evidence: what the trainer learns from the answers serve gave, one labelled example at
a time; which model answers, whether to roll back, whether a challenger is promoted.

:class:`LiveEvidence` is fed the examples topic's labelled examples (each carries the answer,
who gave it, and the models scored in shadow: see :func:`driftloop.events.scored_by`) and the
champion's moves, and returns what to do;
:class:`~driftloop.services.trainer.live_worker.LiveWorker` does it against Kafka, the registry and
the store. Three judgements, all on *paired* answers (two models' answers on the same examples) and
the same sign test (:mod:`driftloop.services.trainer.arbitration`), all with :func:`pair_outcome`:

- **which model answers**: the champion's answer (``scored_by(example, "champion")``) against
  the online learner's prequential answer (its own prediction of the example before it learns
  from it). An :class:`~driftloop.services.trainer.arbitration.Arbiter` switches; every switch is an
  :class:`OnlineDecision`, and while the online model answers, so is a fresh snapshot of it,
  at most every ``snapshot_s``.
- **rollback**: after a promotion, the new champion against the previous one, scored in shadow
  (role ``previous``), for ``probation`` examples: a :class:`Rollback` when the previous one is
  evidently better; once.
- **a challenger's trial**: the champion against the ``challenger`` (role ``challenger``):
  after ``live_examples`` pairs it is promoted when it won at least as many discordant pairs
  as the champion; it is rejected then, or sooner when the champion is evidently better
  (:class:`ChallengerVerdict`).

Only answers of the *current* champion count: an example answered before a swap (another
version) is learned from but pairs with nothing. Only examples of the service's model count.
The online learner is a classifier: beside a regression champion it is off (rollback and
challengers still judge, by absolute error).

Online versions are ``online.<n>``, ``n`` the milliseconds since the epoch when the decision was
taken, or one more than the last one if that is higher: increasing across restarts without
reading anything back, as long as decisions come less than once a millisecond (snapshots are at
most one every ``snapshot_s`` >= 10 ms) and the clock does not step back.

Example:
    >>> live = LiveEvidence(
    ...     "m", LiveConfig(windows=(100,), min_discordant=10), champion="1", task="classification"
    ... )
    >>> def example(x: float, label: str, answer: str) -> dict:
    ...     return {"model_name": "m", "model_version": "1", "features": {"x": x},
    ...             "label": label, "prediction": answer}
    >>> xs = [(i * 7 % 20 - 9.5) / 10 for i in range(1_000)]
    >>> for i, x in enumerate(xs[:300]):  # the champion knows the concept: "a" above 0
    ...     assert not live.observe(example(x, "ab"[x < 0], "ab"[x < 0]), now=i)
    >>> decisions = []
    >>> for i, x in enumerate(xs[300:], 300):  # it flips; the champion answers as before
    ...     decisions += live.observe(example(x, "ba"[x < 0], "ab"[x < 0]), now=i)
    >>> first = decisions[0]  # 32 examples after the flip (at 332 s: online.<milliseconds>)
    >>> first.answerer, first.snapshot, first.champion_version, first.online_version
    ('online', True, '1', 'online.332000')
    >>> first.evidence["online_wins"] > first.evidence["champion_wins"]
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from driftloop.events import Scalar, new_event, scored_by
from driftloop.online_snapshots import online_version
from driftloop.services.trainer.arbitration import Answerer, Arbiter, PairedEvidence, RollbackRule
from driftloop.services.trainer.online import OnlineLearner

Task = Literal["classification", "regression"]

# A snapshot (a forest of several MB pickled: 0.5 to 1 s on a busy 2-core host) keeps the
# worker from the examples; snapshots are spaced so that they take at most this share of its
# time. At one a second they took 60-90% of it and the worker fell minutes behind the labels.
SNAPSHOT_SHARE = 0.2


def pair_outcome(task: str, label: Any, first: Any, second: Any) -> tuple[bool, bool]:
    """Whether each of two answers to one labelled example counts as right, as a pair.

    Classification: an answer is right when it is the label. Regression: the answer with the
    smaller absolute error is right and the other wrong; equal errors make both right (a
    concordant pair: no evidence either way). An answer that is not a number is infinitely far.

    Example:
        >>> pair_outcome("classification", "a", "a", "b")
        (True, False)
        >>> pair_outcome("regression", 10.0, 12.0, 9.0), pair_outcome("regression", 1, 2, 0)
        ((False, True), (True, True))
    """
    if task == "regression":
        a, b = _error(label, first), _error(label, second)
        return a <= b, b <= a
    return first == label, second == label


def _error(label: Any, answer: Any) -> float:
    try:
        error = abs(float(answer) - float(label))
    except (TypeError, ValueError):
        return math.inf
    return error if not math.isnan(error) else math.inf


@dataclass(frozen=True)
class LiveConfig:
    """The live judgements' terms (the ``trainer_online_*``, ``trainer_rollback_*`` and
    ``trainer_promotion_live_examples`` settings).

    Parameters:
        learner: run the online learner beside a classification champion.
        windows: the arbiter's windows, in paired examples.
        switch_alpha: the sign-test level at which the online model takes over.
        return_alpha: the p-value at or above which the champion takes back over.
        min_discordant: discordant pairs any verdict needs.
        snapshot_s: least seconds between two snapshots while the online model answers.
        probation: examples after a promotion during which a rollback can happen; 0: never.
        rollback_alpha: the sign-test level of a rollback and of a challenger's rejection.
        live_examples: paired examples a challenger's trial runs for; 0: no trials.
    """

    learner: bool = True
    windows: tuple[int, ...] = (500, 2_000)
    switch_alpha: float = 0.001
    return_alpha: float = 0.5
    min_discordant: int = 20
    snapshot_s: float = 1.0
    probation: int = 2_000
    rollback_alpha: float = 0.001
    live_examples: int = 0

    @classmethod
    def from_settings(cls, settings: Any) -> LiveConfig:
        return cls(
            learner=settings.trainer_online_learner,
            windows=settings.online_windows,
            switch_alpha=settings.trainer_online_switch_alpha,
            return_alpha=settings.trainer_online_return_alpha,
            min_discordant=settings.trainer_online_min_discordant,
            snapshot_s=settings.trainer_online_snapshot_s,
            probation=settings.trainer_rollback_probation,
            rollback_alpha=settings.trainer_rollback_alpha,
            live_examples=settings.trainer_promotion_live_examples,
        )


@dataclass(frozen=True)
class OnlineDecision:
    """Publish an online-model event: who answers from now on; while the online model answers,
    first write the learner's snapshot as ``online_version`` (the event names where).

    Parameters:
        online_version: ``online.<n>``.
        answerer: ``champion`` or ``online``.
        champion_version: the champion the evidence compared against.
        updates: examples the online learner has learned from.
        evidence: the arbiter's counts and p-values.
    """

    online_version: str
    answerer: Answerer
    champion_version: str | None
    updates: int
    evidence: dict[str, float]

    @property
    def snapshot(self) -> bool:
        """Whether a snapshot goes with it (only while the online model answers)."""
        return self.answerer == "online"

    def event(self, model_name: str, snapshot_uri: str | None) -> dict[str, Any]:
        """The ONLINE_MODEL event, the snapshot (if any) written at ``snapshot_uri``."""
        return new_event(
            model_name=model_name,
            online_version=self.online_version,
            snapshot_uri=snapshot_uri,
            answerer=self.answerer,
            champion_version=self.champion_version,
            updates=self.updates,
            evidence=self.evidence,
        )


@dataclass(frozen=True)
class Rollback:
    """Roll ``champion`` back to ``previous``, if it is still the champion (compare-and-set)."""

    champion: str
    previous: str
    evidence: dict[str, float]


@dataclass(frozen=True)
class ChallengerVerdict:
    """Promote the challenger ``version`` (``promote``) or withdraw it; judged against
    ``champion``, why in ``reason``."""

    version: str
    champion: str
    promote: bool
    reason: str
    evidence: dict[str, float]


Action = OnlineDecision | Rollback | ChallengerVerdict


@dataclass
class _Trial:
    """A challenger's paired answers against the champion (the champion is the incumbent)."""

    version: str
    evidence: PairedEvidence

    def counts(self) -> dict[str, float]:
        e = self.evidence
        return {
            "examples": e.examples,
            "discordant": e.discordant,
            "challenger_wins": e.challenger_wins,
            "champion_wins": e.incumbent_wins,
            "p_value": e.p_value(incumbent=True),  # "the champion is better"
        }


@dataclass
class _Probation:
    """A new champion against the previous one, in shadow."""

    previous: str
    rule: RollbackRule

    def counts(self) -> dict[str, float]:
        e = self.rule.evidence
        return {
            "examples": self.rule.seen,
            "discordant": e.discordant,
            "previous_wins": e.challenger_wins,
            "new_wins": e.incumbent_wins,
            "p_value": e.p_value(),
        }


@dataclass
class LiveEvidence:
    """The live judgements of one model (see the module's docstring).

    Parameters:
        model_name: the registered model; other models' examples are passed over.
        config: the judgements' terms.
        champion: the champion now (None before the first model).
        previous: the version it replaced, scored in shadow: its probation starts now.
        challenger: a candidate awaiting live evidence: its trial starts now.
        task: the champion's task (its model card's); the online learner runs only beside a
            classification champion.
        make_learner: builds the online learner.
    """

    model_name: str
    config: LiveConfig = field(default_factory=LiveConfig)
    champion: str | None = None
    previous: str | None = None
    challenger: str | None = None
    task: str | None = None
    make_learner: Callable[[], OnlineLearner] = OnlineLearner
    learner: OnlineLearner | None = field(init=False, default=None)
    arbiter: Arbiter = field(init=False)
    examples: int = field(init=False, default=0)  # this model's labelled examples seen
    _probation: _Probation | None = field(init=False, default=None)
    _trial: _Trial | None = field(init=False, default=None)
    _number: int = field(init=False, default=0)
    _snapshot_at: float = field(init=False, default=-math.inf)
    _snapshot_updates: int = field(init=False, default=0)
    _snapshot_cost_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        config = self.config
        self.arbiter = Arbiter(
            config.windows, config.switch_alpha, config.return_alpha, config.min_discordant
        )
        self._set_learner(now=0.0)
        self._start_probation(self.previous)
        offered, self.challenger = self.challenger, None
        if offered is not None:
            self.challenger_offered(offered)

    # --- what comes in -----------------------------------------------------------------------

    def observe(self, example: Mapping[str, Any], now: float) -> list[Action]:
        """One labelled example (``now``: seconds since the epoch); what to do about it."""
        if example.get("model_name") != self.model_name or example.get("label") is None:
            return []
        self.examples += 1
        label = example["label"]
        scored = scored_by(example, "champion")
        current = scored is not None and scored[0] == self.champion
        champion_answer = scored[1] if scored is not None else None
        actions: list[Action] = []
        if self.learner is not None:
            online = self.learner.learn(example["features"], label)
            if current:
                champion_ok, online_ok = pair_outcome(self._task, label, champion_answer, online)
                if self.arbiter.observe(champion_ok, online_ok) is not None:
                    actions.append(self._decision(now))
        if current:
            actions += self._judge_previous(example, label, champion_answer)
            actions += self._judge_challenger(example, label, champion_answer)
        return actions + self.tick(now)

    def tick(self, now: float) -> list[Action]:
        """A snapshot, when the online model answers, has learned since the last one, and
        ``snapshot_s`` has passed (or longer, when snapshots take long: see
        :meth:`snapshot_took`)."""
        learner = self.learner
        spacing = max(self.config.snapshot_s, self._snapshot_cost_s / SNAPSHOT_SHARE)
        if (
            self.arbiter.answerer == "online"
            and learner is not None
            and learner.updates > self._snapshot_updates
            and now - self._snapshot_at >= spacing
        ):
            return [self._decision(now)]
        return []

    def snapshot_took(self, seconds: float) -> None:
        """The last snapshot took ``seconds`` to write: the next one comes no sooner than
        ``seconds / SNAPSHOT_SHARE`` after it started."""
        self._snapshot_cost_s = seconds

    def champion_changed(
        self,
        version: str,
        previous: str | None,
        task: str | None,
        now: float,
        reason: Literal["promotion", "rollback"] = "promotion",
    ) -> list[Action]:
        """The ``champion`` alias moved to ``version`` (a model update; ``task`` its card's):
        the arbiter starts with no evidence of it, a promotion starts a probation against
        ``previous``, a challenger's trial starts again. Nothing happens for the champion
        already known."""
        if version == self.champion:
            return []
        self.champion, self.task = version, task
        self.arbiter.reset()  # the answerer stays until the new champion's answers move it
        self._start_probation(previous if reason == "promotion" else None)
        if self._trial is not None:
            if self._trial.version == version:
                self._trial = self.challenger = None
            else:
                self._trial.evidence.clear()  # judged against another champion now
        return self._set_learner(now)

    def challenger_offered(self, version: str) -> None:
        """``version`` got the ``challenger`` alias: its trial starts (ignored when trials
        are off)."""
        if self.config.live_examples <= 0 or version == self.champion:
            return
        if self._trial is None or self._trial.version != version:
            self.challenger = version
            self._trial = _Trial(version, PairedEvidence(self.config.live_examples))

    def announce(self, now: float) -> OnlineDecision:
        """The state as it stands, as a decision (at start: the champion answers until the
        evidence says otherwise, whatever a trainer before this one decided)."""
        return self._decision(now)

    @property
    def on_probation(self) -> bool:
        return self._probation is not None

    @property
    def updates(self) -> int:
        return 0 if self.learner is None else self.learner.updates

    # --- judgements --------------------------------------------------------------------------

    def _judge_previous(
        self, example: Mapping[str, Any], label: Scalar, champion_answer: Scalar
    ) -> list[Action]:
        probation = self._probation
        shadow = scored_by(example, "previous")
        if probation is None or shadow is None or shadow[0] != probation.previous:
            return []
        new_ok, previous_ok = pair_outcome(self._task, label, champion_answer, shadow[1])
        if probation.rule.observe(new_ok, previous_ok):
            self._probation = None  # decided: one rollback, whatever comes after
            assert self.champion is not None
            return [Rollback(self.champion, probation.previous, probation.counts())]
        if not probation.rule.on_probation:
            self._probation = None
        return []

    def _judge_challenger(
        self, example: Mapping[str, Any], label: Scalar, champion_answer: Scalar
    ) -> list[Action]:
        trial = self._trial
        shadow = scored_by(example, "challenger")
        if trial is None or shadow is None or shadow[0] != trial.version:
            return []
        champion_ok, challenger_ok = pair_outcome(self._task, label, champion_answer, shadow[1])
        evidence = trial.evidence
        evidence.observe(champion_ok, challenger_ok)
        counts = trial.counts()
        summary = (
            f"{evidence.challenger_wins} discordant pairs won against the champion's "
            f"{evidence.incumbent_wins} in {evidence.examples} paired live examples"
        )
        config = self.config
        if evidence.evident(config.rollback_alpha, config.min_discordant, incumbent=True):
            promote = False
            reason = f"rejected: the champion answered evidently better live: {summary} "
            reason += f"(p = {counts['p_value']:.2g})"
        elif evidence.examples >= config.live_examples:
            promote = evidence.challenger_wins >= evidence.incumbent_wins
            verdict = "promoted: not worse" if promote else "rejected: worse"
            reason = f"{verdict} than the champion live: {summary}"
        else:
            return []
        self._trial = self.challenger = None
        assert self.champion is not None
        return [ChallengerVerdict(trial.version, self.champion, promote, reason, counts)]

    # --- pieces ------------------------------------------------------------------------------

    @property
    def _task(self) -> str:
        return self.task or "classification"

    def _start_probation(self, previous: str | None) -> None:
        config = self.config
        self.previous = previous
        self._probation = None
        if previous is not None and config.probation > 0 and previous != self.champion:
            rule = RollbackRule(config.probation, config.rollback_alpha, config.min_discordant)
            self._probation = _Probation(previous, rule)

    def _set_learner(self, now: float) -> list[Action]:
        """The learner runs beside a classification champion only; when it stops while it
        answers, the champion answers again."""
        wanted = self.config.learner and self.task == "classification"
        if wanted and self.learner is None:
            self.learner = self.make_learner()
        elif not wanted and self.learner is not None:
            self.learner = None
            if self.arbiter.answerer == "online":
                self.arbiter.answerer = "champion"
                return [self._decision(now)]
        return []

    def _decision(self, now: float) -> OnlineDecision:
        self._number = max(self._number + 1, int(now * 1000))
        if self.arbiter.answerer == "online":
            self._snapshot_at, self._snapshot_updates = now, self.updates
        longest = self.arbiter.evidence[-1]
        evidence: dict[str, float] = {
            "examples": longest.examples,
            "discordant": longest.discordant,
            "online_wins": longest.challenger_wins,
            "champion_wins": longest.incumbent_wins,
            "p_value": self.arbiter.p_value(),
        }
        for window in self.arbiter.evidence:
            evidence[f"p_value_{window.window}"] = window.p_value()
        return OnlineDecision(
            online_version(self._number),
            self.arbiter.answerer,
            self.champion,
            self.updates,
            evidence,
        )
