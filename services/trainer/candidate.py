"""A refit's pure core: a training window in, a fitted candidate and the gate's verdict out.

:func:`fit_candidate` is what :class:`~driftloop.services.trainer.trainer.Trainer` does between
reading a window and recording the verdict, and all of it: no MLflow, no store, no registry, no
broker. The trainer wraps it with the window's read and the run's logging, registration and
promotion; :mod:`bench.adaptation` calls it as it is, on windows cut from its streams, so that
the benchmark measures the service's own steps.

1. **fit**: the window's contract (the one its rows were checked against; inferred from its
   rows when it has none), the card (the contract with the training rows' vocabularies), the
   model (the champion's weights for a warm start when its card allows, the user's builder,
   or the built-in MLP) and :func:`~driftloop.services.trainer.fit.fit`.
2. **evaluation**: the candidate's holdout scores and sanity, the naive baseline, the
   champion's scores on the same holdout (none when there is none or its task differs), and
   the :class:`~driftloop.services.trainer.gate.PromotionGate`'s verdict against the champion, or
   the baseline for a first model.

:func:`judge_recall` is the same for a recall trigger: the earlier champions scored on the
examples since a drift's onset, and the one
:class:`~driftloop.services.trainer.recall.ConceptRecall` chooses, if any.

Example:
    >>> result = fit_candidate(window, None, TrainerSettings())  # doctest: +SKIP
    >>> result.verdict.promote, result.verdict.reason  # doctest: +SKIP
    (True, "promoted: macro_f1 0.9212 vs 0.3512 (baseline: majority class 'no'), ...")
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from driftloop.errors import TrainingError
from driftloop.model_card import ModelCard
from driftloop.reference import ReferenceSketch
from driftloop.services.trainer.builder import build_model, load_builder
from driftloop.services.trainer.fit import FitConfig, FitReport, fit, predict
from driftloop.services.trainer.gate import (
    PromotionGate,
    Scores,
    Verdict,
    card_metrics,
    classification_scores,
    naive_classification,
    naive_regression,
    regression_scores,
    sanity_problem,
)
from driftloop.services.trainer.recall import ConceptRecall, RecallCandidate, Recalled
from driftloop.services.trainer.schema import (
    card_for,
    feature_rows,
    parse_features,
    same_inputs,
    same_model,
    targets,
    window_contract,
)
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.window import TrainingWindow

log = logging.getLogger(__name__)

RECALL_MIN_EXAMPLES = 50  # fewer examples since the onset judge no version

Stage = Callable[[str], AbstractContextManager[object]]
"""Times a named stage (``fit``, ``evaluation``): the trainer's stopwatch, or nothing."""


@dataclass(frozen=True)
class Champion:
    """The model a candidate must beat, fetched only when it is needed.

    Parameters:
        version: its registered version, named in the verdict (``champion 3``).
        load: returns the model and its card (the model is only predicted with).
        copy: returns a fresh copy of the model, to warm start from; None clones the loaded
            one (:func:`clone`).
    """

    version: str
    load: Callable[[], tuple[Any, ModelCard]]
    copy: Callable[[], Any] | None = None

    @classmethod
    def of(cls, version: str, model: Any, card: ModelCard) -> Champion:
        """A champion already loaded."""
        return cls(version, lambda: (model, card))


@dataclass(frozen=True)
class Candidate:
    """A fitted candidate and the gate's verdict on it (what :func:`fit_candidate` returns).

    Parameters:
        model: the fitted Keras model.
        card: its card, the holdout scores in its metrics (:func:`card_metrics`).
        window: the window it was fitted and judged on.
        report: what the fit did.
        warm: whether it started from the champion's weights.
        gate: the gate that judged it (its metric and margin).
        scores: its holdout scores.
        problem: why it cannot be promoted whatever its scores (:func:`sanity_problem`).
        baseline_name: the naive baseline (``majority class 'no'``).
        baseline: the baseline's holdout scores.
        champion_scores: the champion's on the same holdout; None when there is no champion
            or it cannot be compared (another task): then the baseline was the reference.
        verdict: the gate's verdict: ``verdict.promote`` and ``verdict.reason``.
        timings: seconds per stage (``fit``, ``evaluation``).
    """

    model: Any = field(repr=False)
    card: ModelCard
    window: TrainingWindow = field(repr=False)
    report: FitReport
    warm: bool
    gate: PromotionGate = field(repr=False)
    scores: Scores
    problem: str | None
    baseline_name: str
    baseline: Scores
    champion_scores: Scores | None
    verdict: Verdict
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def promote(self) -> bool:
        return self.verdict.promote

    @property
    def reason(self) -> str:
        return self.verdict.reason

    @property
    def against(self) -> Scores:
        """The scores it was judged against: the champion's, else the baseline's."""
        return self.baseline if self.champion_scores is None else self.champion_scores

    def reference(self) -> ReferenceSketch:
        """The reference sketch of the window's recent part and the candidate's answers on it:
        what the registry keeps with the model and the monitor compares live traffic with."""
        recent = self.window.recent
        return ReferenceSketch.build(
            self.card, feature_rows(self.card, recent), served_labels(self.card, self.model, recent)
        )


def fit_candidate(
    window: TrainingWindow,
    champion: Champion | None,
    settings: TrainerSettings,
    *,
    trigger_id: str | None = None,
    stop: threading.Event | None = None,
    stage: Stage | None = None,
) -> Candidate:
    """Fit a candidate on ``window`` and judge it against ``champion`` (see the module).

    Parameters:
        window: the training window (:meth:`TrainingWindow.split`, or the trainer's
            :meth:`~driftloop.services.trainer.trainer.Trainer.window`).
        champion: the model to beat; None for a first model, judged against the baseline.
        settings: the trainer's settings: task, features, builder, model, fit and gate.
        trigger_id: the trigger answered, written in the card.
        stop: set to abandon the fit (:class:`~driftloop.errors.FitInterrupted` is raised).
        stage: times the ``fit`` and ``evaluation`` stages (the trainer's stopwatch).

    Raises :class:`~driftloop.errors.TrainingError` when the window makes no card (one class,
    no features) or a user's builder returns a model that is not compiled.
    """
    timings: dict[str, float] = {}
    with _timed("fit", timings, stage):
        card = _card(window, settings)
        if trigger_id is not None:
            card = card.model_copy(update={"trigger_id": trigger_id})
        model, warm = _model(card, window, champion, settings)
        report = fit(model, card, window, FitConfig.from_settings(settings), stop)
    with _timed("evaluation", timings, stage):
        gate = PromotionGate(card.task, settings.trainer_gate_metric, settings.trainer_gate_margin)
        holdout = window.holdout
        outputs = predict(model, card, holdout)
        scores = score(card, outputs, holdout)
        problem = sanity_problem(card.task, outputs, holdout["label"].to_numpy())
        baseline_name, baseline = naive_baseline(card, window, gate.metric)
        champion_scores = _champion_scores(champion, card, holdout)
        if champion is not None and champion_scores is not None:
            verdict = gate.judge(scores, champion_scores, f"champion {champion.version}", problem)
        else:
            verdict = gate.judge(scores, baseline, f"baseline: {baseline_name}", problem)
    return Candidate(
        model=model,
        card=card.model_copy(update={"metrics": card_metrics(scores, len(holdout))}),
        window=window,
        report=report,
        warm=warm,
        gate=gate,
        scores=scores,
        problem=problem,
        baseline_name=baseline_name,
        baseline=baseline,
        champion_scores=champion_scores,
        verdict=verdict,
        timings=timings,
    )


@dataclass(frozen=True)
class RecallJudgement:
    """What :func:`judge_recall` found.

    Parameters:
        examples: the examples since the onset it judged on.
        champion_scores: the serving champion's scores on them; None when there were too few
            to judge (then nothing was scored).
        scored: the earlier champions scored (those that take the champion's inputs).
        chosen: the one to promote again, None when none knows the concept.
        skipped: why nothing was judged (too few examples), None when it was.
    """

    examples: int
    champion_scores: Scores | None = None
    scored: list[RecallCandidate] = field(default_factory=list)
    chosen: Recalled | None = None
    skipped: str | None = None


def judge_recall(
    since: pd.DataFrame,
    champion: Champion,
    earlier: Iterable[Champion],
    settings: TrainerSettings,
    *,
    stage: Stage | None = None,
) -> RecallJudgement:
    """Whether an earlier champion knows the concept since a drift's onset better than the
    serving one (:class:`ConceptRecall`).

    Parameters:
        since: the examples since the onset that keep the champion's card (:func:`check_rows`).
        champion: the serving champion.
        earlier: earlier champions, newest first; at most
            ``trainer_recall_versions`` of them are taken (an iterator is consumed only when
            there are enough examples to judge on), those with other inputs passed over.
        settings: the gate's metric and margin, the recall's tolerance and reach.
        stage: times the ``evaluation`` stage.
    """
    if len(since) < RECALL_MIN_EXAMPLES:
        return RecallJudgement(
            len(since),
            skipped=f"skipped: {len(since)} examples since the onset; a recall needs "
            f"{RECALL_MIN_EXAMPLES}",
        )
    model, card = champion.load()
    with _timed("evaluation", {}, stage):
        gate = PromotionGate(card.task, settings.trainer_gate_metric, settings.trainer_gate_margin)
        champion_scores = score(card, predict(model, card, since), since)
        scored = []
        for option in itertools.islice(earlier, settings.trainer_recall_versions):
            old, old_card = option.load()
            if same_inputs(old_card, card):
                scores = score(old_card, predict(old, old_card, since), since)
                scored.append(RecallCandidate(option.version, scores, dict(old_card.metrics or {})))
        chosen = ConceptRecall(gate, settings.trainer_recall_tolerance).choose(
            champion_scores, scored
        )
    return RecallJudgement(len(since), champion_scores, scored, chosen)


# --- pieces (the trainer's, used by it directly too) --------------------------------------------


def score(card: ModelCard, outputs: np.ndarray, frame: pd.DataFrame) -> Scores:
    """The scores of ``outputs`` (a model of ``card``'s, on ``frame``) against its labels."""
    if card.task == "classification":
        truth = frame["label"].to_numpy(dtype=object)
        return classification_scores(truth, outputs, card.classes)
    return regression_scores(targets(card, frame["label"]), outputs)


def naive_baseline(card: ModelCard, window: TrainingWindow, metric: str) -> tuple[str, Scores]:
    """The naive baseline on the window's holdout, learnt from its training part."""
    if card.task == "classification":
        return naive_classification(
            window.train["label"].to_numpy(dtype=object),
            window.holdout["label"].to_numpy(dtype=object),
        )
    return naive_regression(
        targets(card, window.train["label"]), targets(card, window.holdout["label"]), metric
    )


def served_labels(card: ModelCard, model: Any, frame: pd.DataFrame) -> list[Any]:
    """The model's predictions as served: a class label, or a value."""
    outputs = predict(model, card, frame, 4096)
    if card.task == "classification":
        return [card.classes[i] for i in np.argmax(outputs, axis=1)]
    return [float(v) for v in outputs.reshape(-1)]


def clone(model: Any) -> Any:
    """A fresh, compiled copy of a Keras model with its weights (a warm start's start)."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
    copy.compile(optimizer=optimizer, loss=model.loss)
    return copy


def _card(window: TrainingWindow, settings: TrainerSettings) -> ModelCard:
    """The card: the window's contract (inferred when it has none), with the training part's
    vocabularies."""
    contract = window.contract or window_contract(
        window.everything,
        model_name=settings.model_name,
        task=settings.trainer_task,
        features=parse_features(settings.trainer_features),
        max_classes=settings.trainer_max_classes,
    )
    return card_for(
        contract, window.everything, vocabulary_from=pd.concat([window.train, window.validation])
    )


def _model(
    card: ModelCard, window: TrainingWindow, champion: Champion | None, settings: TrainerSettings
) -> tuple[Any, bool]:
    """The model to fit, and whether it starts from the champion's weights."""
    if settings.trainer_warm_start and champion is not None:
        served, champion_card = champion.load()
        if same_model(card, champion_card):
            # A fresh copy: the champion must stay as it is for the evaluation.
            return (champion.copy() if champion.copy is not None else clone(served)), True
    if settings.trainer_builder:
        model = load_builder(settings.trainer_builder)(card, window.train)
        if not getattr(model, "compiled", True) or getattr(model, "optimizer", None) is None:
            raise TrainingError(f"the builder {settings.trainer_builder} must compile")
        return model, False
    hidden = [int(u) for u in settings.trainer_hidden_units.split(",") if u.strip()]
    return build_model(card, window.train, hidden, settings.trainer_learning_rate), False


def _champion_scores(
    champion: Champion | None, card: ModelCard, holdout: pd.DataFrame
) -> Scores | None:
    """The champion's scores on the holdout, None when there is none or it cannot compare."""
    if champion is None:
        return None
    model, champion_card = champion.load()
    if champion_card.task != card.task:
        log.warning("the champion's task differs; judging against the baseline instead")
        return None
    return score(champion_card, predict(model, champion_card, holdout), holdout)


@contextlib.contextmanager
def _timed(name: str, timings: dict[str, float], stage: Stage | None) -> Iterator[None]:
    started = time.perf_counter()
    try:
        with stage(name) if stage is not None else contextlib.nullcontext():
            yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
