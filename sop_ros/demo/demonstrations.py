"""Demonstration bags from the scripted expert, recorded exactly as a robot would record them.

Each episode runs the simulator with the expert in control and writes one
bag through :class:`~sop_ros.storage.EpisodeRecorder` with the same topics,
types and metadata the recorder node writes (camera JPEGs, joint states,
executed commands, episode events), so the offline buffer loads them with the
same code as fleet bags: this is "replaying rosbags for offline training".

Runs on the calling thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2

from sop_ros.core import topics
from sop_ros.core.types import EpisodeMeta, Outcome
from sop_ros.sim import ACTION_NAMES, TASK_NAMES, ScriptedExpert, SimConfig, SimEnv
from sop_ros.storage import EpisodeRecorder
from sop_ros.storage.typestore import COMPRESSED_IMAGE, EPISODE_EVENT, JOINT_STATE, header, make, serialize

__all__ = ["record_demonstrations"]

_EPOCH_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01: demonstrations get fixed, readable stamps
_NAMESPACE = "/expert"


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
            if only_successes and not frames[-1][2]:
                continue
            period_ns = round(sim.control_period_s * 1e9)
            meta = EpisodeMeta(
                episode_id=f"expert-{task}-{seed + i:06d}",
                robot_id="expert",
                task=task,
                instruction=env.instruction,
                outcome=Outcome.SUCCESS if frames[-1][2] else Outcome.FAILURE,
                policy_versions=("expert",),
                start_ns=clock_ns,
            )
            recorder.start(meta)
            _write_episode(recorder, meta, frames, clock_ns, period_ns)
            end_ns = clock_ns + len(frames) * period_ns
            bags.append(recorder.finish(replace(meta, end_ns=end_ns)))
            clock_ns = end_ns + 1_000_000_000
    return bags


def _run_episode(env: SimEnv, expert: ScriptedExpert, seed: int) -> Iterator[tuple]:
    """Yield (observation before the step, expert action, success after the step) per control step."""
    obs = env.reset(seed)
    expert.reset(seed)
    while not env.done:
        action = expert.act(env.world)
        after = env.step(action)
        yield obs, action, after.success
        obs = after


def _write_episode(
    recorder: EpisodeRecorder, meta: EpisodeMeta, frames: list, start_ns: int, period_ns: int
) -> None:
    def write(topic: str, msg, stamp: int) -> None:
        recorder.write(f"{_NAMESPACE}/{topic}", msg.__msgtype__, serialize(msg), stamp)

    write(topics.EPISODE_EVENTS, _event(meta, 0, start_ns), start_ns)
    names = list(ACTION_NAMES)
    for step, (obs, action, _) in enumerate(frames):
        stamp = start_ns + step * period_ns
        for camera, image in obs.images.items():
            jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
            )[1]
            msg = make(COMPRESSED_IMAGE, header=header(stamp), format="jpeg", data=jpeg.reshape(-1))
            write(topics.camera_topic(camera), msg, stamp)
        write(
            topics.JOINT_STATES,
            make(JOINT_STATE, header=header(stamp), name=names, position=obs.state.astype(float)),
            stamp,
        )
        # The command follows the observation it answers, as on a robot.
        command_stamp = stamp + period_ns // 2
        command = make(
            JOINT_STATE, header=header(command_stamp, "human"), name=names, position=action.astype(float)
        )
        write(topics.COMMAND, command, command_stamp)
    end_ns = start_ns + len(frames) * period_ns
    write(topics.EPISODE_EVENTS, _event(meta, 1, end_ns), end_ns)


def _event(meta: EpisodeMeta, kind: int, stamp: int):
    return make(
        EPISODE_EVENT,
        header=header(stamp),
        kind=kind,
        episode_id=meta.episode_id,
        robot_id=meta.robot_id,
        task=meta.task,
        instruction=meta.instruction,
        outcome=1 if kind == 1 and meta.outcome is Outcome.SUCCESS else 0,
        policy_version="expert",
    )
