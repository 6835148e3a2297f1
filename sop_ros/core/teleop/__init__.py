"""Joystick teleoperation, free of ROS.

``sensor_msgs/Joy`` arrives as a :class:`JoySample` (axes, buttons, receive
time). The operator holds a deadman button to take control from the policy;
while held, each clock tick turns the sticks into an absolute target
(:mod:`~sop_ros.core.teleop.mapping`). Releasing the button, or the Joy stream
going quiet, hands control back with an explicit :class:`HandBack`
(:mod:`~sop_ros.core.teleop.machine`).
"""

from __future__ import annotations

from sop_ros.core.teleop.machine import (
    MAX_TICK_PERIODS,
    TRANSITIONS,
    EpisodeButton,
    HandBack,
    HandBackReason,
    JoySample,
    TakeOver,
    TeleopCommand,
    TeleopOutput,
    TeleopPhase,
    TeleopStateMachine,
    Trigger,
)
from sop_ros.core.teleop.mapping import (
    EpisodeRequest,
    JoyMapping,
    joy_buttons,
    joy_for_target,
    load_joy_mapping,
    shape_axis,
    target_from_axes,
    unshape_axis,
)

__all__ = [
    "MAX_TICK_PERIODS",
    "TRANSITIONS",
    "EpisodeButton",
    "EpisodeRequest",
    "HandBack",
    "HandBackReason",
    "JoyMapping",
    "JoySample",
    "TakeOver",
    "TeleopCommand",
    "TeleopOutput",
    "TeleopPhase",
    "TeleopStateMachine",
    "Trigger",
    "joy_buttons",
    "joy_for_target",
    "load_joy_mapping",
    "shape_axis",
    "target_from_axes",
    "unshape_axis",
]
