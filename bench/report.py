"""What every benchmark reports: a table on stdout and a JSON file with the machine."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

OUT = Path("out/bench")


def machine() -> dict[str, Any]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(pages / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


# One package under several distribution names: the first installed one is reported.
FLAVOURS = {"tensorflow": ("tensorflow", "tensorflow-cpu")}


def versions(*packages: str) -> dict[str, str]:
    found = {}
    for package in ("driftloop", *packages):
        found[package] = "not installed"
        for distribution in FLAVOURS.get(package, (package,)):
            try:
                found[package] = version(distribution)
            except PackageNotFoundError:
                continue
            if distribution != package:
                found[package] += f" ({distribution})"
            break
    return found


def write(
    name: str,
    rows: list[dict[str, Any]],
    baseline: str,
    ratios: dict[str, float],
    packages: tuple[str, ...] = (),
    notes: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Print ``rows`` as a table and write them, with the context, to out/bench/<name>.json."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print(f"\n{name} (baseline: {baseline})")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row[c]).ljust(widths[c]) for c in columns))
    for label, ratio in ratios.items():
        print(f"{label}: {ratio:.2f}x")
    for label, value in (extra or {}).items():
        print(f"{label}: {value}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    document = {
        "benchmark": name,
        "baseline": baseline,
        "rows": rows,
        "ratios": ratios,
        "notes": notes,
        **(extra or {}),
        "versions": versions(*packages),
        "machine": machine(),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"
    return str(value)
