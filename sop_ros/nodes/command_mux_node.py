"""command_mux: the one command the robot driver executes, policy or human.

Subscribes to ``action_chunk`` and ``intervention``, publishes ``command``
(``sensor_msgs/JointState``: name = action names, position = the action) at
the control rate. The human always wins; after a hand-back the policy resumes
only from a chunk computed after it; with no valid input the robot holds (no
command is sent) and the node says why, throttled. Episode boundaries reset it.

Threads: every callback runs on the node's default (mutually exclusive)
callback group, so the mux state is only touched by one thread at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import JointState
from sop_msgs.msg import ActionChunk as ActionChunkMsg
from sop_msgs.msg import EpisodeEvent, Intervention

from sop_ros.core import topics
from sop_ros.core.config import check_ranges, setting
from sop_ros.core.control import CommandMux, ControlConfig, Source
from sop_ros.core.errors import ConfigError
from sop_ros.nodes.common import COMMAND_QOS, Diagnostics, RateMeter, run_node
from sop_ros.nodes.convert import chunk_from_msg, ns_to_stamp, stamp_to_ns
from sop_ros.nodes.params import declare_config

__all__ = ["CommandMuxConfig", "CommandMuxNode", "main"]

# Holding position longer than this (no valid chunk, no human) is logged as a warning.
HOLD_WARNING_NS = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class CommandMuxConfig:
    """Parameters of the command mux."""

    control_rate_hz: float = setting(20.0, "rate at which commands are sent", unit="Hz", low=1.0, high=1000.0)
    action_names: tuple[str, ...] = setting(("ee_x", "ee_y", "gripper"), "names of the action dimensions")
    control: ControlConfig = field(default_factory=ControlConfig)

    def __post_init__(self) -> None:
        check_ranges(self)


class CommandMuxNode(Node):
    """Arbitrate policy chunks and human commands into ``command``."""

    def __init__(self, **kwargs) -> None:
        super().__init__("command_mux", **kwargs)
        self.config = declare_config(self, CommandMuxConfig)
        self._mux = CommandMux(self.config.control)
        self._sent = RateMeter()
        self._last = Source.HOLD
        self._hold_reason = "starting"
        self._holding_since_ns: int | None = None
        # Interventions ended because the human's commands stopped arriving in time.
        self._expired = 0
        self._command = self.create_publisher(JointState, topics.COMMAND, COMMAND_QOS)
        self.create_subscription(ActionChunkMsg, topics.ACTION_CHUNK, self._on_chunk, COMMAND_QOS)
        self.create_subscription(Intervention, topics.INTERVENTION, self._on_intervention, COMMAND_QOS)
        self.create_subscription(EpisodeEvent, topics.EPISODE_EVENTS, self._on_episode, COMMAND_QOS)
        self.create_timer(1.0 / self.config.control_rate_hz, self._tick)
        self._diagnostics = Diagnostics(self, self._report)

    def _on_chunk(self, msg: ActionChunkMsg) -> None:
        try:
            chunk = chunk_from_msg(msg)
        except ConfigError as err:
            self.get_logger().error(f"dropped a malformed action chunk: {err}", throttle_duration_sec=5.0)
            return
        if chunk.action_names != self.config.action_names:
            self.get_logger().error(
                f"dropped an action chunk for {chunk.action_names}, expected {self.config.action_names}",
                throttle_duration_sec=5.0,
            )
            return
        self._mux.on_chunk(chunk)

    def _on_intervention(self, msg: Intervention) -> None:
        action = list(msg.action) if msg.active else None
        if action is not None and len(action) != len(self.config.action_names):
            self.get_logger().error(
                f"ignored a human command of {len(action)} values; expected {len(self.config.action_names)}",
                throttle_duration_sec=5.0,
            )
            return
        self._mux.on_intervention(msg.active, action, stamp_to_ns(msg.header.stamp))

    def _on_episode(self, msg: EpisodeEvent) -> None:
        self._mux.reset()

    def _tick(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        out = self._mux.tick(now_ns)
        if out.expired_command_age_s is not None:
            self._expired += 1
            self.get_logger().warning(
                f"human command went stale ({out.expired_command_age_s:.2f} s old, limit "
                f"{self.config.control.max_command_age_s:g} s): control goes back to the policy"
            )
        if out.source is not self._last:
            self.get_logger().info(f"command source: {self._last.value} -> {out.source.value}")
            self._last = out.source
        if out.action is None:
            self._hold_reason = out.reason
            if self._holding_since_ns is None:
                self._holding_since_ns = now_ns
            # A short hold is normal (an episode starts before its first chunk); a long one is not.
            if now_ns - self._holding_since_ns > HOLD_WARNING_NS:
                self.get_logger().warning(f"holding position: {out.reason}", throttle_duration_sec=5.0)
            return
        self._holding_since_ns = None
        msg = JointState(name=list(self.config.action_names), position=out.action.astype(float).tolist())
        msg.header.stamp = ns_to_stamp(now_ns)
        msg.header.frame_id = out.source.value
        self._command.publish(msg)
        self._sent.record()

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        level = DiagnosticStatus.OK if self._last is not Source.HOLD else DiagnosticStatus.WARN
        message = f"executing {self._last.value}" if self._last is not Source.HOLD else self._hold_reason
        return (
            level,
            message,
            [
                ("command_rate_hz", f"{self._sent.rate_hz():.1f}"),
                ("source", self._last.value),
                ("stale_human_handbacks", str(self._expired)),
            ],
        )


def main(args: list[str] | None = None) -> None:
    """Run the command mux node."""
    run_node(CommandMuxNode, args)


if __name__ == "__main__":
    main()
