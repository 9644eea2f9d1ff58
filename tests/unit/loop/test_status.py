"""`driftloop status` lines from a gathered status."""

from __future__ import annotations

from driftloop.loop.status import describe


def test_status_lines_name_the_champion_the_last_events_and_the_lag() -> None:
    status = {
        "stack": {
            "kafka": {"address": "127.0.0.1:9092", "answering": True},
            "mlflow": {"url": "http://127.0.0.1:5000", "answering": True},
        },
        "services": {
            "serve": {"pid": 42, "url": "http://127.0.0.1:8080", "ready": True},
            "trainer": {"pid": None, "url": "http://127.0.0.1:8084", "ready": False},
        },
        "champion": {"model_name": "m", "version": "3", "metrics": {"accuracy": 0.91}},
        "last": {
            "drift": None,
            "trigger": {
                "event_time": "2026-01-01T00:00:00Z",
                "reason": "drift",
                "trigger_id": "t-1",
            },
            "fit": {
                "event_time": "2026-01-01T00:00:09Z",
                "outcome": "promoted",
                "reason": "promoted: macro_f1 0.9 vs 0.5",
            },
        },
        "consumer_lag": {"ingest": 0, "monitor": 12, "trainer": None},
    }
    lines = describe(status)
    assert "kafka: up (127.0.0.1:9092)" in lines
    assert "serve: ready (http://127.0.0.1:8080, pid 42)" in lines
    assert "trainer: down (http://127.0.0.1:8084, pid -)" in lines
    assert "champion: m v3 (accuracy 0.910)" in lines
    assert "last drift: none" in lines
    assert "last trigger: 2026-01-01T00:00:00Z  drift (t-1)" in lines
    assert any(line.startswith("last fit: 2026-01-01T00:00:09Z  promoted") for line in lines)
    assert "consumer lag monitor: 12" in lines and "consumer lag trainer: -" in lines


def test_no_champion_yet() -> None:
    status = {"stack": {}, "services": {}, "champion": None}
    assert describe(status) == ["champion: none yet"]


def test_a_recall_trigger_says_so() -> None:
    recall = {
        "event_time": "2026-01-01T00:00:00Z",
        "reason": "drift",
        "trigger_id": "t-2",
        "evidence": {"action": "recall"},
    }
    status = {"stack": {}, "services": {}, "last": {"trigger": recall}}
    assert describe(status) == ["last trigger: 2026-01-01T00:00:00Z  drift, recall (t-2)"]
