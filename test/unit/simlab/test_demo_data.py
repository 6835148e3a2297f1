from __future__ import annotations

from pathlib import Path

import numpy as np

from sop_ros.core.types import ActionChunk, Outcome
from sop_ros.sim import ACTION_NAMES, TASK_NAMES
from sop_ros.simlab.demonstrations import record_demonstrations
from sop_ros.simlab.evaluate import evaluate_policy
from sop_ros.storage import load_episode, validate_bag


def test_expert_demonstrations_are_bags_the_learner_reads(tmp_path: Path) -> None:
    bags = record_demonstrations(tmp_path / "demos", episodes_per_task=2)
    assert len(bags) == 2 * len(TASK_NAMES)  # the expert solves these seeds
    tasks = set()
    for bag in bags:
        meta = validate_bag(bag)
        assert meta.outcome is Outcome.SUCCESS and meta.robot_id == "expert"
        episode = load_episode(bag, cameras=("head",), horizon=10)
        tasks.add(episode.meta.task)
        assert len(episode) > 10
        assert episode.action_names == ACTION_NAMES and episode.actions.shape == (len(episode), 3)
        # The executed action moves the state toward it: the next state is closer than this one.
        gaps = np.linalg.norm(episode.actions[:-1, :2] - episode.states[:-1, :2], axis=1)
        after = np.linalg.norm(episode.actions[:-1, :2] - episode.states[1:, :2], axis=1)
        assert (after <= gaps + 1e-6).mean() > 0.9
        assert episode.image("head", 0).shape == (64, 64, 3)
    assert tasks == set(TASK_NAMES)


class StandStill:
    """A policy that never moves: it must fail every task."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self) -> None:
        pass

    def infer(self, observation) -> ActionChunk:
        self.calls += 1
        rows = np.repeat(observation.state[None, :], 10, axis=0)
        return ActionChunk(actions=rows, action_names=ACTION_NAMES, control_period_s=0.1)


def test_evaluation_counts_episodes_and_successes() -> None:
    policy = StandStill()
    scores = evaluate_policy(policy, episodes_per_task=2, replan_steps=5)
    assert set(scores) == set(TASK_NAMES)
    for score in scores.values():
        assert (score.episodes, score.successes, score.success_rate) == (2, 0, 0.0)
    assert policy.calls > 2 * len(TASK_NAMES)


def test_demonstrations_are_recorded_once_per_count(tmp_path: Path) -> None:
    from sop_ros.simlab.demonstrations import demonstrations

    said: list[str] = []
    ready = demonstrations(tmp_path / "demos", episodes_per_task=1, say=said.append)
    first = sorted(p.name for p in ready.iterdir())
    assert len(first) == len(TASK_NAMES) and len(said) == 1
    assert demonstrations(tmp_path / "demos", episodes_per_task=1, say=said.append) == ready
    assert len(said) == 1  # reused
    again = demonstrations(tmp_path / "demos", episodes_per_task=2, say=said.append)
    assert (
        len(list(again.iterdir())) == 2 * len(TASK_NAMES) and len(said) == 2
    )  # another count: recorded anew
