"""The expert as the human operator: its actions go through the real joystick path and still work."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sop_ros.core.teleop import (
    HandBack,
    JoySample,
    TakeOver,
    TeleopCommand,
    TeleopStateMachine,
    joy_buttons,
    joy_for_target,
    load_joy_mapping,
)
from sop_ros.sim import TASK_NAMES, ScriptedExpert, SimConfig, SimEnv

ROOT = Path(__file__).resolve().parents[3]


class JoystickOperator:
    """Publishes Joy the way a joystick driver would, one sample per control step."""

    def __init__(self, env: SimEnv) -> None:
        period = env.config.control_period_s
        mapping = load_joy_mapping(ROOT / "config" / "joystick.yaml")
        self.mapping = replace(mapping, publish_rate_hz=1.0 / period)
        self.machine = TeleopStateMachine(self.mapping)
        self.period_ns = round(period * 1e9)
        self.now_ns = 0
        self.events: list[object] = []

    def step(self, wanted: np.ndarray | None, state: np.ndarray) -> np.ndarray | None:
        """Hold the deadman and steer toward ``wanted``, or let go (None); returns the teleop command."""
        self.now_ns += self.period_ns
        if wanted is None:
            axes, buttons = (0.0,) * 8, joy_buttons(self.mapping)
        else:
            current = self.machine.last_command or tuple(state)
            axes, buttons = joy_for_target(wanted, current, self.mapping)
        axes32 = tuple(np.asarray(axes, dtype=np.float32).tolist())  # Joy carries float32
        self.events += self.machine.on_joy(JoySample(axes=axes32, buttons=buttons, stamp_ns=self.now_ns))
        out = self.machine.on_tick(self.now_ns, tuple(state))
        self.events += out
        commands = [o for o in out if isinstance(o, TeleopCommand)]
        return np.array(commands[0].action) if commands else None


@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_through_the_joystick_solves_every_task(task: str) -> None:
    env = SimEnv(SimConfig(task=task))
    expert = ScriptedExpert(control_period_s=env.config.control_period_s)
    wins = 0
    worst = 0.0
    for seed in range(40):
        operator = JoystickOperator(env)
        obs = env.reset(seed)
        while not obs.done:
            wanted = expert.act(env.world)
            command = operator.step(wanted, obs.state)
            assert command is not None
            # The joystick reproduces the expert's action up to the stick's saturation.
            worst = max(worst, float(np.abs(command[:2] - wanted[:2]).max()))
            obs = env.step(command)
        wins += obs.success
        assert sum(isinstance(e, TakeOver) for e in operator.events) == 1
    assert wins / 40 >= 0.95
    assert worst < 1e-6


@pytest.mark.parametrize("task", TASK_NAMES)
def test_operator_rescues_a_policy_that_ignores_the_image(task: str) -> None:
    env = SimEnv(SimConfig(task=task))
    expert = ScriptedExpert(control_period_s=env.config.control_period_s)
    rescued, takeovers = 0, 0
    seeds = range(30)
    for seed in seeds:
        operator = JoystickOperator(env)
        expert.reset()
        # The "policy" heads for the table's centre with the gripper open, whatever the image shows.
        obs = env.reset(seed)
        while not obs.done:
            step = np.clip(np.array([0.25, 0.25]) - obs.state[:2], -0.02, 0.02)
            policy_action = np.array([*(obs.state[:2] + step), 0.08])
            expert_action = expert.act(env.world)
            if expert.should_intervene(policy_action, expert_action, obs.state):
                action = operator.step(expert_action, obs.state)
                assert action is not None
            else:
                operator.step(None, obs.state)
                action = policy_action
            obs = env.step(action)
        rescued += obs.success
        takeovers += expert.gate.takeovers
        hand_backs = [e for e in operator.events if isinstance(e, HandBack)]
        assert len(hand_backs) <= sum(isinstance(e, TakeOver) for e in operator.events)
    assert takeovers >= len(seeds)
    assert rescued / len(seeds) >= 0.9
