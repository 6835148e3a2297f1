"""recorder: one rosbag2 MCAP bag per episode, written into the robot's spool.

Every recorded topic is subscribed *raw*: the CDR bytes go into the bag as
they arrived, never deserialised. ``episode/events`` are also read as
messages, to open and close bags and to build the episode's metadata
(outcome, policy versions; intervention segments come from the recorded
``intervention`` messages), which the bag carries in its ``custom_data``.

Log times are arrival times: when the middleware received each message,
not when the executor got round to its callback, which on a loaded robot
can be half a second later and out of order across topics. So intervention
segments say when the operator held control, and a message that arrived
before an episode's START (the previous episode's hand-back, say) stays out
of its bag even when its callback runs after the START's.

The other way round, a message that arrived after the START but is handed
over before it (no bag open yet) is not lost: messages no bag takes wait in
a bounded backlog (the last 5 s of arrivals, at most 20 000 messages and
64 MiB, oldest dropped first; see :mod:`sop_ros.storage.backlog`), and a new
bag starts with those that arrived at or after its START. At the END, a
message that arrived before the END but is handed over after it still goes
into the bag, which stays open ``end_grace_s`` for that; one handed over
later still (or after the next START, which closes the bag at once) is
dropped and counted.

At start-up the recorder recovers bags a crash left half-written: each is
either salvaged into a readable bag marked ``outcome=incomplete`` or kept in
quarantine with a reason; the log says which. When the spool's quota is
reached an episode is not recorded (the robot may still run) and the node
says so; un-uploaded bags are never deleted.

Threads: all callbacks share the node's default mutually exclusive group,
so bag writes and episode transitions never interleave. The recorder itself
is thread-safe as well.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.serialization import serialize_message

# Jazzy and newer hand a two-argument callback the middleware's MessageInfo (arrival stamps).
from rclpy.subscription import MessageInfo
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image, JointState
from sop_msgs.msg import ActionChunk, EpisodeEvent, Intervention
from std_msgs.msg import String

from sop_ros.core import topics
from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import SopError
from sop_ros.core.types import EpisodeMeta
from sop_ros.nodes.common import (
    LATCHED_QOS,
    RECORD_COMMAND_QOS,
    RECORD_SENSOR_QOS,
    Diagnostics,
    RateMeter,
    run_node,
)
from sop_ros.nodes.convert import outcome_from_msg, received_ns, stamp_to_ns
from sop_ros.nodes.params import declare_config
from sop_ros.storage import SpoolFullError, episode_meta, recover_spool
from sop_ros.storage.backlog import BackloggedRecorder
from sop_ros.storage.typestore import definitions_dir, typestore

__all__ = ["RecorderConfig", "RecorderNode", "main"]


@dataclass(frozen=True, kw_only=True)
class RecorderConfig:
    """Parameters of the recorder."""

    spool_dir: str = setting(
        "spool", "directory of the episode spool (recording/, ready/, ...)", read_only=True
    )
    quota_bytes: int = setting(
        20 * 1024**3, "most bytes of un-uploaded bags before episodes stop being recorded", unit="B", low=1
    )
    cameras: tuple[str, ...] = setting(("head",), "camera names; topics camera/<name>/image_raw[/compressed]")
    compressed_images: bool = setting(True, "record JPEG CompressedImage topics instead of raw Image")
    flush_period_s: float = setting(
        1.0, "longest time recorded data stays in memory only", unit="s", low=0.05
    )
    end_grace_s: float = setting(
        0.5,
        "a bag closes this long after its END, taking messages that arrived before the END "
        "but were handed over late",
        unit="s",
        low=0.0,
        high=10.0,
    )

    def __post_init__(self) -> None:
        check_ranges(self)


class RecorderNode(Node):
    """Record episodes into bags; recover crashed ones at start-up."""

    def __init__(self, **kwargs) -> None:
        super().__init__("recorder", **kwargs)
        self.config = declare_config(self, RecorderConfig)
        # Without the sop_msgs definitions every bag would come out empty: refuse to start instead.
        typestore()
        self.get_logger().info(f"sop_msgs definitions from {definitions_dir()}")
        self._recover()
        self._recorder = BackloggedRecorder(
            self.config.spool_dir,
            quota_bytes=self.config.quota_bytes,
            flush_period_s=self.config.flush_period_s,
        )
        self._meta: EpisodeMeta | None = None
        # An ended episode whose bag closes when its grace timer fires: (END event, its stamp).
        self._closing: tuple[EpisodeEvent, int] | None = None
        self._close_timer: Timer | None = None
        self._versions: list[str] = []
        self._written = RateMeter()
        self._finished = 0
        self._last_error = ""

        image_type = CompressedImage if self.config.compressed_images else Image
        for camera in self.config.cameras:
            topic = topics.camera_topic(camera, compressed=self.config.compressed_images)
            self._record(topic, image_type, RECORD_SENSOR_QOS)
        self._record(topics.JOINT_STATES, JointState, RECORD_SENSOR_QOS)
        self._record(topics.COMMAND, JointState, RECORD_COMMAND_QOS)
        self._record(topics.ACTION_CHUNK, ActionChunk, RECORD_COMMAND_QOS)
        self._instruction = ""
        # The instruction already in the open bag: one heard again (latched delivery, or the same
        # task's text heard before and after the START) is not written twice.
        self._instruction_in_bag: str | None = None
        self._subscribe(String, topics.INSTRUCTION, self._on_instruction, LATCHED_QOS)
        self._subscribe(Intervention, topics.INTERVENTION, self._on_intervention, RECORD_COMMAND_QOS)
        self._subscribe(EpisodeEvent, topics.EPISODE_EVENTS, self._on_episode, RECORD_COMMAND_QOS)
        self._diagnostics = Diagnostics(self, self._report)

    def _recover(self) -> None:
        for report in recover_spool(self.config.spool_dir):
            self.get_logger().warning(
                f"found a bag left by a crash, {report.partial.name}: {report.action.value}, "
                f"{report.message_count} messages kept ({report.reason})"
            )

    def _record(self, topic: str, msg_type: type, qos) -> None:
        msgtype = _type_name(msg_type)

        def on_message(data: bytes, log_ns: int) -> None:
            self._write(topic, msgtype, data, log_ns)

        self._subscribe(msg_type, topic, on_message, qos, raw=True)

    def _subscribe(
        self, msg_type: type, topic: str, handle: Callable[[Any, int], None], qos, *, raw: bool = False
    ) -> None:
        """Subscribe so that ``handle(msg, log_ns)`` learns when the message arrived."""

        def with_info(msg: Any, info: MessageInfo) -> None:
            handle(msg, self._log_ns(info["received_timestamp"]))

        self.create_subscription(msg_type, topic, with_info, qos, raw=raw)

    def _log_ns(self, received_timestamp_ns: int) -> int:
        now_ns = self.get_clock().now().nanoseconds
        return received_ns(received_timestamp_ns, now_ns=now_ns, wall_now_ns=time.time_ns())

    def _write(self, topic: str, msgtype: str, data: bytes, log_ns: int) -> None:
        try:
            written = self._recorder.write(self._resolved(topic), msgtype, data, log_ns)
        except SopError as err:
            self._last_error = str(err)
            self.get_logger().error(str(err), throttle_duration_sec=5.0)
            return
        if written:
            self._written.record()

    def _resolved(self, topic: str) -> str:
        # Bags hold absolute names, as `ros2 bag record` writes them.
        return self.resolve_topic_name(topic)

    def _on_intervention(self, msg: Intervention, log_ns: int) -> None:
        self._write(topics.INTERVENTION, _type_name(Intervention), serialize_message(msg), log_ns)

    def _on_instruction(self, msg: String, log_ns: int) -> None:
        """Keep the latest instruction: it is published just before its episode's START."""
        self._instruction = msg.data
        if self._recorder.recording and msg.data != self._instruction_in_bag:
            self._instruction_in_bag = msg.data
            self._write(topics.INSTRUCTION, _type_name(String), serialize_message(msg), log_ns)

    def _on_episode(self, msg: EpisodeEvent, log_ns: int) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if msg.kind == EpisodeEvent.START:
            self._close_now()
            # The episode began at its stamp (its instruction, published just before the event, is
            # part of it); the START itself is kept even if the manager's clock runs a little ahead.
            self._start(msg, stamp_ns, since_ns=min(stamp_ns, log_ns))
        self._write(topics.EPISODE_EVENTS, _type_name(EpisodeEvent), serialize_message(msg), log_ns)
        if msg.kind == EpisodeEvent.END:
            self._close_soon(msg, stamp_ns, log_ns)
        elif msg.kind == EpisodeEvent.ABORT:
            self._close_now()
            self._abort()

    def _close_soon(self, msg: EpisodeEvent, stamp_ns: int, log_ns: int) -> None:
        """Stop taking messages that arrived after the END; close the bag after the grace time."""
        if self._meta is None or msg.episode_id != self._meta.episode_id:
            return
        self._close_now()
        self._recorder.close_after(log_ns)
        self._closing = (msg, stamp_ns)
        if self.config.end_grace_s <= 0.0:
            self._close_now()
            return
        self._close_timer = self.create_timer(self.config.end_grace_s, self._close_now)

    def _close_now(self) -> None:
        """Close the bag of an ended episode, if one is waiting (grace timer, next START, shutdown)."""
        if self._close_timer is not None:
            self.destroy_timer(self._close_timer)
            self._close_timer = None
        closing, self._closing = self._closing, None
        if closing is not None:
            self._finish(*closing)

    def _start(self, msg: EpisodeEvent, stamp_ns: int, *, since_ns: int) -> None:
        if self._recorder.recording:
            self._abort(f"episode {msg.episode_id} started before this one ended")
        self._meta = EpisodeMeta(
            episode_id=msg.episode_id,
            robot_id=msg.robot_id,
            task=msg.task,
            instruction=msg.instruction,
            policy_versions=(msg.policy_version,) if msg.policy_version else (),
            start_ns=stamp_ns,
        )
        caught_up_before = self._recorder.caught_up_count
        try:
            path = self._recorder.start(self._meta, since_ns=since_ns)
        except SpoolFullError as err:
            self._meta, self._last_error = None, str(err)
            self.get_logger().error(f"not recording: {err}")
            return
        except SopError as err:
            self._meta, self._last_error = None, str(err)
            self.get_logger().error(f"cannot record episode {msg.episode_id}: {err}")
            return
        caught_up = self._recorder.caught_up_count - caught_up_before
        self.get_logger().info(
            f"recording episode {msg.episode_id} ({msg.task}) into {path}"
            + (f"; {caught_up} message(s) handed over before the START recorded" if caught_up else "")
        )
        if self._recorder.backlog_error:
            self._last_error, self._recorder.backlog_error = self._recorder.backlog_error, ""
            self.get_logger().error(self._last_error)
        self._instruction_in_bag = None
        if msg.instruction and self._instruction == msg.instruction:
            # Heard before the START: it opens the bag (log time = the episode's first instant).
            self._instruction_in_bag = msg.instruction
            instruction = serialize_message(String(data=msg.instruction))
            self._write(topics.INSTRUCTION, _type_name(String), instruction, since_ns)

    def _finish(self, msg: EpisodeEvent, stamp_ns: int) -> None:
        if self._meta is None or msg.episode_id != self._meta.episode_id:
            return
        versions = self._meta.policy_versions
        if msg.policy_version and msg.policy_version not in versions:
            versions = (*versions, msg.policy_version)
        meta = dataclasses.replace(
            self._meta,
            outcome=outcome_from_msg(msg.outcome),
            policy_versions=versions,
            end_ns=stamp_ns,
            # Left empty: the recorder fills the segments from the Intervention
            # messages' log times, the same clock the learner aligns steps with.
        )
        self._meta = None
        try:
            path = self._recorder.finish(meta)
        except SopError as err:
            self._last_error = str(err)
            self.get_logger().error(f"episode {meta.episode_id} not closed cleanly: {err}")
            return
        self._finished += 1
        final = episode_meta(path)
        self.get_logger().info(
            f"episode {final.episode_id} ready for upload: {path} ({final.outcome.value}, "
            f"{final.intervention_count} interventions, {final.intervention_s:.1f} s human)"
        )

    def _abort(self, reason: str = "operator aborted the episode") -> None:
        if not self._recorder.recording:
            return
        self._meta = None
        try:
            path = self._recorder.abort(reason)
        except SopError as err:
            self._last_error = str(err)
            self.get_logger().error(f"could not abort the episode cleanly: {err}")
            return
        self.get_logger().info(f"episode aborted ({reason}); bag kept at {path}")

    def destroy_node(self) -> None:
        """Close an ended episode's bag, and a running one as aborted: shutdown never leaves a partial bag."""
        self._close_now()
        self._abort("recorder shut down mid-episode")
        super().destroy_node()

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        level = DiagnosticStatus.ERROR if self._last_error else DiagnosticStatus.OK
        state = f"recording {self._recorder.episode_id}" if self._recorder.recording else "idle"
        return (
            level,
            self._last_error or state,
            [
                ("messages_per_s", f"{self._written.rate_hz():.1f}"),
                ("episodes_finished", str(self._finished)),
                ("pending_bytes", str(self._recorder.spool.pending_bytes())),
            ],
        )


def _type_name(msg_type: type) -> str:
    """``sensor_msgs.msg.JointState`` -> ``sensor_msgs/msg/JointState``."""
    module = msg_type.__module__.split(".")[0]
    return f"{module}/msg/{msg_type.__name__}"


def main(args: list[str] | None = None) -> None:
    """Run the recorder node."""
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
