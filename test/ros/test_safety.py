"""Bad input fed to the running policy, teleop and command mux nodes, each in a process of its own.

A robot integrator's view: a driver publishes cameras and joint states, a
joystick publishes Joy, and something watches ``command``, ``action_chunk``,
``intervention`` and ``/diagnostics``. Every bad input must leave the robot
holding (never a non-finite or out-of-limit message on those topics), the
node alive, ``/diagnostics`` naming the cause, and normal operation back once
good input returns. The bad inputs share two node launches to keep this quick.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from ros_helpers import spinning, wait_for
from sensor_msgs.msg import CompressedImage, Image, JointState, Joy
from sop_msgs.msg import ActionChunk, EpisodeEvent, Intervention
from sop_msgs.srv import StageWeights

from sop_ros.core import topics
from sop_ros.core.policy import PolicyConfig, make_policy
from sop_ros.nodes.common import COMMAND_QOS, SENSOR_QOS
from sop_ros.nodes.registry import NODES

pytestmark = pytest.mark.slow

NAMES = ["ee_x", "ee_y", "gripper"]
LOWER, UPPER = [0.0, 0.0, 0.0], [0.5, 0.5, 0.08]
POLICY = dict(
    camera_names=["head"],
    action_names=NAMES,
    state_names=NAMES,
    horizon=10,
    control_period_s=0.1,
    denoising_steps=2,
    max_prompt_tokens=16,
)
DEADMAN = 4
S = 1_000_000_000


def ros_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def launch(name: str, namespace: str, params: dict[str, object], log: Path) -> subprocess.Popen:
    command = NODES[name].command({k: ros_value(v) for k, v in params.items()}, namespace=namespace)
    out = log.open("w")
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))


class Robot:
    """The integrator's side: a driver whose output can be spoiled on demand, a joystick, and probes."""

    def __init__(self, context, namespace: str, *, raw: bool = False) -> None:
        self.node = rclpy.create_node("integrator", namespace=namespace, context=context)
        self.lock = threading.Lock()
        self.chunks: list[ActionChunk] = []
        self.commands: list[JointState] = []
        self.interventions: list[Intervention] = []
        self.diagnostics: dict[str, DiagnosticStatus] = {}
        node = self.node
        node.create_subscription(ActionChunk, topics.ACTION_CHUNK, self._keep(self.chunks), COMMAND_QOS)
        node.create_subscription(JointState, topics.COMMAND, self._keep(self.commands), COMMAND_QOS)
        node.create_subscription(
            Intervention, topics.INTERVENTION, self._keep(self.interventions), COMMAND_QOS
        )
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.events = node.create_publisher(EpisodeEvent, topics.EPISODE_EVENTS, COMMAND_QOS)
        self.joy = node.create_publisher(Joy, topics.JOY, SENSOR_QOS)
        self.raw = raw
        image_type = Image if raw else CompressedImage
        self.image = node.create_publisher(
            image_type, topics.camera_topic("head", compressed=not raw), SENSOR_QOS
        )
        self.joints = node.create_publisher(JointState, topics.JOINT_STATES, SENSOR_QOS)
        self.chunk_out = node.create_publisher(ActionChunk, topics.ACTION_CHUNK, COMMAND_QOS)
        self.intervention_out = node.create_publisher(Intervention, topics.INTERVENTION, COMMAND_QOS)
        self.rgb = np.full((32, 32, 3), 90, np.uint8)
        self.jpeg = cv2.imencode(".jpg", self.rgb)[1].tobytes()
        # What the driver publishes next: positions, stamp offset (s), and a spoiled image if any.
        self.positions = [0.1, 0.2, 0.03]
        self.stamp_offset_s = 0.0
        self.bad_image: Image | CompressedImage | None = None
        # The joystick: None while nobody touches it, else (axes, buttons) published with the sensors.
        self.stick: tuple[list[float], list[int]] | None = None
        node.create_timer(0.05, self._publish_sensors)

    def _keep(self, into: list) -> Callable[[object], None]:
        def keep(msg: object) -> None:
            with self.lock:
                into.append(msg)

        return keep

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = status

    def stamp(self, offset_s: float = 0.0):
        return rclpy.time.Time(
            nanoseconds=self.node.get_clock().now().nanoseconds + round(offset_s * S)
        ).to_msg()

    def _publish_sensors(self) -> None:
        stamp = self.stamp(self.stamp_offset_s)
        if self.bad_image is not None:
            image = self.bad_image
        elif self.raw:
            image = Image(height=32, width=32, encoding="rgb8", step=96, data=self.rgb.tobytes())
        else:
            image = CompressedImage(format="jpeg", data=self.jpeg)
        image.header.stamp = stamp
        self.image.publish(image)
        joints = JointState(name=NAMES, position=self.positions)
        joints.header.stamp = stamp
        self.joints.publish(joints)
        if self.stick is not None:
            self.joy.publish(Joy(axes=self.stick[0], buttons=self.stick[1]))

    def episode(self, kind: int, instruction: str = "put the can on the shelf") -> None:
        msg = EpisodeEvent(kind=kind, episode_id="e", robot_id="r", task="t", instruction=instruction)
        msg.header.stamp = self.stamp()
        self.events.publish(msg)

    def status(self, node: str) -> tuple[int, str]:
        status = self.diagnostics.get(f"{self.node.get_namespace()}/{node}")
        return (status.level, status.message) if status else (-1, "")

    def reports(self, node: str, level: int, text: str, timeout_s: float = 15.0) -> bool:
        """Wait until ``node``'s diagnostics have ``level`` and a message containing ``text``."""
        return wait_for(lambda: self.status(node)[0] == level and text in self.status(node)[1], timeout_s)

    def count(self, what: list) -> int:
        with self.lock:
            return len(what)

    def grows(self, what: list, by: int = 2, timeout_s: float = 20.0) -> bool:
        start = self.count(what)
        return wait_for(lambda: self.count(what) >= start + by, timeout_s)

    def still(self, what: list, for_s: float = 1.0) -> bool:
        start = self.count(what)
        time.sleep(for_s)
        return self.count(what) == start

    def set_parameter(self, node: str, name: str, value: object):
        client = AsyncParameterClient(self.node, f"{self.node.get_namespace()}/{node}")
        assert client.wait_for_services(timeout_sec=20.0)
        future = client.set_parameters([Parameter(name, value=value)])
        assert wait_for(future.done, 20.0)
        return future.result().results[0]

    def human(self, active: bool, since: int = 0) -> list[Intervention]:
        """The teleop node's interventions from index ``since`` on with this ``active`` flag."""
        with self.lock:
            return [m for m in self.interventions[since:] if m.source == "joystick" and m.active == active]

    def check_outputs(self) -> None:
        """Nothing the robot could act on was ever non-finite or outside the limits.

        The rogue chunks and human commands this test publishes itself are left out.
        """
        with self.lock:
            for chunk in self.chunks:
                if chunk.policy_version != "rogue":
                    assert all(math.isfinite(a) for a in chunk.actions), chunk
            for msg in self.interventions:
                if msg.source != "rogue":
                    assert all(math.isfinite(a) for a in msg.action), msg
            for msg in self.commands:
                assert all(lo <= p <= hi for lo, p, hi in zip(LOWER, msg.position, UPPER, strict=True)), msg


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Iterator[tuple[dict[str, subprocess.Popen], Path]]:
    """Policy, teleop and command mux under /a (JPEG cameras), and a policy under /b (raw images)."""
    logs = tmp_path_factory.mktemp("logs")
    policy = {f"policy.{k}": v for k, v in POLICY.items()} | {"replan_period_s": 0.2}
    mux = {
        "action_names": NAMES,
        "control_rate_hz": 20.0,
        "safety.lower_limits": LOWER,
        "safety.upper_limits": UPPER,
    }
    processes = {
        "a/policy": launch("policy", "/a", policy, logs / "a_policy.log"),
        "a/command_mux": launch("command_mux", "/a", mux, logs / "a_command_mux.log"),
        "a/teleop": launch("teleop", "/a", {}, logs / "a_teleop.log"),
        "b/policy": launch("policy", "/b", policy | {"compressed_images": False}, logs / "b_policy.log"),
    }
    try:
        yield processes, logs
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory) -> Path:
    """A weights file for the launched policy with NaN and inf in one tensor."""
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in POLICY.items()}
    donor = make_policy(PolicyConfig(**settings))
    state = donor.trainable_state()
    name = sorted(state)[0]
    spoiled = state[name].clone()
    spoiled.view(-1)[:2] = torch.tensor([math.nan, math.inf])
    donor.load_trainable_state({**state, name: spoiled})
    path = tmp_path_factory.mktemp("weights") / "v0009.safetensors"
    donor.save_trainable(path, version="v0009")
    return path


def test_bad_robot_input_is_held_reported_and_recovered_from(ros_context, launched, nan_weights) -> None:
    processes, logs = launched
    robot = Robot(ros_context, "/a")
    ok, error = DiagnosticStatus.OK, DiagnosticStatus.ERROR
    with spinning(ros_context, robot.node):
        assert robot.reports("policy", ok, "no episode running", 90.0), robot.status("policy")
        robot.episode(EpisodeEvent.START)
        assert robot.grows(robot.chunks) and robot.grows(robot.commands)
        assert robot.reports("policy", ok, "acting")

        # A driver glitch: NaN and infinite joint positions.
        robot.positions = [math.nan, math.inf, -math.inf]
        assert robot.reports("policy", error, "not finite: ee_x=nan, ee_y=inf, gripper=-inf")
        assert robot.still(robot.chunks)
        robot.positions = [0.1, 0.2, 0.03]
        assert robot.grows(robot.chunks) and robot.reports("policy", ok, "acting")

        # Frames and joint states stamped 10 s in the past, then 10 s in the future.
        robot.stamp_offset_s = -10.0
        assert robot.reports("policy", error, "s ago (limit 0.5 s)")
        assert robot.still(robot.chunks)
        robot.stamp_offset_s = 10.0
        assert robot.reports("policy", error, "s in the future (clock-skew tolerance 0.1 s)")
        assert robot.still(robot.chunks)
        robot.stamp_offset_s = 0.0
        assert robot.grows(robot.chunks) and robot.reports("policy", ok, "acting")

        # A 16-bit depth PNG on the colour camera topic, labelled as image_transport labels it.
        depth = cv2.imencode(".png", np.full((32, 32), 1200, np.uint16))[1].tobytes()
        robot.bad_image = CompressedImage(format="16UC1; png compressed", data=depth)
        assert robot.reports("policy", error, "a 16uc1 image is not a colour camera image")
        assert robot.still(robot.chunks)
        robot.bad_image = None
        assert robot.grows(robot.chunks) and robot.reports("policy", ok, "acting")

        # Weights holding NaN/inf are refused at staging, naming the tensor; the robot keeps acting.
        answer = call_stage(robot, nan_weights)
        # Answered with the refusal, or (on a busy machine) before staging ended.
        refused = not answer.accepted and "NaN or infinite values in" in answer.message
        assert refused or "in the background" in answer.message, answer.message
        assert robot.reports("policy", error, "NaN or infinite values in")
        assert robot.grows(robot.chunks)

        # An instruction too long for the prompt: ERROR during that episode, gone in the next.
        robot.episode(EpisodeEvent.END)
        robot.episode(EpisodeEvent.START, instruction=" ".join(["shelf"] * 200))
        assert robot.reports("policy", error, "inference failed")
        assert robot.still(robot.chunks)
        robot.episode(EpisodeEvent.END)
        robot.episode(EpisodeEvent.START)
        assert robot.grows(robot.chunks) and robot.reports("policy", ok, "acting")

        # The mux is the last gate, whoever publishes: a chunk far outside the limits is clipped...
        far = ActionChunk(
            action_names=NAMES,
            horizon=50,
            action_dim=3,
            actions=[5.0, -5.0, 5.0] * 50,
            control_period=0.1,
            policy_version="rogue",
        )
        robot.episode(EpisodeEvent.END)
        time.sleep(0.5)
        far.header.stamp = robot.stamp()
        robot.chunk_out.publish(far)
        assert robot.reports("command_mux", DiagnosticStatus.WARN, "ee_x=5 above limit 0.5")
        assert wait_for(lambda: robot.commands[-1].position.tolist() == [0.5, 0.0, 0.08])
        # ...and chunks or human commands holding NaN never reach the robot.
        far.actions = [math.nan] * 150
        far.header.stamp = robot.stamp()
        robot.chunk_out.publish(far)
        assert robot.reports("command_mux", error, "dropped an action chunk")
        far.actions, far.control_period = [0.1] * 150, math.inf  # no row would ever be due
        far.header.stamp = robot.stamp()
        robot.chunk_out.publish(far)
        assert robot.reports("command_mux", error, "action chunk has control period inf s")
        human = Intervention(active=True, source="rogue", action=[0.1, math.nan, 0.0])
        human.header.stamp = robot.stamp()
        robot.intervention_out.publish(human)
        assert robot.reports("command_mux", error, "not finite")

        # A NaN Joy axis while the deadman is held: no command from it, control handed back.
        robot.episode(EpisodeEvent.START)
        held, released = [0] * 11, [0] * 11
        held[DEADMAN] = 1
        up, nan = [0.0, 1.0] + [0.0] * 6, [0.0, math.nan] + [0.0] * 6
        robot.stick = (up, held)
        assert wait_for(lambda: len(robot.human(True)) >= 3)
        robot.stick = (nan, held)
        assert robot.reports("teleop", DiagnosticStatus.WARN, "Joy axes is not finite: axis 1=nan")
        mark = robot.count(robot.interventions)
        assert robot.human(False)
        time.sleep(1.0)
        assert robot.human(True, since=mark) == []  # no command while the axis is NaN
        robot.stick = (up, held)  # good axes, deadman still held: a fresh press is needed
        time.sleep(1.0)
        assert robot.human(True, since=mark) == []
        assert robot.reports("teleop", DiagnosticStatus.OK, "operator idle")  # the error cleared
        robot.stick = ([0.0] * 8, released)
        time.sleep(0.3)
        robot.stick = (up, held)
        assert wait_for(lambda: len(robot.human(True, since=mark)) >= 3)
        robot.stick = ([0.0] * 8, released)
        time.sleep(0.3)
        robot.stick = None

        robot.check_outputs()
        for name in ("a/policy", "a/command_mux", "a/teleop"):
            assert processes[name].poll() is None, (logs / f"{name.replace('/', '_')}.log").read_text()

        # Ctrl-C mid-episode: every node exits, and no worker thread dies with a traceback.
        assert robot.grows(robot.chunks)
        for name in ("a/policy", "a/command_mux", "a/teleop"):
            processes[name].send_signal(signal.SIGINT)
        for name in ("a/policy", "a/command_mux", "a/teleop"):
            processes[name].wait(timeout=30)
            assert_no_thread_traceback(logs / f"{name.replace('/', '_')}.log")


def assert_no_thread_traceback(log: Path) -> None:
    """No thread of the node (the inference worker above all) ended in a traceback.

    How the executor's own thread ends on a signal is ``run_node``'s matter.
    """
    text = log.read_text()
    assert "Exception in thread" not in text and "_run_worker" not in text, text


def call_stage(robot: Robot, path: Path) -> StageWeights.Response:
    client = robot.node.create_client(StageWeights, "policy/stage")
    assert client.wait_for_service(timeout_sec=20.0)
    future = client.call_async(StageWeights.Request(path=str(path), version="v0009"))
    assert wait_for(future.done, 60.0)
    return future.result()


def test_short_raw_images_and_the_policy_live_parameters(ros_context, launched) -> None:
    processes, logs = launched
    robot = Robot(ros_context, "/b", raw=True)
    ok, error = DiagnosticStatus.OK, DiagnosticStatus.ERROR
    with spinning(ros_context, robot.node):
        assert robot.reports("policy", ok, "no episode running", 90.0), robot.status("policy")
        robot.episode(EpisodeEvent.START)
        assert robot.grows(robot.chunks) and robot.reports("policy", ok, "acting")
        # The chunk carries the stamp of the observation it answers, not the time it was sent.
        chunk = robot.chunks[-1]
        assert chunk.infer_ms > 0

        # A raw image whose data is shorter than step × height (a truncated frame).
        robot.bad_image = Image(height=32, width=32, encoding="rgb8", step=96, data=bytes(96 * 20))
        assert robot.reports("policy", error, "carries 1920 bytes, not step 96 × height 32")
        assert robot.still(robot.chunks)
        robot.bad_image = None
        assert robot.grows(robot.chunks) and robot.reports("policy", ok, "acting")

        # max_input_age_s: frames 1 s old are refused at 0.5 s, taken at 2 s.
        robot.stamp_offset_s = -1.0
        assert robot.reports("policy", error, "(limit 0.5 s)")
        assert robot.set_parameter("policy", "max_input_age_s", 2.0).successful
        assert robot.grows(robot.chunks) and robot.reports("policy", ok, "acting")
        stamps = [c.header.stamp for c in robot.chunks[-2:]]
        now_ns = robot.node.get_clock().now().nanoseconds
        assert all(0.8 < (now_ns - rclpy.time.Time.from_msg(s).nanoseconds) / S < 3.0 for s in stamps)
        robot.stamp_offset_s = 0.0
        assert robot.set_parameter("policy", "max_input_age_s", 0.5).successful

        # max_clock_skew_s: frames 1 s ahead are refused at 0.1 s, taken at 2 s.
        robot.stamp_offset_s = 1.0
        assert robot.reports("policy", error, "in the future (clock-skew tolerance 0.1 s)")
        assert robot.set_parameter("policy", "max_clock_skew_s", 2.0).successful
        assert robot.grows(robot.chunks) and robot.reports("policy", ok, "acting")
        robot.stamp_offset_s = 0.0

        # replan_period_s: one chunk per second instead of five.
        assert robot.set_parameter("policy", "replan_period_s", 1.0).successful
        time.sleep(1.5)
        start = robot.count(robot.chunks)
        time.sleep(4.0)
        assert 2 <= robot.count(robot.chunks) - start <= 5
        # A read-only one is refused with the reason; a bad value with the config's message.
        refused = robot.set_parameter("policy", "policy.horizon", 20)
        assert not refused.successful and "read-only" in refused.reason
        refused = robot.set_parameter("policy", "replan_period_s", -1.0)
        assert not refused.successful

        robot.check_outputs()
        assert processes["b/policy"].poll() is None, (logs / "b_policy.log").read_text()
        processes["b/policy"].send_signal(signal.SIGTERM)
        processes["b/policy"].wait(timeout=30)
        assert_no_thread_traceback(logs / "b_policy.log")
