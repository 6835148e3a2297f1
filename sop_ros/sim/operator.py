"""The scripted expert at a joystick: what a simulated human operator publishes as ``sensor_msgs/Joy``.

Each control step the operator watches the true world and the policy's
command, decides with the expert's :class:`~sop_ros.sim.expert.InterventionGate`
whether to hold the deadman, and if so steers toward the expert's action
through the inverse of the real joystick mapping. The teleop node cannot tell
it from a person. One :class:`JoystickOperator` belongs to the thread that
drives the simulated robot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sop_ros.core.teleop import EpisodeRequest, JoyMapping, joy_buttons, joy_for_target
from sop_ros.sim.env import SimEnv
from sop_ros.sim.expert import ScriptedExpert
from sop_ros.sim.world import WorldState

__all__ = ["JoyFrame", "JoystickOperator"]

NUM_AXES = 8
NUM_BUTTONS = 11


@dataclass(frozen=True, kw_only=True)
class JoyFrame:
    """One Joy message's content and what the operator meant by it."""

    axes: tuple[float, ...]
    buttons: tuple[int, ...]
    # True while the deadman is held (the operator drives the robot).
    intervening: bool
    # The expert's action this step (what the operator steers toward).
    expert_action: tuple[float, ...]


class JoystickOperator:
    """Turns the expert's judgement and plan into joystick input.

    Args:
        expert: The scripted expert (plan and takeover rules).
        mapping: The joystick mapping the teleop node uses.
        control_period_s: The robot's control period; one call to :meth:`step`
            covers one period, however fast the teleop node integrates.
    """

    def __init__(self, expert: ScriptedExpert, mapping: JoyMapping, *, control_period_s: float) -> None:
        self.expert = expert
        self.mapping = mapping
        self.control_period_s = control_period_s

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: hand control back and forget the takeover history."""
        self.expert.reset(seed)

    def step(
        self,
        world: WorldState,
        policy_action: Sequence[float] | np.ndarray | None,
        *,
        command: Sequence[float] | np.ndarray | None = None,
        env: SimEnv | None = None,
    ) -> JoyFrame:
        """Return the joystick input for one control step.

        Args:
            world: The true state of the table.
            policy_action: The policy's target for this step, or None when the
                policy sent nothing (the robot then holds still).
            command: The command the teleop path integrates from (its last
                command): the operator moves it as the expert would move the
                robot from there. None: steer from the measured state.
            env: The robot's table, for judging progress (the stall and late rules).
        """
        state = np.asarray(world.robot_state, dtype=np.float64)
        wanted = self.expert.act(world)
        intervening = self.expert.should_intervene(policy_action, wanted, state, env=env)
        expert_action = tuple(float(v) for v in wanted)
        if not intervening:
            released = joy_buttons(self.mapping, num_buttons=NUM_BUTTONS)
            return JoyFrame(
                axes=(0.0,) * NUM_AXES, buttons=released, intervening=False, expert_action=expert_action
            )
        target, base = wanted, state
        if command is not None:
            # Steer the command the way the expert would move a robot standing where the command
            # is: the robot follows the command a period behind, so aiming from the measured state
            # would keep the command only a fraction of a step ahead (a slow, hesitant operator).
            base = np.asarray(command, dtype=np.float64)
            target = self.expert.act(replace(world, ee=(float(base[0]), float(base[1]))))
        # The stick is a velocity: the deflection that moves the command by the
        # wanted step over one control period, whatever the teleop publish rate.
        axes, buttons = joy_for_target(
            target, base, self.mapping, self.control_period_s, num_axes=NUM_AXES, num_buttons=NUM_BUTTONS
        )
        return JoyFrame(axes=axes, buttons=buttons, intervening=True, expert_action=expert_action)

    def press(self, *requests: EpisodeRequest, deadman: bool = False) -> tuple[int, ...]:
        """Return a ``buttons`` array with episode buttons pressed (send one released array after it)."""
        return joy_buttons(self.mapping, deadman=deadman, requests=requests, num_buttons=NUM_BUTTONS)
