"""Task rules: grasping, placing, the cloth slipping and the box flap, on hand-built worlds."""

from __future__ import annotations

import numpy as np
import pytest

from sop_ros.core.errors import ConfigError
from sop_ros.sim import TASK_NAMES, TASKS, WorldState, get_task
from sop_ros.sim.tasks import BoxLayout, ClothLayout, GroceryLayout, Task
from sop_ros.sim.world import move_robot

OPEN, CLOSED = 0.08, 0.0


def step(task: Task, world: WorldState, x: float, y: float, g: float) -> WorldState:
    after = move_robot(
        world,
        (x, y, g),
        period_s=0.1,
        max_speed_m_s=0.25,
        gripper_speed_m_s=0.5,
    )
    return task.after_move(world, after)


def grocery_world(**kw) -> WorldState:
    slots = tuple((x, 0.455) for x in (0.07, 0.16, 0.25, 0.34, 0.43))
    layout = GroceryLayout(goal=slots[2], slots=slots, empty_slot=2, products=(0, 1, 2, 3, 0))
    return WorldState(layout=layout, **{"ee": (0.1, 0.1), "gripper_m": OPEN, "obj": (0.1, 0.1), **kw})


def test_every_task_has_an_instruction_and_a_budget() -> None:
    assert tuple(TASKS) == TASK_NAMES
    for name in TASK_NAMES:
        task = get_task(name)
        assert task.name == name and len(task.instruction.split()) >= 5
        assert task.budget_s > 0 and task.budget_steps(0.1) == round(task.budget_s / 0.1)
    with pytest.raises(ConfigError, match="known tasks: grocery_restock, laundry_fold, box_assembly"):
        get_task("juggling")


def test_closing_near_the_object_grasps_it_and_it_follows_the_gripper() -> None:
    task = get_task("grocery_restock")
    w = grocery_world(ee=(0.11, 0.1))
    w = step(task, w, 0.11, 0.1, CLOSED)
    w = step(task, w, 0.11, 0.1, CLOSED)
    assert w.held and w.stage == "carry"
    w = step(task, w, 0.2, 0.2, CLOSED)
    assert w.obj == w.ee  # the fingers centre what they hold


def test_closing_away_from_the_object_or_already_closed_grasps_nothing() -> None:
    task = get_task("grocery_restock")
    w = grocery_world(ee=(0.15, 0.1))
    for _ in range(3):
        w = step(task, w, 0.15, 0.1, CLOSED)
    assert not w.held
    # Arriving with the fingers already shut does not pick the object up either.
    for _ in range(3):
        w = step(task, w, 0.1, 0.1, CLOSED)
    assert w.ee == pytest.approx((0.1, 0.1)) and not w.held


def test_release_on_the_goal_succeeds_and_elsewhere_does_not() -> None:
    task = get_task("grocery_restock")
    goal = (0.25, 0.455)
    near = (0.28, 0.455)
    w = step(task, grocery_world(ee=near, obj=near, held=True, gripper_m=CLOSED), *near, OPEN)
    assert not w.held and w.success and w.stage == "done"
    far = (0.30, 0.455)
    w = step(task, grocery_world(ee=far, obj=far, held=True, gripper_m=CLOSED), *far, OPEN)
    assert not w.held and not w.success and w.stage == "reach"
    # Passing over the goal while holding is not a success.
    w = step(task, grocery_world(ee=goal, obj=goal, held=True, gripper_m=CLOSED), *goal, CLOSED)
    assert w.held and not w.success


def cloth_world(**kw) -> WorldState:
    # Axis-aligned square of side 0.16: A (0.17, 0.17), B (0.33, 0.17), C (0.33, 0.33), D (0.17, 0.33).
    layout = ClothLayout(goal=(0.33, 0.33), corner_b=(0.33, 0.17), corner_d=(0.17, 0.33), side_m=0.16)
    return WorldState(layout=layout, **{"ee": (0.17, 0.17), "gripper_m": CLOSED, "obj": (0.17, 0.17), **kw})


def test_folding_the_corner_onto_its_opposite_succeeds() -> None:
    task = get_task("laundry_fold")
    w = cloth_world(held=True)
    for _ in range(12):
        w = step(task, w, 0.33, 0.33, CLOSED)
    assert w.held and w.stage == "fold"
    w = step(task, w, 0.33, 0.33, OPEN)
    assert w.success


def test_the_cloth_slips_when_pulled_too_far() -> None:
    task = get_task("laundry_fold")
    w = cloth_world(held=True)
    for _ in range(10):
        w = step(task, w, 0.0, 0.0, CLOSED)
        if not w.held:
            break
    assert not w.held and not w.success and w.stage == "reach_corner"
    assert max(np.hypot(w.obj[0] - 0.33, w.obj[1] - 0.17), np.hypot(w.obj[0] - 0.17, w.obj[1] - 0.33)) > 0.2


def box_world(**kw) -> WorldState:
    # Box at (0.25, 0.25), half 0.06, flap to the right: hinge (0.31, 0.25), tip at x = 0.37.
    layout = BoxLayout(
        goal=(0.25, 0.25), half_m=0.06, flap_normal=(1.0, 0.0), flap_width_m=0.08, flap_length_m=0.06
    )
    base = {"ee": (0.4, 0.25), "gripper_m": CLOSED, "obj": (0.1, 0.1), "flap_m": 0.06}
    return WorldState(layout=layout, **{**base, **kw})


def test_pushing_the_flap_from_its_tip_shuts_it() -> None:
    task = get_task("box_assembly")
    w = box_world(ee=(0.38, 0.25))
    w = step(task, w, 0.36, 0.25, CLOSED)
    assert w.flap_m == pytest.approx(0.05) and w.stage == "push_flap"
    w = step(task, w, 0.34, 0.25, CLOSED)
    assert w.flap_m == pytest.approx(0.03)
    w = step(task, w, 0.32, 0.25, CLOSED)
    assert w.flap_m == 0.0 and w.stage == "reach_lid"


def test_the_flap_ignores_motion_from_the_side_or_from_inside() -> None:
    task = get_task("box_assembly")
    w = step(task, box_world(ee=(0.34, 0.1)), 0.34, 0.25, CLOSED)  # sideways into the flap
    assert w.flap_m == 0.06
    w = step(task, box_world(ee=(0.25, 0.25)), 0.34, 0.25, CLOSED)  # outward from the box
    assert w.flap_m == 0.06


def test_moving_over_the_flap_toward_the_box_pushes_it_that_far() -> None:
    task = get_task("box_assembly")
    w = step(task, box_world(ee=(0.35, 0.27)), 0.33, 0.27, CLOSED)  # from mid-flap, inward
    assert w.flap_m == pytest.approx(0.02)


def test_a_lid_dropped_on_an_open_box_jams() -> None:
    task = get_task("box_assembly")
    w = box_world(ee=(0.26, 0.25), obj=(0.26, 0.25), held=True)
    w = step(task, w, 0.26, 0.25, OPEN)
    assert w.failed and w.done and w.stage == "lid_jammed"


def test_the_lid_on_a_shut_box_succeeds_and_off_centre_does_not() -> None:
    task = get_task("box_assembly")
    w = step(task, box_world(ee=(0.26, 0.25), obj=(0.26, 0.25), held=True, flap_m=0.0), 0.26, 0.25, OPEN)
    assert w.success and not w.failed
    w = step(task, box_world(ee=(0.3, 0.25), obj=(0.3, 0.25), held=True, flap_m=0.0), 0.3, 0.25, OPEN)
    assert not w.success and not w.failed and w.stage == "reach_lid"
