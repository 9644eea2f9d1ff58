"""The ``driftloop`` command.

    driftloop stack up|down|status|install   the local Kafka broker, topics and MLflow server
    driftloop run SERVICE                    run ingest, monitor, trainer or serve
    driftloop settings [--markdown]          every setting, its variable and default
    driftloop train [--note TEXT]            ask the trainer for a refit (a manual trigger)
    driftloop rollback                       champion back to the previous version, announced
    driftloop models [--json]                registered versions, aliases, metrics, triggers
    driftloop contract show|register [FILE]  the model's feature contract; declare a new one
    driftloop demo                           what `make demo` runs
    driftloop up|down|status                 the stack and the four services, left running

Errors driftloop raises on purpose print as one line and exit with their own code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from driftloop.errors import DriftloopError, RegistryError
from driftloop.logs import configure_logging
from driftloop.settings import SERVICES, Settings, service_settings, settings_table

if TYPE_CHECKING:
    from driftloop.stack.settings import LocalStackSettings

STACK_SETTINGS_NOTE = """### The local stack

Read by the `driftloop` commands a person runs (`stack`, `up`, `down`, `status`, `demo`, `train`,
...), never by a service (`driftloop run`). Unless set, `KAFKA_BOOTSTRAP_SERVERS` and
`MLFLOW_TRACKING_URI` follow the ports below, for those commands and the services they start."""


def _settings_class(command: str) -> type[Settings]:
    """``run`` starts a service, which reads the shared settings and its own; every other command
    is a person's, beside the local stack, and reads the stack's settings too."""
    if command == "run":
        return Settings
    from driftloop.stack.settings import LocalStackSettings

    return LocalStackSettings


def _stack(args: argparse.Namespace, settings: LocalStackSettings) -> int:
    from driftloop.stack import LocalStack

    stack = LocalStack(settings)
    if args.action == "install":
        print(f"Kafka {settings.kafka_version} jars in {stack.kafka.install()}")
        return 0
    if args.action == "up":
        outcome = stack.up()
        topics = outcome.pop("topics")
        new = sorted(name for name, state in topics.items() if state != "exists")
        print(f"kafka: {outcome['kafka']} at {stack.kafka.address}")
        print(f"topics: {len(topics)} ready" + (f" ({', '.join(new)} new)" if new else ""))
        print(f"mlflow: {outcome['mlflow']} at {stack.mlflow.url}")
        return 0
    if args.action == "down":
        for name, state in stack.down().items():
            print(f"{name}: {state}")
        return 0
    status = stack.status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        for name, fields in status.items():
            state = "up" if fields["answering"] else "down"
            details = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "answering")
            print(f"{name}: {state} ({details})")
    return 0 if all(fields["answering"] for fields in status.values()) else 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    module = importlib.import_module(f"driftloop.services.{args.service}.main")
    return int(module.main() or 0)


def _settings(args: argparse.Namespace, settings: LocalStackSettings) -> int:
    from driftloop.stack.settings import LocalStackSettings

    classes: list[type[Settings]] = [Settings, *service_settings().values()]
    if args.markdown:
        # The services' settings, then the local stack's own in a table of their own.
        print(settings_table(*classes))
        print(f"\n{STACK_SETTINGS_NOTE}\n")
        print(settings_table(LocalStackSettings, skip=Settings.model_fields))
    else:
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from driftloop.services.trainer.commands import request_training

    trigger = request_training(settings, note=args.note)
    print(f"trigger {trigger['trigger_id']} sent for {settings.model_name}")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from driftloop.services.trainer.commands import rollback

    update = rollback(settings)
    print(
        f"{settings.model_name}: champion is version {update['model_version']} again "
        f"(rolled back from {update['previous_version']})"
    )
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from driftloop.services.trainer.commands import model_versions, versions_table

    versions = model_versions(settings, args.limit)
    if args.json:
        print(json.dumps([asdict(v) for v in versions], indent=2))
    elif versions:
        print(versions_table(versions))
    else:
        print(f"{settings.model_name} has no registered versions")
    return 0


def _contract(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from driftloop.contract import FeatureContract, summary
    from driftloop.contract_log import ContractLog

    name = args.model or settings.model_name
    log = ContractLog(settings, "cli")
    in_force: FeatureContract | None
    try:
        if args.action == "register":
            if not args.file:
                raise DriftloopError("driftloop contract register needs the contract's file")
            declared = FeatureContract.model_validate_json(Path(args.file).read_bytes())
            in_force = log.register(declared.model_copy(update={"model_name": name}))
            print(f"{name}: contract version {in_force.version} in force")
        else:
            in_force = log.latest(name)
            if in_force is None:
                print(f"{name} has no contract yet (one is inferred from its first examples)")
                return 1
    finally:
        log.close()
    if args.json:
        print(in_force.model_dump_json(indent=2))
    elif args.action == "show":
        print("\n".join(summary(in_force)))
    return 0


def _demo(args: argparse.Namespace, settings: LocalStackSettings) -> int:
    from driftloop import demo

    demo.run(settings, say=lambda line: print(f"[demo] {line}", flush=True))
    return 0


def _loop(args: argparse.Namespace, settings: LocalStackSettings) -> int:
    from driftloop.loop import control, status

    if args.command == "up":
        control.up(settings)
    elif args.command == "down":
        control.down(settings)
    else:
        state = status.loop_status(settings)
        print(json.dumps(state, indent=2, default=str) if args.json else "\n".join(
            status.describe(state)))  # fmt: skip
        return 0 if all(f["answering"] for f in state["stack"].values()) else 1
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="driftloop", description=__doc__.split("\n")[1].strip())
    commands = root.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="the local Kafka broker, topics and MLflow server")
    stack.add_argument("action", choices=["up", "down", "status", "install"])
    stack.add_argument("--json", action="store_true", help="status as JSON")
    stack.set_defaults(handler=_stack)

    run = commands.add_parser("run", help="run one service in the foreground")
    run.add_argument("service", choices=SERVICES)
    run.set_defaults(handler=_run)

    settings = commands.add_parser("settings", help="show every setting")
    settings.add_argument("--markdown", action="store_true", help="the README's tables")
    settings.set_defaults(handler=_settings)

    train = commands.add_parser("train", help="ask the trainer for a refit (manual trigger)")
    train.add_argument("--note", default="", help="a note kept in the trigger's evidence")
    train.set_defaults(handler=_train)

    rollback = commands.add_parser("rollback", help="move champion back to previous")
    rollback.set_defaults(handler=_rollback)

    models = commands.add_parser("models", help="registered versions, aliases, metrics")
    models.add_argument("--limit", type=int, default=20, help="newest versions to list")
    models.add_argument("--json", action="store_true", help="as JSON")
    models.set_defaults(handler=_models)

    contract = commands.add_parser("contract", help="the model's feature contract")
    contract.add_argument("action", choices=["show", "register"])
    contract.add_argument("file", nargs="?", help="with register: the contract (JSON)")
    contract.add_argument("--model", help="the model (default: DRIFTLOOP_MODEL_NAME)")
    contract.add_argument("--json", action="store_true", help="the contract as JSON")
    contract.set_defaults(handler=_contract)

    demo = commands.add_parser("demo", help="what `make demo` runs")
    demo.set_defaults(handler=_demo)

    for name, what in (
        ("up", "start the stack and the four services, and leave them running"),
        ("down", "stop the four services and the stack"),
        ("status", "the loop: services, champion, last drift/trigger/fit, consumer lag"),
    ):
        loop = commands.add_parser(name, help=what)
        if name == "status":
            loop.add_argument("--json", action="store_true", help="status as JSON")
        loop.set_defaults(handler=_loop)
    return root


# Commands a person waits on: MLflow's client retries an absent server for minutes by default.
ONE_SHOT = {"train", "rollback", "models", "status", "contract"}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in ONE_SHOT:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    try:
        settings = _settings_class(args.command)()
        configure_logging(settings.log_level, settings.log_format)
        return int(args.handler(args, settings))
    except DriftloopError as error:
        print(f"driftloop: {error}", file=sys.stderr)
        return error.exit_code
    except ValidationError as error:
        for problem in error.errors():
            variable = "DRIFTLOOP_" + "_".join(map(str, problem["loc"])).upper()
            print(f"driftloop: {variable}: {problem['msg']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if not _from_mlflow(error):
            raise
        print(f"driftloop: MLflow at {settings.mlflow_tracking_uri}: {error}", file=sys.stderr)
        return RegistryError.exit_code


def _from_mlflow(error: Exception) -> bool:
    """An MLflow client error (the server down or refusing), without importing mlflow here."""
    return any(cls.__module__.split(".")[0] == "mlflow" for cls in type(error).__mro__)


if __name__ == "__main__":
    sys.exit(main())
