"""The closed loop end to end: four services as processes, a drift, a recovery, no human step.

The same run as ``make demo``, smaller: ingest, monitor, trainer and serve start as
``driftloop run <service>`` against the session's broker and MLflow, with topics, groups, a
model name and a store of this test's own. An app with no model sends labelled examples, a
manual trigger brings the first model, then the app sends requests to serve over HTTP and the
labels a second later (half through Kafka, half through ingest's HTTP endpoint) while the
stream's concept switches. After the drift the trainer's online model answers first (the
fast path), then the batch refit takes over. Last, an operator promotes the first model again,
which is worse on the new concept: the loop rolls it back by itself.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from driftloop.demo import DEMO_SERVICES
from driftloop.events import EventType, epoch
from driftloop.loop import streams
from driftloop.loop.run import ClosedLoop, Plan, stored_request_ids
from driftloop.loop.timeline import Timeline, summarize
from driftloop.messaging import EventProducer
from driftloop.online_snapshots import is_online_version
from driftloop.registry import ModelRegistry
from driftloop.services.trainer.promotion import model_update_event
from driftloop.settings import Settings
from driftloop.store import ExampleStore

MARGIN = 0.15  # accuracy after the swap beats the drifted model's by at least this much

PLAN = Plan(
    bootstrap=800,
    before=1_200,
    after=12_000,
    after_swap=500,
    rate=150.0,
    concurrency=8,
    label_delay_s=0.5,
    budget_s=240.0,
    seed=11,
    # contract_sample: the contract is inferred from the 800 bootstrap examples at once. No
    # early recall: the worse version promoted at the end would be replaced by recalling the
    # better one, and the rollback is what this run checks.
    services=DEMO_SERVICES
    | {
        "ingest_flush_s": 0.5,
        "trainer_max_fit_s": 15.0,
        "contract_sample": 800,
        "monitor_recall_examples": 0,
    },
)


def test_the_loop_recovers_from_a_drift_with_no_human_step(
    settings: Settings, tmp_path: Path
) -> None:
    lines: list[str] = []
    loop = ClosedLoop(settings, PLAN, say=lines.append, run_dir=tmp_path / "run")
    try:
        loop.start()
        first = loop.bootstrap()
        timeline = loop.replay()
        stored = loop.settle(timeout=60)
        ids = stored_request_ids(ExampleStore(str(loop.settings.store_uri)))
        sent = list(loop.app.label_ids)
        rollback = worse_promotion_is_rolled_back(loop, first)
    finally:
        loop.stop()
    log = "\n".join(lines)
    figures = summarize(timeline)

    # No request failed, and the served version changed after the injected drift.
    assert timeline.failed == 0, f"{timeline.failed} requests failed: {list(loop.app.errors)}"
    drift_at = timeline.drifts[0].index
    at_drift = next(row.version for row in timeline.served if row.index >= drift_at)
    assert at_drift == first, f"v{at_drift} served at the drift, not v{first}:\n{log}"
    registered = [row for row in timeline.served if not is_online_version(row.version)]
    last = registered[-1].version
    assert last != at_drift and int(last) > int(at_drift), f"no new version served:\n{log}"
    assert figures["triggers"] >= 2 and figures["swaps"] >= 2, log  # the first model's, then

    # Two speeds: the online model answered after the drift, before the batch refit served,
    # and better than the drifted champion; every answer named the model that gave it.
    online = [row for row in timeline.served if is_online_version(row.version)]
    refit_serving = next(row for row in timeline.served if row.version == last)
    assert online, f"the online model never answered:\n{log}"
    assert drift_at <= online[0].index < refit_serving.index, log
    assert figures["answerer_switches"] >= 1, log

    # The version serving at the end is better on the new concept than the one it replaced.
    drifted = [row.correct for row in timeline.served if row.index >= drift_at + 100
               and row.version == at_drift]  # fmt: skip
    recovered = [row.correct for row in timeline.served if row.version == last]
    assert len(drifted) >= 100, f"too few answers between the drift and the swap:\n{log}"
    before_swap = sum(drifted) / len(drifted)
    after_swap = sum(recovered) / len(recovered)
    assert after_swap >= before_swap + MARGIN, (before_swap, after_swap, log)
    online_accuracy = sum(row.correct for row in online) / len(online)
    assert online_accuracy >= before_swap + MARGIN, (before_swap, online_accuracy, log)

    # Every label sent became exactly one stored example.
    assert len(sent) == len(set(sent)) == timeline.labels_sent + PLAN.bootstrap
    assert stored == len(ids)
    assert sorted(ids) == sorted(sent)
    assert loop.app.labels_by_kafka > 0 and loop.app.labels_by_http > 0

    # The worse model promoted by hand was rolled back, and no request failed meanwhile; after
    # the rollback it answered no more.
    assert rollback.failed == 0, f"{rollback.failed} requests failed: {list(loop.app.errors)}"
    assert all(row.version != first for row in rollback.served[-100:]), log


def worse_promotion_is_rolled_back(loop: ClosedLoop, worse: str) -> Timeline:
    """Promote ``worse`` by hand over the champion (the first model, which does not know the
    new concept, over a refit that does), keep the app sending the new concept, and return
    that phase's timeline once the loop has rolled back and served 300 more answers.

    The trainer pairs the promoted version's answers with the previous champion's, which every
    serve replica keeps scoring in shadow; evidently worse, it is rolled back with no human
    step and no failed request.
    """
    settings, watcher = loop.settings, loop.watcher
    assert watcher is not None
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    name = settings.model_name
    better = registry.champion(name)
    assert better is not None and better != worse
    previous = registry.promote(name, worse)
    update = model_update_event(
        name, worse, registry.run_id(name, worse), previous=previous, metrics={}
    )
    with EventProducer(settings, service="test-operator") as producer:
        producer.send(EventType.MODEL_UPDATE, update).get(timeout=10)
    phase = Timeline(started=time.time())
    loop.app.timeline = phase
    deadline = time.monotonic() + 120
    # The new concept afresh (the demo stream's second function), enough for the deadline:
    # what is left of the run's own stream may run out before a slow swap is done.
    new_concept = streams.abrupt(
        n_events=int(120 * PLAN.rate), drift_at=(), functions=(2,), seed=PLAN.seed + 1
    )

    def rolled_back() -> list[dict]:
        return [e for e in watcher.promoted() if e.get("reason") == "rollback"]

    def stop() -> bool:
        if time.monotonic() > deadline:
            return True
        done = rolled_back()
        if not done:
            return False
        after = epoch(done[0]["event_time"]) + 2.0  # serve swapped back by then
        return sum(row.t > after for row in phase.served) >= 300

    asyncio.run(loop.app.replay(new_concept, stop=stop))
    events = rolled_back()
    assert len(events) == 1, f"rollbacks: {events}"
    assert events[0]["model_version"] == better and events[0]["previous_version"] == worse
    assert events[0]["evidence"]["previous_wins"] > events[0]["evidence"]["new_wins"]
    assert registry.champion(name) == better
    return phase
