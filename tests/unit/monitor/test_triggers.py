from __future__ import annotations

from driftloop.services.monitor.triggers import TriggerPolicy


def run(policy: TriggerPolicy, verdicts: str, spacing: float = 1.0) -> list[int]:
    """Indices of the windows ('D' drifted, '.' clean) that fired a trigger."""
    return [i for i, v in enumerate(verdicts) if policy.window(v == "D", i * spacing)]


def test_one_drifted_window_alone_does_not_open_an_episode() -> None:
    assert run(TriggerPolicy(open_after=2, cooldown_s=0), "D.D.D.D.") == []


def test_an_episode_gives_one_trigger_however_long_it_lasts() -> None:
    policy = TriggerPolicy(open_after=2, close_after=3, cooldown_s=0)
    assert run(policy, "DD" + "D" * 50 + ".D.D..D") == [1]
    assert policy.episodes == 1 and policy.episode_open


def test_a_new_episode_after_the_old_one_closed_fires_again() -> None:
    assert run(TriggerPolicy(open_after=2, close_after=2, cooldown_s=0), "DDD..DD") == [1, 6]


def test_cooldown_delays_a_new_episode_until_it_ends() -> None:
    policy = TriggerPolicy(open_after=1, close_after=1, cooldown_s=10)
    # Episode 1 at t=0; episode 2 opens at t=4 (cooling), still open at t=10: fires then.
    assert run(policy, "D...DDDDDDD") == [0, 10]


def test_an_episode_that_ends_within_the_cooldown_never_fires() -> None:
    assert run(TriggerPolicy(open_after=1, close_after=1, cooldown_s=100), "D.D.D.") == [0]


def test_a_concept_alarm_opens_an_episode_at_once() -> None:
    policy = TriggerPolicy(open_after=3, cooldown_s=0)
    assert policy.concept_alarm(0.0)
    assert not policy.concept_alarm(1.0)  # same episode
    assert not policy.window(True, 2.0)


def test_data_arrival_fires_every_n_examples_and_restarts_on_promotion() -> None:
    policy = TriggerPolicy(data_arrival_examples=100)
    fired = [i for i in range(250) if policy.labelled()]
    assert fired == [99, 199]
    policy.promoted()
    assert [i for i in range(120) if policy.labelled()] == [99]


def test_data_arrival_off_by_default() -> None:
    policy = TriggerPolicy()
    assert not any(policy.labelled() for _ in range(100_000))


def test_promotion_closes_the_episode() -> None:
    policy = TriggerPolicy(open_after=1, cooldown_s=0)
    assert policy.window(True, 0)
    policy.promoted()
    assert not policy.episode_open
    assert policy.window(True, 1)


def test_a_concept_alarm_redates_an_episode_opened_by_data_windows() -> None:
    policy = TriggerPolicy(open_after=1, cooldown_s=0, min_examples=100, recall_examples=10)
    policy.window(True, 0.0)  # data windows open the episode
    assert policy.episode_open and not policy.by_concept
    for _ in range(50):
        policy.labelled()
    assert policy.recall(), "its recall went out, 10 examples after the data's onset"
    # The labels changed later: the error stream's alarm dates the episode from its onset.
    assert not policy.concept_alarm(1.0, since_onset=3)
    assert policy.by_concept and policy.since_onset == 3
    fired = [policy.labelled() or policy.recall() for _ in range(10)]
    assert fired == [False] * 6 + [True] + [False] * 3, "a second recall, from the new onset"
    assert not policy.held(2.0), "the hold counts from the new onset too"
    for _ in range(87):
        policy.labelled()
    assert policy.held(3.0)
