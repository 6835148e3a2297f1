"""The policy interface, its factory, and the advantage indicator as part of a policy's identity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from policy_fixtures import observation, small_config

from sop_ros.core.errors import IncompatibleWeightsError
from sop_ros.core.policy import Pi0Policy, Policy, make_policy
from sop_ros.core.policy.weights_file import META_CONFIG_HASH, read_weights
from sop_ros.sim.policy import sim_policy_config
from sop_ros.simlab.base_policy import ASSETS


def _saved(path: Path, version: str, **config: object) -> Path:
    """Weights of a policy of ``small_config(**config)``, moved off its initial values."""
    policy = make_policy(small_config(**config))
    policy.load_trainable_state({name: t + 0.25 for name, t in policy.trainable_state().items()})
    policy.save_trainable(path, version=version)
    return path


def test_the_factory_builds_the_configured_policy_behind_the_interface() -> None:
    config = small_config(seed=3)
    policy = make_policy(config)
    assert isinstance(policy, Policy) and isinstance(policy, Pi0Policy)
    assert policy.config == config
    chunk = policy.infer(observation())
    assert chunk.actions.shape == (4, 3) and chunk.policy_version == policy.active_version == "v0000"
    shared = make_policy(small_config(seed=3, camera_names=("front",)), model=policy.model)
    assert shared.model is policy.model


def test_the_advantage_indicator_is_part_of_the_config_hash() -> None:
    plain = make_policy(small_config())
    positive = make_policy(small_config(inference_advantage="positive"))
    negative = make_policy(small_config(inference_advantage="negative"))
    assert positive.config_hash != plain.config_hash
    # Both ask a RECAP-trained network for one of the two values it learned.
    assert negative.config_hash == positive.config_hash


def test_a_policy_without_the_indicator_keeps_the_hash_its_weights_files_carry() -> None:
    # The packaged base was written before the indicator joined the hash, and still loads.
    _, meta = read_weights(ASSETS / "base_sim_tiny.safetensors")
    policy = make_policy(sim_policy_config())
    assert meta[META_CONFIG_HASH] == policy.config_hash
    policy.load_trainable(ASSETS / "base_sim_tiny.safetensors")


def test_a_policy_without_the_indicator_refuses_recap_weights_and_keeps_its_own(tmp_path: Path) -> None:
    recap = _saved(tmp_path / "r.safetensors", "v0007", inference_advantage="positive")
    robot = make_policy(small_config())
    before = {name: tensor.clone() for name, tensor in robot.trainable_state().items()}
    for load in (robot.stage, robot.load_trainable):
        with pytest.raises(IncompatibleWeightsError) as refused:
            load(recap)
        message = str(refused.value)
        assert "(v0007) was trained with RECAP's advantage indicator" in message, message
        assert "this policy acts without it (policy.inference_advantage 'none')" in message, message
        assert "Set policy.inference_advantage to 'positive'" in message, message
        assert "nothing loaded, v0000 stays in use" in message, message
    assert robot.staged_version is None and robot.active_version == "v0000"
    for name, tensor in robot.trainable_state().items():
        assert torch.equal(tensor, before[name]), name


def test_recap_starts_from_an_imitation_base_but_stages_only_recap_weights(tmp_path: Path) -> None:
    base = _saved(tmp_path / "base.safetensors", "v0000")
    later = _saved(tmp_path / "hg.safetensors", "v0004")
    robot = make_policy(small_config(inference_advantage="positive"))
    robot.load_trainable(base)  # a starting point: RECAP fine-tunes an imitation base
    for name, tensor in read_weights(base)[0].items():
        assert torch.equal(robot.trainable_state()[name], tensor), name
    with pytest.raises(IncompatibleWeightsError, match="trained without the advantage indicator") as refused:
        robot.stage(later)
    assert "Set policy.inference_advantage to 'none'" in str(refused.value)
    assert robot.staged_version is None
    # The robot's own kind of weights stage as before.
    recap = _saved(tmp_path / "r.safetensors", "v0005", inference_advantage="positive")
    robot.stage(recap)
    assert robot.staged_version == "v0005"


def test_weights_of_another_network_are_refused_with_both_identities(tmp_path: Path) -> None:
    other = _saved(tmp_path / "o.safetensors", "v0002", seed=9)
    policy = make_policy(small_config())
    with pytest.raises(IncompatibleWeightsError, match="was written for config") as refused:
        policy.stage(other)
    assert policy.config_hash[:12] in str(refused.value)
