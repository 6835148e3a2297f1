"""Learner settings shared by the learner benchmarks: offline demonstrations only, nothing kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sop_ros.learner.builder import LearnerSettings
from sop_ros.learner.loop import LearnerConfig


def offline_settings(demos: Path, work: Path, *, batch: int, **loop: Any) -> LearnerSettings:
    """Settings for a learner that trains on the bags under ``demos``, publishing and checkpointing nothing.

    ``loop`` overrides further :class:`LearnerConfig` fields (``decode_workers``, ...).
    """
    return LearnerSettings(
        offline_dir=str(demos),
        store_dir=str(work / "store"),
        checkpoint_dir=str(work / "learner"),
        log_dir="",
        loop=LearnerConfig(
            batch_size=batch,
            publish_every_steps=10**9,
            checkpoint_every_steps=10**9,
            load_in_background=False,
            progress_bar=False,
            **loop,
        ),
    )
