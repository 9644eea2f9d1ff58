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
from driftloop.services.serve.batching import MicroBatcher
from driftloop.services.serve.protocol import decode_records
from driftloop.services.serve.repository import LoadedVersion, ModelRepository

CARD = ModelCard(task="regression", features=[FeatureSpec(name="x")])
OTHER = ModelCard(task="regression", features=[FeatureSpec(name="y")])


class Registry:
    """An alias and versions: each version's model answers its own number."""

    def __init__(self) -> None:
        self.champion: str | None = None
        self.challenger: str | None = None
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


class Batcher(MicroBatcher):
    """A micro-batcher that says whether it was closed."""

    closed = False

    async def close(self) -> None:
        self.closed = True
        await super().close()


def shadowed(
    registry: Registry,
    events: list[dict[str, Any]],
    executor: Any,
    previous_s: float = 600.0,
    previous_alias: list[str | None] | None = None,
) -> ModelRepository:
    """A repository that keeps the previous champion and follows the challenger alias."""

    def publish(event_type: EventType, batch: list[dict[str, Any]]) -> None:
        events.extend(batch)

    return ModelRepository(
        "m",
        resolve=lambda: registry.champion,
        load=registry.load,
        batcher=lambda loaded: Batcher(loaded.call, executor),
        publish=publish,
        replica="r1",
        resolve_challenger=lambda: registry.challenger,
        previous_s=previous_s,
        resolve_previous=None if previous_alias is None else lambda: previous_alias[0],
    )


def in_shadow(repo: ModelRepository) -> list[tuple[str, str]]:
    return [(role, model.version) for role, model in repo.shadows.scored]


async def test_the_replaced_champion_stays_in_shadow_and_a_rollback_swaps_it_back_unloaded() -> (
    None
):
    registry = Registry()
    events: list[dict[str, Any]] = []
    registry.champion = "1"
    with ThreadPoolExecutor(1) as executor:
        repo = shadowed(registry, events, executor)
        await repo.refresh()
        first = repo.current
        registry.champion = "2"
        await repo.refresh()
        assert in_shadow(repo) == [("previous", "1")]
        second = repo.current
        assert first is not None and second is not None and not first.batcher.closed  # type: ignore[attr-defined]

        registry.champion = "1"  # the trainer rolls back
        refresh = await repo.refresh()
        assert (refresh.outcome, refresh.version, refresh.previous) == ("swapped", "1", "2")
        assert repo.current is first and in_shadow(repo) == []
        assert second.batcher.closed  # type: ignore[attr-defined]
        assert registry.loads == ["1", "2"]  # version 1 was not loaded again
    assert [(e["model_version"], e["previous_version"]) for e in events] == [
        ("1", None), ("2", "1"), ("1", "2")
    ]  # fmt: skip


async def test_the_previous_champion_leaves_shadow_at_the_next_swap_or_its_time() -> None:
    registry = Registry()
    events: list[dict[str, Any]] = []
    registry.champion = "1"
    with ThreadPoolExecutor(1) as executor:
        repo = shadowed(registry, events, executor)
        await repo.refresh()
        first = repo.current
        for version in ("2", "3"):
            registry.champion = version
            await repo.refresh()
        assert in_shadow(repo) == [("previous", "2")]
        assert first is not None and first.batcher.closed  # type: ignore[attr-defined]

        brief = shadowed(registry, [], executor, previous_s=0.01)
        registry.champion = "1"
        await brief.refresh()
        registry.champion = "2"
        await brief.refresh()
        assert in_shadow(brief) == [("previous", "1")]
        await asyncio.sleep(0.05)
        await brief.refresh()  # probation is over
        assert in_shadow(brief) == []

        none = shadowed(registry, [], executor, previous_s=0)
        registry.champion = "1"
        await none.refresh()
        registry.champion = "2"
        await none.refresh()
        assert in_shadow(none) == []


async def test_a_challenger_is_scored_in_shadow_and_swapped_in_unloaded_when_promoted() -> None:
    registry = Registry()
    events: list[dict[str, Any]] = []
    registry.champion, registry.challenger = "1", "2"
    with ThreadPoolExecutor(1) as executor:
        repo = shadowed(registry, events, executor)
        await repo.refresh()
        assert repo.current is not None and repo.current.version == "1"
        assert in_shadow(repo) == [("challenger", "2")]
        challenger = repo.shadows.challenger

        registry.champion = "2"  # promoted: the alias stays until the trainer removes it
        await repo.refresh()
        assert repo.current is challenger
        assert in_shadow(repo) == [("previous", "1")]
        registry.challenger = "3"
        await repo.refresh()
        assert in_shadow(repo) == [("previous", "1"), ("challenger", "3")]
        dropped = repo.shadows.challenger
        registry.challenger = None  # refused on live evidence
        await repo.refresh()
        assert in_shadow(repo) == [("previous", "1")]
        assert dropped is not None and dropped.batcher.closed  # type: ignore[attr-defined]
        assert registry.loads == ["1", "2", "3"]
    assert [(e["model_version"], e["outcome"]) for e in events] == [
        ("1", "swapped"), ("2", "swapped")
    ]  # fmt: skip


async def test_a_challenger_that_fails_to_load_is_counted_and_never_scored() -> None:
    from prometheus_client import REGISTRY

    def failures() -> float:
        return REGISTRY.get_sample_value("driftloop_serve_challenger_failed_loads_total") or 0.0

    registry = Registry()
    events: list[dict[str, Any]] = []
    registry.champion, registry.challenger = "1", "2"
    registry.broken.add("2")
    registry.cards["3"] = OTHER
    before = failures()
    with ThreadPoolExecutor(1) as executor:
        repo = shadowed(registry, events, executor)
        await repo.refresh()
        await repo.refresh()  # not retried by the timer at once
        registry.challenger = "3"  # other features
        await repo.refresh()
        assert repo.current is not None and repo.current.version == "1"
        assert in_shadow(repo) == []
    assert failures() - before == 2
    assert registry.loads == ["1", "2", "3"]
    assert [e["outcome"] for e in events] == ["swapped"]  # a challenger is not a swap


async def test_a_promotion_of_the_previous_version_puts_the_one_it_replaced_on_probation() -> None:
    """By hand or by a recall, the version in shadow becomes champion again while the registry
    keeps the replaced one as ``previous``: unlike after a rollback, that one stays in shadow,
    the evidence the trainer's rollback rule needs."""
    registry = Registry()
    previous_alias: list[str | None] = [None]
    registry.champion = "1"
    with ThreadPoolExecutor(1) as executor:
        repo = shadowed(registry, [], executor, previous_alias=previous_alias)
        await repo.refresh()
        registry.champion, previous_alias[0] = "2", "1"
        await repo.refresh()
        second = repo.current
        registry.champion, previous_alias[0] = "1", "2"  # promoted, not rolled back
        await repo.refresh()
        assert in_shadow(repo) == [("previous", "2")]
        assert second is not None and not second.batcher.closed  # type: ignore[attr-defined]
        registry.champion, previous_alias[0] = "2", None  # now a rollback: the alias is gone
        await repo.refresh()
        assert in_shadow(repo) == []
        assert registry.loads == ["1", "2"]  # neither was loaded twice
