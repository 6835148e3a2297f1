"""Closed-loop evaluation of a policy in the simulator, without ROS and without an operator.

The policy is queried every ``replan_steps`` control steps and its chunk is
executed row by row in between, as the chunk broker does on a robot (minus
inference latency: the simulator waits for the policy). The success rate is
the fraction of episodes the policy completes alone.

Runs on the calling thread.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sop_ros.core.types import ActionChunk
from sop_ros.sim import TASK_NAMES, SimConfig, SimEnv

__all__ = ["TaskScore", "evaluate_policy"]


@dataclass(frozen=True, kw_only=True)
class TaskScore:
    """Success over the evaluation episodes of one task."""

    task: str
    episodes: int
    successes: int

    @property
    def success_rate(self) -> float:
        """Fraction of episodes completed by the policy alone."""
        return self.successes / self.episodes if self.episodes else 0.0


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
        policy: Anything with ``infer(observation) -> ActionChunk`` and ``reset()``.
        episodes_per_task: Episodes per task (layouts from ``seed`` on, disjoint from training seeds).
        sim: Simulator settings (the task is set per episode).
        replan_steps: Control steps executed from a chunk before asking the policy again.
        seed: First layout seed.
        tasks: Tasks to evaluate.
    """
    sim = sim or SimConfig()
    scores = {}
    for task in tasks:
        env = SimEnv(replace(sim, task=task))
        successes = 0
        for i in range(episodes_per_task):
            obs = env.reset(seed + i)
            policy.reset()
            chunk: ActionChunk | None = None
            row = 0
            while not env.done:
                if chunk is None or row >= min(replan_steps, chunk.horizon):
                    chunk, row = policy.infer(obs.to_observation(env.instruction)), 0
                obs = env.step(chunk.actions[row])
                row += 1
            successes += int(obs.success)
        scores[task] = TaskScore(task=task, episodes=episodes_per_task, successes=successes)
    return scores
