"""sim_robot: a simulated robot driver, plus the scripted operator who watches it.

As a driver it does what a real robot's driver would: executes ``command``
(``sensor_msgs/JointState`` targets) every control period, publishes
``joint_states`` and JPEG camera images, and reports ``task/success``
(``std_msgs/Bool``). An episode START resets the table for its task;
between episodes the robot holds still.

As the operator (``operator.enabled``) it plays the human with the joystick:
once per control step it compares the policy's current action (from
``action_chunk``) with the scripted expert's plan and publishes
``sensor_msgs/Joy`` exactly as a joystick driver would — released while the
policy does well; deadman held and sticks deflected toward the expert's
target once it drifts or stalls — so interventions take the real teleop path
(teleop → intervention → mux → command).

Threads: every callback shares the node's default mutually exclusive group;
the environment is stepped only by the control timer.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, JointState, Joy
from sop_msgs.msg import ActionChunk as ActionChunkMsg
from sop_msgs.msg import EpisodeEvent, Intervention
from std_msgs.msg import Bool

from sop_ros.core import topics
from sop_ros.core.config import check_ranges, setting
from sop_ros.core.control import ChunkBroker, ControlConfig
from sop_ros.core.errors import SopError
from sop_ros.core.teleop import load_joy_mapping
from sop_ros.nodes.common import COMMAND_QOS, SENSOR_QOS, Diagnostics, run_node
from sop_ros.nodes.convert import chunk_from_msg, joint_positions, ns_to_stamp
from sop_ros.nodes.params import declare_config
from sop_ros.nodes.share import share_path
from sop_ros.sim import (
    ACTION_NAMES,
    TASK_NAMES,
    ExpertConfig,
    JoystickOperator,
    ScriptedExpert,
    SimConfig,
    SimEnv,
    SimObservation,
)

__all__ = ["OperatorConfig", "SimRobotConfig", "SimRobotNode", "main"]


@dataclass(frozen=True, kw_only=True)
class OperatorConfig:
    """The scripted operator who takes over with a (simulated) joystick."""

    enabled: bool = setting(True, "simulate an operator who intervenes through the joy topic")
    mapping_file: str = setting("", "joystick mapping the teleop node uses; empty = config/joystick.yaml")
    expert: ExpertConfig = field(default_factory=ExpertConfig)


@dataclass(frozen=True, kw_only=True)
class SimRobotConfig:
    """Parameters of the simulated robot."""

    seed: int = setting(0, "seed of the table layouts (with the robot namespace and episode count)", low=0)
    jpeg_quality: int = setting(90, "quality of the published JPEG images", low=1, high=100)
    sim: SimConfig = field(default_factory=SimConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)

    def __post_init__(self) -> None:
        check_ranges(self)


class SimRobotNode(Node):
    """Step simulated tables on command; optionally play their operator."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_robot", **kwargs)
        self.config = declare_config(self, SimRobotConfig)
        sim = self.config.sim
        self._envs = {task: SimEnv(_with_task(sim, task)) for task in TASK_NAMES}
        self._env: SimEnv | None = None
        self._target: np.ndarray | None = None
        self._episodes = 0
        self._successes = 0
        self._base_seed = self.config.seed * 1_000_003 + zlib.crc32(self.get_namespace().encode())
        self._joints = self.create_publisher(JointState, topics.JOINT_STATES, SENSOR_QOS)
        self._images = {
            camera: self.create_publisher(CompressedImage, topics.camera_topic(camera), SENSOR_QOS)
            for camera in sim.cameras
        }
        self._success = self.create_publisher(Bool, topics.TASK_SUCCESS, COMMAND_QOS)
        self.create_subscription(JointState, topics.COMMAND, self._on_command, COMMAND_QOS)
        self.create_subscription(EpisodeEvent, topics.EPISODE_EVENTS, self._on_episode, COMMAND_QOS)
        self._operator = _Operator(self, self.config.operator, sim.control_period_s)
        self._state = np.array(self._envs[TASK_NAMES[0]].reset(self._base_seed).state)
        self._last_obs: SimObservation | None = None
        self.create_timer(sim.control_period_s, self._step)
        self._diagnostics = Diagnostics(self, self._report)

    def _on_command(self, msg: JointState) -> None:
        try:
            self._target = joint_positions(msg, ACTION_NAMES)
        except SopError as err:
            self.get_logger().error(f"ignored a command: {err}", throttle_duration_sec=5.0)

    def _on_episode(self, msg: EpisodeEvent) -> None:
        if msg.kind != EpisodeEvent.START:
            self._env = None
            self._operator.episode_over()
            return
        env = self._envs.get(msg.task)
        if env is None:
            self.get_logger().error(
                f"episode {msg.episode_id}: unknown task {msg.task!r}; choose {TASK_NAMES}"
            )
            return
        self._episodes += 1
        self._last_obs = env.reset(self._base_seed + self._episodes)
        self._env, self._target = env, None
        self._operator.episode_started(self._base_seed + self._episodes)

    def _step(self) -> None:
        env, last = self._env, self._last_obs
        if env is not None and last is not None and not env.done:
            action = self._target if self._target is not None else last.state
            self._operator.watch(env, last.state)
            self._last_obs = env.step(action)
            if self._last_obs.success:
                self._successes += 1
                self._success.publish(Bool(data=True))
        obs = self._last_obs
        if obs is None:
            return
        stamp = ns_to_stamp(self.get_clock().now().nanoseconds)
        joints = JointState(name=list(ACTION_NAMES), position=obs.state.astype(float).tolist())
        joints.header.stamp = stamp
        self._joints.publish(joints)
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        for camera, publisher in self._images.items():
            bgr = cv2.cvtColor(obs.images[camera], cv2.COLOR_RGB2BGR)
            msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", bgr, quality)[1].tobytes())
            msg.header.stamp = stamp
            msg.header.frame_id = f"{camera}_camera_optical_frame"
            publisher.publish(msg)

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        state = f"running {self._env.task.name}" if self._env is not None else "idle"
        return (
            DiagnosticStatus.OK,
            state,
            [
                ("episodes", str(self._episodes)),
                ("successes", str(self._successes)),
                ("operator_takeovers", str(self._operator.takeovers)),
            ],
        )


class _Operator:
    """The scripted expert at the joystick (:class:`~sop_ros.sim.JoystickOperator`), wired to ROS.

    Hears the policy's chunks (to know what the policy would do now) and the
    teleop node's interventions (the command it integrates from), and
    publishes one ``sensor_msgs/Joy`` per control step.
    """

    def __init__(self, node: Node, config: OperatorConfig, control_period_s: float) -> None:
        self.enabled = config.enabled
        self.takeovers = 0
        if not self.enabled:
            return
        self._node = node
        path = config.mapping_file or str(share_path("config/joystick.yaml"))
        expert = ScriptedExpert(config.expert, control_period_s=control_period_s)
        self._joystick = JoystickOperator(expert, load_joy_mapping(path), control_period_s=control_period_s)
        self._chunks = ChunkBroker(ControlConfig())
        self._teleop_command: np.ndarray | None = None
        self._active = False
        self._joy = node.create_publisher(Joy, topics.JOY, SENSOR_QOS)
        node.create_subscription(ActionChunkMsg, topics.ACTION_CHUNK, self._on_chunk, COMMAND_QOS)
        node.create_subscription(Intervention, topics.INTERVENTION, self._on_intervention, COMMAND_QOS)

    def _on_chunk(self, msg: ActionChunkMsg) -> None:
        self._chunks.add(chunk_from_msg(msg))

    def _on_intervention(self, msg: Intervention) -> None:
        self._teleop_command = np.asarray(msg.action, np.float64) if msg.active else None

    def episode_started(self, seed: int) -> None:
        """Forget the last episode's takeovers and plans."""
        if self.enabled:
            self._joystick.reset(seed)
            self._chunks.clear()
            self._active = False

    def episode_over(self) -> None:
        """Let go of the joystick."""
        if self.enabled and self._active:
            self._active = False
            self._publish((0.0,) * 8, self._joystick.press())

    def watch(self, env: SimEnv, state: np.ndarray) -> None:
        """Once per control step, before the step: look at the table and work the joystick."""
        if not self.enabled:
            return
        policy, _ = self._chunks.action_at(self._node.get_clock().now().nanoseconds)
        frame = self._joystick.step(env.world, policy, command=self._teleop_command, env=env)
        self.takeovers += int(frame.intervening and not self._active)
        self._active = frame.intervening
        self._publish(frame.axes, frame.buttons)

    def _publish(self, axes: Sequence[float], buttons: Sequence[int]) -> None:
        msg = Joy(axes=list(axes), buttons=list(buttons))
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._joy.publish(msg)


def _with_task(config: SimConfig, task: str) -> SimConfig:
    return replace(config, task=task)


def main(args: list[str] | None = None) -> None:
    """Run the simulated robot node."""
    run_node(SimRobotNode, args)


if __name__ == "__main__":
    main()
