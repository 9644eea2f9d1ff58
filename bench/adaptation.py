"""Adaptation: does closing the loop beat not closing it, on streams with known drift points?

Each stream (:mod:`driftloop.loop.streams`: Agrawal with three abrupt concept switches,
Agrawal blending gradually through river's ``ConceptDriftStream`` twice, two Agrawal concepts
recurring, and the real Statlog Shuttle data shuffled, where nothing drifts) is replayed
prequentially (each event is predicted, then its label is known) through five learners, in
one run. The default scale is the issue's: 60,000 events a stream, periodic retraining every
5,000 (eleven refits), so the loop may refit at most three times, once per abrupt drift.

- **loop**: the real loop's cores, with the services' default settings. The monitor's
  :class:`~driftloop.services.monitor.monitor.DriftMonitor` sees every prediction and labelled
  example (windows against the served version's reference, the error-stream detectors, the trigger
  policy: one trigger per episode, held until 2,000 labelled examples follow the onset and
  the error has settled); a trigger at event ``i`` cuts the
  :class:`~driftloop.services.trainer.window.TrainingWindow` the trigger's onset selects from the
  examples up to ``i`` (what the store holds then) and calls the function
  :class:`driftloop.services.trainer.trainer.Trainer` calls between its window and MLflow,
  :func:`driftloop.services.trainer.candidate.fit_candidate` (the card, the built-in Keras MLP,
  :func:`~driftloop.services.trainer.fit.fit`, the
  :class:`~driftloop.services.trainer.gate.PromotionGate` on the same holdout as the champion); a
  recall trigger calls its :func:`~driftloop.services.trainer.candidate.judge_recall`. The verdict
  lands ``--block`` events later (the time a real fit, registration and swap take); a promoted
  candidate serves from there and the monitor learns its reference (the sketch the trainer
  registers), a rejection reaches the monitor as the training-results topic brings it live.
- **static**: the first model (the same fit on the first ``--warmup`` events), never refit.
- **periodic**: the same trainer on a cron: every ``--every`` events a fit on the last
  ``--every`` examples, swapped in without a gate ``--block`` events later (the same delay).
- **arf**: river's ``ARFClassifier`` (adaptive random forest with ADWIN per tree) learning
  online from every event.

ARF and the cron job run in two more processes beside the loop (two cores here), so the
``seconds`` column is each learner's wall time with the others running.
- **no-change**: predicts the previous event's label (the stream-learning floor).

Per stream and learner: prequential accuracy after the warm-up, mean accuracy in the 2,000
events after each drift point, refits, triggers, the loop's detection delay (events from a
drift point to its first trigger; a drift with no trigger before the next is missed) and
false triggers (before the first drift, or anywhere on the stationary stream). Loop latency:
``to_trigger_s`` is the drift-to-trigger delay in event time at ``--rate`` events a second
(mostly the hold for 2,000 labelled examples), ``to_verdict_s`` adds the refit's measured
wall-clock seconds (window, fit, gate). The rest of the way, registration and serve answering
with the new version, needs the services as processes: ``--live`` runs the demo's loop on a
private stack and adds its seconds from the drift to trigger, promotion and swap.

Event time advances ``--rate`` events per second, so the monitor's time-based settings
(cooldown, retry) mean what they mean in production at that rate.

    python -m bench.adaptation [--quick] [--events 60000] [--streams abrupt,gradual,...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd

from bench.report import OUT, write
from driftloop.events import format_time
from driftloop.loop import streams
from driftloop.loop.streams import DriftingStream

if TYPE_CHECKING:
    from driftloop.model_card import ModelCard
    from driftloop.services.trainer.candidate import Candidate, Champion

MODEL = "bench-adaptation"
# Agrawal (abrupt, gradual, recurring), real stationary data, and four other families.
DEFAULT_STREAMS = (
    "abrupt",
    "gradual",
    "recurring",
    "stationary",
    "led",
    "rbf",
    "hyperplane",
    "waveform",
)
POST_DRIFT = 2_000


# --- the stream as the store would hold it ----------------------------------------------------


def as_frame(stream: DriftingStream, rate: float, start: float = 1.8e9) -> pd.DataFrame:
    """The stream as stored examples: ``feature.<name>`` columns, ``label``, event time/id."""
    events = list(stream)
    frame = pd.DataFrame([{f"feature.{k}": v for k, v in x.items()} for x, _ in events])
    frame["label"] = [y for _, y in events]
    seconds = start + np.arange(len(events)) / rate
    frame["event_time"] = pd.to_datetime(seconds, unit="s", utc=True)
    frame["event_id"] = [f"e{i:07d}" for i in range(len(events))]
    frame["t"] = seconds
    return frame


# --- the trainer's pure core (the seam: services/trainer/candidate.py) ----------------------


@dataclass(eq=False)
class Served:
    """A model that serves: the Keras model, its card, its version, and the fit that made it
    (for its reference sketch; None for a model loaded in another process)."""

    model: Any
    card: ModelCard
    version: int
    candidate: Candidate | None = None

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        from driftloop.services.trainer.schema import model_inputs

        outputs = np.asarray(self.model.predict_on_batch(model_inputs(self.card, frame)))
        return np.asarray(self.card.classes, dtype=object)[outputs.argmax(axis=1)]

    def champion(self) -> Champion:
        """This model as the trainer's functions take a champion."""
        from driftloop.services.trainer.candidate import Champion

        return Champion.of(str(self.version), self.model, self.card)


@dataclass
class Verdict:
    promoted: bool
    reason: str
    seconds: float
    candidate: Served
    scores: dict[str, float]
    window_rows: int


class TrainerCore:
    """The trainer without MLflow or a store: a window cut from the stream (as the store would
    hold it) and the trainer's own :func:`~driftloop.services.trainer.candidate.fit_candidate` and
    :func:`~driftloop.services.trainer.candidate.judge_recall` on it.

    Parameters:
        policy_kind: the window policy (the trainer's default, ``since_drift``, for the loop;
            ``last_n`` for the periodic baseline).
        size: ``last_n`` size (and the fallback of ``since_drift``).
        gate: whether the candidate must pass the gate (a cron job swaps unconditionally).
        overrides: trainer settings (``--set``).
    """

    def __init__(
        self,
        policy_kind: str | None = None,
        size: int | None = None,
        gate: bool = True,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        from dataclasses import replace

        from driftloop.services.trainer.settings import TrainerSettings
        from driftloop.services.trainer.window import WindowPolicy

        self.settings = TrainerSettings(**{
            "model_name": MODEL,
            **{k: v for k, v in (overrides or {}).items() if k in TrainerSettings.model_fields},
        })  # fmt: skip
        policy = WindowPolicy.from_settings(self.settings)
        changes: dict[str, Any] = {}
        if policy_kind:
            changes["kind"] = policy_kind
        if size:
            changes["size"] = size
        self.policy = replace(policy, **changes)
        self.gate = gate

    def refit(
        self, frame: pd.DataFrame, onset: str | None, champion: Served | None, version: int
    ) -> Verdict:
        """The trainer's refit on the examples of ``frame`` (what the store holds then)."""
        from driftloop.services.trainer.candidate import fit_candidate
        from driftloop.services.trainer.window import TrainingWindow

        started = time.perf_counter()
        window = TrainingWindow.split(frame, self.policy, onset)
        against = None if champion is None else champion.champion()
        candidate = fit_candidate(window, against, self.settings)
        served = Served(candidate.model, candidate.card, version, candidate)
        return Verdict(
            candidate.verdict.promote or not self.gate,
            candidate.verdict.reason,
            time.perf_counter() - started,
            served,
            candidate.scores,
            window.rows,
        )

    def recall(
        self, frame: pd.DataFrame, onset: str | None, champion: Served, earlier: list[Served]
    ) -> Verdict | None:
        """A recall as the trainer answers it (:func:`judge_recall`) on the examples since
        ``onset``, the earlier champions newest first; the verdict when one is recalled."""
        from driftloop.services.trainer.candidate import judge_recall

        if onset is None or not earlier:
            return None
        started = time.perf_counter()
        since = frame[frame["t"] >= pd.Timestamp(onset).timestamp()]
        judged = judge_recall(
            since, champion.champion(), [o.champion() for o in earlier], self.settings
        )
        chosen = judged.chosen
        if chosen is None:
            return None
        recalled = next(o for o in earlier if str(o.version) == chosen.version)
        seconds = time.perf_counter() - started
        return Verdict(True, chosen.reason, seconds, recalled, chosen.scores, judged.examples)


# --- the monitor's pure core (the seam: services/monitor) ------------------------------------


class MonitorCore:
    """:class:`driftloop.services.monitor.monitor.DriftMonitor` with the service's default settings,
    references built as the trainer builds them (from the window's recent part)."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        from driftloop.services.monitor.settings import MonitorSettings
        from driftloop.services.monitor.worker import build_monitor

        self._references: dict[str, Any] = {}
        settings = MonitorSettings(**{
            k: v for k, v in (overrides or {}).items() if k in MonitorSettings.model_fields
        })  # fmt: skip
        self.monitor = build_monitor(settings, lambda _, v: self._references.get(v))
        self.drift_events = 0  # what the worker would publish on the drift topic

    def promote(self, served: Served, t: float, reason: str = "promotion") -> None:
        """Serve ``served``: its reference as the trainer registers it, the update event
        (``reason`` ``rollback`` for the trainer's rollback)."""
        from driftloop.services.monitor.monitor import ModelReference

        if str(served.version) not in self._references:
            if served.candidate is None:
                raise ValueError(f"version {served.version} has no fit to take a reference from")
            sketch = served.candidate.reference()
            self._references[str(served.version)] = ModelReference(served.card, sketch)
        self.monitor.observe_model_update(
            {
                "model_name": MODEL,
                "model_version": str(served.version),
                "event_time": format_time(t),
                "reason": reason,
            }
        )

    def reject(self, champion: Served, t: float) -> None:
        """Tell the monitor a fit was rejected, as the training-results topic does live."""
        self.monitor.observe_training_result(
            {
                "model_name": MODEL,
                "outcome": "rejected",
                "champion_version": str(champion.version),
                "event_time": format_time(t),
            }
        )

    def observe(
        self,
        features: list[dict[str, Any]],
        frame: pd.DataFrame,
        predictions: np.ndarray,
        version: int,
    ) -> list[tuple[int, dict[str, Any]]]:
        """Feed a block's predictions and examples; returns ``(row, trigger event)`` pairs."""
        from driftloop.services.monitor.monitor import TriggerDecision, is_drift_event

        fired = []
        labels = frame["label"].to_numpy()
        times = frame["t"].to_numpy()
        for i, row in enumerate(features):
            stamp = format_time(float(times[i]))
            prediction = (
                predictions[i].item() if hasattr(predictions[i], "item") else predictions[i]
            )
            common = {"model_name": MODEL, "model_version": str(version), "event_time": stamp}
            outcomes = self.monitor.observe_prediction(
                common | {"features": row, "prediction": prediction}
            )
            outcomes += self.monitor.observe_example(
                common | {"features": row, "prediction": prediction, "label": labels[i].item()}
            )
            fired += [(i, o.trigger_event()) for o in outcomes if isinstance(o, TriggerDecision)]
            self.drift_events += sum(is_drift_event(o) for o in outcomes)
        return fired


# --- the learners ---------------------------------------------------------------------------


@dataclass
class Run:
    """One learner's prequential record on one stream."""

    learner: str
    correct: np.ndarray  # after the warm-up
    refits: int = 0
    triggers: list[int] = field(default_factory=list)  # stream indexes
    promotions: list[int] = field(default_factory=list)
    refit_seconds: list[float] = field(default_factory=list)
    recalled: list[int] = field(default_factory=list)  # recalls that promoted (no fit)
    seconds: float = 0.0
    updates: int = 0  # the online learner's online updates
    switches: list[int] = field(default_factory=list)  # answerer changes (stream indexes)
    online_answers: int = 0  # answers the online learner gave
    rollbacks: list[int] = field(default_factory=list)  # stream indexes
    drift_events: int = 0  # what the monitor would publish on the drift topic


def run_static(frame: pd.DataFrame, first: Served, warmup: int, block: int) -> Run:
    started = time.perf_counter()
    labels = frame["label"].to_numpy(dtype=object)
    predicted = np.concatenate([first.labels(frame.iloc[s : s + 4096])
                                for s in range(warmup, len(frame), 4096)])  # fmt: skip
    return Run("static", predicted == labels[warmup:], seconds=time.perf_counter() - started)


STEP = 100  # events predicted per batch: the granularity of a swap


def swap_point(trigger: int, block: int) -> int:
    """The first batch boundary at least ``block`` events after the event at ``trigger``."""
    ready = trigger + 1 + block
    return -(-ready // STEP) * STEP


def run_periodic(frame: pd.DataFrame, first: Served, warmup: int, every: int, block: int) -> Run:
    """A cron job: at every ``every``-th event a fit on the last ``every`` examples starts; it
    serves ``block`` events later (the same delay the loop's fits get), with no gate."""
    started = time.perf_counter()
    trainer = TrainerCore(policy_kind="last_n", size=every, gate=False)
    labels = frame["label"].to_numpy(dtype=object)
    served, correct, run = first, [], Run("periodic", np.array([]))
    swaps: dict[int, Served] = {}
    for start in range(warmup, len(frame), STEP):
        if start > warmup and (start - warmup) % every == 0:
            verdict = trainer.refit(frame.iloc[:start], None, served, served.version + 1)
            run.refits += 1
            run.refit_seconds.append(verdict.seconds)
            swaps[swap_point(start - 1, block)] = verdict.candidate
        if start in swaps:
            served = swaps.pop(start)
            run.promotions.append(start)
        part = frame.iloc[start : start + STEP]
        correct.append(served.labels(part) == labels[start : start + len(part)])
    run.correct = np.concatenate(correct)
    run.seconds = time.perf_counter() - started
    return run


def run_periodic_saved(
    path: str, card: Any, frame: pd.DataFrame, warmup: int, every: int, block: int
) -> Run:
    """:func:`run_periodic` in another process, from the first model saved at ``path``."""
    import keras

    return run_periodic(frame, Served(keras.models.load_model(path), card, 1), warmup, every, block)


def run_loop(
    frame: pd.DataFrame,
    first: Served,
    warmup: int,
    block: int,
    log: Callable[[str], None],
    overrides: dict[str, Any] | None = None,
    switch_delay: int = 20,
) -> tuple[Run, Run]:
    """The loop: every prediction and label through the monitor; a trigger at event ``i``
    refits on the examples up to ``i`` (what the store holds then); the verdict lands, and a
    promoted candidate serves, ``block`` events later (a real fit, registration and swap).

    Two speeds: beside the batch champion the trainer's live evidence
    (:class:`~driftloop.services.trainer.live.LiveEvidence`, the service's core) learns online from
    every labelled example (the warm-up's too) and decides from both models' answers on the same
    examples which one answers; a switch reaches serve ``switch_delay`` events later (at the
    default rate, 2 s). After a promotion the replaced champion is scored in shadow for the
    probation, and a rollback the live evidence calls for restores it ``switch_delay`` events
    later. Returns the two-speed loop's record (``loop``) and the batch champion's alone
    (``batch-loop``: the loop before the online model; its triggers and refits are the same).
    """
    from driftloop.events import is_recall
    from driftloop.services.trainer.live import LiveEvidence, OnlineDecision, Rollback
    from driftloop.services.trainer.window import onset_of

    started = time.perf_counter()
    # The services' own defaults (since_drift, the gate, the monitor's policy) unless --set.
    trainer = TrainerCore(overrides=overrides)
    monitor = MonitorCore(overrides)
    monitor.promote(first, float(frame["t"].iloc[warmup - 1]))
    labels = frame["label"].to_numpy(dtype=object)
    times = frame["t"].to_numpy()
    names = [c for c in frame.columns if c.startswith("feature.")]
    features = [dict(zip([n[8:] for n in names], row, strict=True))
                for row in frame[names].itertuples(index=False)]  # fmt: skip
    served, correct, run = first, [], Run("loop", np.array([]))
    batch_correct: list[np.ndarray] = []
    live = LiveEvidence(MODEL, champion=str(first.version), task="classification")
    learner = live.learner
    assert learner is not None
    for i in range(warmup):  # the online learner has seen what the first model was fit on
        learner.learn(features[i], labels[i])
    answerer, switch_at = "champion", None  # what serve answers with; (when, to) on its way
    previous: Served | None = None  # the champion before the last promotion, in shadow
    restore_at: tuple[int, Served] | None = None  # a rollback on its way to serve
    version = first.version
    champions = [first]  # every version promoted, oldest first: what a recall may bring back
    pending: tuple[int, Verdict] | None = None  # (the event it lands at, the verdict)
    queued: dict[str, Any] | None = None  # a trigger that came during a fit: the follow-up
    for start in range(warmup, len(frame), STEP):
        if pending is not None and start >= pending[0]:
            verdict = pending[1]
            pending = None
            if verdict.promoted:
                previous, served = served, verdict.candidate
                run.promotions.append(start)
                monitor.promote(served, float(times[start - 1]))
                live.champion_changed(
                    str(served.version), str(previous.version), "classification",
                    float(times[start - 1]),
                )  # fmt: skip
                if served not in champions:
                    champions.append(served)
            else:
                monitor.reject(served, float(times[start - 1]))
            if queued is not None:
                trigger, queued = queued, None
                fired_at = start - 1
                version += 1
                verdict = _refit(trainer, frame, fired_at, trigger, served, version, run, log)
                pending = (swap_point(fired_at, block), verdict)
        if restore_at is not None and start >= restore_at[0]:
            served, restore_at = restore_at[1], None
            monitor.promote(served, float(times[start - 1]), reason="rollback")
        part = frame.iloc[start : start + STEP]
        predicted = served.labels(part)
        shadowed = previous.labels(part) if previous is not None and live.on_probation else None
        answers = predicted.copy()
        for j in range(len(part)):
            index = start + j
            if switch_at is not None and index >= switch_at[0]:
                answerer, switch_at = switch_at[1], None
            if answerer == "online":  # serve's snapshot answers before the label comes
                online = learner.predict(features[index])
                if online is not None:
                    answers[j] = online
                    run.online_answers += 1
            example = {
                "model_name": MODEL, "model_version": str(served.version),
                "features": features[index], "label": labels[index],
                "prediction": predicted[j],
            }  # fmt: skip
            if shadowed is not None and previous is not None:
                example["shadows"] = [{"role": "previous", "model_version": str(previous.version),
                                       "prediction": shadowed[j]}]  # fmt: skip
            for action in live.observe(example, now=float(times[index])):
                if isinstance(action, OnlineDecision) and action.answerer != (
                    switch_at[1] if switch_at is not None else answerer
                ):
                    run.switches.append(index)
                    switch_at = (index + switch_delay, action.answerer)
                elif isinstance(action, Rollback) and previous is not None:
                    run.rollbacks.append(index)
                    log(f"    loop: rollback at {index} to v{previous.version}")
                    restore_at = (index + switch_delay, previous)
                    live.champion_changed(
                        str(previous.version), None, "classification", float(times[index]),
                        reason="rollback",
                    )  # fmt: skip
                    previous = None
        batch_correct.append(predicted == labels[start : start + len(part)])
        correct.append(answers == labels[start : start + len(part)])
        fired = monitor.observe(
            features[start : start + len(part)], part, predicted, served.version
        )
        for i, trigger in fired:
            if is_recall(trigger):
                if pending is not None:
                    continue  # a fit is on its way: it answers the recall too
                earlier = [c for c in reversed(champions) if c is not served]
                recalled = trainer.recall(
                    frame.iloc[: start + i + 1], onset_of(trigger), served, earlier
                )
                if recalled is not None:
                    run.recalled.append(start + i)
                    log(f"    loop: recall at {start + i}: {recalled.reason[:90]}")
                    pending = (swap_point(start + i, block), recalled)
                continue
            run.triggers.append(start + i)
            if pending is not None:
                # One fit at a time: what comes meanwhile makes one follow-up fit.
                queued = trigger
                continue
            version += 1
            verdict = _refit(trainer, frame, start + i, trigger, served, version, run, log)
            pending = (swap_point(start + i, block), verdict)
    run.correct = np.concatenate(correct)
    run.seconds = time.perf_counter() - started
    run.updates = learner.updates
    run.drift_events = monitor.drift_events
    batch = Run(
        "batch-loop",
        np.concatenate(batch_correct),
        refits=run.refits,
        triggers=run.triggers,
        promotions=run.promotions,
        refit_seconds=run.refit_seconds,
        recalled=run.recalled,
        seconds=run.seconds,
        drift_events=run.drift_events,
    )
    return run, batch


def _refit(
    trainer: TrainerCore,
    frame: pd.DataFrame,
    at: int,
    trigger: dict[str, Any],
    champion: Served,
    version: int,
    run: Run,
    log: Callable[[str], None],
) -> Verdict:
    """The trainer answering ``trigger`` at event ``at``: the examples up to it, and no more."""
    from driftloop.services.trainer.window import onset_of

    onset = onset_of(trigger)
    verdict = trainer.refit(frame.iloc[: at + 1], onset, champion, version)
    run.refits += 1
    run.refit_seconds.append(verdict.seconds)
    evidence = trigger.get("evidence") or {}
    log(
        f"    loop: trigger at {at} ({evidence.get('source')}, onset {onset}, "
        f"{evidence.get('examples_since_onset', '-')} examples since); {verdict.window_rows} "
        f"rows, {verdict.seconds:.1f} s: {verdict.reason[:90]}"
    )
    return verdict


def run_arf(frame: pd.DataFrame, warmup: int, seed: int = 42) -> Run:
    from driftloop.services.trainer.online import OnlineLearner, adaptive_forest

    started = time.perf_counter()
    learner = OnlineLearner(lambda: adaptive_forest(seed))
    names = [c for c in frame.columns if c.startswith("feature.")]
    correct = []
    for i, (row, label) in enumerate(
        zip(frame[names].itertuples(index=False), frame["label"].tolist(), strict=True)
    ):
        answer = learner.learn(dict(zip([n[8:] for n in names], row, strict=True)), label)
        if i >= warmup:
            correct.append(answer == label)
    run = Run("arf", np.array(correct), seconds=time.perf_counter() - started)
    run.updates = learner.updates
    return run


def run_no_change(frame: pd.DataFrame, warmup: int) -> Run:
    labels = frame["label"].to_numpy(dtype=object)
    return Run("no-change", labels[warmup:] == labels[warmup - 1 : -1])


# --- figures --------------------------------------------------------------------------------


def figures(run: Run, stream: DriftingStream, warmup: int, rate: float) -> dict[str, Any]:
    drifts = [d.position for d in stream.drifts]
    post = []
    for p in drifts:
        part = run.correct[max(0, p - warmup) : p - warmup + POST_DRIFT]
        if len(part):
            post.append(float(part.mean()))
    delays: list[int] = []
    missed = 0
    bounds = [*drifts, stream.n_events]
    # A drift is answered by its trigger, or by a recall that brought an earlier champion back.
    answers = sorted([*run.triggers, *run.recalled])
    for p, next_p in zip(drifts, bounds[1:], strict=False):
        hit = next((t for t in answers if p <= t < next_p), None)
        if hit is None:
            missed += 1
        else:
            delays.append(hit - p)
    delay = float(np.mean(delays)) if delays else None
    refit = float(np.mean(run.refit_seconds)) if run.refit_seconds else None
    first_drift = drifts[0] if drifts else stream.n_events
    false = sum(1 for t in run.triggers if t < first_drift)
    looped = run.learner in ("loop", "batch-loop")
    row: dict[str, Any] = {
        "stream": stream.name,
        "learner": run.learner,
        "prequential": round(float(run.correct.mean()), 4),
        "post_drift_2k": round(float(np.mean(post)), 4) if post else None,
        "refits": run.refits,
        "recalls": len(run.recalled) if looped else None,
        "triggers": len(run.triggers) if looped else None,
        "false_triggers": false if looped else None,
        "drift_events": run.drift_events if looped else None,
        "online_updates": run.updates or None,
        "switches": len(run.switches) if run.learner == "loop" else None,
        "rollbacks": len(run.rollbacks) if run.learner == "loop" else None,
        "online_share": round(run.online_answers / len(run.correct), 3)
        if run.learner == "loop" and len(run.correct)
        else None,
        "detect_delay": round(float(np.mean(delays)), 0) if delays else None,
        # Event time at --rate from the drift to its trigger, then the fit's own wall time.
        "to_trigger_s": round(delay / rate, 1) if delay is not None else None,
        "to_verdict_s": round(delay / rate + refit, 1)
        if delay is not None and refit is not None
        else None,
        "missed": missed if looped and drifts else None,
        "refit_s": round(float(np.mean(run.refit_seconds)), 1) if run.refit_seconds else None,
        "seconds": round(run.seconds, 1),
    }
    return row


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| " + " | ".join("-" if row[c] is None else str(row[c]) for c in columns) + " |"
        )
    return "\n".join(lines)


def build_streams(names: Sequence[str], events: int, warmup: int) -> list[DriftingStream]:
    """The streams, their drift points spread evenly over what follows the warm-up."""
    span = events - warmup
    made = {
        "abrupt": lambda: streams.abrupt(
            n_events=events,
            drift_at=tuple(warmup + span * k // 4 for k in (1, 2, 3)),
            functions=(0, 2, 5, 3),
        ),
        "gradual": lambda: streams.gradual(
            n_events=events,
            drift_at=tuple(warmup + span * k // 3 for k in (1, 2)),
            functions=(0, 2, 5),
            width=max(500, span // 15),
        ),
        "recurring": lambda: streams.recurring(
            n_events=events, period=warmup + span // 4, functions=(0, 2)
        ),
        "stationary": lambda: streams.stationary(n_events=min(events, 49_097)),
        "led": lambda: streams.led(
            n_events=events, drift_at=tuple(warmup + span * k // 4 for k in (1, 2, 3))
        ),
        "rbf": lambda: streams.rbf(
            n_events=events, drift_at=tuple(warmup + span * k // 4 for k in (1, 2, 3))
        ),
        "hyperplane": lambda: streams.hyperplane(
            n_events=events, drift_at=tuple(warmup + span * k // 4 for k in (1, 2, 3))
        ),
        "waveform": lambda: streams.waveform_stationary(n_events=events),
    }
    return [made[name]() for name in names]


LIVE_GOAL_S = 5.0  # the drift reaching serve to the first answers of the online model
# Requests a second in the live run (the end-to-end test's pace; the demo's is 80). The online
# model's delay is mostly counted in labelled examples (about 300 after an abrupt change), so
# in seconds it shrinks as traffic grows.
LIVE_RATE = 150.0


def live_latency(
    plan_services: dict[str, Any] | None = None, rate: float = LIVE_RATE
) -> dict[str, Any]:
    """The loop's end-to-end latency with the services as processes, on a private stack.

    Runs :class:`~driftloop.loop.run.ClosedLoop` (the demo's run) once and returns the
    seconds from the drift reaching serve to the first answers of the online model (the first
    adapted answers), and to the first drift event, trigger, promotion and swap of the batch
    refit, with the accuracies around them.
    """
    import tempfile
    from pathlib import Path

    from driftloop.demo import DEMO_SERVICES
    from driftloop.loop.run import ClosedLoop, Plan
    from driftloop.loop.timeline import summarize
    from driftloop.stack import LocalStack
    from driftloop.stack.process import free_port
    from driftloop.stack.settings import LocalStackSettings

    with tempfile.TemporaryDirectory(prefix="bench-loop-") as folder:
        settings = LocalStackSettings(
            state_dir=Path(folder),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            mlflow_port=free_port(),
        )
        stack = LocalStack(settings)
        try:
            stack.up()
            plan = Plan(rate=rate, services=dict(plan_services or DEMO_SERVICES))
            loop = ClosedLoop(settings, plan, say=lambda line: print(f"    live: {line}"))
            figures = summarize(loop.run())
        finally:
            stack.down()
    keys = (
        *("requests", "failed", "versions", "accuracy_before", "accuracy_worst"),
        *("accuracy_drifted", "online_answers", "accuracy_online", "to_online_answers_s"),
        *("version_after", "accuracy_after", "to_drift_event_s", "to_trigger_s"),
        *("to_promotion_s", "to_swap_s", "triggers", "recalls", "fits", "rollbacks"),
    )
    latency = {"rate": rate} | {key: figures.get(key) for key in keys}
    first, batch = latency["to_online_answers_s"], latency["to_swap_s"]
    # The baseline, measured in the same run: the batch refit serving, the loop without the
    # online model.
    latency["batch_refit_over_online_answers"] = (
        round(batch / first, 2) if first and batch is not None else None
    )
    latency["goal_online_answers_within_5s"] = first is not None and first <= LIVE_GOAL_S
    return latency


def report_live(rate: float = LIVE_RATE) -> int:
    """``--live-only``: the live loop alone, written to out/bench/adaptation_live.json."""
    print(f"live loop (services as processes, {rate:g} requests/s):", flush=True)
    latency = live_latency(rate=rate)
    ratio = latency["batch_refit_over_online_answers"]
    write(
        "adaptation_live",
        [{key: value for key, value in latency.items() if key != "versions"}],
        baseline="the batch refit serving (to_swap_s), in the same run",
        ratios={} if ratio is None else {"to_swap_s / to_online_answers_s": ratio},
        packages=("tensorflow-cpu", "keras", "river"),
        notes="seconds from the drift reaching serve; versions served: "
        + " -> ".join(map(str, latency["versions"] or [])),
    )
    return 0 if latency["goal_online_answers_within_5s"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.adaptation", description=__doc__)
    parser.add_argument("--events", type=int, default=60_000, help="events per stream")
    parser.add_argument("--warmup", type=int, default=2_000, help="events the first model sees")
    parser.add_argument("--block", type=int, default=500, help="events a refit takes to serve")
    parser.add_argument("--every", type=int, default=5_000, help="periodic retraining's period")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second (event time)")
    parser.add_argument(
        "--streams", default=None, help="comma-separated; default: " + ",".join(DEFAULT_STREAMS)
    )
    parser.add_argument("--learners", default="loop,batch-loop,static,periodic,arf,no-change")
    parser.add_argument("--quick", action="store_true", help="16,000 events, two streams")
    parser.add_argument(
        "--live",
        action="store_true",
        help="also run the loop live (services as processes, a private stack) for its "
        "end-to-end latency: drift to trigger, to promotion, to serve answering",
    )
    parser.add_argument(
        "--live-only", action="store_true", help="run only the live loop (see --live)"
    )
    parser.add_argument(
        "--live-rate", type=float, default=LIVE_RATE, help="requests a second in the live loop"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a monitor or trainer setting for the loop (e.g. monitor_cooldown_s=60); repeatable",
    )
    args = parser.parse_args(argv)
    if args.live_only:
        return report_live(args.live_rate)
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.quick:
        args.events = 16_000
        args.streams = args.streams or "abrupt,stationary"
    args.streams = args.streams or ",".join(DEFAULT_STREAMS)
    learners = args.learners.split(",")
    rows: list[dict[str, Any]] = []
    wall = time.perf_counter()
    # River's forest is pure Python on one core, and small Keras fits leave much of the
    # second core idle: ARF and the cron job run in two more processes beside the loop
    # (spawned: a fork of a process with TensorFlow's threads is unsafe). The cron job starts
    # from the very first model, saved and loaded.
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    folder = tempfile.TemporaryDirectory(prefix="bench-adaptation-")
    lengths: dict[str, int] = {}
    for stream in build_streams(args.streams.split(","), args.events, args.warmup):
        print(f"{stream.name}: {stream.description}", flush=True)
        lengths[stream.name] = stream.n_events
        frame = as_frame(stream, args.rate)
        arf = pool.submit(run_arf, frame, args.warmup) if "arf" in learners else None
        first_trainer = TrainerCore(policy_kind="last_n", size=args.warmup)
        first = first_trainer.refit(frame.iloc[: args.warmup], None, None, 1).candidate
        periodic = None
        if "periodic" in learners:
            saved = os.path.join(folder.name, f"{stream.name}-first.keras")
            first.model.save(saved)
            periodic = pool.submit(
                run_periodic_saved, saved, first.card, frame, args.warmup, args.every, args.block
            )
        runs: list[Run] = []
        for learner in learners:
            if learner == "loop":
                two_speed, batch_only = run_loop(
                    frame, first, args.warmup, args.block, print, overrides,
                    switch_delay=round(2 * args.rate),
                )  # fmt: skip
                runs.append(two_speed)
                if "batch-loop" in learners:
                    row = figures(batch_only, stream, args.warmup, args.rate)
                    print(f"  batch-loop: prequential {row['prequential']}", flush=True)
                    rows.append(row)
            elif learner == "batch-loop":
                continue  # measured with the loop (above)
            elif learner == "static":
                runs.append(run_static(frame, first, args.warmup, args.block))
            elif learner == "periodic" and periodic is not None:
                runs.append(periodic.result())
            elif learner == "arf" and arf is not None:
                runs.append(arf.result())
            elif learner == "no-change":
                runs.append(run_no_change(frame, args.warmup))
            row = figures(runs[-1], stream, args.warmup, args.rate)
            print(f"  {learner}: prequential {row['prequential']}, refits {row['refits']}, "
                  f"{row['seconds']} s", flush=True)  # fmt: skip
            rows.append(row)
    pool.shutdown()
    folder.cleanup()
    by = {(r["stream"], r["learner"]): r for r in rows}
    ratios: dict[str, float] = {}
    goals: dict[str, Any] = {}
    for stream_name in dict.fromkeys(r["stream"] for r in rows):
        loop = by.get((stream_name, "loop"))
        if loop is None:
            continue
        for other in ("static", "periodic", "arf"):
            if (stream_name, other) in by:
                ratios[f"{stream_name} loop/{other} prequential"] = round(
                    loop["prequential"] / by[(stream_name, other)]["prequential"], 3
                )
        periodic = by.get((stream_name, "periodic"))
        static = by.get((stream_name, "static"))
        arf = by.get((stream_name, "arf"))
        if loop["post_drift_2k"] is None:
            # Nothing drifts: no trigger, at most one drift event per 100,000 events, and at
            # least the first model's accuracy.
            goals[stream_name] = {
                "no_trigger": loop["triggers"] == 0,
                "drift_events_within_budget": loop["drift_events"] * 1e5
                <= max(lengths[stream_name] - args.warmup, 1e5),
                "matches_static": static is not None
                and loop["prequential"] >= static["prequential"],
                "triggers": loop["triggers"],
            }
            continue
        goals[stream_name] = {
            "beats_static": static is not None and loop["prequential"] > static["prequential"],
            "beats_periodic": periodic is not None
            and loop["prequential"] > periodic["prequential"],
            "refits_within_a_third_of_periodic": periodic is not None
            and loop["refits"] * 3 <= max(periodic["refits"], 1),
            "reaches_arf": arf is not None and loop["prequential"] >= arf["prequential"],
            "post_drift_at_least_0.9x_arf": arf is not None
            and loop["post_drift_2k"] >= 0.9 * arf["post_drift_2k"],
            "triggers": loop["triggers"],
        }
    latency = None
    if args.live:
        print("live loop (services as processes):", flush=True)
        latency = live_latency(rate=args.live_rate)
        print(f"  {latency}")
    table = markdown(rows)
    print("\n" + table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "adaptation.md").write_text(table + "\n")
    write(
        "adaptation",
        rows,
        baseline="static (trained once) and periodic (every --every events)",
        ratios=ratios,
        packages=("tensorflow-cpu", "keras", "river"),
        notes="prequential accuracy after the warm-up; post_drift_2k: mean accuracy in the "
        "2,000 events after each drift point; detect_delay in events",
        extra={
            "settings": vars(args),
            "goals": goals,
            "live_loop_latency": latency,
            "wall_seconds": round(time.perf_counter() - wall, 1),
        },
    )
    print(json.dumps(goals, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
