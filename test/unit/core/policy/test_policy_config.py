from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from policy_fixtures import observation, small_config

from sop_ros.core.config import config_from_flat, flatten_config
from sop_ros.core.errors import ConfigError
from sop_ros.core.policy import Pi0Policy, PolicyConfig
from sop_ros.core.policy.config import pi0_config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"camera_names": ()}, "1 to 3 cameras"),
        ({"camera_names": ("a", "b", "c", "d")}, "1 to 3 cameras"),
        ({"action_names": ("x", "x")}, "action_names must be non-empty and unique"),
        ({"state_names": ()}, "state_names must be non-empty"),
        ({"model": "/no/such/checkpoint"}, "neither a preset"),
        ({"horizon": 0}, "horizon must be >= 1"),
        ({"device": "tpu"}, "device must be one of"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        small_config(**overrides)


def test_more_actions_than_the_model_holds_is_refused() -> None:
    config = small_config(action_names=tuple(f"j{i}" for i in range(33)))
    with pytest.raises(ConfigError, match="action_names has 33 entries but the model takes at most 32"):
        pi0_config(config, vocab_size=300, image_token_id=4)


def test_image_size_must_be_a_multiple_of_the_patch() -> None:
    with pytest.raises(ConfigError, match="not a multiple of the patch size 8"):
        pi0_config(small_config(image_size_px=60), vocab_size=300, image_token_id=4)


def test_tiny_expert_matches_the_language_model_it_reads() -> None:
    pi0 = pi0_config(small_config(), vocab_size=300, image_token_id=4)
    text, expert = pi0.vlm_config.text_config, pi0.dit_config
    assert (text.hidden_size, text.num_hidden_layers) == (128, 2)
    for key in ("num_hidden_layers", "num_key_value_heads", "head_dim"):
        assert getattr(text, key) == getattr(expert, key)
    assert pi0.vlm_config.vision_config.image_size == 64
    assert pi0.chunk_size == 4


def test_settings_flatten_to_parameters_and_back() -> None:
    config = small_config()
    flat = {leaf.name: leaf.value for leaf in flatten_config(config)}
    assert flat["camera_names"] == ("front", "wrist")
    assert config_from_flat(PolicyConfig, flat) == config


def test_equal_configs_share_frozen_weights_and_hash() -> None:
    first, second = Pi0Policy(small_config()), Pi0Policy(small_config())
    assert first.config_hash == second.config_hash
    for (name, a), (_, b) in zip(
        first.model.named_parameters(), second.model.named_parameters(), strict=True
    ):
        assert a.data.equal(b.data), name
    assert Pi0Policy(small_config(seed=1)).config_hash != first.config_hash
    assert Pi0Policy(small_config(action_names=("a", "b"))).config_hash != first.config_hash


def test_a_shared_network_must_match_the_config() -> None:
    first = Pi0Policy(small_config())
    shared = Pi0Policy(small_config(camera_names=("front",)), model=first.model)
    assert shared.model is first.model
    with pytest.raises(ConfigError, match="not the 'tiny' network"):
        Pi0Policy(small_config(horizon=8), model=first.model)


def test_a_local_checkpoint_loads_with_its_tokenizer(tmp_path: Path) -> None:
    source = Pi0Policy(small_config())
    source.model.save_pretrained(tmp_path)
    source.tokenizer.save_pretrained(tmp_path)
    loaded = Pi0Policy(small_config(model=str(tmp_path)))
    assert loaded.base_model_id == f"local:{tmp_path.name}"
    for name, tensor in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    # A checkpoint runs as π0 checkpoints do (noise in padded entries too, 48 prompt tokens, the
    # padding masked): from the same start it gives the same chunk, up to float rounding.
    noise = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(
        loaded.infer_batch([observation()], noise=noise)[0].actions,
        source.infer_batch([observation()], noise=noise)[0].actions,
        atol=1e-5,
    )
    with pytest.raises(ConfigError, match="takes 64 px images, not 128"):
        Pi0Policy(small_config(model=str(tmp_path), image_size_px=128))
