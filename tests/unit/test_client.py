"""The producing app's client: what it builds and reads, and what it needs installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from driftloop.client import Answer, Prediction, label_event, parse_answer
from driftloop.events import EventType
from driftloop.schemas import EventSchemas


def test_the_client_imports_without_tensorflow_mlflow_river_or_kafka() -> None:
    blocked = ("tensorflow", "keras", "mlflow", "river", "kafka", "aiokafka", "numpy", "pandas")
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # importing it now fails\n"
        "from driftloop.client import Client, label_event\n"
        "print(label_event('r-1', 1)['request_id'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "r-1"


def test_a_label_event_is_one_the_labels_topic_accepts() -> None:
    event = label_event("order-1", "approved", source="loans-app")
    EventSchemas().validate(EventType.LABEL, event)
    assert (event["request_id"], event["label"], event["source"]) == (
        "order-1", "approved", "loans-app"
    )  # fmt: skip
    assert "source" not in label_event("order-2", 0)


def test_an_answer_names_who_answered_and_each_records_request_id() -> None:
    answer = parse_answer(
        {"model_name": "m", "model_version": "online.17", "request_id": "r",
         "predictions": [{"request_id": "r-0", "prediction": 1, "scores": {"0": 0.2, "1": 0.8}},
                         {"request_id": "r-1", "prediction": 0}]}
    )  # fmt: skip
    assert answer == Answer(
        "m", "online.17", "r",
        [Prediction("r-0", 1, {"0": 0.2, "1": 0.8}), Prediction("r-1", 0, None)],
    )  # fmt: skip
    assert answer.online
    with pytest.raises(ValueError, match="not an answer"):
        parse_answer({"error": "no model has been promoted yet"})
