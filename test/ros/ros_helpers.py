"""Small helpers shared by the tests that run real nodes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import rclpy
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, JointState
from sop_msgs.msg import ActionChunk, EpisodeEvent, PolicyStatus

from sop_ros.core import topics
from sop_ros.nodes.common import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from sop_ros.nodes.spinning import NodeSpinners


@contextlib.contextmanager
def spinning(context, *nodes: Node) -> Iterator[None]:
    """Spin each node on an executor of its own, as ``sop robot`` does; destroy them after."""
    spinners = NodeSpinners(context)
    for node in nodes:
        spinners.add(node)
    spinners.start()
    try:
        yield
    finally:
        spinners.shutdown()
        for node in nodes:
            node.destroy_node()


def wait_for(predicate: Callable[[], object], timeout_s: float = 20.0, poll_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout_s`` passes; return whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chunk_versions(bag: Path) -> set[str]:
    """Weights versions of the action chunks recorded in ``bag`` (read with the mcap reader)."""
    versions = set()
    with next(bag.glob("*.mcap")).open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, _, msg in reader.iter_decoded_messages():
            if channel.topic.endswith("/action_chunk"):
                versions.add(msg.policy_version)
    return versions


class FakeRobot:
    """A robot as the policy node sees it: camera ``head`` and joints at 20 Hz, episode events, services.

    Args:
        context: The rclpy context of the test.
        pixels: The camera's picture (sent as JPEG, stamped now).
        joints: Joint names of the joint states.
        position: Their positions.
        instruction: What each episode's START asks for.
    """

    def __init__(
        self, context, *, pixels: np.ndarray, joints: list[str], position: list[float], instruction: str
    ) -> None:
        self.node = rclpy.create_node("fake_robot", context=context)
        self.chunks: list[ActionChunk] = []
        self.status: list[PolicyStatus] = []
        self.node.create_subscription(ActionChunk, topics.ACTION_CHUNK, self.chunks.append, COMMAND_QOS)
        self.node.create_subscription(PolicyStatus, topics.POLICY_STATUS, self.status.append, LATCHED_QOS)
        self.events = self.node.create_publisher(EpisodeEvent, topics.EPISODE_EVENTS, COMMAND_QOS)
        self.image = self.node.create_publisher(CompressedImage, topics.camera_topic("head"), SENSOR_QOS)
        self.joints = self.node.create_publisher(JointState, topics.JOINT_STATES, SENSOR_QOS)
        self.jpeg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", pixels)[1].tobytes())
        self.joint_names = joints
        self.position = position
        self.instruction = instruction
        # Cleared, the sensors go quiet.
        self.sensing = threading.Event()
        self.sensing.set()
        self.node.create_timer(0.05, self._publish_sensors)

    def _publish_sensors(self) -> None:
        if not self.sensing.is_set():
            return
        stamp = self.node.get_clock().now().to_msg()
        self.jpeg.header.stamp = stamp
        self.image.publish(self.jpeg)
        joints = JointState(name=self.joint_names, position=self.position)
        joints.header.stamp = stamp
        self.joints.publish(joints)

    def episode(self, kind: int, episode_id: str) -> None:
        msg = EpisodeEvent(
            kind=kind, episode_id=episode_id, robot_id="r", task="t", instruction=self.instruction
        )
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.events.publish(msg)

    def call(self, srv_type, name: str, request):
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=20.0)
        future = client.call_async(request)
        assert wait_for(future.done, 60.0)
        return future.result()
