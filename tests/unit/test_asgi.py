"""Every service runs its parts the same way: started before its app answers, stopped after,
and a part that fails stops the service (driven through the lifespan, no sockets)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from driftloop.asgi import ServiceRunner, in_thread


async def test_parts_start_run_and_close_in_order_around_the_app() -> None:
    order: list[str] = []

    async def connect() -> None:
        order.append("start")

    async def consume(stop: asyncio.Event) -> None:
        order.append("run")
        await stop.wait()
        order.append("checkpoint")

    async def close() -> None:
        order.append("close")

    runner = ServiceRunner("test", run={"worker": consume}, start=[connect], close=[close])
    assert not runner.ready()
    async with runner.lifespan(None):
        await asyncio.sleep(0)
        assert runner.ready()
        order.append("answering")
    assert order == ["start", "run", "answering", "checkpoint", "close"]
    assert not runner.ready() and not runner.failed


async def test_a_part_that_fails_stops_the_service_and_sets_its_exit_status() -> None:
    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("the broker refused the group")

    async def steady(stop: asyncio.Event) -> None:
        await stop.wait()

    runner = ServiceRunner("test", run={"broken": broken, "steady": steady})
    server = SimpleNamespace(should_exit=False)
    runner.server = server  # type: ignore[assignment]  # what serve() sets
    async with runner.lifespan(None):
        await asyncio.sleep(0.01)
        assert not runner.ready()  # one part stopped: not ready, though the other runs
        assert server.should_exit and runner.failed


async def test_a_part_that_ignores_its_stop_is_left_after_the_timeout() -> None:
    async def stubborn(stop: asyncio.Event) -> None:
        await asyncio.sleep(3600)

    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    runner = ServiceRunner("test", run={"stubborn": stubborn}, close=[close], stop_timeout_s=0.01)
    async with runner.lifespan(None):
        pass
    assert closed == [True]


async def test_a_blocking_loop_runs_in_a_thread_until_stopped() -> None:
    seen: list[str] = []

    def loop(halt: threading.Event) -> None:
        seen.append(threading.current_thread().name)
        halt.wait()
        seen.append("stopped")

    stop = asyncio.Event()
    task = asyncio.create_task(in_thread(loop)(stop))
    await asyncio.sleep(0.05)
    assert seen and seen[0] != threading.current_thread().name and not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert seen[-1] == "stopped"


async def test_a_blocking_loop_that_fails_fails_its_part() -> None:
    def loop(halt: threading.Event) -> None:
        raise ValueError("bad settings")

    with pytest.raises(ValueError, match="bad settings"):
        await asyncio.wait_for(in_thread(loop)(asyncio.Event()), 5)
