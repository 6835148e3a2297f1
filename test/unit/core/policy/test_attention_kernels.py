"""PolicyConfig.attention: which SDPA kernel is tried first, and every choice computes the same actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_fixtures import observation, small_config

from sop_ros.core.policy import Pi0Policy
from sop_ros.core.policy.attention import KERNELS, attention_kernels

CHOICES = ("auto", *KERNELS)


def _priority() -> list[int]:
    return list(torch._C._get_sdp_priority_order())


@pytest.mark.parametrize("choice", list(KERNELS))
def test_the_chosen_kernel_is_tried_first_and_the_others_stay_behind_it(choice: str) -> None:
    default = _priority()
    with attention_kernels(choice, torch.device("cuda")):
        order = _priority()
        assert order[0] == int(KERNELS[choice])
        assert {int(k) for k in KERNELS.values()} <= set(order)
        assert torch.backends.cuda.math_sdp_enabled()  # the fallback for calls nothing else runs
    assert _priority() == default


def test_auto_and_the_cpu_keep_pytorchs_own_choice() -> None:
    default = _priority()
    for choice, device in (("auto", "cuda"), ("efficient", "cpu"), ("flash", "cpu")):
        with attention_kernels(choice, torch.device(device)):
            assert _priority() == default


def test_a_choice_that_does_not_apply_on_the_cpu_leaves_inference_unchanged() -> None:
    auto = Pi0Policy(small_config())
    chosen = Pi0Policy(small_config(attention="efficient"), model=auto.model)
    np.testing.assert_array_equal(chosen.infer(observation()).actions, auto.infer(observation()).actions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compile_mode", ["none", "cuda-graph"])
@pytest.mark.parametrize("choice", CHOICES[1:])
def test_every_kernel_computes_the_actions_of_pytorchs_choice(choice: str, compile_mode: str) -> None:
    torch.manual_seed(0)
    reference = Pi0Policy(small_config(device="cuda", dtype="bfloat16"))
    chosen = Pi0Policy(
        small_config(device="cuda", dtype="bfloat16", attention=choice, compile_mode=compile_mode),
        model=reference.model,
    )
    for seed in range(4):  # eager twice, then capture, then replay
        reference.reset()
        chosen.reset()
        want = reference.infer(observation(seed)).actions
        got = chosen.infer(observation(seed)).actions
        np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05 * float(np.abs(want).max()) + 1e-3)
