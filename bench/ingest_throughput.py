"""ingest throughput: validate + join + examples topic + Parquet store, against a bare read.

In one run, on a private single-node broker: N predictions and N labels are written to their
topics; then a plain kafka-python consumer reads them all and does nothing else (the ceiling
for a Python client, the baseline); then ingest's worker consumes the same records, joins them
and stores every example, through to its last checkpoint. Also: the memory of the join's state
per 100k pending predictions (tracemalloc, four features each).

    python -m bench.ingest_throughput [--pairs 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from kafka import KafkaConsumer

from bench.report import write
from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer, ensure_topics
from driftloop.stack import KafkaBroker
from driftloop.stack.process import free_port
from services.ingest.join import LabelJoin
from services.ingest.settings import IngestSettings
from services.ingest.store import ExampleStore
from services.ingest.worker import IngestWorker


def features(i: int) -> dict[str, float | str]:
    return {
        "age": 20 + i % 50,
        "income": 1000.0 + i,
        "score": (i % 97) / 97,
        "region": "nsew"[i % 4],
    }


def produce(settings: IngestSettings, pairs: int) -> None:
    with EventProducer(settings, service="bench", batch_size=256 * 1024, linger_ms=20) as producer:
        for i in range(pairs):
            request_id = f"r{i}"
            producer.send(
                EventType.PREDICTION,
                new_event(
                    request_id=request_id,
                    model_name="m",
                    model_version="1",
                    features=features(i),
                    prediction=i % 2,
                ),
            )
            producer.send(EventType.LABEL, new_event(request_id=request_id, label=(i // 3) % 2))
        producer.flush()


def bare_read(settings: IngestSettings, expected: int) -> float:
    consumer = KafkaConsumer(
        settings.topic_predictions,
        settings.topic_labels,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"bare-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=settings.kafka_max_poll_records,
    )
    seen, started = 0, time.perf_counter()
    while seen < expected:
        seen += sum(len(records) for records in consumer.poll(timeout_ms=500).values())
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


async def ingest(settings: IngestSettings, pairs: int) -> float:
    worker = IngestWorker(settings, ExampleStore(settings.ingest_store_uri))
    await worker.start()
    started = time.perf_counter()
    handled = 0
    while handled < 2 * pairs:
        handled += await worker.step(500)
    await worker.checkpoint()
    elapsed = time.perf_counter() - started
    await worker.close()
    return handled / elapsed


def join_memory(pending: int = 100_000) -> float:
    """MiB the join holds for ``pending`` predictions waiting for their labels."""
    events = [
        new_event(
            request_id=f"r{i}",
            model_name="m",
            model_version="1",
            features=features(i),
            prediction=i % 2,
        )
        for i in range(pending)
    ]
    gc.collect()
    tracemalloc.start()
    join = LabelJoin(ttl_s=86_400)
    for event in events:
        join.add_prediction(event)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The events themselves are already in memory (decoded by the consumer); what the join adds
    # is its index, entries and heap. The decoded events count too: the join keeps them alive.
    payload = sum(_deep_size(event) for event in events[:1000]) / 1000 * pending
    return (size + payload) / 2**20


def _deep_size(value: object) -> int:
    import sys

    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k) + _deep_size(v) for k, v in value.items())
    return size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="predictions (and labels)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as state:
        settings = IngestSettings(
            state_dir=Path(state),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            ingest_store_uri=str(Path(state) / "store"),
            ingest_flush_s=1.0,
        )
        broker = KafkaBroker(settings)
        broker.up()
        try:
            ensure_topics(settings)
            produce(settings, args.pairs)
            baseline = bare_read(settings, 2 * args.pairs)
            ours = asyncio.run(ingest(settings, args.pairs))
            store = ExampleStore(settings.ingest_store_uri)
            stored = sum(m.rows for m in store.manifests())
        finally:
            broker.down()
    memory = join_memory()
    rows = [
        {"pipeline": "plain kafka-python consumer (read only)", "events_per_s": baseline},
        {"pipeline": "ingest: validate + join + examples topic + store", "events_per_s": ours},
    ]
    write(
        "ingest_throughput",
        rows,
        baseline="plain kafka-python KafkaConsumer reading the same records from the same broker",
        ratios={"ingest / plain read": ours / baseline},
        packages=("kafka-python", "pyarrow", "orjson", "fastjsonschema"),
        notes=(
            f"{args.pairs} predictions + {args.pairs} labels, 3 partitions; {stored} examples "
            f"stored. Join state for 100k pending predictions (4 features each): "
            f"{memory:.1f} MiB."
        ),
        extra={"join_state_mib_per_100k_pending": round(memory, 1), "stored_rows": stored},
    )


if __name__ == "__main__":
    main()
