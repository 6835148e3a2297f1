"""Train a policy from a directory of bags alone: the offline half of SOP.

This is how a user makes the base policy (from demonstrations) or fine-tunes
one on recorded fleet data: the bags — written by the recorder node, or any
rosbag2 MCAP bags with the configured topics — are loaded into offline
buffers and trained with the same learner loop as online SOP, publishing
nothing. Runs on the calling thread.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from sop_ros.core.policy import PolicyConfig, make_policy
from sop_ros.learner.algorithms import policy_config_for
from sop_ros.learner.builder import LearnerSettings, build_learner
from sop_ros.learner.loop import LearnerConfig

__all__ = ["offline_settings", "train_offline"]

_log = logging.getLogger(__name__)


def train_offline(
    bags_dir: Path,
    policy_config: PolicyConfig,
    out_path: Path,
    *,
    steps: int,
    batch_size: int = 32,
    algorithm: str = "hg_dagger",
    initial_weights: Path | None = None,
    progress_bar: bool = True,
) -> Path:
    """Train ``policy_config``'s policy on every bag under ``bags_dir``; save the trainable weights.

    Args:
        bags_dir: Directory searched recursively for bag directories.
        policy_config: The policy to train (robots must run the same config; the algorithm sets
            its advantage indicator, see ``policy_config_for``).
        out_path: Where the trainable weights (with normalisation) are written.
        steps: Training steps.
        batch_size: Samples per step.
        algorithm: Post-training algorithm deciding which steps are imitated.
        initial_weights: Weights to fine-tune instead of the base model's.
        progress_bar: Show a progress bar.

    Returns:
        ``out_path``.

    Raises:
        ConfigError: ``bags_dir`` holds no loadable bag, or a setting is wrong.
    """
    policy = make_policy(policy_config_for(algorithm, policy_config))
    if initial_weights is not None:
        policy.load_trainable(initial_weights)
    with tempfile.TemporaryDirectory(prefix="sop-offline-") as scratch:
        settings = offline_settings(
            bags_dir,
            Path(scratch),
            batch_size=batch_size,
            algorithm=algorithm,
            fit_norm_stats=initial_weights is None,
            progress_bar=progress_bar,
        )
        learner = build_learner(settings, policy, publish=lambda path, manifest: None)
        try:
            learner.start()
            _log.info("training offline on %s for %d steps", bags_dir, steps)
            learner.run(steps)
        finally:
            learner.close()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    policy.save_trainable(out_path, version="v0000")
    return out_path


def offline_settings(
    bags_dir: Path, scratch: Path, *, batch_size: int, algorithm: str = "hg_dagger", **loop: Any
) -> LearnerSettings:
    """Learner settings for training on the bags under ``bags_dir`` alone.

    Nothing is published or checkpointed; the learner's store and checkpoint
    directories go under ``scratch``. ``loop`` sets further :class:`LearnerConfig`
    fields (``progress_bar`` is off unless given).
    """
    return LearnerSettings(
        algorithm=algorithm,
        offline_dir=str(bags_dir),
        store_dir=str(scratch / "store"),
        checkpoint_dir=str(scratch / "checkpoints"),
        log_dir="",
        loop=LearnerConfig(
            batch_size=batch_size,
            publish_every_steps=10**9,
            checkpoint_every_steps=10**9,
            load_in_background=False,
            **{"progress_bar": False, **loop},
        ),
    )
