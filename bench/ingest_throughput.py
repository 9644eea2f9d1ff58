"""ingest throughput: validate + join + examples topic + Parquet store, against a bare read.

In one run, on a private single-node broker: N predictions and N labels are written to their
topics; then a plain kafka-python consumer reads them all and does nothing else (the ceiling
for a Python client, the baseline); then ingest consumes the same records, joins them and
stores every example, through to its last commit: as one process, and as one replica per core
in one consumer group (how ingest scales: partitions split across replicas). The model's
contract is declared before the runs, so ingest checks every prediction and every example
against it, as in production. Also: the memory of the join's state per 100k pending
predictions (tracemalloc, four features each), and the contract check's own cost per event
(ingest's guard on the same events, in this process).

    python -m bench.ingest_throughput [--pairs 100000] [--replicas 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from kafka import ConsumerRebalanceListener, KafkaConsumer

from bench.report import write
from driftloop.contract import FeatureContract, FeatureSpec
from driftloop.contract_log import ContractLog
from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer, ensure_topics, kafka_admin
from driftloop.runtime import tune_gc
from driftloop.schemas import dumps
from driftloop.services.ingest.guard import ContractGuard
from driftloop.services.ingest.join import LabelJoin, labelled_example
from driftloop.services.ingest.settings import IngestSettings
from driftloop.services.ingest.worker import IngestWorker
from driftloop.settings import as_environment
from driftloop.stack import KafkaBroker
from driftloop.stack.process import free_port
from driftloop.stack.settings import LocalStackSettings
from driftloop.store import ExampleStore


def features(i: int) -> dict[str, float | str]:
    return {
        "age": 20 + i % 50,
        "income": 1000.0 + i,
        "score": (i % 97) / 97,
        "region": "nsew"[i % 4],
    }


# The contract of the events above, declared as a user would.
CONTRACT = FeatureContract(
    model_name="m",
    task="classification",
    classes=[0, 1],
    features=[
        FeatureSpec(name="age", type="int"),
        FeatureSpec(name="income"),
        FeatureSpec(name="score"),
        FeatureSpec(name="region", kind="categorical", categories=list("nsew")),
    ],
)


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
# Partitions per topic: 1, 2, 3 or 6 replicas split them evenly.
PARTITIONS = 6


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and the processes it started (ingest's store
    writer) have used so far, all their threads."""
    ticks, parents = 0, {pid}
    # In pid order, parents before their children (pids do not wrap within a run).
    for stat in sorted(Path("/proc").glob("[0-9]*/stat"), key=lambda p: int(p.parent.name)):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone since the listing
            continue
        if int(stat.parent.name) in parents or int(fields[1]) in parents:
            parents.add(int(stat.parent.name))
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def bare_read(settings: IngestSettings, expected: int) -> tuple[float, float]:
    """Events/s of a plain consumer reading ``expected`` records, and its CPU us per event.

    The clock starts as ingest's does: the group settled, nothing fetched yet (its
    partitions are paused until then; a group join is 180 ms here, a tenth of a read).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"bare-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=settings.kafka_max_poll_records,
    )
    topics = [settings.topic_predictions, settings.topic_labels]
    consumer.subscribe(topics, listener=_PauseOnAssignment(consumer))
    deadline = time.monotonic() + STALL_S
    while len(consumer.assignment()) < len(topics) * PARTITIONS:
        if consumer.poll(timeout_ms=100):  # read before a pause took: from the start again
            consumer.seek_to_beginning()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the plain consumer was assigned {len(consumer.assignment())} partitions of "
                f"{len(topics) * PARTITIONS} in {STALL_S:.0f} s"
            )
    consumer.resume(*consumer.assignment())
    seen, started, cpu = 0, time.perf_counter(), time.process_time()
    while seen < expected:
        seen += sum(len(records) for records in consumer.poll(timeout_ms=500).values())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.close()
    return seen / elapsed, cpu / seen * 1e6


class _PauseOnAssignment(ConsumerRebalanceListener):
    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.consumer.pause(*assigned)


class Replica(IngestWorker):
    """ingest's worker as one replica of a group: says on stdout what it was assigned, and
    reads nothing until :meth:`go` (aiokafka fetches in the background as soon as it holds a
    partition: a replica left alone would have the records in memory before the clock starts,
    where the plain read fetches them on the clock)."""

    going = False

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        taken = list(assigned)
        await super().on_partitions_assigned(taken)
        if not self.going:
            self.consumer.pause(*taken)  # what was fetched for them is dropped
        print(f"assigned {len(taken)}", flush=True)

    def go(self) -> None:
        self.going = True
        self.consumer.resume(*self.consumer.assignment())


async def replica(settings: IngestSettings) -> None:
    """One ingest replica (a child process): start, wait for "go" on stdin, run until SIGTERM."""
    tune_gc()  # as `driftloop run ingest` does
    worker = Replica(settings, functools.partial(ExampleStore, settings.store_uri))
    await worker.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    worker.go()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await worker.run(stop)
    await worker.close()


def ingest(settings: IngestSettings, pairs: int, replicas: int) -> tuple[float, float]:
    """Events/s of ``replicas`` ingest processes in one group, from "go" to the last commit,
    and the CPU they used per event (us, all of them together: less noisy than the rate on
    a shared machine, and what the rate is made of).

    Done when the group's committed offsets reach the end of both topics: every record
    joined, stored, on the examples topic and committed (ingest commits only after all that).
    The group has settled (every partition assigned) before the clock starts.
    """
    command = [sys.executable, "-m", "bench.ingest_throughput", "--replica"]
    environment = os.environ | as_environment(settings)
    logs = [settings.state_dir / f"{settings.ingest_group_id}-{i}.log" for i in range(replicas)]
    children: list[subprocess.Popen[str]] = []
    for log in logs:
        # Rebalance chatter, shown if a replica fails; the child keeps its own descriptor.
        with log.open("w") as stderr:
            children.append(
                subprocess.Popen(
                    command,
                    env=environment,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                )
            )
    try:
        topics = [settings.topic_predictions, settings.topic_labels]
        assigned = [0] * replicas
        lines = queue.Queue[tuple[int, str]]()
        for i, child in enumerate(children):
            threading.Thread(target=_lines, args=(i, child, lines), daemon=True).start()
        deadline = time.monotonic() + STALL_S
        while sum(assigned) < len(topics) * settings.topic_partitions or 0 in assigned:
            i, line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assigned[i] = int(line.split()[1])
        started = time.perf_counter()
        cpu = sum(cpu_seconds(child.pid) for child in children)
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        _wait_for_commits(settings, topics)
        elapsed = time.perf_counter() - started
        cpu = sum(cpu_seconds(child.pid) for child in children) - cpu
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=60)
    for child, log in zip(children, logs, strict=True):
        if child.returncode:
            raise RuntimeError(f"a replica failed ({child.returncode}):\n{log.read_text()[-3000:]}")
    return 2 * pairs / elapsed, cpu / (2 * pairs) * 1e6


def _lines(i: int, child: subprocess.Popen[str], lines: queue.Queue[tuple[int, str]]) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("assigned "):
            lines.put((i, line))


def _wait_for_commits(settings: IngestSettings, topics: list[str]) -> None:
    reader = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    partitions = [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]
    ends = reader.end_offsets(partitions)
    reader.close()
    admin = kafka_admin(settings, "bench")
    try:
        behind, last_progress = None, time.monotonic()
        while behind != 0:
            committed = admin.list_group_offsets(settings.ingest_group_id).get(
                settings.ingest_group_id, {}
            )
            now_behind = sum(
                ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions
            )
            if now_behind != behind:
                behind, last_progress = now_behind, time.monotonic()
            elif time.monotonic() - last_progress > STALL_S:
                raise RuntimeError(f"ingest stalled {STALL_S:.0f} s with {behind} records to go")
            time.sleep(0.05)
    finally:
        admin.close()


def join_memory(pending: int = 100_000) -> float:
    """MiB the join holds for ``pending`` predictions waiting for their labels.

    The decoded events are made before tracing starts and dropped by the consumer after a
    batch; what is traced is what the join keeps: its entries, index, heap, and each
    prediction's bytes as its record carried them.
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
        # Its bytes as its record carried them: the Kafka client's, exactly as long as the
        # JSON (orjson's own output keeps a 4 KiB buffer).
        join.add_prediction(event, 0, bytes(memoryview(dumps(event))))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert join.waiting == pending
    return size / 2**20


def check_cost(pairs: int = 100_000) -> float:
    """Microseconds per event that ingest's guard spends checking the contract: a prediction's
    features when it is read, a labelled example's label (and features) when it is joined."""
    guard = ContractGuard({"m": CONTRACT})
    predictions = [
        new_event(request_id=f"r{i}", model_name="m", model_version="1",
                  features=features(i), prediction=i % 2)
        for i in range(pairs)
    ]  # fmt: skip
    examples = [
        labelled_example(p, new_event(request_id=p["request_id"], label=i % 2))
        for i, p in enumerate(predictions)
    ]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        refused = sum(guard.prediction(p) is not None for p in predictions)
        refused += sum(guard.admit(e).violation is not None for e in examples)
        best = min(best, time.perf_counter() - started)
        assert refused == 0
    return best / (2 * pairs) * 1e6


def _row(pipeline: str, runs: list[tuple[float, float]]) -> dict[str, Any]:
    return {
        "pipeline": pipeline,
        "best_events_per_s": max(rate for rate, _ in runs),
        "median_events_per_s": statistics.median(rate for rate, _ in runs),
        "least_cpu_us_per_event": min(cpu for _, cpu in runs),
        "runs": " ".join(f"{rate:,.0f}" for rate, _ in runs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="predictions (and labels)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each; the best and the median are given"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=sorted({1, min(os.cpu_count() or 1, PARTITIONS)}),
        help="ingest processes in the group, one run each (default: 1 and one per core)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20k pairs, 1 round")
    parser.add_argument("--replica", action="store_true", help=argparse.SUPPRESS)  # a child
    args = parser.parse_args(argv)
    if args.replica:
        asyncio.run(replica(IngestSettings()))
        return
    if args.quick:
        args.pairs, args.rounds = 20_000, 1

    # (events/s, CPU us per event) of each run
    baseline: list[tuple[float, float]] = []
    ours: dict[int, list[tuple[float, float]]] = {n: [] for n in args.replicas}
    with tempfile.TemporaryDirectory() as state:
        stack = LocalStackSettings(
            state_dir=Path(state), kafka_port=free_port(), kafka_controller_port=free_port()
        )
        settings = IngestSettings(
            state_dir=Path(state),
            kafka_bootstrap_servers=stack.kafka_bootstrap_servers,
            topic_partitions=PARTITIONS,
            ingest_flush_s=0.25,
        )
        broker = KafkaBroker(stack)
        broker.up()
        try:
            ensure_topics(settings)
            contracts = ContractLog(settings, "bench")
            contracts.register(CONTRACT)
            contracts.close()
            produce(settings, args.pairs)
            # Untimed: the broker's JIT and page cache warm up on a first read (a first timed
            # read was up to 40% slower than the next), so that every round finds them warm.
            bare_read(settings, 2 * args.pairs)
            # Alternate them, so that none gets a warmer broker or page cache.
            for round_ in range(args.rounds):
                baseline.append(bare_read(settings, 2 * args.pairs))
                for replicas in args.replicas:
                    # A fresh group, store and join changelog: a run that restored the last
                    # run's join state would see every pair as already joined.
                    tag = f"{round_}-{replicas}-{uuid.uuid4().hex[:6]}"
                    run = settings.model_copy(
                        update={
                            "ingest_group_id": f"bench-{tag}",
                            "store_uri": str(Path(state) / f"store-{tag}"),
                            "topic_ingest_changelog": f"bench-changelog-{tag}",
                        }
                    )
                    ours[replicas].append(ingest(run, args.pairs, replicas))
                    store = ExampleStore(run.store_uri)
                    stored = sum(m.rows for m in store.manifests())
                    assert stored == args.pairs, f"{stored} examples stored for {args.pairs} pairs"
        finally:
            broker.down()
    memory = join_memory()
    check_us = check_cost()
    rows = [_row("plain kafka-python consumer (read only), 1 process", baseline)]
    ratios = {}
    for replicas, runs in ours.items():
        what = "1 process" if replicas == 1 else f"{replicas} replicas in one group"
        rows.append(_row(f"ingest: validate + join + examples topic + store, {what}", runs))
        ratios[f"ingest ({what}) / plain read"] = (
            rows[-1]["best_events_per_s"] / rows[0]["best_events_per_s"]
        )
        ratios[f"ingest ({what}) / plain read, medians"] = (
            rows[-1]["median_events_per_s"] / rows[0]["median_events_per_s"]
        )
        ratios[f"ingest ({what}) / plain read, CPU per event"] = (
            rows[-1]["least_cpu_us_per_event"] / rows[0]["least_cpu_us_per_event"]
        )
    write(
        "ingest_throughput",
        rows,
        baseline="plain kafka-python KafkaConsumer reading the same records from the same broker",
        ratios=ratios,
        packages=(
            "kafka-python",
            "aiokafka",
            "pyarrow",
            "orjson",
            "msgspec",
            "fastjsonschema",
            "crc32c",
        ),
        notes=(
            f"{args.pairs} predictions + {args.pairs} labels on {PARTITIONS} partitions each, "
            "all joined and stored each run, timed from the settled group's start to its last "
            f"commit; the broker shares the machine ({os.cpu_count()} cores)."
        ),
        extra={
            "join_state_mib_per_100k_pending": round(memory, 1),
            "contract_check_us_per_event": round(check_us, 2),
        },
    )


if __name__ == "__main__":
    main()
