"""serve on the real broker and MLflow: the online model answers when the arbiter says so, the
models in shadow are scored on the same requests, and a rollback swaps the previous champion
back without loading it."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer
from driftloop.online_snapshots import OnlineSnapshots
from driftloop.services.serve.settings import ServeSettings
from driftloop.store import store_blobs
from tests.integration.serve.conftest import (
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


def online_forest(examples: int = 300) -> Any:
    """A river forest that learned the fixture model's features, as the trainer's learns."""
    from river import forest

    rng = random.Random(0)
    model = forest.ARFClassifier(seed=42)
    for _ in range(examples):
        age, income = rng.uniform(18, 80), rng.uniform(0, 5000)
        region = rng.choice(["north", "south"])
        label = "yes" if age > 40 and region == "north" else "no"
        model.learn_one({"age": age, "income": income, "region": region}, label)
    return model


def decide(
    settings: ServeSettings, answerer: str, version: str, key: str | None, champion: str
) -> None:
    """Publish the arbiter's decision, as the trainer does."""
    with EventProducer(settings, service="test") as producer:
        producer.send(
            EventType.ONLINE_MODEL,
            new_event(
                model_name=settings.model_name,
                online_version=version,
                snapshot_uri=key,
                answerer=answerer,
                champion_version=champion,
                updates=300,
                evidence={"paired": 500.0},
            ),
        )
        producer.flush()


def answered_by(serve: ServeProcess, request_id: str) -> dict[str, Any]:
    status, body = serve.post("/v1/predict", RECORD | {"request_id": request_id})
    assert status == 200, body
    return body


def answering(serve: ServeProcess) -> str | None:
    """The version that answers a request now (None: no model yet)."""
    return serve.post("/v1/predict", RECORD)[1].get("model_version")


def test_the_online_model_answers_while_the_arbiter_says_so_and_the_champion_is_shadowed(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    name = serve_settings.model_name
    champion = register(serve_settings)
    promote(serve_settings, champion)
    snapshots = OnlineSnapshots(store_blobs(serve_settings), name)
    model = online_forest()
    # Decided before serve starts: reading the topic from its start, it learns the latest.
    for version in ("online.2", "online.3"):
        decide(serve_settings, "online", version, snapshots.put(version, model), champion)

    serve = serve_process(serve_settings)
    serve.wait_until(lambda: answering(serve) == "online.3", "online answers")
    assert serve.metric("driftloop_serve_online_snapshot_loads_total", outcome="loaded") == 1

    body = answered_by(serve, "online-1")
    assert body["model_version"] == "online.3"
    (row,) = body["predictions"]
    assert row["prediction"] == model.predict_one(RECORD)
    assert set(row["scores"]) == {"no", "yes"}
    assert b"shadows" not in orjson.dumps(body) and b"champion" not in orjson.dumps(body)
    # A request naming a version is answered by it.
    status, pinned = serve.post(
        f"/v2/models/{name}/versions/{champion}/infer", oip([RECORD], id="pinned-champion")
    )
    assert status == 200 and pinned["model_version"] == champion, pinned
    status, pinned = serve.post(
        f"/v2/models/{name}/versions/online.3/infer", oip([RECORD], id="pinned-online")
    )
    assert status == 200 and pinned["model_version"] == "online.3", pinned
    assert b"shadows" not in orjson.dumps(pinned)
    status, _ = serve.post(f"/v2/models/{name}/versions/online.2/infer", oip([RECORD]))
    assert status == 404

    # The arbiter hands back: the champion answers again.
    decide(serve_settings, "champion", "online.3", None, champion)
    serve.wait_until(lambda: answering(serve) == champion, "champion answers")
    assert answered_by(serve, "champion-1")["model_version"] == champion

    wanted = {"online-1", "pinned-champion", "pinned-online", "champion-1"}
    events = read_events(
        serve_settings,
        EventType.PREDICTION,
        lambda found: wanted <= {e["request_id"] for e in found},
    )
    logged = {e["request_id"]: e for e in events if e["request_id"] in wanted}
    for request_id in ("online-1", "pinned-online"):
        event = logged[request_id]
        assert (event["model_version"], event["answered_by"]) == ("online.3", "online")
        (shadow,) = event["shadows"]
        assert (shadow["role"], shadow["model_version"]) == ("champion", champion)
        assert shadow["prediction"] in ("no", "yes")
    for request_id in ("pinned-champion", "champion-1"):
        event = logged[request_id]
        assert event["model_version"] == champion
        assert "answered_by" not in event and "shadows" not in event
    assert serve.metric("driftloop_serve_shadow_scored_total", role="champion") >= 2
    assert serve.metric("driftloop_serve_requests_total", model_version="online", status="200") > 0


def test_after_a_promotion_the_previous_champion_is_shadowed_and_a_rollback_is_instant(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    first = register(serve_settings)
    promote(serve_settings, first)
    second = register(serve_settings, bias=1.0)
    serve = serve_process(serve_settings)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")

    with Load(serve) as load:
        serve.wait_until(lambda: len(load.answers[0]) >= 20, "answering")
        promote(serve_settings, second, first)
        serve.wait_until(lambda: second in {v for _, v in load.answers[0][-5:]}, f"on {second}")
        assert answered_by(serve, "promoted-1")["model_version"] == second
        promote(serve_settings, first, second)  # the trainer rolls back
        serve.wait_until(lambda: first in {v for _, v in load.answers[0][-5:]}, "rolled back")
    assert load.failures() == []
    assert load.versions() == {first, second}
    assert answered_by(serve, "rolled-back-1")["model_version"] == first

    wanted = {"promoted-1", "rolled-back-1"}
    events = read_events(
        serve_settings,
        EventType.PREDICTION,
        lambda found: wanted <= {e["request_id"] for e in found},
    )
    logged = {e["request_id"]: e for e in events if e["request_id"] in wanted}
    (shadow,) = logged["promoted-1"]["shadows"]
    assert (shadow["role"], shadow["model_version"]) == ("previous", first)
    assert "shadows" not in logged["rolled-back-1"]  # the version rolled back from is gone

    swaps = read_events(serve_settings, EventType.SWAP, lambda found: len(found) >= 3)
    assert [(e["model_version"], e["outcome"], e["previous_version"]) for e in swaps] == [
        (first, "swapped", None),
        (second, "swapped", first),
        (first, "swapped", second),
    ]
    # The rollback took the previous champion out of shadow: each version was loaded once.
    loads = [
        line for line in serve.log.read_text().splitlines() if "loading a model version" in line
    ]
    assert len(loads) == 2, loads
