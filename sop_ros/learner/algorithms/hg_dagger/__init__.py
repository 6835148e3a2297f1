"""HG-DAgger."""

from __future__ import annotations

from sop_ros.learner.algorithms.hg_dagger.algorithm import HGDagger, select_hg_dagger_steps
from sop_ros.learner.algorithms.hg_dagger.config import HGDaggerConfig

__all__ = ["HGDagger", "HGDaggerConfig", "select_hg_dagger_steps"]
