"""One run of the closed loop: services up, first model, a drifting stream, recovery, report.

:class:`ClosedLoop` is what ``make demo`` and the end-to-end test share. It gives the run its
own topics, groups, model name and store (:func:`~driftloop.loop.services.isolated_environment`),
starts ingest, monitor, trainer and serve as processes, bootstraps the first model (labelled
examples from an app with no model yet, then a ``manual`` trigger), replays a
:class:`~driftloop.loop.streams.DriftingStream` through serve with a
:class:`~driftloop.loop.simulator.ProducingApp`, and records the loop's own events (drift,
triggers, training results, model updates, swaps) read from their topics into the
:class:`~driftloop.loop.timeline.Timeline`. It stops once a version newer than the one serving
at the drift has answered ``after_swap`` requests, or when its time is up.

Example:
    >>> loop = ClosedLoop(settings, Plan(), say=print)  # doctest: +SKIP
    >>> timeline = loop.run()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftloop.events import EventType, new_event
from driftloop.loop import streams
from driftloop.loop.services import ServiceSupervisor, isolated_environment, wait_for
from driftloop.loop.simulator import ProducingApp
from driftloop.loop.timeline import Timeline, rolling_accuracy, version_label
from driftloop.messaging import EventConsumer, EventProducer, ensure_topics
from driftloop.online_snapshots import is_online_version
from driftloop.settings import Settings
from driftloop.store import ExampleStore

Say = Callable[[str], None]
LOOP_EVENTS = (
    EventType.DRIFT,
    EventType.TRIGGER,
    EventType.TRAINING_RESULT,
    EventType.MODEL_UPDATE,
    EventType.SWAP,
    EventType.ONLINE_MODEL,
)


@dataclass
class Plan:
    """How big and how fast a run is.

    Parameters:
        bootstrap: labelled examples sent before any model exists (the first model's data).
        before: requests on the first concept, after the first model serves.
        after: most requests after the drift (the run usually stops earlier).
        after_swap: answers by a new version, close to the accuracy before the drift, that
            end the run.
        recovery_gap: how close (accuracy) those answers must come to the accuracy before.
        rate: requests a second (the app's pace; serve could take more).
        concurrency: requests in flight at once.
        label_delay_s: seconds between an answer and its label.
        budget_s: seconds the whole run may take before it stops anyway.
        seed: the stream's seed.
        services: settings for the services (windows, budgets), on top of the isolation.
    """

    bootstrap: int = 1_500
    before: int = 2_500
    after: int = 30_000
    after_swap: int = 1_500
    recovery_gap: float = 0.1
    rate: float = 80.0
    concurrency: int = 8
    label_delay_s: float = 1.0
    budget_s: float = 240.0
    seed: int = 7
    services: dict[str, Any] = field(default_factory=dict)


class LoopWatcher:
    """Reads the loop's event topics in a thread and records them on the timeline."""

    def __init__(self, settings: Settings, timeline: Timeline, say: Say) -> None:
        self.settings = settings
        self.timeline = timeline
        self.say = say
        self.raw: list[tuple[str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-watcher", daemon=True)
        self._consumer = EventConsumer(settings, None, LOOP_EVENTS, service="demo-watcher")
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for received in self._consumer.poll(300):
                    kind = received.event_type.schema_name
                    self.raw.append((kind, received.event))
                    shown = self.timeline.observe(kind, received.event)
                    if shown is not None:
                        elapsed = shown.t - self.timeline.started
                        version = f" {version_label(shown.version)}" if shown.version else ""
                        self.say(f"{elapsed:6.1f}s {shown.kind:<9}{version}  {shown.detail}")
        except BaseException as error:  # surfaced by the run, not lost in the thread
            self.error = error

    def count(self, kind: str, since: float = 0.0) -> int:
        return sum(1 for e in self.timeline.events if e.kind == kind and e.t >= since)

    def promoted(self) -> list[dict[str, Any]]:
        """The champion alias's moves (promotions and rollbacks; a challenger's are not)."""
        return [
            event
            for kind, event in self.raw
            if kind == "model_update" and event.get("alias", "champion") == "champion"
        ]

    def answered(self, trigger_id: str) -> bool:
        """Whether the trainer has published its verdict on ``trigger_id``."""
        return any(
            kind == "training_result" and event["trigger_id"] == trigger_id
            for kind, event in list(self.raw)
        )


class ClosedLoop:
    """Runs the loop once on the stack ``settings`` points at (which must be up).

    Parameters:
        settings: Kafka, MLflow and the state folder.
        plan: sizes and pace.
        say: where progress lines go.
        run_dir: folder for this run's store, service logs and pid files.
    """

    def __init__(
        self,
        settings: Settings,
        plan: Plan | None = None,
        say: Say = print,
        run_dir: Path | None = None,
    ) -> None:
        self.plan = plan or Plan()
        self.tag = f"loop-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        self.run_dir = run_dir or settings.state_dir / "runs" / self.tag
        self.run_dir.mkdir(parents=True, exist_ok=True)
        progress = self.run_dir / "loop.log"

        def say_and_keep(line: str) -> None:
            say(line)
            with progress.open("a") as kept:
                kept.write(line + "\n")

        self.say = say_and_keep
        fields = isolated_environment(settings, self.tag, self.run_dir / "store")
        fields |= self.plan.services
        self.settings = Settings.model_validate(
            settings.model_dump() | {k: v for k, v in fields.items() if k in Settings.model_fields}
        )
        self.fields = fields
        self.supervisor = ServiceSupervisor(self.settings, fields, self.run_dir / "services")
        self.timeline = Timeline(started=time.time())
        self.app = ProducingApp(
            self.supervisor.url("serve"),
            self.supervisor.url("ingest"),
            self.settings,
            self.timeline,
            concurrency=self.plan.concurrency,
            label_delay_s=self.plan.label_delay_s,
            rate=self.plan.rate,
            model_name=self.settings.model_name,
        )
        self.watcher: LoopWatcher | None = None
        self.stream = streams.demo(self.plan.before, self.plan.after, seed=self.plan.seed)

    # --- the run ---------------------------------------------------------------------------

    def start(self) -> None:
        """Topics, then the services; returns when ingest, monitor and trainer are ready."""
        ensure_topics(self.settings)
        started = time.monotonic()
        self.supervisor.start_all()
        for service in ("ingest", "monitor", "trainer"):
            self.supervisor.wait(service, timeout=180)
        self.supervisor.wait("serve", timeout=180, ready=False)
        self.say(
            f"services up in {time.monotonic() - started:.0f} s: "
            + ", ".join(f"{s} {self.supervisor.url(s)}" for s in self.supervisor.services)
        )
        self.watcher = LoopWatcher(self.settings, self.timeline, self.say)
        self.watcher.start()

    def bootstrap(self) -> str:
        """Labelled examples from an app with no model, a manual trigger, the first model."""
        plan = self.plan
        first_concept = streams.abrupt(
            n_events=plan.bootstrap, drift_at=(), functions=(0,), seed=plan.seed + 1000
        )
        ids = asyncio.run(self.app.bootstrap(first_concept))
        self.say(f"bootstrap: {len(ids)} labelled examples sent with no model serving")
        store = ExampleStore(str(self.fields.get("store_uri", self.settings.store_uri)))
        wait_for(lambda: stored_rows(store) >= len(ids), 90, "the bootstrap examples' storing")
        trigger_id = f"manual-{uuid.uuid4().hex[:8]}"
        with EventProducer(self.settings, service="demo") as producer:
            producer.send(
                EventType.TRIGGER,
                new_event(
                    trigger_id=trigger_id,
                    model_name=self.settings.model_name,
                    model_version=None,
                    reason="manual",
                    evidence={"by": "demo", "examples": len(ids)},
                ),
            ).get(timeout=10)
        self.say(f"stored; sent a manual trigger ({trigger_id}) for the first model")
        assert self.watcher is not None
        watcher = self.watcher
        # The trainer may have trained a first model by itself from part of the examples (its
        # bootstrap poll) before the trigger came; the trigger's fit then makes a second one,
        # promoted if it is better. The replay starts once that verdict is in, from the latest.
        self._wait_alive(
            lambda: bool(watcher.promoted()) and watcher.answered(trigger_id),
            180,
            "the first promotion",
        )
        self._wait_alive(lambda: self.supervisor.ready("serve"), 120, "serve's readiness")
        version = str(watcher.promoted()[-1]["model_version"])
        self.say(f"v{version} promoted and serving; replaying the stream")
        return version

    def replay(self) -> Timeline:
        """The drifting stream through serve, until a new version has recovered the accuracy.

        Recovered: the last ``after_swap`` answers all came after the drift from a version
        newer than the one serving at it, and their accuracy is within ``recovery_gap`` of the
        accuracy before the drift. Otherwise the stream runs until ``budget_s``.
        """
        plan = self.plan
        deadline = time.monotonic() + plan.budget_s
        drift_at = self.stream.drifts[0].position
        last_line = [time.monotonic()]
        baseline: list[float] = []  # accuracy before the drift, once the drift is reached

        def stop() -> bool:
            now = time.monotonic()
            served = self.timeline.served
            if now - last_line[0] >= 5 and served:
                last_line[0] = now
                self._progress()
            if now > deadline:
                self.say("time is up: stopping the stream")
                return True
            if self.watcher is not None and self.watcher.error is not None:
                raise RuntimeError("the loop watcher failed") from self.watcher.error
            onset = next((r.version for r in served if r.index >= drift_at), None)
            if onset is None:
                return False
            if not baseline:
                before = [r.correct for r in served if r.index < drift_at][-500:]
                baseline.append(sum(before) / max(len(before), 1))
            recent = served[-plan.after_swap :]
            # Recovered by a batch refit: the online model's answers only bridge the gap.
            if len(recent) < plan.after_swap or any(
                r.index < drift_at or r.version == onset or is_online_version(r.version)
                for r in recent
            ):
                return False
            accuracy = sum(r.correct for r in recent) / len(recent)
            if accuracy >= baseline[0] - plan.recovery_gap:
                self.say(
                    f"recovered: {version_label(recent[-1].version)} at {accuracy:.2f} over its "
                    f"last {len(recent)} answers (before the drift {baseline[0]:.2f})"
                )
                return True
            return False

        asyncio.run(self.app.replay(self.stream, stop=stop))
        self._progress()
        return self.timeline

    def settle(self, timeout: float = 60.0) -> int:
        """Wait until ingest has stored an example for every label sent; returns the count."""
        store = ExampleStore(str(self.fields.get("store_uri", self.settings.store_uri)))
        wanted = len(set(self.app.label_ids))
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: stored_rows(store) >= wanted, timeout, "storing every example")
        return stored_rows(store)

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.supervisor.stop_all()

    def run(self) -> Timeline:
        """start, bootstrap, replay, settle, stop; the services are stopped whatever happens."""
        try:
            self.start()
            self.bootstrap()
            self.replay()
            self.settle()
        finally:
            self.stop()
        return self.timeline

    # --- helpers ---------------------------------------------------------------------------

    def _wait_alive(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            self.supervisor.check_running()
            return predicate()

        wait_for(check, timeout, what)

    def _progress(self) -> None:
        served = self.timeline.served
        if not served:
            return
        accuracy = rolling_accuracy(served[-200:], 200)[-1]
        watcher = self.watcher
        counts = (
            ""
            if watcher is None
            else "  ".join(
                f"{kind}s {watcher.count(kind, self.timeline.started)}"
                for kind in ("drift", "trigger", "fit", "swap")
            )
        )
        elapsed = time.time() - self.timeline.started
        self.say(
            f"{elapsed:6.1f}s sent {len(served) + self.timeline.failed:>5}  "
            f"accuracy(200) {accuracy:.2f}  serving {version_label(served[-1].version)}  {counts}"
            + (f"  failed {self.timeline.failed}" if self.timeline.failed else "")
        )


def stored_rows(store: ExampleStore) -> int:
    """Rows the store's manifests account for."""
    return sum(manifest.rows for manifest in store.manifests())


def stored_request_ids(store: ExampleStore) -> list[str]:
    manifests = store.manifests()
    if not manifests:
        return []
    return list(store.read(manifests).column("request_id").to_pylist())
