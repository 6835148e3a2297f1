"""Episode bags on disk: recording, crash recovery, and reading back as training steps.

May import rosbags, mcap, opencv and numpy; never rclpy or zenoh.
"""

from __future__ import annotations

from sop_ros.core.spool import Spool
from sop_ros.storage.bagio import episode_meta, validate_bag
from sop_ros.storage.episodes import Episode, Step, decode_jpeg, load_episode
from sop_ros.storage.errors import BagError, SpoolFullError
from sop_ros.storage.recorder import EpisodeRecorder
from sop_ros.storage.recovery import RecoveryAction, RecoveryReport, recover_spool
from sop_ros.storage.segments import intervention_segments

__all__ = [
    "BagError",
    "Episode",
    "EpisodeRecorder",
    "RecoveryAction",
    "RecoveryReport",
    "Spool",
    "SpoolFullError",
    "Step",
    "decode_jpeg",
    "episode_meta",
    "intervention_segments",
    "load_episode",
    "recover_spool",
    "validate_bag",
]
