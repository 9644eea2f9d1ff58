"""ContractLog: every model's contract versions, on one Kafka topic that every service reads.

The contracts topic has one partition and keeps its records forever, so every reader sees the
versions in the same order. The rule that decides which version holds is :func:`resolve`: a
record is taken when its version is newer than the model's current one, so the *first* record
of a version wins. Two ingest replicas that each infer version 1 from their own partitions
both publish it; both then adopt whichever reached the log first, and the other is ignored.
That is the whole of the agreement: no lock, no leader.

Declared contracts (``driftloop contract register``, or ``DRIFTLOOP_CONTRACT_FILE`` at ingest's
start) are published as the latest version plus one, unless their terms are the latest's.

Example:
    >>> from driftloop.contract import FeatureContract, FeatureSpec
    >>> def version(n, source="inferred"):
    ...     return FeatureContract(task="regression", features=[FeatureSpec(name=f"x{n}")],
    ...                            model_name="m", version=n, source=source)
    >>> first, second = version(1), version(1, "declared")
    >>> resolve([first, second, version(2)])["m"].version
    2
    >>> resolve([first, second])["m"].source
    'inferred'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from kafka import TopicPartition
from pydantic import ValidationError

from driftloop.contract import FeatureContract
from driftloop.errors import SchemaViolation
from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer, ensure_topics, kafka_consumer
from driftloop.schemas import EventSchemas
from driftloop.settings import Settings

log = logging.getLogger(__name__)


def resolve(
    contracts: Iterable[FeatureContract],
    known: dict[str, FeatureContract] | None = None,
) -> dict[str, FeatureContract]:
    """The contract in force for each model after ``contracts``, in log order.

    ``known`` is the state before them (updated in place, and returned).
    """
    state = {} if known is None else known
    for contract in contracts:
        name = contract.model_name or ""
        current = state.get(name)
        if current is None or contract.version > current.version:
            state[name] = contract
    return state


def contract_event(contract: FeatureContract) -> dict[str, Any]:
    """The contract as the event the contracts topic carries."""
    return new_event(
        model_name=contract.model_name,
        version=contract.version,
        source=contract.source,
        contract=contract.model_dump(mode="json"),
    )


class ContractLog:
    """The contracts topic, read to its end on :meth:`refresh` (thread-safe; blocking I/O).

    Parameters:
        settings: the broker and the topic.
        service: the client id's suffix.
    """

    def __init__(self, settings: Settings, service: str) -> None:
        self.settings = settings
        self.service = service
        self._schemas = EventSchemas(settings.schemas_dir)
        self._state: dict[str, FeatureContract] = {}
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._partition = TopicPartition(settings.topic_contracts, 0)

    def _open(self) -> Any:
        if self._consumer is None:
            ensure_topics(self.settings)
            consumer = kafka_consumer(self.settings, f"{self.service}-contracts", None)
            consumer.assign([self._partition])
            consumer.seek_to_beginning(self._partition)
            self._consumer = consumer
        return self._consumer

    def refresh(self) -> dict[str, FeatureContract]:
        """Read what was published since the last call; the contract in force per model."""
        with self._lock:
            consumer = self._open()
            end = consumer.end_offsets([self._partition])[self._partition]
            while consumer.position(self._partition) < end:
                for records in consumer.poll(timeout_ms=1000).values():
                    resolve(filter(None, map(self._contract, records)), self._state)
            return dict(self._state)

    def _contract(self, record: Any) -> FeatureContract | None:
        try:
            event = self._schemas.decode(EventType.CONTRACT, record.value or b"")
            contract = FeatureContract.model_validate(event["contract"])
        except (SchemaViolation, ValidationError) as error:
            log.error(
                "skipped an invalid contract record",
                extra={"offset": record.offset, "error": str(error)},
            )
            return None
        return contract.model_copy(
            update={"model_name": event["model_name"], "version": event["version"]}
        )

    def latest(self, model_name: str) -> FeatureContract | None:
        """The contract in force for ``model_name``, read now; None when it has none."""
        return self.refresh().get(model_name)

    def publish(self, contract: FeatureContract) -> FeatureContract:
        """Publish ``contract`` and return the one in force after it (another's, if another
        record of its version reached the log first)."""
        if not contract.model_name or contract.version < 1:
            raise ValueError("a published contract names its model and a version from 1")
        with EventProducer(self.settings, service=self.service) as producer:
            producer.send(EventType.CONTRACT, contract_event(contract))
            producer.flush()
        in_force = self.latest(contract.model_name)
        assert in_force is not None  # ours at least was read back
        return in_force

    def register(self, contract: FeatureContract) -> FeatureContract:
        """Declare ``contract`` for its model: a new version unless the latest has its terms."""
        name = contract.model_name
        if not name:
            raise ValueError("a declared contract names its model (model_name)")
        current = self.latest(name)
        if current is not None and current.same_terms(contract):
            return current
        version = 1 if current is None else current.version + 1
        return self.publish(contract.model_copy(update={"version": version, "source": "declared"}))

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
