"""Inspecting π0 checkpoint directories and exporting post-trained policies as checkpoints.

:func:`inspect_checkpoint` says what a directory is and what it expects
(cameras, state and action lengths, tokenizer, normalisation, parameter
counts, what trains and is published) without loading a weight: the network
is built on PyTorch's ``meta`` device and the weights file is read from its
header, so the real π0 sizes are inspected on any machine.

:func:`export_checkpoint` writes a policy (a LeRobot base with post-trained
weights loaded) as a LeRobot π0 checkpoint directory: LeRobot's
``config.json``, ``model.safetensors`` under LeRobot's tensor names and the
processor files, so ``PI0Policy.from_pretrained`` loads it; a
``transformers/`` folder beside them holds the ``PI0Config`` with links to the
same weights, so ``PI0ForConditionalGeneration.from_pretrained`` loads it too.

Functions of their arguments; safe from any thread that owns the policy it passes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file
from transformers import PI0ForConditionalGeneration

from sop_ros.core.errors import ConfigError, WeightsError
from sop_ros.core.policy.checkpoint import (
    LEROBOT_FORMAT,
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    WEIGHTS_FILE,
    CheckpointSpec,
    FeatureNorm,
    read_checkpoint,
    weight_shapes,
)
from sop_ros.core.policy.config import sub_config
from sop_ros.core.weights import sha256_bytes

if TYPE_CHECKING:
    from sop_ros.core.policy.pi0 import Pi0Policy

__all__ = [
    "CheckpointReport",
    "export_checkpoint",
    "format_report",
    "inspect_checkpoint",
    "lerobot_names",
    "report_document",
]

_TRANSFORMERS_DIR = "transformers"
_LEROBOT_TIED_LM_HEAD = "model.paligemma_with_expert.paligemma.lm_head.weight"
# transformers name prefix -> LeRobot name prefix (the inverse of transformers' ``pi0`` mapping).
_PREFIXES = (
    ("model.dit.embed_tokens.", "model.paligemma_with_expert.gemma_expert.lm_head."),
    ("model.vlm.vision_tower.", "model.paligemma_with_expert.paligemma.model.vision_tower.vision_model."),
    ("model.vlm.", "model.paligemma_with_expert.paligemma.model."),
    ("model.dit.", "model.paligemma_with_expert.gemma_expert.model."),
    ("embed_action_time.", "model."),
    ("action_out_proj.", "model.action_out_proj."),
)


def lerobot_names(names: list[str]) -> dict[str, list[str]]:
    """LeRobot's tensor name(s) of each ``transformers`` π0 parameter name.

    The language model's embedding is also LeRobot's (tied) ``lm_head``.

    Raises:
        ConfigError: a name belongs to no part of π0.
    """
    mapping: dict[str, list[str]] = {}
    for name in names:
        target = next((new + name[len(old) :] for old, new in _PREFIXES if name.startswith(old)), None)
        if target is None:
            raise ConfigError(f"parameter {name} has no LeRobot name")
        mapping[name] = [target]
        if name == "model.vlm.language_model.embed_tokens.weight":
            mapping[name].append(_LEROBOT_TIED_LM_HEAD)
    return mapping


@dataclass(frozen=True, kw_only=True)
class CheckpointReport:
    """What ``sop checkpoint inspect`` prints, as data."""

    spec: CheckpointSpec
    # Parameters by part of the network, counted on the meta device.
    parameters: dict[str, int]
    # Parameters sop_ros trains and publishes (all but the language model).
    trainable: int
    published_bytes_bf16: int
    tokenizer: str
    # Tensors the weights file lacks or has with other shapes (empty: it fits).
    weight_problems: tuple[str, ...]
    weights_present: bool


def _parts(name: str) -> str:
    for prefix, part in (
        ("model.vlm.vision_tower.", "vision tower (SigLIP)"),
        ("model.vlm.multi_modal_projector.", "multimodal projector"),
        ("model.vlm.language_model.", "language model (Gemma)"),
        ("model.dit.embed_tokens.", "action expert's unused embedding"),
        ("model.dit.", "action expert (Gemma)"),
    ):
        if name.startswith(prefix):
            return part
    return "state/action/time projections"


def _tokenizer_status(spec: CheckpointSpec, tokenizer: str | None) -> str:
    if tokenizer:
        found = (Path(tokenizer).expanduser() / "tokenizer.json").is_file()
        return f"{tokenizer} ({'tokenizer.json found' if found else 'NO tokenizer.json there'})"
    if (spec.path / "tokenizer.json").is_file():
        return "in the checkpoint (tokenizer.json)"
    return (
        f"MISSING: download {spec.tokenizer_name}'s tokenizer.json and tokenizer_config.json and set the "
        "policy setting 'tokenizer' to their directory (or copy them here)"
    )


def inspect_checkpoint(path: str | Path, *, tokenizer: str | None = None) -> CheckpointReport:
    """Describe a π0 checkpoint directory without loading its weights.

    Args:
        path: The checkpoint directory.
        tokenizer: The ``tokenizer`` setting a policy would get, to report whether it is usable.

    Raises:
        ConfigError: the directory is not a π0 checkpoint.
    """
    from sop_ros.core.policy.pi0 import is_trainable

    spec = read_checkpoint(path)
    with torch.device("meta"):
        model = PI0ForConditionalGeneration(spec.pi0)
    parameters: dict[str, int] = {}
    trainable = 0
    for name, param in model.named_parameters():
        part = _parts(name)
        parameters[part] = parameters.get(part, 0) + param.numel()
        trainable += param.numel() if is_trainable(name) else 0
    problems: list[str] = []
    weights = spec.weights_file
    if weights is not None and spec.format == LEROBOT_FORMAT:
        have = weight_shapes(weights)
        for name, param in model.named_parameters():
            targets = lerobot_names([name])[name]
            if not any(t in have for t in targets):
                problems.append(f"missing {targets[0]}")
            elif have[next(t for t in targets if t in have)] != tuple(param.shape):
                problems.append(f"{targets[0]}: shape differs from {list(param.shape)}")
    return CheckpointReport(
        spec=spec,
        parameters=parameters,
        trainable=trainable,
        published_bytes_bf16=2 * trainable,
        tokenizer=_tokenizer_status(spec, tokenizer),
        weight_problems=tuple(problems),
        weights_present=weights is not None,
    )


def _norm_line(norm: FeatureNorm | None) -> str:
    if norm is None:
        return "none in the checkpoint (sop_ros fits mean/std on the first episodes)"
    head = ", ".join(f"{c:.3g}±{s:.3g}" for c, s in zip(norm.center[:4], norm.scale[:4], strict=False))
    more = ", ..." if len(norm.center) > 4 else ""
    return f"{norm.mode} (center±scale: {head}{more})"


def format_report(report: CheckpointReport) -> str:
    """The report as ``sop checkpoint inspect`` prints it."""
    spec, pi0 = report.spec, report.spec.pi0
    vlm = sub_config(pi0, "vlm_config")
    text, vision = sub_config(vlm, "text_config"), sub_config(vlm, "vision_config")
    expert = sub_config(pi0, "dit_config")
    per_image = (vision.image_size // vision.patch_size) ** 2
    total = sum(report.parameters.values())
    lines = [
        f"checkpoint   {spec.path}  ({spec.format} layout; read {', '.join(spec.sources)})",
        f"network      π0: PaliGemma (SigLIP {vision.hidden_size}x{vision.num_hidden_layers}, Gemma "
        f"{text.hidden_size}x{text.num_hidden_layers}) + action expert (Gemma "
        f"{expert.hidden_size}x{expert.num_hidden_layers})",
        f"parameters   {total:,} in all",
        *(f"  {part:<36}{count:>16,}" for part, count in sorted(report.parameters.items())),
        f"trains       {report.trainable:,} (all but the language model); published per version: "
        f"{report.published_bytes_bf16 / 2**20:,.0f} MiB in bfloat16",
        f"frozen       {total - report.trainable:,} (language model and the expert's unused embedding)",
        "cameras      "
        + (
            ", ".join(spec.image_keys) + f"  ({vision.image_size}x{vision.image_size} px, {per_image} tokens"
            " each, resized with padding; a key without a camera is masked)"
            if spec.image_keys
            else "not described: the policy's camera_names fill the image slots"
        ),
        f"state        {spec.state_dim or 'not described'} values (padded to {pi0.max_state_dim})",
        f"actions      {spec.action_dim or 'not described'} values x {pi0.chunk_size} steps "
        f"(padded to {pi0.max_action_dim}); {pi0.num_inference_steps} denoising steps",
        f"prompt       {spec.prompt_tokens} tokens with <bos>, task + newline, right-padded, case kept",
        f"tokenizer    {report.tokenizer}",
        f"state norm   {_norm_line(spec.state_norm)}",
        f"action norm  {_norm_line(spec.action_norm)}",
    ]
    if not report.weights_present:
        lines.append("weights      no model.safetensors: structure only")
    elif report.weight_problems:
        lines.append(f"weights      {WEIGHTS_FILE} does NOT fit ({len(report.weight_problems)} problems):")
        lines += [f"  {problem}" for problem in report.weight_problems[:10]]
    else:
        lines.append(f"weights      {WEIGHTS_FILE}: every tensor present with the expected shape")
    return "\n".join(lines)


def _lerobot_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = [name for name, _ in model.named_parameters()]
    mapping = lerobot_names(names)
    params = dict(model.named_parameters())
    state: dict[str, torch.Tensor] = {}
    for name, targets in mapping.items():
        tensor = params[name].detach().to("cpu", torch.float32).contiguous()
        for index, target in enumerate(targets):
            # safetensors stores no shared storage: a second name gets its own copy.
            state[target] = tensor.clone() if index else tensor
    return state


def _link(target: Path, link: Path) -> None:
    link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


def export_checkpoint(policy: Pi0Policy, out: str | Path, *, version: str, weights_file: str = "") -> Path:
    """Write ``policy`` (a LeRobot checkpoint base with its current weights) as a checkpoint directory.

    Args:
        policy: The policy, post-trained weights loaded.
        out: The directory to write (created; must not hold a checkpoint already).
        version: The weights version it holds (recorded in ``sop_export.json``).
        weights_file: Where the post-trained weights came from (recorded).

    Returns:
        The directory written.

    Raises:
        ConfigError: the policy's base is not a LeRobot π0 checkpoint, or ``out`` holds one already.
        WeightsError: a file cannot be written.
    """
    spec = policy.checkpoint
    if spec is None or not (spec.path / "config.json").is_file() or spec.format != LEROBOT_FORMAT:
        raise ConfigError(
            "export writes LeRobot π0 checkpoints and needs a LeRobot checkpoint as the base "
            f"(policy model {policy.config.model!r} is not one)"
        )
    out = Path(out)
    if (out / "config.json").exists():
        raise ConfigError(f"{out} holds a checkpoint already; not overwriting it")
    hf_dir = out / _TRANSFORMERS_DIR
    try:
        hf_dir.mkdir(parents=True, exist_ok=True)
        save_file(_lerobot_state(policy.model), str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        shutil.copyfile(spec.path / "config.json", out / "config.json")
        processor_files = [PREPROCESSOR_FILE, POSTPROCESSOR_FILE]
        for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
            if (spec.path / name).is_file():
                shutil.copyfile(spec.path / name, out / name)
                for step in json.loads((spec.path / name).read_text()).get("steps", []):
                    if step.get("state_file"):
                        shutil.copyfile(spec.path / step["state_file"], out / step["state_file"])
                        processor_files.append(step["state_file"])
        policy.tokenizer.save_pretrained(out)
        # transformers: its config, and links to the same weights, processors and tokenizer.
        policy.model.config.save_pretrained(hf_dir)
        _link(out / "config.json", hf_dir / "lerobot_config.json")
        for name in (WEIGHTS_FILE, *processor_files, "tokenizer.json", "tokenizer_config.json"):
            if (out / name).is_file():
                _link(out / name, hf_dir / name)
        record = {
            "version": version,
            "weights_file": weights_file,
            "base": str(spec.path),
            "base_model_id": policy.base_model_id,
            "config_hash": policy.config_hash,
            "model_sha256": sha256_bytes((out / WEIGHTS_FILE).read_bytes()),
        }
        (out / "sop_export.json").write_text(json.dumps(record, indent=2) + "\n")
    except OSError as err:
        raise WeightsError(f"cannot write the checkpoint {out}: {err}") from err
    return out


def report_document(report: CheckpointReport) -> dict[str, Any]:
    """The report as JSON-ready data (``sop checkpoint inspect --json``)."""
    spec = report.spec
    return {
        "path": str(spec.path),
        "format": spec.format,
        "parameters": report.parameters,
        "parameters_total": sum(report.parameters.values()),
        "trainable": report.trainable,
        "image_keys": list(spec.image_keys),
        "state_dim": spec.state_dim,
        "action_dim": spec.action_dim,
        "chunk_size": spec.pi0.chunk_size,
        "prompt_tokens": spec.prompt_tokens,
        "tokenizer": report.tokenizer,
        "state_norm": spec.state_norm.mode if spec.state_norm else None,
        "action_norm": spec.action_norm.mode if spec.action_norm else None,
        "weights_present": report.weights_present,
        "weight_problems": list(report.weight_problems),
    }
