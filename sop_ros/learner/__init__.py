"""The cloud learner: replay buffers, task-balanced sampling, post-training algorithms, training loop.

Imports nothing from ROS; the ROS node wrapper lives in ``sop_ros.nodes``.
The usual wiring (``torchrun`` or a plain process alike)::

    dist = init_distributed()                      # before the policy, so it lands on this rank's GPU
    policy = make_policy(policy_config_for("recap", PolicyConfig(...)))
    learner = build_learner(LearnerSettings(algorithm="recap"), policy, publish=publisher.publish, dist=dist)
    ingest = IngestServer(..., on_episode=lambda stored: learner.submit_episode(stored.path))  # rank 0
    learner.start()                                # resume from the newest checkpoint, re-index the store
    learner.run()                                  # ingest -> sample -> update, publish every K steps
"""

from __future__ import annotations

from sop_ros.learner.algorithms import (
    ALGORITHMS,
    Algorithm,
    UpdateResult,
    algorithm_config_class,
    make_algorithm,
    policy_config_for,
)
from sop_ros.learner.buffers import OfflineBuffer, OnlineBuffer, ReplayBuffers, stored_episode_dirs
from sop_ros.learner.builder import LearnerSettings, build_learner, storage_loader
from sop_ros.learner.distributed import DistContext, init_distributed
from sop_ros.learner.loop import Learner, LearnerConfig
from sop_ros.learner.sampler import SamplerConfig, TaskBalancedSampler
from sop_ros.learner.types import EpisodeLike, SampleRef, TrainablePolicy, TrainingSample

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "DistContext",
    "EpisodeLike",
    "Learner",
    "LearnerConfig",
    "LearnerSettings",
    "OfflineBuffer",
    "OnlineBuffer",
    "ReplayBuffers",
    "SampleRef",
    "SamplerConfig",
    "TaskBalancedSampler",
    "TrainablePolicy",
    "TrainingSample",
    "UpdateResult",
    "algorithm_config_class",
    "build_learner",
    "init_distributed",
    "make_algorithm",
    "policy_config_for",
    "storage_loader",
    "stored_episode_dirs",
]
