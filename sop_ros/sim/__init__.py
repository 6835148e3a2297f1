"""A simulated table-top robot for learning and testing without hardware.

Three tasks (``grocery_restock``, ``laundry_fold``, ``box_assembly``), cameras
rendered with OpenCV, a scripted expert that solves the tasks, and a
:class:`JoystickOperator` through which that expert plays the human who takes
over from the policy with a joystick. Pure Python: the ROS node that wraps it
lives in ``sop_ros.nodes``.
"""

from __future__ import annotations

from sop_ros.sim.config import CAMERAS, TASK_NAMES, ExpertConfig, SimConfig
from sop_ros.sim.env import SimEnv, SimObservation
from sop_ros.sim.errors import SimError
from sop_ros.sim.expert import InterventionGate, ScriptedExpert
from sop_ros.sim.operator import JoyFrame, JoystickOperator
from sop_ros.sim.render import Renderer
from sop_ros.sim.tasks import TASKS, Task, get_task
from sop_ros.sim.world import ACTION_NAMES, WorldState

__all__ = [
    "ACTION_NAMES",
    "CAMERAS",
    "TASKS",
    "TASK_NAMES",
    "ExpertConfig",
    "InterventionGate",
    "JoyFrame",
    "JoystickOperator",
    "Renderer",
    "ScriptedExpert",
    "SimConfig",
    "SimEnv",
    "SimError",
    "SimObservation",
    "Task",
    "WorldState",
    "get_task",
]
