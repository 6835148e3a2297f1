from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_fixtures import STATES, observation, small_config

from sop_ros.core.errors import IncompatibleWeightsError, WeightsError
from sop_ros.core.policy import Pi0Policy
from sop_ros.core.policy.weights_file import read_weights, write_weights


def _perturbed(policy: Pi0Policy, scale: float = 0.05) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return {
        n: t + scale * torch.randn(t.shape, generator=generator) for n, t in policy.trainable_state().items()
    }


def test_trainable_state_leaves_out_the_language_model(policy: Pi0Policy) -> None:
    names = set(policy.trainable_state())
    assert not any(n.startswith("model.vlm.language_model.") for n in names)
    assert "model.dit.embed_tokens.weight" not in names
    for prefix in (
        "model.vlm.vision_tower.",
        "model.vlm.multi_modal_projector.",
        "model.dit.layers.",
        "embed_action_time.state_proj.",
        "embed_action_time.action_in_proj.",
        "action_out_proj.",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    specs = policy.trainable_specs()
    assert [s.name for s in specs] == sorted(names)
    assert {s.dtype for s in specs} == {"F32"}
    assert {s.dtype for s in policy.trainable_specs(torch.bfloat16)} == {"BF16"}
    trainable = sum(t.numel() for t in policy.trainable_state().values())
    assert trainable < sum(p.numel() for p in policy.model.parameters())


def test_saved_weights_round_trip_with_norm_stats(policy: Pi0Policy, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stats = policy.set_norm_stats(rng.normal(size=(10, len(STATES))), rng.normal(5.0, size=(10, 4, 3)))
    policy.load_trainable_state(_perturbed(policy))
    path = tmp_path / "w.safetensors"
    policy.save_trainable(path, version="v0003")
    expected = policy.infer(observation()).actions

    fresh = Pi0Policy(small_config())
    fresh.load_trainable(path)
    assert fresh.active_version == "v0003"
    np.testing.assert_array_equal(fresh.norm_stats.action_mean, stats.action_mean)
    for name, tensor in policy.trainable_state().items():
        assert torch.equal(fresh.trainable_state()[name], tensor), name
    np.testing.assert_allclose(fresh.infer(observation()).actions, expected, rtol=1e-5, atol=1e-5)


def test_wrong_shape_file_names_the_tensor(policy: Pi0Policy, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    policy.save_trainable(path)
    tensors, metadata = read_weights(path)
    tensors["action_out_proj.weight"] = torch.zeros(7, 128)
    del tensors["action_out_proj.bias"]
    write_weights(path, tensors, metadata)
    with pytest.raises(IncompatibleWeightsError) as error:
        policy.load_trainable(path)
    assert "action_out_proj.weight: shape [7, 128], expected [32, 128]" in str(error.value)
    assert "missing action_out_proj.bias" in str(error.value)
    with pytest.raises(IncompatibleWeightsError, match=r"action_out_proj\.weight"):
        policy.stage(path)
    assert policy.staged_version is None


def test_wrong_dtype_state_and_foreign_config_are_refused(policy: Pi0Policy, tmp_path: Path) -> None:
    with pytest.raises(IncompatibleWeightsError, match="dtype BF16, expected F32"):
        policy.load_trainable_state(policy.trainable_state(torch.bfloat16))
    # A file's float precision is where it was trained (bf16 on a GPU): it loads, cast.
    path = tmp_path / "bf16.safetensors"
    policy.save_trainable(path, version="v0007", dtype=torch.bfloat16)
    policy.stage(path)
    assert policy.staged_version == "v0007"
    path = tmp_path / "other.safetensors"
    Pi0Policy(small_config(seed=5)).save_trainable(path)
    with pytest.raises(IncompatibleWeightsError, match="was written for config"):
        policy.stage(path)


def test_stage_changes_nothing_until_activate(policy: Pi0Policy, tmp_path: Path) -> None:
    policy.reset()
    before = policy.infer(observation()).actions
    path = tmp_path / "w.safetensors"
    donor = Pi0Policy(small_config())
    donor.load_trainable_state(_perturbed(donor, scale=0.2))
    rng = np.random.default_rng(1)
    donor.set_norm_stats(rng.normal(size=(10, len(STATES))), rng.normal(3.0, size=(10, 4, 3)))
    donor.save_trainable(path, version="v0001")

    policy.stage(path)
    assert (policy.staged_version, policy.active_version) == ("v0001", "v0000")
    policy.reset()
    np.testing.assert_array_equal(policy.infer(observation()).actions, before)

    stall_ms = policy.activate()
    assert 0 <= stall_ms < 1000
    assert (policy.staged_version, policy.active_version) == (None, "v0001")
    policy.reset()
    donor.reset()
    chunk = policy.infer(observation())
    assert chunk.policy_version == "v0001"
    assert not np.allclose(chunk.actions, before)
    np.testing.assert_allclose(chunk.actions, donor.infer(observation()).actions, rtol=1e-5, atol=1e-5)


def test_activate_without_stage_is_an_error(policy: Pi0Policy) -> None:
    with pytest.raises(WeightsError, match="no weights are staged"):
        policy.activate()
    with pytest.raises(WeightsError, match="need a version"):
        policy.stage(policy.trainable_state())


def test_staging_in_memory_while_inferring_keeps_outputs_valid(policy: Pi0Policy) -> None:
    state = _perturbed(policy)
    errors: list[BaseException] = []

    def stage_repeatedly() -> None:
        try:
            for i in range(5):
                policy.stage(state, version=f"v{i + 1:04d}")
        except BaseException as err:
            errors.append(err)

    worker = threading.Thread(target=stage_repeatedly)
    worker.start()
    for _ in range(5):
        assert policy.infer(observation()).policy_version == "v0000"
    worker.join(timeout=30)
    assert not errors
    assert policy.staged_version == "v0005"
    policy.activate()
    assert policy.infer(observation()).policy_version == "v0005"


def test_compiled_path_activates_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    # Captured CUDA graphs read the live tensors' addresses, so they must not move.
    monkeypatch.setattr(Pi0Policy, "_compile", lambda self: (self.model.sample_actions, "compiled (test)"))
    policy = Pi0Policy(small_config())
    pointers = {n: t.data_ptr() for n, t in policy.trainable_state().items()}
    new_state = _perturbed(policy)
    policy.stage(new_state, version="v0002")
    policy.activate()
    for name, tensor in policy.trainable_state().items():
        assert tensor.data_ptr() == pointers[name], name
        assert torch.equal(tensor, new_state[name]), name
