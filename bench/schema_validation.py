"""Event validation throughput: driftloop's compiled schemas against the jsonschema library.

Every consumer validates every record, so this is a floor under ingest's events/s. The
baseline is ``jsonschema``'s Draft 2020-12 validator, built once per schema (its fastest use),
on the same events in the same run. Also measured: fastjsonschema alone (parse, then the
compiled Python check), what ``EventSchemas.decode`` did before msgspec's fast check.

    python -m bench.schema_validation [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import jsonschema
import orjson

from bench.report import write
from driftloop.events import EventType
from driftloop.schemas import EventSchemas
from driftloop.settings import REPO_ROOT

TYPES = (EventType.PREDICTION, EventType.LABEL, EventType.LABELLED_EXAMPLE)


def rate(check: Callable[[], None], seconds: float) -> float:
    """Calls per second of ``check``, over at least ``seconds``."""
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(200):
            check()
        calls += 200
    return calls / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args(argv)

    schemas = EventSchemas()
    rows = []
    ratios = {}
    for event_type in TYPES:
        example = json.loads(
            (REPO_ROOT / "schemas/examples" / f"{event_type.schema_name}.valid.json").read_text()
        )[0]
        payload = orjson.dumps(example)
        baseline = jsonschema.Draft202012Validator(
            schemas.schema(event_type), format_checker=jsonschema.FormatChecker()
        )
        ours = rate(lambda t=event_type, p=payload: schemas.decode(t, p), args.seconds)
        theirs = rate(lambda p=payload, v=baseline: v.validate(orjson.loads(p)), args.seconds)
        compiled = schemas._validator(event_type)
        python = rate(lambda p=payload, v=compiled: v(orjson.loads(p)), args.seconds)
        rows.append(
            {
                "event": event_type.schema_name,
                "driftloop_events_per_s": ours,
                "jsonschema_events_per_s": theirs,
                "fastjsonschema_events_per_s": python,
                "driftloop_us_per_event": 1e6 / ours,
            }
        )
        ratios[f"{event_type.schema_name} driftloop / jsonschema"] = ours / theirs
        ratios[f"{event_type.schema_name} driftloop / fastjsonschema alone"] = ours / python
    write(
        "schema_validation",
        rows,
        baseline="jsonschema Draft202012Validator with FormatChecker, same events (parse + check)",
        ratios=ratios,
        packages=("fastjsonschema", "jsonschema", "orjson", "msgspec"),
        notes="driftloop: msgspec's check while parsing, then orjson for the dict (fastjsonschema "
        "only for what msgspec refuses); the others parse with orjson, then validate.",
    )


if __name__ == "__main__":
    main()
