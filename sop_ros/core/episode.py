"""The episode state machine: which task runs, when it started, how it ended.

``EpisodeClock`` is pure: the episode manager node feeds it operator
requests, success signals and clock ticks, and publishes the events it
returns. Transitions (anything else is refused with a reason):

    IDLE    --start-->              RUNNING   emits START
    RUNNING --success/failure-->    IDLE      emits END(outcome)
    RUNNING --time budget spent-->  IDLE      emits END(FAILURE)
    RUNNING --abort-->              IDLE      emits ABORT
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError, InputError
from sop_ros.core.types import EpisodeEventKind, Outcome, new_episode_id

__all__ = ["EpisodeClock", "EpisodeConfig", "EpisodeEvent", "Phase", "SwapGate", "TaskSpec"]


@dataclass(frozen=True, kw_only=True)
class EpisodeConfig:
    """Which tasks the robot runs and for how long."""

    robot_id: str = setting("robot", "robot identifier, part of every episode id", read_only=True)
    tasks: tuple[str, ...] = setting(("grocery_restock",), "task names, in the order they are run")
    instructions: tuple[str, ...] = setting(
        ("put the item on the shelf",), "instruction given to the policy for each task"
    )
    time_budgets_s: tuple[float, ...] = setting((300.0,), "longest episode per task", unit="s")
    order: str = setting("cycle", "how the next task is chosen", choices=("cycle", "random"))
    seed: int = setting(0, "seed of the random task order", low=0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.tasks:
            raise ConfigError("tasks must name at least one task")
        if not len(self.tasks) == len(self.instructions) == len(self.time_budgets_s):
            raise ConfigError(
                f"tasks ({len(self.tasks)}), instructions ({len(self.instructions)}) and "
                f"time_budgets_s ({len(self.time_budgets_s)}) must have the same length"
            )
        if any(budget <= 0 for budget in self.time_budgets_s):
            raise ConfigError(f"time_budgets_s must all be > 0, got {self.time_budgets_s}")


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One task as the episode manager runs it."""

    name: str
    instruction: str
    time_budget_s: float


class Phase(enum.Enum):
    """Whether an episode is running."""

    IDLE = "idle"
    RUNNING = "running"


@dataclass(frozen=True, kw_only=True)
class EpisodeEvent:
    """An episode boundary, ready to publish."""

    kind: EpisodeEventKind
    episode_id: str
    robot_id: str
    task: TaskSpec
    outcome: Outcome
    policy_version: str
    stamp_ns: int
    reason: str = ""


class EpisodeClock:
    """Start and end episodes; refuse transitions the table does not allow."""

    def __init__(self, config: EpisodeConfig) -> None:
        self._config = config
        self._tasks = [
            TaskSpec(name=n, instruction=i, time_budget_s=b)
            for n, i, b in zip(config.tasks, config.instructions, config.time_budgets_s, strict=True)
        ]
        self._rng = random.Random(config.seed)
        self._next_index = 0
        self._phase = Phase.IDLE
        self._current: EpisodeEvent | None = None

    @property
    def phase(self) -> Phase:
        """IDLE or RUNNING."""
        return self._phase

    @property
    def current(self) -> EpisodeEvent | None:
        """The START event of the running episode, if one runs."""
        return self._current

    def start(self, now_ns: int, policy_version: str, task: str = "") -> EpisodeEvent:
        """Start an episode of ``task`` (or the next one in order).

        Raises:
            InputError: an episode already runs, or ``task`` is unknown.
        """
        if self._phase is Phase.RUNNING and self._current is not None:
            raise InputError(f"episode {self._current.episode_id} is still running; end or abort it first")
        spec = self._pick(task)
        self._phase = Phase.RUNNING
        self._current = EpisodeEvent(
            kind=EpisodeEventKind.START,
            episode_id=new_episode_id(self._config.robot_id),
            robot_id=self._config.robot_id,
            task=spec,
            outcome=Outcome.UNKNOWN,
            policy_version=policy_version,
            stamp_ns=now_ns,
        )
        return self._current

    def end(self, now_ns: int, outcome: Outcome, reason: str = "") -> EpisodeEvent:
        """End the running episode with ``outcome`` (SUCCESS or FAILURE)."""
        return self._finish(EpisodeEventKind.END, now_ns, outcome, reason)

    def abort(self, now_ns: int, reason: str = "") -> EpisodeEvent:
        """Abort the running episode: recorded, but no outcome to learn from."""
        return self._finish(EpisodeEventKind.ABORT, now_ns, Outcome.ABORTED, reason)

    def tick(self, now_ns: int) -> EpisodeEvent | None:
        """End the episode as a failure once its time budget is spent."""
        if self._current is None:
            return None
        elapsed_s = (now_ns - self._current.stamp_ns) / 1e9
        if elapsed_s < self._current.task.time_budget_s:
            return None
        budget_s = self._current.task.time_budget_s
        return self.end(now_ns, Outcome.FAILURE, f"time budget of {budget_s:g} s spent")

    def _finish(self, kind: EpisodeEventKind, now_ns: int, outcome: Outcome, reason: str) -> EpisodeEvent:
        if self._current is None:
            raise InputError("no episode is running")
        event = EpisodeEvent(
            kind=kind,
            episode_id=self._current.episode_id,
            robot_id=self._current.robot_id,
            task=self._current.task,
            outcome=outcome,
            policy_version=self._current.policy_version,
            stamp_ns=now_ns,
            reason=reason,
        )
        self._phase = Phase.IDLE
        self._current = None
        return event

    def _pick(self, task: str) -> TaskSpec:
        if task:
            for spec in self._tasks:
                if spec.name == task:
                    return spec
            raise InputError(f"unknown task {task!r}; configured: {', '.join(self._config.tasks)}")
        if self._config.order == "random":
            return self._rng.choice(self._tasks)
        spec = self._tasks[self._next_index % len(self._tasks)]
        self._next_index += 1
        return spec


class SwapGate:
    """Decide when staged weights may go live: never while an episode runs.

    The policy node tells the gate about episode boundaries and activation
    requests; the gate answers whether to swap now, and remembers a request
    made mid-episode so that it is carried out at the episode's end.
    """

    def __init__(self) -> None:
        self._running = False
        self._pending: str | None = None

    @property
    def episode_running(self) -> bool:
        """True between START and END/ABORT."""
        return self._running

    @property
    def pending(self) -> str | None:
        """Version whose activation waits for the episode end."""
        return self._pending

    def request(self, version: str) -> bool:
        """Ask to activate ``version``; True = swap now, False = deferred to the episode end."""
        if self._running:
            self._pending = version
            return False
        self._pending = None
        return True

    def episode_started(self) -> None:
        """An episode began: from now on swaps wait."""
        self._running = True

    def episode_ended(self) -> str | None:
        """An episode ended or was aborted; return the version to activate now, if one waits."""
        self._running = False
        version, self._pending = self._pending, None
        return version
