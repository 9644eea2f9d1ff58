"""The services' helper processes (serve's loader and event sender, ingest's store writer): each
a fresh interpreter, started by its service's process, that ends with it and (ingest's store
writer aside) is started again when it dies.

A helper that outlives its service's process (killed with SIGKILL, or by a test that kills only
it) would hold its memory for nothing (serve's loader holds TensorFlow: hundreds of MB), so each
is killed by the kernel when its parent ends (Linux) or watches its parent and exits. One with
files to remove first (a scratch directory) watches and exits; one that must not act after its
parent is gone (ingest's store writer) is killed at once where it can be.

:class:`HelperProcess` is the helper for calls (a function and its arguments in, a result
out). :func:`start_piped` starts the other kind, a module that talks over its stdin and stdout
for as long as it runs (serve's event sender, which streams events in and reports out).

Example:
    >>> helper = HelperProcess(name="docs")
    >>> helper.submit(pow, 2, 10).result()  # doctest: +SKIP
    1024
    >>> helper.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

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


class HelperProcess:
    """One spawned worker process for calls, which ends with the process that made it.

    Calls run there one at a time, in the order submitted. The process starts at the first
    call (:meth:`submit`); one that died fails the calls it held with ``BrokenProcessPool``
    and the next call starts another (unless ``restart`` is False).

    Parameters:
        initializer: what each process started runs first, with ``initargs`` (picklable: a
            module-level function); an exception there fails the calls with
            ``BrokenProcessPool``.
        initargs: ``initializer``'s arguments.
        name: what the logs call it, and its scratch directory's prefix
            (``driftloop-<name>-``).
        scratch: give each process a directory of its own as its temporary directory,
            removed when the process is replaced or closed, and by the process itself when it
            outlives its parent (which it then does by up to ``WATCH_S``, rather than being
            killed by the kernel at once).
        restart: start another process after one died; False: every later call raises
            ``BrokenProcessPool`` too, until :meth:`close`.
    """

    def __init__(
        self,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        name: str,
        scratch: bool = False,
        restart: bool = True,
    ) -> None:
        self.initializer = initializer
        self.initargs = initargs
        self.name = name
        self.scratch = scratch
        self.restart = restart
        self._lock = threading.Lock()  # calls come from threads (serve's loads) too
        self._pool: ProcessPoolExecutor | None = None
        self._scratch: str | None = None  # the running process's scratch directory

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in the process (``fn`` and ``args`` picklable); returns its future.

        The future fails with ``BrokenProcessPool`` where the process dies before the call
        ends (or died just before, not yet noticed). Raises it where the process died and
        ``restart`` is False.
        """
        with self._lock:
            if self._pool is None:
                self._start()
            assert self._pool is not None
            try:
                future = self._pool.submit(fn, *args)
            except BrokenProcessPool:  # it died between calls
                if not self.restart:
                    raise
                log.warning("the %s process died; starting another", self.name)
                self._retire()
                self._start()
                assert self._pool is not None
                future = self._pool.submit(fn, *args)
            pool = self._pool
        future.add_done_callback(functools.partial(self._ended, pool))
        return future

    def submit_async(self, fn: Callable[..., T], /, *args: Any) -> asyncio.Future[T]:
        """:meth:`submit`, for an event loop: submitted now, in call order; awaited later."""
        return asyncio.wrap_future(self.submit(fn, *args))

    def close(self, wait: bool = True) -> None:
        """Stop the process and remove its scratch: after the calls submitted (``wait``), or
        without waiting, the calls not yet begun cancelled. A later call starts another."""
        with self._lock:
            pool, self._pool = self._pool, None
            scratch, self._scratch = self._scratch, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=not wait)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def _start(self) -> None:
        if self.scratch:
            self._scratch = tempfile.mkdtemp(prefix=f"driftloop-{self.name}-")
        self._pool = ProcessPoolExecutor(
            1,
            # spawn, not fork: the services' processes have threads (the Kafka clients',
            # TensorFlow's), which a forked child would inherit mid-step
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_begin,
            initargs=(os.getpid(), self._scratch, self.initializer, self.initargs),
        )

    def _retire(self) -> None:
        """Forget the dead process and remove its scratch; the caller holds the lock. (No
        shutdown: a pool whose process died has ended its own thread and queues.)"""
        self._pool = None
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def _ended(self, pool: ProcessPoolExecutor, future: Future[Any]) -> None:
        """A call's end: where the process died under it, it is retired now rather than at
        the next call, so its scratch goes at once."""
        if future.cancelled() or not isinstance(future.exception(), BrokenProcessPool):
            return
        if not self.restart:
            return  # kept, broken: later calls raise as this one did
        with self._lock:
            if self._pool is pool:  # not retired already (by another call's end, or submit)
                log.warning("the %s process died; the next call starts another", self.name)
                self._retire()


def _begin(
    parent: int,
    scratch: str | None,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
) -> None:
    """What a helper process runs first: its end with ``parent`` armed, then ``initializer``."""
    remove_scratch = None
    if scratch is not None:
        os.environ["TMPDIR"] = tempfile.tempdir = scratch
        remove_scratch = functools.partial(shutil.rmtree, scratch, ignore_errors=True)
        exit_with_parent(before=remove_scratch)  # not killed outright: it removes it first
    elif not killed_with_parent():
        exit_with_parent()  # within WATCH_S: the best elsewhere
    if os.getppid() != parent:  # gone before either was in place: neither would see it
        if remove_scratch is not None:
            remove_scratch()
        os._exit(1)
    if initializer is not None:
        initializer(*initargs)


async def start_piped(module: str) -> asyncio.subprocess.Process:
    """Start ``python -m module`` as a helper process, with pipes to its stdin and stdout.

    For a helper that runs as long as it is wanted and talks both ways while it does, which
    :class:`HelperProcess`'s one call at a time cannot carry. The module ends with its parent
    itself: its stdin ends when the parent does, and it calls :func:`exit_with_parent` in
    case that is not seen. Raises ``OSError`` where the process cannot be started.
    """
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=_importable_environment(),
    )


def _importable_environment() -> dict[str, str]:
    """This process's environment, with the repository importable wherever it was started."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return os.environ | {"PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}
