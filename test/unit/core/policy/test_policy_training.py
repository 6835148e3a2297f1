from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_fixtures import ACTIONS, STATES, sample, small_config

from sop_ros.core.errors import ConfigError
from sop_ros.core.policy import Pi0Policy, TrainingSample, is_trainable
from sop_ros.core.types import Observation


def test_collate_builds_padded_normalised_tensors(policy: Pi0Policy) -> None:
    batch = policy.collate([sample(0), sample(1, advantage=True), {**vars(sample(2)), "advantage": False}])
    assert batch["pixel_values"].shape == (3, 2, 3, 64, 64)
    assert batch["state"].shape == (3, 32)
    assert batch["actions"].shape == (3, 4, 32)
    assert torch.all(batch["actions"][..., len(ACTIONS) :] == 0)
    assert torch.all(batch["state"][:, len(STATES) :] == 0)
    # The advantage indicator lengthens the prompt by three tokens.
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths[1] == lengths[2] == lengths[0] + 3


def test_collate_refuses_actions_of_the_wrong_horizon(policy: Pi0Policy) -> None:
    bad = TrainingSample(**{**vars(sample(0)), "actions": np.zeros((5, len(ACTIONS)), np.float32)})
    with pytest.raises(ConfigError, match=r"actions have shape \(5, 3\), the policy expects \(4, 3\)"):
        policy.collate([bad])


def test_loss_is_per_sample(policy: Pi0Policy) -> None:
    loss = policy.loss(policy.collate([sample(0), sample(1)]))
    assert loss.shape == (2,)
    assert loss.dtype == torch.float32
    assert torch.all(loss > 0)


def test_training_changes_only_the_trainable_part(policy: Pi0Policy) -> None:
    frozen = {n: p.detach().clone() for n, p in policy.model.named_parameters() if not is_trainable(n)}
    trainable = {n: p.detach().clone() for n, p in policy.trainable_state().items()}
    assert any(n.startswith("model.vlm.language_model.") for n in frozen)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-3)
    batch = policy.collate([sample(0), sample(1)])
    for _ in range(3):
        policy.loss(batch).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    params = dict(policy.model.named_parameters())
    for name, before in frozen.items():
        assert params[name].requires_grad is False
        assert torch.equal(params[name].detach(), before), name
    changed = [n for n, before in trainable.items() if not torch.equal(params[n].detach(), before)]
    assert len(changed) == len(trainable)


@pytest.mark.slow
def test_a_few_dozen_steps_fit_two_samples(policy: Pi0Policy) -> None:
    samples = [sample(0), sample(1)]
    policy.set_norm_stats(np.stack([s.state for s in samples]), np.stack([s.actions for s in samples]))
    batch = policy.collate(samples * 2)

    def fixed_noise_loss() -> float:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return float(policy.loss(batch).mean())

    before = fixed_noise_loss()
    torch.manual_seed(1)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=2e-3)
    for _ in range(60):
        policy.loss(batch).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    # Flow matching cannot reach zero loss; memorising two samples roughly halves it.
    assert fixed_noise_loss() < 0.7 * before


def test_norm_stats_survive_a_dimension_that_never_moves(policy: Pi0Policy) -> None:
    rng = np.random.default_rng(0)
    states = rng.normal(size=(50, len(STATES)))
    states[:, 2] = 0.04  # a gripper that stayed put in every demonstration
    stats = policy.set_norm_stats(states, rng.normal(size=(50, 4, len(ACTIONS))))
    assert np.all(stats.state_std > 0)
    assert policy.norm_stats is stats
    with pytest.raises(ConfigError, match="norm stats need states"):
        policy.set_norm_stats(np.zeros(5), np.zeros((5, 3)))


@pytest.mark.slow
def test_the_policy_learns_to_act_on_what_it_sees() -> None:
    # The target is visible only in the image: left square -> move left, right square -> move right.
    torch.manual_seed(0)
    policy = Pi0Policy(
        small_config(camera_names=("front",), action_names=("x", "y"), state_names=("s",), denoising_steps=5)
    )

    def image(right: bool) -> np.ndarray:
        frame = np.zeros((64, 64, 3), np.uint8)
        columns = slice(40, 60) if right else slice(4, 24)
        frame[20:44, columns] = (255, 0, 0)
        return frame

    def chunk(right: bool) -> np.ndarray:
        return np.tile(np.array([10.0 if right else -10.0, 3.0], np.float32), (4, 1))

    samples = [
        TrainingSample(images={"front": image(i % 2 == 1)}, state=np.zeros(1, np.float32),
                       instruction="reach the target", actions=chunk(i % 2 == 1))
        for i in range(16)
    ]  # fmt: skip
    policy.set_norm_stats(np.zeros((16, 1)), np.stack([s.actions for s in samples]))
    batch = policy.collate(samples)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-3)
    for _ in range(140):
        policy.loss(batch).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    policy.reset()
    for right in (False, True):
        obs = Observation(
            images={"front": image(right)}, state=np.zeros(1, np.float32), instruction="reach the target"
        )
        actions = policy.infer(obs).actions
        np.testing.assert_allclose(actions[:, 0].mean(), 10.0 if right else -10.0, atol=5.0)
        np.testing.assert_allclose(actions[:, 1].mean(), 3.0, atol=2.0)
