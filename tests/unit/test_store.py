"""ExampleStore on a local folder: layout, manifests, dedupe across restarts, exact rebuilds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftloop.store import CorruptWindow, ExampleStore
from services.ingest.join import example_id


def example(i: int, hour: int = 10, **features: Any) -> dict[str, Any]:
    time = f"2026-11-22T{hour:02d}:{i % 60:02d}:00Z"
    return {
        "schema_version": 1,
        "event_id": example_id(f"r{i}"),
        "event_time": time,
        "request_id": f"r{i}",
        "model_name": "m",
        "model_version": "1",
        "features": features or {"x": float(i), "colour": "red"},
        "prediction": i % 2,
        "label": (i + 1) % 2,
        "prediction_time": time,
        "label_time": time,
    }


def test_rows_land_in_hour_partitions_with_a_manifest_each(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    manifests = store.write(
        [example(1, hour=10), example(2, hour=11), example(3, hour=10)],
        offsets={"driftloop.labels:0": [5, 9]},
    )
    assert manifests is not None
    assert [m.rows for m in manifests] == [2, 1]
    assert manifests[0].file.startswith("examples/date=2026-11-22/hour=10/part-")
    assert manifests[0].offsets == {"driftloop.labels:0": [5, 9]}
    assert (manifests[0].first_event_time, manifests[0].last_event_time) == (
        "2026-11-22T10:01:00Z",
        "2026-11-22T10:03:00Z",
    )
    for manifest in manifests:
        assert (tmp_path / manifest.file).exists()
        assert (tmp_path / manifest.file.replace(".parquet", ".manifest.json")).exists()
    table = store.read(store.manifests())
    assert sorted(table.column("request_id").to_pylist()) == ["r1", "r2", "r3"]
    assert table.column("feature.x").to_pylist() == [1.0, 3.0, 2.0]


def test_a_row_is_stored_once_even_after_a_restart(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    store.write([example(i) for i in range(10)])
    assert store.write([example(i) for i in range(5)]) is None, "all seen: nothing written"

    restarted = ExampleStore(tmp_path)  # a new process: ids come back from the files
    written = restarted.write([example(i) for i in range(8, 14)])
    assert written is not None and sum(m.rows for m in written) == 4
    table = restarted.read(restarted.manifests())
    assert table.num_rows == 14
    assert len(set(table.column("event_id").to_pylist())) == 14


def test_ids_are_remembered_for_the_horizon_while_running_then_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-running writer keeps the ids of the horizon, as a restarted one loads them, and
    no more: what it remembers does not grow with everything it ever wrote."""
    clock = [1_800_000_000.0]
    monkeypatch.setattr("driftloop.store.time.time", lambda: clock[0])
    store = ExampleStore(tmp_path, dedupe_horizon_s=3600)
    store.write([example(i) for i in range(5)])
    clock[0] += 1800
    store.write([example(i) for i in range(5, 10)])
    assert store.write([example(0), example(9)]) is None, "within the horizon: dropped"

    clock[0] += 1801  # the first write is past the horizon, the second is not
    again = store.write([example(0), example(9)])
    assert again is not None and sum(m.rows for m in again) == 1  # r0 again; r9 dropped
    assert len(store._ids) == 5 + 1  # the second write's ids and r0's, nothing older


def test_a_window_rebuilds_byte_for_byte_from_its_manifests(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    for start in (0, 20, 40):
        store.write([example(i) for i in range(start, start + 20)])
    window = store.manifests(since="2026-11-22T10:10:00Z", until="2026-11-22T10:45:00Z")
    assert len(window) == 3

    again = ExampleStore(tmp_path)
    assert again.window_hash(
        again.manifests(since="2026-11-22T10:10:00Z", until="2026-11-22T10:45:00Z")
    ) == (store.window_hash(window))
    assert again.read(window).equals(store.read(window))

    # The same rows written anywhere else make the same bytes.
    elsewhere = ExampleStore(tmp_path / "copy")
    copy = elsewhere.write([example(i) for i in range(20)])
    assert copy is not None and copy[0].sha256 == store.manifests()[0].sha256


def test_a_changed_file_is_caught(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    [manifest] = store.write([example(i) for i in range(5)]) or []
    (tmp_path / manifest.file).write_bytes(b"tampered")
    with pytest.raises(CorruptWindow, match="sha256"):
        store.read([manifest])
    (tmp_path / manifest.file).unlink()
    with pytest.raises(CorruptWindow, match="missing"):
        store.read([manifest])


def test_a_feature_with_mixed_types_is_kept_as_text(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    store.write([example(1, size=3), example(2, size="large"), example(3, other=True)])
    table = store.read(store.manifests())
    assert table.column("feature.size").to_pylist() == ["3", '"large"', None]
    assert table.column("feature.other").to_pylist() == [None, None, True]


def test_files_without_a_manifest_are_not_part_of_the_store(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    store.write([example(1)])
    stray = tmp_path / "examples/date=2026-11-22/hour=10/part-crashed.parquet"
    stray.write_bytes(b"half a file")
    assert len(ExampleStore(tmp_path).manifests()) == 1


def test_times_in_any_rfc3339_form_land_in_their_utc_hour_in_time_order(tmp_path: Path) -> None:
    # Arrow parses the common forms; a fraction finer than a microsecond, a lower-case z or a
    # leap second (folded into the next second) fall back to Python.
    rows = [
        example(1) | {"event_time": "2026-11-22T12:30:00.5+02:00"},  # 10:30:00.5 UTC
        example(2) | {"event_time": "2026-11-22T10:10:00.1234567Z"},
        example(3) | {"event_time": "2026-11-22T10:20:00Z"},
        example(4) | {"event_time": "2026-11-22T11:59:59.999999-01:00"},  # 12:59 UTC
        example(5) | {"event_time": "2026-11-22T13:59:60.5z"},  # 14:00:00.5 UTC
    ]
    manifests = ExampleStore(tmp_path).write(rows)
    assert manifests is not None
    assert [m.file.split("/")[2] for m in manifests] == ["hour=10", "hour=12", "hour=14"]
    assert (manifests[0].first_event_time, manifests[0].last_event_time) == (
        "2026-11-22T10:10:00.1234567Z",
        "2026-11-22T12:30:00.5+02:00",
    )
    table = ExampleStore(tmp_path).read(manifests[:1])
    assert table.column("request_id").to_pylist() == ["r2", "r3", "r1"]
    assert str(table.schema.field("event_time").type) == "timestamp[us, tz=UTC]"
