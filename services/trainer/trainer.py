"""Trainer: one refit, from a trigger to a verdict recorded in MLflow.

The steps, each timed (the benchmark reports them):

1. **window**: the manifests the policy needs are read from the example store, each file
   checked against its hash; the rows are checked against the model's contract in force (the
   contracts topic's; inferred from the rows when it has none), those that break it left out
   and counted by rule, and the rest split by time (:class:`TrainingWindow`).
2. **fit**: the card is the contract with the vocabularies of the training rows, the model
   built (the built-in builder, the user's, or the champion's weights for a warm start) and
   fitted (:func:`driftloop.services.trainer.fit.fit`).
3. **evaluation**: the candidate, the champion and the naive baseline on the same holdout;
   the :class:`~driftloop.services.trainer.gate.PromotionGate` decides.
4. **logging**: params, metrics (the rows left out among them: ``excluded_rows`` and one
   ``excluded.<rule>`` per rule, also in the training result's metrics), the data manifest
   and the reference sketch in the run.
5. **registration**: the model is registered (every candidate, so that a rejected one can be
   inspected), and on promotion the ``champion`` alias moves (the old one keeps ``previous``);
   with ``trainer_promotion_live_examples`` set, the ``challenger`` alias moves instead and
   live evidence decides (:mod:`driftloop.services.trainer.promotion`).

Steps 2 and 3 are one pure function, :func:`driftloop.services.trainer.candidate.fit_candidate` (no
MLflow, no store, no registry): the trainer reads the window before it and records the verdict
after it, and :mod:`bench.adaptation` calls the same function (as it calls
:func:`~driftloop.services.trainer.candidate.judge_recall`, the recall's judgement).

A *recall* trigger (``evidence.action`` ``recall``, sent early in a drift episode) fits
nothing: the earlier champions are scored on the examples since the onset, and one that knows
the concept is promoted again (:mod:`driftloop.services.trainer.recall`); the answer is ``promoted``
(naming that version) or ``skipped``.

Everything happens inside one MLflow run tagged with the trigger ids; the outcome tag is set
last, after the alias moved, so a crash at any point leaves the trigger unhandled (it is
processed again after a restart) and the champion either unchanged or already promoted.

Example:
    >>> with Trainer(TrainerSettings()) as trainer:  # doctest: +SKIP
    ...     outcome = trainer.train(Refit(trigger))
    >>> outcome.outcome, outcome.reason  # doctest: +SKIP
    ('promoted', 'promoted: macro_f1 0.8731 vs 0.8120 (champion 3), error down 32.5% ...')
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import mlflow
import mlflow.tensorflow
import pandas as pd
from prometheus_client import Counter, Histogram

from driftloop.contract import FeatureContract
from driftloop.contract_log import ContractLog
from driftloop.errors import FitInterrupted, TrainingError
from driftloop.events import epoch, is_recall, new_event
from driftloop.model_card import ModelCard
from driftloop.registry import CHALLENGER, CHAMPION, ModelRegistry, model_uri, register_model
from driftloop.services.trainer import lineage
from driftloop.services.trainer.builder import load_builder
from driftloop.services.trainer.candidate import (
    Candidate,
    Champion,
    fit_candidate,
    judge_recall,
)
from driftloop.services.trainer.coalesce import Refit
from driftloop.services.trainer.fit import FitConfig, FitReport, device
from driftloop.services.trainer.gate import METRICS, Scores
from driftloop.services.trainer.promotion import Offer, model_update_event, offer
from driftloop.services.trainer.schema import (
    FEATURE_PREFIX,
    check_rows,
    exclusion_metrics,
    parse_features,
    same_inputs,
    window_contract,
)
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.window import (
    NotEnoughExamples,
    TrainingWindow,
    WindowPolicy,
    event_seconds,
    onset_of,
)
from driftloop.store import ExampleStore

log = logging.getLogger(__name__)

FITS = Counter(
    "driftloop_trainer_fits_total",
    "Refits by outcome: promoted, challenger (awaiting live evidence), rejected (by the gate), "
    "failed, skipped (too little data).",
    ["outcome"],
)
STAGE_SECONDS = Histogram(
    "driftloop_trainer_stage_seconds",
    "Seconds per refit stage: window, fit, evaluation, logging, registration.",
    ["stage"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
RECALLS = Counter(
    "driftloop_trainer_recalls_total",
    "Recall triggers answered: recalled (an earlier champion promoted again) or skipped.",
    ["outcome"],
)
REFIT_SECONDS = Histogram(
    "driftloop_trainer_refit_seconds",
    "Seconds from taking a trigger to its verdict.",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
DATA_MANIFEST_PATH = "driftloop/data_manifest.json"


@dataclass
class TrainingOutcome:
    """The verdict on one refit, and what the events about it carry.

    Parameters:
        outcome: ``promoted``, ``challenger``, ``rejected``, ``failed`` or ``skipped``.
        reason: a sentence: the gate's verdict, the error, or why nothing was trained.
        trigger_ids: the triggers answered (the leader first).
        run_id: the MLflow run, None when none was started.
        model_version: the candidate's registered version, None when none was registered.
        champion_version: the champion when the candidate was judged.
        previous_version: the version that held its alias before, on promotion.
        alias: the alias a promotion moved: ``champion``, or ``challenger`` when live
            evidence decides (``trainer_promotion_live_examples``; the outcome is then
            ``challenger``, and a later result promotes or rejects it).
        metrics: the candidate's holdout scores.
        champion_metrics: the scores it was judged against on the same holdout: the
            champion's, or the naive baseline's for the first model.
        duration_s: seconds from taking the trigger to the verdict.
        timings: seconds per stage.
        fit: what the fit did.
        excluded: rows of the window left out for breaking the contract, by rule; None when
            no rows were checked.
    """

    outcome: str
    reason: str
    trigger_ids: tuple[str, ...]
    run_id: str | None = None
    model_version: str | None = None
    champion_version: str | None = None
    previous_version: str | None = None
    alias: str = CHAMPION
    metrics: Scores = field(default_factory=dict)
    champion_metrics: Scores = field(default_factory=dict)
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    fit: FitReport | None = None
    excluded: dict[str, int] | None = None
    model: Any = field(default=None, repr=False)  # the fitted candidate, in this process only

    def data_metrics(self) -> dict[str, int]:
        """The rows left out (:func:`exclusion_metrics`); empty when no rows were checked."""
        return {} if self.excluded is None else exclusion_metrics(self.excluded)

    def training_result(self, model_name: str, trigger_id: str | None = None) -> dict[str, Any]:
        """The TRAINING_RESULT event (for ``trigger_id``, the leader by default)."""
        return new_event(
            model_name=model_name,
            trigger_id=trigger_id or (self.trigger_ids[0] if self.trigger_ids else None),
            outcome=self.outcome,
            reason=self.reason[:4096],
            run_id=self.run_id,
            model_version=self.model_version,
            champion_version=self.champion_version,
            metrics=self.metrics | self.data_metrics(),
            champion_metrics=self.champion_metrics,
            duration_s=round(self.duration_s, 3),
        )

    def model_update(self, model_name: str) -> dict[str, Any] | None:
        """The MODEL_UPDATE event, when the candidate was promoted (to its alias)."""
        if self.outcome not in OFFERED or self.model_version is None or self.run_id is None:
            return None
        return model_update_event(
            model_name,
            self.model_version,
            self.run_id,
            previous=self.previous_version,
            metrics=self.metrics,
            trigger_id=self.trigger_ids[0] if self.trigger_ids else None,
            alias=self.alias,
        )


# Outcomes whose version got an alias (a model update announces it).
OFFERED = ("promoted", "challenger")


def _offered_outcome(alias: str) -> str:
    return "challenger" if alias == CHALLENGER else "promoted"


class Stopwatch:
    """Seconds per named stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.timings[name] = self.timings.get(name, 0.0) + elapsed
            STAGE_SECONDS.labels(name).observe(elapsed)


class Contracts(Protocol):
    """Where the trainer reads each model's contract in force (:class:`ContractLog`)."""

    def latest(self, model_name: str) -> FeatureContract | None: ...
    def close(self) -> None: ...


class NoContracts:
    """No model has a contract: each fit infers one from its rows (no broker: a benchmark)."""

    def latest(self, model_name: str) -> FeatureContract | None:
        return None

    def close(self) -> None:
        pass


class Trainer:
    """Turns a :class:`Refit` into a :class:`TrainingOutcome` (see the module's docstring).

    Parameters:
        settings: the trainer's settings.
        store: the example store; the one settings name by default.
        contracts: where the contracts in force are read; the contracts topic by default
            (its consumer opened at the first fit, closed by :meth:`close`).
    """

    def __init__(
        self,
        settings: TrainerSettings,
        store: ExampleStore | None = None,
        contracts: Contracts | None = None,
    ) -> None:
        from driftloop.store import open_store

        self.settings = settings
        self.name = settings.model_name
        # No dedupe state: the trainer only reads the store.
        self.store = store or open_store(settings, dedupe_horizon_s=0)
        self.policy = WindowPolicy.from_settings(settings)
        self.config = FitConfig.from_settings(settings)
        self.declared_features = parse_features(settings.trainer_features)
        if settings.trainer_builder:
            load_builder(settings.trainer_builder)  # a builder that cannot load fails here
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        # register_model goes through the global registry URI: this server's, whatever else
        # in the process set it before
        mlflow.set_registry_uri(settings.mlflow_tracking_uri)
        self.registry = ModelRegistry(settings.mlflow_tracking_uri)
        # The contracts topic, read to its end before each window (opened at the first).
        self.contracts: Contracts = contracts or ContractLog(settings, "trainer")
        self.lineage = lineage.Lineage(
            settings.mlflow_tracking_uri, settings.trainer_experiment or f"driftloop/{self.name}"
        )
        self._champion: tuple[str, Any, ModelCard] | None = None
        # Earlier champions a recall scored (versions never change): the next recall, often
        # for the same few versions, loads none of them again.
        self._earlier: OrderedDict[str, tuple[Any, ModelCard]] = OrderedDict()

    def close(self) -> None:
        """Close the contracts topic's consumer (a later fit opens it again)."""
        self.contracts.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the refit ---------------------------------------------------------------------------

    def train(self, refit: Refit, stop: threading.Event | None = None) -> TrainingOutcome:
        """Fit, judge, log and maybe promote; raises :class:`FitInterrupted` when stopped."""
        started = time.perf_counter()
        watch = Stopwatch()
        if is_recall(refit.trigger):
            outcome = self._recall(refit, watch)
            RECALLS.labels("recalled" if outcome.outcome in OFFERED else "skipped").inc()
        else:
            outcome = self._train(refit, watch, stop)
            FITS.labels(outcome.outcome).inc()
        outcome.duration_s = time.perf_counter() - started
        outcome.timings = dict(watch.timings)
        REFIT_SECONDS.observe(outcome.duration_s)
        log.info(
            "refit %s: %s",
            outcome.outcome,
            outcome.reason,
            extra={"trigger_ids": list(refit.trigger_ids), "run_id": outcome.run_id,
                   "model_version": outcome.model_version, "timings": outcome.timings},
        )  # fmt: skip
        return outcome

    def _train(
        self, refit: Refit, watch: Stopwatch, stop: threading.Event | None
    ) -> TrainingOutcome:
        ids = refit.trigger_ids
        try:
            champion = self.registry.champion(self.name)
            with watch.stage("window"):
                window = self.window(onset_of(refit.trigger))
        except NotEnoughExamples as error:
            return TrainingOutcome("skipped", f"skipped: {error}", ids, excluded=error.excluded)
        except TrainingError as error:  # the contract, or rows that make none: no trace
            log.error("refit failed before its run started: %s", error)
            return TrainingOutcome("failed", f"failed: {error}", ids)
        except Exception as error:  # the store or the registry: report it, keep consuming
            log.exception("refit failed before its run started")
            return TrainingOutcome("failed", f"failed: {type(error).__name__}: {error}", ids)
        tags = {
            lineage.TRIGGER_ID: refit.trigger_id[:5000],
            lineage.TRIGGER_KEY: lineage.trigger_key(refit.trigger_id),
            lineage.COALESCED: ",".join(lineage.trigger_key(i) for i in refit.coalesced)[:5000],
            lineage.REASON: str(refit.trigger.get("reason", "")),
            lineage.CODE_VERSION: lineage.code_version(),
            lineage.DEVICE: device(),
        }
        with mlflow.start_run(
            experiment_id=self.lineage.experiment_id,
            run_name=f"refit-{refit.trigger.get('reason', 'trigger')}",
            tags=tags,
        ) as run:
            run_id = run.info.run_id
            outcome = TrainingOutcome(
                "failed", "", ids, run_id=run_id, champion_version=champion,
                excluded=dict(window.excluded),
            )  # fmt: skip
            try:
                self._log_contract(window)
                self._judge(refit, window, champion, outcome, watch, stop)
            except FitInterrupted:
                mlflow.set_tag(lineage.VERDICT, "interrupted: the trainer stopped mid-fit")
                raise
            except Exception as error:
                log.exception("refit failed", extra={"run_id": run_id})
                outcome.outcome = "failed"
                outcome.reason = f"failed: {type(error).__name__}: {error}"
            mlflow.log_metric("duration_s", sum(watch.timings.values()))
            mlflow.set_tags(
                {lineage.VERDICT: outcome.reason[:5000], lineage.OUTCOME: outcome.outcome}
            )
        return outcome

    def _recall(self, refit: Refit, watch: Stopwatch) -> TrainingOutcome:
        """Promote an earlier champion that knows the concept since the onset, if one does."""
        ids = refit.trigger_ids
        onset = onset_of(refit.trigger)
        limit = self.settings.trainer_recall_versions
        try:
            champion = self.registry.champion(self.name)
            if champion is None or onset is None or limit == 0:
                why = "no champion" if champion is None else "no onset" if onset is None else "off"
                return TrainingOutcome("skipped", f"skipped: nothing to recall ({why})", ids)
            asked_for = refit.trigger.get("model_version")
            if asked_for is not None and str(asked_for) != champion:
                # A fit or an earlier answer (this one, redelivered) has replaced the version
                # the recall was about: the episode it came from is over.
                return TrainingOutcome(
                    "skipped",
                    f"skipped: the champion is {champion} now, not {asked_for} as when the "
                    "recall was sent",
                    ids,
                    champion_version=champion,
                )
            with watch.stage("window"):
                _, model, card = self._champion_model(champion)
                # Judged on the rows the champion's card takes, the others counted.
                checked = check_rows(card, self.since_onset(onset))
            # The earlier champions are loaded as the judgement takes them (in its stage).
            earlier = self._recall_options(champion, card, limit)
            judged = judge_recall(
                checked.rows,
                Champion.of(champion, model, card),
                earlier,
                self.settings,
                stage=watch.stage,
            )
            if judged.skipped is not None or judged.champion_scores is None:
                return TrainingOutcome(
                    "skipped",
                    judged.skipped or "skipped: nothing judged",
                    ids,
                    champion_version=champion,
                    excluded=checked.excluded,
                )
            chosen, champion_scores = judged.chosen, judged.champion_scores
            if chosen is None:
                tried = ", ".join(c.version for c in judged.scored) or "none"
                return TrainingOutcome(
                    "skipped",
                    f"skipped: no earlier champion knows the concept since {onset} "
                    f"(scored: {tried}, on {judged.examples} examples)",
                    ids,
                    champion_version=champion,
                    champion_metrics=champion_scores,
                    excluded=checked.excluded,
                )
            with watch.stage("registration"):
                offered = self._offer(chosen.version)
                run_id = self.registry.run_id(self.name, chosen.version)
            return TrainingOutcome(
                _offered_outcome(offered.alias),
                self._offered_reason(chosen.reason, offered.alias),
                ids,
                run_id=run_id,
                model_version=chosen.version,
                champion_version=champion,
                previous_version=offered.previous,
                alias=offered.alias,
                metrics=chosen.scores,
                champion_metrics=champion_scores,
                excluded=checked.excluded,
            )
        except Exception as error:  # the store or the registry: report it, keep consuming
            log.exception("recall failed")
            return TrainingOutcome("failed", f"failed: {type(error).__name__}: {error}", ids)

    def since_onset(self, onset: str) -> pd.DataFrame:
        """The labelled examples since ``onset``, oldest first (what a recall is judged on)."""
        policy = replace(self.policy, kind="since_drift", min_examples=1, history_share=0.0)
        planned = policy.plan(self.store.manifests(), onset)
        if not planned:
            return pd.DataFrame()
        frame = self.store.read_frame(planned)
        frame = frame[frame["label"].notna()]
        since = frame[event_seconds(frame["event_time"]) >= epoch(onset)]
        return since.sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)

    def _earlier_champions(self, champion: str, limit: int) -> list[str]:
        """Up to ``limit`` versions once promoted, newest first, other than ``champion``."""
        found = []
        # the outcome and rollback tags are the versions' own: no run is read
        for info in self.registry.versions(self.name, runs=False):
            promoted = info.tags.get(lineage.OUTCOME) == "promoted"
            if promoted and info.version != champion and "driftloop.rolled_back" not in info.tags:
                found.append(info.version)
        return found[:limit]

    def _recall_options(
        self, champion: str, champion_card: ModelCard, limit: int
    ) -> Iterator[Champion]:
        """The earlier champions a recall may bring back, newest first, loaded one by one;
        those that cannot serve the champion's inputs passed over (their models not loaded)."""
        for version in self._earlier_champions(champion, limit):
            model, card = self._earlier.get(version) or (None, None)
            if card is None:
                card = self.registry.model_card(self.name, version)
            fits = same_inputs(card, champion_card)
            if fits and model is None:
                model = mlflow.tensorflow.load_model(model_uri(self.name, version))
            self._earlier[version] = (model, card)
            self._earlier.move_to_end(version)
            while len(self._earlier) > 2 * max(self.settings.trainer_recall_versions, 1):
                self._earlier.popitem(last=False)
            if fits:
                yield Champion.of(version, model, card)

    def window(self, onset: str | None = None) -> TrainingWindow:
        """The current training window, of the rows that keep the model's contract.

        Raises :class:`NotEnoughExamples` (too few rows, or too few that keep the contract)
        and :class:`TrainingError` (the contract cannot be read, or the rows make none).
        """
        planned = self.policy.plan(self.store.manifests(), onset)
        if sum(m.rows for m in planned) < self.policy.min_examples:
            raise NotEnoughExamples(sum(m.rows for m in planned), self.policy.min_examples)
        in_force = self.contract_in_force()
        frame = self.store.read_frame(planned)
        settings = self.settings
        contract = window_contract(
            frame,
            in_force,
            model_name=self.name,
            task=settings.trainer_task,
            features=self.declared_features,
            max_classes=settings.trainer_max_classes,
            minority=settings.contract_minority_share,
            min_class_share=settings.contract_min_class_share,
        )
        checked = check_rows(contract, frame)
        try:
            window = TrainingWindow.split(checked.rows, self.policy, onset, planned)
        except NotEnoughExamples as error:
            raise NotEnoughExamples(error.found, error.needed, checked.excluded) from None
        return replace(window, contract=contract, excluded=checked.excluded)

    def contract_in_force(self) -> FeatureContract | None:
        """The model's contract on the contracts topic, None when it has none.

        Raises :class:`TrainingError` when the topic cannot be read (the fit fails, the trainer
        goes on; the next fit opens the topic anew).
        """
        try:
            return self.contracts.latest(self.name)
        except Exception as error:
            with contextlib.suppress(Exception):
                self.contracts.close()
            raise TrainingError(
                f"the contract of {self.name} could not be read from "
                f"{self.settings.topic_contracts}: {type(error).__name__}: {error}"
            ) from error

    def _judge(
        self,
        refit: Refit,
        window: TrainingWindow,
        champion: str | None,
        outcome: TrainingOutcome,
        watch: Stopwatch,
        stop: threading.Event | None,
    ) -> None:
        """Fit and judge (:func:`fit_candidate`), then log, register and maybe promote."""
        candidate = fit_candidate(
            window,
            None if champion is None else self._champion_of(champion),
            self.settings,
            trigger_id=refit.trigger_id,
            stop=stop,
            stage=watch.stage,
        )
        outcome.fit, outcome.model = candidate.report, candidate.model
        outcome.metrics, outcome.champion_metrics = candidate.scores, candidate.against
        with watch.stage("logging"):
            mlflow.log_params(self._params(candidate))
            mlflow.log_dict(window.data_manifest(), DATA_MANIFEST_PATH)
            report = candidate.report
            mlflow.log_metrics(
                {f"holdout_{k}": v for k, v in candidate.scores.items()}
                | {f"baseline_{k}": v for k, v in candidate.baseline.items()}
                | {f"champion_{k}": v for k, v in (candidate.champion_scores or {}).items()}
                | {
                    "fit_epochs": report.epochs,
                    "fit_best_epoch": report.best_epoch,
                    "fit_seconds": report.seconds,
                    "fit_examples_per_s": report.examples_per_second,
                    "fit_best_val_loss": report.best_val_loss,
                }
                | {f"stage_{k}_s": v for k, v in watch.timings.items()}
            )
            sketch = candidate.reference()
        promote = candidate.verdict.promote
        with watch.stage("registration"):
            version = register_model(candidate.model, candidate.card, sketch, self.name)
            outcome.model_version = version
            mlflow.set_tag(lineage.MODEL_VERSION, version)
            if promote:
                offered = self._offer(version)
                outcome.previous_version, outcome.alias = offered.previous, offered.alias
            else:
                self.registry.client.set_model_version_tag(
                    self.name, version, lineage.OUTCOME, "rejected"
                )
        outcome.outcome = _offered_outcome(outcome.alias) if promote else "rejected"
        outcome.reason = self._offered_reason(candidate.verdict.reason, outcome.alias)

    def _offer(self, version: str) -> Offer:
        """Promote ``version``, or make it the challenger when live evidence decides."""
        return offer(
            self.registry, self.name, version, self.settings.trainer_promotion_live_examples
        )

    def _offered_reason(self, reason: str, alias: str) -> str:
        """The verdict's reason, and what awaits a challenger."""
        if alias != CHALLENGER:
            return reason
        examples = self.settings.trainer_promotion_live_examples
        passed = "challenger:" + reason.removeprefix("promoted:")  # the gate's verdict
        return (
            f"{passed}; scored in shadow, promoted after {examples} paired live examples "
            "unless the champion answers evidently better"
        )

    # --- pieces ------------------------------------------------------------------------------

    def _champion_model(self, version: str) -> tuple[str, Any, ModelCard]:
        if self._champion is None or self._champion[0] != version:
            model = mlflow.tensorflow.load_model(model_uri(self.name, version))
            self._champion = (version, model, self.registry.model_card(self.name, version))
        return self._champion

    def _champion_of(self, version: str) -> Champion:
        """The champion as :func:`fit_candidate` takes it: loaded (and cached) when first
        needed; a warm start gets a fresh copy of it from the registry."""

        def load() -> tuple[Any, ModelCard]:
            _, model, card = self._champion_model(version)
            return model, card

        return Champion(
            version, load, lambda: mlflow.tensorflow.load_model(model_uri(self.name, version))
        )

    @staticmethod
    def _log_contract(window: TrainingWindow) -> None:
        """The contract the rows were checked against, and the rows left out, in the run."""
        contract = window.contract
        if contract is not None:
            mlflow.log_params(
                {
                    "contract_version": contract.version,
                    "contract_source": contract.source,
                    "label_type": contract.label_type,
                }
            )
            mlflow.set_tag(lineage.CONTRACT, f"v{contract.version} ({contract.source})")
        excluded = exclusion_metrics(window.excluded)
        mlflow.log_metrics({name: float(count) for name, count in excluded.items()})

    def _params(self, candidate: Candidate) -> dict[str, Any]:
        """The run's params: the card's terms, the settings, the window and the fit."""
        settings = self.settings
        card, window, report = candidate.card, candidate.window, candidate.report
        gate, warm, baseline_name = candidate.gate, candidate.warm, candidate.baseline_name
        return {
            "task": card.task,
            # name:kind:type, and ? when nullable
            "features": ",".join(
                f"{f.name}:{f.kind}:{f.type}{'?' if f.nullable else ''}" for f in card.features
            )[:6000],
            "classes": ",".join(map(str, card.classes))[:6000],
            "builder": settings.trainer_builder or "built-in",
            "hidden_units": settings.trainer_hidden_units,
            "learning_rate": settings.trainer_learning_rate,
            "batch_size": self.config.batch_size_for(len(window.train)),
            "max_epochs": self.config.max_epochs,
            "patience": self.config.patience,
            "plateau_patience": self.config.plateau_patience,
            "plateau_factor": self.config.plateau_factor,
            "max_fit_s": self.config.max_seconds,
            "seed": self.config.seed,
            "warm_start": warm,
            "window_policy": self.policy.kind,
            "window_rows": window.rows,
            "train_rows": len(window.train),
            "history_rows": window.history_rows,
            "history_weight": self.policy.history_weight,
            "validation_rows": len(window.validation),
            "holdout_rows": len(window.holdout),
            "window_files": len(window.manifests),
            "onset": window.onset,
            "gate_metric": gate.metric,
            "gate_margin": gate.margin,
            "baseline": baseline_name,
            "stopped_by": report.stopped_by,
            "metrics": ",".join(METRICS[card.task]),
            "feature_prefix": FEATURE_PREFIX,
        }
