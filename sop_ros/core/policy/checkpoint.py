"""Reading π0 checkpoint directories: LeRobot's layout and the one ``transformers`` saves.

A LeRobot π0 checkpoint (``lerobot/pi0_base``, ``lerobot/pi0`` and the
fine-tunes people publish from LeRobot) holds ``config.json`` in LeRobot's
format (``"type": "pi0"``, variants, input/output features),
``model.safetensors`` with LeRobot's tensor names, and
``policy_preprocessor.json`` / ``policy_postprocessor.json`` whose normaliser
steps point at safetensors files of dataset statistics. It has no tokenizer:
LeRobot takes PaliGemma's from the hub (``google/paligemma-3b-pt-224``).
``transformers`` loads the same tensors through its ``pi0`` conversion
mapping once it is handed a :class:`~transformers.PI0Config`, which
:func:`read_checkpoint` derives from LeRobot's config.

Everything the policy must reproduce of the way the checkpoint was trained is
read here into a :class:`CheckpointSpec`: image slots in order, state and
action lengths, prompt length, normalisation modes and statistics.

Pure functions and immutable values; safe from any thread.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from transformers import PI0Config

from sop_ros.core.errors import ConfigError
from sop_ros.core.weights import sha256_bytes

__all__ = [
    "LEROBOT_FORMAT",
    "NORM_MODES",
    "PALIGEMMA_TOKENIZER",
    "TRANSFORMERS_FORMAT",
    "CheckpointSpec",
    "FeatureNorm",
    "lerobot_pi0_config",
    "read_checkpoint",
    "weight_shapes",
]

LEROBOT_FORMAT = "lerobot"
TRANSFORMERS_FORMAT = "transformers"
# LeRobot's π0 tokenises prompts with PaliGemma's tokenizer, downloaded by this name.
PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
WEIGHTS_FILE = "model.safetensors"
IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
# openpi's prompt length for π0 (LeRobot's tokenizer_max_length), <bos> included.
DEFAULT_PROMPT_TOKENS = 48

# Normalisation modes LeRobot writes, and the statistics each one reads.
NORM_MODES: dict[str, tuple[str, ...]] = {
    "IDENTITY": (),
    "MEAN_STD": ("mean", "std"),
    "MIN_MAX": ("min", "max"),
    "QUANTILES": ("q01", "q99"),
    "QUANTILE10": ("q10", "q90"),
}

# openpi's Gemma variants (width, depth, mlp, heads, kv heads, head_dim).
_GEMMA_VARIANTS = {
    "gemma_300m": dict(
        hidden_size=1024, num_hidden_layers=18, intermediate_size=4096, num_attention_heads=8,
        num_key_value_heads=1, head_dim=256,
    ),
    "gemma_2b": dict(
        hidden_size=2048, num_hidden_layers=18, intermediate_size=16384, num_attention_heads=8,
        num_key_value_heads=1, head_dim=256,
    ),
}  # fmt: skip
# SigLIP So400m/14, the vision tower of every π0.
_SIGLIP = dict(
    model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
    num_attention_heads=16, patch_size=14, vision_use_head=False,
)  # fmt: skip
_PALIGEMMA_VOCAB = 257152


@dataclass(frozen=True, kw_only=True)
class FeatureNorm:
    """How one feature (state or action) was normalised: ``normalised = (x - center) / scale``.

    ``scale`` is what the forward direction divides by; ``inverse_scale`` what
    the inverse direction multiplies by (LeRobot's MEAN_STD adds ``eps`` to the
    standard deviation only when normalising).
    """

    mode: str
    center: np.ndarray
    scale: np.ndarray
    inverse_scale: np.ndarray

    @classmethod
    def from_stats(cls, mode: str, stats: Mapping[str, np.ndarray], *, eps: float, size: int) -> FeatureNorm:
        """Turn LeRobot statistics of one feature into the affine map its normaliser applies.

        Raises:
            ConfigError: the mode is unknown or a statistic is missing or has the wrong size.
        """
        if mode not in NORM_MODES:
            raise ConfigError(
                f"normalisation mode {mode!r} is not supported; supported: {', '.join(NORM_MODES)}"
            )
        if mode == "IDENTITY":
            ones = np.ones(size, np.float32)
            return cls(mode=mode, center=np.zeros(size, np.float32), scale=ones, inverse_scale=ones)
        names = NORM_MODES[mode]
        missing = [name for name in names if name not in stats]
        if missing:
            raise ConfigError(f"{mode} normalisation needs statistics {list(names)}; {missing} are missing")
        low, high = (np.asarray(stats[name], np.float64).reshape(-1) for name in names)
        if low.shape != (size,) or high.shape != (size,):
            raise ConfigError(
                f"{mode} statistics have {low.shape[0]}/{high.shape[0]} entries, the feature has {size}"
            )
        if mode == "MEAN_STD":
            center, scale, inverse = low, high + eps, high
        else:
            # 2 (x - low) / (high - low) - 1, with LeRobot's eps where high == low.
            span = np.where(high - low == 0, eps, high - low)
            center, scale = low + span / 2, span / 2
            inverse = scale
        return cls(
            mode=mode,
            center=np.asarray(center, np.float32),
            scale=np.asarray(scale, np.float32),
            inverse_scale=np.asarray(inverse, np.float32),
        )

    def permuted(self, order: np.ndarray) -> FeatureNorm:
        """The same map for a vector whose entry ``i`` is this feature's entry ``order[i]``."""
        return FeatureNorm(
            mode=self.mode,
            center=self.center[order],
            scale=self.scale[order],
            inverse_scale=self.inverse_scale[order],
        )


@dataclass(frozen=True, kw_only=True)
class CheckpointSpec:
    """What a checkpoint directory is and what it expects of its inputs."""

    path: Path
    format: str
    pi0: PI0Config = field(repr=False)
    # Image keys in the order the model sees them (LeRobot's input_features order);
    # empty when the checkpoint does not say (the policy's cameras are the slots).
    image_keys: tuple[str, ...]
    # Length of the checkpoint's state and action vectors before π0's zero padding;
    # 0 when the checkpoint does not say (the robot's vectors are zero-padded).
    state_dim: int
    action_dim: int
    # Prompt tokens including <bos> and the trailing newline (LeRobot's tokenizer_max_length).
    prompt_tokens: int
    tokenizer_name: str
    state_norm: FeatureNorm | None
    action_norm: FeatureNorm | None
    # Names of the files the description was read from.
    sources: tuple[str, ...]

    @property
    def weights_file(self) -> Path | None:
        """The safetensors file of the weights, if the directory has one."""
        path = self.path / WEIGHTS_FILE
        return path if path.is_file() else None

    @property
    def has_norm_stats(self) -> bool:
        """True when the checkpoint says how states and actions were normalised."""
        return self.state_norm is not None and self.action_norm is not None

    def digest(self) -> str:
        """sha256 of the facts that change what the network computes from the same robot data."""
        document = {
            "image_keys": self.image_keys,
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "prompt_tokens": self.prompt_tokens,
            "norm": [_norm_document(n) for n in (self.state_norm, self.action_norm)],
        }
        return sha256_bytes(json.dumps(document, sort_keys=True).encode())


def _norm_document(norm: FeatureNorm | None) -> Any:
    if norm is None:
        return None
    return {
        "mode": norm.mode,
        **{k: getattr(norm, k).tolist() for k in ("center", "scale", "inverse_scale")},
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return document


_LEROBOT_VLM = "model.paligemma_with_expert.paligemma.model."
_LEROBOT_EXPERT = "model.paligemma_with_expert.gemma_expert.model."
# SigLIP's attention heads are not visible in tensor shapes; So400m has 72 dims per head.
_SIGLIP_HEAD_DIM = 72


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors in a safetensors file, read from its header only."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise ConfigError(f"cannot read the tensor header of {path}: {err}") from None


def _layers(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> int:
    indices = {int(name[len(prefix) :].split(".")[0]) for name in shapes if name.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def _gemma_from_shapes(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> dict[str, int]:
    layer = f"{prefix}layers.0."
    head_dim = shapes[f"{layer}self_attn.k_proj.weight"][0]  # π0's Gemmas have one KV head
    return dict(
        hidden_size=shapes[f"{prefix}norm.weight"][0],
        num_hidden_layers=_layers(shapes, f"{prefix}layers."),
        intermediate_size=shapes[f"{layer}mlp.gate_proj.weight"][0],
        num_attention_heads=shapes[f"{layer}self_attn.q_proj.weight"][0] // head_dim,
        num_key_value_heads=1,
        head_dim=head_dim,
    )


def _sizes_from_weights(
    shapes: Mapping[str, tuple[int, ...]],
) -> tuple[dict[str, int], dict[str, Any], dict[str, int]] | None:
    """(text, vision, expert) sizes read off LeRobot-named tensors, or None for other names.

    The text sizes include ``vocab_size`` (the embedding's rows; LeRobot may store the
    embedding under its tied ``lm_head`` name only).
    """
    vision = f"{_LEROBOT_VLM}vision_tower.vision_model."  # LeRobot keeps SigLIP's inner module
    patch = shapes.get(f"{vision}embeddings.patch_embedding.weight")
    if patch is None:
        return None
    try:
        text = _gemma_from_shapes(shapes, f"{_LEROBOT_VLM}language_model.")
        embedding = shapes.get(f"{_LEROBOT_VLM}language_model.embed_tokens.weight") or shapes.get(
            "model.paligemma_with_expert.paligemma.lm_head.weight"
        )
        text["vocab_size"] = embedding[0] if embedding else _PALIGEMMA_VOCAB
        expert = _gemma_from_shapes(shapes, _LEROBOT_EXPERT)
        hidden, patch_px = patch[0], patch[-1]
        positions = shapes[f"{vision}embeddings.position_embedding.weight"][0]
        siglip = dict(
            _SIGLIP,
            hidden_size=hidden,
            intermediate_size=shapes[f"{vision}encoder.layers.0.mlp.fc1.weight"][0],
            num_hidden_layers=_layers(shapes, f"{vision}encoder.layers."),
            num_attention_heads=max(1, hidden // _SIGLIP_HEAD_DIM),
            patch_size=patch_px,
            image_size=round(positions**0.5) * patch_px,
        )
    except KeyError as err:
        raise ConfigError(f"model.safetensors lacks {err} that every LeRobot π0 has") from None
    return text, siglip, expert


def lerobot_pi0_config(
    lerobot: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]] | None = None
) -> PI0Config:
    """The ``transformers`` config of the network a LeRobot π0 ``config.json`` describes.

    Args:
        lerobot: LeRobot's ``config.json``.
        shapes: Tensor shapes of its ``model.safetensors``; when given, the sizes are read
            off them (the variant names must agree for the real sizes).

    Raises:
        ConfigError: the variants or the image resolution are not ones π0 has.
    """
    variants = {}
    for key in ("paligemma_variant", "action_expert_variant"):
        name = lerobot.get(key, "gemma_2b" if key == "paligemma_variant" else "gemma_300m")
        if name not in _GEMMA_VARIANTS:
            raise ConfigError(f"{key} {name!r} is not a π0 variant ({', '.join(_GEMMA_VARIANTS)})")
        variants[key] = _GEMMA_VARIANTS[name]
    height, width = lerobot.get("image_resolution", (224, 224))
    if height != width:
        raise ConfigError(f"image_resolution {height}x{width} is not square; π0 takes square images")
    text = dict(variants["paligemma_variant"], vocab_size=_PALIGEMMA_VOCAB)
    vision: dict[str, Any] = dict(_SIGLIP)
    expert = variants["action_expert_variant"]
    measured = _sizes_from_weights(shapes) if shapes else None
    if measured is not None:
        text, vision, expert = measured
    vision["image_size"] = int(height)
    return PI0Config(
        vlm_config=dict(
            model_type="paligemma",
            text_config=dict(model_type="gemma", **text),
            vision_config=vision,
            projection_dim=text["hidden_size"],
            # An id past the vocabulary: no prompt produces it.
            image_token_id=text["vocab_size"],
        ),
        dit_config=dict(model_type="gemma", **expert),
        chunk_size=int(lerobot.get("chunk_size", 50)),
        max_state_dim=int(lerobot.get("max_state_dim", 32)),
        max_action_dim=int(lerobot.get("max_action_dim", 32)),
        num_inference_steps=int(lerobot.get("num_inference_steps", 10)),
        time_sampling_beta_alpha=float(lerobot.get("time_sampling_beta_alpha", 1.5)),
        time_sampling_beta_beta=float(lerobot.get("time_sampling_beta_beta", 1.0)),
        time_sampling_scale=float(lerobot.get("time_sampling_scale", 0.999)),
        time_sampling_offset=float(lerobot.get("time_sampling_offset", 0.001)),
        min_period=float(lerobot.get("min_period", 4e-3)),
        max_period=float(lerobot.get("max_period", 4.0)),
    )


def _feature_size(features: Mapping[str, Any], key: str, default: int) -> int:
    shape = (features.get(key) or {}).get("shape")
    return int(shape[0]) if shape else default


def _processor_steps(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    steps = _read_json(path).get("steps", [])
    if not isinstance(steps, list):
        raise ConfigError(f"{path}: 'steps' is not a list")
    return [s for s in steps if isinstance(s, dict)]


def _step(steps: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((s for s in steps if s.get("registry_name") == name), None)


def _read_stats(directory: Path, step: Mapping[str, Any]) -> dict[str, np.ndarray]:
    state_file = step.get("state_file")
    if not state_file:
        return {}
    path = directory / state_file
    try:
        with safe_open(str(path), framework="np") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise ConfigError(f"cannot read normalisation statistics {path}: {err}") from None


def _feature_norm(
    directory: Path, step: Mapping[str, Any] | None, key: str, kind: str, size: int, where: str
) -> FeatureNorm | None:
    """The normalisation ``step`` (a processor file's normaliser) applies to feature ``key``."""
    if step is None:
        return None
    stats = _read_stats(directory, step)
    config = step.get("config", {})
    features = config.get("features", {})
    norm_map = config.get("norm_map", {})
    mode = norm_map.get(kind, "IDENTITY") if key in features else "IDENTITY"
    prefix = f"{key}."
    mine = {name[len(prefix) :]: value for name, value in stats.items() if name.startswith(prefix)}
    if mode != "IDENTITY" and not mine:
        # LeRobot leaves a feature unnormalised when it has no statistics for it.
        mode = "IDENTITY"
    try:
        return FeatureNorm.from_stats(mode, mine, eps=float(config.get("eps", 1e-8)), size=size)
    except ConfigError as err:
        raise ConfigError(f"{where}: {key}: {err}") from None


def _check_visual_norm(steps: list[dict[str, Any]], where: str) -> None:
    step = _step(steps, "normalizer_processor")
    if step is None:
        return
    mode = step.get("config", {}).get("norm_map", {}).get("VISUAL", "IDENTITY")
    if mode != "IDENTITY":
        raise ConfigError(
            f"{where} normalises images with {mode}; π0 takes images in [-1, 1] (IDENTITY) and "
            "image statistics are not supported"
        )


def _read_lerobot(path: Path, config: dict[str, Any]) -> CheckpointSpec:
    weights = path / WEIGHTS_FILE
    pi0 = lerobot_pi0_config(config, weight_shapes(weights) if weights.is_file() else None)
    inputs = config.get("input_features", {}) or {}
    outputs = config.get("output_features", {}) or {}
    image_keys = [k for k, v in inputs.items() if (v or {}).get("type") == "VISUAL"]
    image_keys += [f"{IMAGE_PREFIX}empty_camera_{i}" for i in range(int(config.get("empty_cameras", 0)))]
    if not image_keys:
        raise ConfigError(f"{path}/config.json names no image input (no VISUAL input_features)")
    state_dim = _feature_size(inputs, STATE_KEY, pi0.max_state_dim)
    action_dim = _feature_size(outputs, ACTION_KEY, pi0.max_action_dim)
    if state_dim > pi0.max_state_dim or action_dim > pi0.max_action_dim:
        raise ConfigError(
            f"{path}: state/action lengths {state_dim}/{action_dim} exceed max_state_dim/max_action_dim "
            f"{pi0.max_state_dim}/{pi0.max_action_dim}"
        )
    pre_steps = _processor_steps(path / PREPROCESSOR_FILE)
    post_steps = _processor_steps(path / POSTPROCESSOR_FILE)
    _check_visual_norm(pre_steps, PREPROCESSOR_FILE)
    tokenizer_step = _step(pre_steps, "tokenizer_processor") or {}
    tokenizer_config = tokenizer_step.get("config", {})
    if tokenizer_config.get("padding_side", "right") != "right":
        raise ConfigError(f"{PREPROCESSOR_FILE}: only right-padded prompts are supported")
    prompt_tokens = int(
        tokenizer_config.get("max_length", config.get("tokenizer_max_length", DEFAULT_PROMPT_TOKENS))
    )
    relative = _step(pre_steps, "relative_actions_processor") or {}
    if relative.get("config", {}).get("enabled"):
        raise ConfigError(
            f"{PREPROCESSOR_FILE}: the checkpoint predicts actions relative to the state "
            "(relative_actions_processor); sop_ros runs absolute-action checkpoints only"
        )
    rename = (_step(pre_steps, "rename_observations_processor") or {}).get("config", {}).get("rename_map")
    if rename:
        raise ConfigError(
            f"{PREPROCESSOR_FILE} renames observations ({rename}); map the cameras with camera_keys instead"
        )
    state_norm = _feature_norm(
        path, _step(pre_steps, "normalizer_processor"), STATE_KEY, "STATE", state_dim, PREPROCESSOR_FILE
    )
    action_norm = _feature_norm(
        path,
        _step(post_steps, "unnormalizer_processor"),
        ACTION_KEY,
        "ACTION",
        action_dim,
        POSTPROCESSOR_FILE,
    )
    sources = tuple(
        name for name in ("config.json", PREPROCESSOR_FILE, POSTPROCESSOR_FILE) if (path / name).is_file()
    )
    return CheckpointSpec(
        path=path,
        format=LEROBOT_FORMAT,
        pi0=pi0,
        image_keys=tuple(image_keys),
        state_dim=state_dim,
        action_dim=action_dim,
        prompt_tokens=prompt_tokens,
        tokenizer_name=str(tokenizer_config.get("tokenizer_name", PALIGEMMA_TOKENIZER)),
        state_norm=state_norm,
        action_norm=action_norm,
        sources=sources,
    )


def read_checkpoint(path: str | Path) -> CheckpointSpec:
    """Describe the π0 checkpoint in directory ``path`` (LeRobot's or ``transformers``' layout).

    A ``transformers`` directory may carry LeRobot's processor files too (``sop
    checkpoint export`` writes them); without them it has no normalisation
    statistics and does not fix its image slots or vector lengths.

    Raises:
        ConfigError: the directory is not a π0 checkpoint, or a part of it cannot be used.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{path} has no config.json; it is not a checkpoint directory")
    config = _read_json(config_file)
    if config.get("type") == "pi0":
        return _read_lerobot(path, config)
    if config.get("model_type") != "pi0":
        found = config.get("type") or config.get("model_type") or "no type"
        raise ConfigError(f"{config_file} describes {found!r}, not a π0 policy")
    pi0 = PI0Config.from_pretrained(path, local_files_only=True)
    # sop's export puts LeRobot's description beside the transformers config.
    lerobot_file = path / "lerobot_config.json"
    if lerobot_file.is_file():
        spec = _read_lerobot(path, _read_json(lerobot_file))
        return dataclasses.replace(spec, format=TRANSFORMERS_FORMAT, pi0=pi0)
    return CheckpointSpec(
        path=path,
        format=TRANSFORMERS_FORMAT,
        pi0=pi0,
        image_keys=(),
        state_dim=0,
        action_dim=0,
        prompt_tokens=DEFAULT_PROMPT_TOKENS,
        tokenizer_name=PALIGEMMA_TOKENIZER,
        state_norm=None,
        action_norm=None,
        sources=("config.json",),
    )
