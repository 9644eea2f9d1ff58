"""`make demo`: the closed loop, end to end, in under five minutes, with a report at the end.

The local stack comes up (or the running one is used), then ingest, monitor, trainer and
serve as processes with topics, groups, a model name and a store of this run's own. An app
with no model yet sends labelled examples; a ``manual`` trigger makes the trainer fit and
promote the first version, which serve loads. Then the producing app
(:class:`~driftloop.loop.simulator.ProducingApp`) sends inference requests to serve over HTTP
and each true label a second later (half through Kafka, half through ingest's HTTP endpoint),
on an Agrawal stream whose concept switches abruptly after 2,500 requests. The terminal
shows the loop as it happens: rolling accuracy and serving version every few seconds, and
each drift event, trigger, fit, promotion and swap as it is read from its topic. Nobody steps
in: the monitor sees the accuracy fall, triggers; the trainer fits on the new concept and
promotes; serve swaps; accuracy recovers. Everything the demo started is stopped at the end,
and ``out/report.html`` shows the timeline (``out/report.json`` keeps the recording).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driftloop.loop.report import write as write_report
from driftloop.loop.run import ClosedLoop, Plan
from driftloop.loop.timeline import summarize, version_label
from driftloop.stack import LocalStack, LocalStackSettings

Say = Callable[[str], None]
REPORT = Path("out/report.html")

# The services' settings for a run that compresses hours of traffic into a minute or two.
DEMO_SERVICES: dict[str, Any] = {
    "ingest_flush_s": 1.0,  # store writes every second, so the trainer sees fresh examples
    "monitor_reports": False,  # no Evidently report per window: CPU for the fits instead
    # The cooldown is event time: 600 s of production traffic is a few seconds here.
    "monitor_cooldown_s": 10.0,
    # A refit per 2,000 new labelled examples as well: a drift trigger that comes before much
    # of the new concept is stored gets a candidate the gate rightly rejects, and the drift
    # episode then stays open with no second trigger.
    "monitor_data_arrival_examples": 2_000,
    # The demo's data-arrival triggers name no drift onset, so `since_drift` would fall back to
    # the last 20,000 examples (nearly all of the old concept here): a short recent window.
    "trainer_window_policy": "last_n",
    "trainer_window_size": 1_000,
    "trainer_bootstrap_poll_s": 2.0,
    "trainer_max_fit_s": 30.0,  # the best weights so far are kept
}


def run(
    settings: LocalStackSettings,
    say: Say = print,
    plan: Plan | None = None,
    report: Path = REPORT,
) -> dict[str, Any]:
    """Run the demo; returns the summary (:func:`~driftloop.loop.timeline.summarize`)."""
    plan = plan or Plan(budget_s=170.0, services=dict(DEMO_SERVICES))
    stack = LocalStack(settings)
    started = time.monotonic()
    outcome = stack.up()
    say(
        f"stack up in {time.monotonic() - started:.1f} s: Kafka {outcome['kafka']} at "
        f"{stack.kafka.address}, MLflow {outcome['mlflow']} at {stack.mlflow.url}"
    )
    loop: ClosedLoop | None = None
    try:
        loop = ClosedLoop(settings, plan, say)
        say(f"run {loop.tag}: logs in {loop.run_dir}")
        try:
            loop.run()
        finally:
            path = write_report(loop.timeline, report)
            say(f"report: {path.resolve()}")
        figures = summarize(loop.timeline)
        for line in describe(figures):
            say(line)
        return figures
    finally:
        # Leave running what the demo did not start.
        if outcome["mlflow"] == "started":
            stack.mlflow.down()
        if outcome["kafka"] == "started":
            stack.kafka.down()
        say("stack down" if outcome["kafka"] == "started" else "stack left running")


def describe(figures: dict[str, Any]) -> list[str]:
    """The summary as a few lines for the terminal."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s" if value < 10 else f"{value:.0f} s"

    lines = [
        f"{figures['requests']} requests answered, {figures['failed']} failed, "
        f"{figures['labels_sent']} labels sent; versions served: "
        + " → ".join(map(version_label, figures["versions"])),
    ]
    if "accuracy_before" in figures:
        lines.append(
            f"accuracy before the drift {pct(figures['accuracy_before'])}, after it "
            f"{pct(figures['accuracy_drifted'])}, with v{figures['version_after'] or '-'} "
            f"{pct(figures['accuracy_after'])}"
        )
        if figures.get("online_answers"):
            lines.append(
                f"the online model answered {figures['online_answers']} requests after the "
                f"drift, from {secs(figures['to_online_answers_s'])} on, at "
                f"{pct(figures['accuracy_online'])}"
            )
        lines.append(
            f"from the drift: drift event {secs(figures['to_drift_event_s'])}, trigger "
            f"{secs(figures['to_trigger_s'])}, v{figures['version_after'] or '-'} promoted "
            f"{secs(figures['to_promotion_s'])}, serving {secs(figures['to_swap_s'])}"
        )
        if figures.get("recalls"):
            lines.append(
                f"{figures['recalls']} early recall(s): earlier champions tried on the new "
                "concept before any fit (see the report's events)"
            )
        lines.append(
            "recovered with no human step"
            if figures["recovered"]
            else "no recovery in this run (see the report's events)"
        )
    return lines
