"""A simulated fleet on one clock: N robots, their operators, and the weights they run.

Every robot is a :class:`SimEnv` with the scripted expert watching it as the
operator (the same :class:`InterventionGate` that drives the joystick of a
simulated ROS robot). The robots advance together, one control period per
:meth:`SimFleet.tick`, on a simulated clock; the policy answers every robot
that needs a new chunk in one batched call per weights version. An episode
ends in a bag written as the recorder node writes it, handed to a callback
(the learner), and the robot then spends ``reset_s`` resetting its scene
before the next one. New weights are taken only when an episode starts,
never in the middle of one.

Tasks rotate per robot and episode, so one robot alone still sees all three.
Layout seeds are drawn from a range disjoint from the demonstrations' and the
evaluation's.

Threads: a fleet belongs to the thread that calls :meth:`SimFleet.tick`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError
from sop_ros.core.types import ActionChunk, EpisodeMeta, Outcome
from sop_ros.sim import TASK_NAMES, ExpertConfig, ScriptedExpert, SimConfig, SimEnv, SimObservation
from sop_ros.simlab.evaluate import infer_many
from sop_ros.simlab.sim_bags import SimStep, record_sim_episode
from sop_ros.storage import EpisodeRecorder

__all__ = ["ActorPool", "EpisodeResult", "FleetConfig", "SimFleet"]

# Fleet episodes' stamps start here (2026-06-01), far from the demonstrations'.
_EPOCH_NS = 1_780_272_000 * 1_000_000_000
# Layout seeds: robot r's episode e uses FIRST + run_seed * RUN + r * ROBOT + e.
_FIRST_SEED, _RUN_SEEDS, _ROBOT_SEEDS = 2_000_000, 10_000_000, 100_000


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    """Size and pace of a simulated fleet."""

    robots: int = setting(4, "simulated robots working in parallel", low=1, high=64)
    replan_steps: int = setting(
        3, "control steps executed from a chunk before the policy is asked again", low=1
    )
    reset_s: float = setting(
        4.0, "time a robot spends resetting its scene between episodes", unit="s", low=0.0
    )
    seed: int = setting(0, "seed of the layouts the fleet meets", low=0)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True, kw_only=True)
class EpisodeResult:
    """What one fleet episode did (its bag holds the rest)."""

    robot: str
    task: str
    version: str
    success: bool
    steps: int
    human_steps: int
    # Simulated clock at the episode's start and end (s).
    start_s: float
    end_s: float
    bag: Path

    @property
    def autonomous(self) -> bool:
        """True when the policy finished the task without any help."""
        return self.success and self.human_steps == 0


class ActorPool:
    """Inference copies of the policy, one per weights version some robot still runs.

    Args:
        make_policy: Builds one more inference policy (same config as the learner's).
    """

    def __init__(self, make_policy: Callable[[], Any]) -> None:
        self._make = make_policy
        self._loaded: dict[str, Any] = {}
        self._spare: list[Any] = []

    def get(self, version: str, path: Path | None) -> Any:
        """Return a policy running ``version`` (loaded from ``path`` unless it already runs)."""
        actor = self._loaded.get(version)
        if actor is None:
            actor = self._spare.pop() if self._spare else self._make()
            actor.load_trainable(path)
            self._loaded[version] = actor
        return actor

    def keep_only(self, versions: set[str]) -> None:
        """Free the copies running any version not in ``versions`` for reuse."""
        for version in [v for v in self._loaded if v not in versions]:
            self._spare.append(self._loaded.pop(version))


@dataclass
class _Robot:
    name: str
    index: int
    expert: ScriptedExpert
    envs: dict[str, SimEnv]
    env: SimEnv | None = None
    obs: SimObservation | None = None
    version: str = ""
    chunk: ActionChunk | None = None
    row: int = 0
    steps: list[SimStep] = field(default_factory=list)
    episodes: int = 0
    start_s: float = 0.0
    idle_until_s: float = 0.0

    def running(self) -> tuple[SimEnv, SimObservation]:
        """The table and the latest observation of the episode this robot runs."""
        if self.env is None or self.obs is None:
            raise RuntimeError(f"robot {self.name} runs no episode")
        return self.env, self.obs

    def action(self) -> ActionChunk:
        """The chunk the robot executes; :meth:`SimFleet._replan` gives every running robot one."""
        if self.chunk is None:
            raise RuntimeError(f"robot {self.name} has no action chunk")
        return self.chunk


class SimFleet:
    """N simulated robots with operators, stepping together on a simulated clock.

    Args:
        config: Fleet size and pace.
        sim: Simulator settings (the task is set per episode).
        expert: The operator's motion and takeover thresholds.
        actors: Inference policies by version.
        weights: The version robots start with and its weights file.
        spool: Where episode bags are written (``ready/`` inside it).
        on_episode: Called with every finished episode (e.g. to hand its bag to the learner).
    """

    def __init__(
        self,
        config: FleetConfig,
        *,
        sim: SimConfig,
        expert: ExpertConfig,
        actors: ActorPool,
        weights: tuple[str, Path],
        spool: Path,
        on_episode: Callable[[EpisodeResult], None],
    ) -> None:
        self.config = config
        self.sim = sim
        self.period_s = sim.control_period_s
        self.now_s = 0.0
        self._ticks = 0
        self.newest = weights
        self.results: list[EpisodeResult] = []
        self._actors = actors
        self._on_episode = on_episode
        self._recorder = EpisodeRecorder(spool, quota_bytes=1 << 42)
        self._robots = [
            _Robot(
                name=f"robot_{i + 1}",
                index=i,
                expert=ScriptedExpert(expert, control_period_s=self.period_s),
                envs={task: SimEnv(replace(sim, task=task)) for task in TASK_NAMES},
            )
            for i in range(config.robots)
        ]

    def publish(self, version: str, path: Path) -> None:
        """Make ``version`` the weights every robot takes at its next episode start."""
        self.newest = (version, path)

    def state_dict(self) -> dict:
        """Clock, robots' progress, newest weights and finished episodes, as plain JSON.

        An episode still running is not part of the state: a fleet restored from it
        replays that episode from its start (same layout) at the restored time.
        """
        return {
            "ticks": self._ticks,
            "newest": [self.newest[0], str(self.newest[1])],
            "robots": [
                {"episodes": r.episodes, "idle_until_s": r.idle_until_s if r.env is None else self.now_s}
                for r in self._robots
            ],
            "results": [{**asdict(r), "bag": str(r.bag)} for r in self.results],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` output (of a fleet with as many robots)."""
        if len(state["robots"]) != len(self._robots):
            raise ConfigError(
                f"the saved fleet has {len(state['robots'])} robots, this one {len(self._robots)}"
            )
        self._ticks = int(state["ticks"])
        self.now_s = self._ticks * self.period_s
        self.newest = (state["newest"][0], Path(state["newest"][1]))
        for robot, saved in zip(self._robots, state["robots"], strict=True):
            robot.env, robot.obs, robot.chunk, robot.steps = None, None, None, []
            robot.episodes = int(saved["episodes"])
            robot.idle_until_s = float(saved["idle_until_s"])
        self.results = [EpisodeResult(**{**r, "bag": Path(r["bag"])}) for r in state["results"]]

    def tick(self) -> None:
        """Advance every robot by one control period."""
        # Episodes start on ticks where every running robot replans, so one batched call per
        # version answers the whole fleet (a reset lasts up to replan_steps - 1 ticks longer).
        on_phase = self._ticks % self.config.replan_steps == 0
        for robot in self._robots:
            if robot.env is None and on_phase and robot.idle_until_s <= self.now_s + 1e-9:
                self._start_episode(robot)
        running = [robot for robot in self._robots if robot.env is not None]
        self._replan(running)
        for robot in running:
            self._step(robot)
        self._ticks += 1
        self.now_s = self._ticks * self.period_s

    # ---- internals --------------------------------------------------------------------------

    def _start_episode(self, robot: _Robot) -> None:
        task = TASK_NAMES[(robot.index + robot.episodes) % len(TASK_NAMES)]
        seed = _FIRST_SEED + self.config.seed * _RUN_SEEDS + robot.index * _ROBOT_SEEDS + robot.episodes
        robot.env = robot.envs[task]
        robot.obs = robot.env.reset(seed)
        robot.expert.reset(seed)
        robot.version = self.newest[0]
        robot.chunk, robot.row, robot.steps = None, 0, []
        robot.start_s = self.now_s
        self._actors.keep_only({r.version for r in self._robots if r.env is not None} | {self.newest[0]})

    def _replan(self, running: list[_Robot]) -> None:
        asking: dict[str, list[_Robot]] = {}
        for robot in running:
            if robot.chunk is None or robot.row >= min(self.config.replan_steps, robot.chunk.horizon):
                asking.setdefault(robot.version, []).append(robot)
        for version, robots in asking.items():
            path = self.newest[1] if version == self.newest[0] else None
            actor = self._actors.get(version, path)
            observations = [obs.to_observation(env.instruction) for env, obs in (r.running() for r in robots)]
            for robot, chunk in zip(robots, infer_many(actor, observations), strict=True):
                robot.chunk, robot.row = chunk, 0

    def _step(self, robot: _Robot) -> None:
        env, obs = robot.running()
        proposed = robot.action().actions[robot.row]
        robot.row += 1
        wanted = robot.expert.act(env.world)
        human = robot.expert.should_intervene(proposed, wanted, obs.state, env=env)
        action = wanted if human else proposed
        after = env.step(action)
        robot.steps.append(SimStep(obs=obs, action=action, human=human, success=after.success))
        robot.obs = after
        if env.done:
            self._finish_episode(robot, after.success)

    def _finish_episode(self, robot: _Robot, success: bool) -> None:
        env, _ = robot.running()
        end_s = self.now_s + self.period_s
        meta = EpisodeMeta(
            episode_id=f"{robot.name}-{robot.episodes:05d}",
            robot_id=robot.name,
            task=env.task.name,
            instruction=env.instruction,
            outcome=Outcome.SUCCESS if success else Outcome.FAILURE,
            policy_versions=(robot.version,),
            start_ns=_EPOCH_NS + round(robot.start_s * 1e9),
        )
        period_ns = round(self.period_s * 1e9)
        bag = record_sim_episode(
            self._recorder, meta, robot.steps, period_ns=period_ns, namespace=f"/{robot.name}"
        )
        result = EpisodeResult(
            robot=robot.name,
            task=meta.task,
            version=robot.version,
            success=success,
            steps=len(robot.steps),
            human_steps=sum(step.human for step in robot.steps),
            start_s=robot.start_s,
            end_s=end_s,
            bag=bag,
        )
        self.results.append(result)
        robot.env, robot.obs, robot.chunk, robot.steps = None, None, None, []
        robot.episodes += 1
        robot.idle_until_s = end_s + self.config.reset_s
        self._on_episode(result)
