"""learner: the cloud learner under ROS, for people who launch everything with ``ros2 launch``.

A thin wrapper around :class:`~sop_ros.learner.service.CloudLearner` (the
same object ``sop learner`` runs): its settings are this node's parameters
(``learner.sampler.alpha``, ``policy.horizon``, ...), training runs on a
thread of its own, and progress (step, published version, episodes stored)
goes to ``/diagnostics``. The robots talk to it over Zenoh, not ROS.

Threads: the training thread owns the learner; the diagnostics timer only
reads counters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node

from sop_ros.learner.service import CloudConfig, CloudLearner
from sop_ros.nodes.common import SHUTDOWN_HURRY, Diagnostics, forward_python_logs, run_node
from sop_ros.nodes.params import declare_config
from sop_ros.nodes.share import share_path

__all__ = ["LearnerNode", "main"]


class LearnerNode(Node):
    """Run the cloud learner on a background thread and report its progress."""

    def __init__(self, **kwargs) -> None:
        super().__init__("learner", **kwargs)
        self.config = declare_config(self, CloudConfig)
        forward_python_logs(self, "sop_ros.learner")
        forward_python_logs(self, "sop_ros.transport")
        zenoh = (
            Path(self.config.zenoh_config)
            if self.config.zenoh_config
            else share_path("config/zenoh/router.json5")
        )
        self._episodes = 0
        self._cloud = CloudLearner(self.config, zenoh_config=zenoh, on_episode=self._on_episode)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._cloud.run, args=(self._stop,), name="learner", daemon=True
        )
        self._thread.start()
        self._diagnostics = Diagnostics(self, self._report)

    def _on_episode(self, stored) -> None:
        self._episodes += 1

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        learner = self._cloud.learner
        alive = self._thread.is_alive()
        level = DiagnosticStatus.OK if alive else DiagnosticStatus.ERROR
        message = f"step {learner.step}, version {learner.version}" if alive else "training thread stopped"
        return (
            level,
            message,
            [
                ("step", str(learner.step)),
                ("published_version", str(learner.version)),
                # Versions the publish gate held back (their validation loss regressed).
                ("versions_refused", str(learner.guards.versions_refused)),
                ("episodes_stored", str(self._episodes)),
            ],
        )

    def destroy_node(self) -> None:
        """Stop training, write a checkpoint, stop serving the fleet.

        The training thread stops at its next step. A further SIGINT or SIGTERM
        while it does (``ros2 launch`` and a terminal both send SIGINT, launch
        then SIGTERM when its patience ends) skips the checkpoint, and the wait
        shrinks to the step in progress (at most :data:`_HURRIED_WAIT_S`):
        leaving while a step still runs would abort the process, since torch's
        worker threads would be destroyed in use.
        """
        self._stop.set()
        deadline = time.monotonic() + _STOP_WAIT_S
        hurried = False
        while self._thread.is_alive() and time.monotonic() < deadline:
            if SHUTDOWN_HURRY.is_set() and not hurried:
                hurried = True
                deadline = min(deadline, time.monotonic() + _HURRIED_WAIT_S)
            self._thread.join(timeout=0.1)
        if self._thread.is_alive():
            self.get_logger().warning("training did not stop in time; leaving without a new checkpoint")
        self._cloud.close(checkpoint=not (self._thread.is_alive() or SHUTDOWN_HURRY.is_set()))
        super().destroy_node()


# Longest the node waits for the training thread to stop at its next step (s).
_STOP_WAIT_S = 120.0
# Longest it still waits, once told to hurry, for the step in progress to end (s).
_HURRIED_WAIT_S = 10.0


def main(args: list[str] | None = None) -> None:
    """Run the learner node."""
    run_node(LearnerNode, args)


if __name__ == "__main__":
    main()
