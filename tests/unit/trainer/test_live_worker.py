"""The live worker's barrier: a model update waits for the examples on the topic when it was
read, so that examples and updates are applied in the order they happened."""

from __future__ import annotations

from typing import Any

from kafka.structs import TopicPartition

from driftloop.services.trainer.live_worker import UpdateBarrier

E0, E1 = TopicPartition("examples", 0), TopicPartition("examples", 1)
U0, U1 = TopicPartition("updates", 0), TopicPartition("updates", 1)


def update(version: str) -> dict[str, Any]:
    return {"model_name": "m", "model_version": version, "alias": "champion"}


def test_an_update_waits_until_every_examples_partition_is_read_to_its_end() -> None:
    barrier = UpdateBarrier()
    barrier.hold(update("2"), U0, 7, {E0: 100, E1: 50})
    assert barrier.release({E0: 40, E1: 50}) == []
    assert barrier.release({E0: 99, E1: 60}) == []
    assert barrier.release({E0: 100, E1: 60}) == [update("2")]
    assert not barrier and barrier.release({E0: 100, E1: 60}) == []


def test_updates_are_released_in_the_order_they_were_read() -> None:
    barrier = UpdateBarrier()
    barrier.hold(update("2"), U0, 7, {E0: 100})
    barrier.hold(update("3"), U0, 8, {E0: 300})
    barrier.hold(update("1"), U0, 9, {E0: 300})
    assert barrier.release({E0: 150}) == [update("2")]
    assert len(barrier) == 2
    assert barrier.release({E0: 300}) == [update("3"), update("1")]


def test_a_later_update_whose_examples_are_read_still_waits_for_an_earlier_one() -> None:
    barrier = UpdateBarrier()
    barrier.hold(update("2"), U0, 7, {E0: 100})
    barrier.hold(update("3"), U0, 8, {E1: 10})  # E0 was revoked in between
    assert barrier.release({E0: 50, E1: 10}) == []
    assert barrier.release({E0: 100, E1: 10}) == [update("2"), update("3")]


def test_an_unknown_position_is_not_past_the_end() -> None:
    barrier = UpdateBarrier()
    barrier.hold(update("2"), U0, 7, {E0: 100})
    assert barrier.release({E0: None}) == []
    assert barrier.release({E0: 100}) == [update("2")]


def test_a_partition_no_longer_assigned_is_not_waited_for() -> None:
    barrier = UpdateBarrier()
    barrier.hold(update("2"), U0, 7, {E0: 100, E1: 50})
    assert barrier.release({E1: 50}) == [update("2")]


def test_an_update_with_nothing_to_wait_for_is_released_at_once() -> None:
    barrier = UpdateBarrier()
    barrier.hold(update("2"), U0, 7, {})
    assert barrier.release({}) == [update("2")]


def test_offsets_are_committed_no_further_than_the_oldest_held_update_of_each_partition() -> None:
    barrier = UpdateBarrier()
    assert barrier.commit_limits() == {}
    barrier.hold(update("2"), U0, 7, {E0: 100})
    barrier.hold(update("3"), U1, 3, {E0: 200})
    barrier.hold(update("4"), U0, 9, {E0: 300})
    assert barrier.commit_limits() == {U0: 7, U1: 3}
    barrier.release({E0: 200})
    assert barrier.commit_limits() == {U0: 9}
    barrier.release({E0: 300})
    assert barrier.commit_limits() == {}
