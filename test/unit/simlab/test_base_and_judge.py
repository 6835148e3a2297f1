from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sop_ros.core.errors import ConfigError
from sop_ros.core.policy import make_policy
from sop_ros.core.types import ActionChunk
from sop_ros.sim import ACTION_NAMES, TASK_NAMES
from sop_ros.sim.policy import sim_policy_config
from sop_ros.simlab.base_policy import BaseRecipe, base_policy
from sop_ros.simlab.evaluate import VersionJudge


def test_the_packaged_base_is_used_when_its_recipe_matches(tmp_path: Path) -> None:
    recipe = BaseRecipe(demos_per_task=100, train_steps=5000, batch_size=64)
    # No demonstrations exist: training would fail, so success means the packaged file was used.
    path = base_policy(tmp_path / "base", tmp_path / "no-demos", sim_policy_config(), recipe)
    policy = make_policy(sim_policy_config())
    policy.load_trainable(path)
    assert policy.active_version == "v0000"
    assert base_policy(tmp_path / "base", tmp_path / "no-demos", sim_policy_config(), recipe) == path


def test_how_the_policy_runs_does_not_matter_to_the_packaged_base_but_what_it_learns_does(
    tmp_path: Path,
) -> None:
    recipe = BaseRecipe(demos_per_task=100, train_steps=5000, batch_size=64)
    runs_elsewhere = replace(
        sim_policy_config(), attention="efficient", compile_mode="cuda-graph", dtype="float32"
    )
    assert base_policy(tmp_path / "a", tmp_path / "no-demos", runs_elsewhere, recipe).exists()
    learns_otherwise = replace(sim_policy_config(), denoising_steps=7)
    with pytest.raises(ConfigError, match="not a directory of bags"):  # it would have to be trained
        base_policy(tmp_path / "b", tmp_path / "no-demos", learns_otherwise, recipe)


class StandStill:
    def __init__(self) -> None:
        self.loaded: list[Path] = []

    def load_trainable(self, path: Path) -> None:
        self.loaded.append(Path(path))

    def reset(self) -> None:
        pass

    def infer(self, observation) -> ActionChunk:
        rows = np.repeat(observation.state[None, :], 10, axis=0)
        return ActionChunk(actions=rows, action_names=ACTION_NAMES, control_period_s=0.1)


def test_the_judge_evaluates_the_newest_version_offered(tmp_path: Path) -> None:
    policy = StandStill()
    results = []
    done = threading.Event()

    def report(version, scores) -> None:
        results.append((version, {task: score.success_rate for task, score in scores.items()}))
        done.set()

    judge = VersionJudge(lambda: policy, episodes_per_task=1, period_s=0.05, on_result=report)
    judge.offer("v0001", tmp_path / "v0001.safetensors")
    judge.offer("v0002", tmp_path / "v0002.safetensors")
    judge.start()
    assert done.wait(60)
    judge.close()
    assert results[0] == ("v0002", dict.fromkeys(TASK_NAMES, 0.0))  # standing still solves nothing
    assert policy.loaded[0] == tmp_path / "v0002.safetensors"
    assert [version for version, _ in results].count("v0002") == 1  # judged once
