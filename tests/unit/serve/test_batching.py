"""Micro-batching: concurrent requests share model calls; each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from driftloop.services.serve.batching import MicroBatcher


class Model:
    """Doubles its input; records the batch sizes it was called with and its thread."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.gate = gate

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(len(inputs["x"]))
        self.threads.add(threading.current_thread().name)
        return inputs["x"] * 2


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=np.float32).reshape(-1, 1)}


async def test_requests_queued_while_the_model_is_busy_share_one_call() -> None:
    gate = threading.Event()
    model = Model(gate)
    with ThreadPoolExecutor(1, thread_name_prefix="model") as executor:
        batcher = MicroBatcher(model, executor, max_batch_size=64)
        first = asyncio.create_task(batcher.predict(rows(1), 1))
        await asyncio.sleep(0.05)  # the first call is running (held by the gate)
        others = [asyncio.create_task(batcher.predict(rows(i, i + 0.5), 2)) for i in range(2, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        assert (await first).ravel().tolist() == [2.0]
        outputs = await asyncio.gather(*others)
        await batcher.close()
    assert [o.ravel().tolist() for o in outputs] == [[2 * i, 2 * i + 1] for i in range(2, 6)]
    assert model.calls == [1, 8]  # one call alone, then the four queued requests together
    assert all(name.startswith("model") for name in model.threads)


async def test_batches_never_exceed_the_max_rows() -> None:
    gate = threading.Event()
    model = Model(gate)
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(model, executor, max_batch_size=4)
        tasks = [asyncio.create_task(batcher.predict(rows(i), 1)) for i in range(10)]
        await asyncio.sleep(0.05)
        gate.set()
        outputs = await asyncio.gather(*tasks)
        await batcher.close()
    assert [o.item() for o in outputs] == [2.0 * i for i in range(10)]
    assert max(model.calls) <= 4 and sum(model.calls) == 10


async def test_a_model_failure_fails_only_its_batch() -> None:
    calls = 0

    def flaky(inputs: dict[str, np.ndarray]) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        return inputs["x"]

    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(flaky, executor)
        with pytest.raises(ValueError, match="boom"):
            await batcher.predict(rows(1), 1)
        assert (await batcher.predict(rows(3), 1)).item() == 3.0
        await batcher.close()
        # a closed batcher still answers what reaches it (a request that took it before a swap)
        assert (await batcher.predict(rows(4), 1)).item() == 4.0


async def test_an_inline_model_is_called_on_the_event_loop_at_once() -> None:
    model = Model()
    with ThreadPoolExecutor(1, thread_name_prefix="model") as executor:
        batcher = MicroBatcher(model, executor, inline=True)
        outputs = await asyncio.gather(*(batcher.predict(rows(i), 1) for i in range(3)))
    assert [o.item() for o in outputs] == [0.0, 2.0, 4.0]
    assert model.calls == [1, 1, 1] and model.threads == {threading.current_thread().name}
