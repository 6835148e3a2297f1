"""RECAP: advantage-conditioned policy improvement from episode outcomes."""

from __future__ import annotations

from sop_ros.learner.algorithms.recap.algorithm import Recap, episode_success
from sop_ros.learner.algorithms.recap.config import RecapConfig
from sop_ros.learner.algorithms.recap.value import ValueNet

__all__ = ["Recap", "RecapConfig", "ValueNet", "episode_success"]
