"""Every sop_msgs type crosses a process boundary over real DDS, field for field."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from sop_msgs.msg import ActionChunk, EpisodeEvent, Intervention, PolicyStatus
from sop_msgs.srv import ActivateWeights, StageWeights

sys.path.insert(0, str(Path(__file__).parent / "peers"))
from msgs_peer import filled_messages

TYPES = {"chunk": ActionChunk, "intervention": Intervention, "event": EpisodeEvent, "status": PolicyStatus}


def _spin_until(executor: SingleThreadedExecutor, done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)


def test_every_message_type_round_trips(ros_context, peer) -> None:
    child = peer("msgs_peer")
    node = rclpy.create_node("roundtrip_listener", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    received: dict[str, object] = {}
    for topic, msg_type in TYPES.items():
        node.create_subscription(
            msg_type, f"roundtrip/{topic}", lambda msg, topic=topic: received.setdefault(topic, msg), 10
        )
    _spin_until(executor, lambda: len(received) == len(TYPES), timeout_s=20.0)
    assert child.poll() is None, child.stdout.read()
    assert set(received) == set(TYPES), f"missing: {set(TYPES) - set(received)}"
    expected = filled_messages()
    for topic, msg in received.items():
        assert msg == expected[topic], topic
    assert list(received["chunk"].actions) == [0.5, -1.0, 2.0, 3.25]
    executor.shutdown()
    node.destroy_node()


def test_weight_services_answer_across_processes(ros_context, peer) -> None:
    peer("msgs_peer")
    node = rclpy.create_node("roundtrip_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    stage = node.create_client(StageWeights, "roundtrip/stage")
    activate = node.create_client(ActivateWeights, "roundtrip/activate")
    assert stage.wait_for_service(timeout_sec=20.0)
    assert activate.wait_for_service(timeout_sec=20.0)

    future = stage.call_async(
        StageWeights.Request(path="/tmp/w.safetensors", version="v0004", sha256="ab" * 32)
    )
    executor.spin_until_future_complete(future, timeout_sec=10.0)
    assert future.result().accepted
    assert future.result().message == "staged v0004 from /tmp/w.safetensors"

    future = activate.call_async(ActivateWeights.Request(version="v0004"))
    executor.spin_until_future_complete(future, timeout_sec=10.0)
    answer = future.result()
    assert (answer.accepted, answer.deferred) == (True, True)
    executor.shutdown()
    node.destroy_node()
