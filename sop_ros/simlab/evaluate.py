"""Closed-loop evaluation of a policy in the simulator, without ROS and without an operator.

Every evaluation episode runs at once, each in its own :class:`SimEnv`, and
the policy answers all episodes that need a new chunk in one batched call
(``infer_batch``), so a GPU evaluates hundreds of episodes in the time of a
few. A chunk is executed row by row for ``replan_steps`` control steps before
the policy is asked again, as the chunk broker does on a robot (minus
inference latency: the simulator waits for the policy). The success rate is
the fraction of episodes the policy completes alone.

:func:`evaluate_policy` runs on the calling thread; :class:`VersionJudge`
runs it on a thread of its own for each new weights version.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sop_ros.core.errors import SopError
from sop_ros.core.types import ActionChunk, Observation
from sop_ros.sim import TASK_NAMES, SimConfig, SimEnv, SimObservation
from sop_ros.simlab.stats import Rate

__all__ = ["TaskScore", "VersionJudge", "evaluate_policy", "infer_many"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TaskScore:
    """Success over the evaluation episodes of one task."""

    task: str
    episodes: int
    successes: int
    # Robot time the episodes took, summed (s): a success ends early, a failure runs to the budget.
    robot_s: float = 0.0

    @property
    def success_rate(self) -> float:
        """Fraction of episodes completed by the policy alone."""
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def rate(self) -> Rate:
        """The success rate with its 95 % interval."""
        return Rate(self.successes, self.episodes)


def infer_many(policy, observations: Sequence[Observation]) -> list[ActionChunk]:
    """Ask ``policy`` for one chunk per observation, batched when it can (``infer_batch``)."""
    batched = getattr(policy, "infer_batch", None)
    if batched is not None:
        return batched(observations)
    return [policy.infer(observation) for observation in observations]


@dataclass
class _Episode:
    env: SimEnv
    obs: SimObservation
    chunk: ActionChunk | None = None
    row: int = 0


def evaluate_policy(
    policy,
    *,
    episodes_per_task: int,
    sim: SimConfig | None = None,
    replan_steps: int = 3,
    seed: int = 900_000,
    tasks: tuple[str, ...] = TASK_NAMES,
) -> dict[str, TaskScore]:
    """Run ``episodes_per_task`` episodes of every task with ``policy`` alone; return the scores.

    Args:
        policy: Anything with ``infer(observation) -> ActionChunk`` and ``reset()``
            (and ``infer_batch(observations)``, used when present).
        episodes_per_task: Episodes per task (layouts from ``seed`` on, disjoint from training seeds).
        sim: Simulator settings (the task is set per episode).
        replan_steps: Control steps executed from a chunk before asking the policy again.
        seed: First layout seed; episode ``i`` of every task uses ``seed + i``.
        tasks: Tasks to evaluate.
    """
    sim = sim or SimConfig()
    policy.reset()
    running: list[tuple[str, _Episode]] = []
    for task in tasks:
        for i in range(episodes_per_task):
            env = SimEnv(replace(sim, task=task))
            running.append((task, _Episode(env=env, obs=env.reset(seed + i))))
    successes = dict.fromkeys(tasks, 0)
    robot_s = dict.fromkeys(tasks, 0.0)
    while running:
        asking = [
            ep for _, ep in running if ep.chunk is None or ep.row >= min(replan_steps, ep.chunk.horizon)
        ]
        chunks = infer_many(policy, [ep.obs.to_observation(ep.env.instruction) for ep in asking])
        for ep, chunk in zip(asking, chunks, strict=True):
            ep.chunk, ep.row = chunk, 0
        still = []
        for task, ep in running:
            assert ep.chunk is not None  # every episode without a chunk asked for one above
            ep.obs = ep.env.step(ep.chunk.actions[ep.row])
            ep.row += 1
            if ep.env.done:
                successes[task] += int(ep.obs.success)
                robot_s[task] += ep.obs.step * sim.control_period_s
            else:
                still.append((task, ep))
        running = still
    return {
        task: TaskScore(
            task=task, episodes=episodes_per_task, successes=successes[task], robot_s=robot_s[task]
        )
        for task in tasks
    }


class VersionJudge:
    """Evaluates the newest published weights every ``period_s``, on a thread of its own.

    The learner offers each version it publishes (:meth:`offer`, any thread);
    the judge's thread loads the newest one offered into its own policy copy
    and runs :func:`evaluate_policy` on held-out layouts, reporting each result
    through ``on_result``. The judge never slows the fleet: it reads weights
    files, nothing else.

    Args:
        make_policy: Builds the judge's own policy copy (same config as the robots').
        episodes_per_task: Evaluation episodes per task.
        period_s: Wall-clock time between evaluations.
        on_result: Called (on the judge's thread) with the version and its scores.
        sim: Simulator settings (their ``conditions`` choose the layouts' distribution).
        seed: First layout seed of every evaluation (the same layouts for every version).
    """

    def __init__(
        self,
        make_policy: Callable[[], Any],
        *,
        episodes_per_task: int,
        period_s: float,
        on_result: Callable[[str, dict[str, TaskScore]], None],
        sim: SimConfig | None = None,
        seed: int = 900_000,
    ) -> None:
        self.make_policy = make_policy
        self.seed = seed
        self._policy: Any | None = None
        self.episodes_per_task = episodes_per_task
        self.period_s = period_s
        self._on_result = on_result
        self._sim = sim
        self._lock = threading.Lock()
        self._offered: tuple[str, Path] | None = None
        self._judged: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sop-judge", daemon=True)

    def offer(self, version: str, path: Path) -> None:
        """Make ``version`` (weights file ``path``) the next one to judge (any thread)."""
        with self._lock:
            self._offered = (version, Path(path))

    @property
    def newest_offered(self) -> tuple[str, Path] | None:
        """The last version offered and its weights file, or None."""
        with self._lock:
            return self._offered

    def judge(
        self,
        version: str,
        path: Path,
        *,
        episodes_per_task: int | None = None,
        sim: SimConfig | None = None,
        report: bool = True,
    ) -> dict[str, TaskScore]:
        """Evaluate ``version`` now, on the calling thread; return its scores.

        ``sim`` evaluates on other settings than the judge's (e.g. the other layout
        distribution); ``report`` passes the scores to ``on_result``.
        """
        if self._policy is None:
            self._policy = self.make_policy()
        self._policy.load_trainable(path)
        scores = evaluate_policy(
            self._policy,
            episodes_per_task=episodes_per_task or self.episodes_per_task,
            sim=sim or self._sim,
            seed=self.seed,
        )
        if report:
            self._judged.add(version)
            self._on_result(version, scores)
        return scores

    def start(self) -> None:
        """Start judging in the background."""
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (an evaluation under way finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            offered = self.newest_offered
            if offered is None or offered[0] in self._judged:
                continue
            try:
                self.judge(*offered)
            except (OSError, SopError) as err:  # the file was pruned or replaced: judge the next one
                _log.warning("could not evaluate %s: %s", offered[0], err)
