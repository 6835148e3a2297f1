"""The simulated robot as an environment: reset, step, render.

A :class:`SimEnv` is owned by one thread (the simulated robot driver's); it is
not safe to step it from two threads. The observations and worlds it returns
are immutable and may be handed to any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from sop_ros.core.types import Observation
from sop_ros.sim.config import SimConfig
from sop_ros.sim.errors import SimError
from sop_ros.sim.render import Renderer
from sop_ros.sim.tasks import Task, get_task
from sop_ros.sim.world import ACTION_NAMES, WorldState, move_robot

__all__ = ["SimEnv", "SimObservation"]


@dataclass(frozen=True, kw_only=True)
class SimObservation:
    """What the robot measures after a reset or a step."""

    # Camera name -> RGB uint8 image (height, width, 3), read-only.
    images: Mapping[str, np.ndarray]
    # The robot's own measured values in ACTION_NAMES order (m, m, m), float32, read-only.
    state: np.ndarray
    # Control steps taken since reset.
    step: int
    done: bool
    success: bool
    # Task stage, for logs only ("reach", "carry", "done", "timeout", ...).
    stage: str

    def to_observation(self, instruction: str, stamp_ns: int = 0) -> Observation:
        """Return the policy's view of this observation."""
        return Observation(images=self.images, state=self.state, instruction=instruction, stamp_ns=stamp_ns)


class SimEnv:
    """One simulated robot at one table, deterministic given the reset seed.

    Args:
        config: Task, cameras, image size and physics limits.
    """

    action_names = ACTION_NAMES

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.task: Task = get_task(self.config.task)
        budget_s = self.config.time_budget_s or self.task.budget_s
        # The step budget follows the control period so an episode lasts the same time at any rate.
        self.budget_steps = max(1, round(budget_s / self.config.control_period_s))
        self.renderer = Renderer(
            width_px=self.config.image_width_px,
            height_px=self.config.image_height_px,
            wrist_fov_m=self.config.wrist_fov_m,
            anti_alias=self.config.anti_alias,
        )
        self._world: WorldState | None = None

    @property
    def instruction(self) -> str:
        """The task's natural-language instruction."""
        return self.task.instruction

    @property
    def budget_s(self) -> float:
        """Episode time limit (s)."""
        return self.budget_steps * self.config.control_period_s

    @property
    def world(self) -> WorldState:
        """The true state of the table (for the scripted expert; a policy must not see it)."""
        if self._world is None:
            raise SimError("the environment has not been reset yet")
        return self._world

    @property
    def done(self) -> bool:
        """True once the episode succeeded, failed or ran out of time."""
        world = self.world
        return world.done or world.step >= self.budget_steps

    def reset(self, seed: int | None = None) -> SimObservation:
        """Start a new episode with a layout drawn from ``seed`` (fresh entropy when None)."""
        self._world = self.task.new_world(np.random.default_rng(seed), self.config.conditions)
        self._world = self.task.after_move(self._world, self._world)
        return self._observe()

    def restore(self, world: WorldState) -> SimObservation:
        """Continue from ``world`` (a state saved from this task), e.g. to replay a failure.

        Raises:
            SimError: ``world`` belongs to another task.
        """
        if not isinstance(world.layout, self.task.layout_type):
            raise SimError(f"this world is not a {self.task.name} world")
        self._world = world
        return self._observe()

    def step(self, action: np.ndarray) -> SimObservation:
        """Execute one absolute target (ee_x m, ee_y m, gripper m) for one control period.

        Raises:
            SimError: the episode is over, not started, or the action has the wrong
                shape or non-finite values (the world is left unchanged).
        """
        if self.done:
            raise SimError(f"episode is over at step {self.world.step} ({self.world.stage}); call reset()")
        target = np.asarray(action, dtype=np.float64)
        if target.shape != (len(ACTION_NAMES),):
            raise SimError(
                f"action must have shape ({len(ACTION_NAMES)},) for {ACTION_NAMES}, got {target.shape}"
            )
        if not np.all(np.isfinite(target)):
            raise SimError(f"action has non-finite values: {target.tolist()}")
        self._world = self._advance(self.world, target)
        return self._observe()

    def steps_to_finish(self, act: Callable[[WorldState], np.ndarray]) -> int | None:
        """Steps ``act`` would need to complete the task from now, or None if not in the time left.

        Simulated on a copy of the world (the episode is untouched): how a person who
        knows the task judges how far from done the robot is.
        """
        world, left = self.world, self.budget_steps - self.world.step
        for steps in range(1, left + 1):
            world = self._advance(world, act(world))
            if world.done:
                return steps if world.success else None
        return None

    def _advance(self, before: WorldState, target: np.ndarray) -> WorldState:
        cfg = self.config
        after = move_robot(
            before,
            (float(target[0]), float(target[1]), float(target[2])),
            period_s=cfg.control_period_s,
            max_speed_m_s=cfg.max_speed_m_s,
            gripper_speed_m_s=cfg.gripper_speed_m_s,
        )
        return self.task.after_move(before, after)

    def render(self, camera: str) -> np.ndarray:
        """Return the current RGB uint8 image of ``camera`` (any camera, configured or not)."""
        return self.renderer.render(self.world, camera)

    def _observe(self) -> SimObservation:
        world = self.world
        images = {}
        for camera in self.config.cameras:
            image = self.renderer.render(world, camera)
            image.flags.writeable = False
            images[camera] = image
        state = np.array(world.robot_state, dtype=np.float32)
        state.flags.writeable = False
        timed_out = not world.done and world.step >= self.budget_steps
        return SimObservation(
            images=MappingProxyType(images),
            state=state,
            step=world.step,
            done=world.done or timed_out,
            success=world.success,
            stage="timeout" if timed_out else world.stage,
        )
