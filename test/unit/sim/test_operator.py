"""The expert as the human operator: its joystick input goes through the real teleop path and still works."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sop_ros.core.teleop import (
    EpisodeButton,
    EpisodeRequest,
    HandBack,
    JoySample,
    TakeOver,
    TeleopCommand,
    TeleopStateMachine,
    load_joy_mapping,
)
from sop_ros.sim import TASK_NAMES, ExpertConfig, JoystickOperator, ScriptedExpert, SimConfig, SimEnv

ROOT = Path(__file__).resolve().parents[3]
MAPPING = load_joy_mapping(ROOT / "config" / "joystick.yaml")
TICKS_PER_STEP = 3  # the teleop node publishes at 30 Hz, the robot steps at 10 Hz


class Robot:
    """A simulated robot whose command comes from the teleop state machine while the deadman is held."""

    def __init__(self, task: str, config: ExpertConfig | None = None) -> None:
        self.env = SimEnv(SimConfig(task=task))
        period = self.env.config.control_period_s
        self.mapping = replace(MAPPING, publish_rate_hz=TICKS_PER_STEP / period)
        expert = ScriptedExpert(config, control_period_s=period)
        self.operator = JoystickOperator(expert, self.mapping, control_period_s=period)
        self.tick_ns = round(period / TICKS_PER_STEP * 1e9)

    def run(self, seed: int, policy=None) -> tuple[bool, list, float]:
        """Run one episode; returns (success, teleop outputs, worst gap between command and expert)."""
        machine = TeleopStateMachine(self.mapping)
        self.operator.reset()
        obs = self.env.reset(seed)
        now, outputs, worst = 0, [], 0.0
        while not obs.done:
            policy_action = None if policy is None else policy(obs.state)
            frame = self.operator.step(self.env.world, policy_action, command=machine.last_command)
            axes32 = tuple(np.asarray(frame.axes, dtype=np.float32).tolist())  # Joy carries float32
            command = None
            for k in range(TICKS_PER_STEP):
                now += self.tick_ns
                if k == 0:
                    outputs += machine.on_joy(JoySample(axes=axes32, buttons=frame.buttons, stamp_ns=now))
                out = machine.on_tick(now, tuple(obs.state))
                outputs += out
                command = next((o.action for o in out if isinstance(o, TeleopCommand)), command)
            if command is not None:
                worst = max(worst, float(np.abs(np.subtract(command, frame.expert_action)[:2]).max()))
                action = np.array(command)
            else:
                action = obs.state if policy_action is None else policy_action
            obs = self.env.step(action)
        return obs.success, outputs, worst


@pytest.mark.parametrize("task", TASK_NAMES)
def test_operator_takes_over_an_idle_robot_and_solves_every_task(task: str) -> None:
    robot = Robot(task)
    wins, worst = 0, 0.0
    for seed in range(30):
        success, outputs, gap = robot.run(seed)
        wins += success
        worst = max(worst, gap)
        assert sum(isinstance(o, TakeOver) for o in outputs) == 1
        assert not any(isinstance(o, HandBack) for o in outputs)
    assert wins >= 29
    # Integrated over three teleop ticks, the stick reproduces the expert's step.
    assert worst < 1e-6


def toward_centre(state: np.ndarray) -> np.ndarray:
    """A policy that ignores the image: head for the table's centre with the fingers open."""
    step = np.clip(np.array([0.25, 0.25]) - state[:2], -0.02, 0.02)
    return np.array([*(state[:2] + step), 0.08])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_operator_rescues_a_policy_that_ignores_the_image(task: str) -> None:
    robot = Robot(task)
    seeds = range(20)
    rescued, takeovers = 0, 0
    for seed in seeds:
        success, outputs, _ = robot.run(seed, toward_centre)
        rescued += success
        takeovers += sum(isinstance(o, TakeOver) for o in outputs)
        assert robot.operator.expert.gate.takeovers == sum(isinstance(o, TakeOver) for o in outputs)
    assert takeovers >= len(seeds)
    assert rescued / len(seeds) >= 0.9


def test_operator_leaves_a_good_policy_alone() -> None:
    robot = Robot("grocery_restock")
    expert = ScriptedExpert(control_period_s=0.1)
    success, outputs, _ = robot.run(0, lambda state: expert.act(robot.env.world))
    assert success
    assert not any(isinstance(o, TakeOver | TeleopCommand) for o in outputs)


def test_episode_buttons_reach_the_teleop_path_once_per_press() -> None:
    operator = JoystickOperator(ScriptedExpert(control_period_s=0.1), MAPPING, control_period_s=0.1)
    machine = TeleopStateMachine(MAPPING)
    axes = (0.0,) * 8
    pressed = operator.press(EpisodeRequest.SUCCESS)
    out = machine.on_joy(JoySample(axes=axes, buttons=pressed, stamp_ns=1))
    out += machine.on_joy(JoySample(axes=axes, buttons=pressed, stamp_ns=2))
    out += machine.on_joy(JoySample(axes=axes, buttons=operator.press(), stamp_ns=3))
    assert out == (EpisodeButton(stamp_ns=1, request=EpisodeRequest.SUCCESS),)
