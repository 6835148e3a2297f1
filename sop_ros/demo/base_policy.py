"""The base policy of the demo: π0 (tiny) trained offline on the expert's demonstration bags.

This is the "replay rosbags for offline training" path
(:func:`~sop_ros.learner.offline.train_offline`, also ``sop train-offline``):
the demonstrations are bags, loaded into the learner's offline buffers exactly
like fleet data. The result is cached under the output directory with the
settings that made it, so a second demo run starts at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from sop_ros.core.policy import PolicyConfig
from sop_ros.learner.offline import train_offline

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
    train_offline(demos_dir, policy_config, weights, steps=recipe.train_steps, batch_size=recipe.batch_size)
    stamp.write_text(json.dumps(key))
    return weights
