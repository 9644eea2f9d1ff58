"""The image's HEALTHCHECK: is the service this container runs ready?

One image runs every service (`driftloop run <service>`), so the check reads the service from
the container's command line (PID 1, or its child under an init) and asks that service's own
readiness endpoint on its configured port. Exit 0 when it answers 200, 1 otherwise; a
container that runs no driftloop service (a one-shot bootstrap) has nothing to check: 0.
"""

from __future__ import annotations

import itertools
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

# service: (port variable, default port, readiness path); the ports are the settings'.
READINESS = {
    "serve": ("DRIFTLOOP_SERVE_PORT", 8080, "/health/ready"),
    "ingest": ("DRIFTLOOP_INGEST_PORT", 8081, "/health/ready"),
    "monitor": ("DRIFTLOOP_MONITOR_PORT", 8083, "/health/ready"),
    "trainer": ("DRIFTLOOP_TRAINER_PORT", 8084, "/health/ready"),
}


def service_of(argv: list[str]) -> str | None:
    """The service named after ``run`` in ``argv``, if any."""
    for before, after in itertools.pairwise(argv):
        if before == "run" and after in READINESS:
            return after
    return None


def running_service() -> str | None:
    """The service of PID 1, or of the first process that runs one (under tini/docker-init)."""
    for pid in ["1", *sorted(p.name for p in Path("/proc").iterdir() if p.name.isdigit())]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if service := service_of(argv):
            return service
    return None


def main() -> int:
    service = running_service()
    if service is None:
        return 0
    variable, default, path = READINESS[service]
    url = f"http://127.0.0.1:{os.environ.get(variable, default)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"{service} not ready at {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
