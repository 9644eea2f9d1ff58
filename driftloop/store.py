"""ExampleStore: labelled examples as Parquet files with a manifest each, on disk or on S3.

Layout, partitioned by the examples' event time::

    <root>/examples/date=2026-11-22/hour=10/part-<first event>-<hash>.parquet
    <root>/examples/date=2026-11-22/hour=10/part-<first event>-<hash>.manifest.json

A file is written first and its manifest second; a file without a manifest is not part of the
store. The manifest holds the row count, the file's SHA-256, the event-time range and the
source offsets the rows came from, so a training window named by its manifests can be read
back byte for byte, and checked. Rows are deduplicated by ``event_id`` (which the join derives
from the request id), within the files of the last ``dedupe_horizon_s`` and across restarts;
the ids of that horizon are all it keeps in memory.

Types. A model with a :class:`~driftloop.contract.FeatureContract` has its rows written with
the contract's Arrow schema (:func:`contract_table`), one file per hour and model: a column's
type is the contract's in every file, whatever one batch holds (a value that does not fit it
is stored as null). Without a contract a file's columns take the types Arrow infers from its
rows (:func:`to_table`), as files written before contracts did, so two files may disagree on a
column; :meth:`ExampleStore.read_frame` reads such a window anyway, each value as it was sent.

Example:
    >>> import tempfile
    >>> from driftloop.contract import FeatureContract, FeatureSpec
    >>> store = ExampleStore(tempfile.mkdtemp())
    >>> store.write([]) is None
    True
    >>> contract = FeatureContract(model_name="m", version=1, task="classification",
    ...     classes=[0, 1], features=[FeatureSpec(name="term", type="int"),
    ...                               FeatureSpec(name="verified", kind="boolean")])
    >>> row = {"event_id": "e1", "request_id": "r1", "model_name": "m", "model_version": "1",
    ...        "event_time": "2026-11-22T10:00:00Z", "prediction_time": "2026-11-22T10:00:00Z",
    ...        "label_time": "2026-11-22T10:00:01Z", "prediction": "yes", "label": 1,
    ...        "features": {"term": 36.0, "verified": True}}
    >>> [manifest] = store.write([row], contracts={"m": contract})
    >>> manifest.model_name, manifest.contract_version
    ('m', 1)
    >>> store.read_frame([manifest])[["feature.term", "feature.verified", "prediction"]]
       feature.term  feature.verified prediction
    0            36              True       None
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import boto3
import orjson

# pyarrow imports pandas on its first conversion (to recognise pandas inputs): imported here,
# that second is spent when a service starts, not inside its first write.
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.contract import ARROW_TYPES, FeatureContract, fits
from driftloop.events import epoch, parse_time
from driftloop.settings import Settings

PREFIX = "examples"
# Offsets of the source records a file was built from: {"topic:partition": [first, last]}.
OffsetRanges = dict[str, list[int]]


class Blobs(Protocol):
    """Where the store's bytes live: a folder or an S3 prefix."""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def keys(self, prefix: str) -> list[str]: ...


class LocalBlobs:
    """A folder; each write is atomic (temporary file, fsync, rename) and durable."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        found = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(key for key in found if not Path(key).name.startswith("."))


class S3Blobs:
    """An S3 bucket and prefix through boto3; a PUT is durable once S3 answers it."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())

    def keys(self, prefix: str) -> list[str]:
        found = []
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            found += [item["Key"] for item in page.get("Contents", [])]
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(key[strip:] for key in found)


@dataclass(frozen=True)
class Manifest:
    """What one Parquet file holds."""

    file: str
    rows: int
    sha256: str
    bytes: int
    first_event_time: str
    last_event_time: str
    offsets: OffsetRanges
    written_at: str
    columns: list[str] = field(default_factory=list)
    # Set when the file holds one model's rows; with contract_version, in its contract's schema.
    model_name: str | None = None
    contract_version: int | None = None

    # builtins.bytes: the field `bytes` shadows the type's name in this class.
    def to_json(self) -> builtins.bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: builtins.bytes) -> Manifest:
        return cls(**orjson.loads(data))


class CorruptWindow(Exception):
    """A file named by a manifest is missing or its bytes no longer match the manifest."""


class ExampleStore:
    """Append-only store of labelled examples, deduplicated by ``event_id``.

    Parameters:
        blobs: a :class:`Blobs`, or a folder path for :class:`LocalBlobs`.
        dedupe_horizon_s: how long (by write time) the ids of stored rows are remembered, from
            the files at start and from each write after, to drop rows that a restarted
            consumer writes again; the join's TTL is enough, since a request joins at most
            once within it.
    """

    def __init__(self, blobs: Blobs | str | Path, dedupe_horizon_s: float = 7 * 86_400) -> None:
        self.blobs: Blobs = blobs if not isinstance(blobs, str | Path) else LocalBlobs(Path(blobs))
        self.dedupe_horizon_s = dedupe_horizon_s
        self._ids: set[str] = set()  # the event ids stored within the horizon
        self._written: deque[tuple[float, list[str]]] = deque()  # (when, ids), oldest first
        self._load_recent_ids()

    # --- writing -------------------------------------------------------------------------

    def write(
        self,
        examples: Sequence[Mapping[str, Any]],
        offsets: OffsetRanges | None = None,
        contracts: Mapping[str, FeatureContract] | None = None,
    ) -> list[Manifest] | None:
        """Store ``examples`` not stored before, one file per event-time hour; durable on return.

        Parameters:
            examples: labelled examples (the examples topic's events).
            offsets: the source offsets they came from, recorded in each manifest.
            contracts: the contract in force per model name. When given, each file holds one
                model's rows (one file per hour and model), and a model with a contract has
                them written in its contract's schema (:func:`contract_table`); the others as
                :func:`to_table` types them.

        Returns the manifests written, or None when every example was already stored.
        """
        now = time.time()
        self._forget_before(now - self.dedupe_horizon_s)
        stored = self._ids
        fresh: dict[str, Mapping[str, Any]] = {}
        for example in examples:
            if example["event_id"] not in stored:
                fresh.setdefault(example["event_id"], example)
        if not fresh:
            return None
        groups: dict[tuple[str, str | None], list[Mapping[str, Any]]] = {}
        for example in fresh.values():
            model = None if contracts is None else example["model_name"]
            groups.setdefault((_hour(example["event_time"]), model), []).append(example)
        manifests = [
            self._write_file(
                hour, rows, offsets or {}, model, (contracts or {}).get(model) if model else None
            )
            for (hour, model), rows in sorted(groups.items(), key=lambda item: _group_key(item[0]))
        ]
        self._remember(list(fresh), now)
        return manifests

    def _remember(self, ids: list[str], written: float) -> None:
        self._ids.update(ids)
        self._written.append((written, ids))

    def _forget_before(self, horizon: float) -> None:
        while self._written and self._written[0][0] < horizon:
            self._ids.difference_update(self._written.popleft()[1])

    def _write_file(
        self,
        hour: str,
        rows: list[Mapping[str, Any]],
        offsets: OffsetRanges,
        model: str | None = None,
        contract: FeatureContract | None = None,
    ) -> Manifest:
        table = to_table(rows) if contract is None else contract_table(rows, contract)
        # In event-time order, ties by id: the same rows always make the same file.
        order = pc.sort_indices(
            table, sort_keys=[("event_time", "ascending"), ("event_id", "ascending")]
        )
        table = table.take(order)
        first, last = rows[order[0].as_py()], rows[order[-1].as_py()]
        buffer = io.BytesIO()
        # Fixed writer options: the same rows always make the same bytes. No dictionary
        # encoding: most columns are unique per row (ids, times), where it is wasted work;
        # without it a file was a quarter smaller and written in 60% of the time.
        pq.write_table(
            table, buffer, compression="zstd", write_statistics=True, use_dictionary=False
        )
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        start = _utc(first["event_time"])
        name = f"{PREFIX}/{hour}/part-{start:%Y%m%dT%H%M%S%f}-{digest[:16]}.parquet"
        manifest = Manifest(
            file=name,
            rows=len(rows),
            sha256=digest,
            bytes=len(data),
            first_event_time=first["event_time"],
            last_event_time=last["event_time"],
            offsets=offsets,
            written_at=datetime.now(UTC).isoformat(),
            columns=table.column_names,
            model_name=model,
            contract_version=None if contract is None else contract.version,
        )
        self.blobs.put(name, data)
        self.blobs.put(_manifest_key(name), manifest.to_json())
        return manifest

    # --- reading -------------------------------------------------------------------------

    def manifests(self, since: str | None = None, until: str | None = None) -> list[Manifest]:
        """Every manifest whose rows overlap ``[since, until]`` (event time), oldest first."""
        found = []
        for key in self.blobs.keys(PREFIX):
            if not key.endswith(".manifest.json"):
                continue
            manifest = Manifest.from_json(self.blobs.get(key))
            if since and epoch(manifest.last_event_time) < epoch(since):
                continue
            if until and epoch(manifest.first_event_time) > epoch(until):
                continue
            found.append(manifest)
        return sorted(found, key=lambda m: (epoch(m.first_event_time), m.file))

    def read(self, manifests: Iterable[Manifest]) -> pa.Table:
        """The rows of the files ``manifests`` name, each checked against its hash.

        Files that disagree on a column's type (files written before contracts: a number in
        one, text in another) are read anyway: that column is then JSON text in every file,
        as :func:`to_table` stores a column of mixed values. :meth:`read_frame` gives the
        values themselves.
        """
        manifests = list(manifests)
        tables = [self._read_file(manifest) for manifest in manifests]
        if not tables:
            return pa.table({})
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            tables = _as_text_where_types_differ(tables, manifests)
            return pa.concat_tables(tables, promote_options="permissive")

    def read_frame(self, manifests: Iterable[Manifest]) -> pd.DataFrame:
        """The rows of the files ``manifests`` name as one frame, each file checked against its
        hash; never fails because files disagree on a column's type.

        Each value is what was sent: a column whose type differs between files (or that some
        files lack) holds Python values (``object``, None where missing), an integer column
        with nulls holds Python ints and None, and a column a file written without a contract
        stored as JSON text because its values mixed types (:func:`to_table`) is decoded.
        Raises :class:`CorruptWindow` as :meth:`read` does.
        """
        frames = [
            _frame(self._read_file(manifest), manifest.contract_version is not None)
            for manifest in manifests
        ]
        return _concat_frames(frames)

    def _read_file(self, manifest: Manifest) -> pa.Table:
        try:
            data = self.blobs.get(manifest.file)
        except (FileNotFoundError, KeyError) as error:
            raise CorruptWindow(f"{manifest.file} is missing") from error
        if hashlib.sha256(data).hexdigest() != manifest.sha256:
            raise CorruptWindow(f"{manifest.file} does not match its manifest's sha256")
        return pq.read_table(io.BytesIO(data))

    @staticmethod
    def window_hash(manifests: Iterable[Manifest]) -> str:
        """One hash for a window: the files' hashes in order."""
        digest = hashlib.sha256()
        for manifest in manifests:
            digest.update(manifest.sha256.encode())
        return digest.hexdigest()

    def _load_recent_ids(self) -> None:
        horizon = time.time() - self.dedupe_horizon_s
        recent = []
        for key in self.blobs.keys(PREFIX):
            if not key.endswith(".manifest.json"):
                continue
            manifest = Manifest.from_json(self.blobs.get(key))
            written = datetime.fromisoformat(manifest.written_at).timestamp()
            if written >= horizon:
                recent.append((written, manifest.file))
        for written, file in sorted(recent):
            ids = pq.read_table(io.BytesIO(self.blobs.get(file)), columns=["event_id"])
            self._remember(ids.column("event_id").to_pylist(), written)


def to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Examples as columns: the ids and times, then one ``feature.<name>`` column per feature.

    Feature, prediction and label columns take the type Arrow infers; a column whose values
    mix types (a number here, a string there) is stored as text, so that no row is lost.
    Rows keep their order.
    """
    names = sorted({name for row in rows for name in row["features"]})
    columns: dict[str, pa.Array] = {
        "event_id": pa.array([r["event_id"] for r in rows], pa.string()),
        "request_id": pa.array([r["request_id"] for r in rows], pa.string()),
        "model_name": pa.array([r["model_name"] for r in rows], pa.string()),
        "model_version": pa.array([r["model_version"] for r in rows], pa.string()),
        "event_time": _timestamps([r["event_time"] for r in rows]),
        "prediction_time": _timestamps([r["prediction_time"] for r in rows]),
        "label_time": _timestamps([r["label_time"] for r in rows]),
        "prediction": _array([r["prediction"] for r in rows]),
        "label": _array([r["label"] for r in rows]),
    }
    for name in names:
        columns[f"feature.{name}"] = _array([r["features"].get(name) for r in rows])
    return pa.table(columns)


def _array(values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # an int past int64 too
        return _text(values)
    # Arrow takes a boolean after a float for a number (false as 0.0): mixed, so text.
    if pa.types.is_floating(array.type) and any(type(v) is bool for v in values):
        return _text(values)
    return array


def _text(values: list[Any]) -> pa.Array:
    """Values as JSON text (null stays null): how a column of mixed types is stored."""
    return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())


def contract_table(rows: Sequence[Mapping[str, Any]], contract: FeatureContract) -> pa.Table:
    """Examples as columns in ``contract``'s schema (:meth:`FeatureContract.arrow_schema`).

    Each value is converted to its column's type (``36.0`` for an integer feature is stored as
    36); one that does not fit it (a prediction of another type than the label's, a feature
    the ingest door would have refused) is stored as null, and features the contract does not
    name are not stored. Rows keep their order.

    Example:
        >>> from driftloop.contract import FeatureSpec
        >>> contract = FeatureContract(task="regression", features=[FeatureSpec(name="x")])
        >>> row = {"event_id": "e", "request_id": "r", "model_name": "m", "model_version": "1",
        ...        "event_time": "2026-11-22T10:00:00Z", "prediction_time": None,
        ...        "label_time": None, "prediction": "high", "label": 2,
        ...        "features": {"x": 1, "extra": "kept out"}}
        >>> contract_table([row], contract).to_pylist()[0]["feature.x"]
        1.0
    """
    schema = contract.arrow_schema()
    label_type = contract.label_type or "float"
    columns: list[pa.Array] = [
        pa.array([r["event_id"] for r in rows], pa.string()),
        pa.array([r["request_id"] for r in rows], pa.string()),
        pa.array([r["model_name"] for r in rows], pa.string()),
        pa.array([r["model_version"] for r in rows], pa.string()),
        _timestamps([r["event_time"] for r in rows]),
        _timestamps([r["prediction_time"] for r in rows]),
        _timestamps([r["label_time"] for r in rows]),
        _typed([r["prediction"] for r in rows], label_type),
        _typed([r["label"] for r in rows], label_type),
    ]
    for spec in sorted(contract.features, key=lambda spec: spec.name):
        columns.append(_typed([r["features"].get(spec.name) for r in rows], spec.type or "float"))
    return pa.Table.from_arrays(columns, schema=schema)


# Python types Arrow converts to each column type as they are (None aside); bool is not an int.
_EXACT: dict[str, frozenset[type]] = {
    "int": frozenset({int, type(None)}),
    "float": frozenset({int, float, type(None)}),
    "string": frozenset({str, type(None)}),
    "bool": frozenset({bool, type(None)}),
}


def _typed(values: list[Any], value_type: str) -> pa.Array:
    """``values`` as an array of the JSON type ``value_type``; what does not fit it is null."""
    arrow = ARROW_TYPES[value_type]
    if set(map(type, values)) <= _EXACT[value_type]:
        # The common case, at Arrow's speed: a number past int64 or an infinity (never in JSON)
        # falls to the value-by-value path.
        try:
            array = pa.array(values, arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        else:
            if value_type != "float" or pc.all(pc.is_finite(array)).as_py() is not False:
                return array
    return pa.array([_convert(value_type, v) for v in values], arrow)


def _convert(value_type: str, value: Any) -> Any:
    if value is None or not fits(value_type, value):
        return None
    if value_type == "int":
        return int(value)
    if value_type == "float":
        return float(value)
    return value


UTC_MICROSECONDS = pa.timestamp("us", tz="UTC")


def _timestamps(event_times: list[str]) -> pa.Array:
    """RFC 3339 times as UTC microseconds, parsed by Arrow (a Python parse per row costs more
    than the rest of a write); what Arrow refuses, such as a fraction finer than a
    microsecond, Python parses as it always did."""
    try:
        return pa.array(event_times, pa.string()).cast(UTC_MICROSECONDS)
    except pa.ArrowInvalid:
        return pa.array([_utc(t) for t in event_times], UTC_MICROSECONDS)


def _utc(event_time: str) -> datetime:
    return parse_time(event_time).astimezone(UTC)


def _hour(event_time: str) -> str:
    """The partition of an event time: ``date=YYYY-MM-DD/hour=HH`` in UTC."""
    if event_time.endswith("Z") and event_time[10:11] == "T":
        return f"date={event_time[:10]}/hour={event_time[11:13]}"  # UTC already: no parse
    return _utc(event_time).strftime("date=%Y-%m-%d/hour=%H")


def _manifest_key(file: str) -> str:
    return file.removesuffix(".parquet") + ".manifest.json"


def _group_key(group: tuple[str, str | None]) -> tuple[str, str]:
    return group[0], group[1] or ""


# --- reading files of different types -----------------------------------------------------------

# The columns whose values come from the app: what a file written without a contract may have
# stored as JSON text, its values mixing types.
_VALUE_COLUMNS = ("prediction", "label")


def _is_value_column(name: str) -> bool:
    return name.startswith("feature.") or name in _VALUE_COLUMNS


def _mixed_text(values: list[Any]) -> list[Any] | None:
    """The values a column of JSON text stood for (:func:`to_table`'s mixed column), or None
    when the column is plain text.

    A mixed column encodes every value, its strings quoted; a plain one holds strings as sent.
    So: every value must be JSON (null never is: it stays null), and there must be a quoted
    string or two kinds of value among them. Plain text of JSON words of two kinds (``"1"``
    and ``"true"`` in one file, and nothing else) cannot be told from a mixed column, and is
    decoded; numbers alone (stored as text for an integer past int64) are left as text.
    """
    decoded: list[Any] = []
    kinds: set[str] = set()
    quoted = False
    for value in values:
        if value is None:
            decoded.append(None)
            continue
        try:
            item = json.loads(value)
        except ValueError:
            return None
        if item is None:
            return None
        quoted = quoted or isinstance(item, str)
        kinds.add("number" if type(item) in (int, float) else type(item).__name__)
        decoded.append(item)
    return decoded if quoted or len(kinds) > 1 else None


def _decoded(table: pa.Table, name: str, contracted: bool) -> list[Any] | None:
    """The values a column of mixed JSON text stood for, in a file written without a contract;
    None for any other column."""
    if contracted or not _is_value_column(name) or table.schema.field(name).type != pa.string():
        return None
    return _mixed_text(table.column(name).to_pylist())


def _as_text_where_types_differ(
    tables: list[pa.Table], manifests: list[Manifest]
) -> list[pa.Table]:
    """``tables`` with each column whose types conflict between them as JSON text."""
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for column in table.schema:
            if column.type != pa.null():
                types.setdefault(column.name, set()).add(column.type)
    conflicting = {
        name
        for name, found in types.items()
        if len(found) > 1
        and not all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in found)
    }
    fixed = []
    for table, manifest in zip(tables, manifests, strict=True):
        for name in sorted(conflicting & set(table.column_names)):
            values = _decoded(table, name, manifest.contract_version is not None)
            if values is None:
                values = table.column(name).to_pylist()
            table = table.set_column(table.schema.get_field_index(name), name, _text(values))
        fixed.append(table)
    return fixed


def _frame(table: pa.Table, contracted: bool) -> pd.DataFrame:
    """One file's rows as a frame, each value as sent (see :meth:`ExampleStore.read_frame`)."""
    # Python ints and None for an integer column with nulls, not floats and NaN.
    frame = table.to_pandas(integer_object_nulls=True)
    for name in table.column_names:
        decoded = _decoded(table, name, contracted)
        if decoded is not None:
            frame[name] = pd.Series(decoded, index=frame.index, dtype=object)
    return frame


def _concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``frames`` one after the other; a column whose dtype differs between them, or that some
    lack, becomes Python values (``object``, None where missing) rather than a coerced type."""
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    names: dict[str, None] = {}
    dtypes: dict[str, set[str]] = {}
    for frame in frames:
        for name, dtype in frame.dtypes.items():
            names.setdefault(str(name), None)
            dtypes.setdefault(str(name), set()).add(str(dtype))
    loose = {
        name
        for name in names
        if (len(dtypes[name]) > 1 or any(name not in frame.columns for frame in frames))
        and not all(dtype.startswith("datetime64") for dtype in dtypes[name])
    }
    if loose:
        aligned = []
        for frame in frames:
            frame = frame.copy(deep=False)
            for name in loose:
                if name in frame.columns:
                    column = frame[name]
                    frame[name] = column.astype(object).where(column.notna(), None)
                else:
                    frame[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
            aligned.append(frame[list(names)])
        frames = aligned
    return pd.concat(frames, ignore_index=True)


def store_blobs(settings: Settings) -> Blobs:
    """Where the store ``settings`` name keeps its files: ``store_uri``, else the S3 bucket,
    else a folder under the state folder. The example store, the monitor's reports and the
    online model's snapshots all live there."""
    uri = settings.store_uri
    if not uri and settings.s3_bucket:
        uri = f"s3://{settings.s3_bucket}/{settings.s3_prefix.strip('/')}"
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
        return S3Blobs(bucket, prefix, client)
    return LocalBlobs(Path(uri or settings.state_dir / "example-store"))


def open_store(settings: Settings, dedupe_horizon_s: float | None = None) -> ExampleStore:
    """The example store ``settings`` name (see :func:`store_blobs`)."""
    extra = {} if dedupe_horizon_s is None else {"dedupe_horizon_s": dedupe_horizon_s}
    return ExampleStore(store_blobs(settings), **extra)
