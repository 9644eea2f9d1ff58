"""The producing app's pure parts: reading serve's answers, comparing labels."""

from __future__ import annotations

import httpx
import pytest

from driftloop.loop.simulator import parse_answers, same_label


def test_reads_the_records_endpoint_answer() -> None:
    answer = {
        "model_name": "m",
        "model_version": "3",
        "request_id": "r-1",
        "predictions": [{"request_id": "r-1", "prediction": 1, "scores": {"0": 0.1, "1": 0.9}}],
    }
    (one,) = parse_answers(answer)
    assert (one.request_id, one.prediction, one.version) == ("r-1", 1, "3")


def test_reads_a_batch_and_ids_from_the_header() -> None:
    answers = parse_answers(
        {"model_version": "2", "predictions": [{"prediction": 0}, {"prediction": 1}]},
        httpx.Headers({"x-request-id": "h-9"}),
    )
    assert [(a.request_id, a.prediction, a.version) for a in answers] == [
        ("h-9", 0, "2"),
        ("h-9", 1, "2"),
    ]


def test_an_answer_without_a_version_is_refused() -> None:
    with pytest.raises(ValueError, match="model_version"):
        parse_answers({"request_id": "r", "prediction": 1})


@pytest.mark.parametrize(
    ("prediction", "label", "same"),
    [
        (1, 1, True),
        (1.0, 1, True),
        ("1", 1, True),
        ("yes", "yes", True),
        (0, 1, False),
        ("a", "b", False),
        (None, 0, False),
    ],
)
def test_same_label(prediction: object, label: object, same: bool) -> None:
    assert same_label(prediction, label) is same
