"""serve end to end on the real broker and MLflow: the protocol, bad input, promotion, swaps."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.admin import NewTopic

from driftloop.client import Client, Refused
from driftloop.events import EventType
from driftloop.messaging import ensure_topics, kafka_admin
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.services.serve.settings import ServeSettings
from driftloop.stack import KafkaBroker
from tests.conftest import local_settings
from tests.integration.serve.conftest import (
    ADMIN_TOKEN,
    CARD,
    RECORD,
    Load,
    ServeProcess,
    oip,
    promote,
    read_events,
    register,
)

pytestmark = pytest.mark.integration

Start = Callable[[ServeSettings], ServeProcess]


def test_no_champion_then_promotion_and_the_protocol(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    serve = serve_process(serve_settings)
    name = serve_settings.model_name
    infer = f"/v2/models/{name}/infer"

    # No champion yet: live, not ready, inference says why.
    assert serve.get("/v2/health/live") == (200, {"live": True})
    status, body = serve.get("/v2/health/ready")
    assert status == 503 and body["ready"] is False
    status, body = serve.post(infer, oip([RECORD]))
    assert status == 503 and "no model has been promoted yet" in body["error"]
    status, body = serve.post("/v1/predict", RECORD)
    assert status == 503 and "no model has been promoted yet" in body["error"]

    version = register(serve_settings)
    promote(serve_settings, version)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")

    # Server and model metadata.
    status, body = serve.get("/v2")
    assert status == 200 and body["name"] == "driftloop-serve" and "version" in body
    status, body = serve.get(f"/v2/models/{name}")
    assert status == 200 and body["name"] == name and body["versions"] == [version]
    assert [(i["name"], i["datatype"]) for i in body["inputs"]] == [
        ("age", "FP64"), ("income", "FP64"), ("region", "BYTES")
    ]  # fmt: skip
    assert serve.get(f"/v2/models/{name}/ready") == (
        200, {"name": name, "version": version, "ready": True}
    )  # fmt: skip
    status, body = serve.get("/v2/models/nope")
    assert status == 404 and "nope" in body["error"]

    # OIP inference: the caller's id (body), shapes, labels and scores.
    records = [RECORD, RECORD | {"region": "south", "age": 70.0}]
    status, body = serve.post(infer, oip(records, id="req-oip-1"))
    assert status == 200, body
    assert body["model_name"] == name and body["model_version"] == version
    assert body["id"] == "req-oip-1"
    assert body["parameters"]["request_ids"] == ["req-oip-1-0", "req-oip-1-1"]
    predict, scores = body["outputs"]
    assert predict["name"] == "predict" and predict["datatype"] == "BYTES"
    assert predict["shape"] == [2] and set(predict["data"]) <= {"no", "yes"}
    assert scores["shape"] == [2, 2] and len(scores["data"]) == 4
    assert abs(sum(scores["data"][:2]) - 1) < 1e-4
    # ...through the version path, with the id from the header and flat [n] shapes.
    flat = oip([RECORD])
    for tensor in flat["inputs"]:
        tensor["shape"] = [1]
    status, body = serve.post(f"/v2/models/{name}/versions/{version}/infer", flat,
                              **{"x-request-id": "req-header"})  # fmt: skip
    assert status == 200 and body["id"] == "req-header" and body["model_version"] == version
    status, body = serve.post(f"/v2/models/{name}/versions/999/infer", flat)
    assert status == 404 and "999" in body["error"]
    # ...asking for one output only.
    status, body = serve.post(infer, oip([RECORD], outputs=[{"name": "scores"}]))
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["scores"]

    # Plain records: one, with its id in the body; a list, with a generated id.
    status, body = serve.post("/v1/predict", RECORD | {"request_id": "req-plain"})
    assert status == 200 and body["request_id"] == "req-plain"
    assert body["model_name"] == name and body["model_version"] == version
    (row,) = body["predictions"]
    assert row["request_id"] == "req-plain" and row["prediction"] in ("no", "yes")
    assert set(row["scores"]) == {"no", "yes"}
    status, body = serve.post("/v1/predict", [RECORD, RECORD, RECORD])
    assert status == 200 and len(body["request_id"]) == 32
    assert [p["request_id"] for p in body["predictions"]] == [
        f"{body['request_id']}-{i}" for i in range(3)
    ]

    # Every prediction is on the predictions topic, under the id a label will refer to.
    wanted = {"req-oip-1-0", "req-oip-1-1", "req-header", "req-plain"}
    events = read_events(
        serve_settings,
        EventType.PREDICTION,
        lambda found: wanted <= {e["request_id"] for e in found},
    )
    logged = {e["request_id"]: e for e in events}
    assert wanted <= set(logged)
    assert logged["req-plain"]["features"] == RECORD
    assert logged["req-plain"]["model_version"] == version
    assert set(logged["req-plain"]["scores"]) == {"no", "yes"}
    assert logged["req-oip-1-1"]["features"]["region"] == "south"

    # Metrics by version and status.
    assert serve.metric("driftloop_serve_requests_total", model_version=version, status="200") == 5
    assert serve.metric("driftloop_serve_requests_total", status="503") >= 2
    assert serve.metric("driftloop_serve_swaps_total", outcome="swapped") == 1
    assert serve.metric("driftloop_serve_batch_rows_count") >= 5


BAD_RECORDS: list[tuple[Any, int, str]] = [
    (RECORD | {"age": "old"}, 422, "age"),  # wrong type
    (RECORD | {"region": 3}, 422, "region"),  # wrong type, categorical
    ({"age": 1.0, "region": "north"}, 422, "income"),  # missing feature
    (RECORD | {"colour": "red"}, 422, "colour"),  # extra feature
    (RECORD | {"age": None}, 422, "age"),  # null
    ([], 422, "records"),  # empty batch
    ([RECORD, "x"], 422, "records[1]"),
    ("just a string", 400, "record"),
]


def bad_oip() -> list[tuple[Any, int, str]]:
    nan = oip([RECORD])
    nan["inputs"][0]["data"] = [float("nan")]
    wrong_datatype = oip([RECORD])
    wrong_datatype["inputs"][2]["datatype"] = "FP32"
    bad_datatype = oip([RECORD])
    bad_datatype["inputs"][0]["datatype"] = "FLOAT"
    shape = oip([RECORD])
    shape["inputs"][1]["shape"] = [2, 1]
    empty = oip([])
    extra = oip([RECORD])
    extra["inputs"].append({"name": "colour", "datatype": "BYTES", "shape": [1], "data": ["r"]})
    missing = oip([RECORD])
    missing["inputs"].pop(1)
    string_in_fp = oip([RECORD])
    string_in_fp["inputs"][0]["data"] = ["31"]
    return [
        (nan, 422, "age"),
        (wrong_datatype, 422, "region"),
        (bad_datatype, 422, "age"),
        (shape, 422, "income"),
        (empty, 422, "age"),
        (extra, 422, "colour"),
        (missing, 422, "income"),
        (string_in_fp, 422, "age"),
        ({"inputs": []}, 422, "inputs"),
        ([1, 2], 400, "inputs"),
    ]


def test_bad_input_gets_a_4xx_naming_the_field(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    version = register(serve_settings)
    promote(serve_settings, version)
    serve = serve_process(serve_settings)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")
    infer = f"/v2/models/{serve_settings.model_name}/infer"

    for body, status, field in BAD_RECORDS:
        got, answer = serve.post("/v1/predict", body)
        assert (got, field in answer["error"]) == (status, True), (body, answer)
    for body, status, field in bad_oip():
        raw = orjson.dumps(body) if "nan" not in repr(body) else repr(body).encode()
        if "nan" in repr(body):
            raw = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS).replace(b"null", b"NaN")
        got, answer = serve.request("POST", infer, raw)
        assert (got, field in answer["error"]) == (status, True), (body, answer)
    got, answer = serve.request("POST", "/v1/predict", b"{not json")
    assert got == 400 and "not JSON" in answer["error"]
    got, answer = serve.post("/v1/predict", [RECORD] * 200)  # over the 4096 bytes allowed
    assert got == 413 and "4096" in answer["error"]

    # Admin: a reload needs the token.
    load = f"/v2/repository/models/{serve_settings.model_name}/load"
    assert serve.post(load, {})[0] == 401
    assert serve.post(load, {}, authorization="Bearer wrong")[0] == 401
    status, body = serve.post(load, {}, authorization=f"Bearer {ADMIN_TOKEN}")
    assert status == 200 and body["outcome"] == "unchanged" and body["model_version"] == version

    # Nothing bad became a 5xx, and the server still answers.
    assert serve.metric("driftloop_serve_requests_total", status="500") == 0
    assert serve.post("/v1/predict", RECORD)[0] == 200

    # Stopped, serve closes its loader, whose scratch (TensorFlow's generated code) goes too.
    (scratch,) = serve.temp.glob("driftloop-loader-*")
    assert serve.stop() == 0
    assert not scratch.exists()
    assert not list(serve.temp.rglob("__autograph_generated_file*"))


TYPED = ModelCard(
    task="classification",
    classes=["no", "yes"],
    version=2,
    source="declared",
    features=[
        FeatureSpec(name="term", type="int"),
        FeatureSpec(name="verified", kind="boolean"),
        FeatureSpec(name="grade", kind="categorical", categories=["A", "B"], nullable=True),
        FeatureSpec(name="income", nullable=True),
    ],
)


def test_the_contracts_types_survive_serve_booleans_ints_and_nulls(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    version = register(serve_settings, TYPED)
    promote(serve_settings, version)
    serve = serve_process(serve_settings)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")
    name = serve_settings.model_name
    infer = f"/v2/models/{name}/infer"

    # The metadata gives each input its contract type, and the contract.
    status, body = serve.get(f"/v2/models/{name}")
    assert status == 200
    assert [(i["name"], i["datatype"]) for i in body["inputs"]] == [
        ("term", "INT64"), ("verified", "BOOL"), ("grade", "BYTES"), ("income", "FP64")
    ]  # fmt: skip
    contract = body["parameters"]["contract"]
    assert contract["version"] == 2 and contract["features"][1]["type"] == "bool"

    # What the app sends, as JSON: true, 60.0 for an int, nulls and a nullable left out.
    loan = {"term": 36, "verified": True, "grade": "A", "income": 1200.5}
    status, body = serve.post("/v1/predict", loan | {"request_id": "typed-1"})
    assert status == 200, body
    later = {"term": 60.0, "verified": False}
    status, body = serve.post("/v1/predict", {"records": [later], "request_id": "typed-2"})
    assert status == 200, body
    tensors = [
        {"name": "term", "datatype": "INT64", "shape": [1], "data": [36]},
        {"name": "verified", "datatype": "BOOL", "shape": [1], "data": [True]},
        {"name": "grade", "datatype": "BYTES", "shape": [1], "data": [None]},
        {"name": "income", "datatype": "FP64", "shape": [1, 1], "data": [[None]]},
    ]
    status, body = serve.post(infer, {"inputs": tensors, "id": "typed-3"})
    assert status == 200, body

    # What the contract refuses, serve refuses, naming the field and the rule.
    for change, field, rule in [
        ({"term": 36.5}, "term", "feature_type"),
        ({"verified": 1}, "verified", "feature_type"),
        ({"verified": "true"}, "verified", "feature_type"),
        ({"verified": None}, "verified", "null_feature"),
        ({"income": "1200"}, "income", "feature_type"),
    ]:
        status, body = serve.post("/v1/predict", loan | change)
        assert (status, body["field"]) == (422, field), body
        assert body["error"].endswith(f"(rule: {rule})"), body
    numeric_bool = [dict(t, datatype="FP32", data=[1.0]) if t["name"] == "verified" else t
                    for t in tensors]  # fmt: skip
    status, body = serve.post(infer, {"inputs": numeric_bool})
    assert (status, body["field"]) == (422, "inputs.verified"), body

    # The prediction events carry the values as sent: a boolean, an int, nulls.
    wanted = {"typed-1", "typed-2", "typed-3"}
    events = read_events(
        serve_settings,
        EventType.PREDICTION,
        lambda found: wanted <= {e["request_id"] for e in found},
    )
    logged = {e["request_id"]: e["features"] for e in events}
    assert logged["typed-1"] == loan and logged["typed-1"]["verified"] is True
    assert logged["typed-2"] == later | {"grade": None, "income": None}
    assert logged["typed-2"]["verified"] is False
    assert logged["typed-3"] == {"term": 36, "verified": True, "grade": None, "income": None}


def test_swap_under_load_loses_nothing_and_a_broken_version_never_serves(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    first = register(serve_settings)
    promote(serve_settings, first)
    second = register(serve_settings, bias=1.0)
    broken = register(serve_settings, outputs=3)  # three scores for two classes
    other_features = register(
        serve_settings, card=CARD.model_copy(update={"features": CARD.features[:2]})
    )
    serve = serve_process(serve_settings)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")

    with Load(serve) as load:
        serve.wait_until(lambda: len(load.answers[0]) >= 20, "answering")
        promote(serve_settings, second, first)
        serve.wait_until(lambda: second in {v for _, v in load.answers[0][-5:]}, f"on {second}")
        time.sleep(0.5)
    assert load.failures() == []
    assert load.versions() == {first, second}
    for answers in load.answers:  # each client saw the old version, then only the new one
        versions = [version for _, version in answers]
        switched = versions.index(second)
        assert set(versions[:switched]) == {first} and set(versions[switched:]) == {second}

    # A version that fails its warm-up, and one with other features, never replace it.
    for failed, bad in enumerate((broken, other_features), start=1):
        promote(serve_settings, bad, second)
        serve.wait_until(
            lambda failed=failed: serve.metric("driftloop_serve_failed_loads_total") >= failed,
            f"refusing {bad}",
        )
        status, body = serve.post("/v1/predict", RECORD)
        assert status == 200 and body["model_version"] == second
    assert serve.get("/v2/health/ready")[0] == 200

    # Rollback is the alias moving back (the timer finds it even without an event).
    from mlflow import MlflowClient

    MlflowClient(serve_settings.mlflow_tracking_uri).set_registered_model_alias(
        serve_settings.model_name, "champion", first
    )
    serve.wait_until(
        lambda: serve.post("/v1/predict", RECORD)[1]["model_version"] == first, "rolled back"
    )

    swaps = read_events(serve_settings, EventType.SWAP, lambda found: len(found) >= 5)
    outcomes = [(e["model_version"], e["outcome"], e["previous_version"]) for e in swaps]
    assert outcomes == [
        (first, "swapped", None),
        (second, "swapped", first),
        (broken, "failed", second),
        (other_features, "failed", second),
        (first, "swapped", second),
    ]
    assert "shape" in swaps[2]["error"] and "features" in swaps[3]["error"]
    assert {e["replica"] for e in swaps} == {serve_settings.serve_replica_id}


def test_kafka_down_then_back_requests_succeed_drops_are_counted_logging_resumes_sender_dies(
    serve_settings: ServeSettings, serve_process: Start, tmp_path: Path
) -> None:
    # A broker of this test's own, to stop and start: serve logs predictions to it.
    own = local_settings(tmp_path / "broker")
    broker = KafkaBroker(own)
    broker.up()
    try:
        private = ServeSettings.model_validate(
            serve_settings.model_dump()
            | {
                "kafka_bootstrap_servers": broker.address,
                "kafka_client_timeout_ms": 2000,
                "serve_log_buffer": 20,
            }
        )
        ensure_topics(private)
        version = register(serve_settings)
        promote(serve_settings, version)
        serve = serve_process(private)
        serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")

        def predict(request_id: str) -> None:
            status, body = serve.post("/v1/predict", RECORD | {"request_id": request_id})
            assert status == 200 and body["request_id"] == request_id

        def logged(ids: set[str]) -> set[str]:
            events = read_events(
                private, EventType.PREDICTION, lambda found: ids <= {e["request_id"] for e in found}
            )
            return ids & {e["request_id"] for e in events}

        before = {f"before-{i}" for i in range(5)}
        for request_id in sorted(before):
            predict(request_id)
        assert logged(before) == before

        broker.down()
        for i in range(60):  # the buffer holds 20: at least 40 are dropped, none fails
            predict(f"down-{i}")
        assert serve.metric("driftloop_serve_log_dropped_total", event="prediction") >= 40
        assert serve.metric("driftloop_serve_requests_total", status="200") == 65

        broker.up()
        # The producer comes back by itself and sends what the buffer kept...
        serve.wait_until(
            lambda: serve.metric("driftloop_serve_log_sent_total", event="prediction") >= 25,
            "sending the buffered predictions",
        )
        # ...and what comes after.
        after = {f"after-{i}" for i in range(5)}
        for request_id in sorted(after):
            predict(request_id)
        assert logged(after) == after

        # The sender process dies: requests go on, a new one takes over.
        (sender,) = senders(serve)
        os.kill(sender, signal.SIGKILL)
        predict("meanwhile")
        serve.wait_until(lambda: senders(serve) not in ([], [sender]), "a new event sender")
        assert len(senders(serve)) == 1
        later = {f"later-{i}" for i in range(3)}
        for request_id in sorted(later):
            predict(request_id)
        assert logged(later) == later

        # serve dies: its helpers (the sender, the loader) end too, and the loader takes its
        # scratch directory (TensorFlow's generated code) with it.
        (scratch,) = serve.temp.glob("driftloop-loader-*")
        helpers = list(helper_processes(serve))
        serve.kill()
        deadline = time.monotonic() + 30
        while any(running(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in helpers if running(pid)], "serve's helpers outlived it"
        assert not scratch.exists()
        assert not list(serve.temp.rglob("__autograph_generated_file*"))
    finally:
        broker.down()


def helper_processes(serve: ServeProcess) -> dict[int, str]:
    """serve's child processes (its event sender, its loader): pid -> command line."""
    assert serve.process is not None
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == serve.process.pid and fields[0] != "Z":
            found[int(entry.name)] = command
    return found


def senders(serve: ServeProcess) -> list[int]:
    return [pid for pid, command in helper_processes(serve).items() if "serve.outbox" in command]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_client_gets_answers_and_the_reason_it_is_refused(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    """:class:`driftloop.client.Client` against serve: one record or several, the request id
    each label must name, the version that answered; a refused record names its field."""
    serve = serve_process(serve_settings)
    with Client(serve.url) as client:
        with pytest.raises(Refused) as refused:
            client.infer(RECORD)
        assert refused.value.status == 503 and "no model" in refused.value.reason
        version = register(serve_settings)
        promote(serve_settings, version)
        serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")
        one = client.infer(RECORD, request_id="order-1")
        assert (one.model_name, one.model_version, one.online) == (
            serve_settings.model_name, version, False
        )  # fmt: skip
        assert [p.request_id for p in one.predictions] == ["order-1"]
        assert one.predictions[0].scores is not None
        two = client.infer([RECORD, RECORD | {"age": 60.0}])
        assert [p.request_id for p in two.predictions] == [
            f"{two.request_id}-0", f"{two.request_id}-1"
        ]  # fmt: skip
        with pytest.raises(Refused) as refused:
            client.infer(RECORD | {"age": "old"})
        assert refused.value.status == 422 and "age" in refused.value.reason


def test_the_client_infers_over_kafka_and_waits_for_its_reply(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    """:meth:`Client.infer` with ``via="kafka"``: the request goes to the inference-requests
    topic naming the client's reply topic; the answer comes back there, one record or
    several; a request serve dead-letters times out with the reason where to look."""
    settings = serve_settings
    reply_topic = f"{settings.serve_kafka_reply_prefix}{settings.model_name}"
    admin = kafka_admin(settings)
    try:
        admin.create_topics([NewTopic(reply_topic, 2, 1)])
    finally:
        admin.close()
    version = register(settings)
    promote(settings, version)
    serve = serve_process(settings)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")
    client = Client(
        serve.url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        model_name=settings.model_name,
        requests_topic=settings.topic_inference_requests,
        reply_topic=reply_topic,
        timeout_s=60,
    )
    with client:
        one = client.infer(RECORD, request_id="kafka-1", via="kafka")
        assert (one.model_name, one.model_version, one.request_id) == (
            settings.model_name, version, "kafka-1"
        )  # fmt: skip
        assert one.predictions[0].prediction in ("no", "yes") and one.predictions[0].scores
        many = client.infer([RECORD, RECORD | {"age": 70.0}, RECORD], via="kafka")
        assert [p.request_id for p in many.predictions] == [
            f"{many.request_id}-{i}" for i in range(3)
        ]
        # The same records over HTTP get the same answers.
        over_http = client.infer([RECORD, RECORD | {"age": 70.0}, RECORD])
        assert [p.prediction for p in over_http.predictions] == [
            p.prediction for p in many.predictions
        ]
        client.timeout_s = 5
        with pytest.raises(TimeoutError, match="dead-letter"):
            client.infer(RECORD | {"age": "old"}, via="kafka")
