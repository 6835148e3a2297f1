"""The three tasks: what each randomises, its extra physics and how it is judged.

Each task is reach → grasp → carry → release at a goal that only the camera
shows, dressed differently and with its own twist:

- ``grocery_restock``: put the item into the one empty slot of a shelf.
- ``laundry_fold``: grab the tagged corner of a square cloth and drag it onto
  the opposite corner (a diagonal fold; pulled too far, the cloth slips away).
- ``box_assembly``: first push the box's open flap shut, then put the lid on;
  a lid dropped onto a box whose flap is still open jams and fails the episode.

Every task draws its layouts from one of two distributions (``conditions``):

- ``demonstrations``: what the offline demonstrations (and the packaged base
  policy) were recorded on.
- ``deployment``: where the fleet works, a part of the table the
  demonstrations never cover. grocery_restock: the shelf stands 7.5 cm nearer
  the robot (its slots at y = 0.38 m instead of 0.455 m) and the item starts
  in front of it. laundry_fold: a smaller cloth (side 12-15 cm instead of
  14-20 cm) lies near an edge of the table (centre 11-14 cm from it) instead
  of in the middle. box_assembly: the box stands in a corner (centre 11-14 cm
  from two edges, outside the demonstrations' 16-34 cm square) with its flap
  on a side facing the table's middle. The scripted expert solves both; a
  policy that learnt only the demonstrations' layouts does not (see the
  README's sim section for the figures).

Tasks are stateless singletons; all state lives in :class:`WorldState`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np

from sop_ros.core.errors import ConfigError
from sop_ros.sim.world import TABLE_M, Layout, Vec, WorldState, distance

__all__ = [
    "CONDITIONS",
    "TASKS",
    "BoxLayout",
    "ClothLayout",
    "GroceryLayout",
    "Task",
    "get_task",
]


# The layout distributions a task can draw from; the first is the demonstrations'.
CONDITIONS = ("demonstrations", "deployment")


def _uniform_point(rng: np.random.Generator, low: float, high: float) -> Vec:
    x, y = rng.uniform(low, high, size=2)
    return (float(x), float(y))


def _near_edge(rng: np.random.Generator, low: float, high: float) -> float:
    """A coordinate ``low``..``high`` from one edge of the table, either edge alike."""
    offset = float(rng.uniform(low, high))
    return offset if rng.random() < 0.5 else TABLE_M - offset


def _new_world(rng: np.random.Generator, layout: Layout, obj: Vec, *, flap_m: float = 0.0) -> WorldState:
    # The robot starts anywhere with any opening, so policies cannot count on a fixed start.
    ee = _uniform_point(rng, 0.05, TABLE_M - 0.05)
    gripper = float(rng.uniform(0.0, 0.08))
    return WorldState(layout=layout, ee=ee, gripper_m=gripper, obj=obj, flap_m=flap_m)


class Task:
    """One kind of episode. Subclasses fill in the layout, the extra physics and the judge."""

    name = ""
    instruction = ""
    layout_type: type[Layout] = Layout
    # Time the episode may last, in seconds (the step budget depends on the control period).
    budget_s = 0.0
    # How close to the goal the object must come to rest (m).
    place_tolerance_m = 0.04

    def budget_steps(self, period_s: float) -> int:
        """Number of control steps the episode may last at ``period_s``."""
        return max(1, round(self.budget_s / period_s))

    def new_world(self, rng: np.random.Generator, conditions: str = "demonstrations") -> WorldState:
        """Draw a random initial state from the ``conditions``' layout distribution (:data:`CONDITIONS`)."""
        if conditions == "demonstrations":
            return self.demonstration_world(rng)
        if conditions == "deployment":
            return self.deployment_world(rng)
        raise ConfigError(f"unknown conditions {conditions!r}; choose from {', '.join(CONDITIONS)}")

    def demonstration_world(self, rng: np.random.Generator) -> WorldState:
        """Draw an initial state as the demonstrations saw them."""
        raise NotImplementedError

    def deployment_world(self, rng: np.random.Generator) -> WorldState:
        """Draw an initial state of the deployment conditions (outside the demonstrations')."""
        raise NotImplementedError

    def after_move(self, before: WorldState, after: WorldState) -> WorldState:
        """Apply the task's own physics to a step and judge the result."""
        placed = not after.held and distance(after.obj, after.layout.goal) <= self.place_tolerance_m
        return replace(after, success=placed, stage=self._stage(after, placed))

    def _stage(self, world: WorldState, placed: bool) -> str:
        if placed:
            return "done"
        return "carry" if world.held else "reach"


@dataclass(frozen=True, kw_only=True)
class GroceryLayout(Layout):
    """A shelf along the far edge with one empty slot (the goal)."""

    slots: tuple[Vec, ...]
    empty_slot: int
    # Index into the renderer's product palette, one per slot (ignored for the empty one).
    products: tuple[int, ...]


class GroceryRestock(Task):
    """Put the item into the shelf's empty slot."""

    name = "grocery_restock"
    layout_type = GroceryLayout
    instruction = "put the red item into the empty slot on the shelf"
    budget_s = 9.0
    SLOT_Y = 0.455
    DEPLOYMENT_SLOT_Y = 0.38
    SLOT_XS = (0.07, 0.16, 0.25, 0.34, 0.43)

    def demonstration_world(self, rng: np.random.Generator) -> WorldState:
        """Draw the empty slot, the shelf's other products and the item's place."""
        return self._world(rng, self.SLOT_Y, item_y_max=0.33)

    def deployment_world(self, rng: np.random.Generator) -> WorldState:
        """As the demonstrations, with the shelf nearer the robot and the item in front of it."""
        return self._world(rng, self.DEPLOYMENT_SLOT_Y, item_y_max=0.26)

    def _world(self, rng: np.random.Generator, slot_y: float, *, item_y_max: float) -> WorldState:
        empty = int(rng.integers(len(self.SLOT_XS)))
        slots = tuple((x, slot_y) for x in self.SLOT_XS)
        products = tuple(int(p) for p in rng.integers(0, 4, size=len(slots)))
        layout = GroceryLayout(goal=slots[empty], slots=slots, empty_slot=empty, products=products)
        item = (float(rng.uniform(0.05, 0.45)), float(rng.uniform(0.05, item_y_max)))
        return _new_world(rng, layout, item)


@dataclass(frozen=True, kw_only=True)
class ClothLayout(Layout):
    """A square cloth; ``goal`` is corner C, the object is corner A, B and D stay put."""

    corner_b: Vec
    corner_d: Vec
    side_m: float


class LaundryFold(Task):
    """Fold a square cloth along its diagonal by dragging corner A onto corner C."""

    name = "laundry_fold"
    layout_type = ClothLayout
    instruction = "fold the cloth: move the red corner onto the other corner"
    budget_s = 7.0
    # Pulled farther than this times its side from B or D, the cloth slips out of the fingers.
    STRETCH_LIMIT = 1.25

    def demonstration_world(self, rng: np.random.Generator) -> WorldState:
        """Draw the cloth's centre, size and rotation."""
        centre = _uniform_point(rng, 0.15, 0.35)
        return self._world(rng, centre, float(rng.uniform(0.14, 0.2)))

    def deployment_world(self, rng: np.random.Generator) -> WorldState:
        """A smaller cloth near one of the table's edges (anywhere along it)."""
        across, along = _near_edge(rng, 0.11, 0.14), float(rng.uniform(0.11, TABLE_M - 0.11))
        centre = (across, along) if rng.random() < 0.5 else (along, across)
        return self._world(rng, centre, float(rng.uniform(0.12, 0.15)))

    def _world(self, rng: np.random.Generator, centre: Vec, side: float) -> WorldState:
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        c, s = math.cos(angle), math.sin(angle)

        def corner(u: float, v: float) -> Vec:
            return (centre[0] + c * u - s * v, centre[1] + s * u + c * v)

        half = side / 2
        a, b, cc, d = corner(-half, -half), corner(half, -half), corner(half, half), corner(-half, half)
        return _new_world(rng, ClothLayout(goal=cc, corner_b=b, corner_d=d, side_m=side), a)

    def after_move(self, before: WorldState, after: WorldState) -> WorldState:
        """Let the corner slip when the cloth is stretched, then judge."""
        layout = after.layout
        assert isinstance(layout, ClothLayout)
        limit = self.STRETCH_LIMIT * layout.side_m
        if (
            after.held
            and max(distance(after.obj, layout.corner_b), distance(after.obj, layout.corner_d)) > limit
        ):
            after = replace(after, held=False)
        return super().after_move(before, after)

    def _stage(self, world: WorldState, placed: bool) -> str:
        if placed:
            return "done"
        return "fold" if world.held else "reach_corner"


@dataclass(frozen=True, kw_only=True)
class BoxLayout(Layout):
    """A box (centre ``goal``) with one flap sticking out along ``flap_normal``."""

    half_m: float
    flap_normal: Vec
    flap_width_m: float
    flap_length_m: float

    @property
    def hinge(self) -> Vec:
        """Middle of the edge the flap hangs from."""
        n = self.flap_normal
        return (self.goal[0] + n[0] * self.half_m, self.goal[1] + n[1] * self.half_m)

    def flap_coords(self, point: Vec) -> tuple[float, float]:
        """Return (across, out): ``point`` relative to the hinge, across the flap and outward."""
        n, h = self.flap_normal, self.hinge
        dx, dy = point[0] - h[0], point[1] - h[1]
        return (-n[1] * dx + n[0] * dy, n[0] * dx + n[1] * dy)


class BoxAssembly(Task):
    """Push the flap shut, then put the lid onto the box."""

    name = "box_assembly"
    layout_type = BoxLayout
    instruction = "close the box: push the flap in, then put the lid on the box"
    budget_s = 11.0
    # The flap counts as shut (and snaps flat) once pushed to this fraction of its length.
    SHUT_FRACTION = 0.25
    NORMALS = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))
    LID_HALF_M = 0.05

    def demonstration_world(self, rng: np.random.Generator) -> WorldState:
        """Draw the box's place, its flap side and the lid's place clear of both."""
        centre = _uniform_point(rng, 0.16, 0.34)
        return self._world(rng, centre, self.NORMALS)

    def deployment_world(self, rng: np.random.Generator) -> WorldState:
        """The box in a corner of the table, its flap on one of the two sides facing the middle."""
        centre = (_near_edge(rng, 0.11, 0.14), _near_edge(rng, 0.11, 0.14))
        middle = TABLE_M / 2
        inward = tuple(
            n for n in self.NORMALS if n[0] * (middle - centre[0]) + n[1] * (middle - centre[1]) > 0
        )
        return self._world(rng, centre, inward)

    def _world(self, rng: np.random.Generator, centre: Vec, normals: tuple[Vec, ...]) -> WorldState:
        normal = normals[int(rng.integers(len(normals)))]
        layout = BoxLayout(
            goal=centre, half_m=0.06, flap_normal=normal, flap_width_m=0.08, flap_length_m=0.06
        )
        flap_mid = (layout.hinge[0] + normal[0] * 0.03, layout.hinge[1] + normal[1] * 0.03)
        while True:
            lid = _uniform_point(rng, 0.06, TABLE_M - 0.06)
            box_gap = max(abs(lid[0] - centre[0]), abs(lid[1] - centre[1]))
            if box_gap > layout.half_m + self.LID_HALF_M + 0.02 and distance(lid, flap_mid) > 0.11:
                break
        return _new_world(rng, layout, lid, flap_m=layout.flap_length_m)

    def after_move(self, before: WorldState, after: WorldState) -> WorldState:
        """Push the flap in as far as the gripper moves over it toward the box; judge the lid."""
        layout = after.layout
        assert isinstance(layout, BoxLayout)
        flap = after.flap_m
        if flap > 0.0:
            across_before, out_before = layout.flap_coords(before.ee)
            across, out = layout.flap_coords(after.ee)
            in_band = abs(across) <= layout.flap_width_m / 2 and abs(across_before) <= layout.flap_width_m / 2
            if in_band and out < flap and out < out_before:
                flap = max(out, 0.0)
                if flap <= self.SHUT_FRACTION * layout.flap_length_m:
                    flap = 0.0
        after = replace(after, flap_m=flap)
        released = before.held and not after.held
        on_box = max(abs(after.obj[0] - layout.goal[0]), abs(after.obj[1] - layout.goal[1])) <= layout.half_m
        if released and on_box and flap > 0.0:
            return replace(after, failed=True, stage="lid_jammed")
        if flap > 0.0:
            return replace(after, stage="push_flap")
        return super().after_move(before, after)

    def _stage(self, world: WorldState, placed: bool) -> str:
        if placed:
            return "done"
        return "carry_lid" if world.held else "reach_lid"


TASKS: Mapping[str, Task] = MappingProxyType(
    {task.name: task for task in (GroceryRestock(), LaundryFold(), BoxAssembly())}
)


def get_task(name: str) -> Task:
    """Return the task called ``name``; raises ConfigError listing the known names."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
