"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from __future__ import annotations

import importlib
import pkgutil

import bench

if __name__ == "__main__":
    for module in sorted(m.name for m in pkgutil.iter_modules(bench.__path__)):
        if module not in {"report", "__main__"}:
            importlib.import_module(f"bench.{module}").main([])
