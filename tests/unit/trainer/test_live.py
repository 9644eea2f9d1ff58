"""The live evidence: which model answers, rollback after a promotion, a challenger's trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftloop.online_snapshots import snapshot_number
from driftloop.services.trainer.live import (
    ChallengerVerdict,
    LiveConfig,
    LiveEvidence,
    OnlineDecision,
    Rollback,
    pair_outcome,
)
from driftloop.services.trainer.live_worker import warm_up
from driftloop.services.trainer.online import OnlineLearner
from driftloop.store import ExampleStore

QUICK = LiveConfig(windows=(100,), min_discordant=10, probation=500, live_examples=0)


class Scripted:
    """An online learner whose prequential answer each example names (feature ``online``)."""

    def __init__(self) -> None:
        self.updates = 0
        self.model = {"scripted": True}

    def learn(self, features: dict[str, Any], label: Any) -> Any:
        self.updates += 1
        return features.get("online")


def example(
    label: Any,
    answer: Any,
    version: str = "1",
    *,
    model: str = "m",
    online: Any = None,
    answered_by: str = "champion",
    **shadows: tuple[str, Any],
) -> dict[str, Any]:
    """A labelled example as ingest writes it: serve's answer, who gave it, the shadows."""
    event: dict[str, Any] = {
        "model_name": model,
        "model_version": version,
        "features": {"x": 0.5, "online": online},
        "label": label,
        "prediction": answer,
        "answered_by": answered_by,
    }
    if shadows:
        event["shadows"] = [
            {"role": role, "model_version": v, "prediction": p} for role, (v, p) in shadows.items()
        ]
    return event


def scripted(config: LiveConfig = QUICK, **state: Any) -> LiveEvidence:
    state.setdefault("champion", "1")
    state.setdefault("task", "classification")
    return LiveEvidence("m", config, make_learner=Scripted, **state)  # type: ignore[arg-type]


def feed(live: LiveEvidence, events: list[dict[str, Any]], start: float = 0.0) -> list[Any]:
    actions: list[Any] = []
    for i, event in enumerate(events):
        actions += live.observe(event, now=start + i * 0.1)
    return actions


# --- which model answers ----------------------------------------------------------------------


def test_after_an_abrupt_change_the_online_learner_answers_and_snapshots_follow() -> None:
    live = LiveEvidence("m", QUICK, champion="1", task="classification")
    rng = np.random.default_rng(0)
    xs = rng.normal(size=1_500)
    for i, x in enumerate(xs[:500]):  # both know the concept: "a" above 0
        concept = "a" if x > 0 else "b"
        assert live.observe({**example(concept, concept), "features": {"x": x}}, i * 0.1) == []
    actions = []
    for i, x in enumerate(xs[500:], 500):  # it flips; the champion answers as it did
        old, new = ("a", "b") if x > 0 else ("b", "a")
        actions += live.observe({**example(new, old), "features": {"x": x}}, i * 0.1)
    decisions = [a for a in actions if isinstance(a, OnlineDecision)]
    assert decisions and all(d.answerer == "online" and d.snapshot for d in decisions)
    assert decisions[0].evidence["online_wins"] > decisions[0].evidence["champion_wins"]
    assert decisions[0].champion_version == "1"
    numbers = [snapshot_number(d.online_version) for d in decisions]
    assert numbers == sorted(set(numbers)), "online versions only increase"
    # At most one snapshot a second of the examples' clock (one example every 0.1 s).
    assert len(decisions) <= (len(xs) - 500) // 10 + 1
    # Examples stop: the last ones learned go out with one more snapshot, then none.
    (last,) = live.tick(now=len(xs) * 0.1 + 60)
    assert last.updates == 1_500 and live.tick(now=len(xs) * 0.1 + 120) == []


def test_the_online_learner_hands_back_when_the_advantage_is_gone() -> None:
    live = scripted()
    switched = feed(live, [example("a", "b", online="a") for _ in range(30)])
    assert switched[0].answerer == "online"
    decisions = feed(live, [example("a", "a", online="b") for _ in range(200)], start=10)
    back = [d for d in decisions if d.answerer == "champion"]
    assert len(back) == 1 and back[0].snapshot is False


def test_answers_of_an_earlier_champion_are_learned_from_but_not_paired() -> None:
    live = scripted()
    assert live.champion_changed("2", previous="1", task="classification", now=0.0) == []
    # Stragglers answered by version 1 before the swap: wrong where the online learner is right.
    assert feed(live, [example("a", "b", "1", online="a") for _ in range(200)]) == []
    assert live.updates == 200 and live.arbiter.discordant == 0
    assert live.arbiter.answerer == "champion"
    # The same from version 2, the champion now: evidence.
    switched = feed(live, [example("a", "b", "2", online="a") for _ in range(30)])
    assert switched and switched[0].answerer == "online"


def test_the_champion_in_shadow_is_paired_while_the_online_model_answers() -> None:
    live = scripted()
    feed(live, [example("a", "b", online="a") for _ in range(30)])
    assert live.arbiter.answerer == "online"
    # Served by the online snapshot, the champion scored in shadow: it is right again.
    answered = [
        example("a", "b", "online.5", online="b", answered_by="online", champion=("1", "a"))
        for _ in range(150)
    ]
    decisions = feed(live, answered, start=100)
    assert [d.answerer for d in decisions if d.answerer == "champion"] == ["champion"]


def test_other_models_and_unlabelled_examples_count_for_nothing() -> None:
    live = scripted()
    assert feed(live, [example("a", "b", model="other", online="a") for _ in range(50)]) == []
    assert feed(live, [example(None, "b", online="a") for _ in range(50)]) == []
    assert live.examples == 0 and live.updates == 0


def test_the_online_learner_is_off_beside_a_regression_champion() -> None:
    live = scripted()
    feed(live, [example("a", "b", online="a") for _ in range(30)])
    assert live.arbiter.answerer == "online"
    handed_back = live.champion_changed("2", previous="1", task="regression", now=50.0)
    assert [(d.answerer, d.snapshot) for d in handed_back] == [("champion", False)]
    assert live.learner is None
    assert feed(live, [example(1.0, 3.0, "2") for _ in range(50)]) == []
    assert LiveEvidence("m", QUICK, champion="1", task="regression").learner is None
    off = LiveConfig(learner=False)
    assert LiveEvidence("m", off, champion="1", task="classification").learner is None


def test_online_versions_go_on_increasing_after_a_restart() -> None:
    before = scripted().announce(now=1_000.0)
    after = scripted().announce(now=1_000.5)  # a new process, half a second later
    assert before.answerer == after.answerer == "champion"
    assert snapshot_number(after.online_version) > snapshot_number(before.online_version)


# --- rollback ---------------------------------------------------------------------------------


def test_a_promotion_starts_a_probation_and_an_evidently_better_previous_rolls_back_once() -> None:
    live = scripted()
    assert not live.on_probation
    live.champion_changed("2", previous="1", task="classification", now=0.0)
    assert live.on_probation
    worse = [example("a", "b", "2", previous=("1", "a")) for _ in range(100)]
    rollbacks = [a for a in feed(live, worse) if isinstance(a, Rollback)]
    assert len(rollbacks) == 1, "one rollback, not one per example after the evidence"
    rollback = rollbacks[0]
    assert (rollback.champion, rollback.previous) == ("2", "1")
    assert rollback.evidence["previous_wins"] > rollback.evidence["new_wins"]
    assert rollback.evidence["p_value"] <= QUICK.rollback_alpha
    # The rollback comes back as a model update: no probation for the restored champion.
    live.champion_changed("1", previous="2", task="classification", now=20.0, reason="rollback")
    assert not live.on_probation
    assert feed(live, [example("a", "b", "1", previous=("2", "a")) for _ in range(100)]) == []


def test_a_new_champion_as_good_as_the_previous_one_ends_its_probation() -> None:
    live = scripted(LiveConfig(windows=(100,), min_discordant=10, probation=300))
    live.champion_changed("2", previous="1", task="classification", now=0.0)
    rng = np.random.default_rng(1)
    wrong = (rng.random((300, 2)) < 0.2).tolist()  # each wrong 20% of the time, independently
    both = [example("a", "ab"[n], "2", previous=("1", "ab"[p])) for n, p in wrong]
    assert not [a for a in feed(live, both) if isinstance(a, Rollback)]
    assert not live.on_probation
    assert LiveEvidence("m", QUICK, champion="2", previous="1").on_probation, "at start too"
    no_rollback = LiveConfig(probation=0)
    assert not LiveEvidence("m", no_rollback, champion="2", previous="1").on_probation


def test_regression_is_paired_by_absolute_error() -> None:
    assert pair_outcome("regression", 10.0, 11.0, 13.0) == (True, False)
    assert pair_outcome("regression", 10.0, 13.0, 9.5) == (False, True)
    assert pair_outcome("regression", 10.0, 12.0, 8.0) == (True, True), "a tie: concordant"
    assert pair_outcome("regression", 10.0, None, 8.0) == (False, True)
    assert pair_outcome("classification", 1, 1, 0) == (True, False)
    # A regression champion further off than the previous one, every time: rolled back.
    live = scripted(task="regression")
    live.champion_changed("2", previous="1", task="regression", now=0.0)
    worse = [example(10.0, 10.0 + e, "2", previous=("1", 10.0 - e / 2)) for e in range(1, 60)]
    assert [type(a) for a in feed(live, worse)] == [Rollback]


# --- a challenger's trial ---------------------------------------------------------------------


def trial(examples: int = 200) -> LiveEvidence:
    config = LiveConfig(windows=(100,), min_discordant=10, live_examples=examples)
    return scripted(config, challenger="3")


def test_a_challenger_not_worse_than_the_champion_is_promoted_after_its_examples() -> None:
    live = trial()
    rng = np.random.default_rng(2)
    champion, challenger = (rng.random(400) < 0.8).tolist(), (rng.random(400) < 0.85).tolist()
    paired = [
        example("a", "ab"[not c], challenger=("3", "ab"[not h]))
        for c, h in zip(champion, challenger, strict=True)
    ]
    verdicts = [a for a in feed(live, paired) if isinstance(a, ChallengerVerdict)]
    assert len(verdicts) == 1
    verdict = verdicts[0]
    assert verdict.promote and (verdict.version, verdict.champion) == ("3", "1")
    assert verdict.evidence["examples"] == 200
    assert verdict.evidence["challenger_wins"] >= verdict.evidence["champion_wins"]
    assert verdict.reason.startswith("promoted")
    # Promoted: its own model update makes it the champion; no trial is left.
    live.champion_changed("3", previous="1", task="classification", now=100.0)
    assert live.challenger is None


def test_a_challenger_evidently_worse_is_rejected_early() -> None:
    live = trial()
    worse = [example("a", "a", challenger=("3", "b")) for _ in range(200)]
    verdicts = [a for a in feed(live, worse) if isinstance(a, ChallengerVerdict)]
    assert len(verdicts) == 1 and not verdicts[0].promote
    assert verdicts[0].evidence["examples"] < 200
    assert verdicts[0].reason.startswith("rejected: the champion answered evidently better")


def test_a_challenger_slightly_worse_is_rejected_after_its_examples() -> None:
    live = trial(examples=40)
    # 5 pairs only the champion got right, 3 only the challenger: worse, not evidently so.
    answers = ["a"] * 5 + ["b"] * 3 + ["a"] * 32
    shadowed = ["b"] * 5 + ["a"] * 3 + ["a"] * 32
    paired = [example("a", c, challenger=("3", h)) for c, h in zip(answers, shadowed, strict=True)]
    verdicts = [a for a in feed(live, paired) if isinstance(a, ChallengerVerdict)]
    assert [(v.promote, v.evidence["examples"]) for v in verdicts] == [(False, 40)]
    assert verdicts[0].reason.startswith("rejected: worse")


def test_only_the_challengers_own_answers_against_the_current_champion_count() -> None:
    live = trial(examples=20)
    others = [example("a", "b", challenger=("9", "a")) for _ in range(50)]  # another version
    stale = [example("a", "b", "0", challenger=("3", "a")) for _ in range(50)]  # old champion
    assert not [a for a in feed(live, others + stale) if isinstance(a, ChallengerVerdict)]
    live.challenger_offered("4")  # a newer candidate replaces it
    assert live.challenger == "4"
    assert scripted(QUICK, challenger="3").challenger is None, "trials are off"


# --- warm-up ----------------------------------------------------------------------------------


def test_the_online_learner_warms_up_on_the_stores_latest_examples(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path / "store")
    rows = []
    for i in range(600):
        x = float(np.sin(i))
        time = f"2026-11-22T{10 + i // 300:02d}:{i % 300 // 60:02d}:{i % 60:02d}Z"
        rows.append(
            {"event_id": f"e-{i}", "event_time": time, "request_id": f"r-{i}",
             "model_name": "m" if i % 3 else "other", "model_version": "1",
             "features": {"x": x, "gap": None if i % 2 else 1.0}, "prediction": 0,
             "label": int(x > 0), "prediction_time": time, "label_time": time}
        )  # fmt: skip
    for start in range(0, 600, 100):
        store.write(rows[start : start + 100])
    learner = OnlineLearner()
    assert warm_up(learner, store, "m", limit=150) == 150
    assert learner.updates == 150
    assert learner.predict({"x": 0.9}) == 1 and isinstance(learner.predict({"x": -0.9}), int)
    assert warm_up(OnlineLearner(), store, "m", limit=10_000) == 400


@pytest.mark.parametrize("windows", [(), (0,)])
def test_a_config_without_windows_is_refused(windows: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        LiveEvidence("m", LiveConfig(windows=windows))


def test_snapshots_are_spaced_by_what_they_cost() -> None:
    """A snapshot that takes 1 s to write: the next comes 5 s after it, not 1 s; a cheap one
    again after ``snapshot_s``."""
    live = LiveEvidence("m", LiveConfig(snapshot_s=1.0), champion="1", task="classification")
    live.arbiter.answerer = "online"
    assert live.learner is not None
    live.learner.learn({"x": 1.0}, "a")
    [first] = live.tick(now=100.0)
    assert first.snapshot
    live.snapshot_took(1.0)
    live.learner.learn({"x": 2.0}, "b")
    assert live.tick(now=101.5) == [] and live.tick(now=104.9) == []
    [second] = live.tick(now=105.0)
    live.snapshot_took(0.01)
    live.learner.learn({"x": 3.0}, "a")
    assert second.snapshot and live.tick(now=105.9) == [] and live.tick(now=106.0)
