"""Where the online model's snapshots live between the trainer that writes them and the serving
replicas that answer with them.

A snapshot is the river model pickled with its version and compressed. Snapshots are written
only while the online model answers (see ``services/trainer/live.py``), at most one every
``trainer_online_snapshot_s``, into a ring of ``slots`` keys per model in the store: storage
stays bounded however long the loop runs, and a replica has ``slots`` snapshots' time to read
the one an event names. A replica that reads a slot already overwritten gets
:class:`StaleSnapshot` and waits for the next event. A snapshot is code the trainer wrote
(pickle): only the trainer may write the store's ``online/`` keys, as only it may register
models in MLflow.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from driftloop.store import LocalBlobs
    >>> snapshots = OnlineSnapshots(LocalBlobs(Path(tempfile.mkdtemp())), "m", slots=2)
    >>> key = snapshots.put("online.3", {"weights": [1, 2]})
    >>> key, snapshots.get(key, "online.3")
    ('online/m/slot-1.pkl.zlib', {'weights': [1, 2]})
    >>> _ = snapshots.put("online.4", {})
    >>> _ = snapshots.put("online.5", {})  # the ring came round: slot 1 holds online.5 now
    >>> snapshots.get(key, "online.3")
    Traceback (most recent call last):
    ...
    driftloop.online_snapshots.StaleSnapshot: online/m/slot-1.pkl.zlib holds online.5, not online.3
"""

from __future__ import annotations

import pickle
import re
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store pulls in pyarrow; the version names are wanted without it
    from driftloop.store import Blobs

PREFIX = "online"
VERSION = re.compile(r"^online\.([0-9]+)$")


class StaleSnapshot(Exception):
    """The slot an event named holds another version now (a newer event is on its way)."""


def online_version(number: int) -> str:
    """The version name of the ``number``-th snapshot: ``online.<number>``."""
    return f"online.{number}"


def river_features(features: Mapping[str, Any]) -> dict[str, Any]:
    """What the online model sees of a row, learning (the trainer) and answering (serve) alike:
    null features are left out (river takes a missing feature; a None it would compare with
    numbers).

    Example:
        >>> river_features({"age": 41, "region": None})
        {'age': 41}
    """
    return {name: value for name, value in features.items() if value is not None}


def is_online_version(version: str) -> bool:
    """Whether ``version`` names an online model's snapshot rather than a registry version."""
    return VERSION.match(version) is not None


def snapshot_number(version: str) -> int:
    """The number in an ``online.<n>`` version."""
    match = VERSION.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not an online model's version (online.<n>)")
    return int(match.group(1))


class OnlineSnapshots:
    """A ring of snapshot slots for one model in the store's blobs.

    Parameters:
        blobs: the store's files (:func:`driftloop.store.store_blobs`).
        model_name: the registered model the online model learns beside.
        slots: how many snapshots are kept.
    """

    def __init__(self, blobs: Blobs, model_name: str, slots: int = 16) -> None:
        if slots < 1:
            raise ValueError("at least one slot")
        self.blobs = blobs
        self.model_name = model_name
        self.slots = slots

    def key(self, version: str) -> str:
        return f"{PREFIX}/{self.model_name}/slot-{snapshot_number(version) % self.slots}.pkl.zlib"

    def put(self, version: str, model: Any) -> str:
        """Write ``model`` as ``version``; returns its key."""
        key = self.key(version)
        data = zlib.compress(pickle.dumps((version, model), protocol=pickle.HIGHEST_PROTOCOL), 1)
        self.blobs.put(key, data)
        return key

    def get(self, key: str, version: str) -> Any:
        """The model at ``key``, which must be ``version`` (else :class:`StaleSnapshot`)."""
        held, model = pickle.loads(zlib.decompress(self.blobs.get(key)))
        if held != version:
            raise StaleSnapshot(f"{key} holds {held}, not {version}")
        return model
