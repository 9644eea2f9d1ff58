"""`driftloop up` and `driftloop down`: the stack and the four services, left running.

``up`` starts the local stack (or reuses it), then ingest, monitor, trainer and serve as
background processes with the settings of the environment (``DRIFTLOOP_*``, ``.env``); their
pid files and logs are in ``<state_dir>/services/``. It returns once ingest, monitor and
trainer are ready and serve answers; serve is ready once a champion exists (the trainer fits
the first model when ``TRAINER_MIN_EXAMPLES`` labelled examples are in the store, or on a
``manual`` trigger). ``down`` stops the services, then the stack.
"""

from __future__ import annotations

from collections.abc import Callable

from driftloop.loop.services import ServiceSupervisor
from driftloop.stack import LocalStack, LocalStackSettings

Say = Callable[[str], None]


def up(settings: LocalStackSettings, say: Say = print, timeout: float = 180.0) -> ServiceSupervisor:
    """Start the stack and the services; returns their supervisor."""
    outcome = LocalStack(settings).up()
    say(f"kafka: {outcome['kafka']}, mlflow: {outcome['mlflow']}")
    supervisor = ServiceSupervisor(settings)
    pids = supervisor.start_all()
    for service in ("ingest", "monitor", "trainer"):
        supervisor.wait(service, timeout)
    supervisor.wait("serve", timeout, ready=False)
    for service, pid in pids.items():
        state = "ready" if supervisor.ready(service) else "waiting for a champion"
        say(f"{service}: {state} at {supervisor.url(service)} (pid {pid})")
    return supervisor


def down(settings: LocalStackSettings, say: Say = print) -> None:
    """Stop the services (serve first), then the stack."""
    for service, was in ServiceSupervisor(settings).stop_all().items():
        say(f"{service}: {'stopped' if was else 'not running'}")
    for name, state in LocalStack(settings).down().items():
        say(f"{name}: {state}")
