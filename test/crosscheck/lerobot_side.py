"""The LeRobot half of the π0 cross-check; runs in the LeRobot venv (Python 3.12, lerobot 0.6.1).

LeRobot's own code builds, saves, loads and runs π0 here; sop_ros never
imports this file. Sizes are shrunk for a CPU: LeRobot's π0 only knows the
real Gemma 2B / 300M variants and the 400M SigLIP, so ``get_gemma_config`` and
the PaliGemma config factory it calls are replaced by small ones before any
model is built (what LeRobot fixes itself stays: 2048-wide language model,
8 attention heads, PaliGemma's 257,152-token vocabulary). Everything else is
LeRobot's unchanged code: preprocessing, tokenisation, normalisation,
``predict_action_chunk``, ``select_action``, ``save_pretrained`` /
``from_pretrained`` and the processor pipelines.

PaliGemma's tokenizer cannot be downloaded here, so a tiny one in its format
(``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, ``▁`` word marks, a
``"\\n"`` token, ``<bos>`` prepended) is trained with ``tokenizers`` and laid
into an offline Hugging Face cache under the name LeRobot asks for
(``google/paligemma-3b-pt-224``), so LeRobot's ``AutoTokenizer`` call finds it.

Usage::

    python lerobot_side.py make WORK     # tokenizer, checkpoint, observation, noise, LeRobot's outputs
    python lerobot_side.py run CKPT WORK OUT.npz   # load CKPT with LeRobot, predict on WORK's observation
    python lerobot_side.py pi0-base DIR  # lerobot/pi0_base's config.json and parameter count (meta)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ID = "google/paligemma-3b-pt-224"
IMAGE_KEYS = (
    "observation.images.base_0_rgb",
    "observation.images.left_wrist_0_rgb",
    "observation.images.right_wrist_0_rgb",
)
STATE_DIM, ACTION_DIM, CHUNK, STEPS, SIDE = 6, 5, 8, 3, 112
INSTRUCTION = "Pick up the Red cube and put it in the Bowl"


def _offline_cache(work: Path) -> None:
    os.environ["HF_HOME"] = str(work / "hf_home")
    os.environ["HF_HUB_OFFLINE"] = "1"


def _shrink_lerobot() -> None:
    from lerobot.policies.pi0 import modeling_pi0
    from transformers import PaliGemmaConfig

    def gemma(variant: str) -> modeling_pi0.GemmaConfig:
        width = 2048 if variant == "gemma_2b" else 64  # the projector writes 2048 wide
        return modeling_pi0.GemmaConfig(
            width=width, depth=2, mlp_dim=128, num_heads=8, num_kv_heads=1, head_dim=16
        )

    class Mapping(dict):
        def __getitem__(self, key: str):
            if key == "paligemma":
                return lambda **kw: PaliGemmaConfig(
                    vision_config=dict(
                        model_type="siglip_vision_model",
                        hidden_size=144,
                        num_hidden_layers=1,
                        num_attention_heads=2,
                        patch_size=14,
                        vision_use_head=False,
                    ),
                    **kw,
                )
            return modeling_pi0.__dict__["_CONFIG_MAPPING"][key]

    modeling_pi0.get_gemma_config = gemma
    if "_CONFIG_MAPPING" not in modeling_pi0.__dict__:
        modeling_pi0._CONFIG_MAPPING = modeling_pi0.CONFIG_MAPPING
    modeling_pi0.CONFIG_MAPPING = Mapping()


def _train_tokenizer(work: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<eos>", "<bos>", "<unk>", "\n"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split("\n", behavior="isolated")
    backend.decoder = decoders.Replace("▁", " ")
    corpus = [
        "Pick up the red cube and put it in the bowl",
        "pick the Red cube", "open the drawer", "put the Bowl on the shelf", "Push the button",
        "stack the blocks", "close the door\n", "wipe the table", "Pick up the Red cube\n",
    ] * 20  # fmt: skip
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special, show_progress=False)
    backend.train_from_iterator(corpus, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", backend.token_to_id("<bos>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="right",
    )
    directory = work / "paligemma_tokenizer"
    tokenizer.save_pretrained(directory)
    # The same files under the hub name, in an offline cache, for LeRobot's AutoTokenizer call.
    snapshot = work / "hf_home" / "hub" / f"models--{REPO_ID.replace('/', '--')}"
    (snapshot / "refs").mkdir(parents=True, exist_ok=True)
    (snapshot / "refs" / "main").write_text("0" * 40)
    files = snapshot / "snapshots" / ("0" * 40)
    files.mkdir(parents=True, exist_ok=True)
    for item in directory.iterdir():
        (files / item.name).write_bytes(item.read_bytes())
    # The hub repository is a PaliGemma model; AutoTokenizer reads its config.json first.
    (files / "config.json").write_text(json.dumps({"model_type": "paligemma"}))
    return directory


def _observation(work: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    observation = {
        # A 4:3 camera (resized with padding), a square one of the model's size; the third is absent.
        "base_0_rgb": rng.integers(0, 256, (96, 128, 3), dtype=np.uint8),
        "left_wrist_0_rgb": rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8),
        "state": rng.normal(size=STATE_DIM).astype(np.float32) * 0.5 + 0.2,
    }
    np.savez(work / "observation.npz", **observation)
    (work / "instruction.txt").write_text(INSTRUCTION)
    return observation


def _lerobot_batch(observation: dict[str, np.ndarray]) -> dict:
    batch = {
        "observation.state": torch.from_numpy(observation["state"]),
        "task": INSTRUCTION,
    }
    for name in ("base_0_rgb", "left_wrist_0_rgb"):
        # LeRobot's robots hand images on as float CHW in [0, 1].
        batch[f"observation.images.{name}"] = torch.from_numpy(observation[name]).permute(2, 0, 1) / 255.0
    return batch


def _predict(policy, preprocessor, postprocessor, observation, noise) -> dict[str, np.ndarray]:
    processed = preprocessor(_lerobot_batch(observation))
    normalised = policy.predict_action_chunk(processed, noise=noise)
    chunk = postprocessor(normalised)
    images, masks = policy._preprocess_images(processed)
    # select_action draws its own noise: seed it and draw the same tensor for sop_ros.
    policy.reset()
    from lerobot.policies.common.flow_matching import sample_noise

    torch.manual_seed(11)
    select_noise = sample_noise((1, CHUNK, 32), torch.device("cpu"))
    torch.manual_seed(11)
    first = postprocessor(policy.select_action(processed))
    return {
        "chunk": chunk.numpy(),
        "normalised_chunk": normalised.numpy(),
        "tokens": processed["observation.language.tokens"].numpy(),
        "token_mask": processed["observation.language.attention_mask"].numpy(),
        "state_normalised": processed["observation.state"].numpy(),
        "images": torch.stack(images, 1).numpy(),
        "image_masks": torch.stack(masks, 1).numpy(),
        "select_noise": select_noise.numpy(),
        "select_action": first.numpy(),
    }


def _load(ckpt: Path):
    from lerobot.policies.pi0 import PI0Policy
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    policy = PI0Policy.from_pretrained(str(ckpt), local_files_only=True).eval()
    pre = PolicyProcessorPipeline.from_pretrained(str(ckpt), config_filename="policy_preprocessor.json")
    post = PolicyProcessorPipeline.from_pretrained(
        str(ckpt),
        config_filename="policy_postprocessor.json",
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    return policy, pre, post


def make(work: Path) -> None:
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.policies.pi0 import PI0Config, PI0Policy, make_pi0_pre_post_processors

    work.mkdir(parents=True, exist_ok=True)
    _train_tokenizer(work)
    config = PI0Config(
        input_features={
            **{key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, SIDE, SIDE)) for key in IMAGE_KEYS},
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
        chunk_size=CHUNK,
        n_action_steps=CHUNK,
        num_inference_steps=STEPS,
        image_resolution=(SIDE, SIDE),
        dtype="float32",
        device="cpu",
        normalization_mapping={
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MIN_MAX,
        },
    )
    torch.manual_seed(0)
    policy = PI0Policy(config).eval()
    print("LeRobot π0 built:", sum(p.numel() for p in policy.parameters()), "parameters", flush=True)
    rng = np.random.default_rng(1)
    stats = {
        "observation.state": {
            "mean": rng.normal(size=STATE_DIM).astype(np.float32),
            "std": rng.uniform(0.2, 2.0, STATE_DIM).astype(np.float32),
        },
        "action": {
            "min": -rng.uniform(0.5, 2.0, ACTION_DIM).astype(np.float32),
            "max": rng.uniform(0.5, 3.0, ACTION_DIM).astype(np.float32),
        },
    }
    pre, post = make_pi0_pre_post_processors(config, dataset_stats=stats)
    ckpt = work / "lerobot_pi0"
    policy.save_pretrained(ckpt)
    pre.save_pretrained(ckpt)
    post.save_pretrained(ckpt)
    observation = _observation(work)
    noise = torch.randn(1, CHUNK, 32, generator=torch.Generator().manual_seed(5))
    np.save(work / "noise.npy", noise.numpy())
    # What LeRobot gives from the saved files (a fresh load, as a user would).
    policy, pre, post = _load(ckpt)
    np.savez(work / "lerobot_outputs.npz", **_predict(policy, pre, post, observation, noise))
    keys = {name: list(t.shape) for name, t in policy.state_dict().items()}
    (work / "lerobot_state_dict_keys.json").write_text(json.dumps(keys, indent=1))


def pi0_base(out: Path) -> None:
    """lerobot/pi0_base's config.json as LeRobot writes it, and its parameter count (meta device)."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.pi0 import PI0Config, PI0Policy

    cameras = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    config = PI0Config(
        input_features={
            **{
                f"observation.images.{name}": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 224, 224))
                for name in cameras
            },
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(32,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(32,))},
        device="cpu",
    )
    out.mkdir(parents=True, exist_ok=True)
    config._save_pretrained(out)
    config.device = "meta"  # no memory: LeRobot moves the model to config.device
    with torch.device("meta"):
        policy = PI0Policy(config)
    counts: dict[str, int] = {}
    for name, param in policy.named_parameters():
        part = ".".join(name.split(".")[:4])
        counts[part] = counts.get(part, 0) + param.numel()
    counts["total"] = sum(p.numel() for p in policy.parameters())
    (out / "lerobot_parameter_counts.json").write_text(json.dumps(counts, indent=1))


def run(ckpt: Path, work: Path, out: Path) -> None:
    observation = dict(np.load(work / "observation.npz"))
    noise = torch.from_numpy(np.load(work / "noise.npy"))
    policy, pre, post = _load(ckpt)
    np.savez(out, **_predict(policy, pre, post, observation, noise))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    if sys.argv[1] == "pi0-base":  # the real sizes: nothing shrunk
        pi0_base(Path(sys.argv[2]))
        sys.exit(0)
    # Before any Hugging Face import: the hub library reads these once, when first imported.
    _offline_cache(Path(sys.argv[2] if sys.argv[1] == "make" else sys.argv[3]))
    _shrink_lerobot()
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    else:
        run(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
