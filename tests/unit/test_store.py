"""ExampleStore on a local folder: layout, manifests, dedupe across restarts, exact rebuilds,
a contract's fixed schema, and windows of files that disagree on types."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.contract import FeatureContract, FeatureSpec, fits
from driftloop.services.ingest.join import example_id
from driftloop.store import CorruptWindow, ExampleStore


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


# --- types: a contract's fixed schema, and windows of files that disagree ---------------------

LOANS = FeatureContract(
    model_name="m", version=2, source="declared", task="classification", classes=[0, 1],
    features=[
        FeatureSpec(name="amount", type="float"),
        FeatureSpec(name="term", type="int"),
        FeatureSpec(name="grade", kind="categorical", nullable=True),
        FeatureSpec(name="verified", kind="boolean"),
    ],
)  # fmt: skip


def loan(i: int, **changes: Any) -> dict[str, Any]:
    features = {"amount": 1000.0 + i, "term": 36, "grade": "A", "verified": i % 2 == 0}
    return example(i, **(features | changes))


def test_a_contract_fixes_every_column_type_whatever_a_batch_holds(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    rows = [
        loan(1, term=60.0, amount=12),  # an int as 60.0, a float as 12: JSON numbers
        loan(2, grade=None, verified=True) | {"prediction": "yes"},  # not a label: null
        loan(3, term="36 months", verified="true", extra="not in the contract"),
        example(4, x=1.5) | {"model_name": "other"},  # no contract: typed as today
    ]
    manifests = store.write(rows, contracts={"m": LOANS}) or []
    assert [(m.model_name, m.contract_version, m.rows) for m in manifests] == [
        ("m", 2, 3),
        ("other", None, 1),
    ]
    table = store.read([manifests[0]])
    assert table.schema == LOANS.arrow_schema()
    assert table.column("feature.term").to_pylist() == [60, 36, None]
    assert table.column("feature.amount").to_pylist() == [12.0, 1002.0, 1003.0]
    assert table.column("feature.verified").to_pylist() == [False, True, None]
    assert table.column("feature.grade").to_pylist() == ["A", None, "A"]
    assert table.column("prediction").to_pylist() == [1, None, 1]
    assert str(table.schema.field("label").type) == "int64"
    # One batch of nothing but nulls for a column changes nothing either.
    [again] = store.write([loan(9, grade=None)], contracts={"m": LOANS}) or []
    assert store.read([again]).schema == LOANS.arrow_schema()


def test_a_window_of_files_that_disagree_on_types_is_read_as_sent(tmp_path: Path) -> None:
    """Files written before contracts: a string amount, a boolean as text, a string label."""
    store = ExampleStore(tmp_path)
    old = store.write(
        [loan(1, amount="12,000", verified="yes") | {"label": "no"}, loan(2, amount=5.5)]
    )  # amount mixes a string and a number: JSON text; verified is all text; label strings
    numbers = store.write([loan(i, verified=True) for i in range(3, 6)])
    assert old and numbers
    tables = [store.read([m]) for m in (*old, *numbers)]
    assert {str(t.schema.field("feature.amount").type) for t in tables} == {"string", "double"}
    with pytest.raises(pa.ArrowTypeError, match="incompatible types"):  # what the trainer met
        pa.concat_tables(tables, promote_options="permissive")

    frame = store.read_frame(store.manifests())
    assert frame["feature.amount"].tolist() == ["12,000", 5.5, 1003.0, 1004.0, 1005.0]
    assert frame["feature.verified"].tolist() == ["yes", True, True, True, True]
    assert frame["label"].tolist() == ["no", 1, 0, 1, 0]
    assert [type(v) for v in frame["feature.term"]] == [int] * 5
    assert str(frame["event_time"].dtype).startswith("datetime64")

    table = store.read(store.manifests())  # the table too: conflicting columns as JSON text
    assert table.column("feature.amount").to_pylist()[:3] == ['"12,000"', "5.5", "1003.0"]
    assert table.column("label").to_pylist()[:3] == ['"no"', "1", "0"]


def test_a_window_with_a_contract_file_and_an_old_file_is_read_as_sent(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    store.write([loan(1, term="36 months") | {"label": "yes"}])  # before contracts
    store.write([loan(2, grade=None), loan(3)], contracts={"m": LOANS})
    frame = store.read_frame(store.manifests())
    assert frame["feature.term"].tolist() == ["36 months", 36, 36]
    assert frame["feature.grade"].tolist() == ["A", None, "A"]
    assert frame["label"].tolist() == ["yes", 1, 0]


def test_a_plain_text_column_is_not_taken_for_json(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    store.write([example(1, code="3"), example(2, code="4"), example(3, code="null")])
    store.write([example(4, code=5), example(5, code='"quoted"')])
    assert store.read_frame(store.manifests())["feature.code"].tolist() == [
        "3", "4", "null", 5, '"quoted"'
    ]  # fmt: skip


def test_reading_checks_hashes_as_before(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    [manifest] = store.write([loan(1)], contracts={"m": LOANS}) or []
    (tmp_path / manifest.file).write_bytes(b"tampered")
    with pytest.raises(CorruptWindow, match="sha256"):
        store.read_frame([manifest])
    assert store.read_frame([]).empty


def test_an_integer_past_int64_no_longer_fails_a_write(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path)
    store.write([example(1, big=2**70), example(2, big=1)])
    # Stored as text, as a mixed column is; numbers alone in it cannot be told from text.
    assert store.read_frame(store.manifests())["feature.big"].tolist() == [str(2**70), "1"]


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-1000, 1000).map(float),  # integral floats: 36.0
    st.sampled_from(["A", "B", "12,000", "N/A", "", "36 months"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(JSON_VALUES, JSON_VALUES, JSON_VALUES, JSON_VALUES), min_size=1))
def test_a_contract_file_holds_each_value_that_fits_and_null_for_the_rest(
    values: list[tuple[Any, Any, Any, Any]],
) -> None:
    rows = [
        loan(i, amount=a, term=t, grade=g) | {"prediction": p}
        for i, (a, t, g, p) in enumerate(values)
    ]
    with tempfile.TemporaryDirectory() as folder:
        store = ExampleStore(folder)
        manifests = store.write(rows, contracts={"m": LOANS}) or []
        table = store.read(manifests)
    assert table.schema == LOANS.arrow_schema()
    stored = {row["request_id"]: row for row in table.to_pylist()}
    for row in rows:
        kept = stored[row["request_id"]]
        for column, kind, sent in (
            ("feature.amount", "float", row["features"]["amount"]),
            ("feature.term", "int", row["features"]["term"]),
            ("feature.grade", "string", row["features"]["grade"]),
            ("prediction", "int", row["prediction"]),
        ):
            value = kept[column]
            if sent is None or not fits(kind, sent):
                assert value is None, (column, sent, value)
            else:  # a float column holds the nearest double of an integer
                python = {"float": float, "int": int, "string": str}[kind]
                assert value == python(sent) and type(value) is python, (column, sent, value)
