"""StoreWriter: the example store's writes, in a process of its own, one at a time, in order.

A store write is a few microseconds of Python a row (columns from rows, dedupe, grouping) and
then Arrow's and zstd's work. In a thread of ingest's process that Python holds the GIL the
join needs: the join waited on it, and a checkpoint's write cost the consuming loop about a
fifth of its rate. In a process of its own it runs beside the join, on another core. The rows
travel as the examples' JSON lines, which the worker makes anyway for the examples topic.

The writer process opens the store itself (``opener``, a picklable callable: an S3 client does
not travel), so its dedupe memory of stored ids lives there. The contracts in force travel with
each write as their JSON, made once per contract here and validated once per contract there,
so that the store writes each model's rows in its contract's schema. It is a
:class:`~driftloop.children.HelperProcess`, so it dies with ingest's process (the kernel's
parent-death signal on Linux): a restarted ingest must never meet a write of the process before
it, which would store again rows the new one reads again.

Example:
    >>> import asyncio, functools, tempfile
    >>> from driftloop.store import ExampleStore
    >>> async def main():
    ...     writer = StoreWriter(functools.partial(ExampleStore, tempfile.mkdtemp()))
    ...     await writer.start()
    ...     try:
    ...         return await writer.write([], {})
    ...     finally:
    ...         writer.close()
    >>> asyncio.run(main()) is None  # nothing to store: no file  # doctest: +SKIP
    True
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import orjson

from driftloop.children import HelperProcess
from driftloop.contract import FeatureContract
from driftloop.store import ExampleStore, Manifest, OffsetRanges


class StoreWriter:
    """Writes batches of examples to the store that ``opener`` opens, in a process of its own.

    Parameters:
        opener: opens the store, in the writer process (picklable: a class, or a
            :func:`functools.partial` of one).
    """

    def __init__(self, opener: Callable[[], ExampleStore]) -> None:
        # Not restarted: a dead writer fails its checkpoint, and ingest with it; a later write
        # must not land meanwhile, in a new process, behind the one that was lost.
        self._helper = HelperProcess(_open, (opener,), name="store-writer", restart=False)
        self.pid: int | None = None  # the writer process's, once started
        # Each contract's JSON, made once: {model: (the contract it was made from, its JSON)}
        self._encoded: dict[str, tuple[FeatureContract, bytes]] = {}

    async def start(self) -> None:
        """Start the writer process and open the store there (not at the first checkpoint)."""
        self.pid = await self._helper.submit_async(os.getpid)

    def write(
        self,
        lines: list[bytes],
        offsets: OffsetRanges,
        contracts: Mapping[str, FeatureContract] | None = None,
    ) -> asyncio.Future[list[Manifest] | None]:
        """Store the examples ``lines`` (their JSON) as :meth:`ExampleStore.write` does, with
        ``contracts`` (the contract in force per model name); the future resolves once they
        are durable, or raises what the write raised."""
        encoded = None if contracts is None else self._encode(contracts)
        return self._helper.submit_async(_write, b"\n".join(lines), offsets, encoded)

    def _encode(self, contracts: Mapping[str, FeatureContract]) -> dict[str, bytes]:
        encoded = {}
        for name, contract in contracts.items():
            made = self._encoded.get(name)
            if made is None or made[0] is not contract:
                made = (contract, orjson.dumps(contract.model_dump(mode="json")))
                self._encoded[name] = made
            encoded[name] = made[1]
        return encoded

    def close(self) -> None:
        """Let the writes queued finish, then stop the writer process."""
        self._helper.close(wait=True)


# --- the writer process -----------------------------------------------------------------------

_store: ExampleStore | None = None
_contracts: dict[bytes, FeatureContract] = {}  # validated once per contract, by its JSON


def _open(opener: Callable[[], ExampleStore]) -> None:
    global _store
    _store = opener()


def _write(
    lines: bytes, offsets: OffsetRanges, encoded: dict[str, bytes] | None = None
) -> list[Manifest] | None:
    assert _store is not None
    rows = [orjson.loads(line) for line in lines.split(b"\n")] if lines else []
    contracts = None if encoded is None else {k: _contract(v) for k, v in encoded.items()}
    return _store.write(rows, offsets, contracts)


def _contract(data: bytes) -> FeatureContract:
    contract = _contracts.get(data)
    if contract is None:
        if len(_contracts) >= 256:  # versions replaced long ago: not kept forever
            _contracts.clear()
        contract = _contracts[data] = FeatureContract.model_validate_json(data)
    return contract
