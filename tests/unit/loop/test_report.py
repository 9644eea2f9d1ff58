"""The report is a pure function of a recorded timeline."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

from driftloop.loop.report import render
from driftloop.loop.timeline import Timeline, rolling_accuracy, summarize, version_spans


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def recorded_run() -> Timeline:
    """v1 right 90% before the drift at event 1000, 40% after; v2 right 95% after the swap."""
    timeline = Timeline(started=1000.0, stream="demo")
    for i in range(2000):
        t = 1000.0 + i * 0.05
        if i == 1000:
            timeline.inject(index=i, t=t, kind="abrupt")
        if i < 1000:
            version, correct = "1", i % 10 != 0
        elif i < 1400:
            version, correct = "1", i % 10 < 4
        else:
            version, correct = "2", i % 20 != 0
        timeline.serve(t=t, version=version, correct=correct, index=i)
    timeline.observe(
        "drift",
        {
            "event_time": stamp(1000.0 + 1100 * 0.05),
            "severity": "high",
            "model_version": "1",
            "features": [{"feature": "error_rate", "drifted": True}],
        },
    )
    timeline.observe("drift", {"event_time": stamp(1001.0), "severity": "none", "features": []})
    timeline.observe(
        "trigger",
        {"event_time": stamp(1000.0 + 1110 * 0.05), "reason": "drift", "model_version": "1"},
    )
    timeline.observe(
        "training_result",
        {
            "event_time": stamp(1000.0 + 1300 * 0.05),
            "outcome": "promoted",
            "model_version": "2",
            "metrics": {"accuracy": 0.95},
            "champion_metrics": {"accuracy": 0.41},
        },
    )
    # One fit that answered two triggers: two training results, one verdict.
    timeline.observe(
        "training_result",
        {
            "event_time": stamp(1000.0 + 1300 * 0.05),
            "outcome": "promoted",
            "model_version": "2",
            "metrics": {"accuracy": 0.95},
            "champion_metrics": {"accuracy": 0.41},
        },
    )
    timeline.observe(
        "model_update",
        {"event_time": stamp(1000.0 + 1301 * 0.05), "model_version": "2", "previous_version": "1"},
    )
    timeline.observe(
        "swap",
        {
            "event_time": stamp(1000.0 + 1399 * 0.05),
            "model_version": "2",
            "previous_version": "1",
            "outcome": "swapped",
            "replica": "serve-0",
        },
    )
    timeline.failed = 0
    timeline.labels_sent = 2000
    return timeline


def test_summary_shows_fall_and_recovery_with_delays() -> None:
    figures = summarize(recorded_run())
    assert figures["requests"] == 2000 and figures["failed"] == 0
    assert figures["versions"] == ["1", "2"]
    assert figures["drift_events"] == 1  # the clean window is not an event
    assert figures["triggers"] == figures["fits"] == figures["promotions"] == figures["swaps"] == 1
    assert abs(figures["accuracy_before"] - 0.9) < 1e-9
    assert figures["accuracy_worst"] <= 0.45
    assert abs(figures["accuracy_after"] - 0.95) < 1e-9
    assert abs(figures["accuracy_drifted"] - 0.4) < 1e-9
    assert abs(figures["to_promotion_s"] - 301 * 0.05) < 1e-6
    assert figures["version_after"] == "2"
    assert figures["recovered"] is True
    assert abs(figures["to_trigger_s"] - 110 * 0.05) < 1e-6
    assert abs(figures["to_swap_s"] - 399 * 0.05) < 1e-6


def test_no_recovery_without_a_swap() -> None:
    timeline = Timeline(started=0.0)
    timeline.inject(index=0, t=0.0, kind="abrupt")
    for i in range(100):
        timeline.serve(t=float(i), version="1", correct=False, index=i)
    figures = summarize(timeline)
    assert figures["recovered"] is False and figures["accuracy_after"] is None
    assert figures["to_trigger_s"] is None


def test_rolling_accuracy_and_version_spans() -> None:
    timeline = recorded_run()
    rolling = rolling_accuracy(timeline.served, window=100)
    assert abs(rolling[999] - 0.9) < 1e-9 and abs(rolling[1399] - 0.4) < 1e-9
    spans = version_spans(timeline.served)
    assert [s[0] for s in spans] == ["1", "2"]
    assert spans[1][1] == 1000.0 + 1400 * 0.05


def test_report_embeds_the_plot_and_the_table_and_survives_json() -> None:
    timeline = Timeline.from_json(recorded_run().to_json())
    page = render(timeline)
    image = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert image is not None
    assert base64.b64decode(image.group(1)).startswith(b"\x89PNG")
    assert "recovered after the drift with no human step" in page
    assert "v1 → v2" in page
    assert page.count("<tr>") >= 6 + 10


def test_a_recall_and_its_answer_are_shown_apart_from_triggers_and_fits() -> None:
    timeline = recorded_run()
    recall = {
        "event_time": stamp(1000.0 + 1020 * 0.05),
        "trigger_id": "r-1",
        "reason": "drift",
        "model_version": "1",
        "evidence": {"action": "recall", "onset": stamp(1000.0)},
    }
    timeline.observe("trigger", recall)
    timeline.observe(
        "training_result",
        {
            "event_time": stamp(1000.0 + 1021 * 0.05),
            "trigger_id": "r-1",
            "outcome": "skipped",
            "reason": "skipped: no earlier champion knows the concept (scored: none)",
            "model_version": None,
            "metrics": {},
        },
    )
    assert timeline.events[-1].detail.startswith("skipped: no earlier champion knows")
    kinds = [e.kind for e in timeline.events]
    assert kinds.count("recall") == 2 and kinds.count("trigger") == 1 and kinds.count("fit") == 1
    figures = summarize(timeline)
    assert figures["recalls"] == 1 and figures["triggers"] == 1 and figures["fits"] == 1
    # the drift's trigger is still the one that asked for the fit, not the earlier recall
    assert figures["to_trigger_s"] == round(110 * 0.05, 2)
    again = Timeline.from_json(timeline.to_json())
    assert again.recall_ids == ["r-1"] and summarize(again) == figures


def test_a_fit_line_shows_its_scores_not_the_rows_it_left_out() -> None:
    timeline = Timeline(started=0.0)
    event = timeline.observe(
        "training_result",
        {
            "event_time": "1970-01-01T00:00:05Z",
            "outcome": "rejected",
            "model_version": "3",
            "metrics": {"accuracy": 0.9, "excluded_rows": 4.0, "excluded.null_label": 4.0,
                        "log_loss": 0.2},
            "champion_metrics": {"accuracy": 0.93},
        },
    )  # fmt: skip
    assert event is not None
    assert event.detail == "rejected: accuracy 0.900, log_loss 0.200 vs accuracy 0.930"


def test_the_online_models_answers_bridge_the_gap_and_are_counted_apart() -> None:
    """After the drift the online model answers (snapshots online.1, online.2), then the
    batch refit, v2: the figures say when the first adapted answer came, and recovery is
    judged on v2, never on the online model."""
    timeline = Timeline(started=0.0)
    timeline.inject(index=100, t=10.0, kind="abrupt")
    for i in range(400):
        if i < 130:
            version, correct = "1", i < 100 or i % 2 == 0
        elif i < 250:
            version, correct = f"online.{1 + i // 200}", i % 10 != 0
        else:
            version, correct = "2", i % 20 != 0
        timeline.serve(t=i * 0.1, version=version, correct=correct, index=i)
    figures = summarize(timeline)
    assert figures["versions"] == ["1", "online", "2"]
    assert figures["online_answers"] == 120
    assert abs(figures["to_online_answers_s"] - 3.0) < 1e-9
    assert abs(figures["accuracy_online"] - 0.9) < 1e-9
    assert figures["version_after"] == "2" and figures["recovered"] is True
    # A run that ends while the online model still answers was not recovered by a refit.
    cut = Timeline(started=0.0, served=timeline.served[:200], drifts=timeline.drifts)
    assert summarize(cut)["version_after"] is None


def test_the_report_shows_the_online_model_and_every_kind_of_model_move() -> None:
    timeline = recorded_run()
    for number, t in enumerate((1060.0, 1061.0, 1062.0)):
        timeline.serve(t=t, version=f"online.{number}", correct=True, index=2000 + number)
    moves = [
        ("online_model", {"online_version": "online.1", "answerer": "online",
                          "evidence": {"p_value": 1e-5}}),
        ("online_model", {"online_version": "online.2", "answerer": "online", "evidence": {}}),
        ("model_update", {"model_version": "3", "previous_version": "2",
                          "alias": "challenger"}),
        ("model_update", {"model_version": "1", "previous_version": "2",
                          "reason": "rollback"}),
    ]  # fmt: skip
    for offset, (kind, event) in enumerate(moves):
        timeline.observe(kind, event | {"event_time": stamp(1063.0 + offset)})
    kinds = [event.kind for event in timeline.events]
    assert kinds.count("answerer") == 1  # the second snapshot is no switch
    assert {"challenger", "rollback"} <= set(kinds)
    page = render(timeline)
    assert "online" in page and "rollback" in page and "vonline" not in page
    assert summarize(timeline)["rollbacks"] == 1
