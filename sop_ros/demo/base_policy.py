"""The base policy of the demo: π0 (tiny) trained offline on the expert's demonstration bags.

This is the "replay rosbags for offline training" path: the demonstrations
are bags, loaded into the learner's offline buffers exactly like fleet data,
and trained with the same learner loop (nothing published). The result is
cached under the output directory with the settings that made it, so a second
demo run starts at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from sop_ros.core.policy import Pi0Policy, PolicyConfig
from sop_ros.learner.builder import LearnerSettings, build_learner
from sop_ros.learner.loop import LearnerConfig

__all__ = ["BaseRecipe", "base_policy"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class BaseRecipe:
    """How the base policy is made (part of the cache key)."""

    demos_per_task: int = 20
    train_steps: int = 300
    batch_size: int = 32


def base_policy(out_dir: Path, demos_dir: Path, policy_config: PolicyConfig, recipe: BaseRecipe) -> Path:
    """Return the base weights file, training it from the bags in ``demos_dir`` unless cached.

    Args:
        out_dir: Where the weights file and its recipe stamp live.
        demos_dir: Directory of demonstration bags.
        policy_config: The policy the robots run (its config hash must match).
        recipe: Training length and size.
    """
    weights = out_dir / "base.safetensors"
    stamp = out_dir / "base.json"
    key = {"recipe": asdict(recipe), "policy": repr(policy_config)}
    if weights.exists() and stamp.exists() and json.loads(stamp.read_text()) == key:
        _log.info("base policy cached at %s", weights)
        return weights
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = Pi0Policy(policy_config)
    settings = LearnerSettings(
        offline_dir=str(demos_dir),
        store_dir=str(out_dir / "no_store"),
        checkpoint_dir=str(out_dir / "checkpoints"),
        log_dir="",
        loop=LearnerConfig(
            batch_size=recipe.batch_size,
            publish_every_steps=10**9,
            checkpoint_every_steps=10**9,
            load_in_background=False,
            decode_workers=2,
        ),
    )
    learner = build_learner(settings, policy, publish=lambda path, manifest: None)
    try:
        learner.start()
        learner.run(recipe.train_steps)
    finally:
        learner.close()
    policy.save_trainable(weights, version="v0000")
    stamp.write_text(json.dumps(key))
    return weights
