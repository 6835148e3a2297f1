"""Demonstration bags from the scripted expert, recorded exactly as a robot would record them.

Each episode runs the simulator with the expert in control and writes one
bag through :class:`~sop_ros.storage.EpisodeRecorder` with the same topics,
types and metadata the recorder node writes (camera JPEGs, joint states,
executed commands, episode events), so the offline buffer loads them with the
same code as fleet bags: this is "replaying rosbags for offline training".

Runs on the calling thread.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from sop_ros.core.spool import Spool
from sop_ros.core.types import EpisodeMeta, Outcome
from sop_ros.sim import TASK_NAMES, ScriptedExpert, SimConfig, SimEnv
from sop_ros.simlab.sim_bags import SimStep, record_sim_episode
from sop_ros.storage import EpisodeRecorder

__all__ = ["demonstrations", "record_demonstrations"]

_EPOCH_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01: demonstrations get fixed, readable stamps
_NAMESPACE = "/expert"


def demonstrations(out_dir: Path, *, episodes_per_task: int, say=print) -> Path:
    """Return the directory of ``episodes_per_task`` demonstration bags per task, recording them once.

    The count is stamped next to the bags; a directory recorded with another count is
    recorded again rather than silently reused.
    """
    ready = Spool(out_dir).ready
    stamp = out_dir / "demonstrations.json"
    wanted = {"episodes_per_task": episodes_per_task}
    if ready.is_dir() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return ready
    if out_dir.exists():
        shutil.rmtree(out_dir)
    say(f"recording {episodes_per_task} expert demonstrations per task as bags")
    record_demonstrations(out_dir, episodes_per_task=episodes_per_task)
    stamp.write_text(json.dumps(wanted))
    return ready


def record_demonstrations(
    out_dir: Path,
    *,
    episodes_per_task: int,
    sim: SimConfig | None = None,
    seed: int = 10_000,
    only_successes: bool = True,
) -> list[Path]:
    """Record ``episodes_per_task`` expert episodes of every task into ``out_dir/ready/``.

    Args:
        out_dir: Spool directory of the demonstrations (bags land in ``ready/``).
        episodes_per_task: Episodes recorded per task.
        sim: Simulator settings (task is set per episode).
        seed: First layout seed; episode ``i`` of a task uses ``seed + i``.
        only_successes: Keep only episodes the expert completed (a failed
            demonstration teaches the wrong thing); failed ones are not written.

    Returns:
        The bag directories written.
    """
    sim = sim or SimConfig()
    recorder = EpisodeRecorder(out_dir, quota_bytes=1 << 40)
    bags = []
    clock_ns = _EPOCH_NS
    for task in TASK_NAMES:
        env = SimEnv(replace(sim, task=task))
        expert = ScriptedExpert(control_period_s=sim.control_period_s)
        for i in range(episodes_per_task):
            frames = list(_run_episode(env, expert, seed + i))
            if only_successes and not frames[-1].success:
                continue
            period_ns = round(sim.control_period_s * 1e9)
            meta = EpisodeMeta(
                episode_id=f"expert-{task}-{seed + i:06d}",
                robot_id="expert",
                task=task,
                instruction=env.instruction,
                outcome=Outcome.SUCCESS if frames[-1].success else Outcome.FAILURE,
                policy_versions=("expert",),
                start_ns=clock_ns,
            )
            bags.append(record_sim_episode(recorder, meta, frames, period_ns=period_ns, namespace=_NAMESPACE))
            clock_ns += len(frames) * period_ns + 1_000_000_000
    return bags


def _run_episode(env: SimEnv, expert: ScriptedExpert, seed: int) -> Iterator[SimStep]:
    """Yield every control step of one expert episode."""
    obs = env.reset(seed)
    expert.reset(seed)
    while not env.done:
        action = expert.act(env.world)
        after = env.step(action)
        yield SimStep(obs=obs, action=action, human=True, success=after.success)
        obs = after
