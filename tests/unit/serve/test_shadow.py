"""Who answers and who is scored in shadow: the data plane, the shadow scorer and their events,
with fake versions (no MLflow, no TensorFlow)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY

from driftloop.errors import ModelNotFound
from driftloop.events import EventType
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.schemas import EventSchemas
from driftloop.services.serve.batching import MicroBatcher
from driftloop.services.serve.dataplane import DataPlane
from driftloop.services.serve.online import OnlineAnswers, OnlineModel
from driftloop.services.serve.protocol import PredictionRow, prediction_event
from driftloop.services.serve.repository import LoadedVersion, ModelRepository
from driftloop.services.serve.shadow import ShadowScorer

CARD = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="age"),
        FeatureSpec(name="region", kind="categorical", categories=["north", "south"]),
    ],
    classes=["no", "yes"],
)
RECORD = {"age": 31.0, "region": "north"}
SCHEMAS = EventSchemas()


def load(version: str, check: Callable[[ModelCard], None]) -> LoadedVersion:
    """Odd versions say "no", even ones "yes"."""
    check(CARD)
    scores = np.array([1.0, 0.0] if int(version) % 2 else [0.0, 1.0], dtype=np.float32)
    return LoadedVersion(CARD, lambda x: np.tile(scores, (len(x["age"]), 1)), "call", {})


class Says:
    """A river classifier that has learned one answer."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer

    def predict_proba_one(self, x: dict[str, Any]) -> dict[str, float]:
        return {} if self.answer is None else {self.answer: 0.9, "no": 0.1}


class Serve:
    """A data plane over a repository of fake versions, its scorer running, and the log."""

    def __init__(self, executor: ThreadPoolExecutor, capacity: int = 1000) -> None:
        self.champion = "1"
        self.logged: list[PredictionRow] = []
        self.repository = ModelRepository(
            "m",
            resolve=lambda: self.champion,
            load=load,
            batcher=lambda loaded: MicroBatcher(loaded.call, executor),
            publish=self.publish,
            replica="r1",
            previous_s=600,
        )
        self.online = OnlineAnswers("m")
        self.scorer = ShadowScorer(self.publish, capacity)
        self.plane = DataPlane("m", self.repository, self.publish, self.online, self.scorer)

    def publish(self, event_type: EventType, rows: list[Any], build: Any = None) -> None:
        if event_type is EventType.PREDICTION:
            self.logged.extend(rows)

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` prediction events, once logged (the scorer logs after the
        answer), checked against the schema."""
        while len(self.logged) < count:
            await asyncio.sleep(0.005)
        events = [prediction_event(row) for row in self.logged[:count]]
        for event in events:
            SCHEMAS.validate(EventType.PREDICTION, event)
        return events

    async def predict(self, document: Any = RECORD) -> dict[str, Any]:
        return await self.plane.infer(self.plane.begin_records(document))


@contextlib.asynccontextmanager
async def serving(capacity: int = 1000, scoring: bool = True) -> AsyncIterator[Serve]:
    """A :class:`Serve` on version 1, its scorer running unless ``scoring`` is False."""
    with ThreadPoolExecutor(1) as executor:
        serve = Serve(executor, capacity)
        await serve.repository.refresh()
        stop = asyncio.Event()
        running = asyncio.create_task(serve.scorer.run(stop)) if scoring else None
        try:
            yield serve
        finally:
            stop.set()
            if running is not None:
                await running


def oip() -> dict[str, Any]:
    """An OIP v2 request of one row."""
    return {
        "inputs": [
            {"name": "age", "datatype": "FP64", "shape": [1], "data": [31.0]},
            {"name": "region", "datatype": "BYTES", "shape": [1], "data": ["south"]},
        ]
    }


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_online_model_answers_and_the_champion_is_scored_in_shadow() -> None:
    async with serving() as serve:
        scored = counter("driftloop_serve_shadow_scored_total", role="champion")
        serve.online.answering = OnlineModel("online.7", Says("yes"))
        answer = await serve.predict([RECORD, RECORD | {"region": "south"}])
        assert answer["model_version"] == "online.7"
        assert [row["prediction"] for row in answer["predictions"]] == ["yes", "yes"]
        assert b"shadow" not in orjson.dumps(answer) and b"champion" not in orjson.dumps(answer)

        for event in await serve.events(2):
            assert (event["model_version"], event["prediction"]) == ("online.7", "yes")
            assert event["answered_by"] == "online"
            assert event["shadows"] == [
                {"role": "champion", "model_version": "1", "prediction": "no"}
            ]
        assert counter("driftloop_serve_shadow_scored_total", role="champion") - scored == 2

        serve.online.answering = None  # the arbiter hands back: the champion answers, alone
        assert (await serve.predict())["model_version"] == "1"
        (event,) = [prediction_event(row) for row in serve.logged[2:]]
        assert "answered_by" not in event and "shadows" not in event


async def test_a_request_naming_a_version_is_answered_by_that_version() -> None:
    async with serving() as serve:
        serve.online.answering = OnlineModel("online.7", Says("yes"))
        plane = serve.plane
        by_champion = await plane.infer(plane.begin_infer("m", oip(), "1"))
        by_online = await plane.infer(plane.begin_infer("m", oip(), "online.7"))
        assert (by_champion["model_version"], by_online["model_version"]) == ("1", "online.7")
        assert plane.model_ready("m", "online.7")["version"] == "online.7"
        with pytest.raises(ModelNotFound, match=r"serves version 1, online\.7"):
            plane.begin_infer("m", oip(), "online.6")
        champion, online = await serve.events(2)
        assert "answered_by" not in champion and "shadows" not in champion
        assert online["answered_by"] == "online" and online["shadows"][0]["role"] == "champion"


async def test_a_request_the_online_model_cannot_answer_is_the_champions() -> None:
    async with serving() as serve:
        fallbacks = counter("driftloop_serve_online_fallbacks_total")
        serve.online.answering = OnlineModel("online.1", Says(None))  # has learned nothing
        assert (await serve.predict())["model_version"] == "1"
        (event,) = await serve.events(1)
        assert (
            event["model_version"] == "1" and "answered_by" not in event and "shadows" not in event
        )
        assert counter("driftloop_serve_online_fallbacks_total") - fallbacks == 1


async def test_after_a_promotion_the_previous_champion_is_scored_in_shadow() -> None:
    async with serving() as serve:
        serve.champion = "2"
        await serve.repository.refresh()
        answer = await serve.predict()
        assert answer["model_version"] == "2" and b"previous" not in orjson.dumps(answer)
        (event,) = await serve.events(1)
        assert event["prediction"] == "yes"
        assert event["shadows"] == [{"role": "previous", "model_version": "1", "prediction": "no"}]


async def test_when_shadow_scoring_falls_behind_rows_are_logged_at_once_without_shadows() -> None:
    async with serving(capacity=2, scoring=False) as serve:
        serve.online.answering = OnlineModel("online.7", Says("yes"))
        skipped = counter("driftloop_serve_shadow_skipped_total")
        await serve.predict([RECORD, RECORD])  # queued: the scorer is not running
        answer = await serve.predict([RECORD])  # past the bound
        assert answer["model_version"] == "online.7"
        (event,) = [prediction_event(row) for row in serve.logged]  # logged at once
        assert event["answered_by"] == "online" and "shadows" not in event
        assert counter("driftloop_serve_shadow_skipped_total") - skipped == 1

        stop = asyncio.Event()
        scoring = asyncio.create_task(serve.scorer.run(stop))
        events = await serve.events(3)  # the queued rows get their shadows
        assert [len(e.get("shadows", [])) for e in events] == [0, 1, 1]
        stop.set()
        await scoring


async def test_a_model_failing_in_shadow_leaves_its_prediction_out_and_the_row_logged() -> None:
    async with serving() as serve:
        serve.champion = "2"
        await serve.repository.refresh()
        previous = serve.repository.shadows.previous
        assert previous is not None

        def broken(inputs: Any) -> np.ndarray:
            raise RuntimeError("the model failed")

        previous.batcher.model = broken
        failed = counter("driftloop_serve_shadow_failed_total", role="previous")
        assert (await serve.predict())["model_version"] == "2"
        (event,) = await serve.events(1)
        assert event["prediction"] == "yes" and "shadows" not in event
        assert counter("driftloop_serve_shadow_failed_total", role="previous") - failed == 1
