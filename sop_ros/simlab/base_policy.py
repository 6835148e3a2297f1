"""The base policy of the demo: π0 (tiny) trained offline on the expert's demonstration bags.

This is the "replay rosbags for offline training" path
(:func:`~sop_ros.learner.offline.train_offline`, also ``sop train-offline``):
the demonstrations are bags, loaded into the learner's offline buffers exactly
like fleet data. The result is cached under the output directory with the
settings that made it, so a second demo run starts at once.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from sop_ros.core.policy import PolicyConfig
from sop_ros.learner.offline import train_offline

__all__ = ["BaseRecipe", "base_policy"]

_log = logging.getLogger(__name__)

# Weights shipped with the package (see assets/README.md for how they were made).
ASSETS = Path(__file__).resolve().parent / "assets"


@dataclass(frozen=True, kw_only=True)
class BaseRecipe:
    """How the base policy is made (part of the cache key)."""

    demos_per_task: int = 20
    train_steps: int = 300
    batch_size: int = 32


def base_policy(out_dir: Path, demos_dir: Path, policy_config: PolicyConfig, recipe: BaseRecipe) -> Path:
    """Return the base weights file: cached, packaged, or trained from the bags in ``demos_dir``.

    A packaged base (trained on a GPU with the same recipe and policy, see
    ``assets/README.md``) is copied into ``out_dir`` when it matches, so a
    CPU-only machine starts from a policy it could not train in minutes.

    Args:
        out_dir: Where the weights file and its recipe stamp live.
        demos_dir: Directory of demonstration bags.
        policy_config: The policy the robots run (its config hash must match).
        recipe: Training length and size.
    """
    weights = out_dir / "base.safetensors"
    stamp = out_dir / "base.json"
    key = _key(policy_config, recipe)
    if weights.exists() and stamp.exists() and _stamp_key(stamp) == key:
        _log.info("base policy cached at %s", weights)
        return weights
    out_dir.mkdir(parents=True, exist_ok=True)
    packaged = ASSETS / "base_sim_tiny.safetensors"
    packaged_stamp = packaged.with_suffix(".json")
    if packaged.exists() and packaged_stamp.exists() and _stamp_key(packaged_stamp) == key:
        _log.info("base policy: packaged weights %s (same recipe)", packaged.name)
        shutil.copyfile(packaged, weights)
        shutil.copyfile(packaged_stamp, stamp)
        return weights
    train_offline(demos_dir, policy_config, weights, steps=recipe.train_steps, batch_size=recipe.batch_size)
    stamp.write_text(json.dumps(key))
    return weights


# How and where the policy runs, not what it learned: left out of the cache key.
_RUNTIME_SETTINGS = frozenset({"device", "dtype", "compile_mode", "attention"})


def _key(policy_config: PolicyConfig, recipe: BaseRecipe) -> dict:
    return {"recipe": asdict(recipe), "policy": _learned(_settings_of_repr(repr(policy_config)) or {})}


def _stamp_key(stamp: Path) -> dict:
    """The key a stamp was written with, its policy part as settings (also from a ``PolicyConfig`` repr)."""
    data = json.loads(stamp.read_text())
    policy = data.get("policy")
    if isinstance(policy, str):
        policy = _settings_of_repr(policy)
    return {"recipe": data.get("recipe"), "policy": _learned(policy) if isinstance(policy, dict) else policy}


def _settings_of_repr(text: str) -> dict | None:
    """``PolicyConfig(a=1, b=('x',))`` → ``{"a": 1, "b": ("x",)}``, literals only (never evaluated)."""
    try:
        call = ast.parse(text, mode="eval").body
        if not isinstance(call, ast.Call):
            return None
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
    except (SyntaxError, ValueError):
        return None


def _learned(settings: dict) -> dict:
    """The settings that shape what a policy learns (PolicyConfig's repr shows checkpoint ones when set)."""
    learned = {k: v for k, v in settings.items() if k not in _RUNTIME_SETTINGS}
    # JSON has no tuples: a stamp read back holds lists where the config holds tuples.
    return json.loads(json.dumps(learned))
