"""episode_manager: starts and ends episodes, labels their outcome.

Publishes ``episode/events`` (START / END / ABORT) and the latched
``instruction``. Episodes end on operator requests (services
``episode/start``, ``episode/succeed``, ``episode/fail``, ``episode/abort``,
all ``std_srvs/Trigger``: the teleop node calls them from joystick buttons),
on the task's time budget, or on a success signal (``task/success``,
``std_msgs/Bool``). With ``auto_start`` the next episode starts ``pause_s``
after the last one ended, as a fleet in continuous operation does.

Threads: all callbacks share the default mutually exclusive group, so the
episode clock is only touched by one thread at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from sop_msgs.msg import EpisodeEvent as EpisodeEventMsg
from sop_msgs.msg import PolicyStatus
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from sop_ros.core import topics
from sop_ros.core.config import check_ranges, setting
from sop_ros.core.episode import EpisodeClock, EpisodeConfig, EpisodeEvent, Phase
from sop_ros.core.errors import InputError
from sop_ros.core.types import Outcome
from sop_ros.nodes.common import COMMAND_QOS, LATCHED_QOS, Diagnostics, run_node
from sop_ros.nodes.convert import event_kind_to_msg, ns_to_stamp, outcome_to_msg
from sop_ros.nodes.params import declare_config

__all__ = ["EpisodeManagerConfig", "EpisodeManagerNode", "main"]


@dataclass(frozen=True, kw_only=True)
class EpisodeManagerConfig:
    """Parameters of the episode manager."""

    auto_start: bool = setting(False, "start the next episode by itself after pause_s")
    pause_s: float = setting(1.0, "pause between episodes with auto_start", unit="s", low=0.0)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)

    def __post_init__(self) -> None:
        check_ranges(self)


class EpisodeManagerNode(Node):
    """Own the episode state machine and announce its transitions."""

    def __init__(self, **kwargs) -> None:
        super().__init__("episode_manager", **kwargs)
        self.config = declare_config(self, EpisodeManagerConfig)
        self._episodes = EpisodeClock(self.config.episodes)
        self._policy_version = ""
        self._idle_since_ns = self.get_clock().now().nanoseconds
        self._finished = 0
        self._events = self.create_publisher(EpisodeEventMsg, topics.EPISODE_EVENTS, COMMAND_QOS)
        self._instruction = self.create_publisher(String, topics.INSTRUCTION, LATCHED_QOS)
        self.create_subscription(PolicyStatus, topics.POLICY_STATUS, self._on_status, LATCHED_QOS)
        self.create_subscription(Bool, topics.TASK_SUCCESS, self._on_success, COMMAND_QOS)
        self.create_service(Trigger, topics.EPISODE_START, self._srv(self._start))
        self.create_service(
            Trigger,
            topics.EPISODE_SUCCEED,
            self._srv(lambda now: self._episodes.end(now, Outcome.SUCCESS, "operator")),
        )
        self.create_service(
            Trigger,
            topics.EPISODE_FAIL,
            self._srv(lambda now: self._episodes.end(now, Outcome.FAILURE, "operator")),
        )
        self.create_service(
            Trigger, topics.EPISODE_ABORT, self._srv(lambda now: self._episodes.abort(now, "operator"))
        )
        self.create_timer(0.05, self._tick)
        self._diagnostics = Diagnostics(self, self._report)

    def _start(self, now_ns: int) -> EpisodeEvent:
        return self._episodes.start(now_ns, self._policy_version)

    def _srv(self, transition):
        def handle(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            try:
                event = transition(self.get_clock().now().nanoseconds)
            except InputError as err:
                response.success, response.message = False, str(err)
                return response
            self._announce(event)
            response.success, response.message = True, f"{event.kind.value} {event.episode_id}"
            return response

        return handle

    def _on_status(self, msg: PolicyStatus) -> None:
        self._policy_version = msg.active_version

    def _on_success(self, msg: Bool) -> None:
        if msg.data and self._episodes.phase is Phase.RUNNING:
            self._announce(
                self._episodes.end(self.get_clock().now().nanoseconds, Outcome.SUCCESS, "task succeeded")
            )

    def _tick(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        event = self._episodes.tick(now_ns)
        if event is not None:
            self._announce(event)
        elif (
            self.config.auto_start
            and self._episodes.phase is Phase.IDLE
            and (now_ns - self._idle_since_ns) / 1e9 >= self.config.pause_s
        ):
            self._announce(self._start(now_ns))

    def _announce(self, event: EpisodeEvent) -> None:
        if self._episodes.phase is Phase.RUNNING:
            self._instruction.publish(String(data=event.task.instruction))
        else:
            self._idle_since_ns = event.stamp_ns
            self._finished += 1
        msg = EpisodeEventMsg(
            kind=event_kind_to_msg(event.kind),
            episode_id=event.episode_id,
            robot_id=event.robot_id,
            task=event.task.name,
            instruction=event.task.instruction,
            outcome=outcome_to_msg(event.outcome),
            policy_version=event.policy_version,
        )
        msg.header.stamp = ns_to_stamp(event.stamp_ns)
        self._events.publish(msg)
        reason = f" ({event.reason})" if event.reason else ""
        self.get_logger().info(
            f"episode {event.episode_id} {event.kind.value}: task {event.task.name}, "
            f"outcome {event.outcome.value}{reason}"
        )

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        current = self._episodes.current
        message = f"running {current.episode_id} ({current.task.name})" if current else "idle"
        return DiagnosticStatus.OK, message, [("episodes_finished", str(self._finished))]


def main(args: list[str] | None = None) -> None:
    """Run the episode manager node."""
    run_node(EpisodeManagerNode, args)


if __name__ == "__main__":
    main()
