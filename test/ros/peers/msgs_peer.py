"""A second process for the sop_msgs round-trip test.

Publishes one filled message of every sop_msgs type until the test process
tells it to stop, and serves the weight services with fixed answers.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sop_msgs.msg import ActionChunk, EpisodeEvent, Intervention, PolicyStatus
from sop_msgs.srv import ActivateWeights, StageWeights
from std_msgs.msg import Empty


def filled_messages() -> dict[str, object]:
    chunk = ActionChunk(
        policy_version="v0003",
        action_names=["a", "b"],
        horizon=2,
        action_dim=2,
        actions=[0.5, -1.0, 2.0, 3.25],
        control_period=0.05,
        infer_ms=12.5,
    )
    chunk.header.stamp.sec = 7
    intervention = Intervention(active=True, source="joystick", action=[0.1, 0.2])
    event = EpisodeEvent(
        kind=EpisodeEvent.END,
        episode_id="robot1-20261125T000000-deadbeef",
        robot_id="robot1",
        task="grocery_restock",
        instruction="put the can on the shelf",
        outcome=EpisodeEvent.OUTCOME_SUCCESS,
        policy_version="v0003",
    )
    status = PolicyStatus(
        active_version="v0003",
        staged_version="v0004",
        episode_running=True,
        inference_rate=9.5,
        inference_latency_ms=21.0,
    )
    return {"chunk": chunk, "intervention": intervention, "event": event, "status": status}


class MsgsPeer(Node):
    def __init__(self) -> None:
        super().__init__("msgs_peer")
        self._publishers = {
            topic: self.create_publisher(type(msg), f"roundtrip/{topic}", 10)
            for topic, msg in filled_messages().items()
        }
        self.create_timer(0.1, self._publish)
        self.create_subscription(Empty, "roundtrip/stop", lambda _: sys.exit(0), 1)
        self.create_service(StageWeights, "roundtrip/stage", self._stage)
        self.create_service(ActivateWeights, "roundtrip/activate", self._activate)

    def _publish(self) -> None:
        for topic, msg in filled_messages().items():
            self._publishers[topic].publish(msg)

    def _stage(self, request: StageWeights.Request, response: StageWeights.Response) -> StageWeights.Response:
        response.accepted = request.sha256 == "ab" * 32
        response.message = f"staged {request.version} from {request.path}"
        return response

    def _activate(
        self, request: ActivateWeights.Request, response: ActivateWeights.Response
    ) -> ActivateWeights.Response:
        response.accepted = True
        response.deferred = True
        response.message = f"{request.version} waits for the episode end"
        return response


def main() -> None:
    rclpy.init()
    node = MsgsPeer()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
