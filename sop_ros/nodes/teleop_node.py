"""teleop: a joystick (``sensor_msgs/Joy`` from the standard ``joy`` driver) becomes interventions.

Hold the deadman button and the sticks drive the robot: ``intervention``
carries ``active=true`` and the human's target at the mapping's publish rate.
Release it, or let the Joy stream go quiet for the timeout, and one
``active=false`` message hands control back to the policy. Episode buttons
call the episode manager's services (``episode/start``, ``episode/succeed``,
``episode/fail``, ``episode/abort``).

The axis mapping lives in a YAML file (``mapping_file``, default
``config/joystick.yaml``); the logic is ``sop_ros.core.teleop``.

Bad input never moves the robot and never stops the node: a Joy message with
a NaN or infinite axis, or fewer axes or buttons than the mapping reads, and
a joint state that is not finite, give no command; if the operator was in
control, one ``active=false`` hands control back at once (the deadman must
be released and pressed again). The reason is logged once and shown on
``/diagnostics`` (WARN) while such input keeps coming.

Threads: all callbacks share the node's default mutually exclusive group, so
the state machine has one caller at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.client import Client
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import JointState, Joy
from sop_msgs.msg import Intervention
from std_srvs.srv import Trigger

from sop_ros.core import topics
from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import SopError
from sop_ros.core.guards import RecentFault, check_finite
from sop_ros.core.teleop import (
    EpisodeButton,
    EpisodeRequest,
    HandBack,
    JoySample,
    TakeOver,
    TeleopCommand,
    TeleopPhase,
    TeleopStateMachine,
    load_joy_mapping,
)
from sop_ros.nodes.common import COMMAND_QOS, SENSOR_QOS, Diagnostics, RateMeter, run_node
from sop_ros.nodes.convert import joint_positions, ns_to_stamp
from sop_ros.nodes.params import declare_config
from sop_ros.nodes.share import share_path

__all__ = ["TeleopConfig", "TeleopNode", "main"]

_SERVICES = {
    EpisodeRequest.START: topics.EPISODE_START,
    EpisodeRequest.SUCCESS: topics.EPISODE_SUCCEED,
    EpisodeRequest.FAILURE: topics.EPISODE_FAIL,
    EpisodeRequest.ABORT: topics.EPISODE_ABORT,
}


@dataclass(frozen=True, kw_only=True)
class TeleopConfig:
    """Parameters of the teleop node."""

    mapping_file: str = setting("", "joystick mapping YAML; empty = config/joystick.yaml", read_only=True)
    source: str = setting("joystick", "name put in Intervention.source")

    def __post_init__(self) -> None:
        check_ranges(self)


# Settings applied while running; every other one is read-only.
LIVE_PARAMETERS = ("source",)


class TeleopNode(Node):
    """Turn Joy messages into interventions and episode requests."""

    def __init__(self, **kwargs) -> None:
        super().__init__("teleop", **kwargs)
        self.config = declare_config(
            self, TeleopConfig, live=LIVE_PARAMETERS, on_change=lambda c: setattr(self, "config", c)
        )
        path = self.config.mapping_file or str(share_path("config/joystick.yaml"))
        self.mapping = load_joy_mapping(path)
        self._machine = TeleopStateMachine(self.mapping)
        self._state: np.ndarray | None = None
        self._commands = RateMeter()
        self._takeovers = 0
        self._refused = RecentFault()
        self._intervention = self.create_publisher(Intervention, topics.INTERVENTION, COMMAND_QOS)
        self._episode_clients: dict[EpisodeRequest, Client[Any, Any]] = {
            request: self.create_client(Trigger, name) for request, name in _SERVICES.items()
        }
        self.create_subscription(Joy, topics.JOY, self._on_joy, SENSOR_QOS)
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_joints, SENSOR_QOS)
        self.create_timer(self.mapping.period_s, self._tick)
        self._diagnostics = Diagnostics(self, self._report)
        self.get_logger().info(
            f"joystick mapping from {path}: deadman button {self.mapping.deadman_button}, "
            f"axes {dict(zip(self.mapping.action_names, self.mapping.axes, strict=True))}"
        )

    def _on_joints(self, msg: JointState) -> None:
        try:
            self._state = joint_positions(msg, self.mapping.action_names)
        except SopError as err:
            self._state = None
            self._refuse(f"cannot read the robot's state: {err}")

    def _on_joy(self, msg: Joy) -> None:
        sample = JoySample(axes=msg.axes, buttons=msg.buttons, stamp_ns=self.get_clock().now().nanoseconds)
        try:
            outputs = self._machine.on_joy(sample)
        except SopError as err:
            self._refuse(f"ignored a Joy message: {err}")
            return
        self._handle(outputs)

    def _tick(self) -> None:
        if self._machine.phase is TeleopPhase.IDLE:
            return
        if self._state is None:
            self.get_logger().warning(
                "deadman held but no usable joint_states: not moving", throttle_duration_sec=5.0
            )
            return
        try:
            self._handle(self._machine.on_tick(self.get_clock().now().nanoseconds, self._state))
        except SopError as err:
            self._refuse(f"no command: {err}")

    def _refuse(self, reason: str) -> None:
        """No command from bad input; hand control back if the operator had it."""
        now_ns = self.get_clock().now().nanoseconds
        if self._refused.report(reason, now_ns):
            self.get_logger().error(reason)
        self._handle(self._machine.refuse(now_ns))

    def _handle(self, outputs: Sequence[object]) -> None:
        for out in outputs:
            if isinstance(out, TeleopCommand):
                check_finite("human command", out.action)  # finite by construction; never send otherwise
                self._publish(True, out.action, out.stamp_ns)
                self._commands.record()
            elif isinstance(out, HandBack):
                self._publish(False, (), out.stamp_ns)
                self.get_logger().info(f"control handed back to the policy ({out.reason.value})")
            elif isinstance(out, TakeOver):
                self._takeovers += 1
                self.get_logger().info("operator took control")
            elif isinstance(out, EpisodeButton):
                self._request(out.request)

    def _publish(self, active: bool, action: Sequence[float], stamp_ns: int) -> None:
        msg = Intervention(active=active, source=self.config.source, action=[float(a) for a in action])
        msg.header.stamp = ns_to_stamp(stamp_ns)
        self._intervention.publish(msg)

    def _request(self, request: EpisodeRequest) -> None:
        client = self._episode_clients[request]
        if not client.service_is_ready():
            self.get_logger().error(
                f"button '{request.value}' pressed but {client.srv_name} is not available"
            )
            return
        future = client.call_async(Trigger.Request())
        future.add_done_callback(partial(self._answered, request))

    def _answered(self, request: EpisodeRequest, future: Future[Any]) -> None:
        answer = future.result()
        if answer is not None and answer.success:
            self.get_logger().info(f"episode {request.value}: {answer.message}")
        else:
            self.get_logger().warning(
                f"episode {request.value} refused: {answer.message if answer else 'no answer'}"
            )

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        refused = self._refused.current(self.get_clock().now().nanoseconds)
        return (
            DiagnosticStatus.WARN if refused else DiagnosticStatus.OK,
            refused or f"operator {self._machine.phase.value}",
            [
                ("command_rate_hz", f"{self._commands.rate_hz():.1f}"),
                ("takeovers", str(self._takeovers)),
                ("refused_inputs", str(self._refused.count)),
            ],
        )


def main(args: list[str] | None = None) -> None:
    """Run the teleop node."""
    run_node(TeleopNode, args)


if __name__ == "__main__":
    main()
