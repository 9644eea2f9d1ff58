"""A background server process tracked by a pid file, so that `up`, `down` and `status` can
run from separate commands."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from driftloop.errors import StackError

# Below Linux's ephemeral range (32768-60999 by default): a port the kernel hands to an
# outgoing connection (a Kafka or HTTP client's) cannot be taken between the moment a port is
# chosen here and the moment the service binds it.
PRIVATE_PORTS = range(20_000, 32_768)


def free_port() -> int:
    """A port nobody listens on now (for private stacks: tests, benchmarks), chosen at random
    below the ephemeral range."""
    for _ in range(200):
        port = random.choice(PRIVATE_PORTS)
        if port_is_free(port):
            return port
    with socket.socket() as probe:  # every try taken: whatever the kernel gives
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, what: str, setting: str) -> None:
    if not port_is_free(port):
        raise StackError(
            f"port {port} for {what} is taken by another process; "
            f"stop it or set DRIFTLOOP_{setting} to a free port"
        )


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own exited child; otherwise it would linger as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True  # no procfs (macOS): kill(0) said it exists
    return state != "Z"


class ManagedProcess:
    """One server process: started detached, found again through ``<run_dir>/<name>.pid``.

    Parameters:
        name: short name, used for the pid and log files.
        run_dir: folder for the pid file and the log file.
        marker: a string the process's command line contains; a pid file whose pid now
            belongs to another program (pid reuse after a reboot) is then ignored.
    """

    def __init__(self, name: str, run_dir: Path, marker: str) -> None:
        self.name = name
        self.pidfile = run_dir / f"{name}.pid"
        self.logfile = run_dir / f"{name}.log"
        self.marker = marker
        self._child: subprocess.Popen[bytes] | None = None

    def pid(self) -> int | None:
        """The pid of the running process, or None."""
        if self._child is not None:
            # Our own child: ask it directly (its command line is the parent's until exec).
            return self._child.pid if self._child.poll() is None else None
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if not _alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            return pid
        return pid if self.marker in cmdline else None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # outlives the CLI that started it; ^C does not reach it
            )
        self.pidfile.write_text(f"{process.pid}\n")
        self._child = process
        return process.pid

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until it is true; fail early, with the log's tail, if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(f"{what} exited while starting; last log lines:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.25)
        raise StackError(f"{what} did not answer within {timeout:.0f} s; see {self.logfile}")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout``; False if not running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        if self._child is not None:
            self._child.wait()
            self._child = None
        self.pidfile.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
