"""The hot swap's protocol with fake registries and loaders: no MLflow, no TensorFlow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from driftloop.errors import ModelLoadFailed
from driftloop.events import EventType
from driftloop.model_card import FeatureSpec, ModelCard
from services.serve.batching import MicroBatcher
from services.serve.protocol import decode_records
from services.serve.repository import LoadedVersion, ModelRepository

CARD = ModelCard(task="regression", features=[FeatureSpec(name="x")])
OTHER = ModelCard(task="regression", features=[FeatureSpec(name="y")])


class Registry:
    """An alias and versions: each version's model answers its own number."""

    def __init__(self) -> None:
        self.champion: str | None = None
        self.cards: dict[str, ModelCard] = {}
        self.broken: set[str] = set()
        self.loads: list[str] = []

    def load(self, version: str, check: Callable[[ModelCard], None]) -> LoadedVersion:
        self.loads.append(version)
        card = self.cards.get(version, CARD)
        check(card)
        if version in self.broken:
            raise ModelLoadFailed("the model answers NaN on the warm-up batch")
        value = float(version)
        return LoadedVersion(card, lambda x: np.full((len(x["x"]), 1), value), "call", {})


def repository(registry: Registry, events: list[dict[str, Any]], executor: Any) -> ModelRepository:
    def publish(event_type: EventType, batch: list[dict[str, Any]]) -> None:
        assert event_type is EventType.SWAP
        events.extend(batch)

    return ModelRepository(
        "m",
        resolve=lambda: registry.champion,
        load=registry.load,
        batcher=lambda loaded: MicroBatcher(loaded.call, executor),
        publish=publish,
        replica="r1",
    )


async def test_no_champion_then_promotion_swaps_and_publishes() -> None:
    registry, events = Registry(), []
    with ThreadPoolExecutor(1) as executor:
        repo = repository(registry, events, executor)
        assert (await repo.refresh()).outcome == "none"
        assert not repo.ready and repo.problem == "no model has been promoted yet"
        registry.champion = "1"
        assert (await repo.refresh()).outcome == "swapped"
        assert repo.ready and repo.current is not None and repo.current.version == "1"
        assert (await repo.refresh()).outcome == "unchanged"
        assert registry.loads == ["1"]
    assert [(e["model_version"], e["outcome"], e["previous_version"]) for e in events] == [
        ("1", "swapped", None)
    ]


async def test_requests_in_flight_finish_on_the_model_that_started_them() -> None:
    registry, events = Registry(), []
    registry.champion = "1"
    with ThreadPoolExecutor(1) as executor:
        repo = repository(registry, events, executor)
        await repo.refresh()
        batch, _ = decode_records({"x": 1.0}, CARD)
        started = repo.current
        assert started is not None
        in_flight = asyncio.create_task(started.predict(batch))
        registry.champion = "2"
        await repo.refresh()
        assert (await in_flight).item() == 1.0  # took version 1 before the swap
        assert repo.current is not None and (await repo.current.predict(batch)).item() == 2.0


async def test_a_broken_version_or_other_features_never_replace_the_serving_one() -> None:
    registry, events = Registry(), []
    registry.champion = "1"
    registry.broken.add("2")
    registry.cards["3"] = OTHER
    with ThreadPoolExecutor(1) as executor:
        repo = repository(registry, events, executor)
        await repo.refresh()
        for bad in ("2", "3"):
            registry.champion = bad
            refresh = await repo.refresh()
            assert refresh.outcome == "failed" and refresh.previous == "1"
            assert repo.current is not None and repo.current.version == "1"
        # the timer does not retry a failed version at once; a forced reload does
        registry.champion = "2"
        assert (await repo.refresh()).outcome == "unchanged"
        assert (await repo.refresh(force=True)).outcome == "failed"
        registry.champion = "1"  # rollback: the alias moves back
        assert (await repo.refresh()).outcome == "unchanged"
    failed = [e for e in events if e["outcome"] == "failed"]
    assert [e["model_version"] for e in failed] == ["2", "3", "2"]
    assert "NaN" in failed[0]["error"] and "features" in failed[1]["error"]


async def test_a_registry_that_does_not_answer_keeps_the_replica_not_ready_with_the_reason() -> (
    None
):
    events: list[dict[str, Any]] = []

    def resolve() -> str | None:
        raise ConnectionError("connection refused")

    with ThreadPoolExecutor(1) as executor:
        repo = ModelRepository(
            "m",
            resolve,
            Registry().load,
            lambda loaded: MicroBatcher(loaded.call, executor),
            lambda *a: None,
            "r1",
        )
        refresh = await repo.refresh()
    assert refresh.outcome == "failed" and not repo.ready
    assert repo.problem is not None and "connection refused" in repo.problem
    assert events == []
