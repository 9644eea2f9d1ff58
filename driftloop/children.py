"""What the services' helper processes (serve's loader and event sender, ingest's store writer)
share: they end with the process that started them.

A helper that outlives its service's process (killed with SIGKILL, or by a test that kills only
it) would hold its memory for nothing (serve's loader holds TensorFlow: hundreds of MB), so each
watches its parent and exits when it is gone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

WATCH_S = 1.0


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
