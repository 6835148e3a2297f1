from __future__ import annotations

import pytest

from sop_ros.core.episode import EpisodeClock, EpisodeConfig, Phase, SwapGate
from sop_ros.core.errors import ConfigError, InputError
from sop_ros.core.types import EpisodeEventKind, Outcome

S = 1_000_000_000


def config(**overrides) -> EpisodeConfig:
    base = dict(
        robot_id="g1",
        tasks=("a", "b"),
        instructions=("do a", "do b"),
        time_budgets_s=(10.0, 20.0),
    )
    return EpisodeConfig(**{**base, **overrides})


def test_cycle_start_end_and_ids() -> None:
    clock = EpisodeClock(config())
    first = clock.start(0, "v0001")
    assert first.kind is EpisodeEventKind.START and first.task.name == "a" and clock.phase is Phase.RUNNING
    end = clock.end(5 * S, Outcome.SUCCESS)
    assert (end.kind, end.outcome, end.episode_id) == (
        EpisodeEventKind.END,
        Outcome.SUCCESS,
        first.episode_id,
    )
    second = clock.start(6 * S, "v0002")
    assert second.task.name == "b" and second.episode_id != first.episode_id
    assert clock.abort(7 * S, "operator").kind is EpisodeEventKind.ABORT
    assert clock.start(8 * S, "v0002").task.name == "a"


def test_time_budget_ends_as_failure() -> None:
    clock = EpisodeClock(config())
    clock.start(0, "v0001")
    assert clock.tick(9 * S) is None
    event = clock.tick(10 * S)
    assert event.outcome is Outcome.FAILURE and "time budget of 10 s" in event.reason
    assert clock.tick(11 * S) is None and clock.phase is Phase.IDLE


def test_refused_transitions_say_why() -> None:
    clock = EpisodeClock(config())
    with pytest.raises(InputError, match="no episode is running"):
        clock.end(0, Outcome.SUCCESS)
    clock.start(0, "v0001", task="b")
    with pytest.raises(InputError, match="still running"):
        clock.start(1, "v0001")
    clock.abort(2)
    with pytest.raises(InputError, match="unknown task 'c'; configured: a, b"):
        clock.start(3, "v0001", task="c")


def test_config_lengths_must_agree() -> None:
    with pytest.raises(ConfigError, match="same length"):
        config(instructions=("only one",))


def test_swap_gate_defers_activation_to_the_episode_end() -> None:
    gate = SwapGate()
    assert gate.request("v0001") is True  # idle: swap at once
    gate.episode_started()
    assert gate.request("v0002") is False and gate.pending == "v0002"
    assert gate.request("v0003") is False and gate.pending == "v0003"  # latest wins
    assert gate.episode_ended() == "v0003"
    assert gate.pending is None and gate.episode_ended() is None
