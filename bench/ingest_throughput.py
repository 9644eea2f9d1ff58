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
from driftloop.store import ExampleStore
from services.ingest.join import LabelJoin
from services.ingest.settings import IngestSettings
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


# A run that reads nothing for this long has lost records: fail rather than wait forever.
STALL_S = 60.0


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
    worker = IngestWorker(settings, ExampleStore(settings.store_uri))
    await worker.start()
    started = time.perf_counter()
    outcomes = worker.join.outcomes
    # Done when every request has joined (a rebalance may deliver some records twice).
    deadline = started + STALL_S
    while outcomes["joined"] + outcomes["label_before_prediction"] < pairs:
        if await worker.step(500):
            deadline = time.perf_counter() + STALL_S
        elif time.perf_counter() > deadline:
            raise RuntimeError(f"ingest stalled {STALL_S:.0f} s short of {pairs}: {outcomes}")
    await worker.checkpoint()
    elapsed = time.perf_counter() - started
    await worker.close()
    return 2 * pairs / elapsed


def join_memory(pending: int = 100_000) -> float:
    """MiB the join holds for ``pending`` predictions waiting for their labels.

    The decoded events are made before tracing starts and dropped by the consumer after a
    batch; what is traced is what the join keeps: its entries, index, heap and packed events.
    """
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
    assert join.waiting == pending
    return size / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="predictions (and labels)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each; the best counts")
    args = parser.parse_args(argv)

    baseline: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as state:
        settings = IngestSettings(
            state_dir=Path(state),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            ingest_flush_s=1.0,
        )
        broker = KafkaBroker(settings)
        broker.up()
        try:
            ensure_topics(settings)
            produce(settings, args.pairs)
            # Alternate the two, so that neither gets a warmer broker or page cache.
            for round_ in range(args.rounds):
                baseline.append(bare_read(settings, 2 * args.pairs))
                # A fresh group, store and join changelog: a round that restored the last
                # round's join state would see every pair as already joined.
                tag = f"{round_}-{uuid.uuid4().hex[:6]}"
                run = settings.model_copy(
                    update={
                        "ingest_group_id": f"bench-{tag}",
                        "store_uri": str(Path(state) / f"store-{round_}"),
                        "topic_ingest_changelog": f"bench-changelog-{tag}",
                    }
                )
                ours.append(asyncio.run(ingest(run, args.pairs)))
                store = ExampleStore(run.store_uri)
                stored = sum(m.rows for m in store.manifests())
                assert stored == args.pairs, f"{stored} examples stored for {args.pairs} pairs"
        finally:
            broker.down()
    memory = join_memory()
    rows = [
        {
            "pipeline": "plain kafka-python consumer (read only)",
            "best_events_per_s": max(baseline),
            "runs": " ".join(f"{r:,.0f}" for r in baseline),
        },
        {
            "pipeline": "ingest: validate + join + examples topic + store",
            "best_events_per_s": max(ours),
            "runs": " ".join(f"{r:,.0f}" for r in ours),
        },
    ]
    write(
        "ingest_throughput",
        rows,
        baseline="plain kafka-python KafkaConsumer reading the same records from the same broker",
        ratios={"ingest / plain read (best of each)": max(ours) / max(baseline)},
        packages=("kafka-python", "aiokafka", "pyarrow", "orjson", "fastjsonschema", "crc32c"),
        notes=(
            f"{args.pairs} predictions + {args.pairs} labels on 3 partitions, all joined and "
            "stored each run; one ingest process; the broker shares the machine."
        ),
        extra={"join_state_mib_per_100k_pending": round(memory, 1)},
    )


if __name__ == "__main__":
    main()
