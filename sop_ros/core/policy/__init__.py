"""The VLA policy: π0 from ``transformers`` behind the :class:`Policy` interface.

Every policy is built by :func:`make_policy`. On a robot::

    policy = make_policy(PolicyConfig(model="tiny", camera_names=("front",), horizon=10))
    policy.warmup()                      # compiles first when compile_mode is set (CUDA)
    chunk = policy.infer(observation)    # worker thread; ActionChunk in robot units, with infer_ms
    policy.stage(path)                   # another thread, while episodes run
    stall_ms = policy.activate()         # between episodes only

In a learner::

    policy.set_norm_stats(states, actions)
    loss = policy.loss(policy.collate(samples))   # per sample, shape (batch,)
    policy.save_trainable(path, version="v0007")  # trainable tensors + norm stats
"""

from __future__ import annotations

from sop_ros.core.policy.config import FULL, PRESETS, TINY, PolicyConfig
from sop_ros.core.policy.inputs import NormStats, TrainingSample
from sop_ros.core.policy.pi0 import Pi0Policy, is_trainable
from sop_ros.core.policy.protocol import Policy, make_policy
from sop_ros.core.policy.tokenizer import build_tokenizer, prompt_text

__all__ = [
    "FULL",
    "PRESETS",
    "TINY",
    "NormStats",
    "Pi0Policy",
    "Policy",
    "PolicyConfig",
    "TrainingSample",
    "build_tokenizer",
    "is_trainable",
    "make_policy",
    "prompt_text",
]
