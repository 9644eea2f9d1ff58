"""WindowReports: the full Evidently report of a window, written beside the example store.

Built off the event loop (the worker runs :meth:`WindowReports.write` in a thread) and only
when a window closes: Evidently takes ~0.2 s for a small window and its HTML is a ~4 MB
self-contained page. Reports go under ``reports/`` of the example store (a folder, or S3
when the store is on S3): ``<window_id>.html`` and ``<window_id>.json``.

The report compares the window's rows with the reference's row sample (up to 1,000 training
rows saved with the model) using Evidently's ``DataDriftPreset`` with its defaults: its
verdicts are for reading, the monitor's own tests (see ``statistics.py``) decide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from driftloop.reference import ReferenceSketch
from driftloop.store import Blobs, LocalBlobs, S3Blobs

PREFIX = "reports"
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def frame(rows: Sequence[Mapping[str, Any]], reference: ReferenceSketch) -> pd.DataFrame:
    """``rows`` as a table of the reference's features, typed as the reference has them."""
    columns = {}
    for name, sketch in reference.features.items():
        values = [row.get(name) for row in rows]
        if sketch.kind == "categorical":
            columns[name] = pd.Series([None if v is None else str(v) for v in values], dtype=object)
        else:
            columns[name] = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    return pd.DataFrame(columns)


class WindowReports:
    """Builds and stores window reports; serves them back by name.

    Parameters:
        blobs: the store's files (see :func:`driftloop.store.store_blobs`).
    """

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs

    def uri(self, name: str) -> str:
        """Where a stored report is, as the drift event's ``report_uri``."""
        if isinstance(self.blobs, S3Blobs):
            prefix = f"{self.blobs.prefix}/" if self.blobs.prefix else ""
            return f"s3://{self.blobs.bucket}/{prefix}{PREFIX}/{name}"
        assert isinstance(self.blobs, LocalBlobs)
        return (self.blobs.root / PREFIX / name).resolve().as_uri()

    def write(
        self, window_id: str, rows: Sequence[Mapping[str, Any]], reference: ReferenceSketch
    ) -> str:
        """Build the report of one window; returns the HTML report's URI. Blocking."""
        from evidently import Report  # imported here: seconds of import, off the start path
        from evidently.presets import DataDriftPreset

        current = frame(rows, reference)
        baseline = frame(reference.sample, reference)
        snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=baseline)
        self.blobs.put(f"{PREFIX}/{window_id}.json", snapshot.json().encode())
        page = snapshot.get_html_str(as_iframe=False)
        self.blobs.put(f"{PREFIX}/{window_id}.html", page.encode())
        return self.uri(f"{window_id}.html")

    def read(self, name: str) -> bytes:
        """A stored report's bytes; KeyError for a name that is not one."""
        if not SAFE_NAME.match(name) or not name.endswith((".html", ".json")):
            raise KeyError(name)
        try:
            return self.blobs.get(f"{PREFIX}/{name}")
        except Exception as error:  # a missing file or S3 key: both mean "no such report"
            raise KeyError(name) from error
