"""The scripted expert solves every task, a blind policy does not, and the operator's takeover rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from sop_ros.core.errors import ConfigError
from sop_ros.sim import (
    TASK_NAMES,
    ExpertConfig,
    InterventionGate,
    ScriptedExpert,
    SimConfig,
    SimEnv,
    WorldState,
)

EPISODES = 100
Policy = Callable[[SimEnv], np.ndarray]


def success_rate(task: str, make_policy: Callable[[SimEnv], Policy], seeds: range) -> float:
    env = SimEnv(SimConfig(task=task))
    policy = make_policy(env)
    wins = 0
    for seed in seeds:
        obs = env.reset(seed)
        while not obs.done:
            obs = env.step(policy(env))
        wins += obs.success
    return wins / len(seeds)


def expert_policy(env: SimEnv, config: ExpertConfig | None = None) -> Policy:
    expert = ScriptedExpert(config, control_period_s=env.config.control_period_s, seed=0)
    return lambda e: expert.act(e.world)


def blind_policy(env: SimEnv) -> Policy:
    """The expert acting on one fixed imagined layout: knows its own state, never looks at the image."""
    expert = ScriptedExpert(control_period_s=env.config.control_period_s)
    env.reset(10_000)
    imagined = env.world

    def act(e: SimEnv) -> np.ndarray:
        true = e.world
        world = replace(
            imagined,
            ee=true.ee,
            gripper_m=true.gripper_m,
            held=true.held,
            obj=true.obj if true.held else imagined.obj,
        )
        return expert.act(world)

    return act


@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_solves_every_task(task: str) -> None:
    rate = success_rate(task, expert_policy, range(EPISODES))
    assert rate >= 0.95, f"{task}: expert success {rate:.2f}"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_noisy_expert_still_solves_every_task(task: str) -> None:
    config = ExpertConfig(noise_m=0.003)
    rate = success_rate(task, lambda env: expert_policy(env, config), range(1000, 1050))
    assert rate >= 0.9, f"{task}: noisy expert success {rate:.2f}"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_a_policy_that_ignores_the_image_fails_most_of_the_time(task: str) -> None:
    rate = success_rate(task, blind_policy, range(EPISODES))
    assert rate <= 0.3, f"{task}: blind success {rate:.2f}"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_moves_smoothly(task: str) -> None:
    env = SimEnv(SimConfig(task=task))
    expert = ScriptedExpert(control_period_s=env.config.control_period_s)
    step_m = expert.config.speed_m_s * env.config.control_period_s
    obs = env.reset(3)
    while not obs.done:
        action = expert.act(env.world)
        assert np.hypot(*(action[:2] - obs.state[:2])) <= step_m + 1e-6
        obs = env.step(action)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_finishes_from_wherever_a_random_policy_left_the_robot(task: str) -> None:
    env = SimEnv(SimConfig(task=task))
    expert = ScriptedExpert(control_period_s=env.config.control_period_s)
    rng = np.random.default_rng(0)
    wins = 0
    for seed in range(30):
        obs = env.reset(seed)
        for _ in range(15):
            if obs.done:
                break
            obs = env.step(obs.state + rng.normal(0.0, 0.03, size=3))
        while not obs.done:
            obs = env.step(expert.act(env.world))
        wins += obs.success or env.world.failed  # a jam caused by the random policy cannot be undone
    assert wins >= 29


def test_expert_sets_an_early_lid_aside_before_closing_the_flap() -> None:
    env = SimEnv(SimConfig(task="box_assembly"))
    expert = ScriptedExpert(control_period_s=0.1)
    env.reset(5)
    world: WorldState = env.world
    # Hand the expert a world in which the lid is already held above the open box.
    obs = env.restore(replace(world, ee=world.layout.goal, obj=world.layout.goal, held=True, gripper_m=0.0))
    while not obs.done:
        obs = env.step(expert.act(env.world))
    assert obs.success


@pytest.mark.parametrize("task", TASK_NAMES)
def test_steps_to_finish_is_the_expert_plans_length_and_leaves_the_episode_alone(task: str) -> None:
    env = SimEnv(SimConfig(task=task))
    expert = ScriptedExpert(control_period_s=env.config.control_period_s)
    env.reset(4)
    before = env.world
    to_go = env.steps_to_finish(expert.plan)
    assert env.world == before
    assert to_go is not None and 10 < to_go < env.budget_steps
    obs = None
    for _ in range(to_go):
        obs = env.step(expert.plan(env.world))
    assert obs is not None and obs.success and obs.step == to_go


def test_steps_to_finish_is_none_when_the_time_left_is_too_short() -> None:
    env = SimEnv(SimConfig(task="grocery_restock", time_budget_s=1.0))
    env.reset(4)
    assert env.steps_to_finish(ScriptedExpert(control_period_s=0.1).plan) is None


# --- intervention gate -------------------------------------------------------

STATE = np.array([0.2, 0.2, 0.08])
EXPERT = np.array([0.22, 0.2, 0.08])


def test_a_policy_that_agrees_is_never_interrupted() -> None:
    gate = InterventionGate()
    state = STATE.copy()
    for _ in range(100):
        target = state + np.array([0.02, 0.0, 0.0])
        assert not gate.should_intervene(target + 0.005, target, state)
        state = target
    assert gate.takeovers == 0


def test_drift_takes_over_after_drift_steps() -> None:
    cfg = ExpertConfig(drift_steps=3)
    gate = InterventionGate(cfg)
    wrong = EXPERT + np.array([0.0, 0.04, 0.0])
    state = STATE.copy()
    decisions = []
    for _ in range(3):
        decisions.append(gate.should_intervene(wrong, EXPERT, state))
        state = state + 0.01  # moving, so only drift can trigger
    assert decisions == [False, False, True]
    assert gate.reason == "drift" and gate.takeovers == 1


def test_a_gripper_disagreement_counts_as_drift() -> None:
    gate = InterventionGate(ExpertConfig(drift_steps=1))
    assert gate.should_intervene(EXPERT - np.array([0.0, 0.0, 0.08]), EXPERT, STATE)


def test_a_single_drifting_step_is_forgiven() -> None:
    gate = InterventionGate(ExpertConfig(drift_steps=3))
    wrong = EXPERT + np.array([0.0, 0.04, 0.0])
    state = STATE.copy()
    for action in (wrong, wrong, EXPERT, wrong, wrong, EXPERT):
        assert not gate.should_intervene(action, EXPERT, state)
        state = state + 0.01


def test_a_stuck_robot_is_taken_over() -> None:
    cfg = ExpertConfig(stuck_steps=5)
    gate = InterventionGate(cfg)
    # The policy asks to stay put while the expert wants to move 2 cm: not drift, but stuck.
    decisions = [gate.should_intervene(STATE, EXPERT, STATE) for _ in range(6)]
    assert decisions == [False] * 5 + [True]
    assert gate.reason == "stuck"


def test_standing_still_where_the_expert_also_waits_is_not_stuck() -> None:
    gate = InterventionGate(ExpertConfig(stuck_steps=2))
    for _ in range(20):
        assert not gate.should_intervene(STATE, STATE, STATE)


def test_hysteresis_holds_control_then_hands_back_after_agreement() -> None:
    cfg = ExpertConfig(drift_steps=1, min_hold_steps=10, agree_steps=3)
    gate = InterventionGate(cfg)
    state = STATE.copy()
    assert gate.should_intervene(EXPERT + np.array([0.0, 0.05, 0.0]), EXPERT, state)
    held = 0
    # The policy agrees at once, but the operator keeps control for min_hold_steps.
    while gate.should_intervene(EXPERT, EXPERT, state):
        held += 1
        state = state + 0.001
    assert held == cfg.min_hold_steps - 1
    assert not gate.active


def test_hand_back_needs_consecutive_agreement_below_the_takeover_threshold() -> None:
    cfg = ExpertConfig(drift_steps=1, min_hold_steps=0, agree_steps=3, back_on_track_m=0.01)
    gate = InterventionGate(cfg)
    assert gate.should_intervene(EXPERT + np.array([0.05, 0.0, 0.0]), EXPERT, STATE)
    # 2 cm off: below the 3 cm takeover threshold, but not back on track.
    almost = EXPERT + np.array([0.02, 0.0, 0.0])
    assert all(gate.should_intervene(almost, EXPERT, STATE) for _ in range(10))
    on = EXPERT + np.array([0.005, 0.0, 0.0])
    pattern = [on, on, almost, on, on, on]
    decisions = [gate.should_intervene(a, EXPERT, STATE) for a in pattern]
    assert decisions == [True, True, True, True, True, False]


def test_reset_forgets_a_takeover() -> None:
    expert = ScriptedExpert(ExpertConfig(drift_steps=1), control_period_s=0.1)
    assert expert.should_intervene(EXPERT + 0.1, EXPERT, STATE)
    assert expert.intervening
    expert.reset()
    assert not expert.intervening and expert.gate.takeovers == 0


def test_takeover_and_hand_back_thresholds_must_differ() -> None:
    with pytest.raises(ConfigError, match="back_on_track_m"):
        ExpertConfig(back_on_track_m=0.03, drift_threshold_m=0.03)


def moving(n: int) -> list[np.ndarray]:
    """States of a robot that moves 1 cm a step (so the stuck rule never fires)."""
    return [STATE + np.array([0.01 * i, 0.0, 0.0]) for i in range(n)]


def test_a_policy_that_makes_no_headway_is_taken_over_for_stalling() -> None:
    cfg = ExpertConfig(stall_steps=10, stall_progress=0.3, late_margin_steps=0)
    gate = InterventionGate(cfg)
    # Targets on the expert's, the robot moving, but the task no closer to done (40 steps to go).
    decisions = [gate.should_intervene(EXPERT, EXPERT, s, progress=(40, 100)) for s in moving(11)]
    assert decisions == [False] * 10 + [True]
    assert gate.reason == "stall"


def test_waiting_for_the_first_command_is_not_a_stall() -> None:
    cfg = ExpertConfig(stall_steps=10, late_margin_steps=0)
    gate = InterventionGate(cfg)
    # No command yet: the robot holds still where the expert also waits (so not stuck either).
    for _ in range(30):
        assert not gate.should_intervene(None, STATE, STATE, progress=(40, 100))
    # Once the policy acts, its window starts: a stall needs stall_steps of its own.
    decisions = [gate.should_intervene(EXPERT, EXPERT, s, progress=(40, 100)) for s in moving(11)]
    assert decisions == [False] * 10 + [True]


def test_progress_at_the_expert_pace_is_not_a_stall() -> None:
    gate = InterventionGate(ExpertConfig(stall_steps=10, stall_progress=0.3))
    for i, state in enumerate(moving(40)):
        assert not gate.should_intervene(EXPERT, EXPERT, state, progress=(45 - i, 100 - i))
    # A third of the expert's pace is still headway.
    gate = InterventionGate(ExpertConfig(stall_steps=10, stall_progress=0.3))
    for i, state in enumerate(moving(40)):
        assert not gate.should_intervene(EXPERT, EXPERT, state, progress=(60 - i // 3, 100 - i))


@pytest.mark.parametrize("progress", [(50, 54), (None, 80)])
def test_the_operator_takes_over_when_time_is_running_out(progress: tuple[int | None, int]) -> None:
    gate = InterventionGate(ExpertConfig(late_margin_steps=5))
    assert gate.should_intervene(EXPERT, EXPERT, STATE, progress=progress)
    assert gate.reason == "late"


def test_a_dithering_policy_escapes_the_target_rules_but_not_the_progress_rules() -> None:
    """Near the expert's path, moving, never getting anywhere: only judging progress catches it."""
    env = SimEnv(SimConfig(task="grocery_restock"))

    def takeover(judge_progress: bool) -> tuple[int, str] | None:
        expert = ScriptedExpert(control_period_s=0.1)
        obs = env.reset(7)
        start = obs.state.copy()
        for step in range(60):
            wanted = expert.act(env.world)
            # Hover 1.5 cm to either side of the start, toward the expert's target.
            side = 0.015 if step % 2 else -0.015
            toward = wanted[:2] - obs.state[:2]
            toward = toward / max(np.linalg.norm(toward), 1e-9) * 0.015
            dither = np.array([start[0] + toward[0] + side, start[1] + toward[1], wanted[2]])
            if expert.should_intervene(dither, wanted, obs.state, env=env if judge_progress else None):
                return step, expert.gate.reason
            obs = env.step(dither)
        return None

    assert takeover(judge_progress=False) is None
    caught = takeover(judge_progress=True)
    assert caught is not None and caught[0] <= 20 and caught[1] == "stall"
