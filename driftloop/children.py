"""What the services' helper processes (serve's loader and event sender, ingest's store writer)
share: they end with the process that started them.

A helper that outlives its service's process (killed with SIGKILL, or by a test that kills only
it) would hold its memory for nothing (serve's loader holds TensorFlow: hundreds of MB), so each
watches its parent and exits when it is gone. One that must not act after its parent is gone
(ingest's store writer) asks the kernel to kill it with its parent instead, where it can.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

WATCH_S = 1.0
PR_SET_PDEATHSIG = 1


def killed_with_parent() -> bool:
    """Ask the kernel to kill this process when its parent ends (Linux); whether it will."""
    if sys.platform != "linux":
        return False
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    return False


def exit_with_parent(before: Callable[[], None] | None = None) -> None:
    """Exit this process within ``WATCH_S`` of its parent's end: at once, skipping the
    interpreter's cleanup, after ``before`` (what must not be left behind)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_S)
        if before is not None:
            before()
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
