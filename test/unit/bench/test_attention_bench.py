"""bench/attention records the SDPA calls of one inference: each, as often as it comes, with its inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "policy"))

from attention.run import record_calls
from policy_fixtures import observation, small_config

from sop_ros.core.policy import make_policy


def test_every_attention_call_of_an_inference_is_recorded_with_inputs_that_replay_it() -> None:
    config = small_config()
    policy = make_policy(config)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    counts, inputs = record_calls(policy, observation())
    assert torch.nn.functional.scaled_dot_product_attention is sdpa  # recording leaves SDPA as it was
    text = policy.model.config.vlm_config.text_config.num_hidden_layers
    # The prefix once through the language model, then the expert at every denoising step
    # (the vision tower's calls come on top).
    assert sum(counts.values()) >= text * (1 + config.denoising_steps)
    assert set(counts) == set(inputs)
    for key, (args, kwargs) in inputs.items():
        out = torch.nn.functional.scaled_dot_product_attention(*args, **kwargs)
        assert out.shape == args[0].shape, key
        assert torch.isfinite(out).all(), key
