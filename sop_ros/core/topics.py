"""Topic names of the robot graph, relative to the robot's namespace.

One table, used by the nodes that publish and subscribe, by the recorder that
writes them to bags and by the learner that reads them back, so a rename
happens in one place.
"""

from __future__ import annotations

__all__ = [
    "ACTION_CHUNK",
    "COMMAND",
    "DIAGNOSTICS",
    "EPISODE_EVENTS",
    "INSTRUCTION",
    "INTERVENTION",
    "JOINT_STATES",
    "JOY",
    "POLICY_STATUS",
    "camera_topic",
]

# sensor_msgs/JointState: measured joint positions (rad, m), sensor-data QoS.
JOINT_STATES = "joint_states"
# sensor_msgs/JointState: the command the robot driver executes, after the mux
# (position = action values, name = action names). One message per control step.
COMMAND = "command"
# sop_msgs/ActionChunk: every chunk the policy produced.
ACTION_CHUNK = "action_chunk"
# sop_msgs/Intervention: human commands while the deadman is held, then one stop.
INTERVENTION = "intervention"
# sop_msgs/EpisodeEvent: START / END / ABORT.
EPISODE_EVENTS = "episode/events"
# std_msgs/String: the current task instruction (latched).
INSTRUCTION = "instruction"
# sop_msgs/PolicyStatus (latched).
POLICY_STATUS = "policy/status"
# sensor_msgs/Joy, as published by the standard joy driver.
JOY = "joy"
# diagnostic_msgs/DiagnosticArray, absolute as ROS tools expect.
DIAGNOSTICS = "/diagnostics"


def camera_topic(camera: str, *, compressed: bool = True) -> str:
    """Return the image topic of ``camera`` (``CompressedImage`` JPEG when compressed)."""
    base = f"camera/{camera}/image_raw"
    return f"{base}/compressed" if compressed else base
