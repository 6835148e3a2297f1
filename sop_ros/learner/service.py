"""The cloud side in one object: Zenoh router, bag ingest, weights publisher and the learner.

``CloudLearner`` is what ``sop learner``, the ROS ``learner`` node and
``sop demo`` run. It opens one Zenoh session (a router that robots connect
to, or a client of an existing router), stores uploaded bags through the
ingest server, feeds every newly stored episode to the learner, and hands
each published version to the weights publisher, which pushes it once
through the router to every robot.

Threads: ``run`` trains on the calling thread until ``stop`` is set; ingest
workers call ``_on_episode`` from their own threads (the learner's
``submit_episode`` is thread-safe, and listeners must be too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.policy import PolicyConfig, make_policy
from sop_ros.core.weights import WeightsManifest
from sop_ros.learner.algorithms import policy_config_for
from sop_ros.learner.builder import LearnerSettings, build_learner
from sop_ros.learner.distributed import DistContext
from sop_ros.learner.loop import PublishFn
from sop_ros.learner.types import TrainablePolicy
from sop_ros.storage import validate_bag
from sop_ros.transport import (
    IngestConfig,
    IngestServer,
    StoredEpisode,
    WeightsPublisher,
    WeightsPublisherConfig,
    fleet_setting,
    open_session,
)

__all__ = ["CloudConfig", "CloudLearner"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CloudConfig:
    """Everything the cloud learner runs with."""

    fleet: str = fleet_setting()
    zenoh_config: str = setting("", "zenoh json5 config of the learner's session (router or client)")
    listen: str = setting("", "endpoint to listen on, e.g. tcp/0.0.0.0:7447; empty = the config's")
    initial_weights: str = setting("", "trainable weights to start from (e.g. a base policy); empty = none")
    max_steps: int = setting(0, "stop after this many training steps; 0 = run until stopped", low=0)
    ingest_workers: int = setting(2, "threads verifying and storing uploaded chunks", low=1, high=64)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    learner: LearnerSettings = field(default_factory=LearnerSettings)

    def __post_init__(self) -> None:
        check_ranges(self)


class CloudLearner:
    """Own the learner's session, ingest, publisher and training loop.

    Args:
        config: Cloud settings.
        zenoh_config: Path of the json5 session config (the caller resolves defaults).
        on_episode: Extra listener told of every newly stored episode (any thread).
        on_publish: Extra listener given every published weights file and manifest (training thread).
        dist: Rank and device when run under torchrun; rank 0 alone serves the fleet.
        policy: The policy to train; by default built from ``config.policy`` for the
            algorithm (``make_policy(policy_config_for(...))``).
    """

    def __init__(
        self,
        config: CloudConfig,
        *,
        zenoh_config: Path,
        on_episode: Callable[[StoredEpisode], None] | None = None,
        on_publish: PublishFn | None = None,
        dist: DistContext | None = None,
        policy: TrainablePolicy | None = None,
    ) -> None:
        self.config = config
        self.dist = dist or DistContext()
        self._on_episode_listener = on_episode
        self._on_publish_listener = on_publish
        self.policy: TrainablePolicy = policy or make_policy(
            policy_config_for(config.learner.algorithm, config.policy)
        )
        if config.initial_weights:
            self.policy.load_trainable(config.initial_weights)
        self.session = None
        self.ingest = None
        self.publisher: WeightsPublisher | None = None
        # Settings that do not fit the policy fail here, before the fleet's router opens.
        self.learner = build_learner(config.learner, self.policy, publish=self._publish, dist=self.dist)
        if self.dist.is_main:
            overrides = {"listen/endpoints": [config.listen]} if config.listen else None
            self.session = open_session(zenoh_config, overrides)
            self.publisher = WeightsPublisher(self.session, WeightsPublisherConfig(fleet=config.fleet))
        if self.session is not None:
            self.ingest = IngestServer(
                self.session,
                Path(config.learner.store_dir),
                validate_bag=validate_bag,
                on_episode=self._on_episode,
                config=IngestConfig(fleet=config.fleet, workers=config.ingest_workers),
            )

    def _publish(self, path: Path, manifest: WeightsManifest) -> None:
        if self.publisher is None:
            return
        self.publisher.publish(path, manifest)
        _log.info("published v%04d (step %d, %d bytes)", manifest.version, manifest.step, manifest.size_bytes)
        if self._on_publish_listener is not None:
            self._on_publish_listener(path, manifest)

    def _on_episode(self, stored: StoredEpisode) -> None:
        self.learner.submit_episode(stored.path)
        if self._on_episode_listener is not None:
            self._on_episode_listener(stored)

    def run(self, stop: threading.Event | None = None) -> None:
        """Resume, then train until ``stop`` is set or ``max_steps`` are done."""
        self.learner.start()
        self.learner.run(self.config.max_steps or None, stop=stop)

    def close(self, *, checkpoint: bool = True) -> None:
        """Checkpoint (unless told not to), then stop serving the fleet and close the session."""
        if checkpoint:
            self.learner.save_checkpoint()
        self.learner.close()
        if self.ingest is not None:
            self.ingest.close()
        if self.publisher is not None:
            self.publisher.close()
        if self.session is not None:
            self.session.close()
