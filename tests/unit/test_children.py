"""HelperProcess: calls in a spawned process, another one after it died, its scratch removed."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from driftloop.children import HelperProcess


def where() -> tuple[int, str]:
    """The helper's pid and temporary directory."""
    return os.getpid(), tempfile.gettempdir()


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_a_helper_that_died_fails_its_call_and_the_next_call_starts_another() -> None:
    helper = HelperProcess(name="test", scratch=True)
    try:
        pid, scratch = helper.submit(where).result(timeout=60)
        assert pid != os.getpid()
        assert Path(scratch).name.startswith("driftloop-test-") and Path(scratch).is_dir()
        with pytest.raises(BrokenProcessPool):
            helper.submit(os.kill, pid, signal.SIGKILL).result(timeout=60)
        assert wait_until(lambda: not Path(scratch).exists())  # removed with its process
        again, new_scratch = helper.submit(where).result(timeout=60)
        assert again != pid and new_scratch != scratch
    finally:
        helper.close()
    assert not Path(new_scratch).exists()


def test_a_helper_without_restart_stays_broken() -> None:
    helper = HelperProcess(name="test", restart=False)
    try:
        pid = helper.submit(os.getpid).result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            helper.submit(os.kill, pid, signal.SIGKILL).result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            helper.submit(os.getpid).result(timeout=60)
    finally:
        helper.close()
