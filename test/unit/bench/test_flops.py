"""The FLOP counts the benches divide by: faithful on the meta device, split correctly, MFU looked up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "policy"))

from flops import count_network_flops, count_pi0_flops, mfu, peak_tflops, pi0_inputs
from policy_fixtures import small_config as config
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from sop_ros.core.policy import make_policy


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    return make_policy(config()).model


def test_counting_on_the_meta_device_matches_counting_real_tensors(network: torch.nn.Module) -> None:
    # On real CPU tensors SDPA runs a fused kernel the counter has no formula for; the
    # math kernel (what the meta device runs) spells attention out as counted products.
    with sdpa_kernel(SDPBackend.MATH):
        real = count_network_flops(config(), network)
    assert count_pi0_flops(config()) == real


def test_inference_is_the_prefix_once_plus_every_denoising_step(network: torch.nn.Module) -> None:
    flops = count_pi0_flops(config())
    inputs = pi0_inputs(config(), network, batch=1, device="cpu")
    noise = torch.zeros((1, 4, network.config.max_action_dim))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        network.sample_actions(**inputs, noise=noise, num_steps=3)
    assert flops.inference_flops == counter.get_total_flops()
    assert flops.prefix_flops > flops.denoise_step_flops > 0


def test_a_training_sample_costs_more_than_its_forward_pass_and_less_than_three() -> None:
    flops = count_pi0_flops(config())
    forward = flops.prefix_flops + flops.denoise_step_flops
    # Backward recomputes nothing and skips the frozen language model's weight gradients.
    assert 1.5 * forward < flops.train_sample_flops < 3 * forward


def test_more_cameras_and_steps_cost_more() -> None:
    base = count_pi0_flops(config())
    assert count_pi0_flops(config(camera_names=("a", "b", "c"))).prefix_flops > base.prefix_flops
    more_steps = count_pi0_flops(config(denoising_steps=6))
    assert more_steps.inference_flops == base.prefix_flops + 6 * base.denoise_step_flops


def test_mfu_uses_the_dense_peak_of_the_named_gpu() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", torch.bfloat16) == pytest.approx(989.4)
    assert mfu(494.7e12, "NVIDIA H100 80GB HBM3", torch.bfloat16) == pytest.approx(0.5)
    assert mfu(1e12, "cpu", torch.float32) is None
