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

Example:
    >>> import tempfile
    >>> store = ExampleStore(tempfile.mkdtemp())
    >>> store.write([]) is None
    True
"""

from __future__ import annotations

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
import pandas  # noqa: F401
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
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
        self, examples: Sequence[Mapping[str, Any]], offsets: OffsetRanges | None = None
    ) -> list[Manifest] | None:
        """Store ``examples`` not stored before, one file per event-time hour; durable on return.

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
        by_hour: dict[str, list[Mapping[str, Any]]] = {}
        for example in fresh.values():
            by_hour.setdefault(_hour(example["event_time"]), []).append(example)
        manifests = [
            self._write_file(hour, rows, offsets or {}) for hour, rows in sorted(by_hour.items())
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
        self, hour: str, rows: list[Mapping[str, Any]], offsets: OffsetRanges
    ) -> Manifest:
        table = to_table(rows)
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
        """The rows of the files ``manifests`` name, each checked against its hash."""
        tables = []
        for manifest in manifests:
            try:
                data = self.blobs.get(manifest.file)
            except (FileNotFoundError, KeyError) as error:
                raise CorruptWindow(f"{manifest.file} is missing") from error
            if hashlib.sha256(data).hexdigest() != manifest.sha256:
                raise CorruptWindow(f"{manifest.file} does not match its manifest's sha256")
            tables.append(pq.read_table(io.BytesIO(data)))
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="permissive")

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
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())


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


def open_store(settings: Settings, dedupe_horizon_s: float | None = None) -> ExampleStore:
    """The example store ``settings`` name: ``store_uri``, else the S3 bucket, else a folder
    under the state folder."""
    uri = settings.store_uri
    if not uri and settings.s3_bucket:
        uri = f"s3://{settings.s3_bucket}/{settings.s3_prefix.strip('/')}"
    extra = {} if dedupe_horizon_s is None else {"dedupe_horizon_s": dedupe_horizon_s}
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
        return ExampleStore(S3Blobs(bucket, prefix, client), **extra)
    return ExampleStore(uri or settings.state_dir / "example-store", **extra)
