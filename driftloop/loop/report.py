"""The demo's report: one self-contained HTML page built from a :class:`Timeline` alone.

The page holds a timeline plot (rolling accuracy of the served predictions; the injected drift,
the monitor's drift events and triggers, the trainer's promotions and serve's swaps marked;
the model version that answered shaded), a summary table (:func:`summarize`) and the list of
loop events. The plot is a PNG embedded as base64, so the page opens anywhere with no files
beside it.

Example:
    >>> from driftloop.loop.timeline import Timeline
    >>> timeline = Timeline(started=0.0)
    >>> timeline.serve(t=1.0, version="1", correct=True)
    >>> "<html" in render(timeline)
    True
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftloop.loop.timeline import (
    Timeline,
    rolling_accuracy,
    summarize,
    version_label,
    version_spans,
)

MARKERS = {
    "drift": ("#d62728", "--", "drift event"),
    "trigger": ("#ff7f0e", ":", "trigger"),
    "recall": ("#9467bd", ":", "recall"),
    "fit": ("#8c8c8c", (0, (1, 3)), "fit done"),
    "promotion": ("#2ca02c", "-.", "promotion"),
    "challenger": ("#17becf", ":", "challenger in shadow"),
    "rollback": ("#e377c2", "-.", "rollback"),
    "answerer": ("#bcbd22", (0, (3, 1, 1, 1)), "answerer switch"),
    "swap": ("#1f77b4", "-", "swap"),
}
SHADES = ("#f2f2f2", "#dde8f5", "#e3f1e0", "#f7e8d8", "#ece3f3", "#f5f1d6")


def plot(timeline: Timeline, window: int = 200) -> bytes:
    """The timeline as PNG bytes: rolling accuracy over seconds since the start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(11, 4.2), dpi=110)
    t0 = timeline.started
    served = timeline.served
    for i, (version, start, end) in enumerate(version_spans(served)):
        axes.axvspan(start - t0, end - t0, color=SHADES[i % len(SHADES)], lw=0)
        axes.text(
            (start + end) / 2 - t0, 0.02, version_label(version), ha="center", va="bottom",
            fontsize=9,
        )  # fmt: skip
    if served:
        axes.plot(
            [row.t - t0 for row in served],
            rolling_accuracy(served, window),
            color="black",
            lw=1.4,
            label=f"rolling accuracy ({window} answers)",
        )
    for drift in timeline.drifts:
        axes.axvline(drift.t - t0, color="#7f0000", lw=2.5, alpha=0.5)
        axes.text(drift.t - t0, 1.01, f"{drift.kind} drift injected", fontsize=8, rotation=0)
    shown: set[str] = set()
    for event in timeline.events:
        color, style, label = MARKERS[event.kind]
        axes.axvline(
            event.t - t0,
            color=color,
            ls=style,
            lw=1.2,
            label=None if event.kind in shown else label,
        )
        shown.add(event.kind)
    axes.set_ylim(0, 1.08)
    axes.set_xlabel("seconds since the start")
    axes.set_ylabel("accuracy of served predictions")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.9)
    axes.grid(alpha=0.25)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, list):
        return " → ".join(map(version_label, value))
    return html.escape(str(value))


def render(timeline: Timeline, title: str = "driftloop: the closed loop") -> str:
    """The whole report as an HTML string."""
    figures = summarize(timeline)
    picture = base64.b64encode(plot(timeline)).decode()
    rows = "\n".join(
        f"<tr><th>{html.escape(name.replace('_', ' '))}</th><td>{_cell(value)}</td></tr>"
        for name, value in figures.items()
    )
    t0 = timeline.started
    events = sorted(
        [(d.t, "injected drift", None, f"{d.kind} at event {d.index}") for d in timeline.drifts]
        + [(e.t, e.kind, e.version, e.detail) for e in timeline.events]
    )
    event_rows = "\n".join(
        f"<tr><td>{t - t0:.1f}</td><td>{html.escape(kind)}</td>"
        f"<td>{'-' if version is None else version_label(version)}</td>"
        f"<td>{html.escape(detail)}</td></tr>"
        for t, kind, version, detail in events
    )
    verdict = (
        "The served model recovered after the drift with no human step."
        if figures.get("recovered")
        else "The loop did not show a recovery in this run: see the events below."
    )
    when = datetime.fromtimestamp(t0, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222 }}
table {{ border-collapse: collapse; margin: 1em 0 }}
th, td {{ border: 1px solid #ccc; padding: 3px 10px; text-align: left; font-size: 14px }}
th {{ background: #f6f6f6; font-weight: 600 }}
img {{ max-width: 100% }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Run started {when}; stream: {html.escape(timeline.stream or "-")}. {verdict}</p>
<img alt="rolling accuracy with drift, triggers, promotions and swaps marked"
     src="data:image/png;base64,{picture}">
<h2>Summary</h2>
<table>{rows}</table>
<h2>Loop events</h2>
<table><tr><th>s</th><th>what</th><th>version</th><th>detail</th></tr>
{event_rows}
</table>
</body></html>
"""


def write(timeline: Timeline, path: Path) -> Path:
    """Write the report to ``path`` and the recording beside it (``<path>.json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(timeline))
    path.with_suffix(".json").write_text(timeline.to_json())
    return path
