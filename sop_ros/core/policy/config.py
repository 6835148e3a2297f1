"""Configuration of the π0 policy and the model presets it builds.

``PolicyConfig.model`` picks the network: ``tiny`` (a small random π0 that
learns simple visuomotor tasks on a CPU in minutes), ``full`` (the real π0
sizes, PaliGemma 3B + 300M action expert, random init, for GPU work), or the
path of a local checkpoint directory: LeRobot's π0 layout (``lerobot/pi0_base``
and its fine-tunes) or one ``transformers`` saved. A checkpoint reads prompts
with PaliGemma's tokenizer, taken from the directory or from the
``tokenizer`` setting; the built-in vocabulary serves the random presets only.

Pure functions and immutable values; safe from any thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import safe_open
from transformers import (
    AutoTokenizer,
    PI0Config,
    PI0ForConditionalGeneration,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
)

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError
from sop_ros.core.policy.checkpoint import CheckpointSpec, read_checkpoint
from sop_ros.core.policy.tokenizer import BOS_TOKEN, PAD_TOKEN, build_tokenizer
from sop_ros.core.weights import sha256_bytes

__all__ = [
    "FULL",
    "PRESETS",
    "TINY",
    "PolicyConfig",
    "build_network",
    "checkpoint_dir",
    "load_tokenizer",
    "model_config_hash",
    "pi0_config",
    "resolve_device",
    "resolve_dtype",
    "split_names",
    "sub_config",
    "tokenizer_digest",
]

TINY = "tiny"
FULL = "full"
PRESETS = (TINY, FULL)

# π0's state and action vectors are zero-padded to these sizes.
PI0_MAX_DIM = 32

_JOINTS = (*(f"joint_{i}" for i in range(1, 8)), "gripper")

# Settings that only a checkpoint reads; repr shows them only when set, so records of
# preset configs written before they existed (the demo's packaged base) still match.
_CHECKPOINT_SETTINGS = ("tokenizer", "camera_keys", "state_layout", "action_layout")


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """What the policy network is and how it reads observations and writes actions."""

    model: str = setting(
        TINY,
        "'tiny', 'full' (real π0 sizes, random init) or the path of a local π0 checkpoint",
        read_only=True,
    )
    tokenizer: str = setting(
        "",
        "directory of PaliGemma's tokenizer (tokenizer.json) for a checkpoint without one; "
        "'' = the checkpoint's own",
        read_only=True,
    )
    camera_keys: str = setting(
        "",
        "checkpoint image key of each camera in camera_names, comma-separated "
        "(e.g. observation.images.base_0_rgb); '' = observation.images.<camera>; keys left "
        "without a camera are masked",
        read_only=True,
    )
    state_layout: str = setting(
        "",
        "state_names in the order of the checkpoint's state vector, comma-separated; '' = as in state_names",
        read_only=True,
    )
    action_layout: str = setting(
        "",
        "action_names in the order of the checkpoint's action vector, comma-separated; "
        "'' = as in action_names",
        read_only=True,
    )
    camera_names: tuple[str, ...] = setting(("front",), "cameras the policy sees, in prompt order (1 to 3)")
    image_size_px: int = setting(
        0,
        "side of the square images fed to the vision tower; 0 = the model's own",
        unit="px",
        low=0,
        high=1024,
    )
    horizon: int = setting(50, "actions per chunk", low=1, high=256)
    action_names: tuple[str, ...] = setting(_JOINTS, "name of each action dimension, in order")
    state_names: tuple[str, ...] = setting(_JOINTS, "name of each state dimension, in order")
    denoising_steps: int = setting(10, "flow-matching integration steps per chunk", low=1, high=100)
    control_period_s: float = setting(0.02, "time between consecutive actions of a chunk", unit="s", low=1e-4)
    max_prompt_tokens: int = setting(
        32,
        "text tokens after the image tokens for the presets (prompts are padded to this); a "
        "checkpoint keeps its own length (48 with <bos> for LeRobot's π0)",
        low=4,
    )
    inference_advantage: str = setting(
        "none",
        "advantage indicator put in the prompt at inference: 'positive' for a policy RECAP trains, "
        "'none' for others; part of the config hash, so weights trained the other way are refused",
        choices=("none", "positive", "negative"),
    )
    device: str = setting("auto", "where the model runs", choices=("auto", "cpu", "cuda"))
    dtype: str = setting(
        "auto",
        "weights dtype; auto = float32 on CPU, bfloat16 on GPU",
        choices=("auto", "float32", "bfloat16"),
    )
    compile_mode: str = setting(
        "none",
        "optimised inference on CUDA: 'cuda-graph' replays one captured graph, the others are "
        "torch.compile modes ('reduce-overhead' adds CUDA graphs); eager on CPU",
        choices=("none", "cuda-graph", "default", "reduce-overhead", "max-autotune"),
    )
    attention: str = setting(
        "auto",
        "fused attention kernel tried first on CUDA (auto = PyTorch's choice per call; the others "
        "stay behind it, so a call the chosen one cannot run still runs)",
        choices=("auto", "cudnn", "flash", "efficient", "math"),
    )
    seed: int = setting(0, "seed of the random initialisation and of the sampling noise", low=0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if not 1 <= len(self.camera_names) <= 3:
            raise ConfigError(f"camera_names must name 1 to 3 cameras, got {list(self.camera_names)}")
        for what, names in (
            ("camera_names", self.camera_names),
            ("action_names", self.action_names),
            ("state_names", self.state_names),
        ):
            if not names or len(set(names)) != len(names):
                raise ConfigError(f"{what} must be non-empty and unique, got {list(names)}")
        if self.model not in PRESETS and not Path(self.model).is_dir():
            raise ConfigError(
                f"model {self.model!r} is neither a preset ({', '.join(PRESETS)}) nor a checkpoint directory"
            )
        if self.model in PRESETS:
            used = [name for name in _CHECKPOINT_SETTINGS if getattr(self, name)]
            if used:
                raise ConfigError(
                    f"{', '.join(used)} apply to a checkpoint directory, not to the {self.model!r} preset"
                )
        for what, layout, names in (
            ("state_layout", self.state_layout, self.state_names),
            ("action_layout", self.action_layout, self.action_names),
        ):
            entries = split_names(layout)
            if entries and sorted(entries) != sorted(names):
                raise ConfigError(
                    f"{what} must list exactly the names of {what.split('_')[0]}_names in the checkpoint's "
                    f"order; got {entries}, names are {list(names)}"
                )
        keys = split_names(self.camera_keys)
        if keys and (len(keys) != len(self.camera_names) or len(set(keys)) != len(keys)):
            raise ConfigError(
                f"camera_keys must name one distinct checkpoint image key per camera in camera_names "
                f"{list(self.camera_names)}; got {keys}"
            )

    def __repr__(self) -> str:
        shown = (
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in _CHECKPOINT_SETTINGS or getattr(self, f.name) != f.default
        )
        return f"PolicyConfig({', '.join(shown)})"

    @property
    def advantage_conditioned(self) -> bool:
        """True when prompts carry RECAP's advantage indicator (the weights must be trained with it)."""
        return self.inference_advantage != "none"

    @property
    def action_dim(self) -> int:
        """Number of action dimensions the robot uses."""
        return len(self.action_names)

    @property
    def state_dim(self) -> int:
        """Number of state dimensions the robot reports."""
        return len(self.state_names)


def split_names(text: str) -> list[str]:
    """The entries of a comma-separated setting, stripped; [] for ''."""
    return [part.strip() for part in text.split(",") if part.strip()]


def resolve_device(config: PolicyConfig) -> torch.device:
    """Return the torch device ``config.device`` means on this machine."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; use 'auto' or 'cpu'")
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def resolve_dtype(config: PolicyConfig, device: torch.device) -> torch.dtype:
    """Return the weights dtype: float32 on CPU, bfloat16 on GPU unless set."""
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]


def _preset_config(
    preset: str, *, horizon: int, image_size_px: int, vocab_size: int, image_token_id: int
) -> PI0Config:
    if preset == TINY:
        # The action expert attends to the VLM's per-layer KV cache, so its layer
        # count, KV heads and head_dim must equal the text model's.
        text = dict(
            hidden_size=128, num_hidden_layers=2, intermediate_size=512, num_attention_heads=2,
            num_key_value_heads=1, head_dim=64,
        )  # fmt: skip
        vision = dict(
            hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
            patch_size=8, image_size=image_size_px or 64,
        )  # fmt: skip
        expert = dict(text)
        projection_dim = 128
    else:
        text = dict(
            hidden_size=2048, num_hidden_layers=18, intermediate_size=16384, num_attention_heads=8,
            num_key_value_heads=1, head_dim=256,
        )  # fmt: skip
        vision = dict(
            hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
            patch_size=14, image_size=image_size_px or 224,
        )  # fmt: skip
        expert = dict(
            hidden_size=1024, num_hidden_layers=18, intermediate_size=4096, num_attention_heads=8,
            num_key_value_heads=1, head_dim=256,
        )  # fmt: skip
        projection_dim = 2048
    if vision["image_size"] % vision["patch_size"]:
        raise ConfigError(
            f"image_size_px {vision['image_size']} is not a multiple of the patch size {vision['patch_size']}"
        )
    return PI0Config(
        vlm_config=dict(
            model_type="paligemma",
            text_config=dict(model_type="gemma", vocab_size=vocab_size, **text),
            vision_config=dict(model_type="siglip_vision_model", vision_use_head=False, **vision),
            projection_dim=projection_dim,
            image_token_id=image_token_id,
        ),
        dit_config=dict(model_type="gemma", **expert),
        chunk_size=horizon,
        max_state_dim=PI0_MAX_DIM,
        max_action_dim=PI0_MAX_DIM,
    )


def pi0_config(config: PolicyConfig, *, vocab_size: int, image_token_id: int) -> PI0Config:
    """Return the transformers config for ``config.model`` (a preset or a checkpoint directory).

    Raises:
        ConfigError: the checkpoint cannot hold the configured state, actions or image size.
    """
    if config.model in PRESETS:
        # The full preset keeps PaliGemma's vocabulary size so its parameter count is the real one.
        vocab = vocab_size if config.model == TINY else max(vocab_size, 257152)
        pi0 = _preset_config(
            config.model,
            horizon=config.horizon,
            image_size_px=config.image_size_px,
            vocab_size=-(-vocab // 64) * 64,
            image_token_id=image_token_id,
        )
    else:
        pi0 = PI0Config.from_dict(read_checkpoint(config.model).pi0.to_dict())
        if config.horizon != pi0.chunk_size:
            raise ConfigError(
                f"horizon {config.horizon} differs from the checkpoint's chunk size {pi0.chunk_size}; "
                f"the action tokens attend to each other, so set horizon: {pi0.chunk_size}"
            )
        vocabulary = sub_config(sub_config(pi0, "vlm_config"), "text_config").vocab_size
        if vocab_size > vocabulary:
            raise ConfigError(
                f"the tokenizer has {vocab_size} tokens, more than the checkpoint's vocabulary "
                f"{vocabulary}; it is not this checkpoint's tokenizer"
            )
        native = sub_config(sub_config(pi0, "vlm_config"), "vision_config").image_size
        if config.image_size_px not in (0, native):
            raise ConfigError(
                f"checkpoint {config.model} takes {native} px images, not {config.image_size_px}"
            )
    for what, have, room in (
        ("state_names", config.state_dim, pi0.max_state_dim),
        ("action_names", config.action_dim, pi0.max_action_dim),
    ):
        if have > room:
            raise ConfigError(f"{what} has {have} entries but the model takes at most {room}")
    text, expert = sub_config(sub_config(pi0, "vlm_config"), "text_config"), sub_config(pi0, "dit_config")
    for key in ("num_hidden_layers", "num_key_value_heads", "head_dim"):
        if getattr(text, key) != getattr(expert, key):
            raise ConfigError(
                f"action expert {key}={getattr(expert, key)} differs from the language model's "
                f"{getattr(text, key)}; the expert reads the language model's KV cache"
            )
    return pi0


# Keys that describe how a config was saved or run, not what the network is.
_VOLATILE_KEYS = frozenset(
    {
        "transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype",
        "_attn_implementation", "_attn_implementation_autoset", "attn_implementation",
        "output_attentions", "output_hidden_states", "return_dict", "use_cache",
    }
)  # fmt: skip


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in sorted(value.items()) if k not in _VOLATILE_KEYS}
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    return value


def model_config_hash(pi0: PI0Config, **layout: Any) -> str:
    """Return the sha256 of the network's config plus the input/output ``layout`` facts.

    Two policies with equal hashes accept each other's trainable weights.
    """
    document = {"pi0": _stable(pi0.to_dict()), **{k: _stable(v) for k, v in sorted(layout.items())}}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def sub_config(config: PreTrainedConfig, name: str) -> PreTrainedConfig:
    """A nested config of ``config`` (``vlm_config``, ``text_config``, ...), as transformers built it.

    Raises:
        ConfigError: ``config`` holds no built config under ``name``.
    """
    value = getattr(config, name, None)
    if not isinstance(value, PreTrainedConfig):
        raise ConfigError(f"{type(config).__name__}.{name} is {type(value).__name__}, not a model config")
    return value


def checkpoint_dir(config: PolicyConfig) -> Path | None:
    """The checkpoint directory ``config.model`` names, or None for a preset."""
    return None if config.model in PRESETS else Path(config.model)


def _missing_tokenizer(config: PolicyConfig, spec: CheckpointSpec) -> ConfigError:
    return ConfigError(
        f"checkpoint {spec.path} has no tokenizer (no tokenizer.json) and the policy setting "
        f"'tokenizer' is empty. π0 reads prompts with PaliGemma's tokenizer; without it the "
        f"language model would get meaningless token ids, so the checkpoint is not run. Download "
        f"{spec.tokenizer_name} once (a gated repository: accept its licence on the Hugging Face Hub), "
        f"e.g. `hf download {spec.tokenizer_name} tokenizer.json tokenizer_config.json "
        f"special_tokens_map.json --local-dir ~/models/paligemma-tokenizer`, then set "
        f"tokenizer: ~/models/paligemma-tokenizer (policy.tokenizer on a robot), or copy those files "
        f"into {spec.path}. The built-in vocabulary serves only the random 'tiny' and 'full' presets."
    )


def _tokenizer_dir(config: PolicyConfig, spec: CheckpointSpec) -> Path:
    if config.tokenizer:
        path = Path(config.tokenizer).expanduser()
        if not (path / "tokenizer.json").is_file():
            raise ConfigError(
                f"tokenizer {path} has no tokenizer.json; point the setting at the directory holding "
                f"{spec.tokenizer_name}'s tokenizer.json (and tokenizer_config.json)"
            )
        return path
    if (spec.path / "tokenizer.json").is_file():
        return spec.path
    raise _missing_tokenizer(config, spec)


def _pretrained_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    if (path / "tokenizer_config.json").is_file():
        try:
            loaded = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load the tokenizer in {path}: {err}") from None
        if not isinstance(loaded, PreTrainedTokenizerFast):
            raise ConfigError(f"the tokenizer in {path} is {type(loaded).__name__}, not a tokenizer.json one")
        tokenizer = loaded
    else:
        # tokenizer.json alone (no tokenizer_config.json): PaliGemma's special tokens by name.
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))  # type: ignore[no-untyped-call]
        vocab = tokenizer.get_vocab()
        lacking = [token for token in (BOS_TOKEN, PAD_TOKEN) if token not in vocab]
        if lacking:
            raise ConfigError(
                f"{path}/tokenizer.json has no {' or '.join(lacking)} token and there is no "
                f"tokenizer_config.json naming the special tokens; it is not PaliGemma's tokenizer"
            )
        tokenizer.bos_token, tokenizer.pad_token = BOS_TOKEN, PAD_TOKEN
    if tokenizer.bos_token_id is None or tokenizer.pad_token_id is None:
        raise ConfigError(f"the tokenizer in {path} defines no <bos> or <pad> token; π0's prompts need both")
    return tokenizer


def load_tokenizer(config: PolicyConfig, spec: CheckpointSpec | None = None) -> PreTrainedTokenizerFast:
    """The built-in tokenizer for a preset; the checkpoint's PaliGemma tokenizer otherwise.

    Args:
        config: The policy settings.
        spec: The checkpoint's description (read from ``config.model`` when omitted).

    Raises:
        ConfigError: a checkpoint has no usable tokenizer (the message says what to download
            and where to put it).
    """
    if checkpoint_dir(config) is None:
        return build_tokenizer()
    spec = spec or read_checkpoint(config.model)
    return _pretrained_tokenizer(_tokenizer_dir(config, spec))


def tokenizer_digest(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 of a tokenizer's vocabulary and special tokens (what decides its ids)."""
    document = {
        "vocab": sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]),
        "special": sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items()),
    }
    return sha256_bytes(json.dumps(document, ensure_ascii=False).encode())


_LEROBOT_EMBEDDING = "model.paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"


def _prefer_embedding(model: PI0ForConditionalGeneration, checkpoint: Path) -> None:
    """Use LeRobot's token embedding over its ``lm_head`` when a file holds both.

    ``transformers`` fills the embedding from either name (the hub files keep only the
    tied ``lm_head``); a file saved untied has both, and π0 embeds prompts with the first.
    """
    weights = checkpoint / "model.safetensors"
    if not weights.is_file():
        return
    with safe_open(str(weights), framework="pt") as handle:
        if _LEROBOT_EMBEDDING not in handle.keys():  # noqa: SIM118
            return
        embedding = handle.get_tensor(_LEROBOT_EMBEDDING)
    embeddings = model.get_input_embeddings()
    if not isinstance(embeddings, torch.nn.Embedding):
        raise ConfigError(f"π0 embeds tokens with {type(embeddings).__name__}, not an embedding table")
    with torch.no_grad():
        embeddings.weight.copy_(embedding)


# A preset's random weights come from torch's global generator, which every thread of the process
# shares. Its frozen language model is never stored with trained weights: every policy draws it
# again, so a draw disturbed by another thread (a learner sampling noise while an evaluation builds
# its policy) gives a network no weights file fits, which then fails every episode. Builds draw
# under this lock, and so does the policy's training (Pi0Policy.loss).
RANDOM_LOCK = threading.RLock()


def build_network(config: PolicyConfig, pi0: PI0Config) -> PI0ForConditionalGeneration:
    """Load the checkpoint, or draw a preset's weights from ``config.seed``.

    Random weights are drawn on the CPU in float32 so every machine gets the
    same frozen language model; the global RNG state is left as it was, and
    the draw holds :data:`RANDOM_LOCK`.
    """
    checkpoint = checkpoint_dir(config)
    if checkpoint is not None:
        # With output_loading_info, from_pretrained returns the model and what it could not fill.
        model, info = cast(
            "tuple[PI0ForConditionalGeneration, dict[str, list[Any]]]",
            PI0ForConditionalGeneration.from_pretrained(
                checkpoint, config=pi0, local_files_only=True, output_loading_info=True, dtype=torch.float32
            ),
        )
        missing = sorted(info.get("missing_keys") or [])
        mismatched = sorted(
            str(item[0] if isinstance(item, tuple) else item) for item in info.get("mismatched_keys") or []
        )
        if missing or mismatched:
            raise ConfigError(
                f"checkpoint {checkpoint} does not hold the π0 it describes: {len(missing)} tensors missing "
                f"(e.g. {missing[:3]}), {len(mismatched)} of other shapes (e.g. {mismatched[:3]}); it is not "
                "run with random parts"
            )
        _prefer_embedding(model, checkpoint)
        return model
    with RANDOM_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return PI0ForConditionalGeneration(pi0)
