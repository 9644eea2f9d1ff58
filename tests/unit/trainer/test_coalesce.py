"""TriggerCoalescer: one fit at a time, at most one follow-up, duplicates dropped."""

from __future__ import annotations

from driftloop.services.trainer.coalesce import Refit, TriggerCoalescer


def trigger(trigger_id: str, model: str = "m") -> dict[str, str]:
    return {"trigger_id": trigger_id, "model_name": model, "reason": "drift"}


def test_triggers_during_a_fit_become_one_follow_up() -> None:
    coalescer = TriggerCoalescer("m")
    assert coalescer.add(trigger("t1")) == "queued"
    first = coalescer.start()
    assert first is not None and first.trigger_ids == ("t1",)
    assert [coalescer.add(trigger(t)) for t in ("t2", "t3", "t4")] == [
        "queued", "coalesced", "coalesced",
    ]  # fmt: skip
    assert coalescer.start() is None, "one fit at a time"
    coalescer.finish(first)
    follow_up = coalescer.start()
    assert follow_up is not None and follow_up.trigger_ids == ("t2", "t3", "t4")
    assert follow_up.trigger["trigger_id"] == "t2", "the first to arrive leads"
    coalescer.finish(follow_up)
    assert coalescer.start() is None and not coalescer.busy


def test_duplicates_and_other_models_are_dropped() -> None:
    coalescer = TriggerCoalescer("m")
    coalescer.add(trigger("t1"))
    assert coalescer.add(trigger("t1")) == "duplicate"
    refit = coalescer.start()
    assert refit is not None
    assert coalescer.add(trigger("t1")) == "duplicate", "running"
    coalescer.finish(refit)
    assert coalescer.add(trigger("t1")) == "duplicate", "finished"
    assert coalescer.add(trigger("t9", model="other")) == "ignored"


def test_an_abandoned_refit_is_not_remembered() -> None:
    coalescer = TriggerCoalescer("m")
    coalescer.add(trigger("t1"))
    refit = coalescer.start()
    assert refit is not None
    coalescer.abandon(refit)
    assert coalescer.add(trigger("t1")) == "queued"


def test_the_memory_of_finished_ids_is_bounded() -> None:
    coalescer = TriggerCoalescer("m", remember=2)
    for trigger_id in ("a", "b", "c"):
        coalescer.add(trigger(trigger_id))
        refit = coalescer.start()
        assert refit is not None
        coalescer.finish(refit)
    assert coalescer.add(trigger("a")) == "queued", "forgotten (MLflow still knows it)"
    assert coalescer.add(trigger("c")) == "duplicate"


def test_a_refit_less_its_handled_triggers() -> None:
    refit = Refit(trigger("t1"), ("t2", "t3"))
    assert refit.without({"t2"}) == Refit(trigger("t1"), ("t3",))
    led = refit.without({"t1"})
    assert led is not None and led.trigger_ids == ("t2", "t3")
    assert refit.without({"t1", "t2", "t3"}) is None


def recall(trigger_id: str) -> dict[str, object]:
    return trigger(trigger_id) | {"evidence": {"action": "recall", "onset": "2026-11-24T00:00:00Z"}}


def test_a_fit_takes_the_lead_from_a_pending_recall_and_answers_it() -> None:
    coalescer = TriggerCoalescer("m")
    coalescer.add(recall("r1"))
    assert coalescer.add(trigger("t1")) == "coalesced"
    refit = coalescer.start()
    assert refit is not None
    assert refit.trigger["trigger_id"] == "t1", "the fit leads: a recall fits nothing"
    assert refit.trigger_ids == ("t1", "r1")


def test_a_recall_after_a_fit_is_folded_into_the_fit() -> None:
    coalescer = TriggerCoalescer("m")
    coalescer.add(trigger("t1"))
    coalescer.add(recall("r1"))
    refit = coalescer.start()
    assert refit is not None and refit.trigger["trigger_id"] == "t1"
    assert refit.trigger_ids == ("t1", "r1")


def test_recalls_alone_stay_a_recall() -> None:
    coalescer = TriggerCoalescer("m")
    coalescer.add(recall("r1"))
    coalescer.add(recall("r2"))
    refit = coalescer.start()
    assert refit is not None and refit.trigger["trigger_id"] == "r1"
    assert refit.trigger["evidence"]["action"] == "recall"
