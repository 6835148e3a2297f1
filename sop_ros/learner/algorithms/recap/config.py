"""Settings of RECAP."""

from __future__ import annotations

from dataclasses import dataclass

from sop_ros.core.config import check_ranges, setting
from sop_ros.learner.algorithms.base import OptimizerConfig

__all__ = ["RecapConfig"]


@dataclass(frozen=True, kw_only=True)
class RecapConfig(OptimizerConfig):
    """Rewards, value function and advantage indicator of RECAP."""

    failure_penalty: float = setting(
        200.0, "extra negative reward on the last step of a failed episode", unit="steps", low=0.0
    )
    positive_fraction: float = setting(
        0.3, "share of a task's autonomous steps labelled positive (sets its threshold)", low=0.01, high=0.99
    )
    threshold_window: int = setting(2000, "recent advantages per task the threshold is taken over", low=1)
    threshold_min_samples: int = setting(
        64, "advantages a task needs before its percentile threshold replaces 0", low=1
    )
    indicator_dropout: float = setting(
        0.3, "chance a sample is trained with no indicator in the prompt", low=0.0, high=1.0
    )
    value_lr: float = setting(1e-3, "AdamW learning rate of the value network", low=0.0)
    value_image_size: int = setting(32, "side the value network downsamples images to", unit="px", low=8)
    value_hidden: int = setting(128, "width of the value network's MLP", low=8)
    seed: int = setting(0, "seed of the indicator dropout (each rank adds its rank)", low=0)

    def __post_init__(self) -> None:
        check_ranges(self)
