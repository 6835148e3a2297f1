"""The simulated table's true state and the robot physics every task shares.

The table is a square of side :data:`TABLE_M` seen from above: x to the right,
y away from the robot (up in the head camera image). The robot is a gripper at
(x, y) with an opening; it carries at most one object. States are immutable
values, so a step returns a new state and a snapshot handed to the expert or
another thread can never change under it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = [
    "ACTION_NAMES",
    "CLOSE_BELOW_M",
    "GRASP_RADIUS_M",
    "GRIPPER_MAX_M",
    "OPEN_ABOVE_M",
    "TABLE_M",
    "Layout",
    "Vec",
    "WorldState",
    "distance",
    "move_robot",
]

# Action and state share these names: absolute targets in, measured values out.
ACTION_NAMES = ("ee_x", "ee_y", "gripper")
TABLE_M = 0.5
GRIPPER_MAX_M = 0.08
# The fingers grasp when the opening falls through CLOSE_BELOW_M within
# GRASP_RADIUS_M of the object, centring it between them, and let go when it
# rises above OPEN_ABOVE_M; the gap keeps a grasp from chattering when a policy
# hovers around one value.
CLOSE_BELOW_M = 0.02
OPEN_ABOVE_M = 0.04
GRASP_RADIUS_M = 0.04

Vec = tuple[float, float]


def distance(a: Vec, b: Vec) -> float:
    """Euclidean distance between two table points (m)."""
    return math.hypot(a[0] - b[0], a[1] - b[1])


@dataclass(frozen=True, kw_only=True)
class Layout:
    """What a task randomises at reset and never moves afterwards."""

    # Where the carried object must end up (m).
    goal: Vec


@dataclass(frozen=True, kw_only=True)
class WorldState:
    """Everything true about the table at one control step."""

    layout: Layout
    ee: Vec
    gripper_m: float
    # The object the task is about: grocery item, cloth corner or box lid.
    obj: Vec
    held: bool = False
    # Task-specific progress (box flap length; 0 where unused).
    flap_m: float = 0.0
    step: int = 0
    success: bool = False
    failed: bool = False
    stage: str = ""

    @property
    def done(self) -> bool:
        """True once the episode has ended one way or the other (budget aside)."""
        return self.success or self.failed

    @property
    def robot_state(self) -> tuple[float, float, float]:
        """The measured values, in :data:`ACTION_NAMES` order."""
        return (self.ee[0], self.ee[1], self.gripper_m)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def move_robot(
    world: WorldState,
    target: tuple[float, float, float],
    *,
    period_s: float,
    max_speed_m_s: float,
    gripper_speed_m_s: float,
) -> WorldState:
    """Move the gripper one control step toward an absolute ``target`` and update the grasp.

    The target is clamped to the table and the motion to the speed limits, so a
    policy that asks for a far point gets there over several steps.

    Args:
        world: State before the step.
        target: (x m, y m, opening m) the robot should reach.
        period_s: Length of the step.
        max_speed_m_s: Speed limit in the table plane.
        gripper_speed_m_s: Speed limit of the opening.

    Returns:
        The state after the step, with ``step`` advanced by one.
    """
    tx = _clamp(target[0], 0.0, TABLE_M)
    ty = _clamp(target[1], 0.0, TABLE_M)
    tg = _clamp(target[2], 0.0, GRIPPER_MAX_M)
    dx, dy = tx - world.ee[0], ty - world.ee[1]
    reach = max_speed_m_s * period_s
    norm = math.hypot(dx, dy)
    if norm > reach:
        dx, dy = dx * reach / norm, dy * reach / norm
    ee = (world.ee[0] + dx, world.ee[1] + dy)
    g_step = gripper_speed_m_s * period_s
    gripper = world.gripper_m + _clamp(tg - world.gripper_m, -g_step, g_step)

    held, obj = world.held, world.obj
    closing_through = world.gripper_m > CLOSE_BELOW_M >= gripper
    if not held and closing_through and distance(ee, obj) <= GRASP_RADIUS_M:
        held = True
    elif held and gripper > OPEN_ABOVE_M:
        held = False
    if held:
        obj = ee
    return replace(world, ee=ee, gripper_m=gripper, obj=obj, held=held, step=world.step + 1)
