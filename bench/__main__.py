"""Run every benchmark: ``python -m bench`` (``make bench``).

Each runs in a process of its own, as ``python -m bench.<name>`` would: no benchmark inherits
another's process-wide state (MLflow's tracking and registry URIs, TensorFlow's graphs, memory),
and one that fails does not stop the others; the exit status says whether any failed.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import bench

if __name__ == "__main__":
    failed = []
    for module in sorted(m.name for m in pkgutil.iter_modules(bench.__path__)):
        if module in {"report", "__main__"}:
            continue
        print(f"=== bench.{module}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{module}"], check=False).returncode:
            failed.append(module)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
