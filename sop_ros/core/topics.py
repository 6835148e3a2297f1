"""Topic and service names of the robot graph, relative to the robot's namespace.

One table, used by the nodes that publish and subscribe, by the recorder that
writes them to bags and by the learner that reads them back, so a rename
happens in one place.
"""

from __future__ import annotations

__all__ = [
    "ACTION_CHUNK",
    "COMMAND",
    "DIAGNOSTICS",
    "EPISODE_ABORT",
    "EPISODE_EVENTS",
    "EPISODE_FAIL",
    "EPISODE_START",
    "EPISODE_SUCCEED",
    "INSTRUCTION",
    "INTERVENTION",
    "JOINT_STATES",
    "JOY",
    "POLICY_ACTIVATE",
    "POLICY_STAGE",
    "POLICY_STATUS",
    "TASK_SUCCESS",
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
# std_msgs/Bool: a success detector (or the simulator) saw the task done; ends the episode.
TASK_SUCCESS = "task/success"

# Services. std_srvs/Trigger, served by the episode manager (the teleop buttons call them).
EPISODE_START = "episode/start"
EPISODE_SUCCEED = "episode/succeed"
EPISODE_FAIL = "episode/fail"
EPISODE_ABORT = "episode/abort"
# sop_msgs/StageWeights and sop_msgs/ActivateWeights, served by the policy node.
POLICY_STAGE = "policy/stage"
POLICY_ACTIVATE = "policy/activate"


def camera_topic(camera: str, *, compressed: bool = True) -> str:
    """Return the image topic of ``camera`` (``CompressedImage`` JPEG when compressed)."""
    base = f"camera/{camera}/image_raw"
    return f"{base}/compressed" if compressed else base
