"""StoreWriter: the store's writes in a process of its own (real processes, a store on disk)."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from driftloop.events import new_event
from driftloop.schemas import dumps
from driftloop.services.ingest.join import labelled_example
from driftloop.services.ingest.writer import StoreWriter
from driftloop.store import ExampleStore

ROOT = Path(__file__).resolve().parents[3]


class SlowStore(ExampleStore):
    """Its writes take ``seconds``, then leave a file named ``done`` beside the store."""

    def __init__(self, uri: str, seconds: float) -> None:
        super().__init__(uri)
        self.seconds = seconds

    def write(self, examples: Any, offsets: Any = None, contracts: Any = None) -> Any:
        time.sleep(self.seconds)
        manifests = super().write(examples, offsets, contracts)
        (Path(self.blobs.root).parent / "done").touch()  # type: ignore[attr-defined]
        return manifests


def examples(count: int) -> list[dict[str, Any]]:
    return [
        labelled_example(
            new_event(
                request_id=f"r{i}",
                model_name="m",
                model_version="1",
                features={"x": float(i), "colour": "red"},
                prediction=i % 2,
            ),
            new_event(request_id=f"r{i}", label=1),
        )
        for i in range(count)
    ]


async def test_the_writer_stores_the_rows_it_is_given_and_raises_what_the_store_raises(
    tmp_path: Path,
) -> None:
    rows = examples(50)
    writer = StoreWriter(functools.partial(ExampleStore, str(tmp_path / "store")))
    await writer.start()
    try:
        (manifest,) = await writer.write([dumps(row) for row in rows], {"t:0": [0, 49]})
        assert manifest.rows == 50
        assert await writer.write([dumps(row) for row in rows[:10]], {}) is None  # stored
    finally:
        writer.close()
    table = ExampleStore(str(tmp_path / "store")).read([manifest])
    assert sorted(table.column("request_id").to_pylist()) == sorted(r["request_id"] for r in rows)
    assert table.column("feature.x").to_pylist() == [float(i) for i in range(50)]

    # The writer process opens the store: an opener that fails there fails start().
    broken = StoreWriter(functools.partial(int, "not a store"))  # type: ignore[arg-type]
    with pytest.raises(BrokenProcessPool):
        await broken.start()
    broken.close()


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_the_writer_process_dies_with_ingest_even_in_the_middle_of_a_write(
    tmp_path: Path,
) -> None:
    """A write the killed process began must not land after a restarted ingest has loaded the
    store's ids: it would store again rows the new one reads again."""
    script = (
        "import asyncio, functools, sys\n"
        "from tests.integration.ingest.test_writer import SlowStore, examples\n"
        "from driftloop.schemas import dumps\n"
        "from driftloop.services.ingest.writer import StoreWriter\n"
        "async def main():\n"
        "    writer = StoreWriter(functools.partial(SlowStore, sys.argv[1], 3.0))\n"
        "    await writer.start()\n"
        "    pending = writer.write([dumps(row) for row in examples(5)], {})\n"
        "    print(writer.pid, flush=True)\n"
        "    await pending\n"
        "asyncio.run(main())\n"
    )
    ingest = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "store")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert ingest.stdout is not None
    writer = int(ingest.stdout.readline())
    assert alive(writer)
    ingest.send_signal(signal.SIGKILL)
    ingest.wait()
    deadline = time.monotonic() + 10
    while alive(writer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(writer)
    time.sleep(4)  # past when the slow write would have finished
    assert not (tmp_path / "done").exists()
    assert not list((tmp_path / "store").rglob("*.parquet"))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
