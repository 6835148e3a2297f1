"""Small π0 checkpoints in LeRobot's directory layout, written without LeRobot.

The layout (``config.json``, LeRobot-named ``model.safetensors``, processor
JSON files with normaliser statistics) is the one LeRobot 0.6 writes; the
cross-check in ``test/crosscheck`` holds it against LeRobot itself. Sizes are
tiny so a test builds one in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file
from transformers import PI0Config, PI0ForConditionalGeneration

from sop_ros.core.policy.export import lerobot_names
from sop_ros.core.policy.tokenizer import build_tokenizer

IMAGE_KEYS = (
    "observation.images.base_0_rgb",
    "observation.images.left_wrist_0_rgb",
    "observation.images.right_wrist_0_rgb",
)
STATE_DIM, ACTION_DIM, CHUNK, SIDE, VOCAB = 4, 3, 4, 28, 320


def tiny_pi0() -> PI0ForConditionalGeneration:
    gemma = dict(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    config = PI0Config(
        vlm_config=dict(
            model_type="paligemma",
            text_config=dict(
                model_type="gemma", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, **gemma
            ),
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=144,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                patch_size=14,
                image_size=SIDE,
                vision_use_head=False,
            ),
            projection_dim=32,
            image_token_id=VOCAB,
        ),
        dit_config=dict(model_type="gemma", hidden_size=16, intermediate_size=32, **gemma),
        chunk_size=CHUNK,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PI0ForConditionalGeneration(config).eval()
        # Random norms and biases: a zero here would hide a wrongly mapped tensor.
        for param in model.parameters():
            param.data.normal_(0.0, 0.2)
    return model


def _normaliser_step(name: str, index: int, features: dict, norm_map: dict) -> dict:
    side = "pre" if name == "normalizer_processor" else "post"
    return {
        "registry_name": name,
        "config": {"eps": 1e-8, "features": features, "norm_map": norm_map},
        "state_file": f"policy_{side}processor_step_{index}_{name}.safetensors",
    }


def write_lerobot_checkpoint(
    path: Path,
    *,
    state_mode: str = "MEAN_STD",
    action_mode: str = "QUANTILES",
    tokenizer: bool = False,
    tied: bool = False,
) -> Path:
    """Write a tiny LeRobot-layout π0 checkpoint (no tokenizer unless asked); return its directory.

    ``tied`` stores the token embedding under LeRobot's ``lm_head`` name only, as the hub files do.
    """
    path.mkdir(parents=True, exist_ok=True)
    model = tiny_pi0()
    params = dict(model.named_parameters())
    state = {}
    for name, targets in lerobot_names(list(params)).items():
        for target in targets:
            state[target] = params[name].detach().clone().contiguous()
    if tied:
        del state["model.paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"]
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    features = {
        **{key: {"type": "VISUAL", "shape": [3, SIDE, SIDE]} for key in IMAGE_KEYS},
        "observation.state": {"type": "STATE", "shape": [STATE_DIM]},
    }
    config = {
        "type": "pi0",
        "input_features": features,
        "output_features": {"action": {"type": "ACTION", "shape": [ACTION_DIM]}},
        "paligemma_variant": "gemma_2b",
        "action_expert_variant": "gemma_300m",
        "chunk_size": CHUNK,
        "n_action_steps": CHUNK,
        "max_state_dim": 32,
        "max_action_dim": 32,
        "num_inference_steps": 3,
        "image_resolution": [SIDE, SIDE],
        "empty_cameras": 0,
        "tokenizer_max_length": 48,
        "normalization_mapping": {"VISUAL": "IDENTITY", "STATE": state_mode, "ACTION": action_mode},
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(4)
    stats = {
        "observation.state.mean": rng.normal(size=STATE_DIM).astype(np.float32),
        "observation.state.std": rng.uniform(0.5, 2, STATE_DIM).astype(np.float32),
        "observation.state.min": -rng.uniform(1, 2, STATE_DIM).astype(np.float32),
        "observation.state.max": rng.uniform(1, 2, STATE_DIM).astype(np.float32),
        "action.q01": -rng.uniform(0.5, 1, ACTION_DIM).astype(np.float32),
        "action.q99": rng.uniform(1, 3, ACTION_DIM).astype(np.float32),
        "action.mean": rng.normal(size=ACTION_DIM).astype(np.float32),
        "action.std": rng.uniform(0.5, 2, ACTION_DIM).astype(np.float32),
    }
    norm_map = {"VISUAL": "IDENTITY", "STATE": state_mode, "ACTION": action_mode}
    pre = _normaliser_step(
        "normalizer_processor", 5, {**features, "action": {"type": "ACTION", "shape": [ACTION_DIM]}}, norm_map
    )
    post = _normaliser_step(
        "unnormalizer_processor", 0, {"action": {"type": "ACTION", "shape": [ACTION_DIM]}}, norm_map
    )
    tokenizer_step = {
        "registry_name": "tokenizer_processor",
        "config": {
            "max_length": 48,
            "task_key": "task",
            "padding_side": "right",
            "padding": "max_length",
            "truncation": True,
            "tokenizer_name": "google/paligemma-3b-pt-224",
        },
    }
    steps = [
        {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
        tokenizer_step,
        pre,
    ]
    (path / "policy_preprocessor.json").write_text(
        json.dumps({"name": "policy_preprocessor", "steps": steps})
    )
    (path / "policy_postprocessor.json").write_text(
        json.dumps({"name": "policy_postprocessor", "steps": [post]})
    )
    save_numpy(stats, str(path / pre["state_file"]))
    save_numpy({k: v for k, v in stats.items() if k.startswith("action.")}, str(path / post["state_file"]))
    if tokenizer:
        build_tokenizer().save_pretrained(path)
    return path


def write_tokenizer(path: Path, *, config: bool = True) -> Path:
    """A PaliGemma-style tokenizer directory (<pad> 0, <bos> 2); tokenizer.json only unless ``config``."""
    build_tokenizer().save_pretrained(path)
    if not config:
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            (path / name).unlink(missing_ok=True)
    return path
