"""Joystick in, interventions and episode requests out, through real nodes."""

from __future__ import annotations

import time

import rclpy
from rclpy.parameter import Parameter
from ros_helpers import spinning, wait_for
from sensor_msgs.msg import JointState, Joy
from sop_msgs.msg import EpisodeEvent, Intervention

from sop_ros.core import topics
from sop_ros.nodes.common import COMMAND_QOS, SENSOR_QOS
from sop_ros.nodes.episode_manager_node import EpisodeManagerNode
from sop_ros.nodes.teleop_node import TeleopNode

DEADMAN, START, SUCCESS = 4, 7, 0


def test_deadman_drives_the_robot_and_buttons_run_episodes(ros_context) -> None:
    teleop = TeleopNode(context=ros_context)
    manager = EpisodeManagerNode(
        context=ros_context,
        parameter_overrides=[Parameter("episodes.robot_id", value="g1")],
    )
    driver = rclpy.create_node("joystick_driver", context=ros_context)
    interventions: list[Intervention] = []
    events: list[EpisodeEvent] = []
    driver.create_subscription(Intervention, topics.INTERVENTION, interventions.append, COMMAND_QOS)
    driver.create_subscription(EpisodeEvent, topics.EPISODE_EVENTS, events.append, COMMAND_QOS)
    joy = driver.create_publisher(Joy, topics.JOY, SENSOR_QOS)
    joints = driver.create_publisher(JointState, topics.JOINT_STATES, SENSOR_QOS)

    def press(buttons: dict[int, int], axes: tuple[float, ...] = (0.0,) * 8, repeat: int = 1) -> None:
        for _ in range(repeat):
            state = [0] * 11
            for index, value in buttons.items():
                state[index] = value
            joy.publish(Joy(axes=list(axes), buttons=state))
            joints.publish(JointState(name=["ee_x", "ee_y", "gripper"], position=[0.25, 0.25, 0.04]))
            time.sleep(1 / 30)

    with spinning(ros_context, teleop, manager, driver):
        time.sleep(0.5)
        press({START: 1}, repeat=3)  # held for three messages: one request
        press({}, repeat=2)
        assert wait_for(lambda: len(events) == 1)
        assert events[0].kind == EpisodeEvent.START and events[0].robot_id == "g1"

        # Full deflection up on the left stick (axis 1) moves ee_y away from the robot.
        press({DEADMAN: 1}, axes=(0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), repeat=15)
        active = [m for m in interventions if m.active]
        assert len(active) >= 5
        ys = [m.action[1] for m in active]
        assert ys[-1] > ys[0] > 0.25 - 1e-6 and all(abs(m.action[0] - 0.25) < 1e-6 for m in active)

        press({}, repeat=2)  # release: one explicit hand-back
        assert wait_for(lambda: not interventions[-1].active)
        assert sum(not m.active for m in interventions) == 1

        # Take over again (hold until the teleop has sent a command), then the joystick goes silent.
        assert wait_for(lambda: press({DEADMAN: 1}) or interventions[-1].active)
        assert wait_for(lambda: not interventions[-1].active)

        press({SUCCESS: 1}, repeat=2)
        assert wait_for(lambda: len(events) == 2)
        assert events[1].kind == EpisodeEvent.END and events[1].outcome == EpisodeEvent.OUTCOME_SUCCESS
