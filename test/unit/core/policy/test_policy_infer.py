from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_fixtures import ACTIONS, STATES, observation, small_config

from sop_ros.core.errors import ConfigError
from sop_ros.core.policy import Pi0Policy
from sop_ros.core.types import Observation


def test_infer_returns_a_chunk_in_the_robot_layout(policy: Pi0Policy) -> None:
    chunk = policy.infer(observation())
    assert chunk.actions.shape == (4, len(ACTIONS))
    assert chunk.action_names == ACTIONS
    assert np.isfinite(chunk.actions).all()
    assert chunk.policy_version == "v0000" == policy.active_version
    assert chunk.stamp_ns == 123
    assert chunk.infer_ms > 0
    assert chunk.control_period_s == pytest.approx(0.02)
    assert policy.inference_path == "eager"


def test_actions_come_back_in_robot_units(policy: Pi0Policy) -> None:
    rng = np.random.default_rng(0)
    mean = np.array([100.0, -50.0, 0.04], np.float32)
    actions = mean + rng.normal(size=(200, len(ACTIONS))).astype(np.float32) * [1.0, 2.0, 0.01]
    policy.set_norm_stats(rng.normal(size=(200, len(STATES))), actions)
    chunk = policy.infer(observation())
    # An untrained network outputs values of order 1 in normalised units.
    assert np.all(np.abs(chunk.actions - mean) < 10 * np.array([1.0, 2.0, 0.01]))


def test_reset_makes_an_episode_reproducible(policy: Pi0Policy) -> None:
    policy.reset()
    first = policy.infer(observation()).actions
    assert not np.array_equal(policy.infer(observation()).actions, first)  # fresh noise per chunk
    policy.reset()
    np.testing.assert_array_equal(policy.infer(observation()).actions, first)


def test_images_of_another_size_are_resized(policy: Pi0Policy) -> None:
    obs = observation()
    big = Observation(
        images={name: np.kron(image, np.ones((2, 2, 1), np.uint8)) for name, image in obs.images.items()},
        state=obs.state,
        instruction=obs.instruction,
    )
    assert policy.infer(big).actions.shape == (4, len(ACTIONS))


def test_missing_camera_and_wrong_state_are_named(policy: Pi0Policy) -> None:
    obs = observation()
    no_wrist = Observation(images={"front": obs.images["front"]}, state=obs.state, instruction="go")
    with pytest.raises(ConfigError, match=r"lacks camera\(s\) \['wrist'\]"):
        policy.infer(no_wrist)
    short = Observation(images=obs.images, state=obs.state[:2], instruction="go")
    with pytest.raises(ConfigError, match=r"state has shape \(2,\), the policy expects \(4,\)"):
        policy.infer(short)


@pytest.mark.parametrize("mode", ["cuda-graph", "reduce-overhead"])
def test_optimised_paths_fall_back_to_eager_on_cpu(mode: str) -> None:
    policy = Pi0Policy(small_config(compile_mode=mode))
    assert policy.inference_path.startswith("eager")
    policy.warmup(1)
    assert policy.infer(observation()).actions.shape == (4, len(ACTIONS))


def test_positive_advantage_prompt_changes_the_actions() -> None:
    plain = Pi0Policy(small_config())
    positive = Pi0Policy(small_config(inference_advantage="positive"))
    assert not np.array_equal(plain.infer(observation()).actions, positive.infer(observation()).actions)


def test_a_failing_compiled_path_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("no kernel for this GPU")

    monkeypatch.setattr(Pi0Policy, "_compile", lambda self: (broken, "compiled (test)"))
    policy = Pi0Policy(small_config())
    assert policy.infer(observation()).actions.shape == (4, len(ACTIONS))
    assert policy.inference_path.startswith("eager (compile failed: RuntimeError: no kernel")
    policy.reset()
    eager = Pi0Policy(small_config())
    np.testing.assert_array_equal(policy.infer(observation()).actions, eager.infer(observation()).actions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphed_batches_of_any_size_match_eager_inference() -> None:
    torch.manual_seed(0)
    eager = Pi0Policy(small_config(device="cuda", dtype="float32"))
    graphed = Pi0Policy(
        small_config(device="cuda", dtype="float32", compile_mode="cuda-graph"), model=eager.model
    )
    # Sizes round up to 4, 1 and 8; each size runs eagerly twice, then captures, then replays.
    for size in (3, 3, 3, 1, 5, 3, 1, 1, 7, 6, 8):
        observations = [observation(seed) for seed in range(size)]
        eager.reset()
        graphed.reset()
        want = [chunk.actions for chunk in eager.infer_batch(observations)]
        got = [chunk.actions for chunk in graphed.infer_batch(observations)]
        np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=1e-3, atol=1e-3)
    assert graphed._compiled.graphs == 3


def test_graphed_batches_are_padded_with_copies_of_their_first_row() -> None:
    from sop_ros.core.policy.pi0 import _pad_batch

    rows = torch.arange(6.0).view(3, 2)
    padded = _pad_batch(rows, 4)
    assert padded.shape == (4, 2)
    torch.testing.assert_close(padded[:3], rows)
    torch.testing.assert_close(padded[3], rows[0])
    assert _pad_batch(rows, 3) is rows
    assert _pad_batch(5, 4) == 5  # the number of denoising steps passes through
