"""Settings of the simulated robot and of the scripted expert that plays its operator."""

from __future__ import annotations

from dataclasses import dataclass

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError
from sop_ros.sim.tasks import CONDITIONS

__all__ = ["CAMERAS", "TASK_NAMES", "ExpertConfig", "SimConfig"]

# Every task the simulator knows, in the order the demo spreads them over robots.
TASK_NAMES = ("grocery_restock", "laundry_fold", "box_assembly")
# "head" looks down on the whole table; "wrist" follows the gripper.
CAMERAS = ("head", "wrist")


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """How the simulated table, robot and cameras behave."""

    task: str = setting("grocery_restock", "Task to simulate", choices=TASK_NAMES, read_only=True)
    # Where layouts come from: the demonstrations' distribution, or deployment conditions outside it.
    conditions: str = setting(
        "demonstrations", "Layout distribution: demonstrations or deployment", choices=CONDITIONS
    )
    control_period_s: float = setting(0.1, "Time between two actions", unit="s", low=0.005, high=1.0)
    cameras: tuple[str, ...] = setting(("head",), "Cameras to render each step, from: head, wrist")
    image_width_px: int = setting(64, "Width of every camera image", unit="px", low=16, high=4096)
    image_height_px: int = setting(64, "Height of every camera image", unit="px", low=16, high=4096)
    wrist_fov_m: float = setting(0.16, "Side of the table square the wrist camera sees", unit="m", low=0.02)
    anti_alias: bool = setting(False, "Smooth edges when drawing (slower, nicer at high resolution)")
    max_speed_m_s: float = setting(0.25, "Fastest the gripper moves in the table plane", unit="m/s", low=0.01)
    gripper_speed_m_s: float = setting(0.5, "Fastest the gripper opens or closes", unit="m/s", low=0.01)
    # 0 keeps the task's own budget; anything else overrides it for every task.
    time_budget_s: float = setting(0.0, "Episode time limit (0: the task's default)", unit="s", low=0.0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.cameras:
            raise ConfigError("cameras must name at least one camera")
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown:
            raise ConfigError(f"unknown cameras {unknown}; choose from {', '.join(CAMERAS)}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"cameras are listed twice: {self.cameras}")


@dataclass(frozen=True, kw_only=True)
class ExpertConfig:
    """How the scripted expert moves and when, as the operator, it takes over."""

    speed_m_s: float = setting(0.2, "Speed of the expert's planned motion", unit="m/s", low=0.01)
    noise_m: float = setting(0.0, "Std. dev. of noise added to planned positions", unit="m", low=0.0)
    grasp_ready_m: float = setting(0.004, "Distance to the grasp point at which to close", unit="m", low=0.0)
    place_ready_m: float = setting(0.004, "Distance to the place point at which to open", unit="m", low=0.0)
    # Taking over: the policy's target must stray this far from the expert's for drift_steps steps.
    drift_threshold_m: float = setting(
        0.03, "Policy-to-expert target distance that counts as drifting", unit="m", low=0.0
    )
    gripper_threshold_m: float = setting(
        0.04, "Policy-to-expert gripper difference that counts as drifting", unit="m", low=0.0
    )
    drift_steps: int = setting(3, "Consecutive drifting steps before taking over", low=1)
    stuck_steps: int = setting(10, "Steps without motion (while motion is due) before taking over", low=1)
    stuck_motion_m: float = setting(
        0.002, "Motion per step below which the robot is stuck", unit="m", low=0.0
    )
    # Judging progress needs the expert's plan rolled forward (SimEnv.steps_to_finish): a person
    # sees a robot dither, or the clock run out, long before its targets stray from theirs.
    stall_steps: int = setting(
        15, "Steps over which the task must come closer to done (0: never take over for a stall)", low=0
    )
    stall_progress: float = setting(
        0.3, "Least progress over stall_steps, as a fraction of the expert's own pace", low=0.0, high=1.0
    )
    late_margin_steps: int = setting(
        5, "Take over once the expert could finish only this close to the time limit (0: never)", low=0
    )
    # Handing back: at least min_hold_steps in control, then agree_steps steps of agreement.
    min_hold_steps: int = setting(10, "Fewest steps the operator keeps control once taken", low=0)
    back_on_track_m: float = setting(
        0.01, "Policy-to-expert target distance that counts as back on track", unit="m", low=0.0
    )
    agree_steps: int = setting(3, "Consecutive on-track steps before handing back", low=1)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.back_on_track_m >= self.drift_threshold_m:
            raise ConfigError(
                f"back_on_track_m ({self.back_on_track_m}) must be below drift_threshold_m "
                f"({self.drift_threshold_m}) or control would flap between operator and policy"
            )
