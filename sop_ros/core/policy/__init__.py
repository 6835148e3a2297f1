"""The VLA policy: π0 from ``transformers`` behind ``infer(observation) -> ActionChunk``."""

from __future__ import annotations

from sop_ros.core.policy.config import FULL, PRESETS, TINY, PolicyConfig
from sop_ros.core.policy.inputs import NormStats, TrainingSample
from sop_ros.core.policy.pi0 import Pi0Policy, is_trainable
from sop_ros.core.policy.tokenizer import build_tokenizer, prompt_text

__all__ = [
    "FULL",
    "PRESETS",
    "TINY",
    "NormStats",
    "Pi0Policy",
    "PolicyConfig",
    "TrainingSample",
    "build_tokenizer",
    "is_trainable",
    "prompt_text",
]
