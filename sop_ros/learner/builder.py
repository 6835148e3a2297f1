"""Build a ready :class:`Learner` from one settings tree (what ``sop learner`` and the ROS node call).

The settings flatten to dotted names (``sampler.alpha``, ``recap.positive_fraction``),
the same names the ROS parameters and params files use. Only the section of
the chosen ``algorithm`` is read.

Threads: runs on the caller's thread, before training starts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError
from sop_ros.core.policy.config import PolicyConfig
from sop_ros.learner.algorithms import ALGORITHMS, make_algorithm, policy_config_for
from sop_ros.learner.algorithms.hg_dagger import HGDaggerConfig
from sop_ros.learner.algorithms.recap import RecapConfig
from sop_ros.learner.buffers import EpisodeLoader, OfflineBuffer, ReplayBuffers
from sop_ros.learner.distributed import DistContext
from sop_ros.learner.loop import Learner, LearnerConfig, PublishFn
from sop_ros.learner.sampler import SamplerConfig, TaskBalancedSampler
from sop_ros.learner.types import TrainablePolicy

__all__ = ["LearnerSettings", "build_learner", "storage_loader"]


@dataclass(frozen=True, kw_only=True)
class LearnerSettings:
    """Everything the cloud learner is configured with, besides the policy."""

    algorithm: str = setting("hg_dagger", "post-training algorithm", choices=tuple(sorted(ALGORITHMS)))
    store_dir: str = setting("store", "episode store the ingest server writes (re-indexed at start)")
    offline_dir: str = setting("", "directory of demonstration bags for the offline buffers; empty = none")
    checkpoint_dir: str = setting("checkpoints", "where checkpoints and published weights files go")
    log_dir: str = setting("runs", "TensorBoard log directory; empty = no logging")
    loop: LearnerConfig = field(default_factory=LearnerConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    hg_dagger: HGDaggerConfig = field(default_factory=HGDaggerConfig)
    recap: RecapConfig = field(default_factory=RecapConfig)

    def __post_init__(self) -> None:
        check_ranges(self)


def storage_loader(*, cameras: tuple[str, ...], horizon: int) -> EpisodeLoader:
    """Load stored bags with the storage layer, cutting chunks of ``horizon`` for these cameras."""
    from sop_ros.storage.episodes import load_episode  # storage pulls in rosbags and OpenCV

    return functools.partial(load_episode, cameras=cameras, horizon=horizon)


def build_learner(
    settings: LearnerSettings,
    policy: TrainablePolicy,
    *,
    publish: PublishFn,
    load_episode: EpisodeLoader | None = None,
    dist: DistContext | None = None,
) -> Learner:
    """Wire policy, algorithm, buffers, sampler and loop; call ``start()`` on the result to resume.

    Args:
        settings: Learner settings.
        policy: The policy to train (from ``make_policy(policy_config_for(algorithm, config))``, or
            anything with its training interface).
        publish: Hands each new weights file and manifest to the fleet (rank 0 only calls it).
        load_episode: Reads a bag; by default the storage layer's, with the policy's cameras and horizon.
        dist: Rank and device; single process when None.

    Raises:
        ConfigError: a setting is wrong or the offline directory holds no loadable bag.
    """
    dist = dist or DistContext()
    config = getattr(policy, "config", None)
    if isinstance(config, PolicyConfig) and policy_config_for(settings.algorithm, config) != config:
        raise ConfigError(
            f"algorithm {settings.algorithm!r} trains a policy that acts with inference_advantage "
            f"{policy_config_for(settings.algorithm, config).inference_advantage!r}, but this one acts with "
            f"{config.inference_advantage!r}; build it from policy_config_for({settings.algorithm!r}, config)"
        )
    if load_episode is None:
        if config is None:
            raise ConfigError("pass load_episode: the policy has no config naming its cameras and horizon")
        load_episode = storage_loader(cameras=tuple(config.camera_names), horizon=int(config.horizon))
    algorithm_config = getattr(settings, settings.algorithm)
    algorithm = make_algorithm(settings.algorithm, policy, config=algorithm_config, dist=dist)
    offline = {}
    if settings.offline_dir:
        offline = OfflineBuffer.from_directory(
            Path(settings.offline_dir), load=load_episode, select=algorithm.select_offline
        )
    return Learner(
        policy=policy,
        algorithm=algorithm,
        buffers=ReplayBuffers(
            offline=offline,
            select_online=algorithm.select_online,
            frame_cache_bytes=settings.loop.frame_cache_mib << 20,
        ),
        sampler=TaskBalancedSampler(settings.sampler, rank=dist.rank),
        load_episode=load_episode,
        publish=publish,
        checkpoint_dir=Path(settings.checkpoint_dir),
        store_dir=Path(settings.store_dir),
        log_dir=Path(settings.log_dir) if settings.log_dir else None,
        config=settings.loop,
        dist=dist,
    )
