"""Inference over Kafka: serve's answering rate and end-to-end latency, against the plain
read-and-produce ceiling of the same client on the same broker.

In one run, on a private stack (Kafka broker, MLflow server), with the 9-feature Keras MLP of
:mod:`bench.serve_latency` as champion:

- **serve** (`driftloop run serve`, its Kafka inference: a consumer-group member that checks
  each request against the model's contract, answers it through the data plane and commits
  the prediction events with the offsets in one Kafka transaction);
- **the ceiling**: a process that reads the same requests with the same client (aiokafka,
  committed reads, batches of the same size), parses each, and produces one small event per
  request, committing offsets after the sends: no model, no checks, no transaction.

Each path, one at a time, after a warm-up of 1,000 requests: **rate**: ``--requests`` requests
produced at once (a backlog), timed from the first sent to the last answer read; single-record
requests, then requests of ``--rows`` records each (rows/s). **latency**: a steady ``--rate``
requests/s of single records for ``--seconds``, each from its send to the moment its answer is
read (read committed: an answer counts once its transaction has committed); the first second
is left out.

    python -m bench.kafka_inference [--requests 20000] [--rows 32] [--rate 1000]
        [--seconds 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench.report import write
from bench.serve_latency import MODEL, environment, process, promote, record, register
from driftloop.settings import Settings
from driftloop.stack.process import free_port

BATCH = 500  # records a poll takes: serve's default (serve_kafka_max_batch)
READY = "echo: partitions assigned"


def request(index: int, rows: int, run: str) -> dict[str, Any]:
    """An inference_request event: ``rows`` records (one: ``features``)."""
    from driftloop.events import new_event

    body: dict[str, Any]
    if rows == 1:
        body = {"features": record(index)}
    else:
        body = {"records": [record(index * rows + i) for i in range(rows)]}
    return new_event(request_id=f"{run}-{index}", model_name=MODEL, **body)


# --- the ceiling: read, parse, produce (its own process) ---------------------------------------


async def echo(settings: Settings, source: str, target: str) -> None:
    """Read ``source``, produce one small event per request to ``target``, commit; forever."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from driftloop.async_messaging import send_batches
    from driftloop.partitioning import choose_partitions

    servers = settings.kafka_bootstrap_servers.split(",")
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=servers,
        group_id="bench-ceiling",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=BATCH,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=5
    )
    await consumer.start()
    await producer.start()
    partitions = sorted(await producer.partitions_for(target))
    announced = False
    while True:
        fetched = await consumer.getmany(timeout_ms=100, max_records=BATCH)
        if not announced and consumer.assignment():
            print(READY, flush=True)  # the measuring side waits for this line
            announced = True
        records = []
        for polled in fetched.values():
            for message in polled:
                event = orjson.loads(message.value)
                rows = len(event.get("records", ())) or 1
                ids = [event["request_id"]] if rows == 1 else [
                    f"{event['request_id']}-{i}" for i in range(rows)
                ]  # fmt: skip
                records += [(i.encode(), orjson.dumps({"request_id": i})) for i in ids]
        if not records:
            continue
        keys = [key for key, _ in records]
        chosen = choose_partitions(keys, partitions)  # type: ignore[arg-type]
        sends = zip(chosen, keys, (value for _, value in records), strict=True)
        await asyncio.gather(*await send_batches(producer, target, sends))
        await consumer.commit()


# --- the measuring side ----------------------------------------------------------------------


class Answers:
    """Reads an answers topic from its end (committed records only): each answer's arrival."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.arrived: dict[str, float] = {}

    async def __aenter__(self) -> Answers:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers.split(","),
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await self.consumer.start()
        # every topic of the bench has the stack's partition count
        assigned = [TopicPartition(self.topic, p) for p in range(self.settings.topic_partitions)]
        self.consumer.assign(assigned)
        await self.consumer.seek_to_end(*assigned)
        for partition in assigned:
            await self.consumer.position(partition)  # resolved now, before anything is sent
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            fetched = await self.consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for messages in fetched.values():
                for message in messages:
                    self.arrived.setdefault(orjson.loads(message.value)["request_id"], now)

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while len(self.arrived) < count and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if len(self.arrived) < count:
            raise SystemExit(f"{len(self.arrived)} of {count} answers in {timeout} s")

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await self.consumer.stop()


async def producer_for(settings: Settings) -> Any:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
    )
    await producer.start()
    return producer


async def rate(
    settings: Settings, source: str, target: str, requests: int, rows: int, run: str
) -> dict[str, Any]:
    """``requests`` requests of ``rows`` records sent at once; answers/s from first to last."""
    events = [orjson.dumps(request(i, rows, run)) for i in range(requests)]
    producer = await producer_for(settings)
    try:
        async with Answers(settings, target) as answers:
            started = time.perf_counter()
            for index, value in enumerate(events):
                await producer.send(source, value, key=f"{run}-{index}".encode())
            await producer.flush()
            await answers.wait(requests * rows, timeout=300)
            elapsed = max(answers.arrived.values()) - started
    finally:
        await producer.stop()
    return {"req_s": requests / elapsed, "rows_s": requests * rows / elapsed}


async def latency(
    settings: Settings, source: str, target: str, per_second: float, seconds: float, run: str
) -> dict[str, Any]:
    """A steady ``per_second`` single-record requests for ``seconds``: send to answer read."""
    producer = await producer_for(settings)
    sent: dict[str, float] = {}
    tick = 0.01  # requests go out every 10 ms
    try:
        async with Answers(settings, target) as answers:
            started = time.perf_counter()
            index = 0
            while (now := time.perf_counter()) - started < seconds:
                due = int((now - started) * per_second)
                while index < due:
                    request_id = f"{run}-{index}"
                    sent[request_id] = time.perf_counter()
                    value = orjson.dumps(request(index, 1, run))
                    await producer.send(source, value, key=request_id.encode())
                    index += 1
                await asyncio.sleep(tick)
            await producer.flush()
            await answers.wait(len(sent), timeout=120)
    finally:
        await producer.stop()
    skip = started + 1.0
    times = sorted(
        (answers.arrived[i] - t) * 1000 for i, t in sent.items() if t >= skip
    )  # fmt: skip
    return {
        "steady_req_s": len(sent) / seconds,
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[int(len(times) * 0.99)],
        "max_ms": times[-1],
    }


def measure(
    settings: Settings, path: str, source: str, target: str, args: argparse.Namespace
) -> dict[str, Any]:
    # a warm-up: the consumer group joined, the model called, the connections made
    asyncio.run(rate(settings, source, target, 1_000, 1, f"{path}-w"))
    single = asyncio.run(rate(settings, source, target, args.requests, 1, f"{path}-r1"))
    batched = asyncio.run(
        rate(settings, source, target, args.requests // args.rows, args.rows, f"{path}-rb")
    )
    steady = asyncio.run(latency(settings, source, target, args.rate, args.seconds, f"{path}-l"))
    return {
        "path": path,
        "single_req_s": single["req_s"],
        f"batched_{args.rows}_req_s": batched["req_s"],
        f"batched_{args.rows}_rows_s": batched["rows_s"],
        **steady,
    }


@contextlib.contextmanager
def echo_process(settings: Settings, topics: tuple[str, str], log: Path) -> Iterator[None]:
    """The ceiling's process, once its consumer has its partitions."""
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.kafka_inference", "--echo", *topics],
            env=environment(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while READY not in log.read_text():
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the ceiling's process did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield
    finally:
        child.terminate()
        child.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kafka_inference", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000, help="requests of a rate run")
    parser.add_argument("--rows", type=int, default=32, help="records of a batched request")
    parser.add_argument("--rate", type=float, default=1_000.0, help="requests/s, steady run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady run")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--echo", nargs=2, help=argparse.SUPPRESS)  # internal: the ceiling
    args = parser.parse_args(argv)
    if args.echo:
        asyncio.run(echo(Settings(), *args.echo))
        return 0
    if args.quick:
        args.requests, args.seconds = 2_000, 5.0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from kafka.admin import NewTopic

    from driftloop.messaging import kafka_admin
    from driftloop.stack import LocalStack
    from driftloop.stack.settings import LocalStackSettings

    folder = Path(tempfile.mkdtemp(prefix="bench-kafka-inference-"))
    settings = LocalStackSettings(
        model_name=MODEL,
        state_dir=folder / "stack",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        mlflow_port=free_port(),
    )
    stack = LocalStack(settings)
    rows: list[dict[str, Any]] = []
    try:
        print("starting a private Kafka broker and MLflow server...", flush=True)
        stack.up()
        promote(settings, register(settings, 1))
        admin = kafka_admin(settings)
        names = ("bench.ceiling-requests", "bench.ceiling-answers")
        partitions = settings.topic_partitions
        admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        admin.close()

        print("the ceiling: read, parse, produce...", flush=True)
        with echo_process(settings, names, folder / "echo.log"):
            rows.append(measure(settings, "ceiling (aiokafka read + produce)", *names, args))

        print("serve...", flush=True)
        serve_port = free_port()
        env = environment(
            settings,
            serve_port=serve_port,
            # answers only: the monitor, trainer and ingest are not running
            serve_online_answers=False,
        )
        with process(
            [sys.executable, "-m", "driftloop.cli", "run", "serve"],
            env,
            folder / "serve.log",
            f"http://127.0.0.1:{serve_port}/v2/health/ready",
        ):
            source, target = settings.topic_inference_requests, settings.topic_predictions
            rows.append(measure(settings, "serve (Kafka inference)", source, target, args))
    finally:
        stack.down()

    ceiling, serve = rows
    key = f"batched_{args.rows}_rows_s"
    ratios = {
        "serve / ceiling, single-record requests/s": serve["single_req_s"]
        / ceiling["single_req_s"],
        f"serve / ceiling, {args.rows}-record requests, rows/s": serve[key] / ceiling[key],
    }
    write(
        "kafka_inference",
        rows,
        baseline="ceiling: aiokafka read + parse + produce, no model, no transaction",
        ratios=ratios,
        packages=("aiokafka", "tensorflow"),
        notes=f"{args.requests} requests a rate run; steady {args.rate:.0f}/s for "
        f"{args.seconds:.0f} s (first second left out); latency from send to answer read.",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
