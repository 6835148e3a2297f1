"""Settings of HG-DAgger."""

from __future__ import annotations

from dataclasses import dataclass

from sop_ros.core.config import check_ranges, setting
from sop_ros.learner.algorithms.base import OptimizerConfig

__all__ = ["HGDaggerConfig"]


@dataclass(frozen=True, kw_only=True)
class HGDaggerConfig(OptimizerConfig):
    """Which uploaded steps HG-DAgger imitates, and how it optimises."""

    use_successful_autonomous: bool = setting(
        False, "also imitate the policy's own steps in episodes that succeeded"
    )
    skip_before_intervention_steps: int = setting(
        10,
        "autonomous steps just before a human took over never count (the policy was drifting there)",
        unit="steps",
        low=0,
    )

    def __post_init__(self) -> None:
        check_ranges(self)
