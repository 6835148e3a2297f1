"""command_mux: the one command the robot driver executes, policy or human.

Subscribes to ``action_chunk`` and ``intervention``, publishes ``command``
(``sensor_msgs/JointState``: name = action names, position = the action) at
the control rate. The human always wins; after a hand-back the policy resumes
only from a chunk computed after it; with no valid input the robot holds (no
command is sent) and the node says why, throttled. Episode boundaries reset it.

The mux is the last gate before the robot: whoever produced a command, it is
never sent when not finite, and never outside the joint limits or farther
from the previous command than ``safety.max_steps`` (clipped onto the limit
or held, per ``safety.on_violation``; :class:`~sop_ros.core.guards.ActionGuard`).
Chunks and human commands holding NaN or infinity are dropped on arrival.
Every refusal is logged once and reported on ``/diagnostics`` (ERROR for a
dropped or held command, WARN for a clipped one) until it stops happening.

Threads: every callback runs on the node's default (mutually exclusive)
callback group, so the mux state is only touched by one thread at a time.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import JointState
from sop_msgs.msg import ActionChunk as ActionChunkMsg
from sop_msgs.msg import EpisodeEvent, Intervention

from sop_ros.core import topics
from sop_ros.core.config import check_ranges, setting
from sop_ros.core.control import CommandMux, ControlConfig, Source
from sop_ros.core.errors import InputError, UnsafeInputError
from sop_ros.core.guards import ActionGuard, ActionGuardConfig, RecentFault, check_finite, urdf_joint_limits
from sop_ros.nodes.common import COMMAND_QOS, Diagnostics, RateMeter, run_node
from sop_ros.nodes.convert import chunk_from_msg, ns_to_stamp, stamp_to_ns
from sop_ros.nodes.params import declare_config
from sop_ros.nodes.share import share_path

__all__ = ["CommandMuxConfig", "CommandMuxNode", "main"]

# Holding position longer than this (no valid chunk, no human) is logged as a warning.
HOLD_WARNING_NS = 1_000_000_000
# Settings applied while running; every other one is read-only.
LIVE_PARAMETERS = (
    "control.max_chunk_age_s",
    "control.max_command_age_s",
    "safety.lower_limits",
    "safety.upper_limits",
    "safety.max_steps",
    "safety.on_violation",
)


@dataclass(frozen=True, kw_only=True)
class CommandMuxConfig:
    """Parameters of the command mux."""

    control_rate_hz: float = setting(20.0, "rate at which commands are sent", unit="Hz", low=1.0, high=1000.0)
    action_names: tuple[str, ...] = setting(("ee_x", "ee_y", "gripper"), "names of the action dimensions")
    control: ControlConfig = field(default_factory=ControlConfig)
    safety: ActionGuardConfig = field(default_factory=ActionGuardConfig)

    def __post_init__(self) -> None:
        check_ranges(self)


class CommandMuxNode(Node):
    """Arbitrate policy chunks and human commands into ``command``."""

    def __init__(self, **kwargs) -> None:
        super().__init__("command_mux", **kwargs)
        self.config = declare_config(
            self, CommandMuxConfig, live=LIVE_PARAMETERS, on_change=self._reconfigure
        )
        self._mux = CommandMux(self.config.control)
        self._guard = self._make_guard(self.config)
        # The last command sent: the step bound is measured from it.
        self._previous: np.ndarray | None = None
        self._refused = RecentFault()
        self._clipped = RecentFault()
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

    def _make_guard(self, config: CommandMuxConfig) -> ActionGuard:
        path = config.safety.urdf_file
        limits = urdf_joint_limits(path if Path(path).is_absolute() else share_path(path)) if path else None
        return ActionGuard(config.action_names, config.safety, limits)

    def _reconfigure(self, config: CommandMuxConfig) -> None:
        # Built first: limits that do not fit the action names refuse the whole change.
        guard = self._make_guard(config)
        self._mux.reconfigure(config.control)
        self._guard, self.config = guard, config

    def _refuse(self, reason: str) -> None:
        if self._refused.report(reason, self.get_clock().now().nanoseconds):
            self.get_logger().error(reason)

    def _on_chunk(self, msg: ActionChunkMsg) -> None:
        try:
            chunk = chunk_from_msg(msg)
            check_finite(f"action chunk {msg.policy_version}", chunk.actions)
            if not math.isfinite(chunk.control_period_s):  # (> 0 is the chunk's own check)
                raise UnsafeInputError(f"action chunk has control period {chunk.control_period_s} s")
        except UnsafeInputError as err:
            self._refuse(f"dropped an action chunk: {err}")
            return
        except InputError as err:
            self._refuse(f"dropped a malformed action chunk: {err}")
            return
        if chunk.action_names != self.config.action_names:
            self._refuse(
                f"dropped an action chunk for {chunk.action_names}, expected {self.config.action_names}"
            )
            return
        self._mux.on_chunk(chunk)

    def _on_intervention(self, msg: Intervention) -> None:
        action = np.asarray(msg.action, dtype=np.float64) if msg.active else None
        if action is not None and len(action) != len(self.config.action_names):
            self._refuse(
                f"ignored a human command of {len(action)} values; expected {len(self.config.action_names)}"
            )
            return
        if action is not None and not np.all(np.isfinite(action)):
            self._refuse(f"ignored a human command from {msg.source!r} that is not finite: {action}")
            return
        self._mux.on_intervention(msg.active, action, stamp_to_ns(msg.header.stamp))

    def _on_episode(self, msg: EpisodeEvent) -> None:
        self._mux.reset()
        # The robot may have been moved (reset) between episodes: no step bound from the old command.
        self._previous = None

    def _tick(self) -> None:
        try:
            self._command_once()
        except Exception as err:  # the last gate must keep running whatever happens; this tick holds
            reason = f"control tick failed, holding: {type(err).__name__}: {err}"
            if self._refused.report(reason, self.get_clock().now().nanoseconds):
                self.get_logger().error("".join(traceback.format_exception(err)))

    def _command_once(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        out = self._mux.tick(now_ns)
        if out.expired_command_age_s is not None:
            self._expired += 1
            self.get_logger().warning(
                f"human command went stale ({out.expired_command_age_s:.2f} s old, limit "
                f"{self.config.control.max_command_age_s:g} s): control goes back to the policy"
            )
        action, reason = out.action, out.reason
        if action is not None:
            verdict = self._guard.check(action, self._previous)
            action, reason = verdict.action, f"{out.source.value} command: {verdict.reason}"
            if verdict.action is None:
                self._refuse(f"refused a {reason}")
            elif verdict.clipped and self._clipped.report(reason, now_ns):
                # Which dimensions are out varies from tick to tick: throttled as well.
                self.get_logger().warning(reason, throttle_duration_sec=2.0)
        source = out.source if action is not None else Source.HOLD
        if source is not self._last:
            self.get_logger().info(f"command source: {self._last.value} -> {source.value}")
            self._last = source
        if action is None:
            self._hold_reason = reason
            if self._holding_since_ns is None:
                self._holding_since_ns = now_ns
            # A short hold is normal (an episode starts before its first chunk); a long one is not.
            if now_ns - self._holding_since_ns > HOLD_WARNING_NS:
                self.get_logger().warning(f"holding position: {reason}", throttle_duration_sec=5.0)
            return
        self._holding_since_ns = None
        self._previous = action
        msg = JointState(name=list(self.config.action_names), position=action.astype(float).tolist())
        msg.header.stamp = ns_to_stamp(now_ns)
        msg.header.frame_id = out.source.value
        self._command.publish(msg)
        self._sent.record()

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        now_ns = self.get_clock().now().nanoseconds
        refused, clipped = self._refused.current(now_ns), self._clipped.current(now_ns)
        if refused:
            level, message = DiagnosticStatus.ERROR, refused
        elif self._last is Source.HOLD:
            level, message = DiagnosticStatus.WARN, self._hold_reason
        elif clipped:
            level, message = DiagnosticStatus.WARN, f"executing {self._last.value}, {clipped}"
        else:
            level, message = DiagnosticStatus.OK, f"executing {self._last.value}"
        return (
            level,
            message,
            [
                ("command_rate_hz", f"{self._sent.rate_hz():.1f}"),
                ("source", self._last.value),
                ("stale_human_handbacks", str(self._expired)),
                ("refused", str(self._refused.count)),
                ("clipped", str(self._clipped.count)),
            ],
        )


def main(args: list[str] | None = None) -> None:
    """Run the command mux node."""
    run_node(CommandMuxNode, args)


if __name__ == "__main__":
    main()
