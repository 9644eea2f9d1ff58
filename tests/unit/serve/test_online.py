"""Which model answers: the online model's state, its watcher, and river's answers as serve's."""

from __future__ import annotations

import random
from typing import Any

import pytest
from river import forest

from driftloop.messaging import Received
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.online_snapshots import StaleSnapshot
from driftloop.services.serve.online import OnlineAnswers, OnlineModel, online_predictions
from driftloop.services.serve.protocol import FeatureBatch
from driftloop.services.serve.settings import ServeSettings
from driftloop.services.serve.worker import OnlineWatcher

CARD = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="age"),
        FeatureSpec(name="region", kind="categorical", categories=["north", "south"]),
    ],
    classes=["no", "yes", "maybe"],
)


def example(rng: random.Random) -> tuple[dict[str, Any], str]:
    age, region = rng.uniform(18, 80), rng.choice(["north", "south"])
    return {"age": age, "region": region}, "yes" if age > 40 and region == "north" else "no"


def trained_forest(examples: int = 300) -> Any:
    rng = random.Random(0)
    model = forest.ARFClassifier(seed=42)
    for _ in range(examples):
        model.learn_one(*example(rng))
    return model


def decision(answerer: str, version: str = "online.1", model: str = "m") -> dict[str, Any]:
    online = answerer == "online"
    return {
        "model_name": model,
        "online_version": version,
        "snapshot_uri": f"online/{model}/slot-{version}.pkl.zlib" if online else None,
        "answerer": answerer,
        "champion_version": "3",
        "updates": 100,
        "evidence": {},
    }


class Snapshots:
    """A store of snapshots by version; ``stale`` versions were overwritten."""

    def __init__(self) -> None:
        self.stale: set[str] = set()
        self.broken: set[str] = set()
        self.loads: list[str] = []

    def get(self, key: str, version: str) -> Any:
        self.loads.append(version)
        if version in self.stale:
            raise StaleSnapshot(f"{key} holds another version")
        if version in self.broken:
            raise OSError("the store did not answer")
        return {"snapshot": version}


def test_a_river_forest_answers_in_the_shape_of_the_champions_card() -> None:
    model = trained_forest()
    rng = random.Random(1)
    rows = [example(rng)[0] for _ in range(20)]
    predictions = online_predictions(model, FeatureBatch(len(rows), rows), CARD)
    assert predictions is not None
    assert predictions.classes == ["no", "yes", "maybe"]
    assert predictions.scores is not None and predictions.scores.shape == (20, 3)
    # river's own choice, and nothing for the class it never saw
    assert predictions.values == [model.predict_one(row) for row in rows]
    assert predictions.scores[:, 2].tolist() == [0.0] * 20
    by_class = predictions.scores_by_class()
    assert by_class is not None
    assert by_class[0]["yes"] == pytest.approx(model.predict_proba_one(rows[0]).get("yes", 0.0))


def test_a_null_feature_is_left_out_as_the_trainer_leaves_it_out_of_what_it_learns() -> None:
    model = trained_forest()
    card = CARD.model_copy(update={"features": [FeatureSpec(name="age", nullable=True),
                                                *CARD.features[1:]]})  # fmt: skip
    batch = FeatureBatch(1, [{"age": None, "region": "north"}])
    predictions = online_predictions(model, batch, card)
    assert predictions is not None
    assert predictions.values == [model.predict_one({"region": "north"})]


def test_a_model_that_cannot_answer_gives_no_predictions() -> None:
    batch = FeatureBatch(1, [{"age": 50.0, "region": "north"}])
    assert online_predictions(forest.ARFClassifier(seed=1), batch, CARD) is None  # untrained

    class OtherClasses:  # knows only a class the card lacks
        def predict_proba_one(self, x: dict[str, Any]) -> dict[str, float]:
            return {"unknown": 1.0}

    class Broken:
        def predict_proba_one(self, x: dict[str, Any]) -> dict[str, float]:
            raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'float'")

    assert online_predictions(OtherClasses(), batch, CARD) is None
    assert OnlineModel("online.1", Broken()).predictions(batch, CARD) is None


async def test_the_answerer_follows_the_latest_decision_and_loads_each_snapshot_once() -> None:
    answers, snapshots = OnlineAnswers("m"), Snapshots()
    assert answers.answering is None  # the champion answers until told otherwise

    await answers.follow(decision("online", "online.1"), snapshots.get)
    assert answers.answering == OnlineModel("online.1", {"snapshot": "online.1"})
    await answers.follow(decision("online", "online.1"), snapshots.get)  # already loaded
    await answers.follow(decision("online", "online.2"), snapshots.get)
    assert answers.answering is not None and answers.answering.version == "online.2"
    assert snapshots.loads == ["online.1", "online.2"]

    await answers.follow(decision("champion", "online.2", model="other"), snapshots.get)
    assert answers.answering is not None  # another model's decision
    await answers.follow(decision("champion", "online.2"), snapshots.get)
    assert answers.answering is None


async def test_a_snapshot_that_cannot_be_read_leaves_the_answerer_as_it_was() -> None:
    answers, snapshots = OnlineAnswers("m"), Snapshots()
    snapshots.stale.add("online.1")
    await answers.follow(decision("online", "online.1"), snapshots.get)
    assert answers.answering is None  # overwritten: the next event will name a newer one

    await answers.follow(decision("online", "online.2"), snapshots.get)
    snapshots.stale.add("online.3")
    snapshots.broken.add("online.4")
    await answers.follow(decision("online", "online.3"), snapshots.get)
    await answers.follow(decision("online", "online.4"), snapshots.get)
    assert answers.answering is not None and answers.answering.version == "online.2"


class Consumer:
    """Polls of the online-model topic: ``behind`` says more is there after each poll."""

    def __init__(self, behind: list[bool]) -> None:
        self.behind = behind

    def assignment(self) -> set[str]:
        return {"online-models:0"}

    async def has_more(self, partition: str) -> bool:
        return self.behind.pop(0)


def received(*events: dict[str, Any]) -> list[Received]:
    return [Received(None, event, None, b"") for event in events]  # type: ignore[arg-type]


async def test_the_watcher_reading_the_topic_from_its_start_loads_only_the_latest_snapshot() -> (
    None
):
    answers, snapshots = OnlineAnswers("m"), Snapshots()
    watcher = OnlineWatcher(ServeSettings(), answers, snapshots)  # type: ignore[arg-type]
    consumer: Any = Consumer(behind=[True, False, False])

    await watcher._decisions(consumer, received(decision("online", "online.1")))
    assert snapshots.loads == [] and answers.answering is None  # more to read
    events = received(decision("online", "online.2"), decision("online", "online.3", "other"))
    await watcher._decisions(consumer, events)  # the end of the topic: the latest counts
    assert snapshots.loads == ["online.2"]
    await watcher._decisions(consumer, [])  # nothing new
    await watcher._decisions(consumer, received(decision("champion", "online.2")))
    assert snapshots.loads == ["online.2"] and answers.answering is None
