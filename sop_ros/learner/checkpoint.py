"""Learner checkpoints: enough to resume training exactly where it stopped.

One directory per checkpoint, ``step-00000100/``, holding the policy's
trainable tensors and normalisation as the policy writes them
(``trainable.safetensors``, the same format robots receive), the algorithm's optimizer state and
anything else it keeps (``training.pt``, loaded with ``weights_only=True``), the
published weights average when the learner keeps one (``average.pt``),
and the learner's counters and sampler states (``learner.json``). A
checkpoint is written to a hidden temporary directory and renamed into place,
so a crash mid-write leaves the previous one intact.

Threads: called from the training thread of rank 0 only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sop_ros.core.errors import ConfigError

__all__ = ["Checkpoint", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_SCHEMA = 1
_PREFIX = "step-"
TRAINABLE_FILE = "trainable.safetensors"
_AVERAGE_FILE = "average.pt"


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """Everything a learner restores."""

    step: int
    version: int
    algorithm: dict[str, Any]
    # One sampler state per rank, in rank order.
    samplers: list[dict[str, Any]]
    # Free-form JSON-serialisable learner facts (e.g. whether norm stats were fitted).
    extra: dict[str, Any]
    # The published weights average, when the learner keeps one (average.pt).
    average: dict[str, torch.Tensor] | None = None
    # Directory it was read from (None before it is written).
    path: Path | None = None

    @property
    def trainable_file(self) -> Path:
        """The policy's weights file inside the checkpoint."""
        if self.path is None:
            raise ConfigError("checkpoint has not been written yet")
        return self.path / TRAINABLE_FILE


def save_checkpoint(
    root: Path, checkpoint: Checkpoint, *, write_trainable: Callable[[Path], None], keep: int = 2
) -> Path:
    """Write ``checkpoint`` under ``root`` atomically and keep only the newest ``keep``.

    Args:
        root: Directory holding the checkpoints.
        checkpoint: Counters and states to save.
        write_trainable: Writes the policy's trainable weights file at the path given.
        keep: Number of checkpoints left on disk.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{checkpoint.step:08d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_trainable(tmp / TRAINABLE_FILE)
    torch.save(checkpoint.algorithm, tmp / "training.pt")
    if checkpoint.average is not None:
        torch.save(checkpoint.average, tmp / _AVERAGE_FILE)
    learner = {
        "schema": CHECKPOINT_SCHEMA,
        "step": checkpoint.step,
        "version": checkpoint.version,
        "samplers": checkpoint.samplers,
        "extra": checkpoint.extra,
    }
    (tmp / "learner.json").write_text(json.dumps(learner))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in _checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint directory under ``root``, or None."""
    found = _checkpoints(root)
    return found[-1] if found else None


def load_checkpoint(path: Path, *, map_location: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`.

    Raises:
        ConfigError: files are missing or of another schema.
    """
    try:
        learner = json.loads((path / "learner.json").read_text())
        if learner.get("schema") != CHECKPOINT_SCHEMA:
            raise ConfigError(
                f"{path}: checkpoint schema {learner.get('schema')!r}, expected {CHECKPOINT_SCHEMA}"
            )
        if not (path / TRAINABLE_FILE).is_file():
            raise ConfigError(f"{path} lacks {TRAINABLE_FILE}")
        algorithm = torch.load(path / "training.pt", map_location=map_location, weights_only=True)
        average_file = path / _AVERAGE_FILE
        average = (
            torch.load(average_file, map_location=map_location, weights_only=True)
            if average_file.is_file()
            else None
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not a readable checkpoint: {err}") from None
    return Checkpoint(
        step=int(learner["step"]),
        version=int(learner["version"]),
        path=path,
        algorithm=algorithm,
        samplers=list(learner["samplers"]),
        extra=dict(learner["extra"]),
        average=average,
    )
