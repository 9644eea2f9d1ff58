"""Adaptive micro-batching: concurrent requests share one model call, off the event loop.

Requests queue while the model is busy; when it is free, everything queued (up to
``max_batch_size`` rows) goes in one call. Under no load a request is called at once (no wait);
under load, batches form by themselves from what arrived during the previous call. When the
last call served more than one request (a sign of concurrency) and the batch is not full, the
batcher may wait up to ``max_wait_s`` for more rows: a little latency for fewer calls.

Model calls run on one executor thread: the event loop keeps parsing and answering requests
while the model computes, and one thread means a model that is not thread-safe (a TFLite
interpreter) is never called twice at once. A model whose call is cheaper than that hand-off
(measured at load time) is called ``inline`` on the event loop instead, one request at a time.

Example:
    >>> import asyncio, concurrent.futures
    >>> async def demo():
    ...     executor = concurrent.futures.ThreadPoolExecutor(1)
    ...     batcher = MicroBatcher(lambda x: x["a"] * 2, executor, max_batch_size=8)
    ...     outputs = await asyncio.gather(*(batcher.predict({"a": np.ones((1, 1))}, 1)
    ...                                      for _ in range(3)))
    ...     await batcher.close()
    ...     return [o.tolist() for o in outputs]
    >>> asyncio.run(demo())
    [[[2.0]], [[2.0]], [[2.0]]]
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from driftloop.services.serve.loop_metrics import LoopHistogram

# Observed per model call, inline ones per request: lock-free (see loop_metrics).
BATCH_ROWS = LoopHistogram(
    "driftloop_serve_batch_rows",
    "Rows per model call (micro-batches of concurrent requests).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
BATCH_REQUESTS = LoopHistogram(
    "driftloop_serve_batch_requests",
    "Requests sharing one model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

Arrays = dict[str, np.ndarray]


class _Pending:
    __slots__ = ("future", "inputs", "rows")

    def __init__(self, inputs: Arrays, rows: int, future: asyncio.Future[np.ndarray]) -> None:
        self.inputs = inputs
        self.rows = rows
        self.future = future


def merge(inputs: list[Arrays]) -> Arrays:
    """Stack several requests' arrays row-wise, feature by feature."""
    if len(inputs) == 1:
        return inputs[0]
    return {name: np.concatenate([x[name] for x in inputs]) for name in inputs[0]}


class MicroBatcher:
    """Groups concurrent :meth:`predict` calls into model calls of at most ``max_batch_size``.

    Parameters:
        model: maps a batch of input arrays to a ``(rows, k)`` output array (blocking).
        executor: where the model runs (one thread).
        max_batch_size: most rows per model call; a single larger request is called alone.
        max_wait_s: longest to wait for a batch to fill, only under concurrent load.
        inline: call the model on the event loop, at once, without batching: for a model
            faster than the hand-off to a thread (measured: a TFLite call of ~20 us against
            a hand-off that waits for the GIL under load, up to milliseconds).
    """

    def __init__(
        self,
        model: Callable[[Arrays], np.ndarray],
        executor: Executor,
        max_batch_size: int = 64,
        max_wait_s: float = 0.0,
        inline: bool = False,
    ) -> None:
        self.model = model
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.inline = inline
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._last_requests = 1

    def call(self, inputs: Arrays, rows: int) -> np.ndarray:
        """The model's outputs for ``inputs`` now, on this thread (what ``inline`` means)."""
        BATCH_ROWS.observe(rows)
        return self.model(inputs)

    async def predict(self, inputs: Arrays, rows: int) -> np.ndarray:
        """The model's outputs for ``inputs`` (``rows`` rows), computed in some batch."""
        if self.inline:
            return self.call(inputs, rows)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(inputs, rows, future))
        self._arrived.set()
        if self._worker is None or self._worker.done():  # a closed batcher still finishes
            self._worker = asyncio.create_task(self._run(), name="serve-batcher")
        return await future

    def _take(self) -> list[_Pending]:
        taken = [self._queue.popleft()]
        rows = taken[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
            rows += self._queue[0].rows
            taken.append(self._queue.popleft())
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if (
                self.max_wait_s > 0
                and self._last_requests > 1
                and sum(p.rows for p in self._queue) < self.max_batch_size
            ):
                await asyncio.sleep(self.max_wait_s)
            batch = self._take()
            self._last_requests = len(batch)
            rows = sum(p.rows for p in batch)
            BATCH_ROWS.observe(rows)
            BATCH_REQUESTS.observe(len(batch))
            try:
                merged = merge([p.inputs for p in batch])
                outputs = await loop.run_in_executor(self.executor, self.model, merged)
            except Exception as error:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            start = 0
            for pending in batch:
                if not pending.future.done():  # its caller may have gone
                    pending.future.set_result(outputs[start : start + pending.rows])
                start += pending.rows

    async def close(self) -> None:
        """Finish what is queued, then stop the worker (a late :meth:`predict` restarts it)."""
        self._closed = True
        self._arrived.set()
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
