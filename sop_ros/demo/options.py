"""What ``sop demo`` runs: its options and their defaults, in one place.

A module of its own, free of torch and ROS, so that the command line reads its
defaults without loading the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoOptions"]


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What ``sop demo`` runs."""

    robots: int = 2
    algorithm: str = "hg_dagger"
    minutes: float = 8.0
    out: Path = Path("out/demo")
    seed: int = 0
    # Layouts the fleet and the held-out evaluation meet: "deployment" (outside the
    # demonstrations) or "demonstrations".
    conditions: str = "deployment"
    # The packaged base policy was trained with this recipe (on a GPU); another one trains here.
    demos_per_task: int = 100
    base_steps: int = 5000
    base_batch_size: int = 64
    publish_every_steps: int = 25
    batch_size: int = 32
    lr: float = 3e-4
    # The newest weights are evaluated alone this often, on this many held-out episodes per task
    # (and on judge_final_episodes per task for the base and the last version: Wilson 95 %
    # intervals of at most ±10 points; forgetting_episodes per task on the other distribution).
    judge_period_s: float = 120.0
    judge_episodes: int = 10
    judge_final_episodes: int = 100
    forgetting_episodes: int = 50
