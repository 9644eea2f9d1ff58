"""serve's latency and throughput, against `mlflow models serve` and a constant-returning app.

In one run, on a private stack (Kafka broker, MLflow server): a 9-feature Keras MLP is
registered and made champion; then wrk (a load generator in its own process) drives, one at a
time so they do not share the cores:

- serve (`driftloop run serve`: validation, micro-batching, the fastest call path, every
  prediction logged to Kafka);
- `mlflow models serve -m models:/<name>/<version> --env-manager local`, the same model;
- the HTTP floor: a bare Starlette app on serve's own server (:class:`driftloop.asgi.
  ServiceServer`: uvicorn, uvloop, httptools) that reads the body and
  returns a constant.

Loads: one record per request at concurrency 1, 8 and 32; 64 records per request at 8 (for
serve, also how many predictions reached Kafka and how many its log dropped, buffer full).
serve and the floor run side by side, idle but for the one under load, and their runs of a
load alternate, after serve and the broker have had ``--warmup`` seconds of load; mlflow
(slow, steady) runs afterwards.
Then a steady run at concurrency 8, and right after it one as long that swaps serve's model
(alias moved + model-update event) every few seconds: failed requests, and p99 during swaps
against the steady run's p99.

    python -m bench.serve_latency [--seconds 5] [--rounds 2] [--warmup 15] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench.report import write
from driftloop.settings import Settings, as_environment
from driftloop.stack.process import free_port

FEATURES = [f"f{i}" for i in range(9)]
LOADS = [("1 record", 1, 1), ("1 record", 8, 1), ("1 record", 32, 1), ("64 records", 8, 64)]
MODEL = "bench-serve"

DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def record(i: int) -> dict[str, float]:
    return {name: round(((i * 7 + k * 13) % 100) / 10 - 5, 2) for k, name in enumerate(FEATURES)}


def bodies(rows: int) -> dict[str, bytes]:
    """The same rows in each target's request format."""
    records = [record(i) for i in range(rows)]
    serve = records[0] if rows == 1 else records
    mlflow = {"inputs": {name: [[r[name]] for r in records] for name in FEATURES}}
    return {
        "serve": orjson.dumps(serve),
        "floor": orjson.dumps(serve),
        "mlflow": orjson.dumps(mlflow),
    }


# --- the HTTP floor -------------------------------------------------------------------------


def floor_app() -> Any:
    """Reads the body, returns a constant: what the server stack costs with no work."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    constant = orjson.dumps(
        {
            "model_name": MODEL,
            "model_version": "1",
            "request_id": "r",
            "predictions": [{"request_id": "r", "prediction": 1, "scores": {"0": 0.4, "1": 0.6}}],
        }
    )

    async def predict(request: Request) -> Response:
        await request.body()
        return Response(constant, media_type="application/json")

    return Starlette(routes=[Route("/v1/predict", predict, methods=["POST"])])


def run_floor(port: int) -> None:
    from driftloop.asgi import ServiceServer

    # serve's server, configured as serve configures it
    ServiceServer(floor_app(), port, "127.0.0.1", access_log=False).run()


# --- processes ------------------------------------------------------------------------------


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as error:
            if error.code != 503:  # it answers; 503 is serve with no model yet
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[None]:
    with log.open("ab") as out:
        child = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(ready_url, child, log)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, 15)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, 9)
            child.wait()


def mlflow_command() -> str:
    beside = Path(sys.executable).with_name("mlflow")  # the virtualenv's, unactivated
    return str(beside) if beside.exists() else shutil.which("mlflow") or "mlflow"


def wrk(url: str, body: bytes, connections: int, seconds: float, folder: Path) -> dict[str, Any]:
    """One wrk run: requests/s, p50 and p99 in ms, failed requests."""
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n{DONE}"
    )
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(round(seconds), 1)}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    found = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", done.stdout)
    if found is None:
        raise SystemExit(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    requests, duration_us, p50, p99, errors, status = map(int, found.groups())
    return {
        "req_s": requests / (duration_us / 1e6),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "failed": errors + status,
        "requests": requests,
    }


# --- the run --------------------------------------------------------------------------------


def keras_model(seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = {name: keras.Input(shape=(1,), name=name, dtype="float32") for name in FEATURES}
    x = keras.layers.Concatenate()(list(inputs.values()))
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def register(settings: Settings, seed: int) -> str:
    import mlflow

    from driftloop.model_card import FeatureSpec, ModelCard
    from driftloop.reference import FeatureSketch, ReferenceSketch
    from driftloop.registry import register_model

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    card = ModelCard(
        task="classification",
        classes=[0, 1],
        features=[FeatureSpec(name=name) for name in FEATURES],
    )
    reference = ReferenceSketch(
        count=2, features={name: FeatureSketch.numeric([0.0, 1.0]) for name in FEATURES}
    )
    with mlflow.start_run():
        return register_model(keras_model(seed), card, reference, MODEL)


def promote(settings: Settings, version: str) -> None:
    from mlflow import MlflowClient

    from driftloop.events import EventType, new_event
    from driftloop.messaging import EventProducer

    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    client.set_registered_model_alias(MODEL, "champion", version)
    with EventProducer(settings, service="bench") as producer:
        producer.send(
            EventType.MODEL_UPDATE,
            new_event(
                model_name=MODEL,
                model_version=version,
                run_id="bench",
                trigger_id=None,
                alias="champion",
                previous_version=None,
                metrics={},
            ),
        )


def measure(
    url: str, body: bytes, connections: int, seconds: float, folder: Path, serve_port: int | None
) -> dict[str, Any]:
    """One wrk run; against serve (``serve_port``), with the predictions its log stored, and
    those it dropped."""
    if serve_port is None:
        return wrk(url, body, connections, seconds, folder)
    logged = log_counts(serve_port)
    run = wrk(url, body, connections, seconds, folder)
    time.sleep(0.5)  # what the sender still held
    after = log_counts(serve_port)
    return run | {k: after[k] - logged[k] for k in after}


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the most requests a second, with every run's rate beside it."""
    result = dict(max(runs, key=lambda run: run["req_s"]))
    result["runs_req_s"] = " ".join(f"{run['req_s']:,.0f}" for run in runs)
    return result


def metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def log_counts(port: int) -> dict[str, float]:
    """serve's prediction log so far: predictions Kafka stored, and those dropped (buffer full)."""
    return {
        "logged": metric(port, "driftloop_serve_log_sent_total", event="prediction"),
        "log_dropped": metric(port, "driftloop_serve_log_dropped_total", event="prediction"),
    }


def environment(settings: Settings, **extra: Any) -> dict[str, str]:
    env = as_environment(settings) | as_environment(extra)
    return os.environ | env | {"TF_CPP_MIN_LOG_LEVEL": "3", "DRIFTLOOP_LOG_FORMAT": "text"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_latency", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    parser.add_argument("--swap-seconds", type=float, default=24.0, help="length of the swap run")
    parser.add_argument("--swap-every", type=float, default=6.0, help="seconds between swaps")
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of each load on serve and the floor; the best"
    )
    parser.add_argument(
        "--warmup", type=float, default=15.0, help="seconds of load on serve before measuring"
    )
    parser.add_argument("--quick", action="store_true", help="2 s runs: a smoke run")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("serve", "floor", "mlflow"),
        help="measure only these targets (no table file); for iterating",
    )
    parser.add_argument("--floor", type=int, help=argparse.SUPPRESS)  # internal: run the floor
    args = parser.parse_args(argv)
    if args.floor:
        run_floor(args.floor)
        return 0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: scripts/install-tools installs it (apt: wrk)")
    seconds = 2.0 if args.quick else args.seconds
    args.rounds = 1 if args.quick else args.rounds
    args.warmup = 2.0 if args.quick else args.warmup
    swap_seconds = 10.0 if args.quick else args.swap_seconds
    swap_every = 4.0 if args.quick else args.swap_every
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from driftloop.stack import LocalStack
    from driftloop.stack.settings import LocalStackSettings

    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    settings = LocalStackSettings(
        model_name=MODEL,
        state_dir=folder / "stack",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        mlflow_port=free_port(),
    )
    stack = LocalStack(settings)
    rows: list[dict[str, Any]] = []
    results: dict[tuple[str, str], dict[str, Any]] = {}
    swap: dict[str, Any] = {}
    try:
        print("starting a private Kafka broker and MLflow server...", flush=True)
        stack.up()
        first, second = register(settings, 1), register(settings, 2)
        promote(settings, first)
        serve_port, floor_port, mlflow_port = free_port(), free_port(), free_port()
        targets = {
            "serve": (
                [sys.executable, "-m", "driftloop.cli", "run", "serve"],
                # swaps follow model-update events; the timer is the fallback (default 30 s)
                environment(settings, serve_port=serve_port, serve_alias_poll_s=10.0),
                f"http://127.0.0.1:{serve_port}/v1/predict",
                f"http://127.0.0.1:{serve_port}/v2/health/ready",
            ),
            "floor": (
                [sys.executable, "-m", "bench.serve_latency", "--floor", str(floor_port)],
                environment(settings),
                f"http://127.0.0.1:{floor_port}/v1/predict",
                f"http://127.0.0.1:{floor_port}/",
            ),
            "mlflow": (
                [
                    mlflow_command(),
                    "models",
                    "serve",
                    "-m",
                    f"models:/{MODEL}/{first}",
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(mlflow_port),
                ],
                environment(settings)
                | {
                    "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
                    # it starts `uvicorn` from PATH: the virtualenv's, even when not activated
                    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                },
                f"http://127.0.0.1:{mlflow_port}/invocations",
                f"http://127.0.0.1:{mlflow_port}/ping",
            ),
        }
        # serve and the floor are up together (one waits idle while the other is loaded) and
        # their runs alternate, so that both meet the machine in the same minutes.
        fast = [t for t in ("serve", "floor") if not args.only or t in args.only]
        with contextlib.ExitStack() as running:
            for target in fast:
                command, env, url, ready = targets[target]
                running.enter_context(process(command, env, folder / f"{target}.log", ready))
            if "serve" in fast:
                # The broker's JIT compiles its produce path in the first minutes of load (its
                # compiler threads took 6-16% of a core here): serve's runs would pay for a
                # broker that has just started, which in production has run for months.
                print(f"warming up serve and the broker for {args.warmup:g} s...", flush=True)
                wrk(targets["serve"][2], bodies(1)["serve"], 8, args.warmup, folder)
            for label, connections, size in LOADS:
                load = f"{label} c={connections}"
                for target in fast:
                    wrk(targets[target][2], bodies(size)[target], connections, 1.0, folder)
                runs: dict[str, list[dict[str, Any]]] = {target: [] for target in fast}
                # rates move by 10-20% between runs of a few seconds on a shared machine: best of N
                for _ in range(args.rounds):
                    for target in fast:
                        port = serve_port if target == "serve" else None
                        body = bodies(size)[target]
                        runs[target].append(
                            measure(targets[target][2], body, connections, seconds, folder, port)
                        )
                for target in fast:
                    results[(target, load)] = best(runs[target])
                    print(f"  {target} {load}: {results[(target, load)]}", flush=True)
            if "serve" in fast and not args.only:
                swap = swap_run(
                    settings,
                    serve_port,
                    targets["serve"][2],
                    first,
                    second,
                    swap_seconds,
                    swap_every,
                    folder,
                )
                print(f"  swaps under load: {swap}", flush=True)
        if not args.only or "mlflow" in args.only:
            command, env, url, ready = targets["mlflow"]
            print("measuring mlflow (one run a load: its runs are long and its rate steady)...")
            with process(command, env, folder / "mlflow.log", ready):
                for label, connections, size in LOADS:
                    wrk(url, bodies(size)["mlflow"], connections, 1.0, folder)
                    result = best([wrk(url, bodies(size)["mlflow"], connections, seconds, folder)])
                    results[("mlflow", f"{label} c={connections}")] = result
                    print(f"  mlflow {label} c={connections}: {result}", flush=True)
        order = {"serve": 0, "floor": 1, "mlflow": 2}
        for (target, load), result in sorted(results.items(), key=lambda kv: order[kv[0][0]]):
            rows.append(
                {
                    "target": target,
                    "load": load,
                    "logged": None,
                    "log_dropped": None,
                    **{k: v for k, v in result.items() if k != "requests"},
                }
            )
    finally:
        stack.down()
        shutil.rmtree(folder, ignore_errors=True)

    if args.only:
        return 0
    ratios: dict[str, float] = {}
    for _, connections, size in LOADS:
        load = f"{'1 record' if size == 1 else '64 records'} c={connections}"
        mine = results[("serve", load)]["req_s"]
        theirs = results[("mlflow", load)]["req_s"]
        if theirs > 0:  # mlflow may finish no request at all within a run
            ratios[f"serve / mlflow req/s, {load}"] = mine / theirs
        ratios[f"serve / floor req/s, {load}"] = mine / results[("floor", load)]["req_s"]
    ratios["swap p99 / steady p99, c=8"] = swap["p99_ms"] / swap["steady_p99_ms"]
    write(
        "serve_latency",
        rows,
        baseline="mlflow models serve (same model) and a constant-returning app (the floor)",
        ratios=ratios,
        packages=("tensorflow", "keras", "mlflow", "uvicorn", "starlette"),
        notes="wrk -t1 against one target at a time; serve and the broker warmed up with "
        f"{args.warmup:g} s of load first; each load run {seconds} s after a 1 s warm-up, "
        f"serve's and the floor's runs alternating, best of {args.rounds} for each (all in "
        "runs_req_s), one for mlflow; serve logs every prediction to Kafka (logged: stored "
        "by Kafka during the run; log_dropped: dropped, its buffer full: the sender process "
        "could not keep up on the shared cores).",
        extra={"swap_run": swap},
    )
    return 0


def swap_run(
    settings: Settings,
    port: int,
    url: str,
    first: str,
    second: str,
    seconds: float,
    every: float,
    folder: Path,
) -> dict[str, Any]:
    """Load at concurrency 8 while the champion alternates between two versions, after the same
    load as long without swaps (the steady p99 it is compared with: the same minutes of the
    machine, as near as can be)."""
    print(f"steady load for {seconds} s, then swapping every {every} s for {seconds} s...")
    steady = wrk(url, bodies(1)["serve"], 8, seconds, folder)
    swaps_before = metric(port, "driftloop_serve_swaps_total", outcome="swapped")
    stop = threading.Event()

    def swapper() -> None:
        versions = [second, first]
        index = 0
        while not stop.wait(every):
            promote(settings, versions[index % 2])
            index += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    result = wrk(url, bodies(1)["serve"], 8, seconds, folder)
    stop.set()
    thread.join()
    time.sleep(0.5)
    return {
        "seconds": seconds,
        "swaps": metric(port, "driftloop_serve_swaps_total", outcome="swapped") - swaps_before,
        "failed_requests": result["failed"],
        "requests": result["requests"],
        "req_s": result["req_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "steady_req_s": steady["req_s"],
        "steady_p99_ms": steady["p99_ms"],
        "steady_failed_requests": steady["failed"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
