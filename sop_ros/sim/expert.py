"""The scripted expert: solves each task from the true world state and plays the operator.

:class:`ScriptedExpert.act` is a closed-loop plan: it looks only at the current
world, so it can take over from a policy in any state (a half-done grasp, an
object dropped in the wrong place) and still finish the task. Its motion is
smooth: each action is the next point along a straight path at
``speed_m_s``, never a jump to the goal.

:class:`InterventionGate` decides, as a human watching the robot would, when
to take the joystick from the policy and when to hand it back. Both belong to
the one thread that steps the simulated robot.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from sop_ros.sim.config import ExpertConfig
from sop_ros.sim.env import SimEnv
from sop_ros.sim.tasks import BoxLayout
from sop_ros.sim.world import CLOSE_BELOW_M, GRIPPER_MAX_M, Vec, WorldState, distance

__all__ = ["InterventionGate", "ScriptedExpert"]

OPEN = GRIPPER_MAX_M
CLOSED = 0.0


def _toward(start: Vec, goal: Vec, max_step: float) -> Vec:
    d = distance(start, goal)
    if d <= max_step:
        return goal
    f = max_step / d
    return (start[0] + (goal[0] - start[0]) * f, start[1] + (goal[1] - start[1]) * f)


class ScriptedExpert:
    """Returns the expert's next absolute target for any world state.

    Args:
        config: Motion and takeover settings.
        control_period_s: The environment's control period (sets the step length).
        seed: Seed of the motion noise (only used when ``config.noise_m`` > 0).
    """

    def __init__(
        self, config: ExpertConfig | None = None, *, control_period_s: float, seed: int | None = None
    ):
        self.config = config or ExpertConfig()
        self.step_m = self.config.speed_m_s * control_period_s
        self.gate = InterventionGate(self.config)
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Forget the previous episode (takeover state) and reseed the noise."""
        self.gate.reset()
        self._rng = np.random.default_rng(seed)

    @property
    def intervening(self) -> bool:
        """True while the operator holds control."""
        return self.gate.active

    def should_intervene(
        self,
        policy_action: Sequence[float] | np.ndarray | None,
        expert_action: np.ndarray,
        state: np.ndarray,
        *,
        env: SimEnv | None = None,
    ) -> bool:
        """Return whether the operator controls this step; see :class:`InterventionGate`.

        With ``env`` (the robot's table, before the step) the operator also judges
        progress: how many steps its own plan needs to finish from here.
        """
        progress = None
        if env is not None and policy_action is not None and not self.gate.active:
            progress = (env.steps_to_finish(self.plan), env.budget_steps - env.world.step)
        return self.gate.should_intervene(policy_action, expert_action, state, progress=progress)

    def act(self, world: WorldState) -> np.ndarray:
        """Return the next target (ee_x m, ee_y m, gripper m) as float32."""
        return self._act(world, noisy=True)

    def plan(self, world: WorldState) -> np.ndarray:
        """:meth:`act` without the motion noise (for looking ahead; draws no random numbers)."""
        return self._act(world, noisy=False)

    def _act(self, world: WorldState, *, noisy: bool) -> np.ndarray:
        layout = world.layout
        if isinstance(layout, BoxLayout) and world.flap_m > 0.0:
            x, y, g = self._box_flap(world, layout, noisy)
        else:
            x, y, g = self._pick_and_place(world, layout.goal, noisy)
        return np.array((x, y, g), dtype=np.float32)

    def _move(self, world: WorldState, goal: Vec, gripper: float, noisy: bool) -> tuple[float, float, float]:
        x, y = _toward(world.ee, goal, self.step_m)
        if noisy and self.config.noise_m > 0.0 and (x, y) != goal:
            nx, ny = self._rng.normal(0.0, self.config.noise_m, size=2)
            x, y = x + float(nx), y + float(ny)
        return (x, y, gripper)

    def _pick_and_place(self, world: WorldState, goal: Vec, noisy: bool) -> tuple[float, float, float]:
        cfg = self.config
        if world.held:
            if distance(world.ee, goal) > cfg.place_ready_m:
                return self._move(world, goal, CLOSED, noisy)
            return (*goal, OPEN)
        if distance(world.ee, world.obj) > cfg.grasp_ready_m:
            return self._move(world, world.obj, OPEN, noisy)
        # A grasp needs the fingers to close through the threshold; from below it, open first.
        return (*world.obj, CLOSED if world.gripper_m > CLOSE_BELOW_M else OPEN)

    def _box_flap(self, world: WorldState, layout: BoxLayout, noisy: bool) -> tuple[float, float, float]:
        if world.held:
            return self._set_lid_aside(world, layout, noisy)
        n = layout.flap_normal
        across, out = layout.flap_coords(world.ee)
        flap = world.flap_m
        if abs(across) <= layout.flap_width_m / 2 - 0.01 and flap - 1e-9 <= out <= flap + 0.025:
            # In contact with the flap's tip: push straight toward the hinge.
            return (world.ee[0] - n[0] * self.step_m, world.ee[1] - n[1] * self.step_m, OPEN)
        # Come at the tip from outside, so the push starts beyond it. The fingers stay
        # open: closing them near the lid on the way would pick it up too early.
        h = layout.hinge
        approach = (h[0] + n[0] * (flap + 0.02), h[1] + n[1] * (flap + 0.02))
        return self._move(world, approach, OPEN, noisy)

    def _set_lid_aside(self, world: WorldState, layout: BoxLayout, noisy: bool) -> tuple[float, float, float]:
        # The lid was picked up too early: put it down clear of the box (dropped on it, it would jam).
        box = layout.goal
        gap = max(abs(world.obj[0] - box[0]), abs(world.obj[1] - box[1]))
        if gap > layout.half_m + 0.01:
            return (*world.ee, OPEN)
        corners = ((0.08, 0.08), (0.42, 0.08), (0.08, 0.42), (0.42, 0.42))
        far = max(corners, key=lambda c: distance(c, box))
        return self._move(world, far, CLOSED, noisy)


class InterventionGate:
    """Takes over when the policy drifts, stops or makes no headway; hands back once it is on track.

    Takeover: the policy's target differs from the expert's by more than
    ``drift_threshold_m`` (or the gripper by ``gripper_threshold_m``) for
    ``drift_steps`` steps in a row, or the robot has not moved for
    ``stuck_steps`` steps while the expert wanted it to. Given the expert's
    steps to finish each step (``progress``), also when those fell by less than
    ``stall_progress`` × ``stall_steps`` over the last ``stall_steps`` steps (the
    robot dithers: it moves, near the expert's path, but gets nowhere), or when
    the expert could only just finish in the steps left (``late_margin_steps``).
    Hand-back (hysteresis):
    only after ``min_hold_steps`` in control and then ``agree_steps`` steps in a
    row with the policy within ``back_on_track_m`` of the expert.

    Args:
        config: Thresholds and step counts.
    """

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config or ExpertConfig()
        self.reset()

    def reset(self) -> None:
        """Hand control back to the policy and forget all counters."""
        self.active = False
        # Why the last takeover happened: "drift", "stuck", "stall", "late" or "" before any.
        self.reason = ""
        # The expert's steps to finish over the last stall_steps steps under the policy.
        self._to_go: deque[int | None] = deque(maxlen=self.config.stall_steps + 1)
        self.takeovers = 0
        self._drift = 0
        self._stuck = 0
        self._held = 0
        self._agree = 0
        self._last_state: np.ndarray | None = None

    def should_intervene(
        self,
        policy_action: Sequence[float] | np.ndarray | None,
        expert_action: Sequence[float] | np.ndarray,
        state: Sequence[float] | np.ndarray,
        *,
        progress: tuple[int | None, int] | None = None,
    ) -> bool:
        """Feed one control step and return whether the operator controls it.

        Args:
            policy_action: The policy's target (ee_x, ee_y, gripper) for this step; None while
                the policy has sent nothing yet (the robot holds still: only the stuck rule
                applies, as a person waits for a robot that has not started to move).
            expert_action: The expert's target for the same step.
            state: The robot's measured (ee_x, ee_y, gripper) before the step.
            progress: (steps the expert needs to finish from here, or None if it cannot in
                time; steps left in the episode), when known; enables the stall and late rules.
                Steps without a policy action restart the stall rule's window: waiting for a
                robot's first command is not dithering.
        """
        cfg = self.config
        e = np.asarray(expert_action, dtype=np.float64)
        s = np.asarray(state, dtype=np.float64)
        p = s if policy_action is None else np.asarray(policy_action, dtype=np.float64)
        pos_err = math.hypot(p[0] - e[0], p[1] - e[1])
        grip_err = abs(p[2] - e[2])
        moved = math.inf if self._last_state is None else float(np.max(np.abs(s - self._last_state)))
        self._last_state = s
        if not self.active:
            drifting = policy_action is not None and (
                pos_err > cfg.drift_threshold_m or grip_err > cfg.gripper_threshold_m
            )
            self._drift = self._drift + 1 if drifting else 0
            motion_due = math.hypot(e[0] - s[0], e[1] - s[1]) > cfg.stuck_motion_m or abs(e[2] - s[2]) > 0.01
            self._stuck = self._stuck + 1 if motion_due and moved < cfg.stuck_motion_m else 0
            reasons = (
                ("drift", self._drift >= cfg.drift_steps),
                ("stuck", self._stuck >= cfg.stuck_steps),
                *self._judge_progress(None if policy_action is None else progress),
            )
            reason = next((name for name, hit in reasons if hit), "")
            if reason:
                self.reason = reason
                self.active, self._held, self._agree = True, 0, 0
                self.takeovers += 1
                self._to_go.clear()
            return self.active
        self._held += 1
        on_track = pos_err <= cfg.back_on_track_m and grip_err <= cfg.gripper_threshold_m / 2
        self._agree = self._agree + 1 if on_track else 0
        if self._held >= cfg.min_hold_steps and self._agree >= cfg.agree_steps:
            self.active, self._drift, self._stuck = False, 0, 0
        return self.active

    def _judge_progress(self, progress: tuple[int | None, int] | None) -> tuple[tuple[str, bool], ...]:
        """Remember this step's steps-to-finish; return the stall and late rules' verdicts.

        No verdicts without ``progress``, and the stall window starts over.
        """
        if progress is None:
            self._to_go.clear()
            return ()
        cfg = self.config
        to_go, left = progress
        late = cfg.late_margin_steps > 0 and (to_go is None or to_go + cfg.late_margin_steps >= left)
        self._to_go.append(to_go)
        first = self._to_go[0]
        stalled = (
            cfg.stall_steps > 0
            and len(self._to_go) > cfg.stall_steps
            and first is not None
            and to_go is not None
            and first - to_go < cfg.stall_progress * cfg.stall_steps
        )
        return (("stall", stalled), ("late", late))
