"""The learner driving the real π0 policy (tiny preset).

Each algorithm lowers its loss, and the loop publishes files a robot-side Pi0Policy accepts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from learner_fakes import ACTION_DIM, HORIZON, STATE_DIM, load_bag, make_episode, write_bag

from sop_ros.core.policy import Pi0Policy, PolicyConfig, make_policy
from sop_ros.core.types import Outcome
from sop_ros.learner.algorithms import algorithm_config_class, make_algorithm
from sop_ros.learner.buffers import OfflineBuffer, ReplayBuffers, make_sample
from sop_ros.learner.loop import Learner, LearnerConfig
from sop_ros.learner.sampler import TaskBalancedSampler
from sop_ros.learner.types import SampleRef

pytestmark = pytest.mark.slow


def tiny_pi0(**overrides) -> Pi0Policy:
    return make_policy(
        PolicyConfig(
            model="tiny",
            horizon=HORIZON,
            action_names=tuple(f"a{i}" for i in range(ACTION_DIM)),
            state_names=tuple(f"s{i}" for i in range(STATE_DIM)),
            image_size_px=32,
            **overrides,
        )
    )


@pytest.mark.parametrize("name", ["hg_dagger", "recap"])
def test_each_algorithm_lowers_the_tiny_pi0_loss(name):
    torch.manual_seed(0)
    policy = tiny_pi0()
    episodes = [
        make_episode(seed=s, human=(1,), outcome=Outcome.FAILURE if s % 2 else Outcome.SUCCESS)
        for s in range(4)
    ]
    policy.set_norm_stats(
        np.concatenate([e.states for e in episodes]),
        np.concatenate([e.actions.reshape(-1, ACTION_DIM) for e in episodes]),
    )
    extra = {"value_image_size": 16} if name == "recap" else {}
    algorithm = make_algorithm(name, policy, config=algorithm_config_class(name)(lr=1e-3, **extra))
    for episode in episodes:
        algorithm.select_online(episode)
    samples = [
        make_sample(ep, SampleRef("pick", True, i, step))
        for i, ep in enumerate(episodes)
        for step in range(4)
    ]
    losses = [algorithm.update(samples).stats["loss"] for _ in range(25)]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_loop_publishes_pi0_weights_a_robot_policy_loads_and_resumes_with_norm_stats(tmp_path: Path):
    write_bag(tmp_path / "demos", make_episode(seed=1, episode_id="demo"))
    write_bag(tmp_path / "store", make_episode(seed=2, human=(2, 3), episode_id="up"))
    published = []

    def build() -> Learner:
        policy = tiny_pi0()
        algorithm = make_algorithm("hg_dagger", policy)
        return Learner(
            policy=policy,
            algorithm=algorithm,
            buffers=ReplayBuffers(
                offline=OfflineBuffer.from_directory(tmp_path / "demos", load=load_bag),
                select_online=algorithm.select_online,
            ),
            sampler=TaskBalancedSampler(),
            load_episode=load_bag,
            publish=lambda path, manifest: published.append((Path(path), manifest)),
            checkpoint_dir=tmp_path / "ckpt",
            store_dir=tmp_path / "store",
            config=LearnerConfig(
                batch_size=4, publish_every_steps=2, checkpoint_every_steps=3, progress_bar=False
            ),
        )

    learner = build()
    learner.start()
    learner.run(3)
    path, manifest = published[-1]
    assert manifest.version == 1 and manifest.tensors == learner.policy.trainable_specs()
    assert manifest.base_model_id == learner.policy.base_model_id
    robot = tiny_pi0()
    robot.load_trainable(path)
    assert robot.active_version == "v0001"
    np.testing.assert_allclose(robot.norm_stats.state_mean, learner.policy.norm_stats.state_mean)
    resumed = build()
    resumed.start()
    assert (resumed.step, resumed.version) == (3, 1)
    np.testing.assert_allclose(resumed.policy.norm_stats.state_std, learner.policy.norm_stats.state_std)
    for name, tensor in learner.policy.trainable_state().items():
        assert torch.equal(resumed.policy.trainable_state()[name], tensor)
