"""Episode manager + command mux + recorder as real nodes: bags come out right.

A driver node plays robot and policy: it publishes joint states, camera
frames and action chunks, and a human intervention in the middle of the
episode. The test then opens the bag with the ``mcap`` reader and checks
topics, the human/policy split of the executed commands and the metadata.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, JointState
from sop_msgs.msg import ActionChunk, EpisodeEvent, Intervention
from std_srvs.srv import Trigger

from sop_ros.core import topics
from sop_ros.nodes.command_mux_node import CommandMuxNode
from sop_ros.nodes.common import COMMAND_QOS, RECORD_COMMAND_QOS, SENSOR_QOS
from sop_ros.nodes.episode_manager_node import EpisodeManagerNode
from sop_ros.nodes.recorder_node import RecorderNode
from sop_ros.nodes.spinning import NodeSpinners
from sop_ros.storage import episode_meta

mcap_reader = pytest.importorskip("mcap.reader")
mcap_ros2 = pytest.importorskip("mcap_ros2.decoder")

NAMES = ["ee_x", "ee_y", "gripper"]


class Graph:
    """The nodes under test plus a driver, each spun on an executor and a thread of its own."""

    def __init__(self, context, spool: Path) -> None:
        ns = "/g1_test"
        common = {"context": context, "namespace": ns}
        self.manager = EpisodeManagerNode(
            parameter_overrides=[
                Parameter("episodes.robot_id", value="g1_test"),
                Parameter("episodes.tasks", value=["grocery_restock"]),
                Parameter("episodes.instructions", value=["put the can on the shelf"]),
                Parameter("episodes.time_budgets_s", value=[30.0]),
            ],
            **common,
        )
        # Four nodes and the test's driver share two busy cores, which can hand over some
        # messages a second or more after they arrived. The mux's staleness limits and the recorder's
        # grace after END are widened so that this test checks what gets recorded, not that latency.
        self.mux = CommandMuxNode(
            parameter_overrides=[
                Parameter("control_rate_hz", value=50.0),
                Parameter("control.max_command_age_s", value=3.0),
                Parameter("control.max_chunk_age_s", value=3.0),
            ],
            **common,
        )
        self.recorder = RecorderNode(
            parameter_overrides=[
                Parameter("spool_dir", value=str(spool)),
                Parameter("end_grace_s", value=3.0),
            ],
            **common,
        )
        self.driver = rclpy.create_node("driver", **common)
        self.events: list[EpisodeEvent] = []
        self.commands: list[JointState] = []
        d = self.driver
        # The test listens as the recorder does: a queue deep enough that a late executor drops nothing.
        d.create_subscription(EpisodeEvent, topics.EPISODE_EVENTS, self.events.append, RECORD_COMMAND_QOS)
        d.create_subscription(JointState, topics.COMMAND, self.commands.append, RECORD_COMMAND_QOS)
        self.heard: list[Intervention] = []
        d.create_subscription(Intervention, topics.INTERVENTION, self.heard.append, RECORD_COMMAND_QOS)
        self.joints = d.create_publisher(JointState, topics.JOINT_STATES, SENSOR_QOS)
        self.image = d.create_publisher(CompressedImage, topics.camera_topic("head"), SENSOR_QOS)
        self.chunks = d.create_publisher(ActionChunk, topics.ACTION_CHUNK, COMMAND_QOS)
        self.human = d.create_publisher(Intervention, topics.INTERVENTION, COMMAND_QOS)
        self.spinners = NodeSpinners(context)
        for node in (self.manager, self.mux, self.recorder, self.driver):
            self.spinners.add(node)
        self.spinners.start()

    def call(self, service: str) -> Trigger.Response:
        client = self.driver.create_client(Trigger, service)
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 10.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return future.result()

    def publish_sensors_and_chunk(self, value: float) -> None:
        now = self.driver.get_clock().now()
        self.joints.publish(JointState(name=NAMES, position=[value, 0.0, 0.0], header=_header(now)))
        _, jpeg = cv2.imencode(".jpg", np.full((32, 32, 3), int(value * 10) % 255, np.uint8))
        self.image.publish(CompressedImage(format="jpeg", data=jpeg.tobytes(), header=_header(now)))
        self.chunks.publish(
            ActionChunk(
                header=_header(now),
                policy_version="v0001",
                action_names=NAMES,
                horizon=5,
                action_dim=3,
                actions=[value] * 15,
                control_period=0.05,
            )
        )

    def close(self) -> None:
        self.spinners.shutdown()
        for node in (self.manager, self.mux, self.recorder, self.driver):
            node.destroy_node()


def _header(now):
    msg = JointState().header
    msg.stamp = now.to_msg()
    return msg


def test_an_episode_becomes_one_readable_bag_with_its_interventions(ros_context, tmp_path: Path) -> None:
    graph = Graph(ros_context, tmp_path / "spool")
    try:
        time.sleep(0.5)  # discovery
        assert graph.call("/g1_test/episode/start").success
        for step in range(20):
            graph.publish_sensors_and_chunk(float(step))
            time.sleep(0.05)
        # The human takes over: at least ten commands 50 ms apart, until the mux has executed one.
        sent = 0
        deadline = time.monotonic() + 5.0
        while sent < 10 or (
            "human" not in [c.header.frame_id for c in graph.commands] and time.monotonic() < deadline
        ):
            msg = Intervention(active=True, source="joystick", action=[9.0, 9.0, 0.0])
            msg.header.stamp = graph.driver.get_clock().now().to_msg()
            graph.human.publish(msg)
            sent += 1
            time.sleep(0.05)
        stop = Intervention(active=False, source="joystick")
        stop.header.stamp = graph.driver.get_clock().now().to_msg()
        graph.human.publish(stop)
        # The policy's next chunks take over again (at least ten, until the mux has executed one
        # after the hand-back: judged by stamps, since on a loaded machine commands executed
        # before the hand-back can still be on their way).
        stop_ns = Time.from_msg(stop.header.stamp).nanoseconds

        def policy_resumed() -> bool:
            return any(
                c.header.frame_id == "policy" and Time.from_msg(c.header.stamp).nanoseconds > stop_ns
                for c in list(graph.commands)
            )

        deadline = time.monotonic() + 10.0
        step = 20
        while step < 30 or (not policy_resumed() and time.monotonic() < deadline):
            graph.publish_sensors_and_chunk(float(step))
            step += 1
            time.sleep(0.05)
        answer = graph.call("/g1_test/episode/succeed")
        assert answer.success, answer.message
        assert not graph.call("/g1_test/episode/succeed").success  # nothing runs any more
        deadline = time.monotonic() + 10.0
        ready = tmp_path / "spool" / "ready"
        while time.monotonic() < deadline and not (ready.exists() and any(ready.iterdir())):
            time.sleep(0.05)
    finally:
        graph.close()

    assert [e.kind for e in graph.events] == [EpisodeEvent.START, EpisodeEvent.END]
    assert graph.events[1].outcome == EpisodeEvent.OUTCOME_SUCCESS
    sources = [c.header.frame_id for c in graph.commands]
    assert "human" in sources and "policy" in sources
    last_human = len(sources) - 1 - sources[::-1].index("human")
    assert sources.index("policy") < sources.index("human")  # the policy acted first
    # ... and acted again after the hand-back (the tail says what ran instead when it did not).
    assert "policy" in sources[last_human:], f"{len(sources)} commands, the last ones: {sources[-12:]}"

    bags = list(ready.iterdir())
    assert [b.name for b in bags] == [graph.events[0].episode_id]
    custom = yaml.safe_load((bags[0] / "metadata.yaml").read_text())["rosbag2_bagfile_information"][
        "custom_data"
    ]
    assert custom["sop.outcome"] == "success" and custom["sop.task"] == "grocery_restock"
    assert custom["sop.intervention_count"] == "1"
    assert 0.45 <= float(custom["sop.intervention_s"]) <= 5.5

    counts: dict[str, int] = {}
    mcap_file = next(bags[0].glob("*.mcap"))
    with mcap_file.open("rb") as stream:
        reader = mcap_reader.make_reader(stream, decoder_factories=[mcap_ros2.DecoderFactory()])
        for _, channel, _, decoded in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic.endswith("/command"):
                assert list(decoded.name) == NAMES
    assert counts["/g1_test/action_chunk"] >= 25
    assert counts["/g1_test/camera/head/image_raw/compressed"] >= 25
    assert counts["/g1_test/intervention"] == len(graph.heard) == sent + 1  # every command and the stop
    assert counts["/g1_test/episode/events"] == 2  # START and END, both in the bag
    assert counts["/g1_test/instruction"] == 1  # published just before the START, kept all the same
    assert counts["/g1_test/command"] == len(graph.commands)  # every executed command is in the bag


def test_a_busy_recorder_logs_when_messages_arrived_not_when_it_got_to_them(
    ros_context, tmp_path: Path
) -> None:
    # The recorder's executor is busy for the whole of the operator's hold: both Intervention
    # messages are handled together, long after they arrived. The segment still spans the hold.
    spool = tmp_path / "spool"
    recorder = RecorderNode(
        context=ros_context,
        namespace="/g1_busy",
        parameter_overrides=[Parameter("spool_dir", value=str(spool))],
    )
    driver = rclpy.create_node("driver", context=ros_context, namespace="/g1_busy")
    events = driver.create_publisher(EpisodeEvent, topics.EPISODE_EVENTS, COMMAND_QOS)
    human = driver.create_publisher(Intervention, topics.INTERVENTION, COMMAND_QOS)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(recorder)

    def stamped(msg):
        msg.header.stamp = driver.get_clock().now().to_msg()
        return msg

    def event(kind: int) -> None:
        events.publish(
            stamped(
                EpisodeEvent(
                    kind=kind,
                    episode_id="g1_busy-ep",
                    robot_id="g1_busy",
                    task="grocery_restock",
                    outcome=EpisodeEvent.OUTCOME_SUCCESS,
                )
            )
        )

    def intervene(active: bool) -> int:
        msg = stamped(
            Intervention(active=active, source="joystick", action=[1.0, 1.0, 0.0] if active else [])
        )
        human.publish(msg)
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def spin_until(done, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        return done()

    try:
        assert spin_until(lambda: events.get_subscription_count() and human.get_subscription_count())
        event(EpisodeEvent.START)
        assert spin_until(lambda: (spool / "recording" / "g1_busy-ep.partial").exists())
        pressed = intervene(True)
        time.sleep(0.6)
        released = intervene(False)
        time.sleep(0.4)
        spin_until(lambda: False, timeout_s=0.5)
        event(EpisodeEvent.END)
        assert spin_until(lambda: (spool / "ready" / "g1_busy-ep").exists())
    finally:
        executor.shutdown()
        recorder.destroy_node()
        driver.destroy_node()

    (segment,) = episode_meta(spool / "ready" / "g1_busy-ep").interventions
    assert abs(segment.start_ns - pressed) < 0.1e9, (segment, pressed)
    assert abs(segment.end_ns - released) < 0.1e9, (segment, released)
