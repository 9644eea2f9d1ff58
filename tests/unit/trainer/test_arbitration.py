"""Which model answers, the batch champion or the online learner: the arbitration rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftloop.services.trainer.arbitration import Arbiter, RollbackRule


def feed(arbiter: Arbiter, champion: np.ndarray, online: np.ndarray) -> list[tuple[int, str]]:
    """Every switch as (example index, new answerer)."""
    switches = []
    for i, (c, f) in enumerate(zip(champion, online, strict=True)):
        switched = arbiter.observe(bool(c), bool(f))
        if switched is not None:
            switches.append((i, switched))
    return switches


def test_two_equally_good_models_rarely_swap_the_answerer() -> None:
    # 50,000 examples, both right 85% of the time, independently: the sign test at 0.001 on
    # a window of 500, checked at every example, makes few false switches.
    rng = np.random.default_rng(3)
    champion, online = rng.random(50_000) < 0.85, rng.random(50_000) < 0.85
    switches = feed(Arbiter(), champion, online)
    assert len([s for s in switches if s[1] == "online"]) <= 3


def test_after_a_drift_the_online_learner_takes_over_within_a_few_hundred_examples() -> None:
    rng = np.random.default_rng(4)
    # Both 90% right, then the champion falls to 50% while the online learner stays at 85%.
    champion = np.concatenate([rng.random(2_000) < 0.9, rng.random(1_000) < 0.5])
    online = np.concatenate([rng.random(2_000) < 0.9, rng.random(1_000) < 0.85])
    arbiter = Arbiter()
    switches = feed(arbiter, champion, online)
    assert switches and switches[0][1] == "online"
    assert 2_000 <= switches[0][0] < 2_300
    assert arbiter.answerer == "online"


def test_the_champion_takes_back_over_once_the_advantage_is_gone() -> None:
    rng = np.random.default_rng(5)
    arbiter = Arbiter(windows=(300,))
    feed(arbiter, rng.random(300) < 0.5, rng.random(300) < 0.9)
    assert arbiter.answerer == "online"
    arbiter.reset()  # a refit is promoted: its answers are not known yet
    assert arbiter.answerer == "online" and arbiter.discordant == 0
    switches = feed(arbiter, rng.random(2_000) < 0.92, rng.random(2_000) < 0.9)
    assert switches and switches[0][1] == "champion"


def test_identical_answers_are_no_evidence() -> None:
    arbiter = Arbiter(min_discordant=1)
    for correct in [True, False] * 500:
        assert arbiter.observe(correct, correct) is None
    assert (arbiter.answerer, arbiter.discordant, arbiter.p_value()) == ("champion", 0, 1.0)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=400))
def test_a_switch_is_always_backed_by_the_evidence(outcomes: list[tuple[bool, bool]]) -> None:
    arbiter = Arbiter(windows=(50, 100), min_discordant=5)
    for champion_correct, online_correct in outcomes:
        switched = arbiter.observe(champion_correct, online_correct)
        assert all(e.discordant <= e.window for e in arbiter.evidence)
        if switched == "online":  # some window is evident at its share of the level
            assert any(
                e.discordant >= arbiter.min_discordant
                and e.p_value() <= arbiter.switch_alpha / len(arbiter.evidence)
                for e in arbiter.evidence
            )
        elif switched == "champion":  # no window says the online learner is ahead
            assert all(e.p_value() >= arbiter.return_alpha for e in arbiter.evidence)


def online_share(switches: list[tuple[int, str]], examples: int) -> float:
    """The share of ``examples`` the online learner answered, given the switches."""
    answered, answerer, since = 0, "champion", 0
    for index, to in [*switches, (examples, "end")]:
        if answerer == "online":
            answered += index - since
        answerer, since = to, index
    return answered / examples


def test_a_steady_moderate_advantage_keeps_the_better_model_answering() -> None:
    # The online learner is right 70% of the time, the champion 64%, for good. Over 500
    # examples alone the advantage comes and goes and the answerer flaps; the long window
    # holds it.
    rng = np.random.default_rng(8)
    champion, online = rng.random(20_000) < 0.64, rng.random(20_000) < 0.70
    short_only = feed(Arbiter(windows=(500,)), champion, online)
    both = feed(Arbiter(), champion, online)
    assert len(both) == 1 and both[0][1] == "online"
    assert len(short_only) > 1
    assert online_share(both, 20_000) > 0.85 > online_share(short_only, 20_000)


def test_levels_must_leave_room_between_switching_and_returning() -> None:
    with pytest.raises(ValueError):
        Arbiter(switch_alpha=0.2, return_alpha=0.1)
    with pytest.raises(ValueError):
        Arbiter(windows=(0,))


# --- rollback ---------------------------------------------------------------------------------


def test_a_new_champion_worse_live_than_the_one_it_replaced_is_rolled_back() -> None:
    rng = np.random.default_rng(6)
    rule = RollbackRule()
    new, previous = rng.random(2_000) < 0.7, rng.random(2_000) < 0.9
    verdicts = [rule.observe(bool(n), bool(p)) for n, p in zip(new, previous, strict=True)]
    assert True in verdicts and verdicts.index(True) < 300


def test_a_new_champion_as_good_as_the_previous_one_is_kept() -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        rule = RollbackRule()
        new, previous = rng.random(2_000) < 0.88, rng.random(2_000) < 0.88
        assert not any(rule.observe(bool(n), bool(p)) for n, p in zip(new, previous, strict=True))


def test_after_its_probation_a_champion_is_not_rolled_back() -> None:
    rule = RollbackRule(probation=100, min_discordant=5)
    for _ in range(100):
        assert not rule.observe(new_correct=True, previous_correct=True)
    assert not rule.on_probation
    assert not any(rule.observe(new_correct=False, previous_correct=True) for _ in range(200))


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=300))
def test_a_rollback_is_always_backed_by_the_evidence(outcomes: list[tuple[bool, bool]]) -> None:
    rule = RollbackRule(probation=200, min_discordant=5)
    for new_correct, previous_correct in outcomes:
        if rule.observe(new_correct, previous_correct):
            evidence = rule.evidence
            assert evidence.challenger_wins > evidence.incumbent_wins
            assert evidence.p_value() <= rule.alpha and rule.seen <= 200
