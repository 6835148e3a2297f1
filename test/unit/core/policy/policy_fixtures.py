"""Small π0 policies and samples for the policy tests (CPU, float32, a few ms per call)."""

from __future__ import annotations

import numpy as np

from sop_ros.core.policy import PolicyConfig, TrainingSample
from sop_ros.core.types import Observation

ACTIONS = ("joint_a", "joint_b", "gripper")
STATES = ("joint_a", "joint_b", "gripper", "speed")


def small_config(**overrides) -> PolicyConfig:
    values = dict(
        model="tiny",
        camera_names=("front", "wrist"),
        horizon=4,
        denoising_steps=3,
        action_names=ACTIONS,
        state_names=STATES,
        device="cpu",
        max_prompt_tokens=16,
    )
    values.update(overrides)
    return PolicyConfig(**values)


def observation(seed: int = 0, instruction: str = "pick up the red cube") -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        images={name: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for name in ("front", "wrist")},
        state=rng.normal(size=len(STATES)).astype(np.float32),
        instruction=instruction,
        stamp_ns=123,
    )


def sample(seed: int = 0, advantage: bool | None = None) -> TrainingSample:
    obs = observation(seed)
    rng = np.random.default_rng(seed + 1000)
    return TrainingSample(
        images=obs.images,
        state=obs.state,
        instruction=obs.instruction,
        actions=rng.normal(size=(4, len(ACTIONS))).astype(np.float32),
        advantage=advantage,
    )
