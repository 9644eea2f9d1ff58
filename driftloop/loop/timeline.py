"""What a run of the loop looked like, as recorded by the producing app: a pure data structure.

A :class:`Timeline` holds every answered request (when, which model version answered, whether
the served prediction was right once the label was known) and every loop event read from the
topics (drift, trigger, training result, model update, swap). :func:`summarize` turns it into
the figures the demo prints and the report tabulates; nothing here does I/O, so the report can
be rebuilt, and tested, from a saved recording.

Example:
    >>> timeline = Timeline(started=0.0)
    >>> for i in range(4):
    ...     timeline.serve(t=float(i), version="1", correct=i < 2)
    >>> timeline.observe("swap", {"event_time": "1970-01-01T00:00:03Z", "model_version": "2",
    ...                           "outcome": "swapped", "previous_version": "1"}).detail
    'serve: v1 → v2'
    >>> [e.kind for e in timeline.events]
    ['swap']
    >>> rolling_accuracy(timeline.served, window=2)[-1]
    0.0
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from driftloop.events import epoch, is_recall
from driftloop.online_snapshots import is_online_version

ONLINE = "online"  # the online model's answers, whatever their snapshot, in `versions`

EventKind = Literal[
    "drift", "trigger", "recall", "fit", "promotion", "challenger", "rollback", "answerer", "swap"
]


@dataclass(frozen=True, slots=True)
class Served:
    """One answered request.

    Parameters:
        t: seconds since the epoch when the answer came.
        index: position of the request in the stream.
        version: the model version that answered.
        correct: whether the answer matched the true label.
    """

    t: float
    index: int
    version: str
    correct: bool


@dataclass(frozen=True, slots=True)
class LoopEvent:
    """One event of the loop, read from its topic.

    Parameters:
        t: its ``event_time`` in seconds since the epoch.
        kind: ``drift``, ``trigger``, ``recall`` (an early recall trigger, or the trainer's
            answer to one), ``fit`` (a training result), ``promotion`` (a model update) or
            ``swap``.
        version: the model version it names (the candidate, the promoted or swapped one).
        detail: one line for tables.
    """

    t: float
    kind: EventKind
    version: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class InjectedDrift:
    """A drift point of the stream, placed on the clock when its first event was sent."""

    index: int
    t: float
    kind: str


@dataclass
class Timeline:
    """Everything recorded in one run; built up as the run goes, or loaded from JSON."""

    started: float
    served: list[Served] = field(default_factory=list)
    events: list[LoopEvent] = field(default_factory=list)
    drifts: list[InjectedDrift] = field(default_factory=list)
    failed: int = 0
    labels_sent: int = 0
    ended: float | None = None
    stream: str = ""
    recall_ids: list[str] = field(default_factory=list)  # triggers that asked for a recall

    def serve(self, t: float, version: str, correct: bool, index: int | None = None) -> None:
        """Record one answered request."""
        position = len(self.served) if index is None else index
        self.served.append(Served(t, position, version, correct))

    def inject(self, index: int, t: float, kind: str) -> None:
        """Record that the stream's drift at ``index`` reached serve at ``t``."""
        self.drifts.append(InjectedDrift(index, t, kind))

    def observe(self, kind: str, event: dict[str, Any]) -> LoopEvent | None:
        """Record a loop event by its schema name; returns it, or None when it is not shown.

        Drift events of severity ``none`` (a window that closed clean) are not shown, nor the
        repeated training results of one fit that answered several triggers.
        """
        if kind == "trigger" and is_recall(event):
            self.recall_ids.append(str(event.get("trigger_id")))
        recorded = _loop_event(kind, event)
        answers_recall = kind == "training_result" and event.get("trigger_id") in self.recall_ids
        if recorded is not None and answers_recall:  # no fit: the recall's answer, its reason
            detail = str(event.get("reason") or event.get("outcome"))[:160]
            recorded = LoopEvent(recorded.t, "recall", recorded.version, detail)
        if recorded is None or self._repeats(recorded):
            return None
        self.events.append(recorded)
        return recorded

    def _repeats(self, event: LoopEvent) -> bool:
        if event.kind == "answerer":
            # The trainer sends one with every snapshot: only a change of answerer is shown.
            last = next((e for e in reversed(self.events) if e.kind == "answerer"), None)
            return last is not None and last.detail.split()[0] == event.detail.split()[0]
        # The trainer sends one training result per trigger a fit answered: a fit that
        # coalesced three triggers arrives three times, with one verdict.
        if event.kind != "fit":
            return False
        last = next((e for e in reversed(self.events) if e.kind == "fit"), None)
        return (
            last is not None
            and (last.version, last.detail) == (event.version, event.detail)
            and abs(last.t - event.t) < 5.0
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        document = json.loads(text)
        return cls(
            started=document["started"],
            served=[Served(**row) for row in document["served"]],
            events=[LoopEvent(**row) for row in document["events"]],
            drifts=[InjectedDrift(**row) for row in document["drifts"]],
            failed=document.get("failed", 0),
            labels_sent=document.get("labels_sent", 0),
            ended=document.get("ended"),
            stream=document.get("stream", ""),
            recall_ids=document.get("recall_ids", []),
        )


def _loop_event(kind: str, event: dict[str, Any]) -> LoopEvent | None:
    t = epoch(event["event_time"])
    if kind == "drift":
        if event.get("severity", "none") == "none":
            return None
        drifted = [f["feature"] for f in event.get("features", []) if f.get("drifted")]
        shown = ", ".join(drifted[:4]) + (" …" if len(drifted) > 4 else "")
        return LoopEvent(
            t, "drift", event.get("model_version"), f"{event['severity']}: {shown or '-'}"
        )
    if kind == "trigger":
        if is_recall(event):
            return LoopEvent(t, "recall", event.get("model_version"), "asked: earlier champions")
        return LoopEvent(t, "trigger", event.get("model_version"), str(event.get("reason")))
    if kind == "training_result":
        metrics = _metrics(event.get("metrics", {}))
        champion = _metrics(event.get("champion_metrics", {}))
        detail = f"{event.get('outcome')}: {metrics}" + (f" vs {champion}" if champion else "")
        return LoopEvent(t, "fit", event.get("model_version"), detail)
    if kind == "model_update":
        previous, version = event.get("previous_version"), event["model_version"]
        if event.get("alias", "champion") != "champion":
            return LoopEvent(t, "challenger", version, f"v{version} in shadow, awaiting evidence")
        moved: EventKind = "rollback" if event.get("reason") == "rollback" else "promotion"
        return LoopEvent(t, moved, version, f"v{previous} → v{version}")
    if kind == "online_model":
        evidence = event.get("evidence") or {}
        shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(evidence.items())[:3])
        return LoopEvent(
            t, "answerer", event["online_version"], f"{event['answerer']} answers ({shown or '-'})"
        )
    if kind == "swap":
        if event.get("outcome") != "swapped":
            return LoopEvent(
                t, "swap", event.get("model_version"), f"failed: {event.get('error', '')}"[:120]
            )
        return LoopEvent(
            t,
            "swap",
            event.get("model_version"),
            f"{event.get('replica', 'serve')}: v{event.get('previous_version')} → "
            f"v{event['model_version']}",
        )
    return None


def _metrics(metrics: dict[str, float]) -> str:
    """The first two holdout metrics (a fit's result also counts the rows it left out)."""
    scores = sorted((k, v) for k, v in metrics.items() if not k.startswith("excluded"))
    return ", ".join(f"{name} {value:.3f}" for name, value in scores[:2])


def rolling_accuracy(served: Sequence[Served], window: int = 200) -> list[float]:
    """The share of correct answers over the last ``window`` answers, at each answer."""
    recent: deque[bool] = deque(maxlen=window)
    hits = 0
    out = []
    for row in served:
        if len(recent) == window:
            hits -= recent[0]
        recent.append(row.correct)
        hits += row.correct
        out.append(hits / len(recent))
    return out


def version_label(version: str) -> str:
    """How a version is shown: ``v3`` for a registry version, ``online`` for any of the
    online model's snapshots."""
    return ONLINE if version == ONLINE or is_online_version(version) else f"v{version}"


def version_spans(served: Sequence[Served]) -> list[tuple[str, float, float]]:
    """``(version, first answer, last answer)`` for each run of answers by one version (the
    online model's snapshots are one version here: ``online``)."""
    spans: list[tuple[str, float, float]] = []
    for row in served:
        version = ONLINE if is_online_version(row.version) else row.version
        if spans and spans[-1][0] == version:
            spans[-1] = (version, spans[-1][1], row.t)
        else:
            spans.append((version, row.t, row.t))
    return spans


def _mean(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(timeline: Timeline, window: int = 500) -> dict[str, Any]:
    """The run's figures: accuracy before the drift, at its worst, after the swap; delays.

    Parameters:
        timeline: the recording.
        window: answers averaged on each side of an event (before the drift, after the swap).

    Returns a dict with ``requests``, ``failed``, ``versions`` (in serving order),
    ``accuracy_before`` (the last ``window`` answers before the first injected drift),
    ``accuracy_worst`` (lowest rolling accuracy after it), ``accuracy_drifted`` (answers by
    the version serving at the drift, after it), ``version_after`` and ``accuracy_after``
    (the version serving at the end, if a newer one, and its first ``window`` answers),
    ``recovered`` (after beats drifted by 0.1), and seconds from the drift to the first drift
    event and trigger after it, and to the promotion and swap of ``version_after`` (None when
    there was none). The online model's answers after the drift are ``online_answers``, their
    ``accuracy_online`` and ``to_online_answers_s`` (from the drift to the first); in
    ``versions`` they show as ``online``, and ``version_after`` is never one of them.
    """
    served = timeline.served
    versions: list[str] = []
    for row in served:
        shown = ONLINE if is_online_version(row.version) else row.version
        if not versions or versions[-1] != shown:
            versions.append(shown)
    figures: dict[str, Any] = {
        "stream": timeline.stream,
        "requests": len(served),
        "failed": timeline.failed,
        "labels_sent": timeline.labels_sent,
        "versions": versions,
        "accuracy": _mean([row.correct for row in served]),
        "drifts_injected": len(timeline.drifts),
        "drift_events": sum(1 for e in timeline.events if e.kind == "drift"),
        "triggers": sum(1 for e in timeline.events if e.kind == "trigger"),
        "recalls": len(timeline.recall_ids),
        "fits": sum(1 for e in timeline.events if e.kind == "fit"),
        "promotions": sum(1 for e in timeline.events if e.kind == "promotion"),
        "rollbacks": sum(1 for e in timeline.events if e.kind == "rollback"),
        "answerer_switches": sum(1 for e in timeline.events if e.kind == "answerer"),
        "swaps": sum(1 for e in timeline.events if e.kind == "swap"),
        "duration_s": (timeline.ended or (served[-1].t if served else timeline.started))
        - timeline.started,
    }
    if not timeline.drifts:
        return figures
    onset = timeline.drifts[0]
    before = [row.correct for row in served if row.index < onset.index][-window:]
    after_onset = [row for row in served if row.index >= onset.index]
    rolling = rolling_accuracy(after_onset, window=min(window, 200))
    figures["accuracy_before"] = _mean(before)
    figures["accuracy_worst"] = min(rolling) if rolling else None

    def first(kind: EventKind, version: str | None = None) -> LoopEvent | None:
        return next(
            (
                e
                for e in timeline.events
                if e.kind == kind and e.t >= onset.t and (version is None or e.version == version)
            ),
            None,
        )

    for kind, name in (("drift", "to_drift_event_s"), ("trigger", "to_trigger_s")):
        event = first(kind)  # type: ignore[arg-type]
        figures[name] = None if event is None else round(event.t - onset.t, 2)
    onset_version = next((row.version for row in after_onset), None)
    drifted = [row.correct for row in after_onset if row.version == onset_version]
    figures["accuracy_drifted"] = _mean(drifted)
    online = [row for row in after_onset if is_online_version(row.version)]
    figures["online_answers"] = len(online)
    figures["accuracy_online"] = _mean([row.correct for row in online])
    figures["to_online_answers_s"] = round(online[0].t - onset.t, 2) if online else None
    # Recovery is judged on the registered version serving at the end, if it is not the
    # drifted one (the online model's answers bridge the gap; the batch refit recovers).
    registered = [row for row in served if not is_online_version(row.version)]
    final = registered[-1].version if registered else None
    recovered_by = final if final is not None and final != onset_version else None
    figures["version_after"] = recovered_by
    after = [row.correct for row in after_onset if row.version == recovered_by]
    figures["accuracy_after"] = _mean(after[:window]) if recovered_by else None
    for kind, name in (("promotion", "to_promotion_s"), ("swap", "to_swap_s")):
        event = first(kind, recovered_by) if recovered_by else None  # type: ignore[arg-type]
        figures[name] = None if event is None else round(event.t - onset.t, 2)
    figures["recovered"] = (
        figures["accuracy_after"] is not None
        and figures["accuracy_drifted"] is not None
        and figures["accuracy_after"] >= figures["accuracy_drifted"] + 0.1
    )
    return figures
