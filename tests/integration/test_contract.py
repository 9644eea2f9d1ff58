"""The data contract end to end: an app whose features no code here knows, sending through an
outside Kafka client (kcat), with bad records among good ones.

A loan-default app (amount float, term_months int, rate float, grade "A".."G", home
rent/own/mortgage, verified bool, income float and nullable; a binary label) sends 3,000
predictions and 3,000 labels; 70 records are bad in the ways real data is. ingest, the trainer
and serve run as processes. Nobody declares a contract: ingest infers it from the first
examples, and every bad record, before or after the contract froze, lands on the dead-letter
topic with its rule; the store holds exactly the valid joined pairs; the first fit succeeds;
serve answers the new schema through the Open Inference Protocol, JSON booleans included.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer

from driftloop.contract_log import ContractLog
from driftloop.events import new_event
from driftloop.loop.run import stored_request_ids
from driftloop.loop.services import ServiceSupervisor, isolated_environment, wait_for
from driftloop.messaging import ensure_topics
from driftloop.registry import ModelRegistry
from driftloop.settings import Settings
from driftloop.store import ExampleStore

pytestmark = pytest.mark.integration

REQUESTS = 3_000
GRADES = list("ABCDEFG")
HOMES = ["rent", "own", "mortgage"]
# Ill-typed features, one per bad prediction (the feature, the value, the rule expected).
BAD_FEATURES = [
    ("amount", "12,000", "feature_type"),
    ("income", "N/A", "feature_type"),
    ("term_months", "36 months", "feature_type"),
    ("verified", "yes", "feature_type"),
    ("term_months", 36.5, "feature_type"),
    ("grade", 3, "feature_type"),
    ("verified", 1, "feature_type"),
    ("amount", None, "null_feature"),
    ("rate", "7%", "feature_type"),
    ("home", 2, "feature_type"),
]


def loan(rng: random.Random) -> tuple[dict[str, Any], int]:
    """One application and whether it defaulted (a rule the model can learn)."""
    features = {
        "amount": round(rng.uniform(1_000, 40_000), 2),
        "term_months": rng.choice([36, 60]),
        "rate": round(rng.uniform(0.04, 0.25), 4),
        "grade": rng.choice(GRADES),
        "home": rng.choice(HOMES),
        "verified": rng.random() < 0.6,
        "income": None if rng.random() < 0.1 else round(rng.uniform(20_000, 150_000), 2),
    }
    defaulted = int(features["rate"] > 0.15 and not features["verified"])
    return features, defaulted


def produce(kcat: str, settings: Settings, topic: str, records: list[tuple[str, bytes]]) -> None:
    """Records from an outside client, keyed by request id with the Java client's hash."""
    lines = b"".join(key.encode() + b"\t" + value + b"\n" for key, value in records)
    subprocess.run(
        [kcat, "-b", settings.kafka_bootstrap_servers, "-P", "-t", topic, "-K", "\t",
         "-X", "partitioner=murmur2_random"],
        input=lines, check=True, timeout=60,
    )  # fmt: skip


def dead_letters(settings: Settings, topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3_000,
    )
    try:
        return [json.loads(record.value) for record in consumer]
    finally:
        consumer.close()


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_new_app_with_bad_records_is_learnt_from_only_its_valid_pairs(
    settings: Settings, tmp_path: Path, kcat: str
) -> None:
    rng = random.Random(23)
    tag = uuid.uuid4().hex[:8]
    model = f"loans-{tag}"
    fields = isolated_environment(
        settings,
        tag,
        tmp_path / "store",
        model_name=model,
        ingest_flush_s=0.5,
        trainer_bootstrap_poll_s=1.0,
        trainer_max_fit_s=20.0,
        trainer_window_size=5_000,
    )
    supervisor = ServiceSupervisor(
        settings, fields, tmp_path / "run", services=("ingest", "trainer", "serve")
    )
    topics = Settings.model_validate(settings.model_dump() | fields)
    ensure_topics(topics)

    ids = [f"loan-{i:05d}" for i in range(REQUESTS)]
    order = list(range(REQUESTS))
    rng.shuffle(order)  # the bad records fall anywhere: before the contract froze, and after
    expected: Counter[str] = Counter()
    predictions, labels, valid = [], [], set()
    for index in order:
        request_id = ids[index]
        features, defaulted = loan(rng)
        label: Any = defaulted
        event = new_event(request_id=request_id, model_name=model, model_version="app",
                          features=features, prediction=None)  # fmt: skip
        label_event = new_event(request_id=request_id, label=label)
        label_bytes = json.dumps(label_event).encode()
        if index < 10:  # an ill-typed feature
            feature, value, rule = BAD_FEATURES[index]
            event["features"] = features | {feature: value}
            expected[rule] += 1
        elif index < 20:
            label_bytes = json.dumps(label_event | {"label": "maybe"}).encode()
            expected["label_type"] += 1
        elif index < 30:
            label_bytes = json.dumps(label_event | {"label": 7}).encode()
            expected["unknown_class"] += 1
        elif index < 40:
            label_bytes = json.dumps(label_event | {"label": None}).encode()
            expected["null_label"] += 1
        elif index < 50:
            label_bytes = b'{"request_id": "' + request_id.encode() + b'", "label": '
            expected["json"] += 1
        elif index < 60:
            label_bytes = json.dumps(
                {k: v for k, v in label_event.items() if k != "label"}
            ).encode()
            expected["required"] += 1
        elif index < 70:
            del event["features"]
            expected["required"] += 1
        else:
            valid.add(request_id)
        predictions.append((request_id, json.dumps(event).encode()))
        labels.append((request_id, label_bytes))

    try:
        supervisor.start("ingest")
        supervisor.wait("ingest")
        produce(kcat, topics, topics.topic_predictions, predictions)
        produce(kcat, topics, topics.topic_labels, labels)
        store = ExampleStore(str(fields["store_uri"]))
        wait_for(
            lambda: len(stored_request_ids(store)) >= len(valid), 120, "the valid pairs stored"
        )

        # Every bad record is dead-lettered once, with its rule; the contract's name the model.
        letters = [
            letter
            for letter in dead_letters(settings, topics.topic_dead_letters)
            if letter["origin"]["topic"] in (topics.topic_predictions, topics.topic_labels)
        ]
        by_rule = Counter(letter["error"]["rule"] for letter in letters)
        print(f"sent {REQUESTS} predictions + {REQUESTS} labels; dead-lettered {dict(by_rule)}")
        assert by_rule == expected
        contract_rules = {"feature_type", "null_feature", "label_type", "unknown_class",
                          "null_label"}  # fmt: skip
        for letter in letters:
            if letter["error"]["rule"] in contract_rules:
                assert letter["model_name"] == model
                assert base64.b64decode(letter["payload_b64"])

        # The store holds exactly the valid joined pairs, typed as the app sent them.
        assert sorted(stored_request_ids(store)) == sorted(valid)
        table = store.read(store.manifests())
        types = {name: str(table.schema.field(name).type) for name in table.schema.names}
        assert types["feature.verified"] == "bool" and types["feature.term_months"] == "int64"
        assert types["feature.amount"] == types["feature.income"] == "double"
        assert types["label"] == "int64"

        # The contract was inferred, not typed by the bad records.
        log = ContractLog(topics, "test")
        try:
            contract = log.latest(model)
        finally:
            log.close()
        assert contract is not None and contract.source == "inferred"
        assert {f.name: (f.kind, f.type, f.nullable) for f in contract.features} == {
            "amount": ("numeric", "float", False),
            "term_months": ("numeric", "int", False),
            "rate": ("numeric", "float", False),
            "grade": ("categorical", "string", False),
            "home": ("categorical", "string", False),
            "verified": ("boolean", "bool", False),
            "income": ("numeric", "float", True),
        }
        assert contract.classes == [0, 1]

        # The first fit succeeds on them, and serve answers the new schema.
        supervisor.start("trainer")
        supervisor.start("serve")
        registry = ModelRegistry(settings.mlflow_tracking_uri)
        wait_for(lambda: registry.champion(model) is not None, 300, "a first champion")
        card = registry.model_card(model, registry.champion(model) or "")
        print(f"stored {len(valid)}; champion v{registry.champion(model)}: {card.metrics}")
        supervisor.wait("serve", timeout=180)
        serve = supervisor.url("serve")
        features, _ = loan(rng)
        datatypes = {"amount": "FP64", "term_months": "INT64", "rate": "FP64", "grade": "BYTES",
                     "home": "BYTES", "verified": "BOOL"}  # fmt: skip
        inputs = [
            {"name": name, "datatype": datatype, "shape": [1], "data": [features[name]]}
            for name, datatype in datatypes.items()
        ] + [{"name": "income", "datatype": "FP64", "shape": [1], "data": [52_000.0]}]
        status, answer = post(f"{serve}/v2/models/{model}/infer", {"inputs": inputs})
        assert status == 200, answer
        assert answer["outputs"][0]["data"][0] in (0, 1)
        status, answer = post(f"{serve}/v1/predict", features | {"verified": True})
        assert status == 200, answer
        status, answer = post(f"{serve}/v1/predict", features | {"verified": "yes"})
        assert status == 422 and "verified" in json.dumps(answer), answer
    finally:
        supervisor.stop_all()


def test_a_declared_contract_is_registered_once_per_change_and_shown(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from driftloop.cli import main
    from driftloop.settings import as_environment

    tag = uuid.uuid4().hex[:8]
    own = Settings.model_validate(
        settings.model_dump() | {"topic_contracts": f"{tag}.contracts", "model_name": f"m-{tag}"}
    )
    for variable, value in as_environment(own).items():
        monkeypatch.setenv(variable, value)
    declared = tmp_path / "loans.json"
    terms = {
        "task": "classification",
        "classes": [0, 1],
        "features": [
            {"name": "amount", "type": "float"},
            {"name": "verified", "kind": "boolean"},
            {"name": "income", "type": "float", "nullable": True},
        ],
    }
    declared.write_text(json.dumps(terms))

    assert main(["contract", "show"]) == 1  # none yet
    assert main(["contract", "register", str(declared)]) == 0
    assert main(["contract", "register", str(declared)]) == 0  # the same terms: no new version
    terms["classes"] = [0, 1, 2]
    declared.write_text(json.dumps(terms))
    assert main(["contract", "register", str(declared)]) == 0
    out = capsys.readouterr().out
    assert out.count("contract version 1 in force") == 2 and "contract version 2" in out

    assert main(["contract", "show"]) == 0
    shown = capsys.readouterr().out
    assert f"contract: m-{tag} v2 (declared)" in shown
    assert "verified: boolean bool" in shown and "income: numeric float, nullable" in shown
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(terms | {"classes": [0]}))
    assert main(["contract", "register", str(bad)]) == 2  # a classification needs two classes


def events_of(settings: Settings, topic: str) -> list[dict[str, Any]]:
    return dead_letters(settings, topic)  # any topic's JSON events, from the start


def test_types_survive_bootstrap_serving_labels_and_three_refits(
    settings: Settings, tmp_path: Path, kcat: str
) -> None:
    """int, float, string, boolean and nullable features through the whole loop, for every fit:
    what the app sends is what serve accepts, what the events carry, what the store holds and
    what the trainer reads."""
    from driftloop.services.trainer.commands import request_training

    rng = random.Random(5)
    tag = uuid.uuid4().hex[:8]
    fields = isolated_environment(
        settings, tag, tmp_path / "store", ingest_flush_s=0.5, trainer_bootstrap_poll_s=1.0,
        trainer_max_fit_s=10.0, trainer_window_size=5_000, contract_sample=300,
    )  # fmt: skip
    model = str(fields["model_name"])
    supervisor = ServiceSupervisor(
        settings, fields, tmp_path / "run", services=("ingest", "trainer", "serve")
    )
    topics = Settings.model_validate(settings.model_dump() | fields)
    ensure_topics(topics)

    def labelled(prefix: str, count: int) -> list[tuple[str, dict[str, Any], int]]:
        rows = []
        for i in range(count):
            features, defaulted = loan(rng)
            rows.append((f"{prefix}-{i}", features, defaulted))
        return rows

    try:
        supervisor.start("ingest")
        supervisor.start("trainer")
        supervisor.start("serve")
        supervisor.wait("ingest")
        # Bootstrap: the app's own predictions and labels (no model yet).
        first = labelled("app", 600)
        produce(kcat, topics, topics.topic_predictions, [
            (rid, json.dumps(new_event(request_id=rid, model_name=model, model_version="app",
                                       features=features, prediction=None)).encode())
            for rid, features, _ in first
        ])  # fmt: skip
        produce(kcat, topics, topics.topic_labels, [
            (rid, json.dumps(new_event(request_id=rid, label=label)).encode())
            for rid, _, label in first
        ])  # fmt: skip
        registry = ModelRegistry(settings.mlflow_tracking_uri)
        wait_for(lambda: registry.champion(model) is not None, 300, "the first champion")
        supervisor.wait("serve", timeout=180)

        # serve's own predictions, JSON booleans and nulls as sent, then labelled.
        served = labelled("served", 600)
        for rid, features, _ in served:
            status, answer = post(f"{supervisor.url('serve')}/v1/predict",
                                  features | {"request_id": rid})  # fmt: skip
            assert status == 200, answer
        produce(kcat, topics, topics.topic_labels, [
            (rid, json.dumps(new_event(request_id=rid, label=label)).encode())
            for rid, _, label in served
        ])  # fmt: skip
        store = ExampleStore(str(fields["store_uri"]))
        wait_for(lambda: len(stored_request_ids(store)) >= 1_200, 120, "serve's rows stored")

        # Three refits over windows holding both; none fails, whatever the gate says.
        outcomes = []
        for _ in range(3):
            trigger = request_training(topics)

            def result(trigger_id: str = trigger["trigger_id"]) -> dict[str, Any] | None:
                found = [e for e in events_of(topics, topics.topic_training_results)
                         if e.get("trigger_id") == trigger_id]  # fmt: skip
                return found[0] if found else None

            wait_for(lambda: result() is not None, 180, "a training result")
            outcomes.append(result())
        print("refits:", [(o["outcome"], o["reason"][:60]) for o in outcomes if o])
        assert all(o and o["outcome"] in ("promoted", "rejected") for o in outcomes), outcomes

        # Every file of the store holds each column in the contract's type.
        for manifest in store.manifests():
            schema = store.read([manifest]).schema
            assert str(schema.field("feature.verified").type) == "bool"
            assert str(schema.field("feature.term_months").type) == "int64"
            assert str(schema.field("feature.income").type) == "double"
        frame = store.read_frame(store.manifests())
        by_id = frame.set_index("request_id")
        for rid, features, _ in served[:50]:
            row = by_id.loc[rid]
            assert row["feature.verified"] == features["verified"]
            assert isinstance(row["feature.verified"], bool | np.bool_)
            income = row["feature.income"]
            assert (features["income"] is None) == (income is None or income != income)
    finally:
        supervisor.stop_all()
